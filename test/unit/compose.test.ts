/**
 * The container files (issue 5) cannot be run here (no Docker engine), so this checks what can
 * go wrong without running them: docker/compose.yml parses, wires rosterd to its Postgres and mail
 * catcher with values loadConfig accepts, and the Dockerfile builds with the commands CI runs.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8');

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };
type YamlMap = { [key: string]: Yaml };

/**
 * The block-style YAML that compose files are written in: mappings, sequences, plain and quoted
 * scalars, comments. Anything else (flow collections, anchors, block scalars, tags) is refused
 * with its line number, rather than misread. (No YAML package is installed; if one is added,
 * use it here instead.)
 */
function parseYaml(text: string): Yaml {
  interface Line {
    indent: number;
    text: string;
    no: number;
  }
  const lines: Line[] = [];
  text.split('\n').forEach((raw, i) => {
    if (/^\s*\t/.test(raw)) throw new Error(`line ${i + 1}: tab indentation`);
    const body = stripComment(raw).trimEnd();
    if (body.trim() === '' || (i === 0 && body === '---')) return;
    const t = body.trimStart();
    if (/^[[{&*!|>%]|^\? |^---|^\.\.\./.test(t) || /:\s+[[{&*!|>]/.test(t) || /^-\s+[[{&*!|>]/.test(t)) {
      throw new Error(`line ${i + 1}: YAML feature not supported by this test's parser: ${t}`);
    }
    lines.push({ indent: body.length - t.length, text: t, no: i + 1 });
  });
  let i = 0;
  const isItem = (l: Line) => l.text === '-' || l.text.startsWith('- ');
  const mapLine = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s+(.*))?$/;

  function block(indent: number): Yaml {
    const first = lines[i];
    if (!first || first.indent < indent) return null;
    return isItem(first) ? seq(first.indent) : map(first.indent);
  }
  function valueAfterKey(keyIndent: number): Yaml {
    const next = lines[i];
    if (!next) return null;
    if (next.indent > keyIndent) return block(next.indent);
    if (next.indent === keyIndent && isItem(next)) return seq(keyIndent); // "key:\n- item"
    return null;
  }
  function map(indent: number): YamlMap {
    const out: YamlMap = {};
    for (let l = lines[i]; l && l.indent === indent && !isItem(l); l = lines[i]) {
      const m = mapLine.exec(l.text);
      if (!m) throw new Error(`line ${l.no}: expected "key: value", got ${l.text}`);
      const key = String(scalar(m[1] ?? '', l.no));
      if (key in out) throw new Error(`line ${l.no}: duplicate key ${key}`);
      i++;
      out[key] = m[2] === undefined || m[2] === '' ? valueAfterKey(indent) : scalar(m[2], l.no);
    }
    const l = lines[i];
    if (l && l.indent > indent) throw new Error(`line ${l.no}: unexpected indentation`);
    return out;
  }
  function seq(indent: number): Yaml[] {
    const out: Yaml[] = [];
    for (let l = lines[i]; l && l.indent === indent && isItem(l); l = lines[i]) {
      const rest = l.text.slice(1).trimStart();
      if (rest === '') {
        i++;
        out.push(block(indent + 1));
      } else if (mapLine.test(rest) && !/^["']/.test(rest)) {
        // "- key: value" starts a mapping whose keys line up with "key"
        lines[i] = { indent: indent + (l.text.length - rest.length), text: rest, no: l.no };
        out.push(map(indent + (l.text.length - rest.length)));
      } else {
        i++;
        out.push(scalar(rest, l.no));
      }
    }
    return out;
  }
  const doc = block(0);
  if (i < lines.length) throw new Error(`line ${lines[i]?.no}: unexpected content`);
  return doc;

  function stripComment(raw: string): string {
    let quote: string | null = null;
    for (let k = 0; k < raw.length; k++) {
      const c = raw[k];
      if (quote) {
        if (c === '\\' && quote === '"') k++;
        else if (c === quote) quote = null;
      } else if (c === '"' || c === "'") {
        if (k === 0 || /[\s:\-[{,]/.test(raw[k - 1] ?? '')) quote = c;
      } else if (c === '#' && (k === 0 || /\s/.test(raw[k - 1] ?? ''))) {
        return raw.slice(0, k);
      }
    }
    return raw;
  }
  function scalar(s: string, no: number): Yaml {
    const t = s.trim();
    if (t.startsWith('"')) {
      if (!/^"(?:[^"\\]|\\.)*"$/.test(t)) throw new Error(`line ${no}: bad double-quoted string`);
      return JSON.parse(t) as string;
    }
    if (t.startsWith("'")) {
      if (!/^'(?:[^']|'')*'$/.test(t)) throw new Error(`line ${no}: bad single-quoted string`);
      return t.slice(1, -1).replace(/''/g, "'");
    }
    if (/^(true|false)$/.test(t)) return t === 'true';
    if (/^(null|~)$/.test(t)) return null;
    if (/^-?\d+$/.test(t)) return Number(t);
    return t;
  }
}

function asMap(v: Yaml | undefined, what: string): YamlMap {
  if (v === null || v === undefined || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} is not a mapping`);
  return v;
}

/** compose `environment:` as a mapping or as a list of KEY=VALUE. */
function environment(service: YamlMap): Record<string, string> {
  const env = service.environment;
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e) => String(e).split(/=(.*)/s).slice(0, 2) as [string, string]));
  }
  return Object.fromEntries(Object.entries(asMap(env, 'environment')).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** The Dockerfile as instructions, continuation lines joined; ARG defaults substituted. */
function dockerfile(): Array<{ op: string; args: string }> {
  const joined = read('Dockerfile')
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const args: Record<string, string> = {};
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [op = '', ...rest] = l.split(/\s+/);
      const line = { op: op.toUpperCase(), args: rest.join(' ').replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? `\${${n}}`) };
      const arg = /^(\w+)=(\S+)$/.exec(line.args);
      if (line.op === 'ARG' && arg?.[1] && arg[2]) args[arg[1]] = arg[2];
      return line;
    });
}

/** ENV lines of the final stage, as the container's environment before compose adds its own. */
function imageEnv(): Record<string, string> {
  const lines = dockerfile();
  const lastFrom = lines.map((l) => l.op).lastIndexOf('FROM');
  const env: Record<string, string> = {};
  for (const l of lines.slice(lastFrom)) {
    if (l.op !== 'ENV') continue;
    for (const m of l.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '');
  }
  return env;
}

describe('docker/compose.yml', () => {
  const compose = asMap(parseYaml(read('docker/compose.yml')), 'compose.yml');
  const services = asMap(compose.services, 'services');
  const rosterd = asMap(services.rosterd, 'services.rosterd');
  const env = { ...imageEnv(), ...environment(rosterd) };

  it('has rosterd, Postgres 16 and a mail catcher with a web UI', () => {
    expect(asMap(services.postgres, 'postgres').image).toBe('postgres:16');
    const mail = asMap(services.mailpit, 'mailpit');
    expect(mail.image).toMatch(/^axllent\/mailpit(:|$)/);
    expect(mail.ports).toContain('8025:8025');
    const build = asMap(rosterd.build, 'rosterd.build');
    const context = path.resolve(ROOT, 'docker', String(build.context));
    expect(context).toBe(ROOT);
    expect(existsSync(path.join(context, String(build.dockerfile ?? 'Dockerfile')))).toBe(true);
  });

  it('passes rosterd only variables that loadConfig knows, with values it accepts', () => {
    const config = loadConfig(env) as Record<string, unknown>;
    for (const name of Object.keys(env).filter((k) => k !== 'NODE_ENV')) {
      expect(config, `${name} is set for rosterd but is not a rosterd variable (src/config/config.ts)`).toHaveProperty(name);
    }
  });

  it('passes every variable the daemon needs in a container: database, mail, data directory, sender', () => {
    for (const name of ['DATABASE_URL', 'SMTP_URL', 'DATA_DIR', 'MAIL_FROM']) expect(env[name], name).toBeTruthy();
  });

  it('points DATABASE_URL at the Postgres service with its user, password and database', () => {
    const postgres = asMap(services.postgres, 'postgres');
    const pgEnv = environment(postgres);
    const url = new URL(env.DATABASE_URL ?? '');
    expect(url.hostname).toBe('postgres');
    expect(url.port || '5432').toBe('5432');
    expect(decodeURIComponent(url.username)).toBe(pgEnv.POSTGRES_USER);
    expect(decodeURIComponent(url.password)).toBe(pgEnv.POSTGRES_PASSWORD);
    expect(url.pathname).toBe(`/${pgEnv.POSTGRES_DB}`);
    expect(asMap(postgres.healthcheck, 'postgres.healthcheck').test).toBeTruthy();
    expect(postgres.volumes, 'Postgres keeps its data on a named volume').toEqual(['postgres-data:/var/lib/postgresql/data']);
    const dependsOn = asMap(rosterd.depends_on, 'rosterd.depends_on');
    expect(asMap(dependsOn.postgres, 'depends_on.postgres').condition).toBe('service_healthy');
  });

  it("points SMTP_URL at the mail catcher's SMTP port", () => {
    const url = new URL(env.SMTP_URL ?? '');
    expect(url.protocol).toBe('smtp:');
    expect(url.hostname).toBe('mailpit');
    expect(url.port).toBe('1025');
    expect(asMap(rosterd.depends_on, 'rosterd.depends_on')).toHaveProperty('mailpit');
  });

  it('publishes the SFTP and HTTP ports rosterd listens on, and keeps DATA_DIR on a named volume', () => {
    const config = loadConfig(env);
    const published = (rosterd.ports as Yaml[]).map((p) => String(p).split(':').at(-1));
    expect(published).toContain(String(config.SFTP_PORT));
    expect(published).toContain(String(config.HTTP_PORT));
    const mounts = (rosterd.volumes as Yaml[]).map((v) => String(v).split(':'));
    const data = mounts.find(([, target]) => target === config.DATA_DIR);
    expect(data, `a volume mounted at DATA_DIR=${config.DATA_DIR}`).toBeDefined();
    expect(asMap(compose.volumes, 'volumes')).toHaveProperty(data?.[0] ?? '');
    // docker stop must wait longer than the daemon's own grace period
    const grace = Number(/^(\d+)s$/.exec(String(rosterd.stop_grace_period))?.[1]);
    expect(grace).toBeGreaterThan(config.SHUTDOWN_GRACE_SECONDS);
  });

  it('refuses YAML it cannot read rather than misreading it', () => {
    expect(() => parseYaml('a: [1, 2]')).toThrow(/line 1: YAML feature not supported/);
    expect(parseYaml("a:\n  - x: 1\n    y: \"two # not a comment\"  # comment\n  - b\nc: 'it''s'")).toEqual({
      a: [{ x: 1, y: 'two # not a comment' }, 'b'],
      c: "it's",
    });
  });
});

describe('Dockerfile', () => {
  const lines = dockerfile();
  const runs = lines.filter((l) => l.op === 'RUN').map((l) => l.args);
  const stages = lines.filter((l) => l.op === 'FROM').map((l) => l.args);

  it('is multi-stage on a Node LTS slim image', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s).toMatch(/^node:(20|22)-slim( AS \w+)?$/i);
  });

  it('builds with the commands CI runs: npm ci, then npm run build (the first step of npm test)', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.build).toBeTruthy();
    expect(pkg.scripts.test).toMatch(/^npm run build\b/);
    expect(read('.ci/run')).toMatch(/^npm test$/m);
    const install = runs.findIndex((r) => /(^|&& )npm ci( |$)/.test(r) && !r.includes('--omit=dev'));
    const build = runs.findIndex((r) => /(^|&& )npm run build( |$)/.test(r));
    expect(install, 'a RUN npm ci').toBeGreaterThanOrEqual(0);
    expect(build, 'a RUN npm run build after it').toBeGreaterThan(install);
    expect(existsSync(path.join(ROOT, 'package-lock.json'))).toBe(true);
    // what the build reads is copied in (and not excluded by .dockerignore)
    const copies = lines.filter((l) => l.op === 'COPY').map((l) => l.args);
    for (const needed of ['package-lock.json', 'tsconfig.json', 'src'])
      expect(
        copies.some((c) => c.split(' ').includes(needed)),
        needed,
      ).toBe(true);
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'src']) expect(ignored).not.toContain(needed);
    for (const heavy of ['node_modules', 'dist', 'data', '.git']) expect(ignored).toContain(heavy);
  });

  it('has native/ in place wherever npm ci runs (its install script builds the addon), and ships the addon', () => {
    let copied = false;
    for (const l of lines) {
      if (l.op === 'FROM') copied = false;
      if (l.op === 'COPY' && /^native \.\/native$/.test(l.args)) copied = true;
      if (l.op === 'RUN' && /(^|&& )npm ci( |$)/.test(l.args)) expect(copied, `native/ copied before: RUN ${l.args}`).toBe(true);
    }
    const final = lines.slice(lines.map((l) => l.op).lastIndexOf('FROM'));
    expect(final.some((l) => l.op === 'COPY' && l.args.endsWith('/app/native/build/Release ./native/build/Release'))).toBe(true);
    expect(
      read('.dockerignore')
        .split('\n')
        .map((l) => l.trim()),
    ).not.toContain('native');
  });

  it('ships production dependencies only, the migrations, as a non-root user, with a data volume and a health check', () => {
    expect(runs.some((r) => r.includes('npm ci --omit=dev'))).toBe(true);
    const final = lines.slice(lines.map((l) => l.op).lastIndexOf('FROM'));
    const finalRuns = final
      .filter((l) => l.op === 'RUN')
      .map((l) => l.args)
      .join('\n');
    expect(finalRuns).not.toMatch(/npm (ci|install)(?! --omit=dev)/);
    expect(final.some((l) => l.op === 'COPY' && l.args.startsWith('src/store/migrations ./src/store/migrations'))).toBe(true);
    const user = final.filter((l) => l.op === 'USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(final.find((l) => l.op === 'VOLUME')?.args).toBe('/data');
    expect(imageEnv().DATA_DIR).toBe('/data');
    expect(
      final
        .find((l) => l.op === 'EXPOSE')
        ?.args.split(' ')
        .sort(),
    ).toEqual(['2222', '8080']);
    const health = final.find((l) => l.op === 'HEALTHCHECK')?.args ?? '';
    expect(health).toMatch(/CMD \["node", "-e", .*\/healthz/);
    expect(health).not.toMatch(/curl|wget/);
    expect(JSON.parse(final.find((l) => l.op === 'CMD')?.args ?? 'null')).toEqual(['node', 'dist/cli/main.js', 'serve']);
  });
});
