import { sign, verify } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs, type VerifiedKeyBundle } from '../../certs/index.ts';
import { CryptoError } from './errors.ts';
import { EXCHANGE_ID_PATTERN } from './format.ts';
import { leafHash, merkleTree, rootFromProof } from './merkle.ts';
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
/** Most receipts one signature may cover. */
export const MAX_RECEIPT_BATCH = 1024;

// Canonical only: the last character carries spare bits that must be zero, so one value has one spelling (4 spare bits
// after 64 bytes, 2 after 32: the last character is one of 4, or of 16).
const signature = z.string().regex(/^[A-Za-z0-9_-]{85}[AQgw]$/, 'must be a canonical base64url Ed25519 signature');
const canonicalHash = z.string().regex(/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/, 'must be a canonical base64url SHA-256');
/** Proof that a receipt is one of a batch signed together: its place in the Merkle tree of the batch's receipts, the path to the root, and the signature over the root. */
const batchProof = z
  .strictObject({
    size: z.number().int().min(2).max(MAX_RECEIPT_BATCH),
    index: z
      .number()
      .int()
      .min(0)
      .max(MAX_RECEIPT_BATCH - 1),
    path: z.array(canonicalHash).max(11),
    sig: signature,
  })
  .refine((b) => b.index < b.size, { message: 'index must be below size' });
const receiptSchema = bodySchema
  .extend({ sig: signature.optional(), batch: batchProof.optional() })
  .refine((r) => (r.sig === undefined) !== (r.batch === undefined), { message: 'a receipt carries either its own signature or a batch proof' })
  .refine((r) => r.disposition !== 'delivered' || (r.headerHash !== null && r.contentHash !== null), {
    message: 'a delivered receipt names the header and content hashes',
  });

/** Outcome a receipt reports: delivered, or failed with an error code (e.g. `ERR_ENVELOPE_TAMPERED`). */
export type ReceiptDisposition = z.infer<typeof disposition>;
/**
 * A receipt signed by the recipient: Ed25519 over the JCS form of every
 * field but `sig` (alone), or (`batch`) one of several receipts made at once,
 * whose signature covers the Merkle root of all of them (RFC 9162 hashing)
 * and whose path proves this receipt is under that root.
 */
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

/** The signature a receipt carries: its own, or its batch's. */
export function receiptSignature(receipt: Receipt): string {
  return (receipt.sig ?? receipt.batch?.sig) as string;
}

/** What a batch signature covers: the recipient, its key, the number of receipts and their Merkle root. */
function batchStatement(recipient: string, kid: string, size: number, root: Buffer): Buffer {
  return jcs({ type: 'hie.receipt.batch', v: RECEIPT_VERSION, recipient, kid, size, root: root.toString('base64url') });
}

function receiptBody(input: ReceiptInput, recipient: SenderKeys): z.infer<typeof bodySchema> {
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
  if (body.disposition === 'delivered' && (body.headerHash === null || body.contentHash === null))
    throw new TypeError('a delivered receipt needs headerHash and contentHash');
  return body;
}

/** Signs a receipt as `recipient` (the agent that received the envelope). */
export function createReceipt(input: ReceiptInput, recipient: SenderKeys): Receipt {
  const body = receiptBody(input, recipient);
  return { ...body, sig: sign(null, jcs(body), recipient.signingKey).toString('base64url') };
}

/**
 * Signs several receipts with one signature (e.g. those of a batch
 * envelope): each gets the proof that it is under the signed Merkle root, so
 * it verifies alone, like a receipt with its own signature. One input gets
 * an ordinary receipt.
 */
export function createReceipts(inputs: readonly ReceiptInput[], recipient: SenderKeys): Receipt[] {
  if (inputs.length > MAX_RECEIPT_BATCH) throw new TypeError(`at most ${MAX_RECEIPT_BATCH} receipts are signed together`);
  if (inputs.length <= 1) return inputs.map((i) => createReceipt(i, recipient));
  const bodies = inputs.map((i) => receiptBody(i, recipient));
  const leaves = bodies.map((b) => leafHash(jcs(b)));
  const { root, proofs } = merkleTree(leaves);
  const sig = sign(null, batchStatement(recipient.agent, recipient.signingKid, leaves.length, root), recipient.signingKey).toString('base64url');
  return bodies.map((body, index) => ({
    ...body,
    batch: { size: leaves.length, index, path: (proofs[index] as Buffer[]).map((h) => h.toString('base64url')), sig },
  }));
}

/**
 * Batch signatures already verified, by everything they depend on: each
 * receipt of a batch proves its way to the same root, and the signature over
 * it need be checked once.
 */
const verifiedBatches = new Set<string>();
const VERIFIED_BATCHES_KEPT = 1024;

/** The 'delivered' receipt for an opened envelope. */
export function deliveredReceipt(opened: OpenedEnvelope, recipient: SenderKeys, receivedAt?: Date): Receipt {
  return createReceipt(
    {
      exchangeId: opened.exchangeId,
      sender: opened.from,
      headerHash: opened.headerHash,
      contentHash: opened.contentSha256,
      disposition: 'delivered',
      receivedAt,
    },
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
    throw new CryptoError('ERR_RECEIPT_UNTRUSTED', `no trusted key bundle for '${receipt.recipient}' key ${receipt.kid}: ${(err as Error).message}`, {
      cause: err,
      context,
    });
  }
  if (!signer || signer.agent !== receipt.recipient || signer.signingKid !== receipt.kid) {
    throw new CryptoError('ERR_RECEIPT_UNTRUSTED', `no trusted key bundle for '${receipt.recipient}' key ${receipt.kid}`, { context });
  }
  const { sig, batch, ...body } = receipt;
  const bad = (): CryptoError =>
    new CryptoError('ERR_RECEIPT_BAD_SIGNATURE', `receipt for exchange ${receipt.exchangeId} is not signed by '${receipt.recipient}'`, { context });
  if (sig !== undefined) {
    if (!verify(null, jcs(body), signer.signingKey, Buffer.from(sig, 'base64url'))) throw bad();
  } else if (batch) {
    const root = rootFromProof(
      batch.index,
      batch.size,
      leafHash(jcs(body)),
      batch.path.map((h) => Buffer.from(h, 'base64url')),
    );
    if (!root) throw bad();
    // Everything the signed statement is made of (it is canonical JSON of these), and the signature: the
    // statement itself is built only for a batch not verified yet.
    const key = `${receipt.recipient}\u0000${receipt.kid}\u0000${batch.size}\u0000${root.toString('base64url')}\u0000${batch.sig}`;
    if (!verifiedBatches.has(key)) {
      const statement = batchStatement(receipt.recipient, receipt.kid, batch.size, root);
      if (!verify(null, statement, signer.signingKey, Buffer.from(batch.sig, 'base64url'))) throw bad();
      if (verifiedBatches.size >= VERIFIED_BATCHES_KEPT) verifiedBatches.clear();
      verifiedBatches.add(key);
    }
  }
  for (const [field, want] of Object.entries(options.expect ?? {})) {
    if (want !== undefined && receipt[field as keyof ReceiptExpectation] !== want) {
      throw new CryptoError('ERR_RECEIPT_MISMATCH', `receipt ${field} is not the expected one`, { context });
    }
  }
  return { receipt, signer };
}
