/**
 * Signed ClaimResponses: a compact JWS (RFC 7515, EdDSA by the insurer
 * agent's CA-bound Ed25519 key, `kid` its key id, `typ`
 * `hie-claimresponse+json`) over the JCS bytes (RFC 8785) of the FHIR
 * ClaimResponse, as receipts are signed over their canonical JSON. Anyone
 * holding the insurer's key bundle (every ledger replica does: it is in the
 * insurer's feed) verifies one: the hospital on arrival, an auditor later.
 * Between agents it travels inside a JWE to the hospital's X25519 key, since
 * the ClaimResponse names the patient.
 */
import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { jcs } from '../../certs/index.ts';
import { MAX_SEALED_MESSAGE_CHARS, openJwe, sealJwe, signCompactEdDsa, type SenderLookup } from '../crypto/index.ts';
import { MEMBER_SYSTEM } from './model.ts';

/** `typ` of a signed ClaimResponse. */
export const CLAIM_RESPONSE_JWS_TYPE = 'hie-claimresponse+json';

/** Why a signed ClaimResponse was not accepted. */
export class ClaimSignatureError extends Error {
  override readonly name = 'ClaimSignatureError';
}

/** A ClaimResponse whose signature verified, with who signed it. */
export interface VerifiedClaimResponse {
  response: Record<string, unknown>;
  insurer: string;
  kid: string;
}

/** Signs `response` as `insurer`'s agent. */
export async function signClaimResponse(
  response: Record<string, unknown>,
  signer: { key: KeyObject; kid: string },
  typ: string = CLAIM_RESPONSE_JWS_TYPE,
): Promise<string> {
  return signCompactEdDsa(jcs(response), { kid: signer.kid, typ }, signer.key);
}

/**
 * Verifies a signed ClaimResponse: the key `kid` names is `insurer`'s (a key
 * bundle signed by its CA-issued certificate, valid when the response was
 * created), the signature holds, the payload is canonical JSON and names
 * `insurer` as its insurer.
 */
export function verifyClaimResponse(jws: string, insurer: string, resolveSigner: SenderLookup): Promise<VerifiedClaimResponse> {
  return verifyInsurerSigned(jws, insurer, resolveSigner, CLAIM_RESPONSE_JWS_TYPE, 'ClaimResponse');
}

/** Verifies a JWS of `typ` over a FHIR resource of `resourceType` that an insurer signed (see {@link verifyClaimResponse}). */
export async function verifyInsurerSigned(
  jws: string,
  insurer: string,
  resolveSigner: SenderLookup,
  typ: string,
  resourceType: string,
): Promise<VerifiedClaimResponse> {
  let header;
  try {
    header = decodeProtectedHeader(jws);
  } catch {
    throw new ClaimSignatureError('not a compact JWS');
  }
  if (header.alg !== 'EdDSA' || header.typ !== typ || typeof header.kid !== 'string')
    throw new ClaimSignatureError(`not a signed ${resourceType} (alg, typ or kid)`);
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new ClaimSignatureError('the payload is not JSON');
  }
  const created = typeof payload['created'] === 'string' ? new Date(payload['created']) : new Date(NaN);
  if (Number.isNaN(created.getTime())) throw new ClaimSignatureError(`the ${resourceType} has no created time`);
  let signer;
  try {
    signer = await resolveSigner(insurer, header.kid, created);
  } catch {
    signer = undefined;
  }
  if (!signer || signer.agent !== insurer) throw new ClaimSignatureError(`no trusted key of '${insurer}' named ${header.kid}`);
  let bytes: Uint8Array;
  try {
    bytes = (await compactVerify(jws, signer.signingKey)).payload;
  } catch {
    throw new ClaimSignatureError(`not signed by '${insurer}'`);
  }
  if (!Buffer.from(bytes).equals(jcs(payload))) throw new ClaimSignatureError('the payload is not canonical JSON');
  const named = (payload['insurer'] as { identifier?: { system?: unknown; value?: unknown } } | undefined)?.identifier;
  if (payload['resourceType'] !== resourceType || named?.system !== MEMBER_SYSTEM || named.value !== insurer)
    throw new ClaimSignatureError(`the ${resourceType} does not name its signer as insurer`);
  return { response: payload, insurer, kid: header.kid };
}

/** Encrypts a signed ClaimResponse to the hospital's X25519 key (what travels through the relay). */
export async function sealForHospital(jws: string, recipient: { key: KeyObject; kid: string }): Promise<string> {
  return sealJwe(Buffer.from(jws, 'utf8'), recipient.key, { kid: recipient.kid });
}

/** Decrypts what {@link sealForHospital} made; returns the JWS inside. */
export async function openFromInsurer(jwe: string, key: KeyObject): Promise<string> {
  try {
    return openJwe(jwe, key, { parties: false, maxChars: MAX_SEALED_MESSAGE_CHARS }).plaintext.toString('utf8');
  } catch (err) {
    throw new ClaimSignatureError(`the response does not open: ${(err as Error).message}`);
  }
}
