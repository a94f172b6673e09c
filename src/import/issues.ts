/**
 * Row errors and warnings: the messages the engine itself gives (the reader has its own), and
 * storing issues in import_issues. Messages are written for a school administrator.
 */
import type { PoolClient } from 'pg';
import { PASSWORD_MASK } from '../types.js';
import type { ImportIssue } from './types.js';

/**
 * SQL: when upload `upload` was received, in its tenant `tenant`'s zone, as the messages below
 * show it to a school administrator: "November 21, 2026, 2:08 PM (America/Chicago)".
 */
export function receivedInTenantZone(upload: string, tenant: string): string {
  return `to_char(${upload}.received_at AT TIME ZONE ${tenant}.timezone, 'FMMonth FMDD, YYYY, FMHH12:MI AM') || ' (' || ${tenant}.timezone || ')'`;
}

/** Templates for SQL format(): %s is the username, or the list of lines for a duplicate. */
export const MESSAGES = {
  duplicate: 'This username appears more than once in the file (lines %s; usernames are compared ignoring case). List each user once.',
  addExists: 'User "%s" already exists and is active, so it cannot be added. Use action "update" to change it.',
  addReactivated: 'User "%s" already existed but was inactive; this row reactivates it.',
  updateInactive:
    'User "%s" is inactive, and an update does not reactivate a user: it stays inactive. Use action "add" to bring the user back.',
  /** %s: the columns cleared ("email and first name"), the username, then what should stay and how to send it */
  updateClears:
    'This row clears the %s of user "%s": the cells are blank, and in a file with an action column a blank cell clears the stored value ' +
    '(only a blank password keeps the current one). If %s should stay, send %s in the row.',
  /** %s: the new username, the SIS ID, the other user, what becomes of it ("which this file deactivates") */
  newUserSisIdTaken:
    'New user "%s" has the SIS ID "%s" of user "%s"%s. rosterd knows a user by username, so "%1$s" is a new account, without the ' +
    'password or groups of "%3$s". If it is the same person and the username was not meant to change, send "%3$s" again instead.',
  updateMissing: 'User "%s" does not exist, so it cannot be updated. Use action "add" to create it.',
  deleteMissing: 'User "%s" does not exist, so it cannot be deleted. Check the spelling of the username.',
  deleteNotImported: 'User "%s" was not created by an import, so an import cannot deactivate it. Deactivate it by hand if it should go.',
  groupUserMissing: 'User "%s" does not exist. Add the user to users.csv first.',
  /** %s: the username, when the users.csv was received, its line, that line's errors */
  groupUserRejected: 'User "%s" does not exist: the user\'s row in the users.csv received %s was rejected (line %s: %s) — fix that row.',
  /** %s: the username, the user it looks like, what sets them apart (latin-lookalikes.ts) */
  groupUserLookalike:
    'User "%s" does not exist. It looks like user "%s" but is not the same: it has %s. Type the username again in your SIS.',
  groupOwnerMissing: 'Owner "%s" does not exist. The owner must be an active user.',
  /** %s: the owner, the user it looks like, what sets them apart */
  groupOwnerLookalike:
    'Owner "%s" does not exist. It looks like user "%s" but is not the same: it has %s. Type the owner\'s username again in your SIS.',
  /** %s: the owner, when the users.csv was received, its line, that line's errors */
  groupOwnerRejected: 'Owner "%s" does not exist: the owner\'s row in the users.csv received %s was rejected (line %s: %s) — fix that row.',
  groupOwnerInactive: 'Owner "%s" is not active. The owner must be an active user.',
  groupOwnerNotManager:
    'Owner "%s" is not a Manager, School Administrator or Administrator. Give the owner one of these access types in users.csv.',
  groupEmpty: 'This row has neither an owner nor a group. Give a group name, an owner, or both.',
  /** a user whose deactivation is not known (by hand, or before rosterd kept how: migration 012) */
  groupUserInactive: 'User "%s" is inactive in the roster; the membership was recorded, but means nothing until the user is active again.',
  /** %s: the username, when the users.csv that deactivated the user was received, what it did */
  groupUserDeactivated:
    'User "%s" was deactivated by the import of the users.csv received %s, %s; the membership was recorded, but means nothing until the user is active again.',
  /** what that users.csv did, by users.deactivated_how: unlisted, deleted, status */
  deactivatedByFullSync: 'which no longer listed the user',
  deactivatedByDelete: 'whose row deleted the user (action delete)',
  deactivatedByStatus: 'whose row gave the user status inactive',
  groupOwnerIgnored:
    'Group "%s" already has an owner (%s); the owner on this line was not applied. A group keeps the owner it was created with.',
  newWithoutPassword: 'New user "%s" has no password, so it cannot sign in with one until a password is set.',
} as const;

const CHUNK = 5000;

/**
 * Store issues (values of a password column are masked, whatever the reader sent), with the
 * username of the row each is about when it has one.
 */
export async function insertIssues(
  client: PoolClient,
  uploadId: string,
  kind: 'error' | 'warning',
  issues: readonly ImportIssue[],
): Promise<void> {
  for (let i = 0; i < issues.length; i += CHUNK) {
    const part = issues.slice(i, i + CHUNK);
    await client.query(
      `INSERT INTO import_issues (upload_id, kind, line, column_name, value, message, code, username)
       SELECT $1, $2, * FROM unnest($3::integer[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])`,
      [
        uploadId,
        kind,
        part.map((x) => x.line),
        part.map((x) => x.column),
        part.map((x) => (x.value === undefined ? null : /password/i.test(x.column) ? PASSWORD_MASK : x.value)),
        part.map((x) => x.message),
        part.map((x) => x.code ?? null),
        part.map((x) => x.username ?? null),
      ],
    );
  }
}
