// One job: the agent messages of e-prescriptions, as they travel through the relay, and what their sealed payloads hold.
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../../certs/index.ts';
import { ID_PATTERN } from '../../ledger/index.ts';

/** Largest sealed payload (JWE) one prescription message carries: a MedicationRequest or MedicationDispense and a receipt fit with room. */
export const MAX_RX_JWE_CHARS = 48 * 1024;

/**
 * The relay sees only these: a call id and a JWE (to the other side's X25519
 * key, of a JWS by the sender's Ed25519 key). Access codes, secrets and the
 * resources travel inside.
 */
export const rxWireSchemas = [
  /** A pharmacy (or any member) asks the prescriber's agent for one Task operation. */
  z.strictObject({ t: z.literal('rx.call'), id: z.uuid(), jwe: z.string().min(1).max(MAX_RX_JWE_CHARS) }),
  /** The prescriber's agent answers one call (same id). */
  z.strictObject({ t: z.literal('rx.reply'), id: z.uuid(), jwe: z.string().min(1).max(MAX_RX_JWE_CHARS) }),
] as const;

const hospital = z.string().regex(HOSPITAL_ID_PATTERN);
const task = z.string().regex(ID_PATTERN);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const resource = z.record(z.string(), z.unknown());

/** The operations a pharmacy calls on the prescriber's Task (E-Rezept `$accept`, `$reject`, `$close`). */
export const RX_OPS = ['accept', 'reject', 'close'] as const;
/** One of {@link RX_OPS}. */
export type RxOp = (typeof RX_OPS)[number];

/** What a call says, sealed. */
export const callSchema = z.discriminatedUnion('op', [
  z.strictObject({ v: z.literal(1), id: z.uuid(), from: hospital, to: hospital, created: z.iso.datetime(), op: z.literal('accept'), task, accessCode: hex64 }),
  z.strictObject({ v: z.literal(1), id: z.uuid(), from: hospital, to: hospital, created: z.iso.datetime(), op: z.literal('reject'), task, secret: hex64 }),
  z.strictObject({
    v: z.literal(1),
    id: z.uuid(),
    from: hospital,
    to: hospital,
    created: z.iso.datetime(),
    op: z.literal('close'),
    task,
    secret: hex64,
    dispense: resource,
  }),
]);
/** A decoded call. */
export type RxCall = z.infer<typeof callSchema>;

/** What a reply says, sealed: the new state, or the refusal's code. */
export const replySchema = z.strictObject({
  v: z.literal(1),
  id: z.uuid(),
  from: hospital,
  to: hospital,
  ok: z.boolean(),
  status: z.enum(['ready', 'in-progress', 'completed', 'cancelled']).optional(),
  code: z
    .string()
    .regex(/^ERR_[A-Z0-9_]{1,60}$/)
    .optional(),
  message: z.string().max(300).optional(),
  /** accept: the secret that binds the pharmacy's later steps. */
  secret: hex64.optional(),
  /** accept: the signed MedicationRequest (compact JWS). */
  medicationRequest: z.string().max(40_000).optional(),
  /** close: the signed dispense receipt (compact JWS). */
  receipt: z.string().max(8_000).optional(),
});
/** A decoded reply. */
export type RxReply = z.infer<typeof replySchema>;
