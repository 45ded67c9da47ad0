import { describeTarget } from './support/harness.ts';
import { relayTarget } from './targets/relay.ts';

describeTarget(relayTarget);
