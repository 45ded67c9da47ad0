import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { parseProofFile, verifyProof } from '../../../ledger/index.ts';
import { AccessLog } from '../../../hospital-agent/console/access-log.ts';
import { money } from '../../../hospital-agent/console/format.ts';
import { monthPeriod, settlementStatement } from '../../../hospital-agent/engine/payments.ts';
import { tempDir } from '../../support/tmp.ts';
import { buildConsoleFederation, COMPLIANCE_TOKEN, EHR_TOKEN, PATIENT_X, type ConsoleFederation } from './federation.ts';

/** A cookie jar of one browser-less client of the console. */
class Client {
  jar = new Map<string, string>();
  constructor(readonly base: string) {}
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(`${this.base}${path}`, { redirect: 'manual', ...init, headers: { ...(cookie ? { cookie } : {}), ...(init.headers as object) } });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const [k, v] = (pair as string).split('=');
      if (v === '') this.jar.delete(k as string);
      else this.jar.set(k as string, v as string);
    }
    return res;
  }
  post(path: string, fields: Record<string, string>): Promise<Response> {
    return this.fetch(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  }
  /** The CSRF token of the forms of a page. */
  static csrf(page: string): string {
    return /name="_csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
  }
  async signIn(token: string): Promise<Response> {
    const form = await (await this.fetch('/console/sign-in')).text();
    return this.post('/console/sign-in', { _csrf: Client.csrf(form), token });
  }
}

/** A page's markup with the whitespace between tags dropped and runs of spaces made one (templates are formatted by prettier). */
const squash = (page: string): string => page.replace(/>\s+</g, '><').replace(/\s+/g, ' ');

const codeIn = (page: string): string | undefined => /\((ERR_[A-Z_]+)\)/.exec(page)?.[1];

