import { sign, verify } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs, type VerifiedKeyBundle } from '../../certs/index.ts';
import { CryptoError } from './errors.ts';
import { EXCHANGE_ID_PATTERN } from './format.ts';
import type { OpenedEnvelope, SenderLookup } from './open.ts';
import type { SenderKeys } from './seal.ts';

/** Version of the receipt format. */
export const RECEIPT_VERSION = 1 as const;

const B64URL = /^[A-Za-z0-9_-]+$/;
const hash = z.string().regex(B64URL).length(43);
const disposition = z.union([z.literal('delivered'), z.strictObject({ failed: z.string().regex(/^ERR_[A-Z0-9_]{1,60}$/) })]);

const bodySchema = z.strictObject({
  type: z.literal('hie.receipt'),
  v: z.literal(RECEIPT_VERSION),
  exchangeId: z.string().regex(EXCHANGE_ID_PATTERN),
  sender: z.string().regex(HOSPITAL_ID_PATTERN),
  recipient: z.string().regex(HOSPITAL_ID_PATTERN),
  kid: hash,
  headerHash: hash.nullable(),
  contentHash: hash.nullable(),
  disposition,
  receivedAt: z.iso.datetime(),
});
const receiptSchema = bodySchema
  // Canonical only: the 86th character carries 4 spare bits, so 16 spellings would otherwise verify as one signature.
  .extend({ sig: z.string().regex(B64URL).length(86).refine((s) => Buffer.from(s, 'base64url').toString('base64url') === s, 'must be canonical base64url') })
  .refine((r) => r.disposition !== 'delivered' || (r.headerHash !== null && r.contentHash !== null), {
    message: 'a delivered receipt names the header and content hashes',
  });

/** Outcome a receipt reports: delivered, or failed with an error code (e.g. `ERR_ENVELOPE_TAMPERED`). */
export type ReceiptDisposition = z.infer<typeof disposition>;
/** A receipt signed by the recipient (Ed25519 over the JCS form of every field but `sig`). */
export type Receipt = z.infer<typeof receiptSchema>;

/** What a receipt states, before signing. */
export interface ReceiptInput {
  exchangeId: string;
  sender: string;
  /** SHA-256 of the envelope header, base64url; null when a failure came before the header was read. */
  headerHash: string | null;
  /** SHA-256 of the plaintext, base64url; null for failures. */
  contentHash: string | null;
  disposition: ReceiptDisposition;
  receivedAt?: Date | undefined;
}

/** A receipt whose signature verified against the recipient's bundle. */
export interface VerifiedReceipt {
  receipt: Receipt;
  signer: VerifiedKeyBundle;
}

/** Signs a receipt as `recipient` (the agent that received the envelope). */
export function createReceipt(input: ReceiptInput, recipient: SenderKeys): Receipt {
  const body = {
    type: 'hie.receipt' as const,
    v: RECEIPT_VERSION,
    exchangeId: input.exchangeId,
    sender: input.sender,
    recipient: recipient.agent,
    kid: recipient.signingKid,
    headerHash: input.headerHash,
    contentHash: input.contentHash,
    disposition: input.disposition,
    receivedAt: (input.receivedAt ?? new Date()).toISOString(),
  };
  const checked = bodySchema.safeParse(body);
  if (!checked.success) throw new TypeError(`receipt field ${checked.error.issues[0]?.path.join('.')} is invalid: ${checked.error.issues[0]?.message}`);
  if (body.disposition === 'delivered' && (body.headerHash === null || body.contentHash === null)) throw new TypeError('a delivered receipt needs headerHash and contentHash');
  return { ...body, sig: sign(null, jcs(body), recipient.signingKey).toString('base64url') };
}

/** The 'delivered' receipt for an opened envelope. */
export function deliveredReceipt(opened: OpenedEnvelope, recipient: SenderKeys, receivedAt?: Date): Receipt {
  return createReceipt(
    { exchangeId: opened.exchangeId, sender: opened.from, headerHash: opened.headerHash, contentHash: opened.contentSha256, disposition: 'delivered', receivedAt },
    recipient,
  );
}

/** What {@link verifyReceipt} should also check the receipt is about. */
export interface ReceiptExpectation {
  exchangeId?: string;
  sender?: string;
  recipient?: string;
  headerHash?: string;
  contentHash?: string;
}

/**
 * Checks a receipt: schema, a trusted bundle of the recipient for `kid` at
 * the receipt's time (so receipts signed before a key rotation still verify),
 * the signature, and the expected fields. Throws CryptoError `ERR_RECEIPT_*`.
 */
export async function verifyReceipt(input: unknown, options: { resolveSigner: SenderLookup; expect?: ReceiptExpectation }): Promise<VerifiedReceipt> {
  const parsed = receiptSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CryptoError('ERR_RECEIPT_MALFORMED', `receipt is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const receipt = parsed.data;
  const context = { exchangeId: receipt.exchangeId, from: receipt.sender };
  let signer: VerifiedKeyBundle | undefined;
  try {
    signer = await options.resolveSigner(receipt.recipient, receipt.kid, new Date(receipt.receivedAt));
  } catch (err) {
    throw new CryptoError('ERR_RECEIPT_UNTRUSTED', `no trusted key bundle for '${receipt.recipient}' key ${receipt.kid}: ${(err as Error).message}`, { cause: err, context });
  }
  if (!signer || signer.agent !== receipt.recipient || signer.signingKid !== receipt.kid) {
    throw new CryptoError('ERR_RECEIPT_UNTRUSTED', `no trusted key bundle for '${receipt.recipient}' key ${receipt.kid}`, { context });
  }
  const { sig, ...body } = receipt;
  if (!verify(null, jcs(body), signer.signingKey, Buffer.from(sig, 'base64url'))) {
    throw new CryptoError('ERR_RECEIPT_BAD_SIGNATURE', `receipt for exchange ${receipt.exchangeId} is not signed by '${receipt.recipient}'`, { context });
  }
  for (const [field, want] of Object.entries(options.expect ?? {})) {
    if (want !== undefined && receipt[field as keyof ReceiptExpectation] !== want) {
      throw new CryptoError('ERR_RECEIPT_MISMATCH', `receipt ${field} is not the expected one`, { context });
    }
  }
  return { receipt, signer };
}
