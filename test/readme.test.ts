import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { AGENT_ERRORS } from '../hospital-agent/errors.ts';
import { buildOpenApi } from '../hospital-agent/api/openapi.ts';
import { configLeaves } from '../common/index.ts';
import { agentConfigSchema } from '../hospital-agent/config.ts';
import { relayConfigSchema } from '../relay/index.ts';
import { RELAY_ERRORS, type RelayErrorInfo } from '../relay/protocol/errors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function files(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) files(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('README', function () {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const exercisers = [...files(join(ROOT, 'test')), join(ROOT, 'scripts/demo.ts'), join(ROOT, 'scripts/lib/federation.ts')].map((f) => ({
    f: relative(ROOT, f),
    text: readFileSync(f, 'utf8'),
  }));

  it('every hie-* command it shows is run by a test or by the demo', function () {
    const commands = new Set<string>();
    for (const m of readme.matchAll(/npx (hie-[a-z]+)((?: [a-z][a-z-]*)*)/g)) {
      const words = (m[2] ?? '').trim().split(' ').filter(Boolean).slice(0, 2);
      commands.add([m[1], ...words].join(' '));
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
    expect(missing, 'README commands no test or demo runs').to.deep.equal([]);
  });

  it('documents every agent error code, and the OpenAPI document lists them all', function () {
    const doc = buildOpenApi('test') as { 'x-error-codes': Array<{ code: string }> };
    const listed = doc['x-error-codes'].map((e) => e.code);
    for (const code of Object.keys(AGENT_ERRORS)) {
      expect(listed).to.include(code);
    }
    for (const [code, { status }] of Object.entries(AGENT_ERRORS)) expect(readme, code).to.contain(`| \`${code}\` | ${status} |`);
  });

  it('has a config-key table for the relay and for the agent that names every key of its schema', function () {
    // Rows name keys in backticks, in full or by their last part after a full key (`identity.cert`, `.key`).
    const tables = [...readme.matchAll(/^\| key \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\|\n)+)/gm)].map((m) => {
      const keys = new Set<string>();
      for (const row of (m[1] as string).split('\n')) {
        let parent = '';
        for (const [, name] of row.matchAll(/`([A-Za-z.]+)`/g)) {
          const key = name!.startsWith('.') ? parent + name!.slice(1) : name!;
          if (!name!.startsWith('.')) parent = key.slice(0, key.lastIndexOf('.') + 1);
          keys.add(key);
        }
      }
      return keys;
    });
    expect(tables).to.have.length(2);
    for (const [i, schema] of [relayConfigSchema, agentConfigSchema].entries()) {
      const missing = [...configLeaves(schema).keys()].filter((k) => !tables[i]!.has(k));
      expect(missing, `keys the ${i === 0 ? 'relay' : 'agent'} table leaves out`).to.deep.equal([]);
    }
  });

  it('documents every relay error code with its close code or status', function () {
    for (const [code, info] of Object.entries(RELAY_ERRORS) as Array<[string, RelayErrorInfo]>) {
      const where = info.closeCode ? `close ${info.closeCode}` : info.status ? `HTTP ${info.status}` : '-';
      expect(readme, code).to.contain(`| \`${code}\` | ${where} |`);
    }
  });
});
