// `npm run bench -- patients [connections] [approvals]`: idle patient connections one relay node holds (default 5,000;
// target >= 5,000), each admitted by its own hospital-signed credential over TLS, and consent approvals/s through the
// relay end to end (device signature, agent check, ledger append). Real relay, real LevelDB, loopback sockets.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { createKeyBundle, generateAgentKeys, loadIdentity } from '../../certs/index.ts';
import { Ledger } from '../../ledger/index.ts';
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
import { generateAgentPatientKey, issuePatientCredential, newChannel, PatientHub, PatientService, PatientStore } from '../../hospital-agent/patients/index.ts';
import { ConsentService } from '../../hospital-agent/services/consents.ts';
import { startRelay } from '../../relay/index.ts';
import { makeFederation } from '../../test/support/federation.ts';
import { tempDir } from '../../test/support/tmp.ts';
import type { BenchTable } from './types.ts';

const DEFAULT_CONNECTIONS = 5_000;
const DEFAULT_APPROVALS = 200;
const TARGET_CONNECTIONS = 5_000;
const PARALLEL_DIALS = 64;

function dial(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`refused: ${res.statusCode}`)));
  });
}

/** Runs the patients bench. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const connections = args[0] !== undefined ? Number(args[0]) : DEFAULT_CONNECTIONS;
  const approvals = args[1] !== undefined ? Number(args[1]) : DEFAULT_APPROVALS;
  if (!Number.isInteger(connections) || connections < 1) throw new Error(`connections must be a whole number >= 1, got ${args[0]}`);
  if (!Number.isInteger(approvals) || approvals < 1) throw new Error(`approvals must be a whole number >= 1, got ${args[1]}`);
  const tmp = tempDir('hie-bench-patients-');
  const log = pino({ level: 'silent' });
  const open: WebSocket[] = [];
  try {
    const fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
    const identity = loadIdentity(fed.agents['alpha']!);
    const relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath },
        admin: { enabled: false },
        limits: { maxConnections: connections + 100, maxConnectionsPerAddress: connections + 100 },
        tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
        log: { level: 'silent' },
      } as never,
      { logger: log },
    );
    const keys = generateAgentKeys();
    const bundle = await createKeyBundle(identity, keys, { now: new Date(Date.now() - 60_000) });
    const ledger = await Ledger.open({
      path: join(tmp.dir, 'ledger'),
      trust: { caPem: identity.caPem },
      author: { feed: 'alpha', signingKey: keys.signing.privateKey, bundle },
    });
    const store = new PatientStore(join(tmp.dir, 'patients'));
    await store.open();
    const secret = randomBytes(32);
    const consents = new ConsentService(ledger, 'alpha', secret);
    const service = new PatientService({
      feed: 'alpha',
      identity: () => identity,
      store,
      consents,
      ledger,
      secret,
      agentKey: await generateAgentPatientKey(),
      appUrl: `https://127.0.0.1:${relay.port}/patient/`,
      log,
    });
    const hub = new PatientHub({ url: `wss://127.0.0.1:${relay.port}`, servername: 'localhost', identity: () => identity, service, log });
    await hub.connect();
    const base = `wss://127.0.0.1:${relay.port}/v1/patient?cred=`;

    // Idle connections: each its own credential (the relay checks every one), then held open.
    const rss0 = process.memoryUsage().rss;
    let t = performance.now();
    for (let i = 0; i < connections; i += PARALLEL_DIALS) {
      const batch = Math.min(PARALLEL_DIALS, connections - i);
      const creds = await Promise.all(Array.from({ length: batch }, () => issuePatientCredential(identity, { use: 'enrol', channel: newChannel() })));
      open.push(...(await Promise.all(creds.map((c) => dial(base + c)))));
    }
    const dialSeconds = (performance.now() - t) / 1000;
    await new Promise((r) => setTimeout(r, 500));
    const held = open.filter((ws) => ws.readyState === WebSocket.OPEN).length;
    const rssPer = (process.memoryUsage().rss - rss0) / Math.max(1, held);
    for (const ws of open) ws.terminate();

    // Approvals: one enrolled device answers `approvals` consent requests through the relay, one after the other.
    const enrolment = await service.enrol('urn:oid:1.2.3|BENCH-1');
    const offer = JSON.parse(Buffer.from(unb64u(enrolment.link.split('#enrol=')[1] as string)).toString());
    const device = await generateDeviceKeys();
    const sign = await exportPublic(device.sign.publicKey);
    const thumb = await jwkThumbprint(sign);
    const channel = JSON.parse(Buffer.from(offer.cred.split('.')[1], 'base64url').toString()).ch;
    const ws = await dial(base + offer.cred);
    open.push(ws);
    const { hello, session, epk } = await openPatientSession(offer.k, channel);
    const inbox: unknown[] = [];
    let wake: (() => void) | undefined;
    ws.on('message', async (d: Buffer) => {
      inbox.push(await session.open(new Uint8Array(d)));
      wake?.();
    });
    const next = async (): Promise<Record<string, unknown>> => {
      while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
      return inbox.shift() as Record<string, unknown>;
    };
    ws.send(hello);
    ws.send(
      await session.seal({ t: 'enrol', code: offer.c, sign, sig: await signJws(device.sign.privateKey, {}, await sessionAuthPayload(channel, epk), true) }),
    );
    const enrolled = await next();
    if (enrolled.t !== 'enrolled') throw new Error(`enrolment failed: ${JSON.stringify(enrolled)}`);
    const until = new Date(Date.now() + 86400_000).toISOString();
    t = performance.now();
    for (let i = 0; i < approvals; i++) {
      const request = await service.requestConsent('urn:oid:1.2.3|BENCH-1', { grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validUntil: until });
      // The enrolment session goes on as the device's session: the request shows up on it, and is signed as shown.
      const shown = await next();
      if (shown.t !== 'request') throw new Error(`expected the request, got ${JSON.stringify(shown)}`);
      const fhir = (shown.request as { fhir: Record<string, unknown> }).fhir;
      const signedAt = new Date().toISOString();
      const jws = await signConsent(device.sign.privateKey, { ...fhir, dateTime: signedAt }, thumb);
      ws.send(await session.seal({ t: 'approve', request: request.id, signedAt, jws }));
      const answer = await next();
      if (answer.t !== 'approved') throw new Error(`approval refused: ${JSON.stringify(answer)}`);
    }
    const approveSeconds = (performance.now() - t) / 1000;
    ws.close();
    hub.close();
    await relay.close(100);
    await store.close();
    await ledger.close();
    return [
      {
        title: 'patients: idle patient connections on one relay node, and consent approvals through it',
        rows: [
          {
            metric: 'idle patient connections held',
            value: held,
            note: `${connections} dialled in ${dialSeconds.toFixed(1)} s, ~${(rssPer / 1024).toFixed(1)} KiB RSS each (clients in the same process)`,
          },
          {
            metric: 'consent approvals/s (sequential, one device)',
            value: (approvals / approveSeconds).toFixed(1),
            note: `${approvals} approvals in ${approveSeconds.toFixed(1)} s`,
          },
        ],
        notes: [
          'Each connection is admitted by its own RS256 credential checked against the CA before the upgrade; approvals include ECDSA signing on the device, the agent check and a ledger append.',
        ],
        summary: [
          { metric: 'idle patient connections per relay node', value: String(held), target: `>= ${TARGET_CONNECTIONS}`, met: held >= TARGET_CONNECTIONS },
        ],
      },
    ];
  } finally {
    for (const ws of open) ws.terminate();
    tmp.cleanup();
  }
}
