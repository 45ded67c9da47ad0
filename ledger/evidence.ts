import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { checkpointSchema, signedHeadSchema } from './heads.ts';
import { HEX64_PATTERN, TS_PATTERN } from './schema.ts';

/** Most entries kept in one piece of evidence (a fork proof chain). */
export const MAX_EVIDENCE_CHAIN = 1024;

/** Schema of stored evidence. */
export const evidenceSchema = z.strictObject({
  /** `equivocation`: two heads validly signed by the feed's key conflict; `checkpoint`: another agent signed a different hash for an entry we hold. */
  kind: z.enum(['equivocation', 'checkpoint']),
  feed: z.string().regex(HOSPITAL_ID_PATTERN),
  seq: z.number().int().min(0),
  detectedAt: z.string().regex(TS_PATTERN),
  peer: z.string().max(128).optional(),
  ours: z.strictObject({ hash: z.string().regex(HEX64_PATTERN), head: signedHeadSchema.optional() }),
  theirs: z.strictObject({
    head: signedHeadSchema.optional(),
    checkpoint: checkpointSchema.optional(),
    /** base64 entry bytes from seq+1 up to `theirs.head`, proving their hash at `seq`. */
    chain: z.array(z.string().max(32_768)).max(MAX_EVIDENCE_CHAIN).optional(),
  }),
});

/** Proof that a feed (or a checkpoint signer) showed two different histories. */
export type Evidence = z.infer<typeof evidenceSchema>;
