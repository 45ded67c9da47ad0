/** Every fuzz target, in the order `npm run fuzz` runs them. */
import type { FuzzTarget } from '../support/harness.ts';
import { frameTarget } from './frame.ts';

export const FUZZ_TARGETS: ReadonlyArray<FuzzTarget<unknown>> = [frameTarget as FuzzTarget<unknown>];
