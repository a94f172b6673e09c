import { mkdtempSync, promises as fsPromises, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createPasswordHasher } from '../../src/import/hash-pool.js';
import { loadCheckKey, parsePasswordHash, passwordCheck, PasswordSealer, verifyPassword } from '../../src/import/password.js';

const hasher = createPasswordHasher({ workers: 2 });
afterAll(() => hasher.close());

describe('password hashes', () => {
  it('are salted scrypt in the self-describing PHC format, and verify', async () => {
    const [a, b] = await hasher.hash(['correct horse', 'correct horse']);
    expect(a).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(a).not.toBe(b); // salted
    expect(parsePasswordHash(a!)?.params).toEqual({ ln: 15, r: 8, p: 1 });
    expect(await verifyPassword('correct horse', a!)).toBe(true);
    expect(await verifyPassword('Correct horse', a!)).toBe(false); // case-sensitive
    expect(await verifyPassword('correct horse', 'not a hash')).toBe(false);
    expect(hasher.hashCount).toBe(2);
  });

  it('are slow: tens of milliseconds each', async () => {
    const one = createPasswordHasher({ workers: 1 });
    const t = performance.now();
    await one.hash(['a password']);
    const ms = performance.now() - t;
    await one.close();
    expect(ms).toBeGreaterThan(20);
  });
});

describe('password checks (unchanged-password detection)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-pw-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('use one key kept in DATA_DIR with mode 0600, created once', async () => {
    const k1 = await loadCheckKey(dir);
    const [k2, k3] = await Promise.all([loadCheckKey(dir), loadCheckKey(dir)]);
    expect(k2.key.equals(k1.key) && k3.key.equals(k1.key)).toBe(true);
    expect(statSync(path.join(dir, 'secrets', 'password-check.key')).mode & 0o777).toBe(0o600);
  });

  it('differ per user and per key, and never contain the password', async () => {
    const key = await loadCheckKey(dir);
    const c = passwordCheck(key, '1', 'alice', 'hunter22');
    expect(c).toBe(passwordCheck(key, '1', 'alice', 'hunter22'));
    expect(c).not.toBe(passwordCheck(key, '1', 'bobby', 'hunter22'));
    expect(c).not.toBe(passwordCheck(key, '2', 'alice', 'hunter22'));
    expect(c).not.toBe(passwordCheck(key, '1', 'alice', 'hunter23'));
    expect(c.startsWith(`${key.id}$`)).toBe(true);
    expect(c).not.toContain('hunter22');
    const other = await loadCheckKey(mkdtempSync(path.join(os.tmpdir(), 'rosterd-pw2-')));
    expect(passwordCheck(other, '1', 'alice', 'hunter22')).not.toBe(c);
  });

  it('sealed passwords open only with the same sealer', () => {
    const s = new PasswordSealer();
    const sealed = s.seal('pässwörd');
    expect(sealed.toString('utf8')).not.toContain('pässwörd');
    expect(s.open(sealed)).toBe('pässwörd');
    expect(() => new PasswordSealer().open(sealed)).toThrow();
  });
});

describe('the hashing pool', () => {
  it('closing it fails the hashes in flight and waiting, instead of leaving them pending for ever (a stopping daemon)', async () => {
    const hasher = createPasswordHasher({ workers: 1 });
    const pending = hasher.hash(Array.from({ length: 40 }, (_, i) => `password-${i}`));
    const settled = pending.then(
      () => 'resolved',
      (err: Error) => err.message,
    );
    await new Promise((r) => setTimeout(r, 50)); // the first chunk is with the worker
    await hasher.close();
    const outcome = await Promise.race([settled, new Promise((r) => setTimeout(() => r('still pending'), 5_000))]);
    expect(outcome).toBe('the password hasher was closed (rosterd is stopping); the import is rolled back');
    await expect(hasher.hash(['another1'])).rejects.toThrow(/closed/);
  });
});

describe('the password-check key on a full disk', () => {
  it('leaves no temporary file behind when it cannot be written', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-checkkey-'));
    // What ENOSPC does: the file is created, the write into it fails.
    const spy = vi.spyOn(fsPromises, 'writeFile').mockImplementation(async (file) => {
      writeFileSync(String(file), '', { flag: 'wx' });
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    try {
      await expect(loadCheckKey(dir)).rejects.toThrow(/ENOSPC/);
      await expect(loadCheckKey(dir)).rejects.toThrow(/ENOSPC/);
    } finally {
      spy.mockRestore();
    }
    expect(readdirSync(path.join(dir, 'secrets'))).toEqual([]);
    // Once there is space, the key is made as usual.
    expect((await loadCheckKey(dir)).key).toHaveLength(32);
    rmSync(dir, { recursive: true, force: true });
  });
});
