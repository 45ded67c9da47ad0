import { expect } from 'chai';
import { Readable } from 'node:stream';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor, FIXTURE_SYSTEM } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

describe('what the agent takes from the EHR about consent', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    // myongji's MRNs are the fixture's identifier system: a bare id is a value of it, and only of it.
    net.configs['myongji'] = { ...net.configs['myongji']!, patients: { ...net.configs['myongji']!.patients, identifierSystem: FIXTURE_SYSTEM } };
    await net.startAgent('myongji');
    await net.startAgent('severance');
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  /** This agent's own feed head (seq and hash) and how many consents it holds. */
  async function recorded(id: string): Promise<{ head: unknown; consents: number; exchanges: number }> {
    const status = (await (await net.api(id, '/v1/ledger/status')).json()) as { feed: string; feeds: Array<{ feed: string }> };
    const consents = ((await (await net.api(id, '/v1/consents')).json()) as { consents: unknown[] }).consents.length;
    const exchanges = ((await (await net.api(id, '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;
    return { head: status.feeds.find((f) => f.feed === status.feed), consents, exchanges };
  }

  describe('strict dates', function () {
    const junk = [
      'not-a-date-7731',
      'hello 2031',
      '2031-13-01',
      '2031-02-30',
      '2031-06-01T10:00:00',
      '2031-06-01 10:00:00Z',
      '2031-06-01T25:00:00Z',
      'Sun, 01 Jun 2031 10:00:00 GMT',
      '06/01/2031',
      '2031-6-1',
    ];

    async function post(body: unknown, contentType = 'application/json'): Promise<{ status: number; error: { code: string; message: string } }> {
      const res = await net.api('myongji', '/v1/consents', { method: 'POST', headers: { 'content-type': contentType }, body: JSON.stringify(body) });
      const json = (await res.json()) as { error: { code: string; message: string } };
      return { status: res.status, error: json.error };
    }

    it('refuses a junk validUntil or validFrom with 400 naming the field, and records nothing', async function () {
      const before = await recorded('myongji');
      for (const date of junk) {
        for (const [field, body] of [
          ['validUntil', { patientId: 'SYN-DATES-1', grantee: 'severance', validUntil: date }],
          ['validFrom', { patientId: 'SYN-DATES-1', grantee: 'severance', validFrom: date, validUntil: '2099-01-01T00:00:00Z' }],
        ] as const) {
          const { status, error } = await post(body);
          expect(status, `${field} ${date}`).to.equal(400);
          expect(error.code, `${field} ${date}`).to.equal('ERR_BAD_REQUEST');
          expect(error.message, `${field} ${date}`).to.contain(field);
          expect(error.message, `${field} ${date}`).not.to.contain(date);
        }
      }
      expect(await recorded('myongji')).to.deep.equal(before);
    });

    it('refuses a junk provision.period date in a FHIR Consent with 400 naming the field, and records nothing', async function () {
      const before = await recorded('myongji');
      const fhir = (period: Record<string, string>): unknown => ({
        resourceType: 'Consent',
        status: 'active',
        patient: { identifier: { value: 'SYN-DATES-2' } },
        provision: {
          type: 'permit',
          period,
          actor: [{ reference: { identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:hie:agent:severance' } } }],
          purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }],
        },
      });
      for (const date of junk) {
        for (const [field, period] of [
          ['provision.period.end', { end: date }],
          ['provision.period.start', { start: date, end: '2099' }],
        ] as const) {
          const { status, error } = await post(fhir(period), 'application/fhir+json');
          expect(status, `${field} ${date}`).to.equal(400);
          expect(error.code, `${field} ${date}`).to.equal('ERR_BAD_REQUEST');
          expect(error.message, `${field} ${date}`).to.contain(field);
        }
      }
      expect(await recorded('myongji')).to.deep.equal(before);
    });

    it('takes a partial date as its whole period: validFrom its first millisecond, validUntil its last (UTC)', async function () {
      const res = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: 'SYN-DATES-3', grantee: 'severance', validFrom: '2030-02', validUntil: '2031' }),
      });
      expect(res.status, await res.clone().text()).to.equal(201);
      expect(await res.json()).to.include({ validFrom: '2030-02-01T00:00:00.000Z', validUntil: '2031-12-31T23:59:59.999Z' });
      const offset = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: 'SYN-DATES-3', grantee: 'severance', validUntil: '2031-06-01T10:00:00+02:00' }),
      });
      expect(offset.status).to.equal(201);
      expect(await offset.json()).to.include({ validUntil: '2031-06-01T08:00:00.000Z' });
    });
  });

  describe('the patient comes from the content', function () {
    let consent: string;
    before(async function () {
      consent = await grantConsent(net, 'myongji', 'severance', 'MRN-0001');
    });

    type Bundle = { entry: Array<{ fullUrl?: string; resource: Record<string, unknown> }> };
    const about = (value: string): Bundle => JSON.parse(bundleFor(value).toString('utf8')) as Bundle;
    const bytes = (b: Bundle): Buffer => Buffer.from(JSON.stringify(b));
    const inboxIds = async (): Promise<string[]> =>
      ((await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items.map((i) => i.exchangeId);

    /** Posts a bundle from myongji to severance as `patientId` (streamed without a length when `stream`: the outbox path). */
    function send(body: Buffer, patientId = 'MRN-0001', o: { stream?: boolean; accept?: string } = {}): Promise<Response> {
      return net.api('myongji', '/v1/exchanges', {
        method: 'POST',
        headers: {
          'content-type': 'application/fhir+json',
          'hie-recipient': 'severance',
          'hie-patient-id': patientId,
          'hie-consent-id': consent,
          ...(o.accept ? { accept: o.accept } : {}),
        },
        ...(o.stream ? { body: Readable.toWeb(Readable.from([body])) as ReadableStream, duplex: 'half' } : { body }),
      } as RequestInit);
    }

    type Outcome = {
      resourceType: string;
      issue: Array<{ severity: string; code: string; details: { coding: Array<{ system: string; code: string }>; text: string }; expression?: string[] }>;
    };

    /** Sends `body`, expects a 422 OperationOutcome with exactly `expected` issues (code, expression), and that nothing was kept or sent. */
    async function refused(body: Buffer, expected: Array<[string, string]>, patientId = 'MRN-0001'): Promise<Outcome> {
      let outcome: Outcome | undefined;
      for (const stream of [false, true]) {
        // Earlier deliveries may still be logging receipts and charges: start from a quiet ledger.
        const before = await waitFor(
          async () => {
            const a = await recorded('myongji');
            await new Promise((r) => setTimeout(r, 300));
            return JSON.stringify(a) === JSON.stringify(await recorded('myongji')) ? a : undefined;
          },
          20_000,
          'a quiet ledger',
        );
        const inbox = await inboxIds();
        const res = await send(body, patientId, { stream });
        const text = await res.text();
        expect(res.status, text).to.equal(422);
        expect(res.headers.get('content-type')).to.match(/^application\/fhir\+json/);
        outcome = JSON.parse(text) as Outcome;
        expect(outcome.resourceType).to.equal('OperationOutcome');
        expect(outcome.issue.map((i) => [i.details.coding[0]?.code, i.expression?.[0]])).to.deep.equal(expected);
        for (const i of outcome.issue) {
          expect(i.severity).to.equal('error');
          expect(i.details.coding[0]?.system).to.equal('urn:hie:agent-error');
        }
        // Never echoes an identifier value.
        expect(text).not.to.match(/MRN-\d{4}/);
        // Nothing stored (no exchange record, no ledger entry) and nothing sent.
        expect(await recorded('myongji')).to.deep.equal(before);
        await new Promise((r) => setTimeout(r, 200));
        expect(await inboxIds()).to.deep.equal(inbox);
      }
      return outcome as Outcome;
    }

    it('delivers a bundle about the consented patient, named bare or as system|value, both under the consent granted for the bare id', async function () {
      for (const id of ['MRN-0001', `${FIXTURE_SYSTEM}|MRN-0001`]) {
        const res = await send(bundleFor('MRN-0001'), id);
        expect(res.status, await res.clone().text()).to.equal(202);
        const { id: exchange } = (await res.json()) as { id: string };
        await waitFor(async () => (await inboxIds()).includes(exchange), 30_000, 'delivery');
      }
    });

    it('refuses a bundle whose Patient is another patient than Hie-Patient-Id names (the consented one)', async function () {
      const outcome = await refused(bundleFor('MRN-9999'), [['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier']]);
      expect(outcome.issue[0]?.code).to.equal('business-rule');
    });

    it('reads a bare id as a value of patients.identifierSystem only: the same value under another system is another patient', async function () {
      const b = about('MRN-0001');
      (b.entry[0]!.resource['identifier'] as Array<{ system: string }>)[0]!.system = 'urn:oid:2.25.0.99';
      await refused(bytes(b), [['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier']]);
    });

    it('refuses a bundle about two patients', async function () {
      const b = about('MRN-0001');
      const second = about('MRN-0002').entry[0]!;
      b.entry.push({ fullUrl: 'urn:uuid:7d3f1c8e-0000-4000-8000-000000000099', resource: { ...second.resource, id: 'synthetic-patient-2' } });
      await refused(bytes(b), [['ERR_FHIR_PATIENT_MULTIPLE', 'Bundle.entry[5].resource.identifier']]);
      // A resource naming a second patient by identifier only is as much a second patient.
      const c = about('MRN-0001');
      c.entry[1]!.resource['subject'] = { type: 'Patient', identifier: { system: FIXTURE_SYSTEM, value: 'MRN-0002' } };
      await refused(bytes(c), [['ERR_FHIR_PATIENT_MULTIPLE', 'Bundle.entry[1].resource.subject.identifier']]);
    });

    it('refuses a bundle whose resources refer to a Patient absent from it, one issue per reference', async function () {
      const b = about('MRN-0001');
      b.entry[1]!.resource['subject'] = { reference: 'urn:uuid:7d3f1c8e-0000-4000-8000-0000000000ff' };
      b.entry[4]!.resource['patient'] = { reference: 'Patient/someone-else' };
      const outcome = await refused(bytes(b), [
        ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[1].resource.subject.reference'],
        ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[4].resource.patient.reference'],
      ]);
      expect(outcome.issue.map((i) => i.code)).to.deep.equal(['not-found', 'not-found']);
    });

    it('resolves Patient/<id> references to the Patient inside the bundle', async function () {
      const b = about('MRN-0001');
      b.entry[1]!.resource['subject'] = { reference: 'Patient/synthetic-patient-1' };
      const res = await send(bytes(b));
      expect(res.status, await res.clone().text()).to.equal(202);
    });

    it('refuses a bundle with no Patient at all, and reports every problem of a bundle at once', async function () {
      const none = about('MRN-0001');
      none.entry = none.entry.slice(1).map((e) => ({ ...e, resource: { ...e.resource, subject: undefined, patient: undefined } }));
      // Conditions and AllergyIntolerances without their (required) subject/patient are also invalid R4.
      await refused(bytes(none), [
        ['ERR_FHIR_INVALID', 'Bundle.entry[0].resource.subject'],
        ['ERR_FHIR_INVALID', 'Bundle.entry[2].resource.subject'],
        ['ERR_FHIR_INVALID', 'Bundle.entry[3].resource.patient'],
        ['ERR_FHIR_PATIENT_MISSING', 'Bundle.entry'],
      ]);
      const worse = about('MRN-9999');
      worse.entry[2]!.resource['subject'] = { reference: 'urn:uuid:7d3f1c8e-0000-4000-8000-0000000000ff' };
      await refused(bytes(worse), [
        ['ERR_FHIR_PATIENT_MISMATCH', 'Bundle.entry[0].resource.identifier'],
        ['ERR_FHIR_PATIENT_UNRESOLVED', 'Bundle.entry[2].resource.subject.reference'],
      ]);
    });

    it('answers other refusals as JSON as before, or as an OperationOutcome when the client accepts FHIR', async function () {
      const json = await send(bundleFor('MRN-0005'), 'MRN-0005');
      expect(json.status).to.equal(403);
      expect(((await json.json()) as { error: { code: string } }).error.code).to.equal('ERR_CONSENT_MISSING');
      const fhir = await send(bundleFor('MRN-0005'), 'MRN-0005', { accept: 'application/fhir+json' });
      expect(fhir.status).to.equal(403);
      expect(fhir.headers.get('content-type')).to.match(/^application\/fhir\+json/);
      const outcome = (await fhir.json()) as Outcome;
      expect(outcome.issue.map((i) => [i.code, i.details.coding[0]?.code])).to.deep.equal([['forbidden', 'ERR_CONSENT_MISSING']]);
    });
  });
});
