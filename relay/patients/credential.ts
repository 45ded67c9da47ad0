// One job: check a patient channel credential and its proof of possession, statelessly (CA, CRL, signature, times).
import { X509Certificate } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { HOSPITAL_ID_PATTERN, hospitalIdFromCertificate, normalizeSerial, withinCertificateValidity } from '../../certs/index.ts';
import { verifyPop } from '../../patient-app/protocol.js';
import {
  CREDENTIAL_SKEW_SECONDS,
  MAX_ENROL_CREDENTIAL_SECONDS,
  MAX_PATIENT_CREDENTIAL_BYTES,
  MAX_SESSION_CREDENTIAL_SECONDS,
  PATIENT_CREDENTIAL_TYPE,
  POP_SKEW_SECONDS,
  patientCredentialClaims,
} from '../protocol/patient-credential.ts';
import { PatientRefusal } from './errors.ts';

/** What a credential is checked against. */
export interface CredentialTrust {
  /** The federation CA certificate(s), PEM. */
  caPem: string;
  /** True when a certificate serial (lowercase hex) is on the CRL in force. */
  isRevoked(serial: string): boolean;
  /** The verified certificate of a hospital's patient hub on this node (for a credential that names its issuer in `kid` instead of carrying x5c). */
  hubCertificate?(hospital: string): X509Certificate | undefined;
  now?: Date;
}

/** An admitted patient connection: the hospital it routes to and its pseudonymous channel. Nothing else is learnt. */
export interface AdmittedPatient {
  hospital: string;
  channel: string;
  use: 'enrol' | 'session';
}

/**
 * The certificate a credential is checked with: the one it carries in x5c, or (a compact credential, as in an enrolment QR
 * code) the verified certificate of the patient hub of the hospital its `kid` names, on this node.
 */
function certificateOf(header: ReturnType<typeof decodeProtectedHeader>, trust: CredentialTrust): X509Certificate {
  const x5c = header.x5c;
  if (x5c === undefined && typeof header.kid === 'string' && HOSPITAL_ID_PATTERN.test(header.kid)) {
    const cert = trust.hubCertificate?.(header.kid);
    if (!cert) throw new PatientRefusal('ERR_PATIENT_HOSPITAL_OFFLINE', 'the hospital is not connected to this relay node');
    return cert;
  }
  if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', 'the credential must carry its signing certificate in x5c, or name its hospital in kid');
  }
  try {
    return new X509Certificate(Buffer.from(x5c[0], 'base64'));
  } catch (err) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', 'x5c[0] of the credential is not a certificate', { cause: err });
  }
}

function cas(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

/**
 * Checks `credential` (and, for a session credential, `pop`): the certificate in x5c is a current, unrevoked agent
 * certificate issued by the federation CA and names the `iss` hospital; the JWS verifies with it; the times hold and the
 * lifetime is within bounds; the proof of possession is signed by the device key the credential names, for its channel,
 * within POP_SKEW_SECONDS. Throws PatientRefusal with the code that says why.
 */
export async function verifyPatientCredential(credential: unknown, pop: unknown, trust: CredentialTrust): Promise<AdmittedPatient> {
  if (typeof credential !== 'string' || credential.length === 0 || credential.length > MAX_PATIENT_CREDENTIAL_BYTES) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', `a patient connection needs a credential of 1-${MAX_PATIENT_CREDENTIAL_BYTES} bytes`);
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(credential);
  } catch (err) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', 'the credential is not a compact JWS', { cause: err });
  }
  if (header.alg !== 'RS256' || header.typ !== PATIENT_CREDENTIAL_TYPE || header.crit !== undefined) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', `the credential must be an RS256 JWS of typ ${PATIENT_CREDENTIAL_TYPE}`);
  }
  const cert = certificateOf(header, trust);
  const now = trust.now ?? new Date();
  const serial = normalizeSerial(cert.serialNumber);
  const untrusted = (why: string): PatientRefusal => new PatientRefusal('ERR_PATIENT_CREDENTIAL_UNTRUSTED', `credential certificate ${serial} ${why}`);
  if (!cas(trust.caPem).some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) throw untrusted('was not issued by the federation CA');
  if (!withinCertificateValidity(now.getTime(), new Date(cert.validFrom), new Date(cert.validTo))) throw untrusted('is not valid now');
  if (trust.isRevoked(serial)) throw untrusted('is revoked');
  let hospital: string;
  try {
    hospital = hospitalIdFromCertificate(cert);
  } catch {
    throw untrusted('is not a hospital agent certificate');
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(credential, cert.publicKey, { algorithms: ['RS256'] }));
  } catch (err) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_SIGNATURE', 'the credential does not verify with its certificate', { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (err) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', 'the credential claims are not JSON', { cause: err });
  }
  const result = patientCredentialClaims.safeParse(parsed);
  if (!result.success) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', `the credential claims are malformed at ${result.error.issues[0]?.path.join('.') ?? ''}`);
  }
  const claims = result.data;
  if (claims.iss !== hospital) throw untrusted('names another hospital than the credential issuer');
  const t = Math.floor(now.getTime() / 1000);
  const max = claims.use === 'enrol' ? MAX_ENROL_CREDENTIAL_SECONDS : MAX_SESSION_CREDENTIAL_SECONDS;
  if (claims.exp - claims.iat > max) throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_EXPIRED', `the credential claims a lifetime over ${max} s`);
  if (t >= claims.exp + CREDENTIAL_SKEW_SECONDS || t < claims.iat - CREDENTIAL_SKEW_SECONDS) {
    throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_EXPIRED', 'the credential is expired or not yet valid');
  }
  if (claims.use === 'session') {
    if (!claims.cnf) throw new PatientRefusal('ERR_PATIENT_CREDENTIAL_MALFORMED', 'a session credential names its device key (cnf.jwk)');
    if (typeof pop !== 'string' || pop.length === 0) throw new PatientRefusal('ERR_PATIENT_POP', 'a session credential needs a proof of possession');
    let iat: number;
    try {
      iat = await verifyPop(pop, claims.cnf.jwk, claims.ch);
    } catch (err) {
      throw new PatientRefusal('ERR_PATIENT_POP', 'the proof of possession does not verify', { cause: err });
    }
    if (Math.abs(iat - t) > POP_SKEW_SECONDS) throw new PatientRefusal('ERR_PATIENT_POP', `the proof of possession is older than ${POP_SKEW_SECONDS} s`);
  }
  return { hospital, channel: claims.ch, use: claims.use };
}
