// Reading the project's Markdown pages for the docs tests: which pages there
// are, their fenced code blocks, their links and their headings' anchors.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** README.md, CHANGELOG.md and every docs/**\/*.md, as paths relative to the root. */
export function docPages(): string[] {
  const out = ['README.md', 'CHANGELOG.md'];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.md')) out.push(relative(ROOT, p));
    }
  };
  walk(join(ROOT, 'docs'));
  return out;
}

export function readPage(page: string): string {
  return readFileSync(join(ROOT, page), 'utf8');
}

/** The bodies of the fenced blocks whose info string is `lang` (every block when undefined), in order. */
export function fencedBlocks(text: string, lang?: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^```([^\n`]*)\n([\s\S]*?)^```[ \t]*$/gm)) {
    if (lang === undefined || (m[1] ?? '').trim() === lang) out.push(m[2] ?? '');
  }
  return out;
}

/** The text with its fenced blocks and inline code spans removed (what renders as prose and links). */
export function prose(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, '').replace(/`[^`\n]*`/g, '');
}

/** The text of every inline code span and fenced block: where commands are shown. */
export function code(text: string): string[] {
  const spans = [...text.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, '').matchAll(/`([^`\n]+)`/g)].map((m) => m[1] as string);
  return [...fencedBlocks(text), ...spans];
}

/**
 * GitHub's anchor for a heading: lower case, markup and punctuation dropped
 * (letters, digits, spaces, hyphens and underscores kept), spaces to hyphens.
 */
export function slug(heading: string): string {
  return heading
    .replace(/`/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors a page's headings make, with GitHub's -1, -2 suffixes for repeats. */
export function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  for (const m of text.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, '').matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const base = slug(m[1] as string);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Every Markdown link target `[text](target)` in the page's prose. */
export function linkTargets(text: string): string[] {
  return [...prose(text).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] as string);
}
