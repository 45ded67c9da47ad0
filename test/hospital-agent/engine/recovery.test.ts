import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ledger } from '../../../ledger/index.ts';
import { ExchangeEngine, type RelayPort } from '../../../hospital-agent/engine/index.ts';
import { PeerKeyUnavailableError, type PeerDirectory } from '../../../hospital-agent/engine/peers.ts';
import { ConsentService } from '../../../hospital-agent/services/consents.ts';
import type { ExchangeStore } from '../../../hospital-agent/store/exchanges.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { Outbox } from '../../../hospital-agent/store/outbox.ts';
import { RelayError } from '../../../relay/protocol/index.ts';
import { dbPath, makeWorld } from '../../ledger/support.ts';
import { tempDir } from '../../support/tmp.ts';
import { waitFor } from '../../support/agents.ts';
import { releasedExchange } from './support.ts';

/**
 * The store keeps `sending` in memory only: an exchange whose `exchange.sent`
 * reached the ledger just before a crash comes back `queued` with no record of
 * that entry. The engine must find it in the ledger instead of logging the
 * release twice.
 */
describe('ExchangeEngine after a restart', function () {
  let tmp: ReturnType<typeof tempDir>;
  let ledger: Ledger;
  let store: ExchangeStore;
  let state: StateStore;

  beforeEach(async function () {
    tmp = tempDir();
    const world = await makeWorld(tmp.dir, ['alpha', 'bravo']);
    ledger = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
  });
  afterEach(async function () {
    await state.close();
    await ledger.close();
    tmp.cleanup();
  });

  it('does not log exchange.sent twice for an exchange released just before a crash', async function () {
    const secret = randomBytes(32);
    const consents = new ConsentService(ledger, 'alpha', secret);
    // The release reached the ledger; the crash came before the store wrote it down.
    const { record, logged } = await releasedExchange(store, ledger, consents, 'SYN-RECOVER');
    // The recipient's key is not to be had: the attempt goes back to the queue (a durable step).
    const peers = {
      encryptionBundle: async (agent: string) => Promise.reject(new PeerKeyUnavailableError(agent)),
      signerLookup: () => async () => undefined,
    } as unknown as PeerDirectory;
    const relay: RelayPort = {
      connected: true,
      openTransfer: () => {
        throw new RelayError('ERR_RELAY_NOT_CONNECTED', 'not connected');
      },
    };
    const engine = new ExchangeEngine({
      self: 'alpha',
      store,
      outbox: new Outbox(join(tmp.dir, 'outbox')),
      consents,
      peers,
      ledger,
      relay,
      sender: () => ({ agent: 'alpha', signingKid: 'A'.repeat(43), signingKey: generateKeyPairSync('ed25519').privateKey }),
      logger: { info() {}, warn() {}, error() {} },
      maxConcurrent: 2,
      retry: { baseMs: 60_000, maxMs: 60_000 },
    });
    await engine.start();
    const retried = await waitFor(
      async () => {
        const r = await store.get(record.id);
        return r?.status === 'queued' && r.attempts === 1 ? r : undefined;
      },
      10_000,
      'the attempt to go back to the queue',
    );
    engine.stop();
    const sent = (await ledger.byExchange(record.id)).filter((e) => e.entry.type === 'exchange.sent');
    expect(sent.map((e) => e.hash)).to.deep.equal([logged.hash]);
    expect(retried.ledger?.sent).to.equal(logged.hash);
  });
});
