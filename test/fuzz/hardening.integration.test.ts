import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer, type ConnectionOptions } from 'node:tls';
import { expect } from 'chai';
import { pino } from 'pino';
import { TLS_MIN_VERSION, loadIdentity } from '../../certs/index.ts';
import { startAgent, type RunningAgent } from '../../hospital-agent/agent.ts';
import { DEFAULT_API_HOST, parseAgentConfig } from '../../hospital-agent/config.ts';
import { Inbox } from '../../hospital-agent/store/inbox.ts';
import { DEFAULT_ADMIN_HOST, parseRelayConfig } from '../../relay/index.ts';
import { TEST_TOKEN, startNetwork, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';
import { rawRequest } from './support/http.ts';
import { API_ROUTES, HOSTILE_IDS, badAnswer } from './targets/api.ts';

/** Node's default --max-http-header-size: 16 KiB. */
const NODE_MAX_HEADER = 16 * 1024;

/** Sends raw bytes on a (TLS) socket and returns the status line of the answer. */
async function statusLine(open: () => import('node:net').Socket, request: string): Promise<string> {
  const socket = open();
  socket.on('error', () => undefined);
  const parts: Buffer[] = [];
  socket.on('data', (c: Buffer) => parts.push(c));
  socket.write(request);
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 5000))]);
  socket.destroy();
  return Buffer.concat(parts).toString('latin1').split('\r\n')[0] ?? '';
}

function logSink(lines: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _e, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
}

