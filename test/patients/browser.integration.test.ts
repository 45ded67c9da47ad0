import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { pino } from 'pino';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { WebSocket } from 'ws';
import { Ledger } from '../../ledger/index.ts';
import { exportPublic, generateDeviceKeys, openPatientSession, sessionAuthPayload, signJws, unb64u } from '../../patient-app/protocol.js';
import {
  checkGrantedConsent,
  generateAgentPatientKey,
  issuePatientCredential,
  newChannel,
  PatientHub,
  PatientService,
  PatientStore,
  type GrantedBody,
} from '../../hospital-agent/patients/index.ts';
import { patientHash } from '../../hospital-agent/consent/patient.ts';
import { ConsentService } from '../../hospital-agent/services/consents.ts';
import { AgentError } from '../../hospital-agent/errors.ts';
import { startRelay, type RunningRelay } from '../../relay/index.ts';
import { getWorld, type World } from '../hospital-agent/crypto/fixtures.ts';
import { tempDir } from '../support/tmp.ts';

const CHROMIUM = process.env['HIE_CHROMIUM'] ?? '/usr/bin/chromium';
/** Where the screenshots of the patient's journey go (docs/patients.md describes them; gitignored). */
const SCREENSHOT_DIR = join(process.cwd(), 'test-output', 'patient-screenshots');
/**
 * With HIE_DOC_SCREENSHOTS=1, the patient's journey is also written phone-sized to docs/images/patients/ (what
 * docs/patients.md shows); without it, test runs leave the docs alone.
 */
