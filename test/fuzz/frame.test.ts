import { describeTarget } from './support/harness.ts';
import { frameTarget } from './targets/frame.ts';

describeTarget(frameTarget);
