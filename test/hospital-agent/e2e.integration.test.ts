import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { dicomFile } from '../support/dicom.ts';
import { tempDir } from '../support/tmp.ts';

const BUNDLE = readFileSync(fileURLToPath(new URL('../../scripts/fixtures/patient-bundle.json', import.meta.url)));

describe('hospital agents end to end', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance', 'mgh']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const grant = (from: string, to: string, patientId: string, scope: string[] = ['*']): Promise<string> => grantConsent(net, from, to, patientId, scope);

  async function send(
    from: string,
    to: string,
    patientId: string,
    consentId: string,
    body: Buffer,
    contentType = 'application/fhir+json',
    extra: Record<string, string> = {},
  ): Promise<Response> {
    return net.api(from, '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': contentType, 'hie-recipient': to, 'hie-patient-id': patientId, 'hie-consent-id': consentId, ...extra },
      // The fixture stands for the named patient's bundle: the agent reads the patient from the content.
      body: body === BUNDLE ? bundleFor(patientId) : body,
    });
  }

  it('delivers a consented FHIR bundle with a verified receipt, byte-identical', async function () {
    const consent = await grant('myongji', 'severance', 'SYN-000001');
    const res = await send('myongji', 'severance', 'SYN-000001', consent, BUNDLE);
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const done = await waitFor(
      async () => {
        const r = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string };
        return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
      },
      30_000,
      'delivery',
    );
    expect(done.status, JSON.stringify(done)).to.equal('delivered');
    const item = (await (await net.api('severance', `/v1/inbox/${id}`)).json()) as { from: string; contentType: string };
    expect(item.from).to.equal('myongji');
    const content = Buffer.from(await (await net.api('severance', `/v1/inbox/${id}/content`)).arrayBuffer());
    expect(createHash('sha256').update(content).digest('hex')).to.equal(createHash('sha256').update(BUNDLE).digest('hex'));
  });

  it('refuses a send without consent and after revocation, and nothing leaves', async function () {
    const none = await send('myongji', 'mgh', 'SYN-000002', '00000000-0000-4000-8000-000000000000', BUNDLE);
    expect(none.status).to.equal(403);
    expect(((await none.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONSENT_MISSING');
    const consent = await grant('myongji', 'mgh', 'SYN-000002');
    const del = await net.api('myongji', `/v1/consents/${consent}?reason=legal`, { method: 'DELETE' });
    expect(del.status).to.equal(200);
    expect(await del.json()).to.include({ revocationReason: 'legal' });
    expect(await (await net.api('myongji', `/v1/consents/${consent}`)).json()).to.include({ revocationReason: 'legal' });
    const after = await send('myongji', 'mgh', 'SYN-000002', consent, BUNDLE);
    expect(after.status).to.equal(403);
    expect(((await after.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONSENT_REVOKED');
    const outside = await grant('myongji', 'mgh', 'SYN-000003', ['Observation']);
    const scoped = await send('myongji', 'mgh', 'SYN-000003', outside, BUNDLE);
    // A FHIR Bundle's scope refusal is an OperationOutcome naming each type out of scope.
    expect(scoped.status).to.equal(403);
    const outcome = (await scoped.json()) as { issue: Array<{ details: { coding: Array<{ code: string }> }; expression: string[] }> };
    expect(outcome.issue.map((i) => i.details.coding[0]?.code)).to.include('ERR_CONSENT_SCOPE');
    expect(outcome.issue.map((i) => i.expression[0])).to.include('Bundle.entry.resource.ofType(Patient)');
    // Nothing left the hospital: no exchange was recorded (so nothing is queued to go later), and mgh has nothing.
    const recorded = ((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: Array<{ to: string }> }).exchanges;
    expect(recorded.filter((x) => x.to === 'mgh')).to.deep.equal([]);
    const inbox = (await (await net.api('mgh', '/v1/inbox')).json()) as { items: unknown[] };
    expect(inbox.items).to.deep.equal([]);
  });

  it('refuses consents the ledger could not record with 400 naming the field, never 500, and never echoes the patient id', async function () {
    const until = new Date(Date.now() + 86_400_000).toISOString();
    const fhir = (patientValue: string, classes = 1): unknown => ({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { identifier: { value: patientValue } },
      provision: {
        type: 'permit',
        period: { end: until },
        actor: [{ reference: { identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:hie:agent:severance' } } }],
        purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }],
        class: Array.from({ length: classes }, (_, i) => ({
          system: 'http://hl7.org/fhir/resource-types',
          code: `Type${String.fromCharCode(65 + (i % 26))}${String.fromCharCode(65 + Math.floor(i / 26))}`,
        })),
      },
    });
    const cases: Array<[string, unknown, RegExp]> = [
      ['a year past 9999', { patientId: 'SYN-000050', grantee: 'severance', validUntil: '10000-01-01T00:00:00Z' }, /validUntil/],
      ['a year before 0000', { patientId: 'SYN-000050', grantee: 'severance', validFrom: '-000001-01-01T00:00:00Z', validUntil: until }, /validFrom/],
      ['33 grantees', { patientId: 'SYN-000050', grantee: 'h-extra', grantees: Array.from({ length: 32 }, (_, i) => `h-${i}`), validUntil: until }, /grantees/],
      ['a blank FHIR patient id', fhir('   '), /patientId/],
      ['a 300-character FHIR patient id', fhir(`SYN-${'9'.repeat(296)}`), /patientId/],
      ['65 FHIR classes', fhir('SYN-000050', 65), /scope/],
    ];
    for (const [what, body, field] of cases) {
      const res = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      expect(res.status, `${what}: ${text}`).to.equal(400);
      const error = (JSON.parse(text) as { error: { code: string; message: string } }).error;
      expect(error.code, what).to.equal('ERR_BAD_REQUEST');
      expect(error.message, what).to.match(field);
      expect(text, what).not.to.contain('SYN-');
    }
  });

  it('returns the same exchange for a retried POST with the same Idempotency-Key', async function () {
    const consent = await grant('severance', 'mgh', 'SYN-000004');
    const a = await send('severance', 'mgh', 'SYN-000004', consent, BUNDLE, 'application/fhir+json', { 'idempotency-key': 'ehr-job-17' });
    const b = await send('severance', 'mgh', 'SYN-000004', consent, BUNDLE, 'application/fhir+json', { 'idempotency-key': 'ehr-job-17' });
    expect(a.status).to.equal(202);
    expect(b.status).to.equal(200);
    const ida = ((await a.json()) as { id: string }).id;
    expect(((await b.json()) as { id: string }).id).to.equal(ida);
    await waitFor(
      async () => ((await (await net.api('severance', `/v1/exchanges/${ida}`)).json()) as { status: string }).status === 'delivered',
      30_000,
      'delivery',
    );
    const items = ((await (await net.api('mgh', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items;
    expect(items.filter((i) => i.exchangeId === ida)).to.have.length(1);
    // A retry that comes after the consent was revoked still gets the exchange it created (not a 403), and nothing more is sent.
    expect((await net.api('severance', `/v1/consents/${consent}`, { method: 'DELETE' })).status).to.equal(200);
    const c = await send('severance', 'mgh', 'SYN-000004', consent, BUNDLE, 'application/fhir+json', { 'idempotency-key': 'ehr-job-17' });
    expect(c.status, await c.clone().text()).to.equal(200);
    expect(((await c.json()) as { id: string }).id).to.equal(ida);
    // The same key with another body is a different request.
    const other = Buffer.from(BUNDLE.toString('utf8').replace('"type"', '"id": "another", "type"'));
    const d = await send('severance', 'mgh', 'SYN-000004', consent, other, 'application/fhir+json', { 'idempotency-key': 'ehr-job-17' });
    expect(d.status).to.equal(409);
    expect(((await d.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONFLICT');
    const list = ((await (await net.api('severance', '/v1/exchanges')).json()) as { exchanges: Array<{ id: string; to: string }> }).exchanges;
    expect(list.filter((x) => x.to === 'mgh')).to.have.length(1);
  });

  it("answers a records request covered by the holder's consent, and refuses one that is not", async function () {
    // mgh holds SYN-000010 and has the patient's consent to release to myongji.
    const consent = await grant('mgh', 'myongji', 'SYN-000010');
    const asked = await net.api('myongji', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'mgh', patientId: 'SYN-000010' }),
    });
    expect(asked.status, await asked.clone().text()).to.equal(202);
    const requestId = ((await asked.json()) as { id: string }).id;
    const incoming = await waitFor(
      async () => {
        const list = (
          (await (await net.api('mgh', '/v1/requests?direction=incoming')).json()) as {
            requests: Array<{ id: string; status: string; patientId?: string; consentId?: string; peer: string }>;
          }
        ).requests;
        return list.find((r) => r.id === requestId);
      },
      20_000,
      'request at the holder',
    );
    expect(incoming).to.include({ status: 'accepted', patientId: 'SYN-000010', consentId: consent, peer: 'myongji' });
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/requests/${requestId}`)).json()) as { status: string }).status === 'accepted',
      20_000,
      'accepted status at the requester',
    );
    // The holder's EHR answers with an ordinary exchange under the consent the request matched.
    const answer = await send('mgh', 'myongji', 'SYN-000010', consent, BUNDLE, 'application/fhir+json', { 'hie-request-id': requestId });
    expect(answer.status).to.equal(202);
    const answerId = ((await answer.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/inbox/${answerId}`)).json()) as { from?: string }).from === 'mgh',
      30_000,
      'answer in the inbox',
    );
    expect(((await (await net.api('mgh', `/v1/requests/${requestId}`)).json()) as { status: string }).status).to.equal('answered');
    // The holder charges the requester the tariff's release fee for the answer; the requester's settlement shows it once replicated.
    const period = new Date().toISOString().slice(0, 7);
    const owed = async (at: string, counterparty: string): Promise<{ owes: number; owed: number } | undefined> =>
      (
        (await (await net.api(at, `/v1/ledger/settlement?period=${period}`)).json()) as { lines: Array<{ counterparty: string; owes: number; owed: number }> }
      ).lines.find((l) => l.counterparty === counterparty);
    await waitFor(async () => (await owed('mgh', 'myongji'))?.owed === 250, 30_000, 'release fee charged by the holder');
    await waitFor(async () => (await owed('myongji', 'mgh'))?.owes === 250, 30_000, "release fee in the requester's settlement");
    // A second answer too large for a batch (its own transfer, whose usage statement comes before its receipt): the
    // fee is charged once its receipt says delivered, and once.
    // A DICOM study about the patient: its Patient ID is checked before it may leave.
    const study = dicomFile({ patientId: 'SYN-000010', pixelBytes: 400 * 1024 });
    const second = await send('mgh', 'myongji', 'SYN-000010', consent, study, 'application/dicom', { 'hie-request-id': requestId });
    expect(second.status, await second.clone().text()).to.equal(202);
    const secondId = ((await second.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('mgh', `/v1/exchanges/${secondId}`)).json()) as { status: string }).status === 'delivered',
      30_000,
      'the second answer',
    );
    await waitFor(async () => (await owed('mgh', 'myongji'))?.owed === 500, 30_000, 'release fee of the second answer');
    const charges = (await net.agents['mgh']!.ledger.byExchange(secondId))
      .filter((e) => e.entry.type === 'payment.charged')
      .map((e) => (e.entry.body as { kind: string }).kind)
      .sort();
    expect(charges).to.deep.equal(['release', 'transport']);

    const unconsented = await net.api('severance', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'mgh', patientId: 'SYN-000099' }),
    });
    const refusedId = ((await unconsented.json()) as { id: string }).id;
    const refused = await waitFor(
      async () => {
        const r = (await (await net.api('severance', `/v1/requests/${refusedId}`)).json()) as { status: string; code?: string };
        return r.status === 'refused' ? r : undefined;
      },
      20_000,
      'refusal',
    );
    expect(refused.code).to.equal('ERR_CONSENT_MISSING');
    const atHolder = (await (await net.api('mgh', `/v1/requests/${refusedId}`)).json()) as { patientId?: string };
    expect(atHolder.patientId, 'a refused request keeps no patient id').to.equal(undefined);
  });

  it('replicates ledgers so that every agent verifies clean and agrees', async function () {
    await waitFor(
      async () => {
        const statuses = await Promise.all(
          Object.keys(net.agents).map(async (id) => (await (await net.api(id, '/v1/ledger/status')).json()) as { feeds: Array<{ feed: string; seq: number }> }),
        );
        const views = statuses.map((s) => JSON.stringify(s.feeds.map((f) => [f.feed, f.seq]).sort()));
        return statuses.every((s) => s.feeds.length === 3) && new Set(views).size === 1;
      },
      30_000,
      'ledger convergence',
    );
    for (const id of Object.keys(net.agents)) {
      const v = (await (await net.api(id, '/v1/ledger/verify?grace=0')).json()) as { ok: boolean; findings: unknown[] };
      expect(v.findings, `${id}: ${JSON.stringify(v.findings)}`).to.deep.equal([]);
      expect(v.ok).to.equal(true);
    }
  });
});
