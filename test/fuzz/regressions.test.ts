import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { join } from 'node:path';
import { expect } from 'chai';
import { PkiError, createKeyBundle, generateAgentKeys, loadIdentity, verifyKeyBundle, type KeyBundle } from '../../certs/index.ts';
import { CryptoError, KeyRing, createReceipt, senderKeys, verifyReceipt, withKids, type Receipt } from '../../hospital-agent/crypto/index.ts';
import { createApiApp } from '../../hospital-agent/api/http.ts';
import { LedgerError, signedHeadSchema, type Ledger, type SignedHead } from '../../ledger/index.ts';
import { makeWorld, type LedgerWorld } from '../ledger/support.ts';
import { makeFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { rawRequest } from './support/http.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The same bytes spelled differently: the last base64url character with one of its spare (ignored) low bits set. */
function respell(sig: string): string {
  const last = ALPHABET.indexOf(sig.at(-1) as string);
  const other = `${sig.slice(0, -1)}${ALPHABET[last ^ 1]}`;
  expect(Buffer.from(other, 'base64url').equals(Buffer.from(sig, 'base64url')), 'the respelling decodes to the same bytes').to.equal(true);
  return other;
}

describe('fuzz findings (regressions)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let caPem: string;
  let ring: KeyRing;
  let bundle: KeyBundle;
  let receipt: Receipt;
  let world: LedgerWorld;
  let author: Ledger;
  let replica: Ledger;

  before(async function () {
    tmp = tempDir('hie-fuzz-reg-');
    const fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
    caPem = readFileSync(fed.caPath, 'utf8');
    ring = new KeyRing({ caPem });
    const keys = await withKids(generateAgentKeys());
    bundle = await createKeyBundle(loadIdentity(fed.agents['bravo']!), keys);
    await ring.add(bundle);
    receipt = createReceipt(
      { exchangeId: 'regress-exchange-1', sender: 'alpha', headerHash: null, contentHash: null, disposition: { failed: 'ERR_ENVELOPE_TAMPERED' } },
      senderKeys('bravo', keys),
    );
    world = await makeWorld(join(tmp.dir, 'ledger'), ['alpha', 'bravo']);
    author = await world.open('alpha', join(tmp.dir, 'alpha-db'));
    replica = await world.open(undefined, join(tmp.dir, 'replica-db'));
  });
  after(async function () {
    await author?.close();
    await replica?.close();
    tmp?.cleanup();
  });

  it('refuses a receipt whose signature is re-spelled in its spare base64url bits', async function () {
    await verifyReceipt(structuredClone(receipt), { resolveSigner: ring.signerLookup() });
    try {
      await verifyReceipt({ ...receipt, sig: respell(receipt.sig as string) }, { resolveSigner: ring.signerLookup() });
      expect.fail('a re-spelled receipt signature verified');
    } catch (err) {
      expect(err).to.be.instanceOf(CryptoError);
      expect((err as CryptoError).code).to.equal('ERR_RECEIPT_MALFORMED');
    }
  });

  it('refuses a key bundle whose signature is re-spelled in its spare base64url bits', async function () {
    await verifyKeyBundle(structuredClone(bundle), { caPem });
    try {
      await verifyKeyBundle({ ...bundle, sig: respell(bundle.sig) }, { caPem });
      expect.fail('a re-spelled bundle signature verified');
    } catch (err) {
      expect(err).to.be.instanceOf(PkiError);
      expect((err as PkiError).code).to.equal('ERR_PKI_BUNDLE_INVALID');
    }
  });

  it('refuses a ledger range whose signed head has a re-spelled signature, and stores nothing', async function () {
    await author.append({ type: 'exchange.failed', body: { exchange: 'regress-exchange-2', peer: 'bravo', reason: 'timeout' } });
    const head = (await author.signedHead()) as SignedHead;
    const range = await author.rawRange('alpha', 0, head.seq);
    const bad = { ...head, sig: respell(head.sig) };
    expect(signedHeadSchema.safeParse(bad).success).to.equal(false);
    try {
      await replica.ingest('alpha', range, bad);
      expect.fail('a re-spelled head signature was accepted');
    } catch (err) {
      expect(err).to.be.instanceOf(LedgerError);
    }
    expect(replica.head('alpha')).to.equal(undefined);
    await replica.ingest('alpha', range, head);
    expect(replica.head('alpha')?.seq).to.equal(head.seq);
  });

  it('answers a path parameter that cannot be percent-decoded with 400 ERR_BAD_REQUEST, not 500', async function () {
    const v1 = express.Router();
    v1.get('/items/:id', (req, res) => {
      res.json({ id: req.params['id'] });
    });
    const token = 'regress-token-0123456789abcdef0123456789';
    const app = createApiApp({ tokens: [{ name: 't', token }], logger: { info() {}, warn() {}, error() {} }, v1, openapi: {} });
    const server: Server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as AddressInfo).port;
      const auth = { authorization: `Bearer ${token}` };
      expect((await rawRequest(port, { method: 'GET', path: '/v1/items/ok%20id', headers: auth })).status).to.equal(200);
      for (const bad of ['%', '%zz', '%c0%ae']) {
        const r = await rawRequest(port, { method: 'GET', path: `/v1/items/${bad}`, headers: auth });
        expect(r.status, bad).to.equal(400);
        expect(JSON.parse(r.body.toString()).error.code).to.equal('ERR_BAD_REQUEST');
      }
    } finally {
      server.close();
    }
  });
});
