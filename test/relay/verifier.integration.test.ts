import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { cardBundle, cardQrPng, cardTypes, issuerJwk, issuerUrl, signCard } from '../../certs/shc/index.ts';
import { issuersApp } from '../../relay/issuers.ts';
import { makeCardWorld, type CardWorld } from '../certs/shc/support.ts';
import { tempDir } from '../support/tmp.ts';

const CHROMIUM = process.env['HIE_CHROMIUM'] ?? '/usr/bin/chromium';

describe('relay certificate listener: well-known issuer URLs and the verifier page in headless Chromium', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let world: CardWorld;
  let server: Server;
  let base: string;
  let browser: Browser | undefined;
  let page: Page;
  let caPem: string;
  const problems: string[] = [];

  async function cardPng(name: string, id: string, key?: ReturnType<typeof generateKeyPairSync>): Promise<string> {
    const fhirBundle = cardBundle({
      purpose: 'sick-leave',
      bundle: {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Patient', name: [{ family: 'Yoon', given: ['Seo'] }], birthDate: '1979-05-05' } }],
      },
      period: { start: '2026-12-01', end: '2026-12-02' },
    });
    const payload = {
      iss: issuerUrl(base, id),
      nbf: Math.floor(Date.now() / 1000),
      vc: { type: cardTypes('sick-leave'), rid: 'ridPage0001', credentialSubject: { fhirVersion: '4.0.1', fhirBundle: fhirBundle as never } },
    };
    const k = world.keys[id];
    const jws = key ? await signCard(payload, key.privateKey, (await issuerJwk(key.publicKey)).kid) : await signCard(payload, k!.privateKey, k!.jwk.kid);
    const path = join(tmp.dir, `${name}.png`);
    writeFileSync(path, (await cardQrPng(jws))[0] as Buffer);
    return path;
  }

  async function verdictOf(png: string): Promise<{ verdict: string; statements: string }> {
    await page.goto(`${base}/verify/`, { waitUntil: 'load' });
    // Strings, not functions: they run in the page, and this project's TypeScript has no DOM types.
    await page.waitForFunction("document.getElementById('source').textContent.startsWith('Issuer directory')");
    const input = await page.$('#image');
    await (input as NonNullable<typeof input>).uploadFile(png);
    await page.waitForFunction("document.getElementById('verdict').dataset.verdict");
    return JSON.parse(
      (await page.evaluate(
        "JSON.stringify({ verdict: document.getElementById('verdict').dataset.verdict, statements: document.getElementById('statements').textContent })",
      )) as string,
    ) as { verdict: string; statements: string };
  }

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`    skipped: no Chromium at ${CHROMIUM}`);
      this.skip();
    }
    tmp = tempDir('hie-verifier-');
    world = await makeCardWorld(tmp.dir, [
      { id: 'myongji', role: 'hospital' },
      { id: 'clinic', role: 'issuer', status: 'suspended' },
    ]);
    caPem = world.caPem;
    const relay = world.ca.issueRelay({ hosts: ['127.0.0.1'], outDir: join(tmp.dir, 'relay') });
    const file = join(tmp.dir, 'issuers.jws');
    server = createServer({ cert: readFileSync(relay.certPath), key: readFileSync(relay.keyPath) }, issuersApp({ file, caPem: () => caPem }));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The issuers' iss hangs from the listener's own URL, so the SHC rule iss + /.well-known/jwks.json holds.
    const { buildIssuerDirectory, signIssuerDirectory, verifyKeyBinding } = await import('../../certs/shc/index.ts');
    const { verifyDirectory } = await import('../../certs/index.ts');
    const members = await verifyDirectory((await world.store.sign()).jws, { caPem });
    const bindings = await Promise.all(Object.values(world.keys).map((k) => verifyKeyBinding(k.binding, { caPem })));
    const kid = world.keys['myongji']!.jwk.kid;
    const doc = buildIssuerDirectory({ members, bindings, revocations: { [kid]: { rids: ['ridGone0001'] } }, base, sequence: 1 });
    writeFileSync(file, await signIssuerDirectory(doc, world.dirKey, world.dirCert));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // The listener's certificate is from the test federation CA, which this Chromium does not know.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--ignore-certificate-errors'],
    });
    page = await browser.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
  });
  after(async () => {
    await browser?.close();
    server?.close();
    tmp?.cleanup();
  });

  it("serves each issuer's JWKS at iss + /.well-known/jwks.json and its revocation list at /.well-known/crl/<kid>.json", async function () {
    const kid = world.keys['myongji']!.jwk.kid;
    const { request } = await import('node:https');
    const get = (path: string): Promise<{ status: number; body: string; cors: string | undefined }> =>
      new Promise((resolve, reject) => {
        request(`${base}${path}`, { ca: caPem }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cors: res.headers['access-control-allow-origin'] as string | undefined }));
        })
          .on('error', reject)
          .end();
      });
    const jwks = await get('/issuers/myongji/.well-known/jwks.json');
    expect(jwks.status).to.equal(200);
    expect(jwks.cors).to.equal('*');
    expect(JSON.parse(jwks.body).keys[0]).to.include({ kid, alg: 'ES256', crlVersion: 1 });
    expect(JSON.parse((await get(`/issuers/myongji/.well-known/crl/${kid}.json`)).body)).to.deep.equal({ kid, method: 'rid', ctr: 1, rids: ['ridGone0001'] });
    const missing = await get('/issuers/nobody/.well-known/jwks.json');
    expect(missing.status).to.equal(404);
    expect(JSON.parse(missing.body).code).to.equal('ERR_RELAY_ISSUER_NOT_FOUND');
    expect((await get('/.well-known/hie-issuers.jws')).body.split('.')).to.have.length(3);
  });

  it('says valid for an uploaded QR image of a good card and shows what it states', async function () {
    const r = await verdictOf(await cardPng('good', 'myongji'));
    expect(r.verdict).to.equal('valid');
    expect(r.statements).to.contain('unfit for work from 2026-12-01 to 2026-12-02');
    expect(r.statements).to.contain('patient: Seo Yoon, born 1979-05-05');
  });

  it('says forged for a card signed with a key outside the directory, issuer-suspended for a suspended issuer', async function () {
    expect((await verdictOf(await cardPng('outsider', 'myongji', generateKeyPairSync('ec', { namedCurve: 'P-256' })))).verdict).to.equal('forged');
    expect((await verdictOf(await cardPng('suspended', 'clinic'))).verdict).to.equal('issuer-suspended');
  });

  it('logged no console error', function () {
    expect(problems).to.deep.equal([]);
  });
});
