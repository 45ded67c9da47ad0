import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { main as certsMain } from '../../certs/cli.ts';
import { main as agentMain } from '../../hospital-agent/cli.ts';
import { main as ledgerMain } from '../../ledger/cli.ts';
import { main as relayMain } from '../../relay/cli.ts';
import { ROOT, code, docPages, readPage } from '../support/markdown.ts';

type Main = (argv: string[]) => Promise<number>;

/** Runs a CLI's main in this process and returns its exit code and what it printed (stdout included, for hie-relay). */
async function run(main: Main, argv: string[]): Promise<{ code: number | string; out: string }> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await main(argv), out };
  } catch (err) {
    return { code: (err as { code?: string }).code ?? 'threw', out: `${out}${(err as Error).message}` };
  } finally {
    process.stdout.write = write;
  }
}

const capture = (m: (argv: string[], io: { out: (t: string) => void; err: (t: string) => void }) => Promise<number>): Main => {
  return async (argv) => m(argv, { out: (t) => void process.stdout.write(t), err: (t) => void process.stdout.write(t) });
};

const CLIS: Record<string, Main> = {
  'hie-certs': capture(certsMain),
  'hie-relay': relayMain,
  'hie-agent': capture(agentMain),
  'hie-ledger': capture(ledgerMain),
};

/** Code that names a command without being one: replication.md's HKDF labels. */
const NOT_COMMANDS = new Set(['hie-ledger sealed entry', 'hie-ledger seal']);

/** `hie-x word word` as shown in the pages' code (comments left out): the command name and up to two lower-case words after it. */
function shownCommands(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const page of docPages()) {
    for (const snippet of code(readPage(page)).map((s) => s.replace(/(^|\s)#.*$/gm, ''))) {
      for (const m of snippet.matchAll(/(?<![\w/.$-])(hie-(?:certs|relay|agent|ledger))(?![\w.'-])([^\n`]*)/g)) {
        const words: string[] = [];
        for (const token of (m[2] ?? '').trim().split(/\s+/)) {
          if (!/^[a-z][a-z-]*$/.test(token) || words.length === 2) break;
          words.push(token);
        }
        if (words.length === 0) continue;
        const c = [m[1], ...words].join(' ');
        if (NOT_COMMANDS.has(c)) continue;
        found.set(c, [...(found.get(c) ?? []), page]);
      }
    }
  }
  return found;
}

describe('commands shown in README.md, CHANGELOG.md and docs/', function () {
  it('every `npm run <script>` is a script of package.json', function () {
    const scripts = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
    const missing: string[] = [];
    let seen = 0;
    for (const page of docPages()) {
      for (const m of readPage(page).matchAll(/npm run ([a-z][\w:-]*)/g)) {
        seen++;
        if (!scripts.includes(m[1] as string)) missing.push(`${page}: npm run ${m[1]}`);
      }
    }
    expect(seen).to.be.greaterThan(20);
    expect(missing).to.deep.equal([]);
  });

  it('every `npm run bench -- SECTION` names a bench section (a module of scripts/bench/, as scripts/bench.ts finds them)', function () {
    const sections = readdirSync(join(ROOT, 'scripts/bench'))
      .filter((f) => f.endsWith('.ts') && !['types.ts', 'util.ts'].includes(f))
      .map((f) => f.slice(0, -3));
    const missing: string[] = [];
    let seen = 0;
    for (const page of docPages()) {
      for (const m of readPage(page).matchAll(/npm run bench -- ([a-z][\w-]*)/g)) {
        seen++;
        if (!sections.includes(m[1] as string)) missing.push(`${page}: npm run bench -- ${m[1]}`);
      }
    }
    expect(seen).to.be.greaterThan(10);
    expect(missing).to.deep.equal([]);
  });

  it('every hie-certs, hie-relay, hie-agent and hie-ledger subcommand is one the command knows (its --help answers)', async function () {
    const shown = shownCommands();
    expect(shown.size, 'commands found').to.be.greaterThan(40);
    const top = new Map<string, string>();
    for (const [bin, main] of Object.entries(CLIS)) top.set(bin, (await run(main, ['--help'])).out);
    const unknown: string[] = [];
    for (const [command, pages] of shown) {
      const [bin, ...words] = command.split(' ') as [string, ...string[]];
      const main = CLIS[bin] as Main;
      // `hie-agent help GROUP [SUB]` is the help command itself.
      const help = bin === 'hie-agent' && words[0] === 'help';
      // Named in the command's own overview (hie-relay answers --help whatever precedes it) ...
      const listed = help || new RegExp(`(^|[\\s|(])${words[0]}([\\s|)]|$)`, 'm').test(top.get(bin) as string);
      // ... and its --help, with the group's subcommand if it is a group, answers 0 (an unknown subcommand is a usage error).
      const { code } = await run(main, help ? words : [...words, '--help']);
      if (!listed || code !== 0) unknown.push(`${command} (${[...new Set(pages)].join(', ')}): ${listed ? `exit ${code}` : 'not in --help'}`);
    }
    expect(unknown).to.deep.equal([]);
  });

  it('would catch a subcommand that does not exist', async function () {
    expect((await run(CLIS['hie-agent'] as Main, ['consent', 'grnat', '--help'])).code).to.not.equal(0);
    expect((await run(CLIS['hie-certs'] as Main, ['issue-hospital', '--help'])).code).to.not.equal(0);
    expect((await run(CLIS['hie-ledger'] as Main, ['verfy', '--help'])).code).to.not.equal(0);
    expect((await run(CLIS['hie-certs'] as Main, ['directory', 'publish', '--help'])).code).to.not.equal(0);
  });
});
