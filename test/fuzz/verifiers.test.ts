import { describeTarget } from './support/harness.ts';
import { verifiersTarget } from './targets/verifiers.ts';

describeTarget(verifiersTarget);
