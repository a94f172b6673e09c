import { describe, expect, it } from 'vitest';
import { scheduleView } from '../../src/schedule/operator-view.js';
import type { Tenant } from '../../src/store/tenants.js';

const tenant: Tenant = {
  id: 1,
  subdomain: 'lincoln-usd',
  name: 'Lincoln USD',
  timezone: 'America/Chicago',
  adminEmails: ['it@lincoln.k12.us'],
  window: '18:00-06:00',
  windowStart: '18:00',
  windowEnd: '06:00',
  allowDaytime: false,
  thresholdPercent: 10,
  thresholdCount: null,
  status: 'active',
  createdAt: new Date(0),
  updatedAt: new Date(0),
};

describe('import list: why was the file not imported yet?', () => {
  it("a pending upload in the afternoon waits for the evening, in the tenant's own zone", () => {
    const v = scheduleView({ status: 'pending', file: 'users.csv' }, tenant, new Date('2026-11-20T20:00:00Z')); // 14:00 CST
    expect(v).toMatchObject({ windowOpen: false, nextRunAt: '2026-11-20T18:00:00-06:00' });
    expect(v.note).toMatch(/waiting for the window \(18:00-06:00 America\/Chicago\), which opens 2026-11-20T18:00:00-06:00/);
  });

  it('a pending upload at night is taken at the next tick', () => {
    const v = scheduleView({ status: 'pending', file: 'users.csv' }, tenant, new Date('2026-11-21T03:00:00Z')); // 21:00 CST
    expect(v).toMatchObject({ windowOpen: true, nextRunAt: '2026-11-20T21:00:00-06:00' });
    expect(v.note).toMatch(/next scheduler tick/);
  });

  it('a suspended tenant is named as the reason', () => {
    const v = scheduleView({ status: 'pending', file: 'users.csv' }, { ...tenant, status: 'suspended' }, new Date('2026-11-21T03:00:00Z'));
    expect(v.nextRunAt).toBeNull();
    expect(v.note).toMatch(/suspended.*rosterd tenant resume lincoln-usd/);
  });

  it('a finished import has no next run', () => {
    expect(scheduleView({ status: 'succeeded', file: 'users.csv' }, tenant, new Date('2026-11-21T03:00:00Z'))).toMatchObject({
      nextRunAt: null,
      note: null,
    });
  });
});
