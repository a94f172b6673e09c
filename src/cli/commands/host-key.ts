import type { Command } from 'commander';
import { loadOrCreateHostKeys } from '../../sftp/host-keys.js';
import { leaf } from '../context.js';

/**
 * `rosterd host-key`: the SFTP host key fingerprints, as `ssh-keygen -lf` prints them, for
 * operators to hand to districts (PRODUCT.md §2). The keys are created on first use, so the
 * fingerprints can be sent out before the daemon ever starts; `serve` then uses the same keys.
 */
export function registerHostKeyCommand(program: Command): void {
  leaf(
    program.command('host-key').description('print the SFTP host key fingerprints (created on first use)'),
    async (ctx) => {
      const keys = await loadOrCreateHostKeys(ctx.config.DATA_DIR);
      const label = (type: string) => (type === 'ssh-ed25519' ? 'ED25519' : 'RSA');
      return {
        json: keys.map((k) => ({ type: k.type, bits: k.bits, fingerprint: k.fingerprint, path: k.path })),
        text: keys.map((k) => `${k.bits} ${k.fingerprint} ${k.path} (${label(k.type)})`).join('\n'),
      };
    },
    { needsDatabase: false, dataDir: 'exist' },
  );
}
