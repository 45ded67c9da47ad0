import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { dicomFile } from '../support/dicom.ts';
import { bundleFor, FIXTURE_SYSTEM } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

type Outcome = {
  resourceType: string;
  issue: Array<{ severity: string; code: string; details: { coding: Array<{ system: string; code: string }>; text: string }; expression?: string[] }>;
};
type Bundle = { entry: Array<{ fullUrl?: string; resource: Record<string, unknown> }> };

describe('what the agent checks in the content before it leaves (R4 validation, DICOM Patient ID)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let consent: string;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    net.configs['myongji'] = {
      ...net.configs['myongji']!,
      patients: { ...net.configs['myongji']!.patients, identifierSystem: FIXTURE_SYSTEM, dicomIssuer: 'MYONGJI' },
    };
    await net.startAgent('myongji');
    await net.startAgent('severance');
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    consent = await grantConsent(net, 'myongji', 'severance', 'MRN-0001');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const about = (value: string): Bundle => JSON.parse(bundleFor(value).toString('utf8')) as Bundle;
  const bytes = (b: Bundle): Buffer => Buffer.from(JSON.stringify(b));
  const inboxIds = async (): Promise<string[]> =>
    ((await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items.map((i) => i.exchangeId);

  /** myongji's feed head and how many exchanges it holds. */
  async function recorded(): Promise<string> {
    const status = (await (await net.api('myongji', '/v1/ledger/status')).json()) as { feed: string; feeds: Array<{ feed: string }> };
    const exchanges = ((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;
    return JSON.stringify({ head: status.feeds.find((f) => f.feed === status.feed), exchanges });
  }

  /** A ledger that stopped moving (earlier deliveries log receipts and charges a little later). */
  function quiet(): Promise<string> {
    return waitFor(
      async () => {
        const a = await recorded();
        await new Promise((r) => setTimeout(r, 300));
        return a === (await recorded()) ? a : undefined;
      },
      20_000,
      'a quiet ledger',
    );
  }

  /** Posts `body` from myongji to severance for MRN-0001 (streamed without a length when `stream`: the outbox path). */
  function send(body: Buffer, contentType: string, o: { stream?: boolean; accept?: string; patientId?: string } = {}): Promise<Response> {
    return net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': contentType,
        'hie-recipient': 'severance',
        'hie-patient-id': o.patientId ?? 'MRN-0001',
        'hie-consent-id': consent,
        ...(o.accept ? { accept: o.accept } : {}),
      },
      ...(o.stream ? { body: Readable.toWeb(Readable.from([body])) as ReadableStream, duplex: 'half' } : { body }),
    } as RequestInit);
  }

  /** Sends `body` inline and streamed; each is refused 422 with `code`, and nothing is recorded or delivered. */
  async function refused(body: Buffer, contentType: string, code: string, o: { accept?: string } = {}): Promise<Response[]> {
    const answers: Response[] = [];
    for (const stream of [false, true]) {
      const before = await quiet();
      const inbox = await inboxIds();
      const res = await send(body, contentType, { stream, ...o });
      const text = await res.clone().text();
      expect(res.status, text).to.equal(422);
      expect(text).to.contain(code);
      expect(text).not.to.match(/MRN-\d{4}/);
      expect(await recorded()).to.equal(before);
      await new Promise((r) => setTimeout(r, 300));
      expect(await inboxIds()).to.deep.equal(inbox);
      answers.push(res);
    }
    return answers;
  }

  async function outcomeOf(res: Response): Promise<Outcome> {
    expect(res.headers.get('content-type')).to.match(/^application\/fhir\+json/);
    const outcome = (await res.json()) as Outcome;
    expect(outcome.resourceType).to.equal('OperationOutcome');
    for (const i of outcome.issue) expect(i.details.coding[0]?.system).to.equal('urn:hie:agent-error');
    return outcome;
  }

  describe('FHIR R4', function () {
    it('refuses an Observation missing status: 422 OperationOutcome at its FHIRPath, nothing stored, logged or sent', async function () {
      const b = about('MRN-0001');
      delete b.entry[2]!.resource['status'];
      for (const res of await refused(bytes(b), 'application/fhir+json', 'ERR_FHIR_INVALID')) {
        const outcome = await outcomeOf(res);
        expect(outcome.issue.map((i) => [i.details.coding[0]?.code, i.code, i.expression?.[0]])).to.deep.equal([
          ['ERR_FHIR_INVALID', 'structure', 'Bundle.entry[2].resource.status'],
        ]);
      }
    });

    it('refuses a reference to a urn:uuid that is no entry of the Bundle', async function () {
      const b = about('MRN-0001');
      b.entry[3]!.resource['informationSource'] = { reference: 'urn:uuid:7d3f1c8e-0000-4000-8000-0000000000ee' };
      for (const res of await refused(bytes(b), 'application/fhir+json', 'ERR_FHIR_REFERENCE_UNRESOLVED')) {
        const outcome = await outcomeOf(res);
        expect(outcome.issue.map((i) => [i.details.coding[0]?.code, i.code, i.expression?.[0]])).to.deep.equal([
          ['ERR_FHIR_REFERENCE_UNRESOLVED', 'not-found', 'Bundle.entry[3].resource.informationSource.reference'],
        ]);
      }
    });

    it('reports every problem of a Bundle, one issue each', async function () {
      const b = about('MRN-0001');
      delete b.entry[2]!.resource['status'];
      b.entry[0]!.resource['birthDate'] = '1980-02-30';
      b.entry[4]!.resource['criticality'] = 'very';
      const [res] = await refused(bytes(b), 'application/fhir+json', 'ERR_FHIR_INVALID');
      const outcome = await outcomeOf(res!);
      expect(outcome.issue.map((i) => i.expression?.[0]).sort()).to.deep.equal(
        ['Bundle.entry[0].resource.birthDate', 'Bundle.entry[2].resource.status', 'Bundle.entry[4].resource.criticality'].sort(),
      );
    });

    it('still delivers a valid Bundle', async function () {
      const res = await send(bundleFor('MRN-0001'), 'application/fhir+json');
      expect(res.status, await res.clone().text()).to.equal(202);
      const { id } = (await res.json()) as { id: string };
      await waitFor(async () => (await inboxIds()).includes(id), 30_000, 'delivery');
    });
  });

  describe('DICOM', function () {
    it('refuses a DICOM file whose Patient ID is another patient: 422, nothing stored or sent, inline and streamed', async function () {
      const [json] = await refused(dicomFile({ patientId: 'MRN-9999' }), 'application/dicom', 'ERR_DICOM_PATIENT_MISMATCH');
      expect(((await json!.json()) as { error: { code: string } }).error.code).to.equal('ERR_DICOM_PATIENT_MISMATCH');
      // The consented value under another issuer is another patient.
      await refused(dicomFile({ patientId: 'MRN-0001', issuer: 'OTHER-HOSPITAL' }), 'application/dicom', 'ERR_DICOM_PATIENT_MISMATCH');
      // As an OperationOutcome when the client accepts FHIR.
      const [fhir] = await refused(dicomFile({ patientId: 'MRN-9999' }), 'application/dicom', 'ERR_DICOM_PATIENT_MISMATCH', {
        accept: 'application/fhir+json',
      });
      expect((await outcomeOf(fhir!)).issue.map((i) => [i.code, i.details.coding[0]?.code])).to.deep.equal([['business-rule', 'ERR_DICOM_PATIENT_MISMATCH']]);
    });

    it('refuses a large study about another patient after reading its header only, nothing stored or sent', async function () {
      await refused(dicomFile({ patientId: 'MRN-9999', pixelBytes: 3 * 1024 * 1024 }), 'application/dicom', 'ERR_DICOM_PATIENT_MISMATCH');
    });

    it('refuses a body that is not DICOM Part 10 sent as application/dicom', async function () {
      await refused(Buffer.from('not a dicom file at all, but long enough to hold a preamble '.repeat(4)), 'application/dicom', 'ERR_DICOM_INVALID');
    });

    it('delivers DICOM files about the consented patient, small and large, byte for byte', async function () {
      for (const file of [
        dicomFile({ patientId: 'MRN-0001' }),
        dicomFile({ patientId: 'MRN-0001', issuer: 'MYONGJI', pixelBytes: 3 * 1024 * 1024 }),
        // An OID issuer is urn:oid:<oid>: here the hospital's own identifier system.
        dicomFile({ patientId: 'MRN-0001', issuer: FIXTURE_SYSTEM.slice('urn:oid:'.length) }),
      ]) {
        const res = await send(file, 'application/dicom');
        expect(res.status, await res.clone().text()).to.equal(202);
        const { id } = (await res.json()) as { id: string };
        await waitFor(async () => (await inboxIds()).includes(id), 30_000, 'delivery');
        const content = Buffer.from(await (await net.api('severance', `/v1/inbox/${id}/content`)).arrayBuffer());
        expect(createHash('sha256').update(content).digest('hex')).to.equal(createHash('sha256').update(file).digest('hex'));
      }
    });
  });
});
