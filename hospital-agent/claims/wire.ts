/**
 * The agent messages of claims (registered with the MessageDispatcher as a
 * module of their own): none carries PHI in the clear. A claim travels as a
 * JWE to the insurer's X25519 key of a JWS by the hospital's Ed25519 key; a
 * ClaimResponse as a JWE to the hospital of the insurer's signed JWS.
 */
import { z } from 'zod';
import { WIRE_JSON } from '../engine/wire.ts';

/** Largest sealed claim or response accepted in one message (the wire takes 64 KiB of JSON). */
export const MAX_CLAIM_MESSAGE_CHARS = 60_000;

/** The claim messages agents exchange. */
export const claimWireSchema = z.discriminatedUnion('t', [
  /** A hospital's claim for an insurer (sent again until a response arrives; the insurer files it once). */
  z.strictObject({ t: z.literal('claim.submit'), id: z.uuid(), jwe: z.string().min(1).max(MAX_CLAIM_MESSAGE_CHARS) }),
  /** An insurer's signed ClaimResponse to a claim, sealed to the hospital. */
  z.strictObject({ t: z.literal('claim.response'), id: z.uuid(), jwe: z.string().min(1).max(MAX_CLAIM_MESSAGE_CHARS) }),
  /** A hospital asks for the latest response to a claim again (after a lost message or a restart). */
  z.strictObject({ t: z.literal('claim.get'), id: z.uuid() }),
]);

/** A claim message. */
export type ClaimWireMessage = z.infer<typeof claimWireSchema>;
/** The `t` values claims own. */
export const CLAIM_WIRE_KINDS = ['claim.submit', 'claim.response', 'claim.get'] as const;

/** Encodes a claim message for the relay's MESSAGE channel. */
export function encodeClaimWire(message: ClaimWireMessage): Buffer {
  return Buffer.concat([Buffer.of(WIRE_JSON), Buffer.from(JSON.stringify(message), 'utf8')]);
}

/** The coverage eligibility messages agents exchange (sealed as claims are). */
export const eligibilityWireSchema = z.discriminatedUnion('t', [
  /** A hospital's CoverageEligibilityRequest for an insurer (sent again until a response arrives; the insurer files it once). */
  z.strictObject({ t: z.literal('eligibility.request'), id: z.uuid(), jwe: z.string().min(1).max(MAX_CLAIM_MESSAGE_CHARS) }),
  /** An insurer's signed CoverageEligibilityResponse, sealed to the hospital. */
  z.strictObject({ t: z.literal('eligibility.response'), id: z.uuid(), jwe: z.string().min(1).max(MAX_CLAIM_MESSAGE_CHARS) }),
  /** A hospital asks for the latest response to an eligibility request again. */
  z.strictObject({ t: z.literal('eligibility.get'), id: z.uuid() }),
]);

/** An eligibility message. */
export type EligibilityWireMessage = z.infer<typeof eligibilityWireSchema>;
/** The `t` values coverage eligibility owns. */
export const ELIGIBILITY_WIRE_KINDS = ['eligibility.request', 'eligibility.response', 'eligibility.get'] as const;

/** Encodes an eligibility message for the relay's MESSAGE channel. */
export function encodeEligibilityWire(message: EligibilityWireMessage): Buffer {
  return Buffer.concat([Buffer.of(WIRE_JSON), Buffer.from(JSON.stringify(message), 'utf8')]);
}
