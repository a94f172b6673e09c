import { describe, expect, it } from 'vitest';
import { reportMessageId } from '../../src/report/mailer.js';
import type { MailMessage } from '../../src/report/types.js';

function message(importId: string | undefined, over: Partial<MailMessage> = {}): MailMessage {
  return {
    from: 'rosterd <rosterd@localhost>',
    to: ['it@lincoln.example', 'sis@lincoln.example'],
    subject: '[rosterd] lincoln-usd: users.csv imported — 3 created, 0 updated, 0 deactivated',
    text: 'users.csv was imported',
    html: '<p>users.csv was imported</p>',
    attachments: [],
    headers: importId === undefined ? {} : { 'X-Rosterd-Import': importId },
    ...over,
  };
}

const A = '6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60';
const B = '0b9e6c7d-2f3a-4c1e-8d5b-9a8b7c6d5e4f';

describe('reportMessageId', () => {
  it('two installations whose outbox ids and domain coincide give different Message-IDs', () => {
    expect(reportMessageId(message(A), 1)).not.toBe(reportMessageId(message(B), 1));
    expect(reportMessageId(message(A), 1)).toBe(`<rosterd-report-1.${A}@localhost>`);
  });

  it('is the same for one outbox row on every attempt, also after its recipients were narrowed', () => {
    expect(reportMessageId(message(A), 7)).toBe(reportMessageId(message(A), 7));
    expect(reportMessageId(message(A, { to: ['sis@lincoln.example'] }), 7)).toBe(reportMessageId(message(A), 7));
  });

  it('two reports of one import (held, then approved) differ by outbox row', () => {
    expect(reportMessageId(message(A), 7)).not.toBe(reportMessageId(message(A), 8));
  });

  it('without an import id: a hash of the content, still stable and still distinct', () => {
    const id = reportMessageId(message(undefined), 1);
    expect(id).toMatch(/^<rosterd-report-1\.[0-9a-f]{32}@localhost>$/);
    expect(reportMessageId(message(undefined, { to: [] }), 1)).toBe(id);
    expect(reportMessageId(message(undefined, { text: 'groups.csv was imported' }), 1)).not.toBe(id);
    // a header that is not an import id does not reach the header unchecked
    expect(reportMessageId(message('x>\r\nBcc: evil@example.com'), 1)).toMatch(/^<rosterd-report-1\.[0-9a-f]{32}@localhost>$/);
  });
});
