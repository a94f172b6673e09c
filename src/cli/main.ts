#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerExportCommands } from './commands/export.js';
import { registerHostKeyCommand } from './commands/host-key.js';
import { registerImportRunCommand } from './commands/import-run.js';
import { registerImportCommands } from './commands/import.js';
import { registerKeyCommands } from './commands/key.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerSchoolCommands } from './commands/school.js';
import { registerServeCommand } from './commands/serve.js';
import { registerTenantCommands } from './commands/tenant.js';
import { registerValidateCommand } from './commands/validate.js';
import { packageRoot } from '../store/paths.js';
import { reportError } from './context.js';

export function buildProgram(): Command {
  const program = new Command('rosterd')
    .description('nightly rostering daemon: SFTP in, Postgres import in the night window, report by email')
    .version(packageVersion(), '-V, --version', "print rosterd's version")
    .showHelpAfterError('(add --help for usage)');
  registerServeCommand(program);
  registerMigrateCommand(program);
  registerTenantCommands(program);
  registerKeyCommands(program);
  registerSchoolCommands(program);
  registerImportRunCommand(registerImportCommands(program));
  registerValidateCommand(program);
  registerExportCommands(program);
  registerHostKeyCommand(program);
  registerDoctorCommand(program);
  // Usage errors exit 2 (PRODUCT.md §7): every command throws instead of exiting, main() decides.
  (function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  })(program);
  return program;
}

/** The version in package.json. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message. Help asked for (--help, `help`) and --version exit
      // 0; help shown because a command is missing (to stderr, exit code 1 from commander) is a
      // usage error like a wrong command, as is everything else it refuses.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    reportError(err, argv.includes('--json'));
  }
}

await main(process.argv);
