// One job: what every console view reads (the ledger, its index, the agent's identity) and the request it answers.
import type { Ledger, ReplicatorStatus, Trust, VerifyResult } from '../../ledger/index.ts';
import type { ClaimStore } from '../claims/index.ts';
import type { PrescriptionStore } from '../prescriptions/index.ts';
import type { AccessLog } from './access-log.ts';
import type { PatientHasher } from './audit-query.ts';
import type { LedgerIndex } from './ledger-index.ts';
import type { Session } from './sessions.ts';

/** The agent's parts the console reads (it changes none of them). */
export interface ConsoleDeps {
  self: string;
  ledger: Ledger;
  index: LedgerIndex;
  hashPatient: PatientHasher;
  accessLog: AccessLog;
  trust: () => Trust;
  /** The agent's own certificate's end of validity. */
  certificateValidTo?: (() => string | undefined) | undefined;
  /** The CRL in force: its number and next update. */
  crl?: (() => { crlNumber?: string | bigint | number | undefined; nextUpdate?: Date | undefined } | undefined) | undefined;
  replication?: (() => ReplicatorStatus) | undefined;
  /** The agent's filed claims: the Claim identifiers of the Claims view and a claim's page (the rows come from the ledger). */
  claims?: ConsoleClaims | undefined;
  /** The agent's prescription Tasks (a prescription's page) and the prescriptions it holds as a pharmacy (the Prescriptions view). */
  prescriptions?: ConsolePrescriptions | undefined;
  /** Grace (s) verification gives an exchange to be answered. */
  graceSeconds: number;
  now?: () => Date;
}

/** What the console reads of the claim store (it writes nothing). */
export type ConsoleClaims = Pick<ClaimStore, 'list' | 'get'>;

/** What the console reads of the prescription store (it writes nothing). */
export type ConsolePrescriptions = Pick<PrescriptionStore, 'list' | 'get' | 'listHeld'>;

/** The last verification the console ran (in memory: shown on the overview and integrity views). */
export interface LastVerification {
  at: string;
  by: string;
  result: VerifyResult;
}

/** What a view renderer gets. */
export interface ViewContext {
  deps: ConsoleDeps;
  session: Session;
  /** The query string's values (the console's own URLs carry patients only as `ph`, a keyed hash). */
  query: Record<string, string>;
  last: LastVerification | undefined;
  now: Date;
}
