import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse } from 'csv-parse/sync';
import type { SchoolRef } from '../../import/types.js';
import { RosterdError } from '../../errors.js';
import { withTransaction } from '../../store/db.js';
import { addSchool, listSchools, type SchoolInput } from '../../store/schools.js';
import { getTenant } from '../../store/tenants.js';
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

/** Reads a schools CSV; every bad line is reported and nothing is written if any is bad. */
export async function readSchoolsFile(file: string): Promise<SchoolInput[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new RosterdError('FILE_NOT_FOUND', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  let records: string[][];
  try {
    records = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: true }) as string[][];
  } catch (err) {
    throw new RosterdError('USAGE', `${file} is not a readable CSV file: ${(err as Error).message}`, { cause: err });
  }
  const [header, ...rows] = records;
  const columns = (header ?? []).map((h) => SCHOOL_COLUMNS[h.toLowerCase().replace(/[\s_-]/g, '')]);
  if (!columns.includes('name')) {
    throw new RosterdError('USAGE', `${file} needs a header row with a "name" column (and optionally "nces id" and "state id")`);
  }
  if (rows.length === 0) throw new RosterdError('USAGE', `${file} has a header but no schools`);
  return rows.map((row) => {
    const input: SchoolInput = { name: '' };
    columns.forEach((col, i) => {
      if (col) input[col] = row[i] ?? '';
    });
    return input;
  });
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
        ncesId: typeof opts.nces === 'string' ? opts.nces : null,
        stateId: typeof opts.stateId === 'string' ? opts.stateId : null,
      });
      return { json: schoolJson(s), text: `added school "${s.name}" to ${subdomain}` };
    },
  );

  leaf(
    school.command('import <subdomain> <file>').description('add schools from a CSV with columns name, nces id, state id (all or nothing)'),
    async (ctx, [subdomain, file]) => {
      const inputs = await readSchoolsFile(file ?? '');
      const added = await withTransaction(ctx.pool, async (client) => {
        const result: SchoolRef[] = [];
        for (const [i, input] of inputs.entries()) {
          try {
            result.push(await addSchool(client, subdomain ?? '', input));
          } catch (err) {
            if (err instanceof RosterdError) {
              throw new RosterdError(err.code, `line ${i + 2}: ${err.message}; nothing was imported`, { cause: err });
            }
            throw err;
          }
        }
        return result;
      });
      return { json: added.map(schoolJson), text: `added ${added.length} school(s) to ${subdomain}` };
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
