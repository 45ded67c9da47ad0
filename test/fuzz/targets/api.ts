import fc from 'fast-check';
import { AGENT_ERRORS } from '../../../hospital-agent/errors.ts';
import { TEST_TOKEN, startNetwork, type TestNetwork } from '../../support/agents.ts';
import { settleRuns, tracked, type FuzzTarget } from '../support/harness.ts';
import { rawRequest, type RawResponse } from '../support/http.ts';
import { applyJsonOps, applyOps, byteOpArb, jsonOpArb } from '../support/mutate.ts';

interface ApiCtx {
  net: TestNetwork;
  port: number;
  consentId: string;
  exchangeId: string;
  runs: Set<Promise<unknown>>;
}

/** Every route of the agent API (as in the OpenAPI document), with ':id' where a path parameter goes. */
export const API_ROUTES: ReadonlyArray<{ method: string; path: string }> = [
  { method: 'GET', path: '/healthz' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/openapi.json' },
  { method: 'POST', path: '/v1/consents' },
  { method: 'GET', path: '/v1/consents' },
  { method: 'GET', path: '/v1/consents/:id' },
  { method: 'DELETE', path: '/v1/consents/:id' },
  { method: 'POST', path: '/v1/exchanges' },
  { method: 'GET', path: '/v1/exchanges' },
  { method: 'GET', path: '/v1/exchanges/:id' },
  { method: 'DELETE', path: '/v1/exchanges/:id' },
  { method: 'POST', path: '/v1/requests' },
  { method: 'GET', path: '/v1/requests' },
  { method: 'GET', path: '/v1/requests/:id' },
  { method: 'GET', path: '/v1/inbox' },
  { method: 'GET', path: '/v1/inbox/:id' },
  { method: 'DELETE', path: '/v1/inbox/:id' },
  { method: 'GET', path: '/v1/inbox/:id/content' },
  { method: 'POST', path: '/v1/inbox/:id/ack' },
  { method: 'GET', path: '/v1/ledger/status' },
  { method: 'GET', path: '/v1/ledger/verify' },
  { method: 'GET', path: '/v1/ledger/settlement' },
];

/** Ids that try to leave the data directory or break parsing. */
export const HOSTILE_IDS = [
  '..',
  '.',
  '../../../../etc/passwd',
  '..%2f..%2f..%2fetc%2fpasswd',
  '%2e%2e',
  '%2e%2e%2f%2e%2e%2fsecret',
  '..%5c..%5cwindows',
  '%00',
  'abc%00def-12345678',
  '%2fetc%2fpasswd',
  '~',
  '%',
  '%zz',
  '%c0%ae%c0%ae%2f',
  'a'.repeat(300),
  'inbox-item..',
  'CON',
  '%20',
  '..;',
  'x%0d%0aSet-Cookie:a=b',
];

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const pathSegmentArb = (ctx: ApiCtx) =>
  fc.oneof(
    fc.constantFrom(...HOSTILE_IDS, ctx.consentId, ctx.exchangeId, '00000000-0000-0000-0000-000000000000'),
    fc.string({ maxLength: 30 }).map((s) => encodeURIComponent(s)),
    printable.map((s) => s.replace(/[^A-Za-z0-9._~%-]/g, '')),
  );

const queryArb = fc.dictionary(
  fc.constantFrom('status', 'limit', 'format', 'reason', 'grace', 'period', 'direction', 'unacked', 'x', 'status[]', '__proto__'),
  fc.oneof(
    fc.constantFrom('fhir', 'true', '-1', '1e999', 'queued', '2024-13', 'incoming', '%', '..', ''),
    printable.map((s) => encodeURIComponent(s)),
  ),
  { maxKeys: 3 },
);

const CONTENT_TYPES = [
  'application/json',
  'application/fhir+json',
  'application/dicom',
  'application/octet-stream',
  'text/plain',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  '',
];

const headerArb = fc.record(
  {
    'content-type': fc.oneof(fc.constantFrom(...CONTENT_TYPES), printable),
    'hie-recipient': fc.oneof(fc.constantFrom('bravo', 'alpha', 'nobody', '../bravo', ''), printable),
    'hie-patient-id': fc.oneof(fc.constantFrom('patient-1', '', 'x'.repeat(300)), printable),
    'hie-consent-id': fc.oneof(fc.constant('__consent__'), fc.constantFrom('..', '../../x', ''), printable),
    'hie-purpose': fc.oneof(fc.constantFrom('TREAT', 'ETREAT', 'HRESCH', 'nope'), printable),
    'idempotency-key': fc.oneof(printable, fc.constant('k'.repeat(200))),
    'hie-request-id': fc.oneof(fc.constantFrom('..', '00000000-0000-0000-0000-000000000000'), printable),
    'x-request-id': printable,
    'content-encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-unknown'),
    accept: fc.constantFrom('application/json', 'text/html', '*/*'),
  },
  { requiredKeys: [] },
);

