// One job: issue patient channel credentials, signed with the agent's federation certificate key (see relay/protocol/patient-credential.ts).
import { randomBytes } from 'node:crypto';
import { CompactSign } from 'jose';
import type { Identity } from '../../certs/index.ts';
import {
  CHANNEL_BYTES_LENGTH,
  MAX_ENROL_CREDENTIAL_SECONDS,
  MAX_SESSION_CREDENTIAL_SECONDS,
  PATIENT_CREDENTIAL_AUDIENCE,
  PATIENT_CREDENTIAL_TYPE,
  type PatientCredentialClaims,
} from '../../relay/protocol/patient-credential.ts';
import type { EcPublicJwk } from '../../patient-app/protocol.js';

/** Lifetime of an enrolment credential (as long as its one-time code). */
export const DEFAULT_ENROL_CREDENTIAL_SECONDS = 15 * 60;
/** Lifetime of a session credential; every session hands the device a fresh one. */
export const DEFAULT_SESSION_CREDENTIAL_SECONDS = 7 * 24 * 3600;

/** A fresh random channel id (16 bytes, base64url): a pseudonym the relay routes by, linked to nobody. */
export function newChannel(): string {
  return randomBytes(CHANNEL_BYTES_LENGTH).toString('base64url');
}

/** What one credential says. */
export interface CredentialSpec {
  use: 'enrol' | 'session';
  channel: string;
  /** The device's public signing key: required for a session credential. */
  device?: EcPublicJwk;
  lifetimeSeconds?: number;
  now?: Date;
  /** False: name the hospital in `kid` instead of carrying the certificate (x5c), for a credential small enough for a QR code; the relay then checks it with the certificate of the hospital's hub. Default true. */
  embedCertificate?: boolean;
}

/** Signs a patient channel credential with the agent certificate key (RS256, certificate in x5c). Names no patient. */
export async function issuePatientCredential(identity: Identity, spec: CredentialSpec): Promise<string> {
  if (!identity.hospitalId) throw new TypeError('patient credentials are signed with a hospital agent certificate');
  if (spec.use === 'session' && !spec.device) throw new TypeError('a session credential names the device key');
  const max = spec.use === 'enrol' ? MAX_ENROL_CREDENTIAL_SECONDS : MAX_SESSION_CREDENTIAL_SECONDS;
  const lifetime = spec.lifetimeSeconds ?? (spec.use === 'enrol' ? DEFAULT_ENROL_CREDENTIAL_SECONDS : DEFAULT_SESSION_CREDENTIAL_SECONDS);
  if (!Number.isSafeInteger(lifetime) || lifetime <= 0 || lifetime > max) throw new TypeError(`a ${spec.use} credential lives 1-${max} s`);
  const iat = Math.floor((spec.now ?? new Date()).getTime() / 1000);
  const claims: PatientCredentialClaims = {
    iss: identity.hospitalId,
    aud: PATIENT_CREDENTIAL_AUDIENCE,
    ch: spec.channel,
    use: spec.use,
    ...(spec.device ? { cnf: { jwk: { kty: 'EC', crv: 'P-256', x: spec.device.x, y: spec.device.y } } } : {}),
    iat,
    exp: iat + lifetime,
  };
  return new CompactSign(Buffer.from(JSON.stringify(claims)))
    .setProtectedHeader({
      alg: 'RS256',
      typ: PATIENT_CREDENTIAL_TYPE,
      ...(spec.embedCertificate === false ? { kid: identity.hospitalId } : { x5c: [identity.certificate.raw.toString('base64')] }),
    })
    .sign(identity.privateKey);
}
