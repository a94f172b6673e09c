import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import cron from 'node-cron';
import { z } from 'zod';
import { describeFileError, RosterdError } from '../errors.js';

/**
 * A whole number written in decimal digits, spaces around it ignored. Not z.coerce.number(): it
 * reads a value of only spaces as 0 (SFTP_PORT=" " listened on a random port, the SIS could not
 * connect, and nothing said why), and accepts 0x16, 1e3 and 0b1 as numbers nobody meant to write.
 */
const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^-?[0-9]+$/, 'a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** `addr@host` or `Display Name <addr@host>`; a host without a dot (localhost) is allowed, as SMTP allows it. */
function isMailbox(value: string): boolean {
  const match = /^(?:[^<>]*<([^<>\s]+)>|([^<>\s]+))$/.exec(value.trim());
  const address = match?.[1] ?? match?.[2];
  return address !== undefined && /^[^@\s"(),:;<>[\\\]]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(address);
}

/** A URL that names a mail server: a host, and a port (when given) that a socket can connect to. */
function isMailServerUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value); // refuses a port above 65535
  } catch {
    return false;
  }
  return url.hostname !== '' && url.port !== '0';
}

/**
 * An address to listen on: an IP address or a host name, without port or brackets. Whether the
 * name is one of this machine's only listening tells; a port or a URL here is caught at start.
 */
function isListenHost(value: string): boolean {
  // A name with no letter (1.2.3) is a mistyped address, not a host name.
  return isIP(value) !== 0 || (value.length <= 253 && /[A-Za-z]/.test(value) && z.regexes.hostname.test(value));
}
const LISTEN_HOST = 'an IP address (0.0.0.0, ::, 127.0.0.1) or a host name of this machine, without a port';

/** pino's levels, and silent. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * The whole configuration of rosterd, read from the environment (PRODUCT.md §8). Each field says
 * what it is and what its default or 0 means. Validated once at start, frozen after.
 */
