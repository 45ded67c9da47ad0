import { join } from 'node:path';
import { DIRECTORY_FILES, DirectoryStore, type MemberRole } from '../../certs/index.ts';
import { startNetwork, waitFor, type TestNetwork } from './agents.ts';

/** A MedicationRequest that conforms to FHIR R4 (amlodipine, one tablet daily). */
export function medicationRequest(patient = 'p-1'): Record<string, unknown> {
  return {
    resourceType: 'MedicationRequest',
    status: 'active',
    intent: 'order',
    medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '197361', display: 'Amlodipine 5 MG Oral Tablet' }] },
    subject: { reference: `Patient/${patient}` },
    authoredOn: '2026-12-01',
    dosageInstruction: [{ text: 'one tablet daily' }],
  };
}

/** A MedicationDispense of it (30 tablets handed over). */
export function medicationDispense(patient = 'p-1'): Record<string, unknown> {
  return {
    resourceType: 'MedicationDispense',
    status: 'completed',
    medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code: '197361', display: 'Amlodipine 5 MG Oral Tablet' }] },
    subject: { reference: `Patient/${patient}` },
    quantity: { value: 30, unit: 'tablet' },
    whenHandedOver: '2026-12-02T10:00:00Z',
  };
}

/**
 * A relay and agents whose roles the signed member directory names (e.g.
 * `{ myongji: 'hospital', pharm: 'pharmacy' }`): the directory is signed
 * before the agents start, the relay hands it to each, and this resolves
 * once every agent has it.
 */
export async function startRoleNetwork(root: string, members: Record<string, MemberRole>): Promise<TestNetwork> {
  const file = join(root, 'pki', DIRECTORY_FILES.dir, DIRECTORY_FILES.signed);
  const net = await startNetwork(root, Object.keys(members), { agentStart: false, relay: { directory: { file, pollMs: 100 } } });
  const store = DirectoryStore.init(net.fed.ca);
  for (const [id, role] of Object.entries(members)) store.add({ id, name: id, organisation: `${id} organisation`, role, status: 'active' });
  await store.sign();
  await net.relay.reloadDirectory();
  for (const id of Object.keys(members)) await net.startAgent(id);
  for (const id of Object.keys(members)) await waitFor(() => net.agents[id]!.federation.directory, 20_000, `the directory at ${id}`);
  return net;
}

/** JSON POST to an agent's API; the status and parsed body. */
export async function post(net: TestNetwork, id: string, path: string, body: unknown = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await net.api(id, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Issues a prescription at `prescriber`; its id and access code. */
export async function issuePrescription(net: TestNetwork, prescriber: string, patient = 'p-1'): Promise<{ id: string; accessCode: string; token: string }> {
  const r = await post(net, prescriber, '/v1/prescriptions', { patientId: patient, medicationRequest: medicationRequest(patient) });
  if (r.status !== 201) throw new Error(`issue answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body as { id: string; accessCode: string; token: string };
}
