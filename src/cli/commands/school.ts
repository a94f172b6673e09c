import { isUtf8 } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse } from 'csv-parse/sync';
import iconv from 'iconv-lite';
import type { SchoolRef } from '../../import/types.js';
import { describeFileError, RosterdError } from '../../errors.js';
import { CompressedCsvError, sniffHead, utf16Of } from '../../import/read/csv-guard.js';
import { unwrapExcelText } from '../../import/read/excel-text.js';
import { schoolFinder } from '../../import/read/users-rules.js';
import { FileRejectedError } from '../../import/types.js';
import { withTransaction } from '../../store/db.js';
import {
  addSchool,
  insertSchool,
  listSchools,
  SchoolKeyIndex,
  schoolKeys,
  updateSchool,
  validateSchoolInput,
  type SchoolChange,
  type SchoolInput,
} from '../../store/schools.js';
import { getTenant } from '../../store/tenants.js';
import { logOperatorAction } from '../audit.js';
import { leaf, table } from '../context.js';

const schoolJson = (s: SchoolRef) => ({ id: s.id, name: s.name, ncesId: s.ncesId, stateId: s.stateId });

/** Header names of a schools file, matched like users.csv's: case, spaces, `_` and `-` ignored. */
const SCHOOL_COLUMNS: Record<string, keyof SchoolInput> = {
  name: 'name',
  schoolname: 'name',
  nces: 'ncesId',
  ncesid: 'ncesId',
  ncesschoolid: 'ncesId',
  stateid: 'stateId',
  stateschoolid: 'stateId',
};

/** One school of a schools file, with the line it starts on (the header is line 1). */
export interface SchoolLine {
  line: number;
  input: SchoolInput;
}

/** A bad line of a schools file; `code` says whether the line is malformed or clashes with a school. */
export interface SchoolProblem {
  line: number;
  message: string;
  code: 'INVALID_SCHOOL' | 'SCHOOL_EXISTS';
}

/** What a schools file holds: its schools, and how its bytes were read. */
export interface SchoolsFile {
  lines: SchoolLine[];
  /** A file that is not UTF-8 (nor UTF-16) is read as Windows-1252, like users.csv (PRODUCT.md §3). */
  encoding: 'utf-8' | 'utf-16le' | 'utf-16be' | 'windows-1252';
}

/**
 * Reads a schools CSV: its rows as school inputs. A file it cannot read as one fails whole. A
 * mistake in the file is a failure (exit 1), like a malformed key file, not a usage error: the
 * command line was right.
 */
