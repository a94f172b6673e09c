import { describe, expect, it } from 'vitest';
import { checkSchools, type SchoolLine } from '../../src/cli/commands/school.js';
import { cliLogLevel, decimalOption, intOption } from '../../src/cli/context.js';
import { RosterdError } from '../../src/errors.js';
import { hostOf } from '../../src/ops/doctor.js';
import { decodeKeyFile, parsePublicKey } from '../../src/sftp/public-key.js';
import { normaliseFingerprint } from '../../src/store/keys.js';
import { validateSchoolInput } from '../../src/store/schools.js';
import { validateTenantInput } from '../../src/store/tenants.js';

/** The RosterdError `fn` throws (fails the test if it throws nothing or something else). */
function thrown(fn: () => unknown): RosterdError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RosterdError) return err;
    throw err;
  }
  throw new Error('expected a RosterdError');
}

describe('number options', () => {
  it('takes plain decimal digits only', () => {
    expect(intOption('42', '--n')).toBe(42);
    expect(intOption(undefined, '--n')).toBeUndefined();
    for (const bad of ['', ' 7', '0x10', '1e3', '-3', '1.0', '+1', '99999999999999999999']) {
      expect(thrown(() => intOption(bad, '--n')).code, bad).toBe('USAGE');
    }
    expect(thrown(() => intOption('2147483648', '--threshold-count', 0, 2147483647)).message).toBe(
      '--threshold-count must be a whole number from 0 to 2147483647, not "2147483648"',
    );
  });

  it('takes a decimal with at most the given decimal places', () => {
    expect(decimalOption('2.5', '--threshold', 2)).toBe(2.5);
    expect(decimalOption('10.55', '--threshold', 2)).toBe(10.55);
    expect(decimalOption('7', '--threshold', 2)).toBe(7);
    expect(thrown(() => decimalOption('10.555', '--threshold', 2)).message).toBe(
      '--threshold takes at most 2 decimal places, not "10.555"',
    );
    for (const bad of ['', '0x10', '.5', '5.', '1e1', '-1', 'NaN', 'Infinity']) {
      expect(thrown(() => decimalOption(bad, '--threshold', 2)).message, bad).toMatch(/plain decimal number/);
    }
  });
});

