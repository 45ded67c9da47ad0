#!/usr/bin/env node
// `npm test`'s first step (pretest): checks the system programs the suite
// runs for real, and says in one line what is missing and how to get it,
// instead of a dozen `spawn nats-server ENOENT` failures later. Plain
// JavaScript (no tsx, no build): it runs before anything else. Exit 1 when
// something is missing; HIE_SKIP_PREREQUISITES=1 skips the check.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** True when `command args` runs (exit 0). */
function runs(command, args) {
  const r = spawnSync(command, args, { stdio: 'ignore', timeout: 20_000 });
  return r.error === undefined && r.status === 0;
}

/** True when a test file under test/ contains `text`. */
function testsUse(text, dir = join(ROOT, 'test')) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() ? testsUse(text, p) : e.name.endsWith('.ts') && readFileSync(p, 'utf8').includes(text)) return true;
  }
  return false;
}

const missing = [];
if (!runs('openssl', ['version'])) missing.push({ what: 'openssl', why: 'certificate and CRL cross-checks', apt: 'openssl' });
if (!runs('nats-server', ['--version'])) missing.push({ what: 'nats-server', why: 'the relay scale-out tests', apt: 'nats-server' });
if (testsUse('puppeteer-core')) {
  const chrome = process.env.PUPPETEER_EXECUTABLE_PATH || process.env.CHROME_PATH;
  const found = chrome ? runs(chrome, ['--version']) : ['chromium', 'chromium-browser'].some((c) => runs(c, ['--version']));
  if (!found) missing.push({ what: 'chromium', why: 'the web page tests (headless)', apt: 'chromium' });
}

if (process.env.HIE_SKIP_PREREQUISITES === '1' || missing.length === 0) process.exit(0);
process.stderr.write(
  `npm test needs ${missing.map((m) => `${m.what} (${m.why})`).join(', ')}: install with 'sudo apt-get install ${missing.map((m) => m.apt).join(' ')}' (Debian/Ubuntu), or see docs/install.md\n`,
);
process.exit(1);
