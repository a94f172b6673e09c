/**
 * `rosterd serve` with a misspelt variable (PRODUCT.md §8): it starts as before, on the default the
 * misspelling leaves, and says so in one warn line per variable, naming it and the name rosterd
 * reads, never its value.
 */
import { expect, it } from 'vitest';
import { useServeFixture } from '../support/serve.js';

const fx = useServeFixture('lookalikes');

it('logs a warning per misspelt variable at start, without its value, and starts all the same', async () => {
  const d = await fx.start({ SMTP_URI: 'smtp://rosterd:hunter2@mail.example:25', MAX_UPLOAD_SIZE: '5000000' });
  const warnings = d.logs.filter((l) => l.event === 'config.lookalike');
  expect(warnings).toEqual([
    expect.objectContaining({
      level: 'warn',
      variable: 'MAX_UPLOAD_SIZE',
      resembles: 'MAX_UPLOAD_BYTES',
      msg: 'MAX_UPLOAD_SIZE is set but rosterd reads MAX_UPLOAD_BYTES, so it uses the default MAX_UPLOAD_BYTES=1073741824; rename MAX_UPLOAD_SIZE to MAX_UPLOAD_BYTES',
    }),
    expect.objectContaining({
      level: 'warn',
      variable: 'SMTP_URI',
      resembles: 'SMTP_URL',
      msg: 'SMTP_URI is set but rosterd reads SMTP_URL, so reports are written as .eml files to DATA_DIR/outbox; rename SMTP_URI to SMTP_URL',
    }),
  ]);
  expect(d.lines.join('\n')).not.toContain('hunter2');
  expect(d.exit, 'still running').toBeUndefined();
  await d.stop();
});

it('logs no such warning when every variable is one rosterd reads', async () => {
  const d = await fx.start();
  expect(d.logs.filter((l) => l.event === 'config.lookalike')).toEqual([]);
  await d.stop();
});
