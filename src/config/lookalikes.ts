import { editDistance } from '../edit-distance.js';
import { CONFIG_FILE_VARIABLES, CONFIG_VARIABLES, configDefaults } from './config.js';

/**
 * Environment variables that look like a misspelling of one rosterd reads (SMTP_URI, DATABSE_URL,
 * SFTPPORT, MAX_UPLOAD_SIZE, SMTP_HOST). rosterd never reads them, so it quietly does what it does
 * when the real one is unset (the .eml outbox, the embedded Postgres, port 2222), which nobody may
 * notice for days. doctor warns of each and serve logs each at start; neither refuses to start, as
 * the variable may be another program's.
 *
 * A false hint costs the operator's trust in the real ones, and a container's environment is full
 * of other programs' names (PATH, HOSTNAME, NODE_ENV, npm_config_*, KUBERNETES_*, HTTPS_PROXY,
 * PGHOST), so each rule below errs towards saying nothing.
 */
export interface Lookalike {
  /** the variable that is set (never its value: it may hold a password) */
  variable: string;
  /** the name rosterd reads that it resembles */
  resembles: string;
  /** what is set, what rosterd reads, and what rosterd does meanwhile */
  found: string;
  /** what to do */
  fix: string;
}

/** Words operators write for a word of rosterd's names, mapped to rosterd's word. */
const SYNONYMS: Readonly<Record<string, string>> = {
  URI: 'URL',
  DSN: 'URL',
  SIZE: 'BYTES',
  BYTE: 'BYTES',
  PATH: 'DIR',
  DIRS: 'DIR',
  DIRECTORY: 'DIR',
  FOLDER: 'DIR',
  DB: 'DATABASE',
  PG: 'DATABASE',
  POSTGRES: 'DATABASE',
  POSTGRESQL: 'DATABASE',
  MAIL: 'SMTP',
  EMAIL: 'SMTP',
  SENDER: 'FROM',
  ADDR: 'HOST',
  ADDRESS: 'HOST',
  HOSTNAME: 'HOST',
  BIND: 'HOST',
  IP: 'HOST',
  SEC: 'SECONDS',
  SECS: 'SECONDS',
  LVL: 'LEVEL',
  THREADS: 'WORKERS',
  MAXIMUM: 'MAX',
  ALGORITHM: 'ALGORITHMS',
};

/** A mail or database server's parts, which other programs take one variable each and rosterd as one URL. */
const URL_PARTS = new Set(['HOST', 'SERVER', 'USER', 'USERNAME', 'PASS', 'PASSWORD', 'PASSWD']);
/**
 * The first word of such a part, as written, and the URL rosterd reads instead. Not PG or POSTGRES:
 * PGHOST and PGPASSWORD are libpq's, POSTGRES_PASSWORD the postgres image's, often in one shared
 * env file. Not PORT or NAME: Kubernetes service links (SMTP_PORT=tcp://…) and Docker links
 * (DB_NAME, DB_PORT) set those for a service of that name.
 */
type UrlVariable = 'SMTP_URL' | 'DATABASE_URL';
const URL_OWNERS: Readonly<Record<string, UrlVariable>> = {
  SMTP: 'SMTP_URL',
  MAIL: 'SMTP_URL',
  EMAIL: 'SMTP_URL',
  DATABASE: 'DATABASE_URL',
  DB: 'DATABASE_URL',
};
const URL_EXAMPLE: Readonly<Record<UrlVariable, string>> = {
  SMTP_URL: 'smtp://user:password@mail.example:587',
  DATABASE_URL: 'postgres://user:password@db.example:5432/rosterd',
};
const SERVER: Readonly<Record<UrlVariable, string>> = { SMTP_URL: 'mail server', DATABASE_URL: 'database' };

/**
 * Words of other programs' names, so that a name made only of known words (HTTPS_PROXY, SSH_PORT,
 * SMTP_PORT) is read as a different name, not as a misspelling one letter away (HTTP_PORT, SFTP_PORT);
 * and ROSTERD, so that ROSTERDSFTPPORT splits like ROSTERD_SFTP_PORT.
 */
const OTHER_WORDS = ['HTTPS', 'SSH', 'FTP', 'PROXY', 'ROSTERD'];

/** rosterd's names: its variables, and the secret-file forms of some (DATABASE_URL_FILE). */
const NAMES: readonly string[] = [...CONFIG_VARIABLES, ...CONFIG_FILE_VARIABLES];

const WORDS: ReadonlySet<string> = new Set([
  ...NAMES.flatMap((name) => name.split('_')),
  ...Object.keys(SYNONYMS),
  ...URL_PARTS,
  ...OTHER_WORDS,
]);

/**
 * A name's words, in capitals: split at anything but letters and digits (_ and -), and each part
 * split into known words where it can be (SFTPPORT is SFTP PORT, PGHOST is PG HOST).
 */
function words(name: string): string[] {
  return name
    .toUpperCase()
    .split(/[^A-Z0-9]+/)
    .filter(Boolean)
    .flatMap((part) => segment(part) ?? [part]);
}

