import { readFileSync } from 'node:fs';
import { buildProof, verifyProof } from '../../../ledger/index.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../../support/agents.ts';
import { bundleFor } from '../../support/fhir.ts';

/** A compliance officer's token at every agent of the console federation. */
export const COMPLIANCE_TOKEN = 'officer-token-0123456789abcdef0123456789ab';
/** An EHR token at every agent (role ehr). */
export const EHR_TOKEN = 'ehr-only-token-0123456789abcdef0123456789a';
/** The patient whose releases the officer is asked about (two to severance, one to mgh under a consent revoked afterwards). */
export const PATIENT_X = 'SYN-CONSOLE-X';
/** Another patient (one release to severance). */
export const PATIENT_Y = 'SYN-CONSOLE-Y';

/** What the federation holds once built. */
export interface ConsoleFederation {
  net: TestNetwork;
  /** Exchange ids by name. */
  exchanges: { x1: string; x2: string; x3: string; y1: string; inbound: string };
  consents: { xSeverance: string; xMgh: string; ySeverance: string };
  /** The send refused after the revocation: its answer's code. */
  refusedAfterRevocation: string;
}

async function send(net: TestNetwork, from: string, to: string, patient: string, consent: string): Promise<string> {
  const res = await net.api(from, '/v1/exchanges', {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', 'hie-recipient': to, 'hie-patient-id': patient, 'hie-consent-id': consent },
    body: bundleFor(patient),
  });
  const text = await res.text();
  if (res.status !== 202) throw new Error(`send ${from}->${to} answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { id: string }).id;
}

async function settled(net: TestNetwork, from: string, id: string): Promise<void> {
  await waitFor(
    async () => {
      const r = (await (await net.api(from, `/v1/exchanges/${id}`)).json()) as { status: string };
      return r.status === 'delivered' || r.status === 'failed';
    },
    30_000,
    `exchange ${id} settled`,
  );
}

/**
 * A relay and three agents (myongji, severance, mgh) on loopback: myongji
 * releases patient X twice to severance and once to mgh, then revokes the mgh
 * consent (a later send is refused), releases patient Y to severance, and
 * receives one exchange from severance; every feed replicated to myongji.
 */
export async function buildConsoleFederation(root: string, options: { agentLog?: string[] } = {}): Promise<ConsoleFederation> {
  const net = await startNetwork(root, ['myongji', 'severance', 'mgh'], {
    extraTokens: `officer@compliance:${COMPLIANCE_TOKEN},ehr@ehr:${EHR_TOKEN}`,
    ...(options.agentLog ? { agentLog: options.agentLog } : {}),
  });
  await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  const xSeverance = await grantConsent(net, 'myongji', 'severance', PATIENT_X);
  const xMgh = await grantConsent(net, 'myongji', 'mgh', PATIENT_X);
  const ySeverance = await grantConsent(net, 'myongji', 'severance', PATIENT_Y);
  const x1 = await send(net, 'myongji', 'severance', PATIENT_X, xSeverance);
  const x2 = await send(net, 'myongji', 'severance', PATIENT_X, xSeverance);
  const x3 = await send(net, 'myongji', 'mgh', PATIENT_X, xMgh);
  const y1 = await send(net, 'myongji', 'severance', PATIENT_Y, ySeverance);
  for (const id of [x1, x2, x3, y1]) await settled(net, 'myongji', id);
  const del = await net.api('myongji', `/v1/consents/${xMgh}`, { method: 'DELETE' });
  if (del.status !== 200) throw new Error(`revocation answered ${del.status}`);
  const after = await net.api('myongji', '/v1/exchanges', {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'mgh', 'hie-patient-id': PATIENT_X, 'hie-consent-id': xMgh },
    body: bundleFor(PATIENT_X),
  });
  const refusedAfterRevocation = ((await after.json()) as { error: { code: string } }).error.code;
  const back = await grantConsent(net, 'severance', 'myongji', 'SYN-CONSOLE-Z');
  const inbound = await send(net, 'severance', 'myongji', 'SYN-CONSOLE-Z', back);
  await settled(net, 'severance', inbound);
  // Checkpoints, witnesses and replication: every story provable from myongji's ledger under the default witness policy.
  // (A checkpoint exists before a witness cosigns it; a proof built in between verifies only as unwitnessed.)
  const myongji = net.agents['myongji']!;
  const caPem = readFileSync(net.fed.caPath, 'utf8');
  await waitFor(
    async () => {
      for (const id of [x1, x2, x3, y1]) {
        const story = await myongji.ledger.byExchange(id);
        if (!story.some((e) => e.entry.type === 'exchange.received')) return false;
        for (const e of story) if (!(await myongji.ledger.checkpointCovering(e.entry.feed, e.entry.seq))) return false;
        const built = await buildProof(myongji.ledger._store, { exchange: id });
        if (built.unproved.length > 0 || !(await verifyProof(built.file, { caPem })).ok) return false;
      }
      return true;
    },
    45_000,
    'replicated, checkpointed and witnessed stories',
  );
  return { net, exchanges: { x1, x2, x3, y1, inbound }, consents: { xSeverance, xMgh, ySeverance }, refusedAfterRevocation };
}
