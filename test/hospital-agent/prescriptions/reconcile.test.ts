import { expect } from 'chai';
import { join } from 'node:path';
import { generateAgentKeys } from '../../../certs/index.ts';
import { withKids, type LocalKeys } from '../../../hospital-agent/crypto/keystore.ts';
import { PrescriptionService, type PrescriptionServiceOptions } from '../../../hospital-agent/prescriptions/service.ts';
import { PrescriptionStore } from '../../../hospital-agent/prescriptions/store.ts';
import { StateDb } from '../../../hospital-agent/store/state-db.ts';
import { medicationRequest } from '../../support/pharmacy.ts';
import { tempDir } from '../../support/tmp.ts';

type Ledger = PrescriptionServiceOptions['ledger'];
type Entry = { type: string; body: Record<string, unknown> };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A gate: `wait()` blocks while it is shut; `reached` settles when something first waits at it. */
class Gate {
  private shut: Promise<void> | undefined;
  private open: () => void = () => undefined;
  private hit: () => void = () => undefined;
  reached: Promise<void> = Promise.resolve();
  close(): void {
    this.shut = new Promise((r) => (this.open = r));
    this.reached = new Promise((r) => (this.hit = r));
  }
  release(): void {
    this.shut = undefined;
    this.open();
  }
  async wait(): Promise<void> {
    this.hit();
    if (this.shut) await this.shut;
  }
}

/** A ledger kept in memory whose reads and appends can each be held at a gate, to put one step of a transition between two of the reconcile's. */
function heldLedger(): { ledger: Ledger; entries: Entry[]; reads: Gate; appends: Gate } {
  const entries: Entry[] = [];
  const reads = new Gate();
  const appends = new Gate();
  return {
    entries,
    reads,
    appends,
    ledger: {
      async append(input: Entry): Promise<{ hash: string }> {
        await appends.wait();
        entries.push(input);
        return { hash: String(entries.length) };
      },
      async byType(type: string): Promise<never[]> {
        const snapshot = entries.filter((e) => e.type === type);
        await reads.wait();
        return snapshot.map((e) => ({ entry: e })) as never[];
      },
    } as unknown as Ledger,
  };
}

describe('prescriptions: the start-up reconcile against transitions', function () {
  let tmp: ReturnType<typeof tempDir>;
  let db: StateDb;
  let keys: LocalKeys;
  before(async function () {
    keys = await withKids(generateAgentKeys());
  });
  beforeEach(async function () {
    tmp = tempDir();
    db = new StateDb(join(tmp.dir, 'state'));
    await db.open();
  });
  afterEach(async function () {
    await db.close();
    tmp.cleanup();
  });

  const service = (ledger: Ledger): PrescriptionService =>
    new PrescriptionService({
      self: 'myongji',
      secret: Buffer.alloc(32, 1),
      store: new PrescriptionStore(db),
      peers: {} as PrescriptionServiceOptions['peers'],
      keys: () => keys,
      send: () => undefined,
      ledger,
      directory: () => undefined,
      logger: { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as PrescriptionServiceOptions['logger'],
    });

  it('appends no entry twice for a prescription issued while it reads the ledger', async function () {
    const l = heldLedger();
    const rx = service(l.ledger);
    l.reads.close();
    const reconciling = rx.reconcile();
    await l.reads.reached; // the reconcile has read the ledger (no prescription in it yet) and waits
    const issuing = rx.issue({ patientId: 'p-1', medicationRequest: medicationRequest() });
    // The issue waits for the reconcile; without that, it is stored and logged before the reconcile reads the state.
    await Promise.race([issuing, sleep(200)]);
    l.reads.release();
    expect(await reconciling).to.equal(0);
    const { task } = await issuing;
    expect(l.entries.filter((e) => e.body['prescription'] === task.id)).to.have.length(1);
  });

  it('waits for a transition under way (stored, not yet logged) before it reads, and appends no entry twice', async function () {
    const l = heldLedger();
    const rx = service(l.ledger);
    l.appends.close();
    const issuing = rx.issue({ patientId: 'p-1', medicationRequest: medicationRequest() });
    await l.appends.reached; // its state is written, its entry waits
    const reconciling = rx.reconcile();
    // Without the wait, the reconcile now reads a ledger without the entry and a state with the transition.
    await sleep(200);
    l.appends.release();
    const [{ task }, appended] = await Promise.all([issuing, reconciling]);
    expect(appended).to.equal(0);
    expect(l.entries.filter((e) => e.body['prescription'] === task.id)).to.have.length(1);
  });

  it('still appends the entry of a transition a crash kept from the ledger', async function () {
    const l = heldLedger();
    const rx = service(l.ledger);
    const { task } = await rx.issue({ patientId: 'p-1', medicationRequest: medicationRequest() });
    await new PrescriptionStore(db).update(task.id, (t) => ({
      next: {
        ...t,
        status: 'cancelled',
        cancelledBy: 'prescriber',
        transitions: 2,
        last: { type: 'prescription.cancelled', body: { prescription: t.id, by: 'prescriber' } },
      },
      result: undefined,
    }));
    expect(await rx.reconcile()).to.equal(1);
    expect(await rx.reconcile()).to.equal(0);
    expect(l.entries.map((e) => e.type)).to.deep.equal(['prescription.issued', 'prescription.cancelled']);
  });
});
