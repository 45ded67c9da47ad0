import { sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, jcs } from '../certs/index.ts';
import { HEX64_PATTERN, TS_PATTERN } from './schema.ts';

/** Most heads one checkpoint may list. */
export const MAX_CHECKPOINT_HEADS = 1024;

const kid = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
// 64 bytes in 86 characters: the last one carries 4 spare bits that must be zero, so one signature has one spelling.
const sig = z.string().regex(/^[A-Za-z0-9_-]{85}[AQgw]$/);
const hospital = z.string().regex(HOSPITAL_ID_PATTERN);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const hex64 = z.string().regex(HEX64_PATTERN);
const ts = z.string().regex(TS_PATTERN);

/** Schema of a signed head as stored and sent. */
export const signedHeadSchema = z.strictObject({ feed: hospital, seq, hash: hex64, ts, kid, sig });
/** The author's Ed25519 statement "entry `seq` of `feed` has hash `hash`", made at `ts` with key `kid`. */
export type SignedHead = z.infer<typeof signedHeadSchema>;

/** Schema of a signed checkpoint. */
export const checkpointSchema = z.strictObject({
  agent: hospital,
  ts,
  heads: z.array(z.strictObject({ feed: hospital, seq, hash: hex64 })).max(MAX_CHECKPOINT_HEADS),
  kid,
  sig,
});
/** An agent's signed statement of the head of every feed it holds at `ts`. */
export type SignedCheckpoint = z.infer<typeof checkpointSchema>;

// Domain-separated so a head signature can never be replayed as a checkpoint (or anything else).
function headMessage(h: Omit<SignedHead, 'sig' | 'kid'>): Buffer {
  return jcs({ t: 'hie-ledger/head/1', feed: h.feed, seq: h.seq, hash: h.hash, ts: h.ts });
}

function checkpointMessage(c: Omit<SignedCheckpoint, 'sig'>): Buffer {
  return jcs({ t: 'hie-ledger/checkpoint/1', agent: c.agent, ts: c.ts, heads: c.heads, kid: c.kid });
}

/** Signs a head with the feed's current Ed25519 key. */
export function signHead(head: { feed: string; seq: number; hash: string; ts: string }, key: KeyObject, keyId: string): SignedHead {
  return { ...head, kid: keyId, sig: edSign(null, headMessage(head), key).toString('base64url') };
}

/** True when the head's signature verifies under `key`. */
export function verifyHeadSignature(head: SignedHead, key: KeyObject): boolean {
  return edVerify(null, headMessage(head), key, Buffer.from(head.sig, 'base64url'));
}

/** Signs a checkpoint with the agent's current Ed25519 key. */
export function signCheckpoint(cp: Omit<SignedCheckpoint, 'sig' | 'kid'>, key: KeyObject, keyId: string): SignedCheckpoint {
  const body = { ...cp, kid: keyId };
  return { ...body, sig: edSign(null, checkpointMessage(body), key).toString('base64url') };
}

/** True when the checkpoint's signature verifies under `key`. */
export function verifyCheckpointSignature(cp: SignedCheckpoint, key: KeyObject): boolean {
  return edVerify(null, checkpointMessage(cp), key, Buffer.from(cp.sig, 'base64url'));
}

/** The message an old key signs to endorse the bundle that replaces it. */
export function endorsementMessage(feed: string, bundleSig: string): Buffer {
  return jcs({ t: 'hie-ledger/rotate/1', feed, bundleSig });
}
