import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Page } from 'puppeteer-core';
import { parseProofFile, verifyProof } from '../../../ledger/index.ts';
import { tempDir } from '../../support/tmp.ts';
import { haveChromium, openConsoleBrowser, SCREENSHOT_DIR, type ConsoleBrowser } from './chromium.ts';
import { buildConsoleFederation, COMPLIANCE_TOKEN, PATIENT_X, type ConsoleFederation } from './federation.ts';

/** Types into a field with the keyboard. */
async function type(page: Page, selector: string, value: string): Promise<void> {
  await page.focus(selector);
  await page.keyboard.type(value);
}

describe('compliance console in headless Chromium', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: ConsoleFederation;
  let b: ConsoleBrowser;
  let page: Page;
  let base: string;
  let problems: string[];
  const downloads = join(process.cwd(), 'test-output', 'console-downloads');

  before(async function () {
    if (!haveChromium()) this.skip();
    tmp = tempDir('hie-console-browser-');
    fed = await buildConsoleFederation(tmp.dir);
    base = `http://127.0.0.1:${fed.net.agents['myongji']!.apiPort}`;
    mkdirSync(downloads, { recursive: true });
    b = await openConsoleBrowser(base);
    ({ page, problems } = b);
    const cdp = await b.browser.target().createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads, eventsEnabled: true });
  });
  after(async function () {
    await b?.close();
    await fed?.net.close();
    tmp?.cleanup();
  });

  /** Fails on anything the page complained about (console errors, CSP violations, script errors), then scans it with axe-core. */
  const check = (name: string): Promise<void> => b.check(name);
  const go = (path: string): Promise<void> => b.go(path);
  const submit = (selector: string): Promise<void> => b.submit(selector);
  const text = (): Promise<string> => b.text();
  const setValue = (selector: string, value: string): Promise<unknown> =>
    page.evaluate(`document.querySelector(${JSON.stringify(selector)}).value = ${JSON.stringify(value)}`);

  it('refuses a wrong token at sign-in, then signs in with the keyboard', async function () {
    await go('/console/');
    expect(page.url()).to.equal(`${base}/console/sign-in`);
    await check('sign-in');
    await page.focus('input[name=token]');
    await page.keyboard.type('wrong-token-0123456789abcdef0123456789abcdef');
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
    expect(await text()).to.include('ERR_UNAUTHORIZED');
    problems.splice(0); // The 401 answer itself is logged by Chromium as a failed resource load.
    await page.focus('input[name=token]');
    await page.keyboard.type(COMPLIANCE_TOKEN);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.keyboard.press('Enter')]);
    expect(page.url()).to.equal(`${base}/console/`);
    expect(await text()).to.include('Exchanges per day');
    expect(await page.$('svg.chart rect.bar-sent')).not.to.equal(null);
    await check('overview');
  });

  it('refuses a form posted without its CSRF token', async function () {
    await go('/console/exchanges');
    await page.evaluate("document.querySelector('form.filters input[name=_csrf]').remove()");
    await submit('form.filters button[type=submit]');
    expect(await text()).to.include('ERR_CSRF');
    problems.splice(0); // The 403 answer is logged as a failed load.
  });

  it('answers "every exchange about patient X this month, and under which consent"', async function () {
    await go('/console/exchanges');
    const now = new Date();
    const first = `${now.toISOString().slice(0, 7)}-01`;
    const last = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 0)).toISOString().slice(0, 10);
    await setValue('input[name=from]', first);
    await setValue('input[name=to]', last);
    await type(page, 'input[name=patient]', PATIENT_X);
    await submit('form.filters button[type=submit]');
    expect(page.url()).not.to.include(PATIENT_X);
    const rows = await page.$$eval('table.exchanges tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)));
    const byId = new Map(rows.map((r) => [r[1], r]));
    expect([...byId.keys()].sort()).to.deep.equal([fed.exchanges.x1, fed.exchanges.x2, fed.exchanges.x3].sort());
    expect(byId.get(fed.exchanges.x1)?.[6]).to.equal(fed.consents.xSeverance);
    expect(byId.get(fed.exchanges.x3)?.[6]).to.equal(fed.consents.xMgh);
    expect(await page.content()).not.to.include(PATIENT_X);
    await check('exchanges-patient');
  });

  it('answers "prove exchange E to an external auditor": the downloaded proof verifies offline', async function () {
    await go('/console/exchanges');
    await submit(`a[href="/console/exchanges/${fed.exchanges.x1}"]`);
    const story = await text();
    for (const step of ['Consent granted', 'Sent (released)', 'Received', 'Receipt', 'Charge']) expect(story).to.include(step);
    await check('exchange');
    const file = `proof-${fed.exchanges.x1}.json`;
    await page.click('a.button[download]');
    const deadline = Date.now() + 20_000;
    while (!readdirSync(downloads).includes(file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const proof = parseProofFile(readFileSync(join(downloads, file), 'utf8'));
    const result = await verifyProof(proof, { caPem: readFileSync(fed.net.fed.caPath, 'utf8') });
    expect(result.ok, result.failures.join('; ')).to.equal(true);
    expect(result.proved.map((e) => e.type)).to.include.members(['consent.granted', 'exchange.sent', 'exchange.received', 'receipt']);
  });

  it('answers "which hospital received what from us this month"', async function () {
    await go('/console/exchanges');
    await setValue('input[name=from]', `${new Date().toISOString().slice(0, 7)}-01`);
    await page.select('select[name=direction]', 'sent');
    await submit('form.filters button[type=submit]');
    const summary = await page.$$eval('section[aria-labelledby=summary-h] tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 3).map((td) => td.innerText)),
    );
    expect(summary).to.deep.equal([
      ['sent', 'mgh', '1'],
      ['sent', 'severance', '3'],
    ]);
    await check('exchanges-sent');
  });

  it('answers "was anything sent after a consent was revoked": no, and verification agrees', async function () {
    await go('/console/consents');
    await type(page, 'input[name=patient]', PATIENT_X);
    await submit('form.filters button[type=submit]');
    const consents = await text();
    expect(consents).to.match(/revoked/);
    expect(consents).to.include('releases after the revocation: 0');
    expect(consents).not.to.include(PATIENT_X);
    await check('consents');
    await go('/console/integrity');
    await page.click('form[hx-post] button');
    await page.waitForFunction("document.querySelector('#findings').textContent.includes('Last verification')", { timeout: 30_000 });
    expect(await page.evaluate("document.querySelector('#findings').innerText")).to.include('no finding');
    await check('integrity');
  });

  it('shows audit events, settlements, the patient access report and the access log', async function () {
    await go('/console/audit');
    await page.select('select[name=subtype]', 'consent.revoked');
    await submit('form.filters button[type=submit]');
    expect(await text()).to.include('consent.revoked');
    await check('audit');
    await go('/console/settlements');
    expect(await text()).to.match(/\d+\.\d\d EUR/);
    await check('settlements');
    await go('/console/report');
    await type(page, 'input[name=patient]', PATIENT_X);
    await submit('form.filters button[type=submit]');
    const report = await page.$$eval('section.report tbody tr', (trs) => trs.length);
    expect(report).to.equal(3);
    await page.emulateMediaType('print');
    expect(await page.evaluate("getComputedStyle(document.querySelector('header')).display")).to.equal('none');
    await page.screenshot({ path: join(SCREENSHOT_DIR, 'report-print.png'), fullPage: true });
    await page.emulateMediaType('screen');
    await check('report');
    await go('/console/access');
    const log = await text();
    expect(log).to.include('patient access report');
    expect(log).not.to.include(PATIENT_X);
    await check('access-log');
  });
});