describe('validateTenantInput', () => {
  it('normalises emails, zone and name', () => {
    expect(
      validateTenantInput({ adminEmails: [' A@b.org ', 'a@B.org', 'c@d.org'], timezone: 'america/chicago', name: '  Oak ISD ' }),
    ).toMatchObject({ adminEmails: ['A@b.org', 'c@d.org'], timezone: 'America/Chicago', name: 'Oak ISD' });
    expect(validateTenantInput({ timezone: 'utc' }).timezone).toBe('UTC');
  });

  it('refuses abbreviations, saying which region to use: ICU reads them as one region of several, or as a fixed offset', () => {
    // ICU's old three-letter IDs: AST is Alaska, not Atlantic (Puerto Rico); SST the Solomon Islands, not Samoa.
    expect(thrown(() => validateTenantInput({ timezone: 'AST' })).message).toMatch(/Alaska time.*America\/Puerto_Rico/);
    expect(thrown(() => validateTenantInput({ timezone: 'sst' })).message).toMatch(/Pacific\/Pago_Pago/);
    expect(thrown(() => validateTenantInput({ timezone: 'EST' })).message).toMatch(/UTC-5 all year.*America\/New_York/);
    expect(thrown(() => validateTenantInput({ timezone: 'CST' })).message).toMatch(/China Standard Time.*America\/Chicago/);
    for (const zone of ['NST', 'BST', 'IST', 'MST', 'PST', 'EST5EDT', 'JST']) {
      const err = thrown(() => validateTenantInput({ timezone: zone }));
      expect(err.code, zone).toBe('INVALID_TIMEZONE');
      expect(err.message, zone).toMatch(/is not a region's time zone/);
    }
    expect(thrown(() => validateTenantInput({ timezone: 'PST' })).message).toMatch(/America\/Los_Angeles \(Pacific\)/);
    for (const zone of ['UTC', 'gmt', 'Etc/UTC', 'US/Eastern', 'Pacific/Honolulu'])
      expect(validateTenantInput({ timezone: zone }).timezone, zone).toBeTruthy();
  });

  it('refuses what the database would round, overflow or ignore', () => {
    expect(thrown(() => validateTenantInput({ thresholdPercent: 10.555 })).code).toBe('INVALID_THRESHOLD');
    expect(validateTenantInput({ thresholdPercent: 2.5 }).thresholdPercent).toBe(2.5);
    expect(thrown(() => validateTenantInput({ thresholdCount: 2 ** 31 })).message).toMatch(/from 0 to 2147483647/);
    expect(thrown(() => validateTenantInput({ allowDaytime: true })).message).toMatch(/--allow-daytime only applies with --window/);
    expect(thrown(() => validateTenantInput({ name: 'x'.repeat(201) })).message).toMatch(/at most 200/);
  });

  it('refuses a name with a line break or another control character: it heads every report', () => {
    for (const name of ['Lincoln USD\r\nBcc: x@evil.example', 'Lincoln\nUSD', 'Lincoln\tUSD', 'Lincoln\u0007USD']) {
      expect(thrown(() => validateTenantInput({ name })).message, JSON.stringify(name)).toBe(
        'the tenant name holds a line break, tab or other control character; give it on one line (--name)',
      );
      expect(thrown(() => validateSchoolInput({ name })).code, JSON.stringify(name)).toBe('INVALID_SCHOOL');
    }
    expect(thrown(() => validateSchoolInput({ name: 'Lincoln\nHigh' })).message).toBe(
      'the school name "Lincoln\\nHigh" holds a line break, tab or other control character; give it on one line (--name)',
    );
    expect(validateTenantInput({ name: '  Escuela Peña Blanca  ' }).name).toBe('Escuela Peña Blanca');
  });
});

describe('cliLogLevel', () => {
  it('uses LOG_LEVEL only when it is a level', () => {
    expect(cliLogLevel({ LOG_LEVEL: 'debug' })).toBe('debug');
    expect(cliLogLevel({ LOG_LEVEL: 'silent' })).toBe('silent');
    expect(cliLogLevel({ LOG_LEVEL: 'verbose' })).toBe('warn');
    expect(cliLogLevel({ LOG_LEVEL: '' })).toBe('warn');
    expect(cliLogLevel({ LOG_LEVEL: 'constructor' })).toBe('warn');
    expect(cliLogLevel({})).toBe('warn');
  });
});

describe('hostOf (doctor)', () => {
  it.each([
    ['postgres://u:secret@db.example:5432/rosterd', 'db.example:5432/rosterd'],
    ['postgres://root@/db?host=/var/run/postgresql', 'socket /var/run/postgresql (database db)'],
    ['postgresql://%2Fvar%2Frun%2Fpostgresql/db', 'socket /var/run/postgresql (database db)'],
    ['postgres://u@localhost/db?host=/tmp', 'socket /tmp (database db)'],
    ['smtp://u:p@mail:587', 'mail:587'],
    ['not a url', '(unparsable URL)'],
  ])('%s → %s, never the credentials', (url, shown) => {
    expect(hostOf(url)).toBe(shown);
  });
});

describe('key files that are not an OpenSSH public key', () => {
  const line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl sis@district';

  it('decodes UTF-16 with or without a BOM, and refuses binary', () => {
    expect(decodeKeyFile(Buffer.from(`\uFEFF${line}\r\n`, 'utf16le'))).toBe(`${line}\r\n`);
    expect(decodeKeyFile(Buffer.from(`\uFEFF${line}\n`, 'utf16le').swap16())).toBe(`${line}\n`);
    expect(decodeKeyFile(Buffer.from(`${line}\n`, 'utf16le'))).toBe(`${line}\n`);
    expect(decodeKeyFile(Buffer.from(`\uFEFF${line}`, 'utf8'))).toBe(line);
    expect(thrown(() => decodeKeyFile(Buffer.from([0x30, 0x82, 0x01, 0x00, 0x00, 0x05]))).message).toMatch(/binary, not text/);
    expect(parsePublicKey(decodeKeyFile(Buffer.from(`\uFEFF${line}\r\n`, 'utf16le'))).comment).toBe('sis@district');
  });

  it.each([
    [
      'PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: k\nPublic-Lines: 1\nAAAA\n',
      /PuTTY private key.*puttygen key\.ppk -O public-openssh/,
    ],
    ['-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----\n', /PEM \(PKCS#8\) public key.*ssh-keygen -i -m PKCS8 -f key\.pem/],
    ['-----BEGIN RSA PUBLIC KEY-----\nMIIB\n-----END RSA PUBLIC KEY-----\n', /PKCS#1.*ssh-keygen -i -m PEM/],
    ['ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= sis', /SSH certificate .*not id_ed25519-cert\.pub/],
  ])('says what %j is', (text, message) => {
    const err = thrown(() => parsePublicKey(text));
    expect(err.code).toBe('KEY_INVALID');
    expect(err.message).toMatch(message);
  });
});

describe('normaliseFingerprint', () => {
  it('accepts the prefix in any case or none, and refuses MD5 and empty', () => {
    expect(normaliseFingerprint('sha256:abc+/D')).toBe('SHA256:abc+/D');
    expect(normaliseFingerprint(' SHA256:abc= ')).toBe('SHA256:abc');
    expect(normaliseFingerprint('abc')).toBe('SHA256:abc');
    for (const md5 of ['MD5:9a:c3:63:ae:8c:2b:4f:12:03:72:ab:25:6a:08:6d:82', '9a:c3:63:ae:8c:2b:4f:12:03:72:ab:25:6a:08:6d:82']) {
      expect(thrown(() => normaliseFingerprint(md5)).message).toMatch(/MD5 fingerprint; .*SHA256/);
    }
    expect(thrown(() => normaliseFingerprint('  ')).code).toBe('USAGE');
  });
});

describe('checkSchools', () => {
  const at = (line: number, name: string, ncesId = '', stateId = ''): SchoolLine => ({ line, input: { name, ncesId, stateId } });

  it('reports every bad line: malformed, listed twice (both lines), already there', () => {
    const problems = checkSchools(
      [at(2, 'Oak'), at(3, 'Birch', '12'), at(4, 'oak'), at(5, 'Pine', '', 'ST-1'), at(6, 'Elm', '', 'st-1'), at(7, 'Lincoln')],
      [{ id: '1', name: 'Lincoln', ncesId: null, stateId: null }],
      'alpha',
    );
    expect(problems).toEqual([
      { line: 3, code: 'INVALID_SCHOOL', message: expect.stringMatching(/exactly 12 digits/) },
      { line: 4, code: 'INVALID_SCHOOL', message: 'the file lists name "oak" twice (lines 2 and 4)' },
      { line: 6, code: 'INVALID_SCHOOL', message: 'the file lists state ID st-1 twice (lines 5 and 6)' },
      { line: 7, code: 'SCHOOL_EXISTS', message: 'alpha already has a school with name "Lincoln"' },
    ]);
  });

  it("refuses a name or ID that is another school's ID or name of another kind: a users.csv value would match both", () => {
    const existing = [{ id: '1', name: 'R', ncesId: '999999999999', stateId: 'CA-7' }];
    const problems = checkSchools(
      [
        at(2, '999999999999', '444444444444'),
        at(3, 'Oak', '', 'r'),
        at(4, 'Pine', '123456789012'),
        at(5, 'ca-7'),
        at(6, 'Elm', '', '123456789012'),
      ],
      existing,
      'alpha',
    );
    expect(problems).toEqual([
      {
        line: 2,
        code: 'INVALID_SCHOOL',
        message:
          'the name "999999999999" is the NCES ID of the school "R", so a users.csv school value "999999999999" would match both schools; ' +
          'give a name that no other school has as a name or ID',
      },
      { line: 3, code: 'INVALID_SCHOOL', message: expect.stringMatching(/^the state ID "r" is the name of the school "R"/) },
      { line: 5, code: 'INVALID_SCHOOL', message: expect.stringMatching(/^the name "ca-7" is the state ID of the school "R"/) },
      {
        line: 6,
        code: 'INVALID_SCHOOL',
        message: expect.stringMatching(/^the state ID "123456789012" is the NCES ID of the school "Pine"/),
      },
    ]);
    // A school's name may be its own ID.
    expect(checkSchools([at(2, 'LHS', '', 'LHS')], existing, 'alpha')).toEqual([]);
  });
});
