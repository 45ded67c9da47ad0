import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { expect } from 'chai';
import { AGENT_ERRORS } from '../../hospital-agent/errors.ts';
import { buildOpenApi } from '../../hospital-agent/api/openapi.ts';
import { configLeaves } from '../../common/index.ts';
import { agentConfigSchema } from '../../hospital-agent/config.ts';
import { relayConfigSchema } from '../../relay/index.ts';
import { RELAY_ERRORS, type RelayErrorInfo } from '../../relay/protocol/errors.ts';
import { BIN_DIRS, commandPath, shownCommands, type Bin } from '../support/commands.ts';
import { ROOT, docPages, linkTargets, readPage } from '../support/markdown.ts';

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** A string literal in TypeScript source. */
const str = (w: string): string => ["'", '"', '`'].map((q) => `${q}${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}${q}`).join('|');

/**
 * Whether a source file runs `bin` with `words` as its first arguments: the
 * file spawns the command (it names bin/hie-x.js) or calls its `main` (it
 * imports hie-x's cli.ts), and an argument array holds the words as
 * consecutive string elements, first in the array or after the bin path
 * (`[BIN, 'rx', 'abort', ...]`, `main(['rx', 'abort', ...])`,
 * `[join(ROOT, 'bin', 'hie-ledger.js'), 'verify-proof', ...]`), and not
 * followed by `--help` (that shows the help; commands.test.ts runs those).
 */
function runs(text: string, bin: Bin, words: string[]): boolean {
  const imports = new RegExp(`from '(?:\\.\\./)+${BIN_DIRS[bin]}/cli\\.ts'`).test(text);
  if (!text.includes(`${bin}.js`) && !imports) return false;
  // The array is an argument of a call (`run([`, `spawn(process.execPath, [`, `cli('myongji', [`) or the value of an
  // args variable (`const args = [`), not an index (`body['status']`) or a list of names looped over.
  const before = String.raw`(?:[(,]|\b\w*(?:args|argv)\s*=)\s*\[\s*(?:(?:\.\.\.)?[\w$.]+,\s*|join\([^()]*\),\s*)*`;
  // What follows the words: the end of the array, or another argument that is not a request for help.
  const after = String.raw`\s*(?:\]|,(?!\s*(?:${str('--help')}|${str('-h')})))`;
  return new RegExp(`${before}${words.map((w) => `(?:${str(w)})`).join(String.raw`\s*,\s*`)}${after}`).test(text);
}

/** Pages a test runs as a script, every `sh` block in order: the commands in those blocks are run by that test. */
const PAGES_RUN: Record<string, string> = { 'docs/getting-started.md': 'test/docs/getting-started.integration.test.ts' };

/** The pages written by hand (docs/reference/ is generated and says so). */
const handWritten = docPages().filter((p) => p.startsWith('docs/') && !p.startsWith('docs/reference/'));