export async function readSchoolsFile(file: string): Promise<SchoolsFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new RosterdError('FILE_NOT_FOUND', `cannot read ${file}: ${describeFileError(err)}`, { cause: err });
  }
  // As users.csv is: UTF-16 (a PowerShell script's > or Out-File) read as such.
  const utf16 = utf16Of(bytes);
  const decoded = utf16 === undefined ? undefined : iconv.decode(bytes, utf16);
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
  const body = bom ? bytes.subarray(3) : bytes;
  try {
    sniffHead((decoded === undefined ? body : Buffer.from(decoded.slice(0, 512), 'utf8')).subarray(0, 512));
  } catch (err) {
    if (!(err instanceof FileRejectedError)) throw err;
    // The reader's advice is for a district uploading over SFTP; the operator needs only what the file is.
    const what = /^.*?\.(?=\s|$)/.exec(err.message)?.[0] ?? err.message;
    const todo =
      err instanceof CompressedCsvError
        ? 'Unpack it and import the CSV file it holds.'
        : 'Save it as "CSV UTF-8 (Comma delimited)" and import that file.';
    throw invalidFile(`${file}: ${what} ${todo}`, err);
  }
  // An operator's spreadsheet saved as plain "CSV" is Windows-1252; read as UTF-8, every accented
  // school name would be stored with U+FFFD in it and match no users.csv row.
  const encoding = utf16 ?? (isUtf8(body) ? 'utf-8' : 'windows-1252');
  const text = (decoded ?? (encoding === 'windows-1252' ? iconv.decode(body, 'win1252') : body.toString('utf8'))).normalize('NFC');
  let records: { record: string[]; info: { lines: number } }[];
  try {
    // Read as users.csv is: a stray quote kept as written, and an Excel text formula (an NCES ID
    // written ="010000500870" to keep its leading zero) as the text it shows.
    records = parse(text, {
      skip_empty_lines: true,
      relax_column_count: true,
      relax_quotes: true,
      info: true,
    }) as unknown as typeof records;
    for (const { record } of records) unwrapExcelText(record);
  } catch (err) {
    throw invalidFile(`${file} is not a readable CSV file: ${(err as Error).message}`, err);
  }
  const [header, ...rows] = records;
  const headers = header?.record ?? [];
  const columns = headers.map((h) => SCHOOL_COLUMNS[h.toLowerCase().replace(/[\s_-]/g, '')]);
  if (!columns.includes('name')) {
    throw invalidFile(`${file} needs a header row with a "name" column (and optionally "nces id" and "state id")`);
  }
  columns.forEach((col, i) => {
    const first = columns.indexOf(col);
    if (col !== undefined && first !== i) {
      throw invalidFile(
        `${file} has two ${COLUMN_NAMES[col]} columns: "${headers[first]}" (column ${first + 1}) and "${headers[i]}" (column ${i + 1}); keep one and import again`,
      );
    }
  });
  if (rows.length === 0) throw invalidFile(`${file} has a header but no schools`);
  const lines = rows.map(({ record, info }) => {
    const input: SchoolInput = { name: '' };
    columns.forEach((col, i) => {
      if (col) input[col] = record[i] ?? '';
    });
    // info.lines is where the record ends; a quoted value may span lines.
    const spanned = record.join('').split('\n').length - 1;
    return { line: info.lines - spanned, input };
  });
  return { lines, encoding };
}

function invalidFile(message: string, cause?: unknown): RosterdError {
  return new RosterdError('SCHOOLS_FILE_INVALID', message, cause === undefined ? undefined : { cause });
}

const COLUMN_NAMES: Record<keyof SchoolInput, string> = { name: 'school name', ncesId: 'NCES ID', stateId: 'state ID' };

/**
 * Every bad line of a schools file: malformed values, a school the file lists twice, a school the
 * tenant already has (`existing`). Empty when the whole file can be imported.
 */
export function checkSchools(lines: SchoolLine[], existing: SchoolRef[], subdomain: string): SchoolProblem[] {
  const problems: SchoolProblem[] = [];
  const index = new SchoolKeyIndex();
  for (const s of existing) index.add(s);
  for (const { line, input } of lines) {
    let school: SchoolInput;
    try {
      school = validateSchoolInput(input);
    } catch (err) {
      if (!(err instanceof RosterdError)) throw err;
      problems.push({ line, message: err.message, code: 'INVALID_SCHOOL' });
      continue;
    }
    const clash = index.clash(school);
    if (clash !== null) problems.push({ line, message: clash, code: 'INVALID_SCHOOL' });
    for (const key of schoolKeys(school)) {
      const earlier = index.earlier(key);
      if (earlier === 0) {
        problems.push({ line, message: `${subdomain} already has a school with ${key.label}`, code: 'SCHOOL_EXISTS' });
      } else if (earlier !== undefined) {
        problems.push({ line, message: `the file lists ${key.label} twice (lines ${earlier} and ${line})`, code: 'INVALID_SCHOOL' });
      }
    }
    index.add(school, line);
  }
  return problems.sort((a, b) => a.line - b.line);
}

function schoolsFileError(file: string, problems: SchoolProblem[]): RosterdError {
  const code = problems.every((p) => p.code === 'SCHOOL_EXISTS') ? 'SCHOOL_EXISTS' : 'SCHOOLS_FILE_INVALID';
  const lines = new Set(problems.map((p) => p.line)).size;
  const count = lines === 1 ? 'a bad line' : `${lines} bad lines`;
  return new RosterdError(
    code,
    [
      `${file} has ${count}; nothing was imported. Fix ${lines === 1 ? 'it' : 'them'} and import the file again:`,
      ...problems.map((p) => `line ${p.line}: ${p.message}`),
    ].join('\n'),
    { details: { errors: problems.map(({ line, message }) => ({ line, message })) } },
  );
}

