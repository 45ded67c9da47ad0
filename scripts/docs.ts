// `npm run docs`: regenerates docs/reference/*.md from the config schemas, error registries and OpenAPI document.
// `npm run docs -- --check` writes nothing and exits 1 when a committed page is stale (test/docs/generated.test.ts does the same).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DOCS_COMMAND, ROOT, generateDocs, undocumentedConfigKeys } from './docs/generate.ts';

function main(argv: string[]): number {
  const check = argv.includes('--check');
  const stale: string[] = [];
  for (const [path, text] of generateDocs()) {
    const file = join(ROOT, path);
    let current: string | undefined;
    try {
      current = readFileSync(file, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) continue;
    stale.push(path);
    if (!check) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
  }
  const missing = undocumentedConfigKeys();
  for (const [part, keys] of Object.entries(missing))
    if (keys.length)
      console.error(`docs: ${part} config keys with no description (add .describe() or a note in scripts/docs/config-notes.ts): ${keys.join(', ')}`);
  if (check) {
    if (stale.length) console.error(`docs: stale: ${stale.join(', ')}; run \`${DOCS_COMMAND}\``);
    else console.log('docs: every generated page is up to date');
    return stale.length ? 1 : 0;
  }
  console.log(stale.length ? `docs: wrote ${stale.join(', ')}` : 'docs: every generated page was up to date');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
