import { createHash, sign } from 'node:crypto';
import { expect } from 'chai';
import { createKeyBundle, generateAgentKeys, jcs } from '../../../certs/index.ts';
import {
  createReceipt,
  createReceipts,
  CryptoError,
  deliveredReceipt,
  receiptSignature,
  senderKeys,
  verifyReceipt,
  withKids,
  type CryptoErrorCode,
  type Receipt,
} from '../../../hospital-agent/crypto/index.ts';
import { contentAt, getWorld, openBuffer, sealBuffer, sealOpts, type World } from './fixtures.ts';

async function expectCode(p: Promise<unknown>, code: CryptoErrorCode): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(CryptoError);
    expect((err as CryptoError).code, (err as Error).message).to.equal(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('receipts', function () {
  let w: World;
  let receipt: Receipt;
  let expected: { exchangeId: string; headerHash: string; contentHash: string; sender: string; recipient: string };

  before(async function () {
    w = await getWorld();
    const { envelope, summary } = await sealBuffer(contentAt(0, Buffer.alloc(500)), sealOpts(w, 'alpha', ['bravo']));
    const { opened } = await openBuffer(w, envelope, 'bravo');
    receipt = deliveredReceipt(opened, w.parties['bravo']!.sender);
    expected = { exchangeId: summary.exchangeId, headerHash: summary.headerHash, contentHash: summary.contentSha256, sender: 'alpha', recipient: 'bravo' };
  });

  it('verifies a delivered receipt against the recipient bundle and what the sender sealed', async function () {
    const v = await verifyReceipt(JSON.parse(JSON.stringify(receipt)), { resolveSigner: w.ring.signerLookup(), expect: expected });
    expect(v.receipt.disposition).to.equal('delivered');
    expect(v.signer.agent).to.equal('bravo');
  });

  it('refuses an altered receipt: every field is signed', async function () {
    const alterations: Array<Partial<Receipt>> = [
      { disposition: { failed: 'ERR_ENVELOPE_TAMPERED' } },
      { contentHash: 'A'.repeat(43) },
      { headerHash: 'B'.repeat(43) },
      { receivedAt: new Date(Date.now() + 60_000).toISOString() },
      { exchangeId: 'another-exchange' },
      { sender: 'charlie' },
    ];
    for (const a of alterations) await expectCode(verifyReceipt({ ...receipt, ...a }, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_BAD_SIGNATURE');
  });

  it('refuses a receipt forged by another agent in the recipient name', async function () {
    const charlie = w.parties['charlie']!;
    // charlie signs with its own key but claims to be bravo: either the kid is charlie's (no such bravo key) ...
    const forged = createReceipt({ ...expected, disposition: 'delivered' }, { ...charlie.sender, agent: 'bravo' });
    await expectCode(verifyReceipt(forged, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_UNTRUSTED');
    // ... or it names bravo's kid, and the signature does not verify.
    const forged2 = createReceipt(
      { ...expected, disposition: 'delivered' },
      { ...charlie.sender, agent: 'bravo', signingKid: w.parties['bravo']!.keys.signingKid },
    );
    await expectCode(verifyReceipt(forged2, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_BAD_SIGNATURE');
  });

  it('refuses a valid receipt about another exchange than expected', async function () {
    await expectCode(
      verifyReceipt(receipt, { resolveSigner: w.ring.signerLookup(), expect: { ...expected, contentHash: 'C'.repeat(43) } }),
      'ERR_RECEIPT_MISMATCH',
    );
    await expectCode(verifyReceipt(receipt, { resolveSigner: w.ring.signerLookup(), expect: { recipient: 'charlie' } }), 'ERR_RECEIPT_MISMATCH');
  });

  it('refuses malformed receipts, including a delivered one without hashes', async function () {
    await expectCode(verifyReceipt(null, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_MALFORMED');
    await expectCode(verifyReceipt({ ...receipt, extra: 1 }, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_MALFORMED');
    const { sig: _s, ...body } = { ...receipt, contentHash: null };
    const noHash = { ...body, sig: sign(null, jcs(body), w.parties['bravo']!.keys.signing.privateKey).toString('base64url') };
    await expectCode(verifyReceipt(noHash, { resolveSigner: w.ring.signerLookup() }), 'ERR_RECEIPT_MALFORMED');
    expect(() => createReceipt({ ...expected, contentHash: null, disposition: 'delivered' }, w.parties['bravo']!.sender)).to.throw(TypeError);
  });

  it('signs and verifies a failure receipt with the error code', async function () {
    const r = createReceipt(
      { exchangeId: 'x-failed-1', sender: 'alpha', headerHash: null, contentHash: null, disposition: { failed: 'ERR_ENVELOPE_TRUNCATED' } },
      w.parties['bravo']!.sender,
    );
    const v = await verifyReceipt(r, { resolveSigner: w.ring.signerLookup() });
    expect(v.receipt.disposition).to.deep.equal({ failed: 'ERR_ENVELOPE_TRUNCATED' });
  });

  it('keeps receipts signed with a rotated-out key verifiable', async function () {
    const id = w.fed.addAgent('hotel');
    const { loadIdentity } = await import('../../../certs/index.ts');
    const identity = loadIdentity(id);
    const k1 = await withKids(generateAgentKeys());
    const k2 = await withKids(generateAgentKeys());
    const b1 = await createKeyBundle(identity, k1, { now: new Date(Date.now() - 60_000) });
    const b2 = await createKeyBundle(identity, k2);
    await w.ring.add(b1);
    const old = createReceipt({ ...expected, recipient: 'hotel', disposition: 'delivered' } as never, senderKeys('hotel', k1));
    await w.ring.add(b2);
    expect((await w.ring.encryptionBundle('hotel')).encryptionKid).to.equal(k2.encryptionKid);
    expect((await verifyReceipt(old, { resolveSigner: w.ring.signerLookup() })).signer.signingKid).to.equal(k1.signingKid);
  });

  describe('signed together (a batch)', function () {
    const inputs = (n: number): Array<Parameters<typeof createReceipt>[0]> =>
      Array.from({ length: n }, (_, i) => ({
        exchangeId: `x-batch-${i}-0001`,
        sender: 'alpha',
        headerHash: 'H'.repeat(43),
        contentHash: createHash('sha256').update(`content ${i}`).digest('base64url'),
        disposition: 'delivered' as const,
        receivedAt: new Date(),
      }));

    it('gives each receipt a proof under one signature, and each verifies alone', async function () {
      for (const n of [2, 3, 7, 32]) {
        const batch = createReceipts(inputs(n), w.parties['bravo']!.sender);
        expect(new Set(batch.map((r) => receiptSignature(r))).size).to.equal(1);
        for (const [i, r] of batch.entries()) {
          expect(r.sig).to.equal(undefined);
          expect(r.batch).to.include({ size: n, index: i });
          const v = await verifyReceipt(JSON.parse(JSON.stringify(r)), {
            resolveSigner: w.ring.signerLookup(),
            expect: { exchangeId: `x-batch-${i}-0001`, sender: 'alpha', recipient: 'bravo' },
          });
          expect(v.receipt.contentHash).to.equal(r.contentHash);
        }
      }
      // One input: an ordinary receipt with its own signature.
      const [single] = createReceipts(inputs(1), w.parties['bravo']!.sender);
      expect(single?.sig).to.be.a('string');
      expect(single?.batch).to.equal(undefined);
    });

    it('refuses a batched receipt whose fields, proof or signature were altered, or that names another signer', async function () {
      const batch = createReceipts(inputs(5), w.parties['bravo']!.sender);
      const r = batch[3] as Receipt;
      const proof = r.batch as NonNullable<Receipt['batch']>;
      const resolveSigner = w.ring.signerLookup();
      const altered: unknown[] = [
        { ...r, contentHash: 'Z'.repeat(43) },
        { ...r, exchangeId: 'x-batch-9-0001' },
        { ...r, batch: { ...proof, index: 2 } },
        { ...r, batch: { ...proof, size: 6 } },
        { ...r, batch: { ...proof, path: [...proof.path].reverse() } },
        { ...r, batch: { ...proof, path: proof.path.slice(1) } },
        // A genuine signature of bravo's, over something else.
        { ...r, batch: { ...proof, sig: createReceipt(inputs(1)[0]!, w.parties['bravo']!.sender).sig } },
        // Another receipt's proof with this receipt's fields.
        { ...r, batch: (batch[1] as Receipt).batch },
      ];
      for (const a of altered) await expectCode(verifyReceipt(a, { resolveSigner }), 'ERR_RECEIPT_BAD_SIGNATURE');
      // Signed by charlie, claiming to be bravo's: bravo's key does not verify it.
      const charlie = createReceipts(inputs(5), { ...w.parties['charlie']!.sender, agent: 'bravo', signingKid: w.parties['bravo']!.sender.signingKid });
      await expectCode(verifyReceipt(charlie[3], { resolveSigner }), 'ERR_RECEIPT_BAD_SIGNATURE');
      // Both forms at once, or neither, is malformed.
      await expectCode(verifyReceipt({ ...r, sig: proof.sig }, { resolveSigner }), 'ERR_RECEIPT_MALFORMED');
      const { batch: _drop, ...bare } = r;
      await expectCode(verifyReceipt(bare, { resolveSigner }), 'ERR_RECEIPT_MALFORMED');
    });
  });
});
