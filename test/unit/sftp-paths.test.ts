import { describe, expect, it } from 'vitest';
import { longname } from '../../src/sftp/attrs.js';
import { classifyName, refusedNameMessage } from '../../src/sftp/file-names.js';
import { normalizeVirtual, resolveJailPath } from '../../src/sftp/jail.js';
import { parseOpenFlags } from '../../src/sftp/open-flags.js';

const ROOT = '/data/sftp/lincoln-usd';

describe('resolveJailPath', () => {
  it.each([
    ['/', { kind: 'root' }],
    ['.', { kind: 'root' }],
    ['', { kind: 'root' }],
    ['//./', { kind: 'root' }],
    ['/a/..', { kind: 'root' }],
    ['users.csv', { kind: 'file', virtual: '/users.csv', name: 'users.csv', real: `${ROOT}/users.csv` }],
    ['/users.csv', { kind: 'file', name: 'users.csv', real: `${ROOT}/users.csv` }],
    ['./x/../users.csv', { kind: 'file', name: 'users.csv', real: `${ROOT}/users.csv` }],
    ['/etc/passwd', { kind: 'missing', virtual: '/etc/passwd' }],
    ['/other-usd/users.csv', { kind: 'missing' }],
    ['%2e%2e/other-usd/users.csv', { kind: 'missing' }],
    ['..\\other-usd\\users.csv', { kind: 'file', name: '..\\other-usd\\users.csv' }],
    ['..', { kind: 'refused' }],
    ['/..', { kind: 'refused' }],
    ['/../other-usd/users.csv', { kind: 'refused' }],
    ['a/../../users.csv', { kind: 'refused' }],
    ['users.csv\0.txt', { kind: 'refused' }],
  ])('%j', (input, expected) => {
    expect(resolveJailPath(ROOT, input)).toMatchObject(expected);
  });

  it('never yields a real path outside the root', () => {
    const tricky = ['../../..', '/../../etc/shadow', 'a/b/../../../c', '....//..//x', '.../x', '/./../.', 'x/..//..'];
    for (const p of tricky) {
      const r = resolveJailPath(ROOT, p);
      if (r.kind === 'file') expect(r.real.startsWith(`${ROOT}/`) && !r.name.includes('/')).toBe(true);
    }
    expect(normalizeVirtual('....//x')).toBe('/..../x');
  });

  it('clamps `..` at the root only when asked (REALPATH)', () => {
    expect(normalizeVirtual('..')).toBeNull();
    expect(normalizeVirtual('..', { clamp: true })).toBe('/');
    expect(normalizeVirtual('/../../a/../users.csv', { clamp: true })).toBe('/users.csv');
    expect(normalizeVirtual('a/../..', { clamp: true })).toBe('/');
  });
});

describe('classifyName', () => {
  it.each([
    ['users.csv', 'final', 'users.csv'],
    ['groups.csv', 'final', 'groups.csv'],
    ['users.csv.filepart', 'temporary', 'users.csv'],
    ['groups.csv.filepart', 'temporary', 'groups.csv'],
    ['.users.csv.tmp', 'temporary', 'users.csv'],
    ['users.csv.tmp', 'temporary', 'users.csv'],
    ['users.csv.part', 'temporary', 'users.csv'],
    ['users.csv.a1b2c3.partial', 'temporary', 'users.csv'],
    ['.users.csv.Xy12Z9', 'temporary', 'users.csv'],
    ['.in.users.csv.', 'temporary', 'users.csv'],
    ['.in.groups.csv', 'temporary', 'groups.csv'],
    ['users.csv~', 'temporary', 'users.csv'],
  ])('%s is %s (%s)', (name, kind, target) => {
    expect(classifyName(name)).toEqual({ kind, target });
  });

  it.each([
    'notes.txt',
    'Users.csv',
    'users.csv.bak',
    'users.CSV',
    'users.csv.filepart.exe',
    'xusers.csv',
    'users.csvx',
    '.users.csv',
    'users.csv.',
    'users',
  ])('refuses %s', (name) => {
    expect(classifyName(name)).toEqual({ kind: 'other' });
  });

  it('says what is accepted', () => {
    expect(refusedNameMessage('notes.txt')).toMatch(/"notes\.txt" is not accepted.*users\.csv or groups\.csv.*users\.csv\.filepart/);
  });
});

describe('parseOpenFlags', () => {
  it('reads each bit, whatever the combination', () => {
    expect(parseOpenFlags(0x01)).toEqual({ read: true, write: false, append: false, create: false, truncate: false, exclusive: false });
    expect(parseOpenFlags(0x1a)).toEqual({ read: false, write: true, append: false, create: true, truncate: true, exclusive: false });
    expect(parseOpenFlags(0x0a)).toMatchObject({ write: true, create: true, truncate: false }); // WRITE|CREAT (flagsToString: null)
    expect(parseOpenFlags(0x0b)).toMatchObject({ read: true, write: true, create: true, truncate: false });
    expect(parseOpenFlags(0x2a)).toMatchObject({ write: true, create: true, exclusive: true });
    expect(parseOpenFlags(0x0c)).toMatchObject({ write: true, append: true, create: true });
    expect(parseOpenFlags(0)).toMatchObject({ read: true, write: false });
  });
});

describe('longname', () => {
  it('looks like OpenSSH ls -l', () => {
    const now = Date.parse('2026-11-21T20:00:00Z') / 1000;
    const attrs = { mode: 0o100400, uid: 0, gid: 0, size: 1234, atime: now, mtime: now - 3600 };
    expect(longname('users.csv', attrs, 'lincoln-usd', now)).toBe(
      '-r--------    1 lincoln-usd lincoln-usd     1234 Nov 21 19:00 users.csv',
    );
    const old = { ...attrs, mode: 0o040700, mtime: Date.parse('2025-01-05T00:00:00Z') / 1000 };
    expect(longname('.', old, 'abc', now)).toBe('drwx------    2 abc      abc          1234 Jan  5  2025 .');
  });
});
