import { describeTarget } from './support/harness.ts';
import { envelopeTarget } from './targets/envelope.ts';

describeTarget(envelopeTarget);