describe('hardening (agent API, relay admin, relay TLS)', function () {
  this.timeout(90_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  const logs: Record<string, string[]> = { alpha: [], bravo: [] };
  let alpha: RunningAgent;
  let bravo: RunningAgent;

  before(async function () {
    tmp = tempDir('hie-hardening-');
    net = await startNetwork(tmp.dir, ['alpha', 'bravo'], { agentStart: false, captureRelayLog: true });
    // Started here (not by startNetwork) to capture every log line at debug level.
    for (const id of ['alpha', 'bravo'] as const) {
      const a = await startAgent(net.configs[id]!, {
        env: { HIE_AGENT_API_TOKENS: `test:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: net.secrets[id] },
        logger: pino({ level: 'debug', base: { agent: id } }, logSink(logs[id]!)),
      });
      net.agents[id] = a;
    }
    alpha = net.agents['alpha']!;
    bravo = net.agents['bravo']!;
  });
  after(async function () {
    await net?.close();
    tmp?.cleanup();
  });

  const expectHelmet = (h: Record<string, string | string[] | undefined>, what: string): void => {
    expect(h['x-content-type-options'], what).to.equal('nosniff');
    expect(h['content-security-policy'], what).to.be.a('string');
    expect(h['x-frame-options'], what).to.equal('SAMEORIGIN');
    expect(h['strict-transport-security'], what).to.be.a('string');
    expect(h['cross-origin-opener-policy'], what).to.equal('same-origin');
    expect(h['x-powered-by'], what).to.equal(undefined);
  };

  it('sends helmet headers on every agent API route, errors and 404s included', async function () {
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    for (const r of API_ROUTES) {
      const res = await rawRequest(alpha.apiPort, { method: r.method, path: r.path.replace(':id', 'no-such-item-0000'), headers: auth });
      expectHelmet(res.headers, `${r.method} ${r.path} (${res.status})`);
    }
    expectHelmet((await rawRequest(alpha.apiPort, { method: 'GET', path: '/v1/consents' })).headers, '401');
    expectHelmet((await rawRequest(alpha.apiPort, { method: 'GET', path: '/nowhere' })).headers, '404');
  });

  it('sends helmet headers on every relay admin route', async function () {
    for (const path of ['/healthz', '/readyz', '/metrics', '/v1/agents', '/nowhere']) {
      const res = await rawRequest(net.relay.adminPort!, { method: 'GET', path });
      expectHelmet(res.headers, `relay admin ${path} (${res.status})`);
    }
  });

  it('binds the relay admin listener and the agent API to loopback by default', function () {
    expect(DEFAULT_ADMIN_HOST).to.equal('127.0.0.1');
    const relay = parseRelayConfig({ tls: { cert: 'c', key: 'k', ca: 'a' } });
    expect(relay.admin.host).to.equal('127.0.0.1');
    expect(relay.admin.enabled).to.equal(true);
    expect(DEFAULT_API_HOST).to.equal('127.0.0.1');
    const agent = parseAgentConfig({ id: 'alpha', identity: { cert: 'c', key: 'k', ca: 'a' }, relay: { urls: ['wss://localhost:1'] }, dataDir: tmp.dir });
    expect(agent.api.host).to.equal('127.0.0.1');
  });

  it('refuses JSON bodies over the limit with 413 ERR_PAYLOAD_TOO_LARGE', async function () {
    const big = Buffer.from(JSON.stringify({ patientId: 'p', grantee: 'bravo', validUntil: '2099-01-01T00:00:00Z', pad: 'x'.repeat(1_100_000) }));
    for (const path of ['/v1/consents', '/v1/requests']) {
      const res = await rawRequest(alpha.apiPort, {
        method: 'POST',
        path,
        headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
        body: big,
      });
      expect(res.status, path).to.equal(413);
      expect(JSON.parse(res.body.toString()).error.code, path).to.equal('ERR_PAYLOAD_TOO_LARGE');
    }
  });

  it('refuses request headers over the limit with 431 on the agent API, the relay admin and the relay agent port', async function () {
    const request = `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: ${'a'.repeat(NODE_MAX_HEADER + 1024)}\r\n\r\n`;
    const small = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
    for (const port of [alpha.apiPort, net.relay.adminPort!]) {
      expect(await statusLine(() => netConnect(port, '127.0.0.1'), small)).to.match(/^HTTP\/1\.1 200/);
      expect(await statusLine(() => netConnect(port, '127.0.0.1'), request)).to.match(/^HTTP\/1\.1 431/);
    }
    const files = net.fed.agents['alpha']!;
    const id = loadIdentity(files);
    const tlsOpen = () => tlsConnect({ host: '127.0.0.1', port: net.relay.port, servername: 'localhost', cert: id.certPem, key: id.keyPem, ca: id.caPem });
    expect(await statusLine(tlsOpen, request)).to.match(/^HTTP\/1\.1 431/);
  });

  it('rate-limits failed API authentication and never logs a token', async function () {
    const ok = await rawRequest(bravo.apiPort, { method: 'GET', path: '/v1/consents', headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    expect(ok.status).to.equal(200);
    const wrong = 'wrong-token-that-must-not-be-logged-0123456789';
    const statuses: number[] = [];
    for (let i = 0; i < 22; i++)
      statuses.push((await rawRequest(bravo.apiPort, { method: 'GET', path: '/v1/consents', headers: { authorization: `Bearer ${wrong}` } })).status);
    expect(statuses[0]).to.equal(401);
    expect(statuses.at(-1)).to.equal(429);
    const limited = await rawRequest(bravo.apiPort, { method: 'GET', path: '/v1/consents', headers: { authorization: `Bearer ${wrong}` } });
    expect(JSON.parse(limited.body.toString()).error.code).to.equal('ERR_RATE_LIMITED');
    const all = [...logs['alpha']!, ...logs['bravo']!, ...net.relayLog].join('\n');
    expect(all).to.contain('api authentication failed');
    expect(all).not.to.contain(TEST_TOKEN);
    expect(all).not.to.contain(wrong);
    expect(all).not.to.contain(net.secrets['alpha']!);
    expect(all).not.to.contain(net.secrets['bravo']!);
  });

  it('keeps path-traversal ids on every id route away from the file system', async function () {
    const data = net.configs['alpha']!.dataDir;
    const sentinels = [join(data, 'sentinel.txt'), join(data, '..', 'sentinel.txt'), join(data, 'inbox', 'sentinel.txt')];
    const secret = 'SENTINEL-CONTENT-0c8f1e';
    for (const s of sentinels) writeFileSync(s, secret);
    // A real item too, so the inbox routes have something a traversal could reach next to.
    const auth = { authorization: `Bearer ${TEST_TOKEN}` };
    const extra = [
      '..%2fsentinel.txt',
      '..%2f..%2fsentinel.txt',
      '%2e%2e%2fsentinel.txt',
      'items%2f..%2f..%2fsentinel.txt',
      '..%5csentinel.txt',
      'sentinel.txt',
      join(data, 'sentinel.txt').replaceAll('/', '%2f'),
    ];
    for (const r of API_ROUTES.filter((x) => x.path.includes(':id'))) {
      for (const id of [...HOSTILE_IDS, ...extra]) {
        const res = await rawRequest(alpha.apiPort, { method: r.method, path: r.path.replace(':id', id), headers: auth });
        const what = `${r.method} ${r.path} with ${id}`;
        expect(res.status, what).to.be.within(400, 499);
        expect(badAnswer(r.method, res), what).to.equal(undefined);
        expect(res.body.toString('latin1'), what).not.to.contain(secret);
      }
    }
    for (const s of sentinels) expect(existsSync(s) && readFileSync(s, 'utf8'), s).to.equal(secret);
    // The store that touches the disk refuses such ids itself, whatever the route does.
    const inbox = new Inbox(join(data, 'inbox'));
    for (const id of ['..', '../sentinel.txt', '../../sentinel.txt', 'a/../../b', '/etc/passwd', '..\\x', 'ok-id\u0000../../x']) {
      expect(() => inbox.itemDir(id), id).to.throw(/invalid exchange id/);
      await inbox.remove(id).then(
        () => expect.fail(`remove(${JSON.stringify(id)}) was accepted`),
        (err: Error) => expect(err.message).to.match(/invalid exchange id/),
      );
    }
    for (const s of sentinels) expect(existsSync(s), s).to.equal(true);
  });

  it(`refuses a TLSv1.1 client and a non-forward-secret cipher at the relay; ${TLS_MIN_VERSION} with the policy ciphers connects`, async function () {
    const id = loadIdentity(net.fed.agents['alpha']!);
    const base: ConnectionOptions = { host: '127.0.0.1', port: net.relay.port, servername: 'localhost', cert: id.certPem, key: id.keyPem, ca: id.caPem };
    const attempt = (extra: ConnectionOptions): Promise<{ ok: boolean; protocol?: string | null; code?: string }> =>
      new Promise((resolve) => {
        const s = tlsConnect({ ...base, ...extra }, () => {
          const protocol = s.getProtocol();
          s.destroy();
          resolve({ ok: true, protocol });
        });
        s.once('error', (err: Error & { code?: string }) => resolve({ ok: false, ...(err.code ? { code: err.code } : {}) }));
      });
    // Control: this client does speak TLS 1.1 to a server that allows it, so the refusal below is the relay's policy.
    const rid = loadIdentity(net.fed.relay);
    const lax = createTlsServer({ cert: rid.certPem, key: rid.keyPem, minVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' }, (s) => s.end());
    lax.listen(0, '127.0.0.1');
    await once(lax, 'listening');
    const control = await attempt({ port: (lax.address() as AddressInfo).port, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    lax.close();
    expect(control).to.deep.equal({ ok: true, protocol: 'TLSv1.1' });
    const refusedBefore = await metric(net, 'hie_relay_connections_refused_total{reason="tls"}');
    // SECLEVEL=0 lets this client offer TLS 1.1 at all, so a refusal can only come from the relay.
    const old = await attempt({ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
    expect(old.ok, 'TLSv1.1 client').to.equal(false);
    const staticRsa = await attempt({ maxVersion: 'TLSv1.2', ciphers: 'AES256-GCM-SHA384:AES128-SHA256:AES128-SHA' });
    expect(staticRsa.ok, 'non-forward-secret cipher').to.equal(false);
    const good12 = await attempt({ maxVersion: 'TLSv1.2' });
    expect(good12).to.deep.equal({ ok: true, protocol: 'TLSv1.2' });
    const good13 = await attempt({});
    expect(good13).to.deep.equal({ ok: true, protocol: 'TLSv1.3' });
    expect(await metric(net, 'hie_relay_connections_refused_total{reason="tls"}')).to.be.at.least(refusedBefore + 2);
  });

  it('shows the relay certificate expiry in metrics (hie_relay_cert_expiry_seconds)', async function () {
    const validTo = Date.parse(new X509Certificate(readFileSync(net.fed.relay.cert)).validTo);
    const seconds = await metric(net, 'hie_relay_cert_expiry_seconds');
    expect(Math.abs(seconds - (validTo - Date.now()) / 1000)).to.be.below(120);
    expect(seconds).to.be.above(0);
  });
});

/** One sample from the relay's /metrics (0 when the series does not exist yet). */
async function metric(net: TestNetwork, series: string): Promise<number> {
  const text = (await rawRequest(net.relay.adminPort!, { method: 'GET', path: '/metrics' })).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
