import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { describeFileError, RosterdError } from '../../errors.js';
import { exportUsers, exportUsersJson } from '../../import/export.js';
import { leaf } from '../context.js';

function cannotWrite(file: string, err: unknown): RosterdError {
  return new RosterdError('FILE_NOT_WRITABLE', `cannot write ${file}: ${describeFileError(err, true)}; nothing was written`, {
    cause: err,
  });
}

/** A Node file system error (it has a syscall), as opposed to a database or programming error. */
const isFileError = (err: unknown): boolean => typeof err === 'object' && err !== null && 'syscall' in err;

export function registerExportCommands(program: Command): void {
  const exp = program.command('export').description('export data');
  leaf(
    exp
      .command('users')
      .description('the current roster as users.csv (no passwords), to FILE or stdout; with --json and no --out, as a JSON array')
      .option('--tenant <subdomain>', 'whose roster')
      .option('--out <file>', 'write here (atomically) instead of stdout'),
    async (ctx, _args, opts) => {
      if (typeof opts.tenant !== 'string') throw new RosterdError('USAGE', 'give the tenant: rosterd export users --tenant SUBDOMAIN');
      if (typeof opts.out !== 'string') {
        // The roster itself is the output: as JSON with --json, else as the CSV.
        if (ctx.json) await exportUsersJson(ctx.pool, opts.tenant, process.stdout);
        else await exportUsers(ctx.pool, opts.tenant, process.stdout, { keepOpen: true });
        return { json: null, text: '', streamed: true };
      }
      const out = path.resolve(opts.out);
      const tmp = `${out}.${randomBytes(4).toString('hex')}.tmp`;
      // Opened here, awaited, so that a bad path is an error we report rather than an 'error'
      // event nobody listens to yet (exportUsers first looks the tenant up).
      const handle = await open(tmp, 'wx', 0o600).catch((err: unknown) => {
        throw cannotWrite(out, err);
      });
      try {
        const users = await exportUsers(ctx.pool, opts.tenant, handle.createWriteStream());
        await rename(tmp, out).catch((err: unknown) => {
          throw cannotWrite(out, err);
        });
        return { json: { tenant: opts.tenant, file: out, users }, text: `wrote ${users} user(s) of ${opts.tenant} to ${out}` };
      } catch (err) {
        await handle.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
        throw err instanceof RosterdError || !isFileError(err) ? err : cannotWrite(out, err);
      }
    },
  );
}