const DOC_SCREENSHOT_DIR = process.env['HIE_DOC_SCREENSHOTS'] === '1' ? join(process.cwd(), 'docs', 'images', 'patients') : undefined;
const VIEWPORT = { width: 900, height: 900 };
const PHONE = { width: 420, height: 800 };
const PATIENT = 'urn:oid:1.2.410.100|MRN-770011';
const FAMILY = 'Hwang-Seowon';
/** The patient's own records as their EHR would push them: a FHIR R4 collection about this patient only. */
const RECORDS = Buffer.from(
  JSON.stringify({
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      {
        fullUrl: 'urn:uuid:5b1e3c4a-8f0e-4a53-9d0b-4f6c2a9e7b10',
        resource: { resourceType: 'Patient', identifier: [{ system: 'urn:oid:1.2.410.100', value: 'MRN-770011' }], name: [{ family: FAMILY }] },
      },
      {
        fullUrl: 'urn:uuid:0d7c2f3e-61a4-4b8e-8f43-2c9a5e1d7f22',
        resource: {
          resourceType: 'Observation',
          status: 'final',
          code: { text: 'HbA1c' },
          subject: { reference: 'urn:uuid:5b1e3c4a-8f0e-4a53-9d0b-4f6c2a9e7b10' },
          effectiveDateTime: '2026-11-20',
          valueQuantity: { value: 6.1, unit: '%' },
        },
      },
    ],
  }),
);
const AXE = readFileSync(join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/** Opens a WebSocket on the relay's patient path; resolves with the open socket or the refusal's status and code. */
function dial(port: number, query: string): Promise<{ ws?: WebSocket; status?: number; code?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/v1/patient?${query}`, { rejectUnauthorized: false });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, code: String(res.headers['x-hie-error'] ?? '') });
      res.resume();
      ws.terminate();
    });
    ws.once('error', () => resolve({ status: -1 }));
  });
}

describe('patients: the patient app in headless Chromium, through a real relay', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let w: World;
  let relay: RunningRelay;
  let ledger: Ledger;
  let store: PatientStore;
  let consents: ConsentService;
  let service: PatientService;
  let hub: PatientHub;
  let browser: Browser;
  let page: Page;
  let secret: Buffer;
  const tapped: Buffer[] = [];
  const problems: string[] = [];
  let link = '';
  let consentId = '';

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`    skipped: no Chromium at ${CHROMIUM}`);
      this.skip();
    }
    tmp = tempDir('hie-patients-');
    w = await getWorld();
    const log = pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent' });
    relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: w.fed.relay.cert, key: w.fed.relay.key, ca: w.fed.caPath, crl: w.fed.crlPath },
        admin: { enabled: false },
        tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
        log: { level: 'silent' },
      } as never,
      { logger: log, patientTap: (_direction, _hospital, bytes) => void tapped.push(Buffer.from(bytes)) },
    );
    const alpha = w.parties['alpha']!;
    ledger = await Ledger.open({
      path: join(tmp.dir, 'ledger'),
      trust: { caPem: w.caPem },
      author: { feed: 'alpha', signingKey: alpha.keys.signing.privateKey, bundle: alpha.bundle },
    });
    secret = randomBytes(32);
    consents = new ConsentService(ledger, 'alpha', secret);
    store = new PatientStore(join(tmp.dir, 'patients'));
    await store.open();
    service = new PatientService({
      feed: 'alpha',
      identity: () => alpha.identity,
      store,
      consents,
      ledger,
      secret,
      agentKey: await generateAgentPatientKey(),
      appUrl: `https://127.0.0.1:${relay.port}/patient/`,
      log,
    });
    hub = new PatientHub({ url: `wss://127.0.0.1:${relay.port}`, servername: 'localhost', identity: () => alpha.identity, service, log });
    await hub.connect();
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    if (DOC_SCREENSHOT_DIR) mkdirSync(DOC_SCREENSHOT_DIR, { recursive: true });
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      acceptInsecureCerts: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
    });
    page = await browser.newPage();
    await page.setViewport(VIEWPORT);
    page.on('console', (m) => void (m.type() === 'error' && problems.push(`console: ${m.text()}`)));
    page.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
    await page.evaluateOnNewDocument("document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective));");
  });

  after(async () => {
    await browser?.close();
    hub?.close();
    await relay?.close(100);
    await store?.close();
    await ledger?.close();
    tmp?.cleanup();
  });

  const status = (): Promise<string> => page.$eval('#status', (e) => e.textContent ?? '');
  /** A phone-sized screenshot for the docs (only with HIE_DOC_SCREENSHOTS=1), the page scrolled to `selector`. */
  async function docShot(name: string, selector?: string): Promise<void> {
    if (!DOC_SCREENSHOT_DIR) return;
    await page.setViewport(PHONE);
    await page.evaluate(selector ? `document.querySelector(${JSON.stringify(selector)})?.scrollIntoView({ block: 'start' })` : 'window.scrollTo(0, 0)');
    await page.screenshot({ path: join(DOC_SCREENSHOT_DIR, `${name}.png`) });
    await page.setViewport(VIEWPORT);
  }
  async function waitStatus(text: string): Promise<void> {
    try {
      await page.waitForFunction(`document.querySelector('#status')?.textContent?.includes(${JSON.stringify(text)})`, { timeout: 30_000 });
    } catch (err) {
      throw new Error(`waiting for "${text}", the page says "${await status()}" (${problems.join('; ')})`, { cause: err });
    }
  }

  it('enrols the device with the one-time code from the QR link', async () => {
    const enrolment = await service.enrol(PATIENT);
    expect(enrolment.qrSvg).to.match(/^<svg/);
    link = enrolment.link;
    // The link holds no patient id: the hospital, its key, the code and a credential naming a random channel.
    expect(Buffer.from(unb64u(link.split('#enrol=')[1] as string)).toString()).to.not.include('MRN-770011');
    await page.goto(link);
    await waitStatus('Ready to enrol');
    await page.screenshot({ path: join(SCREENSHOT_DIR, '1-enrol.png') });
    await docShot('1-enrol');
    await page.focus('#enrol-button');
    await page.keyboard.press('Enter');
    await waitStatus('Access log');
    expect(await page.$eval('#hospital', (e) => e.textContent)).to.equal('alpha');
    const enrolled = await ledger.byType('patient.enrolled', 'alpha');
    expect(enrolled).to.have.length(1);
    expect((enrolled[0]!.entry.body as { patient: string }).patient).to.equal(patientHash(secret, PATIENT));
    // The code was single-use and only its hash was stored: nothing of it is left.
    expect(await PatientStore.values(store.codes)).to.deep.equal([]);
    expect(problems).to.deep.equal([]);
  });

  it('refuses the same enrolment code a second time', async () => {
    const offer = JSON.parse(Buffer.from(unb64u(link.split('#enrol=')[1] as string)).toString());
    const channel = JSON.parse(Buffer.from(offer.cred.split('.')[1], 'base64url').toString()).ch;
    const { ws } = await dial(relay.port, new URLSearchParams({ cred: offer.cred }).toString());
    expect(ws).to.not.equal(undefined);
    const { hello, session, epk } = await openPatientSession(offer.k, channel);
    const keys = await generateDeviceKeys();
    const answer = new Promise<unknown>((resolve) => ws!.once('message', async (d: Buffer) => resolve(await session.open(new Uint8Array(d)))));
    ws!.send(hello);
    const sig = await signJws(keys.sign.privateKey, {}, await sessionAuthPayload(channel, epk), true);
    ws!.send(await session.seal({ t: 'enrol', code: offer.c, sign: await exportPublic(keys.sign.publicKey), sig }));
    expect(await answer).to.include({ t: 'error', code: 'ERR_PATIENT_ENROLMENT' });
    ws!.close();
  });

  it('shows a consent request, and the approval is the patient signature the ledger records and a recipient checks', async () => {
    const request = await service.requestConsent(PATIENT, {
      grantees: ['bravo'],
      purposes: ['TREAT'],
      scope: ['*'],
      validUntil: new Date(Date.now() + 30 * 24 * 3600_000).toISOString(),
    });
    await page.waitForSelector(`li[data-request="${request.id}"] button.approve`, { timeout: 30_000 });
    await page.screenshot({ path: join(SCREENSHOT_DIR, '2-request.png') });
    await docShot('2-consent-request', '#requests-title');
    await page.click(`li[data-request="${request.id}"] button.approve`);
    await waitStatus('Consent signed and recorded');
    consentId = request.id;
    const granted = (await ledger.byConsent(consentId)).find((e) => e.entry.type === 'consent.granted')!;
    const body = granted.entry.body as unknown as GrantedBody;
    expect(body.attestation).to.equal('patient-signed');
    expect(await checkGrantedConsent(body, 'alpha', { requirePatientSigned: true })).to.equal('patient-signed');
    expect(await page.$eval(`li[data-consent="${consentId}"]`, (e) => e.textContent)).to.include('signed by you');
  });

  it('refuses, at the recipient, a consent the hospital altered after the patient signed', async () => {
    const granted = (await ledger.byConsent(consentId)).find((e) => e.entry.type === 'consent.granted')!;
    const body = granted.entry.body as unknown as GrantedBody;
    for (const altered of [
      { ...body, purposes: ['TREAT', 'HRESCH'] },
      { ...body, grantees: ['bravo', 'charlie'] },
      { ...body, validUntil: new Date(Date.now() + 3650 * 24 * 3600_000).toISOString() },
      { ...body, labels: ['http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY'] },
    ] as GrantedBody[]) {
      let err: unknown;
      await checkGrantedConsent(altered, 'alpha').catch((e) => (err = e));
      expect((err as AgentError).code).to.equal('ERR_CONSENT_SIGNATURE');
    }
    const attested = await consents.grant({
      patientId: PATIENT,
      grantees: ['bravo'],
      purposes: ['TREAT'],
      scope: ['*'],
      validUntil: new Date(Date.now() + 86400_000).toISOString(),
    });
    const hb = (await ledger.byConsent(attested.id)).find((e) => e.entry.type === 'consent.granted')!.entry.body as unknown as GrantedBody;
    expect(await checkGrantedConsent(hb, 'alpha')).to.equal('attested-by-hospital');
    let err: unknown;
    await checkGrantedConsent(hb, 'alpha', { requirePatientSigned: true }).catch((e) => (err = e));
    expect((err as AgentError).code).to.equal('ERR_CONSENT_NOT_PATIENT_SIGNED');
    await consents.revoke(attested.id, 'entered-in-error');
  });

  it('shows the release in the access log after an exchange under the consent, and sends a copy of the records', async () => {
    const request = { patientHash: patientHash(secret, PATIENT), recipient: 'bravo', purpose: 'TREAT' as const, scope: ['Observation'], at: new Date() };
    // The release as the engine logs it (engine/release.ts): the consent checked, then exchange.sent, then bravo's receipt.
    await consents.checkThen(consentId, request, () => undefined);
    await ledger.append({
      type: 'exchange.sent',
      body: {
        exchange: 'x-patient-1',
        to: 'bravo',
        consent: consentId,
        patient: request.patientHash,
        purpose: 'TREAT',
        contentType: 'application/fhir+json',
        bytes: 812,
        hash: 'a'.repeat(64),
      },
    });
    await ledger.append({ type: 'receipt', body: { exchange: 'x-patient-1', from: 'bravo', disposition: 'delivered', hash: 'a'.repeat(64) } });
    await page.click('#log-button');
    await page.waitForSelector('tr[data-exchange="x-patient-1"]', { timeout: 30_000 });
    const row = await page.$eval('tr[data-exchange="x-patient-1"]', (e) => e.textContent ?? '');
    expect(row).to.include('bravo').and.include(consentId).and.include('delivered').and.include('alpha#');
    await docShot('3-access-log', '#log-title');
    // On a phone the log's rows are stacked, each cell labelled with its column: nothing is cut off at the right.
    await page.setViewport(PHONE);
    const phone = (await page.evaluate(`({
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      label: getComputedStyle(document.querySelector('tr[data-exchange="x-patient-1"] td:nth-child(5)'), '::before').content,
    })`)) as { overflow: number; label: string };
    await page.setViewport(VIEWPORT);
    expect(phone).to.deep.equal({ overflow: 0, label: '"Receipt: "' });
    // The EHR pushes the patient's copy: validated, kept, and sent at once to the open session, sealed to the device.
    const pushed = await service.pushRecords(PATIENT, RECORDS);
    expect(pushed).to.include({ entries: 2, delivered: 1 });
    await page.waitForFunction("document.querySelector('#records')?.textContent?.includes('FHIR Bundle of 2')", { timeout: 30_000 });
    expect(await page.$eval('#records-list', (e) => e.textContent ?? ''))
      .to.include('Observation: HbA1c, 6.1 %, 2026-11-20')
      .and.include(FAMILY);
    await docShot('4-records', '#records-title');
    // The copy is in the patient's access log and the ledger: keyed hash, device thumbprint and the SHA-256 of the bytes only.
    await page.waitForSelector(`tr[data-copy="${pushed.sha256}"]`, { timeout: 30_000 });
    expect(await page.$eval(`tr[data-copy="${pushed.sha256}"]`, (e) => e.textContent ?? '')).to.include('you (this device)');
    const copies = await ledger.byType('patient.records', 'alpha');
    const device = ((await ledger.byType('patient.enrolled', 'alpha'))[0]!.entry.body as { device: string }).device;
    expect(copies.map((e) => e.entry.body)).to.deep.equal([{ patient: patientHash(secret, PATIENT), device, hash: pushed.sha256 }]);
    // Asked again from the app: the copy kept for the device, logged again.
    await page.click('#records-button');
    // The status line may already have moved on (the access log refreshes it): the second logged copy is what counts.
    await page.waitForFunction("document.querySelectorAll('tr[data-copy]').length === 2", { timeout: 30_000 });
    expect(await ledger.byType('patient.records', 'alpha')).to.have.length(2);
    // A Bundle about someone else is refused before anything is kept or sent.
    let err: unknown;
    await service.pushRecords(PATIENT, Buffer.from(RECORDS.toString().replace('MRN-770011', 'MRN-999999'))).catch((e) => (err = e));
    expect((err as AgentError).code).to.equal('ERR_FHIR_PATIENT_MISMATCH');
    await page.screenshot({ path: join(SCREENSHOT_DIR, '3-access-log.png'), fullPage: true });
  });

  it('revokes with a signature; the next send under the consent is refused', async () => {
    await page.click(`li[data-consent="${consentId}"] button.revoke`);
    await waitStatus('Consent revoked');
    const revoked = (await ledger.byConsent(consentId)).find((e) => e.entry.type === 'consent.revoked')!;
    expect((revoked.entry.body as { signature?: string }).signature).to.match(/\.\./);
    let err: unknown;
    await consents
      .checkThen(
        consentId,
        { patientHash: patientHash(secret, PATIENT), recipient: 'bravo', purpose: 'TREAT', scope: ['Observation'], at: new Date() },
        () => undefined,
      )
      .catch((e) => (err = e));
    expect((err as AgentError).code).to.equal('ERR_CONSENT_REVOKED');
    await page.screenshot({ path: join(SCREENSHOT_DIR, '4-revoked.png'), fullPage: true });
    await docShot('5-revoked', '#consents-title');
    // An accessibility scan of the page with everything on it (injected through DevTools: the CSP stays as it is).
    await page.evaluate(AXE);
    const violations = (await page.evaluate(
      "axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id + ': ' + v.help))",
    )) as string[];
    expect(violations).to.deep.equal([]);
    await page.setViewport(PHONE);
    const onPhone = (await page.evaluate(
      "axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => v.id + ': ' + v.help))",
    )) as string[];
    await page.setViewport(VIEWPORT);
    expect(onPhone, 'at phone size').to.deep.equal([]);
    expect(problems).to.deep.equal([]);
    expect(await status()).to.include('revoked');
  });

  it('lets the relay read no consent content, patient id or record of all that traffic', () => {
    const all = Buffer.concat(tapped);
    expect(all.length).to.be.greaterThan(1000);
    for (const secretText of [
      'MRN-770011',
      FAMILY,
      'HbA1c',
      'Observation',
      'Consent',
      'TREAT',
      'bravo',
      patientHash(secret, PATIENT),
      consentId,
      'x-patient-1',
    ]) {
      expect(all.includes(Buffer.from(secretText)), secretText).to.equal(false);
    }
  });

  it('refuses a patient connection with a forged or expired credential, with a status and code', async () => {
    const alpha = w.parties['alpha']!.identity;
    const expired = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel(), lifetimeSeconds: 60, now: new Date(Date.now() - 3600_000) });
    expect(await dial(relay.port, `cred=${expired}`)).to.deep.include({ status: 401, code: 'ERR_PATIENT_CREDENTIAL_EXPIRED' });
    const good = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel() });
    const [h, p, s] = good.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, iss: 'bravo' })).toString('base64url')}.${s}`;
    expect(await dial(relay.port, `cred=${forged}`)).to.deep.include({ status: 401, code: 'ERR_PATIENT_CREDENTIAL_SIGNATURE' });
    expect(await dial(relay.port, 'cred=')).to.deep.include({ status: 400, code: 'ERR_PATIENT_CREDENTIAL_MALFORMED' });
    const device = await generateDeviceKeys();
    const session = await issuePatientCredential(alpha, { use: 'session', channel: newChannel(), device: await exportPublic(device.sign.publicKey) });
    expect(await dial(relay.port, `cred=${session}`)).to.deep.include({ status: 401, code: 'ERR_PATIENT_POP' });
    const offline = await issuePatientCredential(w.parties['charlie']!.identity, { use: 'enrol', channel: newChannel() });
    expect(await dial(relay.port, `cred=${offline}`)).to.deep.include({ status: 503, code: 'ERR_PATIENT_HOSPITAL_OFFLINE' });
    const metrics = await relay.metrics.registry.metrics();
    expect(metrics).to.match(/hie_relay_patient_refused_total\{code="ERR_PATIENT_CREDENTIAL_EXPIRED"\} 1/);
  });
});
