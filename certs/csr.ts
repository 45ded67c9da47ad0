// One job: PKCS#10 certificate signing requests for agent enrolment (build on the hospital's machine, check at the CA).
import { createPublicKey, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.ts';
import { DEFAULT_LEAF_KEY_BITS } from './keys.ts';
import { AGENT_URI_PREFIX, agentUri, assertHospitalId } from './names.ts';
import type { SubjectFields } from './x509.ts';

const { pki, md } = forge;

/** Smallest RSA modulus a CSR may carry. */
export const MIN_CSR_KEY_BITS = DEFAULT_LEAF_KEY_BITS;
/** Longest organisation name in a subject. */
export const MAX_ORG_LENGTH = 64;
/** Largest CSR file accepted, in bytes (a 4096-bit RSA CSR is about 1.7 KB). */
export const MAX_CSR_BYTES = 16 * 1024;

/** What a checked CSR asks for. */
export interface AgentCsr {
  /** Hospital id (CN, and the SAN URI when present). */
  id: string;
  /** Organisation (O), when requested. */
  organization?: string;
  /** The requester's public key. */
  publicKey: KeyObject;
  /** The CSR as given. */
  pem: string;
}

/** Checks an organisation name as the federation's subjects allow it; throws ERR_PKI_INVALID_ARGUMENT. */
export function assertOrganization(org: string): string {
  if (org.trim().length === 0 || org.length > MAX_ORG_LENGTH || [...org].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) {
    throw new PkiError('ERR_PKI_INVALID_ARGUMENT', `--org must be 1-${MAX_ORG_LENGTH} printable characters`);
  }
  return org;
}

/**
 * Builds a PKCS#10 request for an agent certificate: subject O (optional) and
 * CN = id, the SAN URI urn:hie:agent:<id> as a requested extension, signed
 * with the agent's own key (SHA-256 with RSA). The key never leaves the caller.
 */
export function createAgentCsr(subject: SubjectFields, privateKey: KeyObject): string {
  const id = assertHospitalId(subject.commonName);
  if (subject.organization !== undefined) assertOrganization(subject.organization);
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  const forgeKey = pki.privateKeyFromPem(keyPem);
  const csr = pki.createCertificationRequest();
  csr.publicKey = pki.setRsaPublicKey(forgeKey.n, forgeKey.e);
  const attrs: forge.pki.CertificateField[] = [];
  if (subject.organization) attrs.push({ shortName: 'O', value: subject.organization });
  attrs.push({ shortName: 'CN', value: id });
  csr.setSubject(attrs);
  csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: agentUri(id) }] }] }] as never[]);
  csr.sign(forgeKey, md.sha256.create());
  return pki.certificationRequestToPem(csr);
}

function invalid(message: string, cause?: unknown): PkiError {
  return new PkiError('ERR_PKI_CSR_INVALID', message, cause === undefined ? undefined : { cause });
}

/**
 * Parses and checks an agent CSR: a single PEM request whose self-signature
 * verifies, with an RSA key of at least {@link MIN_CSR_KEY_BITS} bits, a
 * subject of exactly CN = hospital id and optionally O, and no requested
 * extension other than a SAN that is exactly urn:hie:agent:<CN>. Throws
 * ERR_PKI_CSR_INVALID saying which rule failed.
 */
export function parseAgentCsr(pem: string): AgentCsr {
  if (pem.length > MAX_CSR_BYTES) throw invalid(`CSR is larger than ${MAX_CSR_BYTES} bytes`);
  const blocks = pem.match(/-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----/g) ?? [];
  if (blocks.length !== 1) throw invalid(`expected one PEM CERTIFICATE REQUEST, found ${blocks.length}`);
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = pki.certificationRequestFromPem(pem);
  } catch (err) {
    throw invalid('not a PKCS#10 RSA certificate request', err);
  }
  let verified: boolean;
  try {
    verified = csr.verify();
  } catch (err) {
    throw invalid('the CSR signature cannot be checked', err);
  }
  if (!verified) throw invalid('the CSR signature does not verify: it was not signed by the key it carries');
  const rsa = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!rsa || typeof rsa.n?.bitLength !== 'function') throw invalid('the CSR key is not an RSA key');
  if (rsa.n.bitLength() < MIN_CSR_KEY_BITS) throw invalid(`the CSR key has ${rsa.n.bitLength()} bits; at least ${MIN_CSR_KEY_BITS} are required`);

  let id: string | undefined;
  let organization: string | undefined;
  for (const a of csr.subject.attributes) {
    if (a.shortName === 'CN' && id === undefined) id = String(a.value);
    else if (a.shortName === 'O' && organization === undefined) organization = String(a.value);
    else throw invalid(`the CSR subject may hold only CN (the hospital id) and O, once each; found ${a.shortName ?? a.type ?? 'an unknown attribute'}`);
  }
  if (id === undefined) throw invalid('the CSR subject has no CN (the hospital id)');
  try {
    assertHospitalId(id);
  } catch (err) {
    throw invalid(`the CSR's CN is not a hospital id: ${(err as Error).message}`, err);
  }
  if (organization !== undefined) {
    try {
      assertOrganization(organization);
    } catch (err) {
      throw invalid(`the CSR's O is not acceptable: ${(err as Error).message}`, err);
    }
  }
  const requested = (
    csr.getAttribute({ name: 'extensionRequest' }) as { extensions?: Array<{ name?: string; altNames?: Array<{ type: number; value: string }> }> } | null
  )?.extensions;
  for (const ext of requested ?? []) {
    if (ext.name !== 'subjectAltName') throw invalid(`the CSR requests extension ${ext.name ?? 'unknown'}; the CA sets every extension itself`);
    const names = ext.altNames ?? [];
    if (names.length !== 1 || names[0]?.type !== 6 || names[0].value !== `${AGENT_URI_PREFIX}${id}`) {
      throw invalid(`the CSR's subjectAltName must be exactly URI:${AGENT_URI_PREFIX}${id}`);
    }
  }
  const publicKey = createPublicKey(pki.publicKeyToPem(rsa));
  return { id, ...(organization !== undefined ? { organization } : {}), publicKey, pem };
}
