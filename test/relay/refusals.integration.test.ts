import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { loadIdentity, writeFileAtomic, type Identity } from '../../certs/index.ts';
import { buildCertificate, parseForgeCertificate } from '../../certs/x509.ts';
import { generateRsaKeyPair, exportPrivateKey } from '../../certs/keys.ts';
import { parseAgentConfig } from '../../hospital-agent/config.ts';
import { startAgent } from '../../hospital-agent/agent.ts';
import { startRelay, type RunningRelay } from '../../relay/index.ts';
import { RelayClient, RelayError } from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { waitFor, TEST_TOKEN } from '../support/agents.ts';
import { admin } from './helpers.ts';

function sinkLogger(lines: Array<Record<string, unknown>>): pino.Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return pino({ level: 'info' }, sink);
}

describe('refused client certificates: a reason in the relay log, a metric and an HTTP status the agent can read', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;
  const log: Array<Record<string, unknown>> = [];

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'gone']);
    relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath, crlPollMs: 100 },
        admin: { host: '127.0.0.1', port: 0 },
        tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
        log: { level: 'info' },
      },
      { logger: sinkLogger(log) },
    );
  });
  after(async function () {
    await relay?.close(0);
    tmp?.cleanup();
  });

  /** Connects with `identity` (verifying the relay against our CA) and returns the refusal. */
  async function refusedWith(identity: Identity): Promise<RelayError & { status?: number; refusal?: string }> {
    const client = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      servername: 'localhost',
      identity: { ...identity, caPem: readFileSync(fed.caPath, 'utf8') },
      reconnect: false,
    });
    const err = await client.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    await client.close();
    expect(err).to.be.instanceOf(RelayError);
    return err as RelayError & { status?: number; refusal?: string };
  }

  async function refusedTotal(reason: string): Promise<number> {
    const text = (await admin(relay, '/metrics')).text;
    return Number(new RegExp(`^hie_relay_tls_refused_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  }

  function refusalLine(reason: string, serial?: string): Record<string, unknown> | undefined {
    return log.find((l) => l['msg'] === `client certificate refused: ${reason}` && (serial === undefined || l['serial'] === serial));
  }

  /** A certificate the federation CA signs outside its index (for profiles `hie-certs` never issues). */
  function signedByCa(spec: { cn: string; hospitalId: string }): Identity {
    const keys = generateRsaKeyPair(2048);
    const caKey = createPrivateKey(readFileSync(join(fed.pkiDir, 'ca.key.pem')));
    const issuer = parseForgeCertificate(readFileSync(fed.caPath, 'utf8'));
    const { pem } = buildCertificate({
      kind: 'agent',
      subject: { commonName: spec.cn },
      hospitalId: spec.hospitalId,
      publicKey: keys.publicKey,
      signingKey: caKey,
      issuer,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
    });
    writeFileAtomic(join(tmp.dir, `${spec.cn}.crt.pem`), pem, 0o644);
    writeFileAtomic(join(tmp.dir, `${spec.cn}.key.pem`), exportPrivateKey(keys.privateKey), 0o600);
    return loadIdentity({ cert: join(tmp.dir, `${spec.cn}.crt.pem`), key: join(tmp.dir, `${spec.cn}.key.pem`), ca: fed.caPath });
  }

  const cases: Array<{ reason: string; status: number; make: () => Identity }> = [
    {
      reason: 'revoked',
      status: 403,
      make: () => {
        const id = loadIdentity(fed.agents['gone']!);
        fed.ca.revoke({ id: 'gone', reason: 'keyCompromise' });
        relay.reloadCrl();
        return id;
      },
    },
    {
      reason: 'expired',
      status: 403,
      make: () => {
        const files = fed.addAgent('lapsed', { notBefore: new Date(Date.now() - 3 * 86_400_000), days: 1 });
        return loadIdentity(files, new Date(Date.now() - 2.5 * 86_400_000));
      },
    },
    {
      reason: 'not-yet-valid',
      status: 403,
      make: () => loadIdentity(fed.addAgent('early', { notBefore: new Date(Date.now() + 86_400_000), days: 30 })),
    },
    {
      reason: 'unknown-ca',
      status: 401,
      make: () => loadIdentity(makeFederation(join(tmp.dir, 'foreign'), ['alpha']).agents['alpha']!),
    },
    { reason: 'wrong-usage', status: 403, make: () => loadIdentity(fed.relay) },
    { reason: 'not-agent', status: 403, make: () => signedByCa({ cn: 'someone-else', hospitalId: 'zed' }) },
  ];

  for (const c of cases) {
    it(`refuses a certificate that is ${c.reason} with ${c.status}, logs the reason, peer, id and serial, and counts it`, async function () {
      const identity = c.make();
      const before = await refusedTotal(c.reason);
      const err = await refusedWith(identity);
      expect(err.status, err.message).to.equal(c.status);
      expect(err.refusal).to.equal(c.reason);
      expect(err.message).to.contain(`client certificate refused: ${c.reason}`);
      expect(await refusedTotal(c.reason)).to.equal(before + 1);
      const line = refusalLine(c.reason, identity.serial);
      expect(line, JSON.stringify(log.slice(-3))).to.not.equal(undefined);
      expect(line).to.include({ reason: c.reason, status: c.status, peer: '127.0.0.1', serial: identity.serial });
      if (identity.hospitalId) expect(line?.['id']).to.equal(identity.hospitalId);
    });
  }

  it('answers a client with no certificate 401 and names the reason in a header', async function () {
    const before = await refusedTotal('no-certificate');
    const ws = new WebSocket(`wss://localhost:${relay.port}/v1/agent`, { ca: readFileSync(fed.caPath, 'utf8') });
    const res = await new Promise<{ status: number; header: unknown }>((resolve, reject) => {
      ws.on('unexpected-response', (_req, r) => resolve({ status: r.statusCode ?? 0, header: r.headers['x-hie-refusal'] }));
      ws.on('open', () => reject(new Error('opened without a certificate')));
      ws.on('error', () => undefined);
    });
    ws.terminate();
    expect(res).to.deep.equal({ status: 401, header: 'no-certificate' });
    expect(await refusedTotal('no-certificate')).to.equal(before + 1);
    expect(refusalLine('no-certificate')).to.include({ peer: '127.0.0.1', status: 401 });
  });

  it('refuses a certificate of a second CA in the bundle whose CRL is not loaded as crl-missing (the CA-rollover limit)', async function () {
    const next = makeFederation(join(tmp.dir, 'next-ca'), ['newbie']);
    const bundle = join(tmp.dir, 'bundle.crt.pem');
    writeFileAtomic(bundle, `${readFileSync(fed.caPath, 'utf8')}${readFileSync(next.caPath, 'utf8')}`, 0o644);
    const lines: Array<Record<string, unknown>> = [];
    const second = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: bundle, crl: fed.crlPath },
        admin: { enabled: false },
        tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
        log: { level: 'info' },
      },
      { logger: sinkLogger(lines) },
    );
    try {
      const newbie = loadIdentity({ ...next.agents['newbie']!, ca: bundle });
      const client = new RelayClient({ url: `wss://127.0.0.1:${second.port}`, servername: 'localhost', identity: newbie, reconnect: false });
      const err = (await client.connect().then(
        () => undefined,
        (e: unknown) => e,
      )) as RelayError & { status?: number; refusal?: string };
      await client.close();
      expect(err).to.include({ status: 403, refusal: 'crl-missing' });
      expect(lines.find((l) => l['msg'] === 'client certificate refused: crl-missing')).to.include({ id: 'newbie', serial: newbie.serial });
    } finally {
      await second.close(0);
    }
  });

  it('still admits a valid agent', async function () {
    const client = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      servername: 'localhost',
      identity: loadIdentity(fed.agents['alpha']!),
      reconnect: false,
    });
    await client.connect();
    expect(client.agentId).to.equal('alpha');
    await client.close();
  });

  it('a running agent the relay refuses says why in one line', async function () {
    // The agent's own CRL copy is stale (none configured), so it starts; the relay knows better.
    const files = fed.addAgent('stale');
    fed.ca.revoke({ id: 'stale' });
    relay.reloadCrl();
    const lines: Array<Record<string, unknown>> = [];
    const config = parseAgentConfig({
      id: 'stale',
      identity: { cert: files.cert, key: files.key, ca: files.ca },
      relay: { urls: [`wss://localhost:${relay.port}`] },
      peers: [],
      dataDir: join(tmp.dir, 'data', 'stale'),
      api: { host: '127.0.0.1', port: 0 },
      log: { level: 'info' },
    });
    const agent = await startAgent(config, {
      env: { HIE_AGENT_API_TOKENS: `test:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: randomBytes(32).toString('hex') },
      logger: sinkLogger(lines),
    });
    try {
      const line = await waitFor(
        () => lines.find((l) => String(l['msg']).startsWith("the relay refused this agent's certificate")),
        20_000,
        'the refusal line',
      );
      expect(line).to.include({ status: 403, reason: 'revoked', level: 50 });
      expect(String(line['msg'])).to.contain('revoked');
    } finally {
      await agent.close();
    }
  });
});
