import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DirectoryStore, type MemberRole } from '../../certs/index.ts';
import { startNetwork, waitFor, type TestNetwork } from './agents.ts';

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../../scripts/fixtures/${name}.json`, import.meta.url)), 'utf8')) as Record<string, unknown>;

/** The Claim of scripts/fixtures (HL7's R4 example Claim 100150 with a total), under identifier `value` with total `total` USD. */
export function claimFor(value: string, total = 135.57): Record<string, unknown> {
  const claim = fixture('claim');
  claim['identifier'] = [{ system: 'http://happyvalley.com/claim', value }];
  claim['total'] = { value: total, currency: 'USD' };
  return claim;
}

/** The Coverage of scripts/fixtures (HL7's R4 example Coverage 9876B1). */
export function coverage(): Record<string, unknown> {
  return fixture('coverage');
}

/**
 * A relay and agents with a signed member directory in force at every agent
 * (`roles`: id -> role; agents not named are hospitals), published through the relay.
 */
export async function startClaimsNetwork(
  root: string,
  roles: Record<string, MemberRole>,
  options: { replicationMode?: 'private' | 'full'; extraTokens?: string } = {},
): Promise<{ net: TestNetwork; directory: DirectoryStore }> {
  const ids = Object.keys(roles);
  const net = await startNetwork(root, ids, { relay: { directory: { file: join(root, 'pki', 'directory', 'directory.jws'), pollMs: 100 } }, ...options });
  await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 30_000, 'agents connected');
  const directory = DirectoryStore.init(net.fed.ca);
  for (const id of ids) directory.add({ id, name: `${id} member`, organisation: `${id} org`, role: roles[id]!, status: 'active' });
  await directory.sign();
  await waitFor(() => Object.values(net.agents).every((a) => a.federation.directory?.directory.sequence === 1), 30_000, 'directory at every agent');
  return { net, directory };
}

/** Grants a consent at `hospital` for `patientId` to `insurer` for `purposes` (valid for a day); returns its id. */
export async function grantPaymentConsent(net: TestNetwork, hospital: string, insurer: string, patientId: string, purposes = ['HPAYMT']): Promise<string> {
  const res = await net.api(hospital, '/v1/consents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId, grantee: insurer, purposes, scope: ['Claim', 'Coverage'], validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`consent grant at ${hospital} answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { id: string }).id;
}

/** Submits a claim through the API. */
export function submitClaim(net: TestNetwork, hospital: string, body: Record<string, unknown>): Promise<Response> {
  return net.api(hospital, '/v1/claims', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}
