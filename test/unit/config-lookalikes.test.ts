/**
 * Which set variables rosterd calls a misspelling of one it reads (doctor's "variable names" check
 * and serve's config.lookalike warnings are checked end to end in doctor.test.ts and
 * serve-lookalikes.test.ts), and above all which ones it leaves alone.
 */
import { describe, expect, it } from 'vitest';
import { CONFIG_FILE_VARIABLES, CONFIG_VARIABLES } from '../../src/config/config.js';
import { describeLookalike, findLookalikes } from '../../src/config/lookalikes.js';

const hints = (env: Record<string, string>) => findLookalikes(env).map((l) => [l.variable, l.resembles]);

describe('a misspelt rosterd variable', () => {
  it.each([
    ['SMTP_URI', 'SMTP_URL'], // synonym
    ['DATABSE_URL', 'DATABASE_URL'], // a letter left out
    ['DATABASE_ULR', 'DATABASE_URL'], // two swapped
    ['SFTPPORT', 'SFTP_PORT'], // no separator
    ['SFTP_PROT', 'SFTP_PORT'],
    ['MAX_UPLOAD_SIZE', 'MAX_UPLOAD_BYTES'],
    ['MAX_UPLOAD_BYTE', 'MAX_UPLOAD_BYTES'],
    ['DATA_PATH', 'DATA_DIR'],
    ['DATA_DIRECTORY', 'DATA_DIR'],
    ['data_dir', 'DATA_DIR'], // names are case-sensitive: rosterd reads only DATA_DIR
    ['Log-Level', 'LOG_LEVEL'],
    ['LOGLEVEL', 'LOG_LEVEL'],
    ['LOG_LVL', 'LOG_LEVEL'],
    ['CRON_SCHEDULE', 'SCHEDULE_CRON'], // another order
    ['SCHEDULE_CRONE', 'SCHEDULE_CRON'],
    ['DB_URL', 'DATABASE_URL'],
    ['POSTGRES_URL', 'DATABASE_URL'],
    ['MAIL_URL', 'SMTP_URL'],
    ['SMTP_FROM', 'MAIL_FROM'],
    ['EMAIL_FROM', 'MAIL_FROM'],
    ['SFTP_HOSTNAME', 'SFTP_HOST'],
    ['HTTP_ADDR', 'HTTP_HOST'],
    ['ROSTERD_SFTP_PORT', 'SFTP_PORT'], // a prefix of the program's name
    ['SETTLE_SECS', 'SETTLE_SECONDS'],
    ['SFTP_IDLE_TIMEOUT_SECOND', 'SFTP_IDLE_TIMEOUT_SECONDS'],
    ['RETENTION_DAY', 'RETENTION_DAYS'],
    ['HASH_THREADS', 'HASH_WORKERS'],
    ['SFTP_ALGORITHM', 'SFTP_ALGORITHMS'],
    ['IMPORT_MAX_ATEMPTS', 'IMPORT_MAX_ATTEMPTS'],
    ['DATABSE_URL_FILE', 'DATABASE_URL_FILE'], // the secret-file forms too
    ['DATABASE_URL_FLE', 'DATABASE_URL_FILE'],
    ['SMTP_URL_FIEL', 'SMTP_URL_FILE'],
  ])('%s is read as %s', (variable, known) => {
    expect(hints({ [variable]: 'x' })).toEqual([[variable, known]]);
  });

  it('a misspelt NAME_FILE says what rosterd does without NAME, or that NAME is set and used', () => {
    const [alone] = findLookalikes({ DATABSE_URL_FILE: '/run/secrets/db' });
    expect(describeLookalike(alone!)).toBe(
      'DATABSE_URL_FILE is set but rosterd reads DATABASE_URL_FILE, so it uses its embedded Postgres in DATA_DIR/pg; rename DATABSE_URL_FILE to DATABASE_URL_FILE',
    );
    const [beside] = findLookalikes({ SMTP_URL_FIEL: '/run/secrets/smtp', SMTP_URL: 'smtp://mail:25' });
    expect(beside?.found).toBe('SMTP_URL_FIEL is set but rosterd reads SMTP_URL_FILE or SMTP_URL, and SMTP_URL is set and is the one used');
  });

  it('says what rosterd does instead, and what to do, never with the value', () => {
    const env = {
      SMTP_URI: 'smtp://rosterd:hunter2@mail.example:25',
      DATABSE_URL: 'postgres://rosterd:s3cret@db:5432/rosterd',
      SFTPPORT: '2022',
      MAX_UPLOAD_SIZE: '5000000',
    };
    const lines = findLookalikes(env).map(describeLookalike);
    expect(lines).toEqual([
      'DATABSE_URL is set but rosterd reads DATABASE_URL, so it uses its embedded Postgres in DATA_DIR/pg; rename DATABSE_URL to DATABASE_URL',
      'MAX_UPLOAD_SIZE is set but rosterd reads MAX_UPLOAD_BYTES, so it uses the default MAX_UPLOAD_BYTES=1073741824; rename MAX_UPLOAD_SIZE to MAX_UPLOAD_BYTES',
      'SFTPPORT is set but rosterd reads SFTP_PORT, so it uses the default SFTP_PORT=2222; rename SFTPPORT to SFTP_PORT',
      'SMTP_URI is set but rosterd reads SMTP_URL, so reports are written as .eml files to DATA_DIR/outbox; rename SMTP_URI to SMTP_URL',
    ]);
    const all = JSON.stringify(findLookalikes(env));
    for (const value of Object.values(env)) expect(all).not.toContain(value);
  });

  it('beside the real one, says the real one is used', () => {
    expect(findLookalikes({ SFTP_PORT: '2222', SFTPPORT: '22' }).map(describeLookalike)).toEqual([
      'SFTPPORT is set but rosterd reads SFTP_PORT, which is set too and is the one used; remove SFTPPORT',
    ]);
  });

  it('an empty one is as good as unset, and ignored', () => {
    expect(hints({ SMTP_URI: '' })).toEqual([]);
  });
});

