import type { Command } from 'commander';
import { RosterdError } from '../../errors.js';
import { recordJson } from '../../import/records.js';
import { validateFile } from '../../import/validate.js';
import { validateSubdomain } from '../../store/tenants.js';
import { leaf } from '../context.js';
import { describeRecord, importContext } from './import.js';

export function registerValidateCommand(program: Command): void {
  leaf(
    program
      .command('validate <file>')
      .description(
        'dry run: the import report for FILE, nothing applied (groups*.csv is read as groups.csv); exits 1 if the file has errors',
      )
      .option('--tenant <subdomain>', 'the tenant whose roster the file is checked against'),
    async (ctx, [file], opts) => {
      if (typeof opts.tenant !== 'string') {
        throw new RosterdError('USAGE', 'give the tenant: rosterd validate FILE --tenant SUBDOMAIN');
      }
      // A usage error is told before the file is looked at: fixing a missing file first would
      // only meet this next.
      validateSubdomain(opts.tenant);
      const record = await validateFile(importContext(ctx), { tenant: opts.tenant, file: file ?? '' });
      // The record's id is the dry run's own: nothing is kept, so `import show` would not know it.
      const text = describeRecord(record, 'dry run (nothing applied, nothing kept)');
      return { json: recordJson(record), text, exitCode: record.status === 'failed' || record.counts.errors > 0 ? 1 : 0 };
    },
  );
}
