import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { WebSocket } from 'ws';
import { MAX_RECORDS_BYTES } from '../../hospital-agent/patients/service.ts';
import { exportPublic, generateDeviceKeys, openPatientSession, sessionAuthPayload, signJws, unb64u } from '../../patient-app/protocol.js';
import { startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

const PATIENT = 'SYN-PREC-4410';
/** A patient no device was ever enrolled for. */
const NO_DEVICE = 'SYN-PREC-4411';
/** A token of the compliance role: valid, but not for /v1. */
const COMPLIANCE_TOKEN = 'compliance-token-0123456789abcdef0123456789';
/** Strings of the fixture Bundle's content (the Patient's family name, a Condition's display). */
const CONTENT = ['Testperson', 'Hypertensive disorder'];

type Bundle = { entry: Array<{ resource: Record<string, unknown> }> };
const parse = (b: Buffer): Bundle => JSON.parse(b.toString('utf8')) as Bundle;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A device of `patientId` enrolled through the relay (the app's protocol code), its session left open. */
async function enrolDevice(
  net: TestNetwork,
  patientId: string,
): Promise<{ next(t: string): Promise<Record<string, unknown>>; count(t: string): number; failures: string[]; close(): void }> {
  const res = await net.api('myongji', '/v1/patients/enrolments', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId }),
  });
  expect(res.status, await res.clone().text()).to.equal(201);
  const { link } = (await res.json()) as { link: string };
  const offer = JSON.parse(Buffer.from(unb64u(link.split('#enrol=')[1] as string)).toString()) as { k: unknown; c: string; cred: string };
  const channel = (JSON.parse(Buffer.from(offer.cred.split('.')[1] as string, 'base64url').toString()) as { ch: string }).ch;
  const ws = new WebSocket(`wss://127.0.0.1:${net.relay.port}/v1/patient?cred=${offer.cred}`, { rejectUnauthorized: false, perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const { hello, session, epk } = await openPatientSession(offer.k, channel);
  const inbox: Array<Record<string, unknown>> = [];
  /** Messages the app's own code refused to open (a counter that did not rise: sent out of order). */
  const failures: string[] = [];
  // Opened one after another, in the order they arrived: sealed messages carry a counter that must rise.
  let opening = Promise.resolve();
  ws.on('message', (d: Buffer) => {
    opening = opening.then(async () => {
      try {
        inbox.push((await session.open(new Uint8Array(d))) as Record<string, unknown>);
      } catch (err) {
        failures.push((err as Error).message);
      }
    });
  });
  const count = (t: string): number => inbox.filter((m) => m.t === t).length;
  const next = (t: string): Promise<Record<string, unknown>> =>
    waitFor(
      () => {
        const i = inbox.findIndex((m) => m.t === t);
        return i >= 0 ? (inbox.splice(i, 1)[0] as Record<string, unknown>) : undefined;
      },
      20_000,
      `a ${t} message`,
    );
  const device = await generateDeviceKeys();
  ws.send(hello);
  const sign = await exportPublic(device.sign.publicKey);
  ws.send(
    await session.seal({ t: 'enrol', code: offer.c, sign, sig: await signJws(device.sign.privateKey, {}, await sessionAuthPayload(channel, epk), true) }),
  );
  await next('enrolled');
  return { next, count, failures, close: () => ws.close() };
}

/**
 * `POST /v1/patients/records` over HTTP against a real agent (`patients.app.enabled`) and relay: the EHR's copy of the
 * patient's own records, its answers and error codes, and what the ledger and the relay's hub keep of it.
 */
describe('POST /v1/patients/records (the EHR pushes the patient their own records)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let device: Awaited<ReturnType<typeof enrolDevice>> | undefined;
  const good = bundleFor(PATIENT);

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji'], { agentStart: false, extraTokens: `auditor@compliance:${COMPLIANCE_TOKEN}` });
    const m = net.configs['myongji']!;
    net.configs['myongji'] = { ...m, patients: { ...m.patients, app: { ...m.patients.app, enabled: true } } };
    await net.startAgent('myongji');
    await waitFor(() => net.agents['myongji']!.relay.connected && net.agents['myongji']!.patients?.connected(), 20_000, 'connected');
  });
  after(async function () {
    device?.close();
    await net?.close();
    tmp.cleanup();
  });

  const push = (body: Buffer | string, headers: Record<string, string> = {}, patientId = PATIENT): Promise<Response> =>
    net.api('myongji', '/v1/patients/records', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-patient-id': patientId, ...headers },
      body,
    });
  const error = async (res: Response): Promise<{ code: string; message: string }> => ((await res.json()) as { error: { code: string; message: string } }).error;
  type Outcome = {
    resourceType: string;
    issue: Array<{ severity: string; code: string; details: { coding: Array<{ code: string }> }; expression?: string[] }>;
  };
  const copies = async (): Promise<number> => (await net.agents['myongji']!.ledger.byType('patient.records', 'myongji')).length;
  const kept = async (): Promise<unknown[]> => {
    const store = net.agents['myongji']!.patients!.store;
    const out: unknown[] = [];
    for await (const v of store.records.values()) out.push(v);
    return out;
  };

  it('answers 409 ERR_CONFLICT while no device of the patient is enrolled, and keeps nothing', async function () {
    const res = await push(bundleFor(NO_DEVICE), {}, NO_DEVICE);
    expect(res.status).to.equal(409);
    const err = await error(res);
    expect(err.code).to.equal('ERR_CONFLICT');
    expect(err.message).to.match(/no device is enrolled/);
    expect(await kept()).to.deep.equal([]);
    expect(await copies()).to.equal(0);
  });

  it('answers 201, seals the copy to the open session, and its patient.records entry holds hashes only', async function () {
    device = await enrolDevice(net, PATIENT);
    const res = await push(good);
    expect(res.status, await res.clone().text()).to.equal(201);
    const answer = (await res.json()) as { sha256: string; entries: number; receivedAt: string; delivered: number };
    expect(answer).to.include({ sha256: sha256(good), entries: parse(good).entry.length, delivered: 1 });
    const received = await device.next('records');
    expect(received.bundle).to.equal(good.toString('utf8'));
    expect(received.sha256).to.equal(answer.sha256);

    const ledger = net.agents['myongji']!.ledger;
    const enrolled = (await ledger.byType('patient.enrolled', 'myongji'))[0]!.entry.body as { patient: string; device: string };
    const [entry, ...more] = await ledger.byType('patient.records', 'myongji');
    expect(more).to.deep.equal([]);
    expect(entry!.entry.body).to.deep.equal({ patient: enrolled.patient, device: enrolled.device, hash: answer.sha256 });
    // The raw bytes of the whole feed, as peers replicate them: no patient id, no record content.
    const feed = await ledger.rawRange('myongji', 0, ledger.head('myongji')!.seq, 100_000);
    const raw = Buffer.concat(feed).toString('utf8');
    expect(raw).to.include(answer.sha256);
    for (const s of [PATIENT, ...CONTENT]) expect(raw, s).to.not.include(s);
    expect(raw).to.not.include(good.toString('base64').slice(0, 40));
  });

  it('answers a repeat 201 too (application/json this time): the copy is replaced and sent and logged again, no conflict', async function () {
    const res = await push(good, { 'content-type': 'application/json' });
    expect(res.status, await res.clone().text()).to.equal(201);
    expect(await res.json()).to.include({ sha256: sha256(good), delivered: 1 });
    expect((await device!.next('records')).sha256).to.equal(sha256(good));
    expect(await copies()).to.equal(2);
    expect(await kept()).to.have.length(1);
  });

  it('answers 415 ERR_UNSUPPORTED_MEDIA_TYPE to a body that is not FHIR JSON', async function () {
    for (const type of ['text/plain', 'application/fhir+xml', 'application/x-www-form-urlencoded']) {
      const res = await push(good, { 'content-type': type });
      expect(res.status, type).to.equal(415);
      expect((await error(res)).code).to.equal('ERR_UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it(`answers 413 ERR_PAYLOAD_TOO_LARGE past ${MAX_RECORDS_BYTES} bytes, and takes a Bundle of exactly that size`, async function () {
    const padded = (n: number): Buffer => Buffer.concat([good, Buffer.alloc(n - good.length, ' ')]);
    const over = await push(padded(MAX_RECORDS_BYTES + 1));
    expect(over.status).to.equal(413);
    expect((await error(over)).code).to.equal('ERR_PAYLOAD_TOO_LARGE');
    const before = await copies();
    const full = padded(MAX_RECORDS_BYTES);
    const res = await push(full);
    expect(res.status, await res.clone().text()).to.equal(201);
    expect(await res.json()).to.include({ sha256: sha256(full), delivered: 1 });
    expect((await device!.next('records')).sha256).to.equal(sha256(full));
    expect(await copies()).to.equal(before + 1);
  });

  it('answers 413 to a Bundle under the limit that would not fit one hub frame once escaped for the device, and the hub stays up', async function () {
    // Every `"` of a string is `\"` in the Bundle and `\\\"` inside the message to the device: twice the bytes.
    const b = parse(good) as Bundle & Record<string, unknown>;
    const condition = b.entry.find((e) => e.resource['resourceType'] === 'Condition')!.resource;
    condition['note'] = [{ text: '"'.repeat(MAX_RECORDS_BYTES / 2 - 4096) }];
    const quoted = Buffer.from(JSON.stringify(b));
    expect(quoted.length).to.be.below(MAX_RECORDS_BYTES);
    const before = await copies();
    const res = await push(quoted);
    expect(res.status, await res.clone().text()).to.equal(413);
    expect((await error(res)).code).to.equal('ERR_PAYLOAD_TOO_LARGE');
    expect(await copies()).to.equal(before);
    expect(net.agents['myongji']!.patients!.connected()).to.equal(true);
    // The session is still open: the next copy reaches it.
    const res2 = await push(good);
    expect(await res2.json()).to.include({ delivered: 1 });
    expect((await device!.next('records')).sha256).to.equal(sha256(good));
  });

  it('answers 422 with an OperationOutcome to a Bundle that is not valid R4', async function () {
    const b = parse(good);
    const at = b.entry.findIndex((e) => e.resource['resourceType'] === 'Observation');
    delete b.entry[at]!.resource['status'];
    const res = await push(Buffer.from(JSON.stringify(b)));
    expect(res.status).to.equal(422);
    expect(res.headers.get('content-type')).to.match(/^application\/fhir\+json/);
    const outcome = (await res.json()) as Outcome;
    expect(outcome.resourceType).to.equal('OperationOutcome');
    const issue = outcome.issue.find((i) => i.expression?.includes(`Bundle.entry[${at}].resource.status`));
    expect(issue, JSON.stringify(outcome)).to.not.equal(undefined);
    expect(issue!.details.coding[0]!.code).to.equal('ERR_FHIR_INVALID');
    expect(issue!.severity).to.equal('error');
  });

  it('answers 422 ERR_FHIR_PATIENT_MISMATCH to a Bundle about another patient, and keeps the last good copy', async function () {
    const before = await kept();
    const res = await push(bundleFor('SYN-SOMEONE-ELSE'));
    expect(res.status).to.equal(422);
    const outcome = (await res.json()) as Outcome;
    expect(outcome.resourceType).to.equal('OperationOutcome');
    expect(outcome.issue.map((i) => i.details.coding[0]!.code)).to.include('ERR_FHIR_PATIENT_MISMATCH');
    expect(await kept()).to.deep.equal(before);
  });

  it('answers 400 to what is not a Bundle at all (ERR_INVALID_FHIR) and to a missing Hie-Patient-Id (ERR_BAD_REQUEST)', async function () {
    const notBundle = await push(JSON.stringify({ resourceType: 'Patient' }));
    expect(notBundle.status).to.equal(400);
    expect((await error(notBundle)).code).to.equal('ERR_INVALID_FHIR');
    const res = await net.api('myongji', '/v1/patients/records', { method: 'POST', headers: { 'content-type': 'application/fhir+json' }, body: good });
    expect(res.status).to.equal(400);
    const err = await error(res);
    expect(err.code).to.equal('ERR_BAD_REQUEST');
    expect(err.message).to.match(/hie-patient-id/);
  });

  it('answers 400 ERR_BAD_REQUEST, not 500, to a patient id without a value (system|): here, at enrolment, in consent requests and grants', async function () {
    const until = new Date(Date.now() + 86_400_000).toISOString();
    for (const id of ['|', 'urn:oid:2.25.0.1|', 'x'.repeat(257)]) {
      const answers = [
        await push(good, {}, id),
        ...(await Promise.all(
          [
            ['/v1/patients/enrolments', { patientId: id }],
            ['/v1/patients/consent-requests', { patientId: id, grantee: 'severance', validUntil: until }],
            ['/v1/consents', { patientId: id, grantee: 'severance', validUntil: until }],
          ].map(([path, body]) =>
            net.api('myongji', path as string, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
          ),
        )),
      ];
      for (const res of answers) {
        expect(res.status, `${id.slice(0, 20)} ${res.url}`).to.equal(400);
        expect((await error(res)).code).to.equal('ERR_BAD_REQUEST');
      }
    }
  });

  it('refuses a token of another role (403 ERR_FORBIDDEN_ROLE) and no token (401 ERR_UNAUTHORIZED)', async function () {
    const before = await copies();
    const port = net.agents['myongji']!.apiPort;
    const call = (headers: Record<string, string>): Promise<Response> =>
      fetch(`http://127.0.0.1:${port}/v1/patients/records`, {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json', 'hie-patient-id': PATIENT, ...headers },
        body: good,
      });
    const compliance = await call({ authorization: `Bearer ${COMPLIANCE_TOKEN}` });
    expect(compliance.status).to.equal(403);
    const err = await error(compliance);
    expect(err.code).to.equal('ERR_FORBIDDEN_ROLE');
    expect(err.message).to.contain('compliance');
    const none = await call({});
    expect(none.status).to.equal(401);
    expect((await error(none)).code).to.equal('ERR_UNAUTHORIZED');
    expect(await copies()).to.equal(before);
  });

  it('seals consent requests to the open session in counter order, even when many come at once beside a records copy', async function () {
    const d = device!;
    const before = d.count('request');
    const N = 40;
    const asked = Array.from({ length: N }, () =>
      net.api('myongji', '/v1/patients/consent-requests', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: PATIENT, grantee: 'severance', purposes: ['TREAT'], validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
      }),
    );
    // Large copies (their sealing takes longest) pushed among the requests.
    const big = Buffer.concat([good, Buffer.alloc(MAX_RECORDS_BYTES - good.length, ' ')]);
    const pushed = [push(big), push(big), push(big)];
    for (const res of await Promise.all(asked)) expect(res.status, await res.clone().text()).to.equal(201);
    for (const res of await Promise.all(pushed)) expect(res.status).to.equal(201);
    await waitFor(() => (d.count('request') - before >= N || d.failures.length > 0 ? true : undefined), 20_000, `${N} requests at the device`);
    expect(d.failures, 'messages the app refused to open').to.deep.equal([]);
    expect(d.count('request') - before).to.equal(N);
  });

  it('counts no session of a hub connection that dropped: after a relay restart a push is kept, delivered to none, logged for none', async function () {
    const before = await copies();
    await net.restartRelay();
    // The agent tries again 1 s after the drop at the soonest: time enough to see it down.
    await waitFor(() => !net.agents['myongji']!.patients!.connected(), 20_000, 'the hub to notice the drop');
    await waitFor(() => net.agents['myongji']!.patients!.connected(), 30_000, 'the hub back');
    const res = await push(good);
    expect(res.status, await res.clone().text()).to.equal(201);
    expect(await res.json()).to.include({ sha256: sha256(good), delivered: 0 });
    expect(await copies()).to.equal(before);
    expect(await kept()).to.have.length(1);
  });
});
