import { once } from 'node:events';
import { Agent, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import express from 'express';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { createApiApp, type ApiLogger } from '../../../hospital-agent/api/http.ts';

const TOKEN = 'test-token-0123456789abcdef0123456789abcdef';

describe('local API framework', function () {
  let server: Server;
  let base: string;
  const logged: Array<{ obj: object; msg?: string | undefined }> = [];
  const logger: ApiLogger = {
    info: (obj, msg) => logged.push({ obj, msg }),
    warn: (obj, msg) => logged.push({ obj, msg }),
    error: (obj, msg) => logged.push({ obj, msg }),
  };

  before(async function () {
    const v1 = express.Router();
    v1.use(express.json({ limit: '1kb' }));
    v1.get('/ok', (_req, res) => {
      res.json({ ok: true, principal: res.locals['principal'] });
    });
    v1.get('/slow', (_req, res) => {
      setTimeout(() => res.json({ ok: true }), 200);
    });
    v1.post('/echo-size', (req, res) => {
      res.json({ keys: Object.keys(req.body as object).length });
    });
    v1.get('/refused', () => {
      throw new AgentError('ERR_CONSENT_REVOKED', 'consent c1 was revoked', { detail: { consentId: 'c1' } });
    });
    v1.get('/boom', () => {
      throw new Error('database password is hunter2');
    });
    const open = express.Router();
    open.get('/healthz', (_req, res) => {
      res.json({ status: 'ok' });
    });
    const app = createApiApp({
      tokens: [{ name: 'ehr', token: TOKEN }],
      logger,
      v1,
      open,
      openapi: { openapi: '3.1.0' },
      auth: { failuresPerWindow: 3, windowMs: 60_000, penaltyMs: 50 },
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const auth = { authorization: `Bearer ${TOKEN}` };

  it('serves authenticated routes with helmet headers and a request id', async function () {
    const res = await fetch(`${base}/v1/ok`, { headers: { ...auth, 'x-request-id': 'req-123' } });
    expect(res.status).to.equal(200);
    expect(await res.json()).to.deep.equal({ ok: true, principal: 'ehr' });
    expect(res.headers.get('x-request-id')).to.equal('req-123');
    expect(res.headers.get('x-content-type-options')).to.equal('nosniff');
    expect(res.headers.get('content-security-policy')).to.be.a('string');
    expect(res.headers.get('x-powered-by')).to.equal(null);
  });

  it('answers errors as JSON with the registry code and status', async function () {
    const res = await fetch(`${base}/v1/refused`, { headers: auth });
    expect(res.status).to.equal(403);
    const body = (await res.json()) as { error: { code: string; requestId: string; detail: unknown } };
    expect(body.error.code).to.equal('ERR_CONSENT_REVOKED');
    expect(body.error.detail).to.deep.equal({ consentId: 'c1' });
    expect(body.error.requestId).to.equal(res.headers.get('x-request-id'));
  });

  it('hides internal error details from the caller', async function () {
    const res = await fetch(`${base}/v1/boom`, { headers: auth });
    expect(res.status).to.equal(500);
    const text = await res.text();
    expect(text).to.contain('ERR_INTERNAL');
    expect(text).not.to.contain('hunter2');
    expect(text).not.to.match(/at .*\.ts/);
  });

  it('maps malformed and oversized JSON to 400 and 413', async function () {
    const bad = await fetch(`${base}/v1/echo-size`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{nope' });
    expect(bad.status).to.equal(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).to.equal('ERR_BAD_REQUEST');
    const big = await fetch(`${base}/v1/echo-size`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ x: 'y'.repeat(5000) }),
    });
    expect(big.status).to.equal(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).to.equal('ERR_PAYLOAD_TOO_LARGE');
  });

  it('answers unknown routes with a JSON 404 and leaves open routes open', async function () {
    const res = await fetch(`${base}/nothing-here`);
    expect(res.status).to.equal(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('ERR_NOT_FOUND');
    // A path no route matched is not logged: an EHR that puts a patient id in one would put it in the log.
    const stray = await fetch(`${base}/v1/patients/MRN-5150/records`, { headers: auth });
    expect(stray.status).to.equal(404);
    const line = logged.find((l) => l.msg === 'api request' && (l.obj as { requestId?: string }).requestId === stray.headers.get('x-request-id'));
    expect((line?.obj as { route?: string } | undefined)?.route).to.equal('(no route)');
    expect(JSON.stringify(logged)).not.to.contain('MRN-5150');
    expect((await fetch(`${base}/healthz`)).status).to.equal(200);
    expect((await fetch(`${base}/openapi.json`)).status).to.equal(200);
  });

  it('does not rate-limit a burst of concurrent authenticated requests (more than the failure limit in flight)', async function () {
    const statuses = await Promise.all(Array.from({ length: 10 }, async () => (await fetch(`${base}/v1/slow`, { headers: auth })).status));
    expect(statuses).to.deep.equal(Array.from({ length: 10 }, () => 200));
  });

  it('refuses missing or wrong tokens, rate-limits repeated failures but still serves the valid token, and never logs the token', async function () {
    const missing = await fetch(`${base}/v1/ok`);
    expect(missing.status).to.equal(401);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      statuses.push((await fetch(`${base}/v1/ok`, { headers: { authorization: 'Bearer wrong-token-attempt' } })).status);
    }
    expect(statuses.slice(0, 2)).to.deep.equal([401, 401]);
    expect(statuses[3]).to.equal(429);
    const limited = await fetch(`${base}/v1/ok`, { headers: { authorization: 'Bearer wrong-token-attempt' } });
    expect(((await limited.json()) as { error: { code: string } }).error.code).to.equal('ERR_RATE_LIMITED');
    // The valid token is still served from the same address: a process that sends bad tokens cannot lock the EHR out.
    expect((await fetch(`${base}/v1/ok`, { headers: auth })).status).to.equal(200);
    const all = JSON.stringify(logged);
    expect(all).not.to.contain(TOKEN);
    expect(all).not.to.contain('wrong-token-attempt');
    expect(all).to.contain('api authentication failed');
  });

  it('sheds wrong tokens beyond the tarpit cap at once with Connection: close, and still serves the valid token beside them', async function () {
    // Keep-alive connections, so that only what the server decides says `Connection: close`.
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const get = (authorization: string): Promise<{ status: number; connection: string | undefined; code?: string }> =>
      new Promise((resolve, reject) => {
        const req = request(`${base}/v1/ok`, { headers: { authorization }, agent }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, code: (JSON.parse(text) as { error?: { code: string } }).error?.code }),
          );
        });
        req.on('error', reject);
        req.end();
      });
    // The address is past its limit already (the test above); 12 guesses at once: 4 held (the default cap), 8 shed.
    const answers = await Promise.all([...Array.from({ length: 12 }, () => get('Bearer wrong-token-attempt')), get(`Bearer ${TOKEN}`)]).finally(() =>
      agent.destroy(),
    );
    const valid = answers.pop()!;
    expect(valid.status).to.equal(200);
    expect(answers.every((a) => a.status === 429 && a.code === 'ERR_RATE_LIMITED')).to.equal(true);
    expect(answers.filter((a) => a.connection === 'close').length).to.equal(8);
  });

  describe('a fast route (served outside express)', function () {
    let fastServer: Server;
    let fastBase: string;
    const fastLogged: Array<{ obj: object; msg?: string | undefined }> = [];
    const fastLogger: ApiLogger = {
      info: (obj, msg) => fastLogged.push({ obj, msg }),
      warn: (obj, msg) => fastLogged.push({ obj, msg }),
      error: (obj, msg) => fastLogged.push({ obj, msg }),
    };
    const handled: string[] = [];

    before(async function () {
      const v1 = express.Router();
      v1.post('/things', (_req, res) => {
        res.status(202).json({ via: 'express' });
      });
      const app = createApiApp({
        tokens: [{ name: 'ehr', token: TOKEN }],
        logger: fastLogger,
        v1,
        openapi: {},
        auth: { failuresPerWindow: 2, windowMs: 60_000, penaltyMs: 50 },
        fast: [
          {
            method: 'POST',
            path: '/v1/things',
            route: '/things',
            async handle(req, principal) {
              handled.push(principal);
              if (req.headers['x-fail'] === 'agent') throw new AgentError('ERR_CONSENT_SCOPE', 'not covered');
              if (req.headers['x-fail'] === 'crash') throw new Error('secret detail 1234');
              return { status: 202, headers: { Location: '/v1/things/1' }, body: { via: 'fast', principal } };
            },
          },
        ],
      });
      fastServer = app.listen(0, '127.0.0.1');
      await once(fastServer, 'listening');
      fastBase = `http://127.0.0.1:${(fastServer.address() as AddressInfo).port}`;
    });
    after(() => fastServer.close());

    it('answers with the same security headers, request id, JSON and log line as an express route', async function () {
      const res = await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: { ...auth, 'x-request-id': 'req-fast' }, body: 'x' });
      expect(res.status).to.equal(202);
      expect(await res.json()).to.deep.equal({ via: 'fast', principal: 'ehr' });
      expect(res.headers.get('location')).to.equal('/v1/things/1');
      expect(res.headers.get('x-request-id')).to.equal('req-fast');
      expect(res.headers.get('content-type')).to.equal('application/json; charset=utf-8');
      for (const h of ['content-security-policy', 'x-content-type-options', 'strict-transport-security', 'x-frame-options'])
        expect(res.headers.get(h), h).to.be.a('string');
      expect(res.headers.get('x-powered-by')).to.equal(null);
      const line = fastLogged.find((l) => l.msg === 'api request') as { obj: Record<string, unknown> };
      expect(line.obj).to.include({ requestId: 'req-fast', method: 'POST', route: '/things', status: 202, principal: 'ehr' });
      // Another path, or the same one with a query string, goes through express.
      expect(await (await fetch(`${fastBase}/v1/things?x=1`, { method: 'POST', headers: auth })).json()).to.deep.equal({ via: 'express' });
    });

    it('answers errors from the registry, hides internal details, and counts failed tokens towards the rate limit without refusing the valid one', async function () {
      const refused = await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: { ...auth, 'x-fail': 'agent' } });
      expect(refused.status).to.equal(403);
      const body = (await refused.json()) as { error: { code: string; requestId: string } };
      expect(body.error.code).to.equal('ERR_CONSENT_SCOPE');
      expect(body.error.requestId).to.equal(refused.headers.get('x-request-id'));
      const crash = await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: { ...auth, 'x-fail': 'crash' } });
      expect(crash.status).to.equal(500);
      expect(await crash.text()).not.to.contain('1234');
      const before = handled.length;
      expect((await fetch(`${fastBase}/v1/things`, { method: 'POST' })).status).to.equal(401);
      expect((await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: { authorization: 'Bearer guess-guess-guess' } })).status).to.equal(401);
      // Past the limit a wrong token gets 429 and the handler never runs; the right token is still served.
      const limited = await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: { authorization: 'Bearer guess-guess-guess' } });
      expect(limited.status).to.equal(429);
      expect(((await limited.json()) as { error: { code: string } }).error.code).to.equal('ERR_RATE_LIMITED');
      expect(handled.length).to.equal(before);
      expect((await fetch(`${fastBase}/v1/things`, { method: 'POST', headers: auth })).status).to.equal(202);
      expect(handled.length).to.equal(before + 1);
      expect(JSON.stringify(fastLogged)).not.to.contain('guess-guess-guess');
    });
  });
});
