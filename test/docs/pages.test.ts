import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { expect } from 'chai';
import { AGENT_ERRORS } from '../../hospital-agent/errors.ts';
import { buildOpenApi } from '../../hospital-agent/api/openapi.ts';
import { configLeaves } from '../../common/index.ts';
import { agentConfigSchema } from '../../hospital-agent/config.ts';
import { relayConfigSchema } from '../../relay/index.ts';
import { RELAY_ERRORS, type RelayErrorInfo } from '../../relay/protocol/errors.ts';
import { ROOT, docPages, linkTargets, readPage } from '../support/markdown.ts';

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

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

  // Moved from test/readme.test.ts: the README's commands now live in the README and the docs pages.
  it('every `npx hie-*` command they show is run by a test or by the demo', function () {
    const exercisers = [...files(join(ROOT, 'test')), join(ROOT, 'scripts/demo.ts'), join(ROOT, 'scripts/lib/federation.ts')].map((f) => ({
      f: relative(ROOT, f),
      text: readFileSync(f, 'utf8'),
    }));
    const commands = new Set<string>();
    for (const page of docPages()) {
      for (const m of readPage(page).matchAll(/npx (hie-[a-z]+)((?: [a-z][a-z-]*)*)/g)) {
        const words = (m[2] ?? '').trim().split(' ').filter(Boolean).slice(0, 2);
        commands.add([m[1], ...words].join(' '));
      }
    }
    expect(commands.size).to.be.greaterThan(15);
    const missing: string[] = [];
    for (const c of commands) {
      const [bin, ...words] = c.split(' ');
      const covered = exercisers.some(
        ({ text }) =>
          text.includes(`${bin as string}.js`) &&
          words.every((w) => text.includes(`'${w}'`) || text.includes(`"${w}"`) || text.includes(` ${w} `) || text.includes(`'${w} `)),
      );
      if (!covered) missing.push(c);
    }
    expect(missing, 'commands no test or demo runs').to.deep.equal([]);
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