export function registerSchoolCommands(program: Command): void {
  const school = program.command('school').description("manage a tenant's schools");

  leaf(
    school
      .command('add <subdomain>')
      .description('add a school')
      .requiredOption('--name <name>', 'school name as users.csv may write it')
      .option('--nces <id>', 'NCES school ID (12 digits)')
      .option('--state-id <id>', 'state-assigned school ID'),
    async (ctx, [subdomain], opts) => {
      const s = await addSchool(ctx.pool, subdomain ?? '', {
        name: String(opts.name),
        ncesId: idOption(opts.nces, '--nces', false),
        stateId: idOption(opts.stateId, '--state-id', false),
      });
      logOperatorAction(ctx, 'school.added', { tenant: subdomain, school: s.name }, 'school added');
      return { json: schoolJson(s), text: `added school "${s.name}" to ${subdomain}` };
    },
  );

  leaf(
    school.command('import <subdomain> <file>').description('add schools from a CSV with columns name, nces id, state id (all or nothing)'),
    async (ctx, [subdomain, file]) => {
      const tenant = await getTenant(ctx.pool, subdomain ?? '');
      const { lines, encoding } = await readSchoolsFile(file ?? '');
      const problems = checkSchools(lines, await listSchools(ctx.pool, tenant.id), tenant.subdomain);
      if (problems.length > 0) throw schoolsFileError(file ?? '', problems);
      // All or nothing; a school added meanwhile by someone else still fails the whole file here.
      const added = await withTransaction(ctx.pool, async (client) => {
        const result: SchoolRef[] = [];
        for (const { line, input } of lines) {
          try {
            // checkSchools has validated and compared every line; the unique indexes still catch a
            // school added by someone else meanwhile.
            result.push(await insertSchool(client, tenant, validateSchoolInput(input)));
          } catch (err) {
            if (err instanceof RosterdError) throw schoolsFileError(file ?? '', [{ line, message: err.message, code: 'SCHOOL_EXISTS' }]);
            throw err;
          }
        }
        return result;
      });
      logOperatorAction(ctx, 'schools.imported', { tenant: tenant.subdomain, file, added: added.length }, 'schools imported');
      const recoded =
        encoding !== 'windows-1252'
          ? ''
          : `\n${file} is not UTF-8 and was read as Windows-1252 (Excel's plain "CSV"): check that accented names look right in ` +
            `rosterd school list ${tenant.subdomain}`;
      return { json: added.map(schoolJson), text: `added ${added.length} school(s) to ${tenant.subdomain}${recoded}` };
    },
  );

  leaf(
    school
      .command('update <subdomain> <school>')
      .description('change a school, named by its name, NCES ID or state ID as users.csv may give it')
      .option('--name <name>', 'its new name')
      .option('--nces <id>', 'its NCES school ID (12 digits)')
      .option('--no-nces', 'remove its NCES school ID')
      .option('--state-id <id>', 'its state-assigned school ID')
      .option('--no-state-id', 'remove its state-assigned school ID'),
    async (ctx, [subdomain, which], opts) => {
      const change = schoolChangeFrom(opts);
      if (Object.keys(change).length === 0) {
        throw new RosterdError(
          'USAGE',
          `nothing to change: give at least one of --name, --nces, --no-nces, --state-id, --no-state-id, ` +
            `e.g. rosterd school update ${subdomain ?? 'SUBDOMAIN'} "${which ?? 'SCHOOL'}" --nces 062271003230`,
        );
      }
      const { before, after, tenant } = await withTransaction(ctx.pool, async (client) => {
        const tenant = await getTenant(client, subdomain ?? '');
        const schools = await listSchools(client, tenant.id, { forUpdate: true });
        const before = findSchool(schools, which ?? '', tenant.subdomain);
        const others = schools.filter((s) => s.id !== before.id);
        return { before, after: await updateSchool(client, tenant, before, others, change), tenant };
      });
      logOperatorAction(
        ctx,
        'school.updated',
        { tenant: tenant.subdomain, school: before.name, changed: Object.keys(change) },
        'school updated',
      );
      return { json: { ...schoolJson(after), previous: schoolJson(before) }, text: describeSchoolChange(tenant.subdomain, before, after) };
    },
  );

  leaf(school.command('list <subdomain>').description("list a tenant's schools"), async (ctx, [subdomain]) => {
    const tenant = await getTenant(ctx.pool, subdomain ?? '');
    const schools = await listSchools(ctx.pool, tenant.id);
    return {
      json: schools.map(schoolJson),
      text:
        schools.length === 0
          ? `${tenant.subdomain} has no schools; add them with: rosterd school add ${tenant.subdomain} --name NAME`
          : table(
              ['NAME', 'NCES ID', 'STATE ID'],
              schools.map((s) => [s.name, s.ncesId, s.stateId]),
            ),
    };
  });
}

