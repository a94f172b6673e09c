import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generate } from '../../src/sftp/host-keys.js';

describe('host key generation', () => {
  it('never keeps a key it cannot read back (ssh2 writes a malformed ed25519 key about 1 in 200)', async () => {
    let unreadable = 0;
    for (let i = 0; i < 1500; i++) {
      const parsed = ssh2.utils.parseKey(await generate('ed25519'));
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      if (key === undefined || key instanceof Error || key.type !== 'ssh-ed25519') unreadable++;
    }
    expect(unreadable).toBe(0);
  });
});
