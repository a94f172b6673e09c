/**
 * Values of the listening addresses and whole numbers that loadConfig accepts and refuses (the messages themselves
 * are checked through the CLI in test/e2e/cli-operator.test.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { RosterdError } from '../../src/errors.js';

function refusal(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof RosterdError && err.code === 'CONFIG_INVALID') return err.message;
    throw err;
  }
  return '';
}

describe('SFTP_HOST and HTTP_HOST', () => {
  it.each(['0.0.0.0', '::', '::1', '127.0.0.1', '10.20.0.5', 'fe80::1', 'localhost', 'sftp.district.example', 'rosterd-1'])(
    'accepts %s',
    (host) => {
      expect(loadConfig({ SFTP_HOST: host, HTTP_HOST: host })).toMatchObject({ SFTP_HOST: host, HTTP_HOST: host });
    },
  );

  it.each(['0.0.0.0:2222', '[::]', 'sftp://host', 'two words', '-leading.example', '999.1.1.1', 'host_name'])('refuses %s', (host) => {
    expect(refusal({ SFTP_HOST: host })).toMatch(/^SFTP_HOST=.* is not valid: expected an IP address/);
    expect(refusal({ HTTP_HOST: host })).toMatch(/^HTTP_HOST=.* is not valid/);
  });
});

describe('whole-number variables', () => {
  it.each([' ', '\t', '0x16', '1e3', '0b1', '22.5', '2222abc'])('refuses SFTP_PORT=%j, naming it', (value) => {
    expect(refusal({ SFTP_PORT: value })).toMatch(/^SFTP_PORT=.* is not valid: expected a whole number\./);
  });

  it('refuses a port of only spaces instead of listening on a random one', () => {
    expect(refusal({ HTTP_PORT: '  ' })).toMatch(/^HTTP_PORT=" {2}" is not valid: expected a whole number\./);
  });

  it('reads decimal digits, with spaces around them, and keeps the range checks', () => {
    expect(loadConfig({ SFTP_PORT: ' 2222 ', MAX_UPLOAD_BYTES: '1048576', SETTLE_SECONDS: '0' })).toMatchObject({
      SFTP_PORT: 2222,
      MAX_UPLOAD_BYTES: 1048576,
      SETTLE_SECONDS: 0,
    });
    expect(refusal({ SFTP_PORT: '70000' })).toMatch(/expected a number of at most 65535/);
    expect(refusal({ CLAIM_TTL_SECONDS: '5' })).toMatch(/expected a number of at least 10/);
    expect(refusal({ HTTP_PORT: '-1' })).toMatch(/expected a number of at least 0/);
  });

  it('keeps the defaults when unset', () => {
    expect(loadConfig({})).toMatchObject({ SFTP_PORT: 2222, HTTP_PORT: 8080, MAX_UPLOAD_BYTES: 1024 ** 3 });
  });
});

describe('SMTP_URL', () => {
  it.each(['smtp://', 'smtp://127.0.0.1:99999', 'smtps://mail.example:0', 'smtp://:587'])('refuses %s at start, naming it', (url) => {
    expect(refusal({ SMTP_URL: url })).toMatch(/^SMTP_URL=\(redacted\) is not valid: expected an smtp:\/\/ or smtps:\/\/ URL with a host/);
  });

  it.each(['smtp://mail.example', 'smtps://user:pass@mail.example:465', 'smtp://127.0.0.1:3325/?pool=yes', 'smtp://[::1]:25'])(
    'accepts %s',
    (url) => {
      expect(loadConfig({ SMTP_URL: url }).SMTP_URL).toBe(url);
    },
  );
});

describe('several bad variables', () => {
  it('are all named, a line each in the order of the README table, each saying what is expected', () => {
    let caught: unknown;
    try {
      loadConfig({ LOG_LEVEL: 'loud', SFTP_PORT: 'x', MAIL_FROM: 'nobody', SMTP_URL: 'http://user:secret@mail' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RosterdError);
    const err = caught as RosterdError;
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message.split('\n')).toEqual([
      'SFTP_PORT="x" is not valid: expected a whole number. Fix the environment variable SFTP_PORT and start again.',
      expect.stringMatching(/^SMTP_URL=\(redacted\) is not valid: expected an smtp:\/\/ or smtps:\/\/ URL\. /),
      expect.stringMatching(/^MAIL_FROM="nobody" is not valid: expected an email address/),
      expect.stringMatching(/^LOG_LEVEL="loud" is not valid: expected one of fatal, error, warn, info, debug, trace, silent\. /),
    ]);
    expect(err.message, 'a URL value is never shown').not.toContain('secret');
    expect((err.details?.errors as Array<{ variable: string }>).map((e) => e.variable)).toEqual([
      'SFTP_PORT',
      'SMTP_URL',
      'MAIL_FROM',
      'LOG_LEVEL',
    ]);
  });

  it("a Kubernetes service link in rosterd's place (a Service named sftp or http) is named as one, with what to do", () => {
    expect(refusal({ SFTP_PORT: 'tcp://10.96.0.12:22', HTTP_PORT: 'tcp://10.96.3.4:80' }).split('\n')).toEqual([
      'SFTP_PORT="tcp://10.96.0.12:22" is not valid: expected a whole number. This is a Kubernetes service link (a Service named sftp ' +
        'in the namespace): set SFTP_PORT in the pod spec, or enableServiceLinks: false, and start again.',
      expect.stringMatching(/^HTTP_PORT="tcp:\/\/10\.96\.3\.4:80" is not valid: .*\(a Service named http in the namespace\)/),
    ]);
  });

  it('a value breaking several checks of one variable is one line', () => {
    expect(refusal({ SMTP_URL: 'http://' }).split('\n')).toHaveLength(1);
  });
});

describe('whitespace in values', () => {
  it.each([' ', '  ', '\t', '\r', '\u00a0'])('refuses DATA_DIR=%j, naming it, instead of making a folder of that name', (value) => {
    expect(refusal({ DATA_DIR: value })).toBe(
      `DATA_DIR=${JSON.stringify(value)} is not valid: expected a path to a folder, such as /var/lib/rosterd. ` +
        'Fix the environment variable DATA_DIR and start again.',
    );
  });

  it.each([
    ['SFTP_HOST', /expected an IP address/],
    ['HTTP_HOST', /expected an IP address/],
    ['MAIL_FROM', /expected an email address/],
    ['SCHEDULE_CRON', /expected a valid cron expression/],
    ['LOG_LEVEL', /expected one of fatal, /],
    ['SFTP_ALGORITHMS', /expected one of compatible, modern/],
    ['DATABASE_URL', /expected a postgres:\/\/ or postgresql:\/\/ URL/],
    ['SMTP_URL', /expected an smtp:\/\/ or smtps:\/\/ URL/],
  ])('refuses %s of only spaces, showing them (there is no secret to hide)', (name, expected) => {
    const message = refusal({ [name]: '   ' });
    expect(message).toMatch(new RegExp(`^${name}=" {3}" is not valid: `));
    expect(message).toMatch(expected);
  });

  it('drops spaces around a value, and the CR an env file saved with CRLF line ends leaves', () => {
    const config = loadConfig({
      DATA_DIR: ' /srv/rosterd/data\r',
      SFTP_HOST: ' 127.0.0.1 ',
      HTTP_HOST: 'localhost\r',
      MAIL_FROM: '  rosterd <rosterd@district.example>\r',
      SCHEDULE_CRON: ' */10 * * * * ',
      LOG_LEVEL: 'debug\r',
      SFTP_ALGORITHMS: 'modern ',
      DATABASE_URL: ' postgres://rosterd:pw@db.example/rosterd\r',
      SMTP_URL: 'smtp://mail.example:25 ',
    });
    expect(config).toMatchObject({
      DATA_DIR: '/srv/rosterd/data',
      SFTP_HOST: '127.0.0.1',
      HTTP_HOST: 'localhost',
      MAIL_FROM: 'rosterd <rosterd@district.example>',
      SCHEDULE_CRON: '*/10 * * * *',
      LOG_LEVEL: 'debug',
      SFTP_ALGORITHMS: 'modern',
      DATABASE_URL: 'postgres://rosterd:pw@db.example/rosterd',
      SMTP_URL: 'smtp://mail.example:25',
    });
  });

  it('keeps an empty value as unset, its default applying', () => {
    const config = loadConfig({ DATA_DIR: '', SMTP_URL: '', DATABASE_URL: '', SFTP_PORT: '', LOG_LEVEL: '' });
    expect(config).toMatchObject({ DATA_DIR: path.resolve('./data'), SFTP_PORT: 2222, LOG_LEVEL: 'info' });
    expect(config.SMTP_URL).toBeUndefined();
    expect(config.DATABASE_URL).toBeUndefined();
  });
});

