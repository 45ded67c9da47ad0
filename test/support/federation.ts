import { join } from 'node:path';
import { CertificateAuthority } from '../../certs/index.ts';

/** Paths of one party's identity files. */
export interface PartyFiles {
  cert: string;
  key: string;
  ca: string;
}

/** A throwaway federation: a CA, a relay certificate for loopback, and agent certificates. */
export interface TestFederation {
  pkiDir: string;
  ca: CertificateAuthority;
  caPath: string;
  crlPath: string;
  relay: PartyFiles;
  agents: Record<string, PartyFiles>;
  /** Issues one more agent certificate (e.g. for a test that needs a fresh id). */
  addAgent(id: string, options?: { days?: number; notBefore?: Date }): PartyFiles;
}

/**
 * Creates a CA under `root/pki` (a smaller CA key than production to keep tests
 * fast), a relay certificate for localhost/127.0.0.1/::1, and one agent per id.
 */
export function makeFederation(root: string, agentIds: string[] = ['alpha', 'bravo']): TestFederation {
  const pkiDir = join(root, 'pki');
  const ca = CertificateAuthority.init(pkiDir, { name: 'Test Federation CA', keyBits: 2048 });
  const relayOut = join(root, 'relay');
  const r = ca.issueRelay({ hosts: ['localhost', '127.0.0.1', '::1'], outDir: relayOut });
  const agentsDir = join(root, 'agents');
  const addAgent = (id: string, options: { days?: number; notBefore?: Date } = {}): PartyFiles => {
    const a = ca.issueAgent({ id, outDir: agentsDir, renew: true, ...options });
    return { cert: a.certPath, key: a.keyPath, ca: a.caPath };
  };
  const agents: Record<string, PartyFiles> = {};
  for (const id of agentIds) agents[id] = addAgent(id);
  return {
    pkiDir,
    ca,
    caPath: ca.caCertPath,
    crlPath: ca.crlPath,
    relay: { cert: r.certPath, key: r.keyPath, ca: r.caPath },
    agents,
    addAgent,
  };
}
