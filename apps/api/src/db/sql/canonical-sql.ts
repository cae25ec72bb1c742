import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';

/**
 * Every PL/pgSQL function and trigger of the schema has one canonical source file under `functions/` or
 * `triggers/`; migrations are made from those files (`npm run db:sql`), never edited by hand. Two checks keep the
 * three in step: the newest migration that defines an object must say what its file says (`migrationDrift`), and a
 * migrated database must hold what the files say (`databaseDrift`).
 */

export const SQL_DIR = path.dirname(fileURLToPath(import.meta.url));

export const BREAKPOINT = '--> statement-breakpoint';

export type ObjectKind = 'function' | 'trigger';

export interface CanonicalObject {
  kind: ObjectKind;
  name: string;
  file: string;
  /** The whole file: the CREATE statement, then (functions only) the grants it needs when it is re-created. */
  source: string;
  /** The CREATE statement alone. */
  statement: string;
}

/** A definition found in a migration. */
export interface MigrationDefinition {
  kind: ObjectKind;
  name: string;
  migration: string;
  statement: string;
}

export interface Drift {
  kind: ObjectKind;
  name: string;
  problem: string;
  expected?: string;
  actual?: string;
}

const FUNCTION_RE = /^CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+coffer\.(\w+)\s*\(/i;
const TRIGGER_RE = /^CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?TRIGGER\s+(\w+)\s/i;
const DROP_FUNCTION_RE = /^DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?coffer\.(\w+)\s*\(/i;
const DROP_TRIGGER_RE = /^DROP\s+TRIGGER\s+(?:IF\s+EXISTS\s+)?(\w+)\s/i;

/** A migration or canonical file as its statements, each without the comment lines that lead it. */
export function statementsOf(sql: string): string[] {
  return sql
    .split(BREAKPOINT)
    .map((chunk) => {
      const lines = chunk.split('\n');
      while (lines.length > 0 && /^\s*(--.*)?$/.test(lines[0] ?? '')) lines.shift();
      return lines.join('\n').trim();
    })
    .filter((s) => s.length > 0);
}

/** Whitespace, `OR REPLACE` and the final semicolon carry no meaning for the comparison. */
export function normalise(statement: string): string {
  return statement
    .replace(/^CREATE\s+OR\s+REPLACE\s+/i, 'CREATE ')
    .replace(/\s+/g, ' ')
    .replace(/\s*;\s*$/, '')
    .trim();
}

function definedBy(statement: string): { kind: ObjectKind; name: string } | null {
  const f = FUNCTION_RE.exec(statement);
  if (f?.[1]) return { kind: 'function', name: f[1] };
  const t = TRIGGER_RE.exec(statement);
  if (t?.[1]) return { kind: 'trigger', name: t[1] };
  return null;
}

export function loadCanonical(dir = SQL_DIR): CanonicalObject[] {
  const out: CanonicalObject[] = [];
  for (const [sub, kind] of [
    ['functions', 'function'],
    ['triggers', 'trigger'],
  ] as const) {
    for (const entry of readdirSync(path.join(dir, sub)).sort()) {
      if (!entry.endsWith('.sql')) continue;
      const file = path.join(dir, sub, entry);
      const source = readFileSync(file, 'utf8');
      const [statement] = statementsOf(source);
      const found = statement ? definedBy(statement) : null;
      const name = entry.slice(0, -'.sql'.length);
      if (!statement || !found || found.kind !== kind || found.name !== name) {
        throw new Error(`${file}: its first statement must create the ${kind} ${name}`);
      }
      out.push({ kind, name, file, source, statement });
    }
  }
  return out;
}

/** The newest definition of each object across the migrations, in journal order (later wins). */
export function latestDefinitions(migrationsFolder: string): Map<string, MigrationDefinition> {
  const journal = JSON.parse(readFileSync(path.join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string }[];
  };
  const latest = new Map<string, MigrationDefinition>();
  for (const { tag } of journal.entries) {
    const sql = readFileSync(path.join(migrationsFolder, `${tag}.sql`), 'utf8');
    for (const statement of statementsOf(sql)) {
      const dropF = DROP_FUNCTION_RE.exec(statement);
      if (dropF?.[1]) latest.delete(`function:${dropF[1]}`);
      const dropT = DROP_TRIGGER_RE.exec(statement);
      if (dropT?.[1]) latest.delete(`trigger:${dropT[1]}`);
      const found = definedBy(statement);
      if (found) latest.set(`${found.kind}:${found.name}`, { ...found, migration: tag, statement });
    }
  }
  return latest;
}

/** Objects whose canonical file says something the newest migration defining them does not. */
export function migrationDrift(canonical: CanonicalObject[], migrationsFolder: string): Drift[] {
  const latest = latestDefinitions(migrationsFolder);
  const drift: Drift[] = [];
  for (const c of canonical) {
    const m = latest.get(`${c.kind}:${c.name}`);
    if (!m) drift.push({ kind: c.kind, name: c.name, problem: 'no migration defines it yet' });
    else if (normalise(m.statement) !== normalise(c.statement)) {
      drift.push({
        kind: c.kind,
        name: c.name,
        problem: `differs from its definition in ${m.migration}`,
        expected: c.statement,
        actual: m.statement,
      });
    }
    latest.delete(`${c.kind}:${c.name}`);
  }
  for (const m of latest.values()) {
    drift.push({ kind: m.kind, name: m.name, problem: `defined in ${m.migration} but has no canonical file` });
  }
  return drift;
}

/** The text from `coffer.name(` to its closing parenthesis: the argument list. */
function argumentsOf(statement: string): string {
  const start = statement.indexOf('(');
  let depth = 0;
  for (let i = start; i < statement.length; i++) {
    if (statement[i] === '(') depth++;
    if (statement[i] === ')' && --depth === 0) return statement.slice(start + 1, i);
  }
  throw new Error(`unbalanced argument list in: ${statement.slice(0, 80)}`);
}

/** Everything before LANGUAGE: the name, arguments and result, which CREATE OR REPLACE cannot change. */
function signatureOf(statement: string): string {
  return normalise(statement).split(/\sLANGUAGE\s/i)[0] ?? '';
}

/**
 * The SQL of a migration that brings each drifted object to its canonical file. A function whose arguments or
 * result changed is dropped first (CREATE OR REPLACE cannot change them), and that is why a function's file carries
 * its own grants; a trigger is dropped and created again.
 */
export function migrationSql(canonical: CanonicalObject[], migrationsFolder: string): string {
  const latest = latestDefinitions(migrationsFolder);
  const drifted = new Set(migrationDrift(canonical, migrationsFolder).map((d) => `${d.kind}:${d.name}`));
  const parts: string[] = [];
  const changed = canonical.filter((c) => drifted.has(`${c.kind}:${c.name}`));
  for (const c of changed) {
    const previous = latest.get(`${c.kind}:${c.name}`);
    if (c.kind === 'function' && previous && signatureOf(previous.statement) !== signatureOf(c.statement)) {
      if (/\sRETURNS\s+trigger\b/i.test(normalise(previous.statement))) {
        throw new Error(`${c.name} is a trigger function: its arguments and result cannot change`);
      }
      parts.push(`DROP FUNCTION coffer.${c.name}(${argumentsOf(previous.statement)});`);
    }
    if (c.kind === 'trigger' && previous) {
      const table = /\sON\s+([\w.]+)\s/i.exec(previous.statement)?.[1];
      parts.push(`DROP TRIGGER IF EXISTS ${c.name} ON ${table};`);
    }
    parts.push(c.source.trim());
  }
  const header = [
    `-- Made by \`npm run db:sql\` from apps/api/src/db/sql/ (${changed.map((c) => c.name).join(', ')}).`,
    '-- Edit those files and run it again; do not edit this migration.',
  ].join('\n');
  return `${header}\n${parts.join(`\n${BREAKPOINT}\n`)}\n`;
}

interface DefRow {
  name: string;
  def: string;
}

/**
 * Objects whose definition in the database (as `pg_get_functiondef` and `pg_get_triggerdef` print it) differs from
 * their canonical file, and objects the database has that no file defines. Each canonical function is created over
 * the database's own inside a transaction that is rolled back, so PostgreSQL itself prints both sides the same way;
 * triggers are compared as text. Needs the schema owner's connection, outside any transaction.
 */
export async function databaseDrift(client: pg.ClientBase, canonical = loadCanonical()): Promise<Drift[]> {
  const drift: Drift[] = [];
  const functionDefs = async () =>
    new Map(
      (
        await client.query<DefRow>(
          `select p.proname as name, pg_get_functiondef(p.oid) as def from pg_proc p
           where p.pronamespace = 'coffer'::regnamespace and p.prokind = 'f' order by 1`,
        )
      ).rows.map((r) => [r.name, r.def]),
    );
  await client.query('begin');
  try {
    const actual = await functionDefs();
    const triggers = new Map(
      (
        await client.query<DefRow>(
          `select t.tgname as name, pg_get_triggerdef(t.oid) as def from pg_trigger t
           join pg_class c on c.oid = t.tgrelid where c.relnamespace = 'coffer'::regnamespace and not t.tgisinternal`,
        )
      ).rows.map((r) => [r.name, r.def]),
    );
    for (const c of canonical) {
      if (c.kind === 'trigger') {
        const def = triggers.get(c.name);
        triggers.delete(c.name);
        if (def === undefined) drift.push({ kind: 'trigger', name: c.name, problem: 'missing from the database' });
        else if (normalise(def) !== normalise(c.statement)) {
          drift.push({ kind: 'trigger', name: c.name, problem: 'differs', expected: c.statement, actual: def });
        }
        continue;
      }
      const def = actual.get(c.name);
      actual.delete(c.name);
      if (def === undefined) {
        drift.push({ kind: 'function', name: c.name, problem: 'missing from the database' });
        continue;
      }
      await client.query('savepoint canonical');
      try {
        await client.query(c.statement);
        const expected = (await functionDefs()).get(c.name);
        if (expected !== def) drift.push({ kind: 'function', name: c.name, problem: 'differs', expected, actual: def });
        await client.query('release savepoint canonical');
      } catch (err) {
        await client.query('rollback to savepoint canonical');
        drift.push({
          kind: 'function',
          name: c.name,
          problem: `its canonical file cannot replace it: ${(err as Error).message}`,
          actual: def,
        });
      }
    }
    for (const name of actual.keys()) drift.push({ kind: 'function', name, problem: 'has no canonical file' });
    for (const name of triggers.keys()) drift.push({ kind: 'trigger', name, problem: 'has no canonical file' });
  } finally {
    await client.query('rollback');
  }
  return drift;
}

export function describeDrift(drift: Drift[]): string {
  return drift
    .map((d) =>
      [
        `${d.kind} ${d.name}: ${d.problem}`,
        ...(d.expected !== undefined ? ['  canonical:', indent(d.expected)] : []),
        ...(d.actual !== undefined ? ['  found:', indent(d.actual)] : []),
      ].join('\n'),
    )
    .join('\n');
}

const indent = (s: string) =>
  s
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