const envSchema = z.object({
  /** Postgres connection string. Unset: an embedded Postgres kept in DATA_DIR/pg. */
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// URL')
    .optional(),
  /** Where host keys, tenants' SFTP folders, upload copies, the embedded Postgres and the .eml outbox live. */
  DATA_DIR: z.string().regex(/\S/, 'a path to a folder, such as /var/lib/rosterd').default('./data'),
  /** Address the SFTP server binds to. */
  SFTP_HOST: z.string().default('0.0.0.0').refine(isListenHost, LISTEN_HOST),
  /** SFTP port; 0 picks a free port (tests). */
  SFTP_PORT: int(0, 65535).default(2222),
  /** Largest accepted upload in bytes (default 1 GiB). */
  MAX_UPLOAD_BYTES: int(1, Number.MAX_SAFE_INTEGER).default(1024 ** 3),
  /** SMTP server for reports, e.g. smtp://user:pass@mail:587. Unset: .eml files in DATA_DIR/outbox. */
  SMTP_URL: z
    .string()
    .regex(/^smtps?:\/\//, 'an smtp:// or smtps:// URL')
    // Checked here, not at the first report: nodemailer takes a URL without a host as localhost
    // and fails every send of one whose port is out of range, so serve started and each report
    // waited in the outbox, retried for ever, for a typo.
    .refine(isMailServerUrl, 'an smtp:// or smtps:// URL with a host and a port from 1 to 65535, e.g. smtp://user:pass@mail.example:587')
    .optional(),
  /** Sender of report emails: an address, with or without a display name. */
  MAIL_FROM: z
    .string()
    .default('rosterd <rosterd@localhost>')
    .refine(isMailbox, 'an email address such as rosterd@district.example or "rosterd <rosterd@district.example>"'),
  /** node-cron expression for the import tick (default every 5 minutes). */
  SCHEDULE_CRON: z
    .string()
    .default('*/5 * * * *')
    .refine((v) => cron.validate(v), 'a valid cron expression such as "*/5 * * * *"'),
  /** Address the health and metrics endpoint binds to. */
  HTTP_HOST: z.string().default('0.0.0.0').refine(isListenHost, LISTEN_HOST),
  /** Port of /healthz, /readyz, /metrics; 0 picks a free port (tests). */
  HTTP_PORT: int(0, 65535).default(8080),
  /** pino level. */
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  /** An upload is imported only after it has been quiet this long, so users.csv and groups.csv pushed together are imported together. */
  SETTLE_SECONDS: int(0, 86_400).default(120),
  /** Failed attempts after which an upload is marked failed and reported. */
  IMPORT_MAX_ATTEMPTS: int(1, 100).default(3),
  /**
   * How long a claim on an upload lasts before another process may retry it. A killed importer's
   * upload is taken back at once (claim-lock.ts); this is for one whose host vanished.
   */
  CLAIM_TTL_SECONDS: int(10, 86_400).default(600),
  /** How long shutdown lets transfers and imports in flight finish before ending them. */
  SHUTDOWN_GRACE_SECONDS: int(0, 3_600).default(30),
  /** Received upload copies, and the bodies and .eml files of reports sent, older than this are deleted (records stay). 0 keeps them forever. */
  RETENTION_DAYS: int(0, 36_500).default(30),
  /** An SFTP connection idle this long is closed. 0 disables. */
  SFTP_IDLE_TIMEOUT_SECONDS: int(0, 86_400).default(600),
  /**
   * compatible: also SHA-1 (ssh-rsa signatures and host key signatures, hmac-sha1) and compression
   * before login, for old SIS clients; modern: only SHA-2 and compression after login.
   */
  SFTP_ALGORITHMS: z.enum(['compatible', 'modern']).default('compatible'),
  /** Time a client has to authenticate after connecting. */
  SFTP_LOGIN_TIMEOUT_SECONDS: int(1, 600).default(30),
  /** Failed logins from one address within SFTP_BLOCK_SECONDS before the address is blocked. */
  SFTP_MAX_AUTH_FAILURES: int(1, 10_000).default(10),
  /** How long an address stays blocked after too many failures. */
  SFTP_BLOCK_SECONDS: int(1, 86_400).default(900),
  /** Worker threads for password hashing; 0 means one per CPU core. */
  HASH_WORKERS: int(0, 256).default(0),
  /**
   * How long a command (not serve) waits for a database lock another session holds before it
   * gives up and names the sessions holding transactions open; 0 waits for ever. The waits rosterd
   * means (for another process's migrations, for an import of the same tenant) are not cut.
   */
  CLI_LOCK_TIMEOUT_SECONDS: int(0, 3_600).default(30),
});

export type RawEnv = z.input<typeof envSchema>;
export type Config = Readonly<z.output<typeof envSchema> & { DATA_DIR: string }>;

/**
 * The variable names, in the schema's order: the one list that config/rosterd.env and README's
 * table are checked against, so a variable added here cannot go undocumented.
 */
export const CONFIG_VARIABLES: readonly string[] = Object.freeze(Object.keys(envSchema.shape));

/**
 * The variables that hold a password, each of which may instead be read from a file named by
 * NAME_FILE: a Docker or Kubernetes secret (/run/secrets/…), kept out of the environment, which
 * `docker inspect`, /proc/PID/environ and crash reports show.
 */
const SECRET_VARIABLES = ['DATABASE_URL', 'SMTP_URL'] as const;
export const CONFIG_FILE_VARIABLES: readonly string[] = Object.freeze(SECRET_VARIABLES.map((name) => `${name}_FILE`));

/**
 * Each variable's default as the schema has it (undefined: unset by default), DATA_DIR as written
 * (not resolved against the working directory), so documentation can be compared with the code.
 */
export function configDefaults(): Record<string, string | number | undefined> {
  return envSchema.parse({});
}

/** One bad variable: its name, and the line that says what it holds and what is expected. */
export interface ConfigProblem {
  variable: string;
  message: string;
}

/**
 * Parse and freeze the configuration. Bad values throw CONFIG_INVALID naming every one, a line
 * each (details.errors lists them), so that an operator fixes them all before the next start.
 *
 * An empty value is unset (`SMTP_URL=` in an env file, `SMTP_URL: ""` in compose). Whitespace
 * around a value is dropped: a space pasted with it, or the CR of an env file saved with CRLF line
 * ends, made DATA_DIR a folder named "data\r" and LOG_LEVEL "info " a bad level. A value of only
 * whitespace is refused, as one that holds nothing rosterd can use and was not meant as unset.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const given: Record<string, string> = {};
  const picked: Record<string, string> = {};
  for (const key of CONFIG_VARIABLES) {
    const value = env[key];
    if (value === undefined || value === '') continue;
    given[key] = value;
    picked[key] = value.trim();
  }
  const fromFiles = readSecretFiles(env, given, picked);
  const result = envSchema.safeParse(picked);
  if (!result.success || fromFiles.problems.length > 0) {
    const problems = [...fromFiles.problems, ...(result.success ? [] : configProblems(result.error.issues, given, fromFiles.read))].sort(
      (a, b) => schemaOrder(a.variable.replace(/_FILE$/, '')) - schemaOrder(b.variable.replace(/_FILE$/, '')),
    );
    throw new RosterdError('CONFIG_INVALID', problems.map((p) => p.message).join('\n'), { details: { errors: problems } });
  }
  const config = { ...result.data, DATA_DIR: path.resolve(result.data.DATA_DIR) };
  return Object.freeze(config);
}

/**
 * SECRET_VARIABLES given as NAME_FILE: the file's content (surrounding whitespace dropped, as a
 * secret file usually ends in a newline) goes into `given` and `picked` as if set directly. `read`
 * maps each variable so set to its file, for messages about the value.
 */
function readSecretFiles(
  env: NodeJS.ProcessEnv,
  given: Record<string, string>,
  picked: Record<string, string>,
): { problems: ConfigProblem[]; read: Map<string, string> } {
  const problems: ConfigProblem[] = [];
  const read = new Map<string, string>();
  for (const name of SECRET_VARIABLES) {
    const fileVariable = `${name}_FILE`;
    const file = env[fileVariable]?.trim();
    if (file === undefined || file === '') continue;
    const problem = (message: string) => problems.push({ variable: fileVariable, message });
    if (given[name] !== undefined) {
      problem(`${name} and ${fileVariable} are both set: rosterd would not know which to use. Unset one of them and start again.`);
      continue;
    }
    let content: string;
    try {
      content = readFileSync(file, 'utf8').trim();
    } catch (err) {
      problem(
        `${fileVariable}=${JSON.stringify(file)} cannot be read: ${describeFileError(err)}. Fix ${fileVariable} or the file, and start again.`,
      );
      continue;
    }
    if (content === '') {
      problem(`${fileVariable}=${JSON.stringify(file)} names an empty file: it should hold ${name}. Fix the file and start again.`);
      continue;
    }
    given[name] = picked[name] = content;
    read.set(name, file);
  }
  return { problems, read };
}

/** Where a variable's problems are told: in the schema's order, which is the README table's. */
const schemaOrder = (name: string) => (CONFIG_VARIABLES.includes(name) ? CONFIG_VARIABLES.indexOf(name) : CONFIG_VARIABLES.length);

/** The first issue of each variable (a value can break several checks: one line says enough). */
function configProblems(
  issues: readonly z.core.$ZodIssue[],
  given: Record<string, string>,
  fromFiles: Map<string, string>,
): ConfigProblem[] {
  const first = new Map<string, z.core.$ZodIssue>();
  for (const issue of issues) {
    const name = String(issue.path[0] ?? 'environment');
    if (!first.has(name)) first.set(name, issue);
  }
  return [...first].map(([name, issue]) => {
    const value = given[name];
    // A URL may hold a password; one of only whitespace holds none, and showing it says what is wrong.
    const secret = (name === 'DATABASE_URL' || name === 'SMTP_URL') && value?.trim() !== '';
    const shown = secret ? '(redacted)' : JSON.stringify(value);
    // Kubernetes sets <SERVICE>_PORT=tcp://10.0.0.7:22 for every Service of the namespace: one
    // named sftp or http takes rosterd's name, and nobody in the pod spec wrote that value.
    const serviceLink = name.endsWith('_PORT') && /^tcp:\/\/\S+:\d+$/.test(value?.trim() ?? '');
    const fix = serviceLink
      ? `This is a Kubernetes service link (a Service named ${name.slice(0, -'_PORT'.length).toLowerCase()} in the namespace): ` +
        `set ${name} in the pod spec, or enableServiceLinks: false, and start again.`
      : `Fix the environment variable ${name} and start again.`;
    const file = fromFiles.get(name);
    if (file !== undefined) {
      const where = `${name}_FILE=${JSON.stringify(file)}`;
      return {
        variable: `${name}_FILE`,
        message: `${name} read from ${where} is not valid: expected ${describeIssue(issue)}. Fix the file and start again.`,
      };
    }
    return { variable: name, message: `${name}=${shown} is not valid: expected ${describeIssue(issue)}. ${fix}` };
  });
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'too_small':
      return issue.origin === 'string' ? `at least ${String(issue.minimum)} characters` : `a number of at least ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'string' ? `at most ${String(issue.maximum)} characters` : `a number of at most ${String(issue.maximum)}`;
    case 'invalid_type':
      return issue.expected === 'number' || issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`;
    case 'invalid_value':
      return `one of ${issue.values.map((v) => String(v)).join(', ')}`;
    default:
      return issue.message;
  }
}

/** The configuration as it may be logged: credentials in URLs are masked. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const mask = (url: string | undefined) => url?.replace(/\/\/([^:@/]*):([^@/]*)@/, '//$1:***@');
  // An unset URL is left out: the logger censors these keys whatever their value, and
  // "[redacted]" for a variable that is not set reads as if it were.
  const { DATABASE_URL, SMTP_URL, ...rest } = config;
  return {
    ...rest,
    ...(DATABASE_URL === undefined ? { database: 'embedded (DATABASE_URL unset)' } : { DATABASE_URL: mask(DATABASE_URL) }),
    ...(SMTP_URL === undefined ? { mail: '.eml outbox (SMTP_URL unset)' } : { SMTP_URL: mask(SMTP_URL) }),
  };
}
