import { describeTarget } from './support/harness.ts';
import { parsersTarget } from './targets/parsers.ts';

describeTarget(parsersTarget);
