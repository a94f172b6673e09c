import { emptyCounts } from '../../src/import/types.js';
import type { ReportImport, ReportInput } from '../../src/report/types.js';

/**
 * A report's input for unit tests of the report: a users.csv of New York's nyc-usd, succeeded
 * with 5 rows created unless `over` says otherwise; `extra` adds the rest of the input (a hold's
 * list, replaced uploads).
 */
export function reportInput(over: Partial<ReportImport> = {}, extra: Partial<ReportInput> = {}): ReportInput {
  return {
    from: 'rosterd <rosterd@example.com>',
    tenant: { subdomain: 'nyc-usd', name: 'NYC', timezone: 'America/New_York', adminEmails: ['it@nyc.example'] },
    import: {
      id: '6f1c0d2e-4b1a-4a57-9a0e-1b2c3d4e5f60',
      file: 'users.csv',
      sha256: 'a'.repeat(64),
      bytes: 1000,
      receivedAt: '2026-11-21T19:02:11-05:00',
      status: 'succeeded',
      mode: 'full',
      counts: { ...emptyCounts(), rows: 5, created: 5 },
      errors: [],
      warnings: [],
      durationMs: 100,
      ...over,
    },
    ...extra,
  };
}