/** The options of `school update` as a change; commander gives false for --no-nces and --no-state-id. */
function schoolChangeFrom(opts: Record<string, unknown>): SchoolChange {
  const change: SchoolChange = {};
  if (typeof opts.name === 'string') change.name = opts.name;
  if (typeof opts.nces === 'string' || opts.nces === false) change.ncesId = idOption(opts.nces, '--nces', true);
  if (typeof opts.stateId === 'string' || opts.stateId === false) change.stateId = idOption(opts.stateId, '--state-id', true);
  return change;
}

/**
 * An ID option's value; null when it was not given (or, updating, was removed with --no-…). An
 * empty value is refused: `--nces "$NCES"` with the variable unset meant an ID, and taking it as
 * none would add a school without its ID, or remove the ID it has, without a word.
 */
function idOption(value: unknown, flag: '--nces' | '--state-id', updating: boolean): string | null {
  if (typeof value !== 'string') return null;
  if (value.trim() === '') {
    throw new RosterdError(
      'USAGE',
      `${flag} was given an empty ID; give the ID, or leave ${flag} out${updating ? ` (${flag.replace('--', '--no-')} removes the school's)` : ''}`,
    );
  }
  return value;
}

/** The school `which` names, as users.csv's school column would find it. */
function findSchool(schools: readonly SchoolRef[], which: string, subdomain: string): SchoolRef {
  const found = schoolFinder(schools)(which);
  if (found === undefined) {
    throw new RosterdError(
      'SCHOOL_NOT_FOUND',
      `${subdomain} has no school with the name, NCES ID or state ID "${which}"; "rosterd school list ${subdomain}" shows them`,
    );
  }
  if (typeof found !== 'string') {
    throw new RosterdError(
      'SCHOOL_AMBIGUOUS',
      `"${which}" names two schools of ${subdomain}: it is ${found.ambiguous}; name the school by another ID`,
    );
  }
  const school = schools.find((s) => s.id === found);
  if (school === undefined) throw new Error(`school ${found} is not among the schools searched`);
  return school;
}

/** What changed, and what it means for the district's next users.csv. */
function describeSchoolChange(subdomain: string, before: SchoolRef, after: SchoolRef): string {
  const fields: Array<[string, string | null, string | null]> = [
    ['name', before.name, after.name],
    ['NCES ID', before.ncesId, after.ncesId],
    ['state ID', before.stateId, after.stateId],
  ];
  const changed = fields.filter(([, was, now]) => was !== now);
  if (changed.length === 0) return `school "${after.name}" of ${subdomain} already had these values; nothing changed`;
  const shown = (v: string | null, field: string) => (v === null ? 'none' : field === 'name' ? `"${v}"` : v);
  const lines = [
    `updated school "${after.name}" of ${subdomain}: ` +
      changed.map(([field, was, now]) => `${field} ${shown(was, field)} -> ${shown(now, field)}`).join(', '),
  ];
  // A value users.csv may have used is gone (matching ignores case): rows that still give it become errors.
  const gone = changed.filter(([, was, now]) => was !== null && was.toLowerCase() !== now?.toLowerCase());
  if (gone.length > 0) {
    lines.push(
      `users.csv rows that give ${gone.map(([field, was]) => `the ${field} ${shown(was, field)}`).join(' or ')} no longer match this school and ` +
        `will be errors; the users already in it stay there`,
    );
  }
  return lines.join('\n');
}
