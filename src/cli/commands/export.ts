import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { RosterdError } from '../../errors.js';
import { exportUsers } from '../../import/export.js';
import { leaf } from '../context.js';

export function registerExportCommands(program: Command): void {
  const exp = program.command('export').description('export data');
  leaf(
    exp
      .command('users')
      .description('the current roster as users.csv (no passwords), to FILE or stdout')
      .option('--tenant <subdomain>', 'whose roster')
      .option('--out <file>', 'write here (atomically) instead of stdout'),
    async (ctx, _args, opts) => {
      if (typeof opts.tenant !== 'string') throw new RosterdError('USAGE', 'give the tenant: rosterd export users --tenant SUBDOMAIN');
      if (typeof opts.out !== 'string') {
        if (ctx.json) throw new RosterdError('USAGE', '--json needs --out FILE: without it the CSV itself goes to stdout');
        await exportUsers(ctx.pool, opts.tenant, process.stdout, { keepOpen: true });
        return { json: null, text: '' };
      }
      const out = path.resolve(opts.out);
      const tmp = `${out}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        const users = await exportUsers(ctx.pool, opts.tenant, createWriteStream(tmp, { flags: 'wx' }));
        await rename(tmp, out);
        return { json: { tenant: opts.tenant, file: out, users }, text: `wrote ${users} user(s) of ${opts.tenant} to ${out}` };
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
    },
  );
}
