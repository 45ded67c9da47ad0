import { describeTarget } from './support/harness.ts';
import { apiTarget } from './targets/api.ts';

describeTarget(apiTarget);