/** part as the fewest known words that spell it, or undefined if they cannot. */
function segment(part: string): string[] | undefined {
  const best: Array<string[] | undefined> = [[]];
  for (let end = 1; end <= part.length; end++) {
    for (let start = 0; start < end; start++) {
      const before = best[start];
      const word = part.slice(start, end);
      if (before === undefined || !WORDS.has(word)) continue;
      const candidate = [...before, word];
      const current = best[end];
      if (current === undefined || candidate.length < current.length) best[end] = candidate;
    }
  }
  return best[part.length];
}

/** Words as rosterd names them, without a leading ROSTERD (ROSTERD_SFTP_PORT), in order, for comparing as a set. */
function canonical(ws: readonly string[]): string {
  const rest = ws[0] === 'ROSTERD' ? ws.slice(1) : ws;
  return rest
    .map((w) => SYNONYMS[w] ?? w)
    .sort()
    .join(' ');
}

/** Letters and digits only, in capitals, without a leading ROSTERD. */
function squeezed(name: string): string {
  return name
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, '')
    .replace(/^ROSTERD(?=.)/, '');
}

const KNOWN = NAMES.map((name) => ({ name, canonical: canonical(words(name)), squeezed: squeezed(name) }));

/** One letter off in a short name, two in a long one: more would reach other programs' names. */
const maxDistance = (known: string) => (known.length >= 10 ? 2 : 1);

type Resemblance = { as: 'spelling'; known: string } | { as: 'part'; known: UrlVariable };

/** The rosterd name `name` resembles, and whether as a spelling of it or as a part of its URL. */
function resemblance(name: string): Resemblance | undefined {
  if (NAMES.includes(name)) return undefined;
  const ws = words(name);
  const key = canonical(ws);
  // The same words, in another spelling (log_level, SFTPPORT), with a synonym (SMTP_URI, DATA_PATH),
  // in another order (CRON_SCHEDULE) or with a ROSTERD_ prefix.
  const same = KNOWN.find((k) => k.canonical === key);
  if (same) return { known: same.name, as: 'spelling' };
  const written = name.toUpperCase().split(/[^A-Z0-9]+/);
  const owner = URL_OWNERS[written[0] ?? ''];
  if (owner && written.length > 1 && written.slice(1).every((w) => URL_PARTS.has(SYNONYMS[w] ?? w))) return { known: owner, as: 'part' };
  // A misspelling leaves a word rosterd does not know; a name of known words only is another name.
  if (ws.every((w) => WORDS.has(w))) return undefined;
  const letters = squeezed(name);
  let closest: { name: string; distance: number } | undefined;
  for (const k of KNOWN) {
    const max = maxDistance(k.squeezed);
    const d = editDistance(letters, k.squeezed, max);
    if (d <= max && (closest === undefined || d < closest.distance)) closest = { name: k.name, distance: d };
  }
  return closest && { known: closest.name, as: 'spelling' };
}

/** What rosterd does while `known` is unset (a NAME_FILE: while NAME is unset too). */
function whenUnset(name: string): string {
  const known = name.replace(/_FILE$/, '');
  if (known === 'DATABASE_URL') return 'it uses its embedded Postgres in DATA_DIR/pg';
  if (known === 'SMTP_URL') return 'reports are written as .eml files to DATA_DIR/outbox';
  return `it uses the default ${known}=${String(configDefaults()[known])}`;
}

/** Every set variable that resembles one rosterd reads, by name; values are never read beyond being set. */
export function findLookalikes(env: NodeJS.ProcessEnv): Lookalike[] {
  const isSet = (name: string) => (env[name] ?? '') !== '';
  const found: Lookalike[] = [];
  for (const variable of Object.keys(env).sort()) {
    if (!isSet(variable)) continue;
    const match = resemblance(variable);
    if (!match) continue;
    const { known } = match;
    if (match.as === 'part') {
      // Beside a set URL, a part is most likely another program's, and rosterd uses the URL it was given.
      if (isSet(match.known)) continue;
      found.push({
        variable,
        resembles: known,
        found: `${variable} is set but rosterd reads the ${SERVER[match.known]} only from ${known}, so ${whenUnset(known)}`,
        fix: `set ${known} instead, such as ${URL_EXAMPLE[match.known]}`,
      });
    } else if (isSet(known)) {
      found.push({
        variable,
        resembles: known,
        found: `${variable} is set but rosterd reads ${known}, which is set too and is the one used`,
        fix: `remove ${variable}`,
      });
    } else if (known.endsWith('_FILE') && isSet(known.slice(0, -'_FILE'.length))) {
      const base = known.slice(0, -'_FILE'.length);
      found.push({
        variable,
        resembles: known,
        found: `${variable} is set but rosterd reads ${known} or ${base}, and ${base} is set and is the one used`,
        fix: `remove ${variable}`,
      });
    } else {
      found.push({
        variable,
        resembles: known,
        found: `${variable} is set but rosterd reads ${known}, so ${whenUnset(known)}`,
        fix: `rename ${variable} to ${known}`,
      });
    }
  }
  return found;
}

/** One line for a log or a person: what was found and what to do. */
export function describeLookalike(lookalike: Lookalike): string {
  return `${lookalike.found}; ${lookalike.fix}`;
}
