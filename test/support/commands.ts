// The hie-* commands the docs show, and the CLIs themselves run in this process,
// for the docs tests (test/docs/commands.test.ts and test/docs/pages.test.ts).
import { main as certsMain } from '../../certs/cli.ts';
import { main as agentMain } from '../../hospital-agent/cli.ts';
import { main as ledgerMain } from '../../ledger/cli.ts';
import { main as relayMain } from '../../relay/cli.ts';
import { docPages, readPage } from './markdown.ts';

export type Bin = 'hie-certs' | 'hie-relay' | 'hie-agent' | 'hie-ledger';
export type Main = (argv: string[]) => Promise<number>;

/** Where each command's code lives: the folder whose `cli.ts` is its `main`. */
export const BIN_DIRS: Record<Bin, string> = { 'hie-certs': 'certs', 'hie-relay': 'relay', 'hie-agent': 'hospital-agent', 'hie-ledger': 'ledger' };

const capture = (m: (argv: string[], io: { out: (t: string) => void; err: (t: string) => void }) => Promise<number>): Main => {
  return async (argv) => m(argv, { out: (t) => void process.stdout.write(t), err: (t) => void process.stdout.write(t) });
};

/** Each command's `main`, printing to stdout (where `runCli` catches it). */
export const CLIS: Record<Bin, Main> = {
  'hie-certs': capture(certsMain),
  'hie-relay': relayMain,
  'hie-agent': capture(agentMain),
  'hie-ledger': capture(ledgerMain),
};

/** Runs a CLI's main in this process and returns its exit code and what it printed (stdout included, for hie-relay). */
export async function runCli(bin: Bin, argv: string[]): Promise<{ code: number | string; out: string }> {
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await CLIS[bin](argv), out };
  } catch (err) {
    return { code: (err as { code?: string }).code ?? 'threw', out: `${out}${(err as Error).message}` };
  } finally {
    process.stdout.write = write;
  }
}

/** One place a page shows a command: the command name, the lower-case words after it (at most three), the line. */
export interface ShownCommand {
  page: string;
  /** The info string of the fenced block it is in (`sh`, or '' for none); undefined in an inline span. */
  block: string | undefined;
  bin: Bin;
  words: string[];
  line: string;
}

const NAME = String.raw`hie-(?:certs|relay|agent|ledger)(?![\w.'-])`;
/** What may stand before a command on a shell line: a prompt, `VAR=value`, npx/sudo/exec/time, a pipe, `&&`, `;`, `$(`, until/while/if. */
const LEAD = String.raw`(?:\$ |[A-Z_][A-Z0-9_]*=\S* |npx |sudo (?:-u \S+ )?|exec |time |(?:until|while|if|then|do) |[|&;(] *|\$\()*`;
const AT_LINE = new RegExp(String.raw`^\s*${LEAD}(${NAME})([^\n]*)`);
const IN_LINE = new RegExp(String.raw`(?:\|\|?|&&|;|\$\() *${LEAD}(${NAME})([^\n]*)`, 'g');
/** A fenced block: its info string and its body (as markdown.ts's fencedBlocks reads them). */
const FENCED = /^```([^\n`]*)\n([\s\S]*?)^```[ \t]*$/gm;
const SPAN = new RegExp(String.raw`^(?:npx |[A-Z_][A-Z0-9_]*=\S* )*(${NAME})(.*)$`);
/** The words that name an inline span as a string value, not a command: replication.md's HKDF salt and info. */
const VALUE_NAMES = /(?:^|\s)(?:salt|info|label|prefix|typ)\s*$/;

function words(rest: string): string[] {
  const out: string[] = [];
  for (const token of rest.trim().split(/\s+/)) {
    if (!/^[a-z][a-z-]*$/.test(token) || out.length === 3) break;
    out.push(token);
  }
  return out;
}

/**
 * Every command invocation the pages show. The rule, so that a name in a
 * sentence or a string that starts like a command is not taken for one:
 * - in a fenced block, a line (its `# comment` left out) that starts with the
 *   command name, after a prompt, `VAR=value`, `npx`, `sudo` or a shell
 *   keyword (`until hie-agent status ...`), or the command after `|`, `&&`,
 *   `;` or `$(` on a line;
 * - an inline code span that starts with the command name (after `npx` or
 *   `VAR=value`), unless the sentence names the span as a value just before
 *   it: "salt `hie-ledger sealed entry v1`, info `hie-ledger seal <feed>`" are
 *   HKDF labels (docs/replication.md), not commands. Those spans are
 *   returned apart, as `values`, so a test can keep them in view.
 * A name elsewhere (`systemctl reload hie-agent`, `bin/hie-agent.js`) is not an invocation.
 */
export function shownCommands(): { commands: ShownCommand[]; values: string[] } {
  const commands: ShownCommand[] = [];
  const values: string[] = [];
  for (const page of docPages()) {
    const text = readPage(page);
    const add = (block: string | undefined, bin: string, rest: string, line: string): void =>
      void commands.push({ page, block, bin: bin as Bin, words: words(rest), line: line.trim() });
    for (const m of text.matchAll(FENCED)) {
      for (const raw of (m[2] as string).split('\n')) {
        const line = raw.replace(/(^|\s)#.*$/, '');
        const first = AT_LINE.exec(line);
        if (first) add((m[1] as string).trim(), first[1] as string, first[2] as string, line);
        for (const n of (first ? (first[2] as string) : line).matchAll(IN_LINE)) add((m[1] as string).trim(), n[1] as string, n[2] as string, line);
      }
    }
    const outside = text.replace(FENCED, '');
    for (const m of outside.matchAll(/`([^`\n]+)`/g)) {
      const span = SPAN.exec(m[1] as string);
      if (!span) continue;
      if (VALUE_NAMES.test(outside.slice(Math.max(0, m.index - 20), m.index))) values.push(`${page}: ${m[1] as string}`);
      else add(undefined, span[1] as string, span[2] as string, m[1] as string);
    }
  }
  return { commands, values };
}

const helpCache = new Map<string, Promise<{ code: number | string; out: string }>>();

/**
 * The subcommand words of a shown command: the longest run of its words the
 * command's own help names (`hie-agent rx close --help` names `hie-agent rx
 * close`; `hie-agent rx close myongji --help` does not name `... myongji`, an
 * argument). A word the command does not know ends the run: commands.test.ts
 * reports it.
 */
export async function commandPath(bin: Bin, words: string[]): Promise<string[]> {
  // `hie-agent help GROUP [SUB]` is the help command itself.
  if (bin === 'hie-agent' && words[0] === 'help') return ['help', ...(await commandPath(bin, words.slice(1)))];
  const path: string[] = [];
  for (const w of words) {
    const next = [...path, w];
    const key = [bin, ...next].join(' ');
    if (!helpCache.has(key)) helpCache.set(key, runCli(bin, [...next, '--help']));
    const { code, out } = await (helpCache.get(key) as Promise<{ code: number | string; out: string }>);
    if (code !== 0 || !new RegExp(`^(?:Usage:)?\\s*${key}(?:\\s|$)`, 'm').test(out)) break;
    path.push(w);
  }
  return path;
}
