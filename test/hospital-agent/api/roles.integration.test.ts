import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import express from 'express';
import { createApiApp, type ApiLogger } from '../../../hospital-agent/api/http.ts';
import { parseTokens } from '../../../hospital-agent/config.ts';

const EHR = 'ehr-token-0123456789abcdef0123456789abcdef';
const COMPLIANCE = 'compliance-token-0123456789abcdef01234567';
const ADMIN = 'admin-token-0123456789abcdef0123456789abcd';
const LEGACY = 'legacy-token-0123456789abcdef0123456789abc';

describe('API token roles', function () {
  let server: Server;
  let base: string;
  const silent: ApiLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
  let sent = 0;

  before(async function () {
    const v1 = express.Router();
    v1.get('/ok', (_req, res) => {
      res.json({ ok: true, role: res.locals['role'] });
    });
    const fhir = express.Router();
    fhir.get('/AuditEvent', (_req, res) => {
      res.type('application/fhir+json').send(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', total: 0 }));
    });
    const tokens = parseTokens(`ehr@ehr:${EHR},officer@compliance:${COMPLIANCE},root@admin:${ADMIN},old:${LEGACY}`, 'test');
    const app = createApiApp({
      tokens,
      logger: silent,
      v1,
      fhir,
      openapi: {},
      fast: [
        {
          method: 'POST',
          path: '/v1/exchanges',
          route: '/exchanges',
          handle: async () => {
            sent += 1;
            return { status: 202, body: { id: 'x' } };
          },
        },
      ],
    });
    server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const get = (path: string, token: string) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const code = async (res: Response): Promise<string> => {
    const body = (await res.json()) as { error?: { code: string }; issue?: Array<{ details: { coding: Array<{ code: string }> } }> };
    return body.error?.code ?? body.issue?.[0]?.details.coding[0]?.code ?? '';
  };

  it('reads name@role:token entries, and a token without a role as admin', function () {
    const t = parseTokens(`a@ehr:${EHR}\nb@compliance:${COMPLIANCE}\nc:${LEGACY}`, 'test');
    expect(t.map((x) => [x.name, x.role])).to.deep.equal([
      ['a', 'ehr'],
      ['b', 'compliance'],
      ['c', undefined],
    ]);
    expect(() => parseTokens(`a@auditor:${EHR}`, 'test')).to.throw(/role must be one of ehr, compliance, admin/);
  });

  it('refuses the audit API to an ehr token with 403 ERR_FORBIDDEN_ROLE as an OperationOutcome', async function () {
    const res = await get('/fhir/AuditEvent', EHR);
    expect(res.status).to.equal(403);
    expect(res.headers.get('content-type')).to.match(/application\/fhir\+json/);
    expect(await code(res)).to.equal('ERR_FORBIDDEN_ROLE');
  });

  it('refuses /v1 and sending to a compliance token with 403 ERR_FORBIDDEN_ROLE, and nothing is sent', async function () {
    const before = sent;
    const list = await get('/v1/ok', COMPLIANCE);
    expect(list.status).to.equal(403);
    expect(await code(list)).to.equal('ERR_FORBIDDEN_ROLE');
    const send = await fetch(`${base}/v1/exchanges`, {
      method: 'POST',
      headers: { authorization: `Bearer ${COMPLIANCE}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(send.status).to.equal(403);
    expect(await code(send)).to.equal('ERR_FORBIDDEN_ROLE');
    expect(sent).to.equal(before);
  });

  it('lets each role use its own routes, and admin and a role-less token use all', async function () {
    expect((await get('/v1/ok', EHR)).status).to.equal(200);
    expect((await get('/fhir/AuditEvent', COMPLIANCE)).status).to.equal(200);
    for (const t of [ADMIN, LEGACY]) {
      expect((await get('/v1/ok', t)).status).to.equal(200);
      expect((await get('/fhir/AuditEvent', t)).status).to.equal(200);
    }
    const send = await fetch(`${base}/v1/exchanges`, {
      method: 'POST',
      headers: { authorization: `Bearer ${EHR}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(send.status).to.equal(202);
  });

  it('answers a wrong token on /fhir with 401 as an OperationOutcome', async function () {
    const res = await get('/fhir/AuditEvent', 'wrong-token-0123456789abcdef0123456789abcdef');
    expect(res.status).to.equal(401);
    expect(await code(res)).to.equal('ERR_UNAUTHORIZED');
  });
});
