import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { describeFileError, RosterdError } from '../../errors.js';
import { zonedIso } from '../../import/records.js';
import { addKey, listKeys, revokeKey, type SshKey } from '../../store/keys.js';
import { isValidSubdomain, validateSubdomain } from '../../store/tenants.js';
import { decodeKeyFile } from '../../sftp/public-key.js';
import { logOperatorAction } from '../audit.js';
import { leaf, table } from '../context.js';

export function keyJson(k: SshKey) {
  return {
    tenant: k.tenant,
    fingerprint: k.fingerprint,
    type: k.type,
    bits: k.bits,
    comment: k.comment,
    addedAt: k.addedAt.toISOString(),
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
  };
}

/**
 * An instant to the second in the key's tenant's zone, with its offset, as import list shows
 * when a file arrived: 2026-11-21T12:05:11-06:00. The time a district's SIS last logged in reads
 * against its nightly job, set in the district's time; UTC made the operator convert it, and
 * differently for each tenant of the list. --json keeps UTC.
 */
const shownAt = (d: Date, k: SshKey): string => zonedIso(d, k.timezone) ?? '';

async function readKeyText(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return decodeKeyFile(Buffer.concat(chunks));
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new RosterdError('FILE_NOT_FOUND', `cannot read key file ${file}: ${describeFileError(err)}`, { cause: err });
  }
  return decodeKeyFile(bytes);
}

export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description("register and revoke tenants' SSH public keys");

  leaf(
    key.command('add <subdomain> <file>').description('register a public key (FILE, or - for stdin); prints its fingerprint'),
    async (ctx, [subdomain, file]) => {
      // Checked before the file is read, so that a key file named first is not read as the tenant's.
      if (!isValidSubdomain(subdomain ?? '') && isValidSubdomain(file ?? '')) {
        throw new RosterdError('USAGE', `the tenant comes first: rosterd key add ${file ?? ''} ${subdomain ?? ''}`);
      }
      validateSubdomain(subdomain ?? '');
      const k = await addKey(ctx.pool, subdomain ?? '', await readKeyText(file ?? '-'));
      if (!k.alreadyRegistered) {
        logOperatorAction(ctx, 'key.added', { tenant: k.tenant, fingerprint: k.fingerprint, keyType: k.type, bits: k.bits }, 'key added');
      }
      const described = `${k.fingerprint} ${k.comment || '(no comment)'} (${k.type.replace(/^ssh-/, '').toUpperCase()} ${k.bits})`;
      return {
        json: { ...keyJson(k), alreadyRegistered: k.alreadyRegistered },
        text: k.alreadyRegistered
          ? `${described} was already registered to ${k.tenant} (added ${shownAt(k.addedAt, k)}); nothing changed`
          : `${described} added to ${k.tenant}`,
      };
    },
  );

  leaf(key.command('list [subdomain]').description('list keys, of one tenant or all'), async (ctx, [subdomain]) => {
    const keys = await listKeys(ctx.pool, subdomain);
    return {
      json: keys.map(keyJson),
      text:
        keys.length === 0
          ? 'no keys registered; add one with: rosterd key add SUBDOMAIN FILE.pub'
          : table(
              ['TENANT', 'FINGERPRINT', 'TYPE', 'COMMENT', 'ADDED', 'LAST USED', 'REVOKED'],
              keys.map((k) => [
                k.tenant,
                k.fingerprint,
                `${k.type} ${k.bits}`,
                k.comment,
                shownAt(k.addedAt, k),
                k.lastUsedAt && shownAt(k.lastUsedAt, k),
                k.revokedAt && shownAt(k.revokedAt, k),
              ]),
            ),
    };
  });

  leaf(key.command('revoke <fingerprint>').description('revoke a key by its SHA256: fingerprint'), async (ctx, [fingerprint]) => {
    const k = await revokeKey(ctx.pool, fingerprint ?? '');
    if (!k.alreadyRevoked) logOperatorAction(ctx, 'key.revoked', { tenant: k.tenant, fingerprint: k.fingerprint }, 'key revoked');
    // Exit 0 either way: the key is revoked, as asked; the text says whether this command did it.
    const when = k.revokedAt ? shownAt(k.revokedAt, k) : '?';
    return {
      json: { ...keyJson(k), alreadyRevoked: k.alreadyRevoked },
      text: k.alreadyRevoked
        ? `${k.fingerprint} of ${k.tenant} was already revoked (at ${when}); nothing changed`
        : `revoked ${k.fingerprint} of ${k.tenant}`,
    };
  });
}