describe('DATABASE_URL_FILE and SMTP_URL_FILE (Docker and Kubernetes secrets)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-secrets-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const secret = (name: string, content: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, content);
    return file;
  };

  it('read the URL from the file, without the newline a secret file ends in', () => {
    const config = loadConfig({
      DATABASE_URL_FILE: secret('db', 'postgres://rosterd:s3cret@db.example/rosterd\n'),
      SMTP_URL_FILE: ` ${secret('smtp', 'smtps://mailer:pw@mail.example:465\r\n')} `,
    });
    expect(config.DATABASE_URL).toBe('postgres://rosterd:s3cret@db.example/rosterd');
    expect(config.SMTP_URL).toBe('smtps://mailer:pw@mail.example:465');
  });

  it('refuse a file that is missing, empty, or a folder, and the variable set both ways, naming each, with what to do', () => {
    const missing = path.join(dir, 'nope');
    const message = refusal({
      DATABASE_URL: 'postgres://a@b/c',
      DATABASE_URL_FILE: secret('db2', 'postgres://x@y/z'),
      SMTP_URL_FILE: missing,
    });
    expect(message.split('\n')).toEqual([
      'DATABASE_URL and DATABASE_URL_FILE are both set: rosterd would not know which to use. Unset one of them and start again.',
      `SMTP_URL_FILE="${missing}" cannot be read: no such file or directory; check the path. Fix SMTP_URL_FILE or the file, and start again.`,
    ]);
    expect(refusal({ SMTP_URL_FILE: secret('empty', ' \n') })).toMatch(
      /^SMTP_URL_FILE=".*empty" names an empty file: it should hold SMTP_URL\./,
    );
    expect(refusal({ SMTP_URL_FILE: dir })).toMatch(/^SMTP_URL_FILE=".*" cannot be read: it is a directory, not a file/);
  });

  it('a bad URL in the file is named by the file, and its content is never shown (it holds a password)', () => {
    const file = secret('bad', 'mysql://root:hunter2@db/rosterd');
    const message = refusal({ DATABASE_URL_FILE: file });
    expect(message).toBe(
      `DATABASE_URL read from DATABASE_URL_FILE="${file}" is not valid: expected a postgres:// or postgresql:// URL. Fix the file and start again.`,
    );
    expect(message).not.toContain('hunter2');
  });
});
