import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { pino } from 'pino';
import { startAgent, type RunningAgent } from '../../hospital-agent/agent.ts';
import { parseAgentConfig } from '../../hospital-agent/config.ts';
import { TEST_TOKEN, waitFor } from '../support/agents.ts';
import { patternStream } from '../support/data.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { startCluster, metricValue, type TestCluster } from './cluster-helpers.ts';
import { admin } from './helpers.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-relay.js', import.meta.url));
const PATIENT = 'SYN-FAILOVER-0001';

/** Relay node n1 as its own process, so the test can SIGKILL it. */
async function spawnRelay(config: object, env: NodeJS.ProcessEnv, dir: string): Promise<{ child: ChildProcess; port: number }> {
  const file = join(dir, 'n1.relay.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [BIN, '--config', file], { env: { ...process.env, ...env, HIE_FROM_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay n1 did not start: ${out.slice(-1000)}`)), 30_000);
    const onData = (d: string): void => {
      out += d;
      const m = /"port":(\d+),"host":"127\.0\.0\.1","node":"n1","msg":"relay listening"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay n1 exited with ${code}: ${out.slice(-1000)}`));
    });
  });
  return { child, port };
}

describe("relay cluster failover with full agents (integration: SIGKILL of the sender's relay node mid-transfer)", function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let cluster: TestCluster;
  let n1: { child: ChildProcess; port: number };
  const agents: Record<string, RunningAgent> = {};

  const api = (id: string, path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`http://127.0.0.1:${agents[id]!.apiPort}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(init.headers as Record<string, string> | undefined) },
    });

  before(async function () {
    tmp = tempDir();
    const ids = ['myongji', 'severance'];
    fed = makeFederation(tmp.dir, ids);
    // n2 and n3 in this process; n1 (where the sender connects first) as a child process.
    cluster = await startCluster(fed, tmp.dir, 3, {}, [1, 2]);
    const n1Config = { ...cluster.config(0, 0), log: { level: 'info' }, admin: { enabled: false } };
    n1 = await spawnRelay(n1Config, { NATS_USER_N1: cluster.env['NATS_USER_N1'], NATS_PASSWORD_N1: cluster.env['NATS_PASSWORD_N1'] }, tmp.dir);
    const nodeUrls = [`wss://localhost:${n1.port}`, cluster.url(0), cluster.url(1)];
    const urlsFor: Record<string, string[]> = { myongji: nodeUrls, severance: [nodeUrls[1]!, nodeUrls[2]!, nodeUrls[0]!] };
    for (const id of ids) {
      const files = fed.agents[id]!;
      const config = parseAgentConfig({
        id,
        identity: { cert: files.cert, key: files.key, ca: files.ca, crl: fed.crlPath },
        relay: { urls: urlsFor[id] },
        peers: ids.filter((p) => p !== id),
        dataDir: join(tmp.dir, 'data', id),
        api: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
      });
      agents[id] = await startAgent(config, {
        env: { HIE_AGENT_API_TOKENS: `test:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: randomBytes(32).toString('hex') },
        logger: pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent', base: { agent: id } }),
      });
    }
    await waitFor(() => Object.values(agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });

  after(async function () {
    for (const a of Object.values(agents)) await a.close().catch(() => undefined);
    if (n1 && n1.child.exitCode === null && n1.child.signalCode === null) n1.child.kill('SIGKILL');
    await cluster?.close();
    tmp?.cleanup();
  });

  it('starts with the sender on n1 and the recipient on n2', async function () {
    expect(agents['myongji']!.relay.url).to.contain(`:${n1.port}/`);
    const onN2 = JSON.parse((await admin(cluster.relays[0]!, '/v1/agents')).text).agents.map((a: { id: string }) => a.id);
    expect(onN2).to.deep.equal(['severance']);
  });

  it('fails the sender over when its node is SIGKILLed mid-transfer and delivers the pending exchange exactly once', async function () {
    const consentRes = await api('myongji', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ patientId: PATIENT, grantee: 'severance', validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
    });
    expect(consentRes.status).to.equal(201);
    const consent = ((await consentRes.json()) as { id: string }).id;
    const size = 120 * 1024 * 1024;
    const data = patternStream(size, 11);
    // The agent sends while the body uploads, so the upload is still running when n1 dies.
    const posted = api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'hie-recipient': 'severance',
        'hie-patient-id': PATIENT,
        'hie-consent-id': consent,
        'content-length': String(size),
      },
      body: data.stream as unknown as RequestInit['body'],
      duplex: 'half',
    } as RequestInit);

    // Bytes flow n1 -> NATS -> n2; kill n1 without any chance to say goodbye.
    await waitFor(
      async () =>
        metricValue((await admin(cluster.relays[0]!, '/metrics')).text, 'hie_relay_nats_forwarded_bytes_total', { direction: 'in' }) > 10 * 1024 * 1024,
      60_000,
      'bytes crossing nodes',
    );
    n1.child.kill('SIGKILL');
    const res = await posted;
    expect(res.status, await res.clone().text()).to.equal(202);
    const id = ((await res.json()) as { id: string }).id;

    // n2 notices n1 is gone (no responders to its probe) and aborts the recipient's half of the transfer.
    await waitFor(
      async () => metricValue((await admin(cluster.relays[0]!, '/metrics')).text, 'hie_relay_transfers_aborted_total', { reason: 'peer-gone' }) >= 1,
      30_000,
      'n2 aborts the orphaned leg',
    );
    await waitFor(() => agents['myongji']!.relay.connected && !agents['myongji']!.relay.url.includes(`:${n1.port}/`), 30_000, 'sender failed over');

    const done = await waitFor(
      async () => {
        const r = (await (await api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string; attempts: number };
        return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
      },
      120_000,
      'exchange finished',
    );
    expect(done.status, JSON.stringify(done)).to.equal('delivered');
    expect(done.attempts).to.be.greaterThan(1);
    const items = ((await (await api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items;
    expect(items.filter((i) => i.exchangeId === id)).to.have.length(1);
    const content = await api('severance', `/v1/inbox/${id}/content`);
    const hash = createHash('sha256');
    for await (const chunk of content.body as unknown as Readable) hash.update(chunk as Uint8Array);
    expect(hash.digest('hex')).to.equal(data.sha256());
  });
});