const VALID_BODIES: unknown[] = [
  { patientId: 'patient-1', grantee: 'bravo', purposes: ['TREAT'], scope: ['*'], validUntil: '2099-01-01T00:00:00Z' },
  {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ code: 'patient-privacy' }] },
    patient: { identifier: { value: 'patient-2' } },
    provision: { actor: [{ reference: { identifier: { value: 'bravo' } } }], period: { end: '2099-01-01' } },
  },
  { holder: 'bravo', patientId: 'patient-1', purpose: 'TREAT', scope: ['*'] },
  { resourceType: 'Bundle', type: 'collection', entry: [{ resource: { resourceType: 'Patient', id: 'p1' } }] },
];

const bodyArb = fc.oneof(
  fc.constant(undefined),
  fc
    .tuple(fc.nat(), fc.array(jsonOpArb, { maxLength: 3 }))
    .map(([i, ops]) => Buffer.from(JSON.stringify(applyJsonOps(VALID_BODIES[i % VALID_BODIES.length], ops)) ?? '')),
  fc
    .tuple(fc.nat(), fc.array(byteOpArb, { minLength: 1, maxLength: 3 }))
    .map(([i, ops]) => applyOps(Buffer.from(JSON.stringify(VALID_BODIES[i % VALID_BODIES.length])), ops)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? '')),
  fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)),
  fc.constantFrom(
    Buffer.from('{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"x":1}}}'),
    Buffer.from('['.repeat(5000)),
    Buffer.from('{"a":' + '1'.repeat(400) + '}'),
  ),
);

const methodArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom('PUT', 'PATCH', 'OPTIONS', 'HEAD', 'POST', 'GET', 'DELETE') },
);

/** The failure a response shows, or undefined when it is a 2xx/3xx or a documented 4xx JSON error. */
export function badAnswer(method: string, r: RawResponse): string | undefined {
  if (r.status >= 500) return `answered ${r.status}: ${r.body.toString('utf8').slice(0, 200)}`;
  if (r.status < 400) return undefined;
  if (method === 'HEAD') return undefined;
  let code: unknown;
  try {
    code = (JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
  } catch {
    return `a ${r.status} answer that is not JSON: ${r.body.toString('utf8').slice(0, 120)}`;
  }
  const known = AGENT_ERRORS[code as keyof typeof AGENT_ERRORS];
  if (!known) return `an undocumented error code ${String(code)}`;
  if (known.status !== r.status) return `${String(code)} answered with ${r.status}, documented as ${known.status}`;
  return undefined;
}

/** Every API route of a real agent: random and mutated paths, queries, headers, content types and bodies. */
export const apiTarget: FuzzTarget<ApiCtx> = {
  name: 'agent-api',
  async setup(dir) {
    const net = await startNetwork(dir, ['alpha', 'bravo']);
    const port = net.agents['alpha']!.apiPort;
    const consent = (await (
      await net.api('alpha', '/v1/consents', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(VALID_BODIES[0]) })
    ).json()) as { id: string };
    const ex = await net.api('alpha', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'hie-recipient': 'bravo', 'hie-patient-id': 'patient-1', 'hie-consent-id': consent.id },
      body: Buffer.from('seed exchange'),
    });
    const exchange = (await ex.json()) as { id: string };
    return { net, port, consentId: consent.id, exchangeId: exchange.id, runs: new Set() };
  },
  async teardown(ctx) {
    await settleRuns(ctx.runs);
    await ctx.net.close();
  },
  properties: {
    'every route answers random input with 2xx or a documented 4xx JSON error, never 5xx, and the agent keeps serving': {
      quickRuns: 150,
      build: (ctx) =>
        fc.asyncProperty(
          fc.nat({ max: API_ROUTES.length - 1 }),
          methodArb,
          pathSegmentArb(ctx),
          queryArb,
          headerArb,
          bodyArb,
          (routeIndex, methodOverride, id, query, headers, body) =>
            tracked(ctx.runs, async () => {
              const route = API_ROUTES[routeIndex]!;
              const method = methodOverride ?? route.method;
              const qs = Object.entries(query)
                .map(([k, v]) => `${encodeURIComponent(k)}=${v}`)
                .join('&');
              const path = route.path.replace(':id', id) + (qs ? `?${qs}` : '');
              const h: Record<string, string> = { authorization: `Bearer ${TEST_TOKEN}` };
              for (const [k, v] of Object.entries(headers)) if (v !== undefined) h[k] = k === 'hie-consent-id' && v === '__consent__' ? ctx.consentId : v;
              const r = await rawRequest(ctx.port, { method, path, headers: h, ...(body && method !== 'GET' && method !== 'HEAD' ? { body } : {}) });
              const bad = badAnswer(method, r);
              if (bad) throw new Error(`${method} ${path}: ${bad}`);
              const health = await rawRequest(ctx.port, { method: 'GET', path: '/healthz' });
              if (health.status !== 200) throw new Error(`agent stopped serving: /healthz ${health.status}`);
            }),
        ),
    },
  },
};
