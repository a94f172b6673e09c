/** The logger's safety net (src/log/logger.ts): values that may quote a roster row never reach a line. */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';

function capture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  return { lines, logger: createLogger('info', { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) }) };
}

describe('logger redaction', () => {
  it("keeps a Postgres error's detail and where (which quote rows) out, also on child loggers", () => {
    const { lines, logger } = capture();
    const err = Object.assign(new Error('duplicate key value violates unique constraint "users_tenant_username_uq"'), {
      code: '23505',
      detail: 'Key (tenant_id, lower(username))=(4, ann01) already exists.',
      where: 'COPY users, line 3',
    });
    logger.error({ err }, 'import failed');
    logger.child({ uploadId: 'u1' }).error({ err }, 'import failed');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(JSON.stringify(line)).not.toMatch(/ann01|line 3/);
      expect(line.err).toMatchObject({ code: '23505', detail: '[redacted]', where: '[redacted]' });
    }
  });

  it('keeps passwords and rows out', () => {
    const { lines, logger } = capture();
    logger.info({ password: 'hunter22', row: { username: 'ann01' }, user: { password: 'x' } }, 'oops');
    expect(JSON.stringify(lines)).not.toMatch(/hunter22|ann01|"x"/);
  });
});
