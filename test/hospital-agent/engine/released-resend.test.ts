import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Ledger } from '../../../ledger/index.ts';
import { createReceipt } from '../../../hospital-agent/crypto/index.ts';
import { ExchangeEngine, type RelayPort } from '../../../hospital-agent/engine/index.ts';
import type { PeerDirectory } from '../../../hospital-agent/engine/peers.ts';
import type { WireMessage } from '../../../hospital-agent/engine/wire.ts';
import { ConsentService } from '../../../hospital-agent/services/consents.ts';
import type { ExchangeRecord, ExchangeStore } from '../../../hospital-agent/store/exchanges.ts';
import { Outbox } from '../../../hospital-agent/store/outbox.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { RelayError } from '../../../relay/protocol/index.ts';
import { dbPath, makeWorld } from '../../ledger/support.ts';
import { waitFor } from '../../support/agents.ts';
import { tempDir } from '../../support/tmp.ts';
import { releasedExchange } from './support.ts';
import { getWorld, type World } from '../crypto/fixtures.ts';

const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64url');

/**
 * Found by the crash soak: an exchange released (its `exchange.sent` logged)
 * and delivered, whose receipt the sender lost, was re-checked against its
 * consent when sent again; the consent had been revoked meanwhile, so the
 * sender logged `exchange.failed` for an exchange in the recipient's inbox.
 * Now the sender asks the recipient first, and sends nothing again.
 */
describe('ExchangeEngine: a resend its consent refuses, of an exchange released before', function () {
  this.timeout(30_000);
  let w: World;
  let tmp: ReturnType<typeof tempDir>;
  let ledger: Ledger;
  let state: StateStore;
  let store: ExchangeStore;
  let consents: ConsentService;
  let engine: ExchangeEngine | undefined;
  let opened: number;

  beforeEach(async function () {
    w = await getWorld();
    tmp = tempDir();
    const world = await makeWorld(tmp.dir, ['alpha', 'bravo']);
    ledger = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    consents = new ConsentService(ledger, 'alpha', randomBytes(32));
    opened = 0;
  });
  afterEach(async function () {
    engine?.stop();
    await state.close();
    await ledger.close();
    tmp.cleanup();
  });

  /** An inline exchange whose release is logged, under a consent revoked since. */
  async function releasedThenRevoked(): Promise<ExchangeRecord> {
    const { record, consent, logged: sent } = await releasedExchange(store, ledger, consents, 'SYN-RESEND');
    const updated = await store.update(record.id, { ledger: { sent: sent.hash } });
    await consents.revoke(consent.id);
    return updated;
  }

  function startEngine(maxBatch: number, answer: (m: WireMessage) => void): ExchangeEngine {
    const relay: RelayPort = {
      connected: true,
      openTransfer: () => {
        opened += 1;
        throw new RelayError('ERR_RELAY_NOT_CONNECTED', 'not connected');
      },
    };
    const peers = {
      encryptionBundle: async () => w.ring.encryptionBundle('bravo'),
      signerLookup: () => w.ring.signerLookup(),
    } as unknown as PeerDirectory;
    engine = new ExchangeEngine({
      self: 'alpha',
      store,
      outbox: new Outbox(join(tmp.dir, 'outbox')),
      consents,
      peers,
      ledger,
      relay,
      send: (_to, m) => setImmediate(() => answer(m)),
      sender: () => w.parties['alpha']!.sender,
      logger: { info() {}, warn() {}, error() {} },
      maxConcurrent: 2,
      maxBatch,
      retry: { baseMs: 60_000, maxMs: 60_000 },
    });
    return engine;
  }

  const final = (id: string): Promise<ExchangeRecord> =>
    waitFor(
      async () => {
        const r = await store.get(id);
        return r?.status === 'delivered' || r?.status === 'failed' ? r : undefined;
      },
      20_000,
      'the exchange to end',
    );

  it('settles it as delivered with the receipt the recipient still holds, and sends nothing again (single send)', async function () {
    const record = await releasedThenRevoked();
    const e = startEngine(1, (m) => {
      if (m.t !== 'receipt.get') return;
      const receipt = createReceipt(
        { exchangeId: m.id, sender: 'alpha', headerHash: b64('ab'.repeat(32)), contentHash: b64(record.contentSha256), disposition: 'delivered' },
        w.parties['bravo']!.sender,
      );
      void e.onReceipt('bravo', receipt);
    });
    await e.start();
    const done = await final(record.id);
    expect(done.status, JSON.stringify(done.failure)).to.equal('delivered');
    expect(opened, 'transfers opened').to.equal(0);
    const types = (await ledger.byExchange(record.id)).map((x) => x.entry.type);
    expect(types).to.include('receipt');
    expect(types).to.not.include('exchange.failed');
  });

  it('fails it under the revocation when the recipient never completed it (receipt.none), and sends nothing again (batch)', async function () {
    const record = await releasedThenRevoked();
    const e = startEngine(32, (m) => {
      if (m.t === 'receipt.get') e.onReceiptNone('bravo', m.id);
    });
    await e.start();
    const done = await final(record.id);
    expect(done.status).to.equal('failed');
    expect(done.failure?.code).to.equal('ERR_CONSENT_REVOKED');
    expect(opened, 'transfers opened').to.equal(0);
    const types = (await ledger.byExchange(record.id)).map((x) => x.entry.type);
    expect(types).to.include('exchange.failed');
    expect(types).to.not.include('receipt');
  });
});