describe('README and docs pages', function () {
  const readme = readPage('README.md');
  const relay = readPage('docs/relay.md');
  const agent = readPage('docs/agent.md');

  it('README is a page or two, and its table links every docs page, certificates and PKI before running the relay', function () {
    expect(readme.split('\n').length).to.be.below(220);
    const table = readme.slice(readme.indexOf('## Documentation'));
    const linked = linkTargets(table).map((t) => t.split('#')[0]);
    expect(
      handWritten.filter((p) => !linked.includes(p)),
      'pages the README table leaves out',
    ).to.deep.equal([]);
    const at = (p: string): number => linked.indexOf(p);
    expect(at('docs/pki.md')).to.be.below(at('docs/relay.md'));
    expect(at('docs/certificates.md')).to.be.below(at('docs/relay.md'));
    expect(readme).to.contain('npm ci && npm run demo').and.to.contain('npm test');
  });

  it('each docs page says in its first paragraph who it is for', function () {
    const missing = handWritten.filter((p) => {
      const first = readPage(p).split('\n\n')[1] ?? '';
      return !/\bfor\b/i.test(first);
    });
    expect(missing).to.deep.equal([]);
  });

  // Moved from test/readme.test.ts (it looked only at `npx hie-*`): every command shown, with or without npx.
  it('every hie-certs, hie-relay, hie-agent and hie-ledger command they show is run by a test or by the demo, with its subcommand words', async function () {
    // The docs tests read the commands, they do not run them; a page a test runs block by block is the exception.
    const exercisers = [
      ...files(join(ROOT, 'test')).filter((f) => !f.startsWith(join(ROOT, 'test/docs/'))),
      join(ROOT, 'scripts/demo.ts'),
      join(ROOT, 'scripts/lib/federation.ts'),
    ].map((f) => ({ f: relative(ROOT, f), text: readFileSync(f, 'utf8') }));
    for (const [page, test] of Object.entries(PAGES_RUN)) {
      const text = readFileSync(join(ROOT, test), 'utf8');
      expect(text, `${test} runs the sh blocks of ${page}`)
        .to.contain(`readPage('${page}')`)
        .and.to.contain("fencedBlocks(page, 'sh')")
        .and.to.contain("spawn('bash'");
    }
    const commands = new Map<string, string[]>();
    for (const c of shownCommands().commands) {
      const path = await commandPath(c.bin, c.words);
      // The bare name (`hie-relay --config FILE`, `hie-agent` in a sentence) has no words to look for.
      if (path.length === 0 || (c.block === 'sh' && PAGES_RUN[c.page])) continue;
      const name = [c.bin, ...path].join(' ');
      commands.set(name, [...(commands.get(name) ?? []), c.page]);
    }
    expect(commands.size).to.be.greaterThan(60);
    const missing: string[] = [];
    for (const [c, pages] of commands) {
      const [bin, ...words] = c.split(' ') as [Bin, ...string[]];
      if (!exercisers.some(({ text }) => runs(text, bin, words))) missing.push(`${c} (${[...new Set(pages)].join(', ')})`);
    }
    expect(missing, 'commands no test or demo runs').to.deep.equal([]);
  });

  it('takes for a run only the words in an argument list of a file that runs the command', function () {
    const spawned = "const BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));\n";
    expect(runs(`${spawned}spawnSync(process.execPath, [BIN, 'rx', 'abort', id]);`, 'hie-agent', ['rx', 'abort'])).to.equal(true);
    expect(runs(`${spawned}spawnSync(process.execPath, [BIN, 'rx', 'abort']);`, 'hie-agent', ['rx'])).to.equal(true);
    expect(
      runs("import { main } from '../../certs/cli.ts';\nawait main(['issuers', 'revoke-key', '--dir', pki]);", 'hie-certs', ['issuers', 'revoke-key']),
    ).to.equal(true);
    expect(runs("spawnSync(process.execPath, [join(ROOT, 'bin', 'hie-ledger.js'), 'verify-proof', 'p.json']);", 'hie-ledger', ['verify-proof'])).to.equal(true);
    expect(runs(`${spawned}const args = ['rx', 'abort', id];\nspawnSync(process.execPath, [BIN, ...args]);`, 'hie-agent', ['rx', 'abort'])).to.equal(true);
    // Not next to each other, not first, not in a file that runs that command, not in an argument list, or asking for help.
    expect(runs(`${spawned}spawnSync(process.execPath, [BIN, 'rx', '--x', 'abort']);`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs(`${spawned}spawnSync(process.execPath, [BIN, 'status', 'rx', 'abort']);`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs("import { main } from '../../certs/cli.ts';\nawait main(['rx', 'abort']);", 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs(`${spawned}it('runs rx abort', () => post('/abort'));`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs(`${spawned}const args = ['rx', 'abortion'];`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs(`${spawned}expect(body['rx']).to.equal('abort');`, 'hie-agent', ['rx'])).to.equal(false);
    expect(runs(`${spawned}for (const c of ['rx', 'abort']) expect(help).to.contain(c);`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
    expect(runs(`${spawned}spawnSync(process.execPath, [BIN, 'rx', 'abort', '--help']);`, 'hie-agent', ['rx', 'abort'])).to.equal(false);
  });

  it('leaves out, as values, only the HKDF labels in docs/replication.md', function () {
    expect(shownCommands().values).to.deep.equal(['docs/replication.md: hie-ledger sealed entry v1', 'docs/replication.md: hie-ledger seal <feed>']);
  });

  // Moved from test/readme.test.ts: the agent's error table is in docs/agent.md (and, generated, docs/reference/errors.md).
  it('docs/agent.md documents every agent error code, and the OpenAPI document lists them all', function () {
    const doc = buildOpenApi('test') as { 'x-error-codes': Array<{ code: string }> };
    const listed = doc['x-error-codes'].map((e) => e.code);
    for (const code of Object.keys(AGENT_ERRORS)) expect(listed).to.include(code);
    for (const [code, { status }] of Object.entries(AGENT_ERRORS)) expect(agent, code).to.contain(`| \`${code}\` | ${status} |`);
  });

  // Moved from test/readme.test.ts: the config tables are in docs/relay.md and docs/agent.md.
  it('docs/relay.md and docs/agent.md have a config-key table that names every key of their schema', function () {
    // Rows name keys in backticks, in full or by their last part after a full key (`identity.cert`, `.key`).
    const table = (text: string): Set<string> => {
      const tables = [...text.matchAll(/^\| key \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\|\n)+)/gm)];
      expect(tables).to.have.length(1);
      const keys = new Set<string>();
      for (const row of (tables[0]![1] as string).split('\n')) {
        let parent = '';
        for (const [, name] of row.matchAll(/`([A-Za-z.]+)`/g)) {
          const key = name!.startsWith('.') ? parent + name!.slice(1) : name!;
          if (!name!.startsWith('.')) parent = key.slice(0, key.lastIndexOf('.') + 1);
          keys.add(key);
        }
      }
      return keys;
    };
    for (const [page, text, schema] of [
      ['docs/relay.md', relay, relayConfigSchema],
      ['docs/agent.md', agent, agentConfigSchema],
    ] as const) {
      const keys = table(text);
      const missing = [...configLeaves(schema).keys()].filter((k) => !keys.has(k));
      expect(missing, `keys the table of ${page} leaves out`).to.deep.equal([]);
    }
  });

  // Moved from test/readme.test.ts: the relay's error table is in docs/relay.md.
  it('docs/relay.md documents every relay error code with its close code or status', function () {
    for (const [code, info] of Object.entries(RELAY_ERRORS) as Array<[string, RelayErrorInfo]>) {
      const where = info.closeCode ? `close ${info.closeCode}` : info.status ? `HTTP ${info.status}` : '-';
      expect(relay, code).to.contain(`| \`${code}\` | ${where} |`);
    }
  });
});
