// One job: the agent's own patient-channel state on disk (LevelDB): one-time codes by hash, enrolled devices, consent requests,
// the copy of each patient's records the EHR pushed.
import { Level } from 'level';
import type { EcPublicJwk } from '../../patient-app/protocol.js';
import type { Purpose } from '../consent/model.ts';

/** A one-time enrolment code, stored under the SHA-256 of the code only. */
export interface CodeRecord {
  patientId: string;
  /** The enrolment channel the code's credential opens: the code works on that channel only. */
  channel: string;
  expiresAt: string;
}

/** An enrolled device: its public signing key and the channel its session credential names. */
export interface DeviceRecord {
  patientId: string;
  sign: EcPublicJwk;
  channel: string;
  enrolledAt: string;
}

/** A consent request the hospital made, shown in the patient's app until answered. */
export interface ConsentRequestRecord {
  id: string;
  patientId: string;
  grantees: string[];
  purposes: Purpose[];
  scope: string[];
  categories?: string[];
  labels?: string[];
  validFrom: string;
  validUntil: string;
  createdAt: string;
  status: 'pending' | 'approved' | 'refused';
}

/** The latest copy of a patient's own records the EHR pushed (`POST /v1/patients/records`), kept for their device. */
export interface RecordsCopy {
  patientId: string;
  /** The Bundle's bytes as the EHR sent them (validated FHIR R4, about this patient only). */
  bundle: string;
  /** SHA-256 (hex) of those bytes: what the ledger's `patient.records` entries name. */
  sha256: string;
  entries: number;
  receivedAt: string;
}

/** The patient-channel tables of one agent (held on premises: patient ids never leave for the ledger or the relay). */
export class PatientStore {
  private readonly db: Level<string, unknown>;
  readonly codes;
  readonly devices;
  readonly channels;
  readonly requests;
  /** Records copies by the patient's keyed hash. */
  readonly records;

  constructor(path: string) {
    this.db = new Level<string, unknown>(path, { valueEncoding: 'json' });
    this.codes = this.db.sublevel<string, CodeRecord>('codes', { valueEncoding: 'json' });
    this.devices = this.db.sublevel<string, DeviceRecord>('devices', { valueEncoding: 'json' });
    this.channels = this.db.sublevel<string, string>('channels', { valueEncoding: 'json' });
    this.requests = this.db.sublevel<string, ConsentRequestRecord>('requests', { valueEncoding: 'json' });
    this.records = this.db.sublevel<string, RecordsCopy>('records', { valueEncoding: 'json' });
  }

  async open(): Promise<void> {
    await this.db.open();
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  /** Every value of a table. */
  static async values<V>(table: { values(): AsyncIterable<V> }): Promise<V[]> {
    const out: V[] = [];
    for await (const v of table.values()) out.push(v);
    return out;
  }
}