describe("a mail or database server's part, which rosterd takes as one URL", () => {
  it.each([
    ['SMTP_HOST', 'SMTP_URL'],
    ['SMTP_USER', 'SMTP_URL'],
    ['SMTP_PASSWORD', 'SMTP_URL'],
    ['MAIL_HOST', 'SMTP_URL'],
    ['EMAIL_HOST_PASSWORD', 'SMTP_URL'],
    ['DB_HOST', 'DATABASE_URL'],
    ['DATABASE_PASSWORD', 'DATABASE_URL'],
  ])('%s points to %s while that is unset', (variable, known) => {
    expect(hints({ [variable]: 'x' })).toEqual([[variable, known]]);
    expect(hints({ [variable]: 'x', [known]: 'set' }), 'beside the URL it is another program’s').toEqual([]);
  });

  it('says to set the URL, not that SMTP_HOST is a misspelt SFTP_HOST', () => {
    expect(findLookalikes({ SMTP_HOST: 'mail.example' }).map(describeLookalike)).toEqual([
      'SMTP_HOST is set but rosterd reads the mail server only from SMTP_URL, so reports are written as .eml files to DATA_DIR/outbox; ' +
        'set SMTP_URL instead, such as smtp://user:password@mail.example:587',
    ]);
  });
});

/**
 * What a rosterd container or host holds besides rosterd's own: a node image under Docker and
 * compose, Kubernetes service links (services named sftp, smtp, mail, db, database, postgres,
 * rosterd, http), Docker's legacy links, npm run, CI, a login shell, libpq, the postgres image
 * (a shared env file), proxies, other programs' settings.
 */
