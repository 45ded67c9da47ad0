import { describeTarget } from './support/harness.ts';
import { ledgerTarget } from './targets/ledger.ts';

describeTarget(ledgerTarget);
