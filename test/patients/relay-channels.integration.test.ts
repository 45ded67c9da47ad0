import { expect } from 'chai';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { clientTlsOptions, loadIdentity, type Identity } from '../../certs/index.ts';
import { issuePatientCredential, newChannel } from '../../hospital-agent/patients/index.ts';
import { HubFrame, hubFrame, parseHubFrame } from '../../relay/patients/index.ts';
import { startRelay, type RunningRelay } from '../../relay/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

function open(url: string, options: object): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}
const nextMessage = (ws: WebSocket): Promise<Buffer> => new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(d)));

describe('relay patient channels', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;
  let alpha: Identity;
  let bravo: Identity;
  const sockets: WebSocket[] = [];

  before(async () => {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
    alpha = loadIdentity(fed.agents['alpha']!);
    bravo = loadIdentity(fed.agents['bravo']!);
    relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath },
        admin: { enabled: false },
        tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
        log: { level: 'silent' },
      } as never,
      { logger: pino({ level: 'silent' }) },
    );
  });
  after(async () => {
    for (const ws of sockets) ws.terminate();
    await relay?.close(100);
    tmp?.cleanup();
  });

  const hub = async (identity: Identity): Promise<WebSocket> => {
    const ws = await open(`wss://127.0.0.1:${relay.port}/v1/patient-hub`, { ...clientTlsOptions(identity), servername: 'localhost' });
    sockets.push(ws);
    return ws;
  };

  it('decodes hub frames and rejects malformed ones', () => {
    const ch = newChannel();
    expect(parseHubFrame(hubFrame(HubFrame.data, ch, Buffer.from('x')))).to.deep.include({ kind: HubFrame.data, channel: ch });
    expect(parseHubFrame(Buffer.from([2, 1, 2]))).to.equal(undefined);
    expect(parseHubFrame(hubFrame(9, ch))).to.equal(undefined);
    expect(parseHubFrame(Buffer.concat([Buffer.from([2]), Buffer.from('!'.repeat(22))]))).to.equal(undefined);
  });

  it('routes a patient channel to its hospital only: another hospital hub cannot write to it', async () => {
    const alphaHub = await hub(alpha);
    const bravoHub = await hub(bravo);
    const channel = newChannel();
    const opened = nextMessage(alphaHub);
    const patient = await open(`wss://127.0.0.1:${relay.port}/v1/patient?cred=${await issuePatientCredential(alpha, { use: 'enrol', channel })}`, {
      rejectUnauthorized: false,
    });
    sockets.push(patient);
    expect(parseHubFrame(await opened)).to.deep.include({ kind: HubFrame.open, channel });
    // Patient -> its hospital.
    const atAlpha = nextMessage(alphaHub);
    patient.send(Buffer.from('hello alpha'));
    expect(parseHubFrame(await atAlpha)?.payload.toString()).to.equal('hello alpha');
    // Another hospital writing to the channel is told it is closed, and the patient gets nothing.
    const got: Buffer[] = [];
    patient.on('message', (d: Buffer) => got.push(d));
    const answer = nextMessage(bravoHub);
    bravoHub.send(hubFrame(HubFrame.data, channel, Buffer.from('from bravo')));
    expect(parseHubFrame(await answer)).to.deep.include({ kind: HubFrame.close, channel });
    // Its own hospital still reaches it.
    const atPatient = nextMessage(patient);
    alphaHub.send(hubFrame(HubFrame.data, channel, Buffer.from('from alpha')));
    expect((await atPatient).toString()).to.equal('from alpha');
    expect(got.map((b) => b.toString())).to.deep.equal(['from alpha']);
  });

  it('refuses a hub without a client certificate', async () => {
    let err: unknown;
    await open(`wss://127.0.0.1:${relay.port}/v1/patient-hub`, { rejectUnauthorized: false }).catch((e) => (err = e));
    expect(String(err)).to.match(/HTTP 40[13]/);
  });
});
