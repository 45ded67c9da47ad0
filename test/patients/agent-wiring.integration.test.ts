import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import { WebSocket } from 'ws';
import {
  exportPublic,
  generateDeviceKeys,
  jwkThumbprint,
  openPatientSession,
  sessionAuthPayload,
  signConsent,
  signJws,
  unb64u,
} from '../../patient-app/protocol.js';
import { startNetwork, TEST_TOKEN, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

const PATIENT = 'SYN-PWIRE-3318';
const BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
// jsqr is CommonJS: its function is the default export under tsx, `.default` under tsc's view.
const jsQR = (jsQRModule as unknown as { default: typeof jsQRModule.default }).default ?? jsQRModule;

/**
 * The patient party inside a running agent (`patients.app.enabled`): the `/v1/patients` routes, the hub link to a real
 * relay, a device (the app's protocol code) enrolling from the QR code and signing a consent request, a release under it
 * accepted by a recipient that requires patient-signed consents, and the release in the patient's access log.
 */
describe('the patient party in a running agent (patients.app.enabled, /v1/patients)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    const m = net.configs['myongji']!;
    net.configs['myongji'] = { ...m, patients: { ...m.patients, app: { ...m.patients.app, enabled: true } } };
    net.configs['severance'] = { ...net.configs['severance']!, consent: { requirePatientSigned: true } };
    for (const id of ['myongji', 'severance']) await net.startAgent(id);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected) && net.agents['myongji']!.patients?.connected(), 20_000, 'connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const post = (id: string, path: string, body: unknown): Promise<Response> =>
    net.api(id, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const error = async (res: Response): Promise<{ code: string; message: string }> => ((await res.json()) as { error: { code: string; message: string } }).error;

  it('answers 404 ERR_NOT_FOUND on an agent without the patient app, and 400 on bad input', async function () {
    const off = await post('severance', '/v1/patients/enrolments', { patientId: PATIENT });
    expect(off.status).to.equal(404);
    expect((await error(off)).code).to.equal('ERR_NOT_FOUND');
    expect(net.agents['severance']!.patients).to.equal(undefined);

    const missing = await post('myongji', '/v1/patients/enrolments', {});
    expect(missing.status).to.equal(400);
    expect((await error(missing)).code).to.equal('ERR_BAD_REQUEST');
    const noHeader = await net.api('myongji', '/v1/patients/consent-requests');
    expect(noHeader.status).to.equal(400);
    expect((await error(noHeader)).message).to.match(/hie-patient-id/);
    const unknown = await net.api('myongji', '/v1/patients/consent-requests/no-such-request');
    expect(unknown.status).to.equal(404);
  });

  it('enrols a device from the QR code, gets its signature on a request, and the release under it reaches a recipient that requires one', async function () {
    // Enrolment: the QR code (PNG) decodes to the link the agent issued, pointing at the relay's patient app.
    const res = await post('myongji', '/v1/patients/enrolments', { patientId: PATIENT });
    expect(res.status, await res.clone().text()).to.equal(201);
    const enrolment = (await res.json()) as { link: string; expiresAt: string; qrPng: string; qrSvg: string };
    const png = PNG.sync.read(Buffer.from(enrolment.qrPng, 'base64'));
    const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(decoded?.data).to.equal(enrolment.link);
    expect(enrolment.link.startsWith(`https://localhost:${net.relay.port}/patient/#enrol=`)).to.equal(true);
    expect(enrolment.qrSvg).to.match(/^<svg/);

    // The device: what the app does, with its protocol code, through the relay.
    const offer = JSON.parse(Buffer.from(unb64u(enrolment.link.split('#enrol=')[1] as string)).toString()) as {
      k: unknown;
      c: string;
      cred: string;
    };
    const channel = (JSON.parse(Buffer.from(offer.cred.split('.')[1] as string, 'base64url').toString()) as { ch: string }).ch;
    const ws = new WebSocket(`wss://127.0.0.1:${net.relay.port}/v1/patient?cred=${offer.cred}`, { rejectUnauthorized: false, perMessageDeflate: false });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    try {
      const { hello, session, epk } = await openPatientSession(offer.k, channel);
      const inbox: Array<Record<string, unknown>> = [];
      ws.on('message', (d: Buffer) => void session.open(new Uint8Array(d)).then((m) => inbox.push(m as Record<string, unknown>)));
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
      const sign = await exportPublic(device.sign.publicKey);
      ws.send(hello);
      ws.send(
        await session.seal({ t: 'enrol', code: offer.c, sign, sig: await signJws(device.sign.privateKey, {}, await sessionAuthPayload(channel, epk), true) }),
      );
      await next('enrolled');

      // The hospital asks; the request shows on the device; the device signs what it shows.
      const asked = await post('myongji', '/v1/patients/consent-requests', {
        patientId: PATIENT,
        grantee: 'severance',
        purposes: ['TREAT'],
        validUntil: new Date(Date.now() + 86_400_000).toISOString(),
      });
      expect(asked.status, await asked.clone().text()).to.equal(201);
      const request = (await asked.json()) as { id: string; status: string };
      expect(request.status).to.equal('pending');
      const listed = (await (await net.api('myongji', '/v1/patients/consent-requests', { headers: { 'hie-patient-id': PATIENT } })).json()) as {
        requests: Array<{ id: string }>;
      };
      expect(listed.requests.map((q) => q.id)).to.deep.equal([request.id]);
      const other = (await (await net.api('myongji', '/v1/patients/consent-requests', { headers: { 'hie-patient-id': 'SYN-OTHER-1' } })).json()) as {
        requests: unknown[];
      };
      expect(other.requests).to.deep.equal([]);

      const shown = await next('request');
      const fhir = (shown.request as { fhir: Record<string, unknown> }).fhir;
      const signedAt = new Date().toISOString();
      const jws = await signConsent(device.sign.privateKey, { ...fhir, dateTime: signedAt }, await jwkThumbprint(sign));
      ws.send(await session.seal({ t: 'approve', request: request.id, signedAt, jws }));
      const approved = await next('approved');
      expect(approved.consent).to.equal(request.id);
      const status = (await (await net.api('myongji', `/v1/patients/consent-requests/${request.id}`)).json()) as { status: string };
      expect(status.status).to.equal('approved');
    } finally {
      ws.close();
    }

    // A release under the signed consent: severance requires patient-signed consents and accepts it.
    await waitFor(async () => (await net.agents['severance']!.ledger.byConsent((await lastRequest()).id)).length > 0, 30_000, 'consent replicated');
    const consent = (await lastRequest()).id;
    const sent = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': PATIENT, 'hie-consent-id': consent },
      body: bundleFor(PATIENT),
    });
    expect(sent.status, await sent.clone().text()).to.equal(202);
    const { id } = (await sent.json()) as { id: string };
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string }).status === 'delivered',
      60_000,
      'delivered',
    );

    // The patient's access log names that release, with its receipt and ledger position.
    type AccessLog = { releases: Array<{ exchange: string; to: string; consent: string; receipt: unknown; proof: { feed: string; seq: number } }> };
    const release = await waitFor(
      async () => {
        const l = (await (await net.api('myongji', '/v1/patients/access-log', { headers: { 'hie-patient-id': PATIENT } })).json()) as AccessLog;
        return l.releases.find((r) => r.exchange === id && r.receipt);
      },
      20_000,
      'the release with its receipt in the access log',
    );
    expect(release).to.deep.include({ to: 'severance', consent });
    expect(release.proof.feed).to.equal('myongji');
  });

  it('does the same from hie-agent patient enrol|ask|requests|request|access-log, each with its --help', async function () {
    for (const c of ['enrol', 'ask', 'requests', 'request', 'access-log']) {
      const help = await cli(['patient', c, '--help']);
      expect(help.code, help.stderr).to.equal(0);
      expect(help.stdout).to.match(new RegExp(`^Usage: hie-agent patient ${c}`));
    }
    const api = `http://127.0.0.1:${net.agents['myongji']!.apiPort}`;
    const env = { HIE_PATIENT_ID: 'SYN-PWIRE-CLI-1' };
    const png = join(tmp.dir, 'enrol.png');
    const enrol = await cli(['patient', 'enrol', '--api', api, '--png', png], env);
    expect(enrol.code, enrol.stderr).to.equal(0);
    const link = enrol.stdout.trim().split('\n').pop() as string;
    expect(link).to.match(/\/patient\/#enrol=/);
    const image = PNG.sync.read(readFileSync(png));
    expect(jsQR(new Uint8ClampedArray(image.data), image.width, image.height)?.data).to.equal(link);

    const until = new Date(Date.now() + 86_400_000).toISOString();
    const ask = await cli(['patient', 'ask', '--api', api, '--to', 'severance', '--until', until, '--json'], env);
    expect(ask.code, ask.stderr).to.equal(0);
    const request = JSON.parse(ask.stdout) as { id: string; status: string };
    expect(request.status).to.equal('pending');
    const list = await cli(['patient', 'requests', '--api', api], env);
    expect(list.stdout).to.contain(`${request.id}  pending  to severance`);
    const one = await cli(['patient', 'request', request.id, '--api', api]);
    expect(one.stdout).to.contain(request.id);
    const log = await cli(['patient', 'access-log', '--api', api], env);
    expect(log.code, log.stderr).to.equal(0);
    expect(log.stdout).to.equal('no releases\n');
    const noPatient = await cli(['patient', 'requests', '--api', api], { HIE_PATIENT_ID: '' });
    expect(noPatient.code).to.not.equal(0);
    expect(noPatient.stderr).to.contain('--patient is required');
    const off = await cli(['patient', 'enrol', '--api', `http://127.0.0.1:${net.agents['severance']!.apiPort}`], env);
    expect(off.code).to.not.equal(0);
    expect(off.stderr).to.contain('ERR_NOT_FOUND');
  });

  async function lastRequest(): Promise<{ id: string }> {
    const l = (await (await net.api('myongji', '/v1/patients/consent-requests', { headers: { 'hie-patient-id': PATIENT } })).json()) as {
      requests: Array<{ id: string }>;
    };
    return l.requests[0] as { id: string };
  }
});
