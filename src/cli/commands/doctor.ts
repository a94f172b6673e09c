import type { Command } from 'commander';
import { createLogger } from '../../log/logger.js';
import { runDoctor, type DoctorReport } from '../../ops/doctor.js';
import { cliLogLevel, reportError } from '../context.js';

const LABEL = { ok: 'OK', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' } as const;

/**
 * `rosterd doctor [--json]`. Not a `leaf`: a leaf loads the configuration before its handler,
 * and an invalid configuration is one of the things doctor must report rather than die of.
 * It opens the database itself, inside its check. Exit 1 if any check fails.
 */
export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check configuration, database, migrations, host keys, data directory, disk and mail')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }) => {
      const json = opts.json === true;
      try {
        // A bad LOG_LEVEL is reported by the configuration check, not by the logger crashing.
        const logger = createLogger(cliLogLevel(), process.stderr);
        const report = await runDoctor({ env: process.env, logger });
        process.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
        process.exitCode = report.ok ? 0 : 1;
      } catch (caught) {
        reportError(caught, json);
      }
    });
}

export function formatReport(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const indent = ' '.repeat(width + 8);
  const lines = report.checks.map((c) => {
    // A detail of several lines (each bad variable of the configuration) keeps them under its first.
    const line = `${LABEL[c.status].padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail.split('\n').join(`\n${indent}`)}`;
    return c.fix ? `${line}\n${indent}→ ${c.fix}` : line;
  });
  const failed = report.checks.filter((c) => c.status === 'fail').length;
  lines.push('', failed === 0 ? 'all checks passed' : `${failed} check${failed === 1 ? '' : 's'} failed`);
  return lines.join('\n') + '\n';
}
