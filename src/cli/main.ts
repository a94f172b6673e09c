#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registerKeyCommands } from './commands/key.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerSchoolCommands } from './commands/school.js';
import { registerServeCommand } from './commands/serve.js';
import { registerTenantCommands } from './commands/tenant.js';
import { reportError } from './context.js';
import { RosterdError } from '../errors.js';

export function buildProgram(): Command {
  const program = new Command('rosterd')
    .description('nightly rostering daemon: SFTP in, Postgres import in the night window, report by email')
    .showHelpAfterError('(run "rosterd help" or add --help for usage)')
    .exitOverride();
  registerServeCommand(program);
  registerMigrateCommand(program);
  registerTenantCommands(program);
  registerKeyCommands(program);
  registerSchoolCommands(program);
  // Usage errors exit 2 (PRODUCT.md §7); subcommands inherit the override.
  program.commands.forEach(function override(c: Command) {
    c.exitOverride();
    c.commands.forEach(override);
  });
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version are not failures; commander already printed the message
      process.exitCode = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2;
      return;
    }
    reportError(err instanceof Error ? err : new RosterdError('INTERNAL', String(err)), argv.includes('--json'));
  }
}

await main(process.argv);