describe('compliance console (HTTP)', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: ConsoleFederation;
  let base: string;
  const agentLog: string[] = [];
  let officer: Client;
  let csrf: string;

  before(async function () {
    tmp = tempDir('hie-console-');
    fed = await buildConsoleFederation(tmp.dir, { agentLog });
    base = `http://127.0.0.1:${fed.net.agents['myongji']!.apiPort}`;
    officer = new Client(base);
    const res = await officer.signIn(COMPLIANCE_TOKEN);
    expect(res.status).to.equal(303);
    csrf = Client.csrf(await (await officer.fetch('/console/')).text());
  });
  after(async function () {
    await fed?.net.close();
    tmp.cleanup();
  });

  it('signs a compliance token in to an HttpOnly, SameSite=Strict session cookie scoped to /console', async function () {
    const c = new Client(base);
    const form = await c.fetch('/console/sign-in');
    const res = await c.post('/console/sign-in', { _csrf: Client.csrf(await form.text()), token: COMPLIANCE_TOKEN });
    expect(res.status).to.equal(303);
    expect(res.headers.get('location')).to.equal('/console/');
    const cookie = res.headers.getSetCookie().find((x) => x.startsWith('hie_console='));
    expect(cookie).to.match(/; Path=\/console; HttpOnly; SameSite=Strict$/);
    expect((await c.fetch('/console/')).status).to.equal(200);
  });

  it('refuses an ehr token at sign-in with 403 ERR_FORBIDDEN_ROLE, and a wrong token with 401', async function () {
    const ehr = new Client(base);
    const r1 = await ehr.signIn(EHR_TOKEN);
    expect(r1.status).to.equal(403);
    expect(codeIn(await r1.text())).to.equal('ERR_FORBIDDEN_ROLE');
    expect(ehr.jar.has('hie_console')).to.equal(false);
    expect((await ehr.fetch('/console/')).status).to.equal(303);
    const wrong = new Client(base);
    const r2 = await wrong.signIn('not-the-token-0123456789abcdef0123456789');
    expect(r2.status).to.equal(401);
    expect(codeIn(await r2.text())).to.equal('ERR_UNAUTHORIZED');
    const api = await fetch(`${base}/fhir/AuditEvent`, { headers: { authorization: `Bearer ${EHR_TOKEN}` } });
    expect(api.status).to.equal(403);
  });

  it('refuses sending to a compliance token (403 ERR_FORBIDDEN_ROLE), and nothing is recorded', async function () {
    const before = fed.net.agents['myongji']!.ledger.head()!.seq;
    const res = await fetch(`${base}/v1/exchanges`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${COMPLIANCE_TOKEN}`,
        'content-type': 'application/fhir+json',
        'hie-recipient': 'severance',
        'hie-patient-id': PATIENT_X,
        'hie-consent-id': fed.consents.xSeverance,
      },
      body: '{}',
    });
    expect(res.status).to.equal(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('ERR_FORBIDDEN_ROLE');
    expect(fed.net.agents['myongji']!.ledger.head()!.seq).to.equal(before);
  });

  it('refuses every form posted without its CSRF token, or with another session’s (403 ERR_CSRF)', async function () {
    const none = await officer.post('/console/search', { view: 'exchanges', counterparty: 'mgh' });
    expect(none.status).to.equal(403);
    expect(codeIn(await none.text())).to.equal('ERR_CSRF');
    const other = new Client(base);
    await other.signIn(COMPLIANCE_TOKEN);
    const otherCsrf = Client.csrf(await (await other.fetch('/console/')).text());
    expect((await officer.post('/console/integrity/verify', { _csrf: otherCsrf })).status).to.equal(403);
    expect((await officer.post('/console/sign-out', {})).status).to.equal(403);
    const signIn = new Client(base);
    const noPre = await signIn.post('/console/sign-in', { token: COMPLIANCE_TOKEN });
    expect(noPre.status).to.equal(403);
    expect((await officer.fetch('/console/')).status).to.equal(200);
  });

  it('answers every page with a strict CSP and helmet headers', async function () {
    const res = await officer.fetch('/console/exchanges');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self'");
    expect(csp).to.include("style-src 'self'");
    expect(csp).to.include("default-src 'none'");
    expect(csp).not.to.include('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(res.headers.get('cache-control')).to.equal('no-store');
    const htmx = await officer.fetch('/console/static/htmx.min.js');
    expect(htmx.status).to.equal(200);
    expect(Buffer.from(await htmx.arrayBuffer()).equals(readFileSync('node_modules/htmx.org/dist/htmx.min.js'))).to.equal(true);
  });

  it('finds a patient by the clear id, which then appears in no URL, page, log line or access-log record', async function () {
    const res = await officer.post('/console/search', { _csrf: csrf, view: 'exchanges', patient: PATIENT_X, from: new Date().toISOString().slice(0, 10) });
    expect(res.status).to.equal(303);
    const location = res.headers.get('location') as string;
    expect(location).to.match(/[?&]ph=[0-9a-f]{64}/);
    expect(location).not.to.include(PATIENT_X);
    const page = await (await officer.fetch(location)).text();
    expect(page).not.to.include(PATIENT_X);
    for (const id of [fed.exchanges.x1, fed.exchanges.x2, fed.exchanges.x3]) expect(page).to.include(id);
    expect(page).not.to.include(fed.exchanges.y1);
    const fhir = await fetch(`${base}/fhir/AuditEvent?patient=${PATIENT_X}`, { headers: { authorization: `Bearer ${COMPLIANCE_TOKEN}` } });
    expect(fhir.status).to.equal(200);
    expect(fhir.headers.get('content-type')).to.match(/^application\/fhir\+json/);
    const bundle = await fhir.text();
    expect(bundle).not.to.include(PATIENT_X);
    // Three releases and the two consents (to severance and to mgh): the entries that carry the patient's hash.
    const subtypes = (JSON.parse(bundle) as { entry: Array<{ resource: { subtype: Array<{ code: string }> } }> }).entry.map((e) => e.resource.subtype[0]?.code);
    expect(subtypes.sort()).to.deep.equal(['consent.granted', 'consent.granted', 'exchange.sent', 'exchange.sent', 'exchange.sent']);
    const consents = await fetch(`${base}/fhir/Consent?patient=${PATIENT_X}`, { headers: { authorization: `Bearer ${COMPLIANCE_TOKEN}` } });
    const c = (await consents.json()) as { entry: Array<{ resource: { id: string; status: string } }> };
    expect(c.entry.map((e) => [e.resource.id, e.resource.status]).sort()).to.deep.equal(
      [
        [fed.consents.xSeverance, 'active'],
        [fed.consents.xMgh, 'inactive'],
      ].sort(),
    );
    // A clear id put into a console URL by hand is ignored, and not recorded either.
    expect((await officer.fetch(`/console/exchanges?patient=${PATIENT_X}`)).status).to.equal(200);
    const accessLog = readFileSync(join(tmp.dir, 'data', 'myongji', 'console', 'access.log'), 'utf8');
    expect(accessLog).not.to.include(PATIENT_X);
    expect(accessLog).to.include('"view":"fhir AuditEvent search"');
    expect(accessLog).to.include(/ph=([0-9a-f]{64})/.exec(location)?.[1] as string);
    expect(AccessLog.verify(accessLog)).to.equal(undefined);
    expect(agentLog.length).to.be.greaterThan(0);
    expect(agentLog.filter((l) => l.includes(PATIENT_X))).to.deep.equal([]);
  });

  it('exports exactly what the filter shows, as CSV and NDJSON', async function () {
    const q = 'direction=sent&counterparty=severance';
    const page = await (await officer.fetch(`/console/exchanges?${q}`)).text();
    const shown = [...page.matchAll(/href="\/console\/exchanges\/([A-Za-z0-9_-]+)"/g)].map((m) => m[1]);
    const csv = (await (await officer.fetch(`/console/exchanges.csv?${q}`)).text()).trim().split('\r\n');
    expect(csv[0]).to.match(/^id,time,direction,counterparty,status/);
    const nd = (await (await officer.fetch(`/console/exchanges.ndjson?${q}`)).text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; counterparty: string });
    expect(nd.map((r) => r.id)).to.deep.equal(shown);
    expect(csv.slice(1).map((l) => l.split(',')[0])).to.deep.equal(shown);
    expect(new Set(shown)).to.deep.equal(new Set([fed.exchanges.x1, fed.exchanges.x2, fed.exchanges.y1]));
  });

  it('serves an exchange’s proof, which verifies offline with the CA alone', async function () {
    const page = await (await officer.fetch(`/console/exchanges/${fed.exchanges.x1}`)).text();
    for (const step of ['Consent granted', 'Sent (released)', 'Received', 'Receipt', 'Charge']) expect(page).to.include(step);
    const res = await officer.fetch(`/console/exchanges/${fed.exchanges.x1}/proof`);
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-disposition')).to.include('attachment');
    const file = parseProofFile(await res.text());
    const result = await verifyProof(file, { caPem: readFileSync(fed.net.fed.caPath, 'utf8') });
    expect(result.ok, result.failures.join('; ')).to.equal(true);
    expect(result.proved.map((e) => e.type)).to.include.members(['consent.granted', 'exchange.sent', 'exchange.received', 'receipt']);
  });

  it('shows the settlement in currency units, matching the agent’s settlement statement', async function () {
    const period = new Date().toISOString().slice(0, 7);
    const page = squash(await (await officer.fetch(`/console/settlements?period=${period}`)).text());
    const { start, end } = monthPeriod(period);
    const s = await settlementStatement(fed.net.agents['myongji']!.ledger, 'myongji', start, end);
    expect(s.lines.length).to.be.greaterThan(0);
    for (const l of s.lines) {
      expect(page).to.include(
        `<td>${l.counterparty}</td><td>${l.currency}</td><td class="num">${money(l.owes, l.currency)}</td><td class="num">${money(l.owed, l.currency)}</td><td class="num">${l.charges}</td>`,
      );
    }
    expect(money(250, 'EUR')).to.equal('2.50 EUR');
    expect(money(-1005, 'KRW')).to.equal('-1005 KRW');
  });

  it('shows that nothing was sent after the revocation, and a verification finds nothing', async function () {
    expect(fed.refusedAfterRevocation).to.equal('ERR_CONSENT_REVOKED');
    const search = await officer.post('/console/search', { _csrf: csrf, view: 'consents', patient: PATIENT_X });
    const page = squash(await (await officer.fetch(search.headers.get('location') as string)).text());
    expect(page).to.match(/releases after the revocation: <strong>0<\/strong>/);
    const v = await officer.post('/console/integrity/verify', { _csrf: csrf });
    expect(v.status).to.equal(303);
    const integrity = await (await officer.fetch('/console/integrity')).text();
    expect(integrity).to.include('no finding');
  });

  it('lists each console query in the access log view, with the patient as hash only', async function () {
    const page = squash(await (await officer.fetch('/console/access')).text());
    expect(page).to.include('<td>exchanges</td>');
    expect(page).to.include('<td>proof</td>');
    expect(page).not.to.include(PATIENT_X);
  });
});
