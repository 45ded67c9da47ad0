import { expect } from 'chai';
import { startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

/** Exported FHIR resources read loosely, element by element. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const PSY = 'http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY';
const VITALS = 'http://terminology.hl7.org/CodeSystem/observation-category|vital-signs';
const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';

type Bundle = { entry: Array<{ resource: Record<string, unknown> }> };

describe('consent scope by kind of data, end to end', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  async function grant(body: Record<string, unknown>): Promise<{ status: number; json: Record<string, Loose> }> {
    const res = await net.api('myongji', '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ patientId: 'MRN-0001', grantee: 'severance', validUntil: '2099', ...body }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, Loose> };
  }

  /** The fixture bundle about MRN-0001, its Observation changed by `edit`, and only the resources of `keep` when given. */
  function bundle(edit: (obs: Record<string, unknown>) => void, keep?: string[]): Buffer {
    const b = JSON.parse(bundleFor('MRN-0001').toString('utf8')) as Bundle;
    if (keep) b.entry = b.entry.filter((e) => keep.includes(e.resource['resourceType'] as string));
    edit(b.entry.find((e) => e.resource['resourceType'] === 'Observation')!.resource);
    return Buffer.from(JSON.stringify(b));
  }

  const psy = (obs: Record<string, unknown>): void =>
    void (obs['meta'] = { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] });
  const restricted = (obs: Record<string, unknown>): void =>
    void (obs['meta'] = { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] });
  const vitals = (obs: Record<string, unknown>): void =>
    void (obs['category'] = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }]);

  function send(consent: string, body: Buffer): Promise<Response> {
    return net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'MRN-0001', 'hie-consent-id': consent },
      body,
    });
  }

  const exchanges = async (): Promise<number> => ((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;

  async function expectRefused(res: Response, code: string, names: string): Promise<void> {
    expect(res.status).to.equal(403);
    expect(res.headers.get('content-type')).to.match(/application\/fhir\+json/);
    const outcome = (await res.json()) as { resourceType: string; issue: Array<{ details: { coding: Array<{ code: string }> }; diagnostics?: string }> };
    expect(outcome.resourceType).to.equal('OperationOutcome');
    const text = JSON.stringify(outcome);
    expect(text).to.contain(code).and.contain(names);
    expect(text).not.to.contain('MRN-0001');
  }

  it("refuses a PSY-labelled and a confidentiality-R resource under a '*' consent (403, OperationOutcome), storing nothing", async function () {
    const all = await grant({});
    expect(all.status).to.equal(201);
    const before = await exchanges();
    await expectRefused(await send(all.json['id'], bundle(psy)), 'ERR_CONSENT_SENSITIVE', PSY);
    await expectRefused(await send(all.json['id'], bundle(restricted)), 'ERR_CONSENT_SENSITIVE', 'v3-Confidentiality|R');
    expect(await exchanges()).to.equal(before);
  });

  it('delivers the same PSY resource under a consent naming PSY', async function () {
    const named = await grant({ labels: ['PSY'] });
    expect(named.status, JSON.stringify(named.json)).to.equal(201);
    expect(named.json['labels']).to.deep.equal([PSY]);
    const res = await send(named.json['id'], bundle(psy));
    expect(res.status).to.equal(202);
    const id = ((await res.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string }).status === 'delivered',
      20_000,
      'delivered',
    );
  });

  it('a category-scoped consent delivers its category and refuses another, naming it', async function () {
    const lab = await grant({ categories: [LAB] });
    const vital = await grant({ categories: [VITALS] });
    expect(lab.status).to.equal(201);
    const body = bundle(vitals, ['Patient', 'Observation']);
    await expectRefused(await send(lab.json['id'], body), 'ERR_CONSENT_SCOPE', VITALS);
    expect((await send(vital.json['id'], body)).status).to.equal(202);
  });

  it('refuses a consent naming a label that is not a sensitivity label, or a category that is not system|code', async function () {
    for (const body of [{ labels: ['N'] }, { labels: ['http://example.org|PSY'] }, { categories: ['laboratory'] }]) {
      const r = await grant(body);
      expect(r.status, JSON.stringify(body)).to.equal(400);
      expect(r.json['error'].code).to.equal('ERR_BAD_REQUEST');
      expect(r.json['error'].message).to.match(/labels|categories/);
    }
  });

  it('exports the decisions, permit and deny, as BALP AuthZconsent AuditEvents with the patient as a keyed hash', async function () {
    const res = await net.api('myongji', '/v1/audit/consent-decisions?format=balp');
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/application\/fhir\+json/);
    const text = await res.text();
    expect(text).not.to.contain('MRN-0001');
    const bundleOut = JSON.parse(text) as { resourceType: string; entry: Array<{ resource: Record<string, Loose> }> };
    expect(bundleOut.resourceType).to.equal('Bundle');
    const events = bundleOut.entry.map((e) => e.resource);
    const deny = events.find((e) => e['outcome'] === '8' && String(e['outcomeDesc']).includes(PSY));
    const permit = events.find((e) => e['outcome'] === '0');
    expect(deny, 'a deny').to.not.equal(undefined);
    expect(permit, 'a permit').to.not.equal(undefined);
    for (const e of [deny!, permit!]) {
      expect(e['subtype'][0].code).to.equal('AuthZ-Consent');
      expect(e['entity'][0].what.identifier.system).to.equal('urn:hie:patient-hmac:myongji');
      expect(e['entity'][0].what.identifier.value).to.match(/^[0-9a-f]{64}$/);
    }
    const json = (await (await net.api('myongji', '/v1/audit/consent-decisions')).json()) as { decisions: Array<{ decision: string; stage: string }> };
    expect(json.decisions.some((d) => d.decision === 'permit' && d.stage === 'release')).to.equal(true);
    expect(json.decisions.some((d) => d.decision === 'deny' && d.stage === 'admit')).to.equal(true);
  });

  it('refuses a junk since date naming the field', async function () {
    for (const date of ['not-a-date-7731', 'hello 2031', '2031-02-30']) {
      const res = await net.api('myongji', `/v1/audit/consent-decisions?since=${encodeURIComponent(date)}`);
      expect(res.status, date).to.equal(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).to.equal('ERR_BAD_REQUEST');
      expect(body.error.message).to.contain('since');
    }
  });

  it('refuses a junk settlement period naming the field', async function () {
    for (const period of ['not-a-date-7731', 'hello 2031', '2031-13', '2031-6', '2031']) {
      const res = await net.api('myongji', `/v1/ledger/settlement?period=${encodeURIComponent(period)}`);
      expect(res.status, period).to.equal(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).to.equal('ERR_BAD_REQUEST');
      expect(body.error.message).to.contain('period');
    }
  });

  it('imports its own PCF export, and answers a bad FHIR Consent with an OperationOutcome naming the element', async function () {
    const granted = await grant({ labels: ['PSY'], categories: [VITALS] });
    const exported = await net.api('myongji', `/v1/consents/${granted.json['id']}?format=fhir`);
    expect(exported.headers.get('content-type')).to.match(/application\/fhir\+json/);
    const resource = (await exported.json()) as Record<string, Loose>;
    expect(resource['meta']).to.equal(undefined); // limited by category: no PCF profile claimed
    const post = (body: unknown) =>
      net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json', accept: 'application/fhir+json' },
        body: JSON.stringify(body),
      });
    // Exported with the patient as a keyed hash: imported under the patient's own identifier.
    const hashed = await post(resource);
    expect(hashed.status).to.equal(400);
    expect(JSON.stringify(await hashed.json())).to.contain('patient.identifier');
    const imported = await post({ ...resource, patient: { identifier: { value: 'MRN-0001' } } });
    expect(imported.status).to.equal(201);
    expect(await imported.json()).to.deep.include({ labels: [PSY], categories: [VITALS], scope: ['*'] });
    const bad = await post({ ...resource, patient: { identifier: { value: 'MRN-0001' } }, provision: { ...resource['provision'], actor: [] } });
    expect(bad.status).to.equal(400);
    const outcome = (await bad.json()) as { resourceType: string; issue: Array<{ details: { coding: Array<{ code: string }>; text: string } }> };
    expect(outcome.resourceType).to.equal('OperationOutcome');
    expect(outcome.issue[0]!.details.coding[0]!.code).to.equal('ERR_INVALID_FHIR');
    expect(outcome.issue[0]!.details.text).to.contain('provision.actor');
  });
});
