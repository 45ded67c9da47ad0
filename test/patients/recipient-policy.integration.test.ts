import { randomBytes, randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { patientHash } from '../../hospital-agent/consent/patient.ts';
import { signedConsentFhir } from '../../hospital-agent/patients/index.ts';
import { exportPublic, generateDeviceKeys, jwkThumbprint, signConsent } from '../../patient-app/protocol.js';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

const PATIENT = 'SYN-PSIGN-2207';
const DAY_MS = 86_400_000;

interface ExchangeView {
  id: string;
  status: string;
  failure?: { code: string };
}

/**
 * The recipient's check of the patient's own signature on the consent a release is under (docs/patients.md), with real
 * agents, relay, LevelDB and replication: severance keeps the default policy, mgh sets `consent.requirePatientSigned`.
 */
describe('a recipient checks the patient-signed consent a release is under (consent.requirePatientSigned)', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let device: Awaited<ReturnType<typeof generateDeviceKeys>>;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance', 'mgh'], { agentStart: false });
    net.configs['mgh'] = { ...net.configs['mgh']!, consent: { requirePatientSigned: true } };
    for (const id of ['myongji', 'severance', 'mgh']) await net.startAgent(id);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    device = await generateDeviceKeys();
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  /**
   * A consent at myongji the patient signs on the device (the app's own protocol code) for `signedTerms`; `recordedTerms`
   * (default: the same) is what the hospital records with that signature, so anything else is an alteration after signing.
   */
  async function patientSigned(grantee: string, alter?: { purposes?: Array<'TREAT' | 'HRESCH'>; validUntil?: string }): Promise<string> {
    const id = randomUUID();
    const validFrom = new Date(Date.now() - 60_000).toISOString();
    const validUntil = new Date(Date.now() + DAY_MS).toISOString();
    const terms = { id, grantees: [grantee], purposes: ['TREAT' as const], scope: ['*'], validFrom, validUntil };
    const secret = Buffer.from(net.secrets['myongji']!, 'hex');
    const hash = patientHash(secret, PATIENT, net.configs['myongji']!.patients.identifierSystem);
    const signedAt = new Date().toISOString();
    const fhir = signedConsentFhir({ ...terms, patientHash: hash }, 'myongji', signedAt);
    const publicJwk = await exportPublic(device.sign.publicKey);
    const signature = await signConsent(device.sign.privateKey, fhir, await jwkThumbprint(publicJwk));
    await net.agents['myongji']!.consents.grant(
      { patientId: PATIENT, ...terms, purposes: alter?.purposes ?? terms.purposes, validUntil: alter?.validUntil ?? validUntil },
      { id, signature, signedAt, device: publicJwk },
    );
    return id;
  }

  /** Waits until `to` holds myongji's `consent.granted` for `consent` (replicated), so the check runs on it, not on its absence. */
  async function replicated(to: string, consent: string): Promise<void> {
    await waitFor(
      async () => (await net.agents[to]!.ledger.byConsent(consent)).some((e) => e.entry.type === 'consent.granted' && e.entry.feed === 'myongji'),
      30_000,
      `consent ${consent} at ${to}`,
    );
  }

  async function send(to: string, consent: string, body: Buffer, contentType: string): Promise<ExchangeView> {
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': contentType, 'hie-recipient': to, 'hie-patient-id': PATIENT, 'hie-consent-id': consent },
      body,
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    return waitFor(
      async () => {
        const x = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as ExchangeView;
        return x.status === 'delivered' || x.status === 'failed' ? x : undefined;
      },
      60_000,
      `exchange ${id} settled`,
    );
  }
  const inboxIds = async (at: string): Promise<string[]> =>
    ((await (await net.api(at, '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items.map((i) => i.exchangeId);

  // Both envelope kinds: a small FHIR Bundle travels in a batch envelope, a large binary in a single one.
  const kinds: Array<[string, () => Buffer, string]> = [
    ['a FHIR Bundle (batch envelope)', () => bundleFor(PATIENT), 'application/fhir+json'],
    ['a binary (single envelope)', () => randomBytes(300_000), 'application/octet-stream'],
  ];

  for (const [kind, body, type] of kinds) {
    it(`lets ${kind} through under a consent the patient signed, at both policies`, async function () {
      for (const to of ['severance', 'mgh']) {
        const consent = await patientSigned(to);
        await replicated(to, consent);
        const x = await send(to, consent, body(), type);
        expect(x.status, JSON.stringify(x)).to.equal('delivered');
        expect(await inboxIds(to)).to.include(x.id);
      }
    });

    it(`refuses ${kind} under a consent altered after the patient signed, with a failed receipt ERR_CONSENT_SIGNATURE`, async function () {
      for (const [to, alter] of [
        ['severance', { purposes: ['TREAT', 'HRESCH'] as Array<'TREAT' | 'HRESCH'> }],
        ['mgh', { validUntil: new Date(Date.now() + 30 * DAY_MS).toISOString() }],
      ] as const) {
        const consent = await patientSigned(to, alter);
        await replicated(to, consent);
        const x = await send(to, consent, body(), type);
        expect(x.status, JSON.stringify(x)).to.equal('failed');
        expect(x.failure?.code).to.equal('ERR_CONSENT_SIGNATURE');
        expect(await inboxIds(to)).not.to.include(x.id);
      }
    });

    it(`refuses ${kind} under a hospital-attested consent only where requirePatientSigned is set`, async function () {
      const attested = await grantConsent(net, 'myongji', 'mgh', PATIENT);
      await replicated('mgh', attested);
      const refused = await send('mgh', attested, body(), type);
      expect(refused.status, JSON.stringify(refused)).to.equal('failed');
      expect(refused.failure?.code).to.equal('ERR_CONSENT_NOT_PATIENT_SIGNED');
      expect(await inboxIds('mgh')).not.to.include(refused.id);

      const atSeverance = await grantConsent(net, 'myongji', 'severance', PATIENT);
      await replicated('severance', atSeverance);
      const passed = await send('severance', atSeverance, body(), type);
      expect(passed.status, JSON.stringify(passed)).to.equal('delivered');
    });
  }
});
