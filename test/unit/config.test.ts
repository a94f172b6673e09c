/**
 * Values of the listening addresses that loadConfig accepts and refuses (the messages themselves
 * are checked through the CLI in test/e2e/cli-operator.test.ts).
 */
import { describe, expect, it } from 'vitest';
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
