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
import { RosterdError } from '../errors.js';
import { isClosedPipe, reportError } from './context.js';

/** `json`: the command line asks for --json, so commander's own errors must not go out as text. */
export function buildProgram(options: { json?: boolean } = {}): Command {
  const program = new Command('rosterd')
    .description('nightly rostering daemon: SFTP in, Postgres import in the night window, report by email')
    .version(packageVersion(), '-V, --version', "print rosterd's version")
    .showHelpAfterError('(add --help for usage)');
  // Set before the commands are added: each copies its parent's output settings.
  if (options.json) program.configureOutput({ outputError: () => undefined, writeErr: () => undefined });
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
  const words = argv.slice(2);
  const end = words.indexOf('--');
  const json = (end < 0 ? words : words.slice(0, end)).includes('--json');
  const program = buildProgram({ json });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Without --json, commander already printed the message. Help asked for (--help, `help`)
      // and --version exit 0; help shown because a command is missing (to stderr, exit code 1
      // from commander) is a usage error like a wrong command, as is everything else it refuses.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      if (json && err.exitCode !== 0) reportError(new RosterdError('USAGE', commanderMessage(err, program, words)), true);
      return;
    }
    reportError(err, json);
  }
}

/** commander's message as a sentence that says what to do, for the JSON error. */
function commanderMessage(err: CommanderError, program: Command, words: string[]): string {
  let command = program;
  const names = [program.name()];
  for (const word of words) {
    if (word.startsWith('-')) continue;
    const sub = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!sub) break;
    command = sub;
    names.push(sub.name());
  }
  const usage = `"${names.join(' ')} --help"`;
  // A command group (`rosterd tenant --json`) has no --json of its own: what is missing is the command.
  const groupJson = err.code === 'commander.unknownOption' && err.message.includes("'--json'") && command.commands.length > 0;
  if (err.code === 'commander.help' || groupJson) {
    return `a command is missing after "${names.join(' ')}"; ${usage} lists them`;
  }
  return `${err.message.replace(/^error: /, '').replace(/\.$/, '')}; ${usage} shows the usage`;
}

// A reader that stops early (`rosterd export users | head`) closes the pipe. Like other command-line
// tools, rosterd then stops writing without a word instead of dying of an unhandled EPIPE; the
// command still ends normally, so its database connections close.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (!isClosedPipe(err) && err.code !== 'ERR_STREAM_DESTROYED') throw err;
});

await main(process.argv);
