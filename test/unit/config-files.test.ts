/**
 * config/rosterd.env and config/rosterd.service are copied onto hosts, not run here, so this checks
 * what can drift without running them: the env file and README's table document exactly the
 * schema's variables with the schema's defaults, every example value is accepted, and the systemd
 * unit starts the package's bin and gives it longer to stop than rosterd's own grace period.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES, configDefaults, loadConfig } from '../../src/config/config.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8');
const defaults = configDefaults();

interface EnvLine {
  no: number;
  commented: boolean;
  name: string;
  value: string;
  /** the line just above, if it is a comment */
  doc: string | undefined;
}

/**
 * The `KEY=value` lines of an env file, commented out (`#KEY=value`) or not. A comment with a space
 * after `#` is prose: a variable written `# KEY=value` is not seen, so the checks below miss it.
 */
function envLines(text: string): EnvLine[] {
  const lines = text.split('\n');
  const out: EnvLine[] = [];
  lines.forEach((line, i) => {
    const m = /^(#?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) return;
    const above = lines[i - 1];
    out.push({
      no: i + 1,
      commented: m[1] === '#',
      name: m[2] ?? '',
      value: m[3] ?? '',
      doc: above !== undefined && /^# \S/.test(above) ? above : undefined,
    });
  });
  return out;
}

const unquote = (value: string) => value.trim().replace(/^"(.*)"$|^'(.*)'$/, (_, d?: string, s?: string) => d ?? s ?? '');

/** Names missing from, unknown to and repeated in `names`, against the schema's list. */
function compareNames(names: string[]) {
  return {
    missing: CONFIG_VARIABLES.filter((n) => !names.includes(n)),
    unknown: names.filter((n) => !CONFIG_VARIABLES.includes(n)),
    repeated: names.filter((n, i) => names.indexOf(n) !== i),
  };
}

describe('config/rosterd.env', () => {
  const text = read('config/rosterd.env');
  const vars = envLines(text);

  it("lists every variable of the schema (src/config/config.ts), in the schema's order, each once", () => {
    const names = vars.map((v) => v.name);
    const { missing, unknown, repeated } = compareNames(names);
    expect(missing, 'schema variables not documented in config/rosterd.env').toEqual([]);
    expect(unknown, 'variables in config/rosterd.env that rosterd does not read').toEqual([]);
    expect(repeated, 'variables listed more than once').toEqual([]);
    expect(names, "order differs from the schema's").toEqual([...CONFIG_VARIABLES]);
  });

  it('changes nothing as shipped: every variable is commented out, and nothing else is a line of its own', () => {
    const active = vars.filter((v) => !v.commented).map((v) => `line ${v.no}: ${v.name}`);
    expect(active, 'variables set (not commented out) as shipped').toEqual([]);
    expect(parseEnv(text)).toEqual({});
    const stray = text
      .split('\n')
      .map((line, i) => ({ line, no: i + 1 }))
      .filter(({ line }) => line !== '' && !line.startsWith('#'))
      .map(({ line, no }) => `line ${no}: ${line}`);
    expect(stray, 'lines that are neither blank nor comments').toEqual([]);
  });

  it('says above each variable what it is, and what unset means for those without a default', () => {
    for (const v of vars) {
      expect(v.doc, `${v.name} (line ${v.no}) has no comment line just above it`).toBeDefined();
      if (defaults[v.name] !== undefined) continue;
      const block = text.split('\n').slice(0, v.no - 1);
      const start = block.findLastIndex((l) => !l.startsWith('# '));
      expect(block.slice(start + 1).join(' '), `${v.name}'s comment says what unset means`).toMatch(/\bUnset\b/i);
    }
  });

  it("shows each default exactly as the schema's default", () => {
    for (const v of vars) {
      const fallback = defaults[v.name];
      if (fallback === undefined) continue;
      expect(unquote(v.value), `${v.name} (line ${v.no})`).toBe(String(fallback));
    }
  });

  it('writes values without quotes, since docker run --env-file keeps quotes as part of the value', () => {
    const quoted = vars.filter((v) => /^["']/.test(v.value.trim())).map((v) => `line ${v.no}: ${v.name}=${v.value}`);
    expect(quoted, 'quoted values').toEqual([]);
  });

  it("has only valid values: uncommented, node's env-file parser reads every variable and loadConfig accepts them", () => {
    const uncommented = text.replace(/^#(?=[A-Za-z_][A-Za-z0-9_]*=)/gm, '');
    const env = parseEnv(uncommented);
    // parseEnv returns its keys sorted; the order is checked on the file itself above
    expect(Object.keys(env).sort()).toEqual([...CONFIG_VARIABLES].sort());
    const config = loadConfig(env) as Record<string, unknown>;
    for (const [name, fallback] of Object.entries(defaults)) {
      if (fallback === undefined) expect(config[name], `${name} has an example value`).toBeTypeOf('string');
      else if (name === 'DATA_DIR') expect(config[name]).toBe(path.resolve(String(fallback)));
      else expect(config[name], name).toBe(fallback);
    }
  });
});

describe("README's configuration table", () => {
  const readme = read('README.md');
  const section = /^## Configuration\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? '';
  const rows = [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \|([^|]*)\|/gm)].map((m) => ({ name: m[1] ?? '', cell: (m[2] ?? '').trim() }));

  it("names exactly the schema's variables, in its order", () => {
    expect(section, 'README.md has a "## Configuration" section').not.toBe('');
    const { missing, unknown, repeated } = compareNames(rows.map((r) => r.name));
    expect(missing, 'schema variables missing from README').toEqual([]);
    expect(unknown, 'README rows for variables rosterd does not read').toEqual([]);
    expect(repeated, 'README rows repeated').toEqual([]);
    expect(rows.map((r) => r.name)).toEqual([...CONFIG_VARIABLES]);
  });

  it("shows each default as the schema has it, and 'unset' for those without one", () => {
    for (const { name, cell } of rows) {
      const fallback = defaults[name];
      if (fallback === undefined) expect(cell, name).toBe('unset');
      else expect(/`([^`]*)`/.exec(cell)?.[1], `${name}: ${cell}`).toBe(String(fallback));
    }
  });
});

/** A unit file as its sections' assignments, in order (a key may repeat). */
function parseUnit(text: string): Record<string, Array<[string, string]>> {
  const sections: Record<string, Array<[string, string]>> = {};
  let current: Array<[string, string]> | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = sections[section[1] ?? ''] ??= [];
      return;
    }
    const m = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (!m || !current) throw new Error(`line ${i + 1}: expected "Key=value" inside a [Section], got ${line}`);
    current.push([m[1] ?? '', m[2] ?? '']);
  });
  return sections;
}

/** systemd time spans as written in this unit: "60", "60s", "1min", "1min 30s". */
function seconds(span: string): number {
  const unit: Record<string, number> = { '': 1, s: 1, sec: 1, min: 60, m: 60, h: 3600 };
  let total = 0;
  for (const part of span.trim().split(/\s+/)) {
    const m = /^(\d+)([a-z]*)$/.exec(part);
    const factor = unit[m?.[2] ?? 'x'];
    if (!m || factor === undefined) throw new Error(`cannot read the time span ${JSON.stringify(span)}`);
    total += Number(m[1]) * factor;
  }
  return total;
}

function hasSystemdAnalyze(): boolean {
  return spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
}

describe('config/rosterd.service', () => {
  const text = read('config/rosterd.service');
  const unit = parseUnit(text);
  const all = (section: string, key: string) => (unit[section] ?? []).filter(([k]) => k === key).map(([, v]) => v);
  const one = (section: string, key: string) => {
    const values = all(section, key);
    expect(values, `[${section}] ${key}= once`).toHaveLength(1);
    return values[0] ?? '';
  };

  it('gives rosterd longer to stop than its own grace period, and stops it with SIGTERM (graceful shutdown)', () => {
    const grace = Number(defaults.SHUTDOWN_GRACE_SECONDS);
    expect(seconds(one('Service', 'TimeoutStopSec')), 'TimeoutStopSec in seconds').toBeGreaterThan(grace);
    expect(one('Service', 'KillSignal')).toBe('SIGTERM');
  });

  it('starts the package\'s bin (package.json "bin") with serve, from its working directory', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    const bin = pkg.bin.rosterd ?? '';
    expect(bin).toMatch(/^dist\/.+\.js$/);
    expect(existsSync(path.join(ROOT, bin.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'))), `source of ${bin}`).toBe(true);
    const argv = one('Service', 'ExecStart').split(/\s+/);
    expect(argv).toHaveLength(3);
    expect(argv[0]).toMatch(/^\/.*\/node$/);
    expect(argv[1]).toBe(path.posix.join(one('Service', 'WorkingDirectory'), bin));
    expect(argv[2]).toBe('serve');
  });

  it('reads the environment file from where config/rosterd.env says to copy it', () => {
    const file = one('Service', 'EnvironmentFile').replace(/^-/, '');
    expect(file).toMatch(/^\//);
    expect(read('config/rosterd.env')).toContain(`Copy this file to ${file}.`);
  });

  it('keeps DATA_DIR in the private state directory systemd creates, which is the one writable path', () => {
    const env = Object.fromEntries(all('Service', 'Environment').map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string]));
    expect(
      Object.keys(env).every((k) => CONFIG_VARIABLES.includes(k)),
      `only rosterd variables: ${Object.keys(env).join(', ')}`,
    ).toBe(true);
    const dataDir = loadConfig(env).DATA_DIR;
    expect(dataDir).toBe(`/var/lib/${one('Service', 'StateDirectory')}`);
    expect(one('Service', 'StateDirectoryMode')).toBe('0700');
    expect(one('Service', 'ReadWritePaths').split(/\s+/)).toContain(dataDir);
    expect(one('Service', 'ProtectSystem')).toBe('strict');
    expect(one('Service', 'User')).not.toMatch(/^(root|0)$/);
  });

  it.skipIf(!hasSystemdAnalyze())('passes systemd-analyze verify', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rosterd-unit-'));
    try {
      // verify checks that ExecStart's program exists: use this machine's node where node is not /usr/bin/node.
      const file = path.join(dir, 'rosterd.service');
      writeFileSync(file, text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
      const result = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      // Unknown keys and bad values are only warnings (exit 0): any output is a failure.
      expect(`${result.stdout}${result.stderr}`.trim(), 'systemd-analyze verify output').toBe('');
      expect(result.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
