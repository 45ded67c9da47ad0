// `npm run bench [-- SECTION [args...]]`: runs one bench section from
// scripts/bench/<section>.ts, or every section when none is named, and
// prints the tables (Markdown, ready to paste into docs/performance.md). Whatever a
// section started (scripts/lib/children.ts) is stopped before it exits, also on
// failure and on SIGINT/SIGTERM.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BenchSection, BenchTable } from './bench/types.ts';
import { machine, renderTables, summaryTable } from './bench/util.ts';
import { exitAfterCleanup, interruptedBy } from './lib/children.ts';

const HELPERS = new Set(['types', 'util']);
const dir = fileURLToPath(new URL('./bench/', import.meta.url));
const sections = readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.slice(0, -3))
  .filter((n) => !HELPERS.has(n))
  .sort();

async function main(): Promise<number> {
  const [first, ...rest] = process.argv.slice(2);
  if (first === '--help' || first === '-h') {
    process.stdout.write(`Usage: npm run bench [-- SECTION [args]]\nSections: ${sections.join(', ')}\n`);
    return 0;
  }
  const chosen = first === undefined ? sections : [first];
  for (const name of chosen) {
    if (!sections.includes(name)) {
      process.stderr.write(`bench: unknown section '${name}' (have: ${sections.join(', ')})\n`);
      return 2;
    }
  }
  process.stdout.write(`# npm run bench${first ? ` -- ${[first, ...rest].join(' ')}` : ''}\n\nMachine: ${machine()}\n`);
  const all: BenchTable[] = [];
  for (const name of chosen) {
    const mod = (await import(new URL(`./bench/${name}.ts`, import.meta.url).href)) as { run: BenchSection };
    const tables = await mod.run(first === undefined ? [] : rest);
    all.push(...tables);
    process.stdout.write(renderTables(tables));
  }
  const summary = summaryTable(all);
  if (summary) process.stdout.write(renderTables([summary]));
  return 0;
}

main().then(
  (code) => exitAfterCleanup(code),
  (err: unknown) => {
    const signal = interruptedBy();
    process.stderr.write(signal ? `bench: interrupted (${signal})\n` : `bench: error: ${err instanceof Error ? err.message : String(err)}\n`);
    return exitAfterCleanup(1);
  },
);
