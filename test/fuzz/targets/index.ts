/** Every fuzz target, in the order `npm run fuzz` runs them. */
import type { FuzzTarget } from '../support/harness.ts';
import { apiTarget } from './api.ts';
import { envelopeTarget } from './envelope.ts';
import { frameTarget } from './frame.ts';
import { ledgerTarget } from './ledger.ts';
import { parsersTarget } from './parsers.ts';
import { relayTarget } from './relay.ts';
import { verifiersTarget } from './verifiers.ts';

export const FUZZ_TARGETS: ReadonlyArray<FuzzTarget<unknown>> = [
  frameTarget,
  relayTarget,
  envelopeTarget,
  ledgerTarget,
  verifiersTarget,
  parsersTarget,
  apiTarget,
] as Array<FuzzTarget<never>> as ReadonlyArray<FuzzTarget<unknown>>;
