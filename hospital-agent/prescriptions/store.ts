// One job: the prescriptions this agent owns (as prescriber) and those it holds (as pharmacy), in the agent's state db.
import { KeyedMutex } from '../store/mutex.ts';
import type { StateDb } from '../store/state-db.ts';
import type { PrescriptionTask } from './task.ts';

/** A prescription a pharmacy accepted, as the pharmacy's agent keeps it (with the secret its later steps need). */
export interface HeldPrescription {
  prescriber: string;
  id: string;
  status: 'in-progress' | 'completed' | 'rejected';
  /** The secret the prescriber handed over on accept (kept here only: it binds reject and close). */
  secret: string;
  /** The signed MedicationRequest as the prescriber sent it (compact JWS, verified on arrival). */
  medicationRequest: string;
  /** completed: the prescriber's signed dispense receipt (compact JWS, verified on arrival). */
  receipt?: string;
  acceptedAt: string;
  updatedAt: string;
}

/**
 * Both tables. `update` is the owner's atomic check-and-set: one read, one
 * decision and one synced write at a time per Task, so two pharmacies racing
 * for the same Task see one after the other, and the winner's state is on
 * disk before either is answered. The lock is the Task's own: calls on
 * different Tasks are decided at once, and their synced writes share an
 * fsync (the state db's group commit).
 */
export class PrescriptionStore {
  private readonly owned;
  private readonly held;
  private readonly locks = new KeyedMutex();

  constructor(private readonly db: StateDb) {
    this.owned = db.table<PrescriptionTask>('rx-tasks', 'json');
    this.held = db.table<HeldPrescription>('rx-held', 'json');
  }

  /** Stores a new Task. */
  async create(task: PrescriptionTask): Promise<void> {
    await this.locks.run(task.id, () => this.db.writeSynced([{ type: 'put', key: task.id, value: task, sublevel: this.owned }]));
  }

  /**
   * Reads Task `id`, lets `decide` return the next record (or a result with no change), and writes it before resolving.
   * Undefined when there is no such Task.
   */
  update<R>(id: string, decide: (task: PrescriptionTask) => { next?: PrescriptionTask; result: R }): Promise<R | undefined> {
    return this.locks.run(id, async () => {
      const task = await this.owned.get(id);
      if (!task) return undefined;
      const { next, result } = decide(task);
      if (next) await this.db.writeSynced([{ type: 'put', key: id, value: next, sublevel: this.owned }]);
      return result;
    });
  }

  /** One owned Task. */
  get(id: string): Promise<PrescriptionTask | undefined> {
    return this.owned.get(id);
  }

  /** Owned Tasks, newest first (optionally of one status). */
  async list(status?: string): Promise<PrescriptionTask[]> {
    const out: PrescriptionTask[] = [];
    for await (const t of this.owned.values()) if (!status || t.status === status) out.push(t);
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Stores what the pharmacy holds of a prescription. */
  async putHeld(h: HeldPrescription): Promise<void> {
    await this.db.writeSynced([{ type: 'put', key: `${h.prescriber}/${h.id}`, value: h, sublevel: this.held }]);
  }

  /** One held prescription. */
  getHeld(prescriber: string, id: string): Promise<HeldPrescription | undefined> {
    return this.held.get(`${prescriber}/${id}`);
  }

  /** Held prescriptions, newest first. */
  async listHeld(): Promise<HeldPrescription[]> {
    const out: HeldPrescription[] = [];
    for await (const h of this.held.values()) out.push(h);
    return out.sort((a, b) => b.acceptedAt.localeCompare(a.acceptedAt));
  }
}
