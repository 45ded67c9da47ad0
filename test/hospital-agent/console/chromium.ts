import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

/** Debian's chromium package; the console's browser tests skip when it is not installed. */
export const CHROMIUM = process.env['HIE_CHROMIUM'] ?? '/usr/bin/chromium';
/** Where the screenshots of each view go (docs/compliance-console.md shows them; gitignored). */
export const SCREENSHOT_DIR = join(process.cwd(), 'test-output', 'console-screenshots');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: string[] }>;
}

/** A headless Chromium on one console, with what its pages complained about. */
export interface ConsoleBrowser {
  browser: Browser;
  page: Page;
  /** Console errors and warnings, failed loads (>= 400), script errors and CSP violations since the last clear. */
  problems: string[];
  go(path: string): Promise<void>;
  /** Clicks `selector` and waits for the page it loads. */
  submit(selector: string): Promise<void>;
  text(): Promise<string>;
  /** Screenshot as `name.png`, then fails on any problem, then on any serious or critical axe-core violation. */
  check(name: string): Promise<void>;
  /** Signs in through the form with the keyboard. */
  signIn(token: string): Promise<void>;
  close(): Promise<void>;
}

/** Whether Chromium is installed (the tests skip with one line otherwise). */
export function haveChromium(): boolean {
  if (existsSync(CHROMIUM)) return true;
  console.log(`    skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set HIE_CHROMIUM)`);
  return false;
}

/** Launches Chromium on the console at `base` (`http://127.0.0.1:PORT`). */
export async function openConsoleBrowser(base: string): Promise<ConsoleBrowser> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const axe = readFileSync(join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url().replace(base, '')}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
  // Injected by the DevTools protocol (no inline script): every CSP violation becomes a console error.
  await page.evaluateOnNewDocument(
    "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));",
  );
  const text = (): Promise<string> => page.evaluate('document.body.innerText') as Promise<string>;
  const go = async (path: string): Promise<void> => {
    await page.goto(`${base}${path}`, { waitUntil: 'load' });
  };
  return {
    browser,
    page,
    problems,
    go,
    text,
    async submit(selector) {
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
    },
    async check(name) {
      await page.screenshot({ path: join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
      expect(problems, `on ${name}`).to.deep.equal([]);
      // Evaluated through the DevTools protocol: no inline script, so the page's CSP stays as it is.
      await page.evaluate(axe);
      const violations = (await page.evaluate(
        `axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) })))`,
      )) as AxeViolation[];
      const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      expect(
        serious.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
        `axe on ${name}`,
      ).to.deep.equal([]);
      expect(problems, `after axe on ${name}`).to.deep.equal([]);
    },
    async signIn(token) {
      await go('/console/sign-in');
      await page.focus('input[name=token]');
      await page.keyboard.type(token);
      await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
      expect(page.url()).to.equal(`${base}/console/`);
    },
    async close() {
      await browser.close();
    },
  };
}
