import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import express from 'express';
import { AgentError } from '../../hospital-agent/errors.ts';
import { createApiApp, type ApiLogger } from '../../hospital-agent/api/http.ts';

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
    v1.get('/ok', (_req, res) => { res.json({ ok: true, principal: res.locals['principal'] }); });
    v1.get('/slow', (_req, res) => { setTimeout(() => res.json({ ok: true }), 200); });
    v1.post('/echo-size', (req, res) => { res.json({ keys: Object.keys(req.body as object).length }); });
    v1.get('/refused', () => { throw new AgentError('ERR_CONSENT_REVOKED', 'consent c1 was revoked', { detail: { consentId: 'c1' } }); });
    v1.get('/boom', () => { throw new Error('database password is hunter2'); });
    const open = express.Router();
    open.get('/healthz', (_req, res) => { res.json({ status: 'ok' }); });
    const app = createApiApp({ tokens: [{ name: 'ehr', token: TOKEN }], logger, v1, open, openapi: { openapi: '3.1.0' }, auth: { failuresPerWindow: 3, windowMs: 60_000 } });
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
    const big = await fetch(`${base}/v1/echo-size`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ x: 'y'.repeat(5000) }) });
    expect(big.status).to.equal(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).to.equal('ERR_PAYLOAD_TOO_LARGE');
  });

  it('answers unknown routes with a JSON 404 and leaves open routes open', async function () {
    const res = await fetch(`${base}/nothing-here`);
    expect(res.status).to.equal(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('ERR_NOT_FOUND');
    expect((await fetch(`${base}/healthz`)).status).to.equal(200);
    expect((await fetch(`${base}/openapi.json`)).status).to.equal(200);
  });

  it('does not rate-limit a burst of concurrent authenticated requests (more than the failure limit in flight)', async function () {
    const statuses = await Promise.all(Array.from({ length: 10 }, async () => (await fetch(`${base}/v1/slow`, { headers: auth })).status));
    expect(statuses).to.deep.equal(Array.from({ length: 10 }, () => 200));
  });

  it('refuses missing or wrong tokens, rate-limits repeated failures, and never logs the token', async function () {
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
    // A blocked address is refused even with the valid token, so guesses made while blocked tell nothing.
    expect((await fetch(`${base}/v1/ok`, { headers: auth })).status).to.equal(429);
    const all = JSON.stringify(logged);
    expect(all).not.to.contain(TOKEN);
    expect(all).not.to.contain('wrong-token-attempt');
    expect(all).to.contain('api authentication failed');
  });
});
