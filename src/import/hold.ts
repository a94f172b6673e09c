/**
 * The safety hold's message (PRODUCT.md §3): why an import that deactivates too many users is held.
 * One message is stored with the import and read by the operator (log, `import show`); the
 * administrator's report shows only its facts, because the commands in it are the operator's.
 */
import { RosterdError } from '../errors.js';
import type { ImportTarget } from './engine-types.js';

const HELD = 'Held: ';
const NOTHING_APPLIED = ' Nothing was applied.';

/** Why this many deactivations must be held, or null when they are within the threshold. */
export function holdReason(deactivations: number, active: number, target: ImportTarget, dryRun = false): string | null {
  const byPercent = overPercent(deactivations, active, target);
  const byCount = target.thresholdCount !== null && deactivations > target.thresholdCount;
  if (!byPercent && !byCount) return null;
  const limit =
    byCount && target.thresholdCount !== null
      ? `the district's limit of ${target.thresholdCount} deactivations`
      : `the district's threshold of ${target.thresholdPercent}% of active users`;
  const what = `this file would deactivate ${deactivations} of ${active} active users (${percent(deactivations, active)}%), more than ${limit}.`;
  return held(what, 'users.csv', 'the whole roster, without an action column', target, dryRun);
}

/**
 * Why a groups.csv that removes this many of the tenant's memberships must be held, or null. A
 * truncated export (or one from the wrong report) lists a few memberships and would remove all the
 * others, as a users.csv missing a school would deactivate its users. Only the percentage applies:
 * the threshold count is a number of users, and a school's class lists hold many memberships each.
 */
export function groupsHoldReason(removals: number, memberships: number, target: ImportTarget, dryRun = false): string | null {
  if (!overPercent(removals, memberships, target)) return null;
  const what =
    `this file would remove ${removals} of ${memberships} group memberships (${percent(removals, memberships)}%), ` +
    `more than the district's threshold of ${target.thresholdPercent}%.`;
  return held(what, 'groups.csv', 'every membership, as a groups.csv always is', target, dryRun);
}

function overPercent(n: number, of: number, target: ImportTarget): boolean {
  // In whole hundredths of a percent (threshold_percent is numeric(5,2)), so exactly the threshold
  // is not "more": in floating point, 3000 * 2.3 / 100 is 68.99999999999999 and 69 was held.
  return n * 10_000 > of * Math.round(target.thresholdPercent * 100);
}

const percent = (n: number, of: number): number => (of === 0 ? 100 : Math.round((n / of) * 1000) / 10);

function held(what: string, file: string, whole: string, target: ImportTarget, dryRun: boolean): string {
  if (dryRun) return `An import of this file would be held: ${what} An operator would have to approve it.`;
  return (
    `${HELD}${what}${NOTHING_APPLIED} If the file is right, approve it with "rosterd import approve ${target.uploadId}". ` +
    `If not, a corrected ${file} from the district (${whole}) replaces it when that is imported; ` +
    `reject it with "rosterd import reject ${target.uploadId}" only if none is coming.`
  );
}

/** What an approval would now take away that its hold report did not list: users or memberships. */
const UNREVIEWED = {
  'users.csv': { changed: 'the roster', verb: 'deactivate', noun: 'user' },
  'groups.csv': { changed: 'the memberships', verb: 'remove', noun: 'membership' },
} as const;

/**
 * The refusal of an approval that would now take away `n` more than its hold report listed (the
 * first of them `shown`): approval applies what the report showed, no more.
 */
export function unreviewedApproval(uploadId: string, file: keyof typeof UNREVIEWED, n: number, shown: readonly string[]): RosterdError {
  const { changed, verb, noun } = UNREVIEWED[file];
  const names = shown.join(', ') + (n > shown.length ? ', …' : '');
  return new RosterdError(
    'IMPORT_APPROVAL_STALE',
    `import ${uploadId} cannot be approved: ${changed} changed since it was held, and it would now also ${verb} ` +
      `${n} ${noun}${n === 1 ? '' : 's'} its hold report did not list (${names}). Nothing was changed. ` +
      `Ask the district to upload a current ${file}, which replaces this one when it is imported; ` +
      `reject this one ("rosterd import reject ${uploadId}") only if none is coming.`,
  );
}

/**
 * What a held file would do, from a message holdReason wrote ("this file would deactivate 3 of 4
 * active users (75%), more than …"), or wasHeld rewrote, without the operator's commands; null
 * for any other message.
 */
export function holdFacts(message: string): string | null {
  if (message.startsWith(WAS_HELD)) {
    const tail = AFTERWARDS_ANY.exec(message);
    return tail === null ? null : message.slice(WAS_HELD.length, tail.index);
  }
  if (!message.startsWith(HELD)) return null;
  const end = message.indexOf(NOTHING_APPLIED);
  return end < 0 ? null : message.slice(HELD.length, end);
}

const WAS_HELD = 'Was held: ';
const AFTERWARDS = {
  rejected: () => ' It was rejected, so nothing was applied.',
  superseded: (file: string) => ` A newer ${file} replaced it before it was decided, so nothing was applied.`,
} as const;
const AFTERWARDS_ANY = / (It was rejected|A newer \S+ replaced it before it was decided), so nothing was applied\.$/;

/**
 * A held import's message once it has been rejected or replaced: why it was held and what became
 * of it, without the approve and reject commands, which then only fail. `file`: users.csv or groups.csv.
 */
export function wasHeld(facts: string, outcome: keyof typeof AFTERWARDS, file: string): string {
  return `${WAS_HELD}${facts}${AFTERWARDS[outcome](file)}`;
}

/** One school's share of a held import's would-be deactivations; school null: users with none. */
export interface SchoolCount {
  school: string | null;
  users: number;
}

/**
 * Would-be deactivations counted by school, most first, users without a school last. An export
 * that missed a school, the usual cause of a hold, shows at once as one school's users;
 * graduating seniors as a spread. Empty when no user of the list has a school: the breakdown
 * would say nothing.
 */
export function countBySchool(schools: ReadonlyArray<string | null>): SchoolCount[] {
  if (!schools.some((s) => s)) return [];
  return countMostFirst(schools).map(([school, users]) => ({ school, users }));
}

/** Each key with how often it occurs, most first; then by name, a blank (none) last. */
export function countMostFirst(keys: ReadonlyArray<string | null>): Array<[string | null, number]> {
  const counts = new Map<string | null, number>();
  for (const k of keys) counts.set(k || null, (counts.get(k || null) ?? 0) + 1);
  return [...counts].sort(([a, m], [b, n]) => n - m || Number(a === null) - Number(b === null) || (a ?? '').localeCompare(b ?? ''));
}