const REALISTIC_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/home/node',
  HOSTNAME: 'rosterd-7d9f8c6b5-x2kqp',
  PWD: '/app',
  OLDPWD: '/',
  SHLVL: '1',
  TERM: 'xterm',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  TZ: 'America/Chicago',
  USER: 'node',
  LOGNAME: 'node',
  SHELL: '/bin/bash',
  MAIL: '/var/mail/node',
  MAILCHECK: '60',
  MAILPATH: '/var/mail/node',
  EDITOR: 'vi',
  PAGER: 'less',
  TMPDIR: '/tmp',
  HISTFILE: '/root/.bash_history',
  HOSTTYPE: 'x86_64',
  DISPLAY: ':0',
  XDG_DATA_DIRS: '/usr/local/share:/usr/share',
  XDG_CONFIG_DIRS: '/etc/xdg',
  XDG_RUNTIME_DIR: '/run/user/1000',
  XDG_DATA_HOME: '/home/node/.local/share',
  XDG_SESSION_TYPE: 'tty',
  DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus',
  SSH_AUTH_SOCK: '/tmp/ssh-XXXX/agent.1',
  SSH_CLIENT: '10.0.0.1 50000 22',
  SSH_CONNECTION: '10.0.0.1 50000 10.0.0.2 22',
  SSH_TTY: '/dev/pts/0',
  SSL_CERT_DIR: '/etc/ssl/certs',
  SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
  NODE_VERSION: '20.19.0',
  YARN_VERSION: '1.22.22',
  NODE_ENV: 'production',
  NODE_OPTIONS: '--max-old-space-size=512',
  NODE_PATH: '/usr/local/lib/node_modules',
  NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/corp.pem',
  NODE_TLS_REJECT_UNAUTHORIZED: '1',
  UV_THREADPOOL_SIZE: '8',
  npm_config_cache: '/home/node/.npm',
  npm_config_loglevel: 'warn',
  npm_config_user_agent: 'npm/11.0.0 node/v20.19.0 linux x64',
  npm_config_prefix: '/usr/local',
  npm_config_local_prefix: '/app',
  npm_config_globalconfig: '/usr/local/etc/npmrc',
  npm_config_userconfig: '/home/node/.npmrc',
  npm_config_noproxy: '',
  npm_config_node_gyp: '/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
  npm_execpath: '/usr/local/lib/node_modules/npm/bin/npm-cli.js',
  npm_node_execpath: '/usr/local/bin/node',
  npm_lifecycle_event: 'start',
  npm_lifecycle_script: 'npm run build && exec node dist/cli/main.js serve',
  npm_package_name: 'rosterd',
  npm_package_version: '0.1.0',
  npm_package_json: '/app/package.json',
  npm_command: 'run-script',
  INIT_CWD: '/app',
  COLOR: '0',
  EDITOR_DIR: '/usr/bin',
  KUBERNETES_SERVICE_HOST: '10.96.0.1',
  KUBERNETES_SERVICE_PORT: '443',
  KUBERNETES_SERVICE_PORT_HTTPS: '443',
  KUBERNETES_PORT: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP: 'tcp://10.96.0.1:443',
  KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
  KUBERNETES_PORT_443_TCP_PORT: '443',
  KUBERNETES_PORT_443_TCP_ADDR: '10.96.0.1',
  ROSTERD_SERVICE_HOST: '10.96.12.7',
  ROSTERD_SERVICE_PORT: '2222',
  ROSTERD_SERVICE_PORT_SFTP: '2222',
  ROSTERD_SERVICE_PORT_HTTP: '8080',
  ROSTERD_PORT: 'tcp://10.96.12.7:2222',
  ROSTERD_PORT_2222_TCP: 'tcp://10.96.12.7:2222',
  ROSTERD_PORT_2222_TCP_ADDR: '10.96.12.7',
  ROSTERD_PORT_2222_TCP_PORT: '2222',
  ROSTERD_PORT_2222_TCP_PROTO: 'tcp',
  ROSTERD_PORT_8080_TCP_ADDR: '10.96.12.7',
  SFTP_SERVICE_HOST: '10.96.3.3',
  SFTP_SERVICE_PORT: '22',
  SFTP_PORT_22_TCP: 'tcp://10.96.3.3:22',
  SFTP_PORT_22_TCP_ADDR: '10.96.3.3',
  SMTP_SERVICE_HOST: '10.96.4.4',
  SMTP_SERVICE_PORT: '25',
  SMTP_PORT: 'tcp://10.96.4.4:25',
  SMTP_PORT_25_TCP_ADDR: '10.96.4.4',
  MAIL_SERVICE_HOST: '10.96.5.5',
  MAIL_PORT: 'tcp://10.96.5.5:1025',
  MAIL_PORT_1025_TCP_ADDR: '10.96.5.5',
  MAILPIT_SERVICE_HOST: '10.96.5.6',
  MAILPIT_PORT: 'tcp://10.96.5.6:1025',
  DB_SERVICE_HOST: '10.96.6.6',
  DB_SERVICE_PORT: '5432',
  DB_PORT: 'tcp://10.96.6.6:5432',
  DB_PORT_5432_TCP_ADDR: '10.96.6.6',
  DB_PORT_5432_TCP_PORT: '5432',
  DB_NAME: '/rosterd/db',
  DB_ENV_POSTGRES_USER: 'rosterd',
  DB_ENV_POSTGRES_PASSWORD: 'rosterd',
  DATABASE_SERVICE_HOST: '10.96.7.7',
  DATABASE_PORT: 'tcp://10.96.7.7:5432',
  POSTGRES_SERVICE_HOST: '10.96.8.8',
  POSTGRES_PORT: 'tcp://10.96.8.8:5432',
  POSTGRES_PORT_5432_TCP_ADDR: '10.96.8.8',
  HTTP_SERVICE_HOST: '10.96.9.9',
  POSTGRES_USER: 'rosterd',
  POSTGRES_PASSWORD: 'rosterd',
  POSTGRES_DB: 'rosterd',
  POSTGRES_HOST_AUTH_METHOD: 'scram-sha-256',
  POSTGRES_INITDB_ARGS: '--locale=C.UTF-8',
  PGDATA: '/var/lib/postgresql/data',
  PGHOST: 'db',
  PGPORT: '5432',
  PGUSER: 'rosterd',
  PGPASSWORD: 'rosterd',
  PGDATABASE: 'rosterd',
  PGSSLMODE: 'require',
  PGAPPNAME: 'rosterd',
  PG_MAJOR: '16',
  PG_VERSION: '16.4-1.pgdg120+1',
  HTTP_PROXY: 'http://proxy:3128',
  HTTPS_PROXY: 'http://proxy:3128',
  NO_PROXY: 'localhost,127.0.0.1,.svc',
  http_proxy: 'http://proxy:3128',
  https_proxy: 'http://proxy:3128',
  no_proxy: 'localhost',
  ALL_PROXY: 'socks5://proxy:1080',
  REQUESTS_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
  CURL_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
  CI: 'true',
  GITHUB_ACTIONS: 'true',
  GITHUB_WORKSPACE: '/home/runner/work/rosterd/rosterd',
  GITHUB_SHA: '0123456789abcdef',
  GITHUB_REF: 'refs/heads/main',
  GITHUB_ENV: '/home/runner/work/_temp/_runner_file_commands/set_env',
  GITHUB_PATH: '/home/runner/work/_temp/_runner_file_commands/add_path',
  RUNNER_OS: 'Linux',
  RUNNER_TEMP: '/home/runner/work/_temp',
  RUNNER_TOOL_CACHE: '/opt/hostedtoolcache',
  ACTIONS_RUNNER_DEBUG: 'false',
  IMAGE_OS: 'ubuntu24',
  JAVA_HOME: '/usr/lib/jvm/java-17',
  GOPATH: '/home/runner/go',
  PYTHONPATH: '/app/lib',
  PYTHONUNBUFFERED: '1',
  PIP_DEFAULT_TIMEOUT: '60',
  VIRTUAL_ENV: '/opt/venv',
  LD_LIBRARY_PATH: '/usr/local/lib',
  MANPATH: '/usr/share/man',
  AWS_REGION: 'us-east-1',
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'AKIA0000',
  AWS_SECRET_ACCESS_KEY: 'xxxx',
  GOOGLE_APPLICATION_CREDENTIALS: '/var/secrets/google/key.json',
  DD_AGENT_HOST: '10.0.0.9',
  DD_ENV: 'prod',
  DD_SERVICE: 'rosterd',
  DD_LOG_LEVEL: 'warn',
  DD_TRACE_ENABLED: 'true',
  SENTRY_DSN: 'https://key@sentry.example/1',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel:4317',
  OTEL_SERVICE_NAME: 'rosterd',
  REDIS_URL: 'redis://redis:6379',
  AMQP_URL: 'amqp://rabbit',
  API_URL: 'https://api.example',
  BASE_URL: 'https://rosterd.example',
  APP_URL: 'https://rosterd.example',
  PORT: '8080',
  HOST: '0.0.0.0',
  SERVER_PORT: '8080',
  LISTEN_PORT: '8080',
  DEBUG: 'express:*',
  LOG_FORMAT: 'json',
  RUST_LOG: 'info',
  SFTP_USER: 'lincoln-usd',
  SSH_PORT: '22',
  HTTPS_PORT: '8443',
  HTTP_PROXY_PORT: '3128',
  FTP_HOST: 'ftp.example',
  EMAIL_USE_TLS: 'true',
  EMAIL_BACKEND: 'smtp',
  MAIL_MAILER: 'smtp',
  MAIL_ENCRYPTION: 'tls',
  SMTPS_PORT: '465',
  DATABASE_URL_FILE: '/run/secrets/database_url',
  CONTAINER_NAME: 'rosterd',
  DEBIAN_FRONTEND: 'noninteractive',
  container: 'docker',
};

describe('no hint for other programs’ variables', () => {
  it('says nothing of a realistic container, Kubernetes, npm and CI environment', () => {
    expect(hints(REALISTIC_ENV)).toEqual([]);
  });

  it("says nothing of rosterd's own names, all set", () => {
    expect(hints(Object.fromEntries([...CONFIG_VARIABLES, ...CONFIG_FILE_VARIABLES].map((name) => [name, 'x'])))).toEqual([]);
  });

  it('still finds the misspelling among them', () => {
    expect(hints({ ...REALISTIC_ENV, SMTP_URI: 'smtp://mail:25' })).toEqual([['SMTP_URI', 'SMTP_URL']]);
  });
});
