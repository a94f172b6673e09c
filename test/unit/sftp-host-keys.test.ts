import { mkdtempSync, promises as fsPromises, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { describe, expect, it, vi } from 'vitest';
import { generate, hostKeysDir, loadOrCreateHostKeys } from '../../src/sftp/host-keys.js';

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

describe('host keys on a full disk', () => {
  it('leave no part of a key behind when it cannot be written', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-hostkeys-'));
    // What ENOSPC does: the file is created and part of the key written, then the write fails.
    const spy = vi.spyOn(fsPromises, 'writeFile').mockImplementation(async (file, data) => {
      writeFileSync(String(file), String(data).slice(0, 40), { flag: 'wx' });
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    try {
      await expect(loadOrCreateHostKeys(dataDir)).rejects.toThrow(/ENOSPC/);
    } finally {
      spy.mockRestore();
    }
    expect(readdirSync(hostKeysDir(dataDir))).toEqual([]);
    rmSync(dataDir, { recursive: true, force: true });
  });
});
