import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CLIS, runCli, shownCommands, type Bin } from '../support/commands.ts';
import { ROOT, docPages, readPage } from '../support/markdown.ts';

/** `hie-x word word` as the pages show it (the command and up to three lower-case words after it, as test/support/commands.ts reads them) -> the pages. */
function shown(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const { bin, words, page } of shownCommands().commands) {
    if (words.length === 0) continue;
    const c = [bin, ...words].join(' ');
    found.set(c, [...(found.get(c) ?? []), page]);
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
    const commands = shown();
    expect(commands.size, 'commands found').to.be.greaterThan(40);
    const top = new Map<string, string>();
    for (const bin of Object.keys(CLIS) as Bin[]) top.set(bin, (await runCli(bin, ['--help'])).out);
    const unknown: string[] = [];
    for (const [command, pages] of commands) {
      const [bin, ...words] = command.split(' ') as [Bin, ...string[]];
      // `hie-agent help GROUP [SUB]` is the help command itself.
      const help = bin === 'hie-agent' && words[0] === 'help';
      // Named in the command's own overview (hie-relay answers --help whatever precedes it) ...
      const listed = help || new RegExp(`(^|[\\s|(])${words[0]}([\\s|)]|$)`, 'm').test(top.get(bin) as string);
      // ... and its --help, with the group's subcommand if it is a group, answers 0 (an unknown subcommand is a usage error).
      const { code } = await runCli(bin, help ? words : [...words, '--help']);
      if (!listed || code !== 0) unknown.push(`${command} (${[...new Set(pages)].join(', ')}): ${listed ? `exit ${code}` : 'not in --help'}`);
    }
    expect(unknown).to.deep.equal([]);
  });

  it('would catch a subcommand that does not exist', async function () {
    expect((await runCli('hie-agent', ['consent', 'grnat', '--help'])).code).to.not.equal(0);
    expect((await runCli('hie-certs', ['issue-hospital', '--help'])).code).to.not.equal(0);
    expect((await runCli('hie-ledger', ['verfy', '--help'])).code).to.not.equal(0);
    expect((await runCli('hie-certs', ['directory', 'publish', '--help'])).code).to.not.equal(0);
  });
});
