import { createHash, sign } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { createKeyBundle, generateAgentKeys, jcs, loadIdentity, PkiError } from '../../../certs/index.ts';
import {
  CryptoError,
  MemoryReplayStore,
  openEnvelope,
  senderKeys,
  withKids,
  type CryptoErrorCode,
  type OpenOptions,
} from '../../../hospital-agent/crypto/index.ts';
import { deriveContentKeys, sealMeta, unwrapContentKey, wrapContentKey } from '../../../hospital-agent/crypto/keys.ts';
import { PeerDirectory, PeerKeyUnavailableError, RecipientRevokedError } from '../../../hospital-agent/engine/peers.ts';
import { tempDir } from '../../support/tmp.ts';
import { makeFederation } from '../../support/federation.ts';
import { Collector, contentAt, flip, getWorld, layout, makeParty, openBuffer, sealBuffer, sealOpts, type World } from './fixtures.ts';

async function expectCode(p: Promise<unknown>, code: CryptoErrorCode): Promise<CryptoError> {
  try {
    await p;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(CryptoError);
    expect((err as CryptoError).code, (err as Error).message).to.equal(code);
    return err as CryptoError;
  }
  throw new Error(`expected ${code}, but the envelope opened`);
}

/** Rewrites the header JSON (and its length), keeping the original header signature. */
function rewriteHeader(env: Buffer, edit: (h: Record<string, unknown>) => void): Buffer {
  const l = layout(env);
  const header = JSON.parse(env.subarray(l.headerStart, l.headerEnd).toString()) as Record<string, unknown>;
  edit(header);
  const bytes = jcs(header);
  const pre = Buffer.from(env.subarray(0, 9));
  pre.writeUInt32BE(bytes.length, 5);
  return Buffer.concat([pre, bytes, env.subarray(l.headerEnd)]);
}

/** Swaps two equal-sized chunk frames. */
function swapChunks(env: Buffer, a: number, b: number, keepSeq: boolean): Buffer {
  const l = layout(env);
  const ca = l.chunks[a]!;
  const cb = l.chunks[b]!;
  const out = Buffer.from(env);
  env.copy(out, ca.start, cb.start, cb.end);
  env.copy(out, cb.start, ca.start, ca.end);
  if (!keepSeq) {
    out.writeUInt32BE(a, ca.start + 1);
    out.writeUInt32BE(b, cb.start + 1);
  }
  return out;
}

describe('envelope attacks', function () {
  let w: World;
  let data: Buffer;
  let env: Buffer;

  before(async function () {
    w = await getWorld();
    data = contentAt(0, Buffer.alloc(1000));
    ({ envelope: env } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo', 'charlie'], { chunkSize: 256 })));
  });

  it('opens the untouched envelope (control for every attack below)', async function () {
    const { plaintext } = await openBuffer(w, env, 'bravo');
    expect(plaintext.equals(data)).to.equal(true);
  });

  describe('one bit flipped', function () {
    it('in the preamble: malformed', async function () {
      await expectCode(openBuffer(w, flip(env, 0), 'bravo'), 'ERR_ENVELOPE_MALFORMED');
      await expectCode(openBuffer(w, flip(env, 4), 'bravo'), 'ERR_ENVELOPE_MALFORMED');
    });

    it('in the header: the header signature fails', async function () {
      const l = layout(env);
      // One character of the noncePrefix value changed to another base64url character: still valid
      // JSON and schema, so only the signature catches it.
      const at = env.indexOf('"noncePrefix":"', l.headerStart) + 16;
      const out = Buffer.from(env);
      out[at] = out[at] === 0x41 ? 0x42 : 0x41;
      await expectCode(openBuffer(w, out, 'bravo'), 'ERR_ENVELOPE_BAD_SIGNATURE');
    });

    it('in the header signature', async function () {
      await expectCode(openBuffer(w, flip(env, layout(env).headerEnd + 5), 'bravo'), 'ERR_ENVELOPE_BAD_SIGNATURE');
    });

    it('in a chunk body, a tag, and a final chunk: the chunk does not authenticate', async function () {
      const l = layout(env);
      for (const at of [l.chunks[0]!.body, l.chunks[1]!.body + 100, l.chunks[2]!.tag + 15, l.chunks[3]!.body + 1]) {
        await expectCode(openBuffer(w, flip(env, at, 7), 'bravo'), 'ERR_ENVELOPE_TAMPERED');
      }
    });

    it('in a chunk kind (a middle chunk claimed final): the nonce final flag catches it', async function () {
      const l = layout(env);
      const out = Buffer.from(env);
      out[l.chunks[1]!.start] = 0x46;
      await expectCode(openBuffer(w, out, 'bravo'), 'ERR_ENVELOPE_TAMPERED');
    });

    it('in the trailer and its signature', async function () {
      const l = layout(env);
      const at = env.indexOf('"contentLength":', l.trailer.body) + 16;
      const longer = Buffer.from(env);
      longer[at] = longer[at] === 0x39 ? 0x38 : (longer[at] as number) + 1;
      await expectCode(openBuffer(w, longer, 'bravo'), 'ERR_ENVELOPE_BAD_SIGNATURE');
      await expectCode(openBuffer(w, flip(env, l.trailer.sig + 10), 'bravo'), 'ERR_ENVELOPE_BAD_SIGNATURE');
    });

    it('anywhere at all: never opens, and the quarantine file is deleted', async function () {
      this.timeout(120_000);
      const t = tempDir();
      try {
        const step = Math.max(1, Math.floor(env.length / 160));
        for (let at = 0; at < env.length; at += step) {
          try {
            await openBuffer(w, flip(env, at, at % 8), 'bravo', { quarantine: { dir: t.dir } });
            expect.fail(`flipping byte ${at} went unnoticed`);
          } catch (err) {
            expect(err, `byte ${at}`).to.be.instanceOf(CryptoError);
          }
          expect(readdirSync(t.dir), `quarantine left after byte ${at}`).to.deep.equal([]);
        }
      } finally {
        t.cleanup();
      }
    });
  });

  it('dropping the last chunk is truncation, and so is any early end of stream', async function () {
    const l = layout(env);
    const last = l.chunks[l.chunks.length - 1]!;
    const dropped = Buffer.concat([env.subarray(0, last.start), env.subarray(last.end)]);
    await expectCode(openBuffer(w, dropped, 'bravo'), 'ERR_ENVELOPE_TRUNCATED');
    for (const cut of [5, l.headerEnd - 1, l.chunks[1]!.body + 3, last.start, l.trailer.start, l.trailer.end - 1]) {
      await expectCode(openBuffer(w, env.subarray(0, cut), 'bravo'), 'ERR_ENVELOPE_TRUNCATED');
    }
  });

  it('dropping a middle chunk and renumbering is caught by the nonce counter', async function () {
    const l = layout(env);
    const c1 = l.chunks[1]!;
    const out = Buffer.concat([env.subarray(0, c1.start), env.subarray(c1.end)]);
    // Renumber the frames after the gap so only the cryptographic counter can tell.
    const l2 = layout(out);
    l2.chunks.forEach((c, i) => out.writeUInt32BE(i, c.start + 1));
    out.writeUInt32BE(l2.chunks.length, l2.trailer.start + 1);
    await expectCode(openBuffer(w, out, 'bravo'), 'ERR_ENVELOPE_TAMPERED');
  });

  it('swapping two chunks: reordered as sent, tampered when the sequence numbers are rewritten', async function () {
    await expectCode(openBuffer(w, swapChunks(env, 0, 1, true), 'bravo'), 'ERR_ENVELOPE_REORDERED');
    await expectCode(openBuffer(w, swapChunks(env, 0, 1, false), 'bravo'), 'ERR_ENVELOPE_TAMPERED');
  });

  it('a chunk spliced from another envelope of the same sender does not authenticate', async function () {
    const other = (await sealBuffer(data, sealOpts(w, 'alpha', ['bravo', 'charlie'], { chunkSize: 256 }))).envelope;
    const la = layout(env);
    const lb = layout(other);
    const out = Buffer.concat([env.subarray(0, la.chunks[1]!.start), other.subarray(lb.chunks[1]!.start, lb.chunks[1]!.end), env.subarray(la.chunks[1]!.end)]);
    await expectCode(openBuffer(w, out, 'bravo'), 'ERR_ENVELOPE_TAMPERED');
  });

  describe('re-addressing', function () {
    it('by the relay, to an agent not named: wrong recipient', async function () {
      await expectCode(openBuffer(w, env, 'delta'), 'ERR_ENVELOPE_WRONG_RECIPIENT');
    });

    it('by the relay, renaming a recipient entry: the header signature fails', async function () {
      const out = rewriteHeader(env, (h) => {
        (h['to'] as Array<{ agent: string }>)[1]!.agent = 'delta';
      });
      await expectCode(
        openBuffer(w, out, 'delta', { recipient: { agent: 'delta', keys: w.parties['charlie']!.recipient.keys } }),
        'ERR_ENVELOPE_BAD_SIGNATURE',
      );
    });

    it('by a recipient who knows the content key, forwarding to another agent as if from the sender', async function () {
      // bravo unwraps the key legitimately, then builds a header for delta, keeping alpha's signatures.
      const l = layout(env);
      const header = JSON.parse(env.subarray(l.headerStart, l.headerEnd).toString());
      const bravoEntry = header.to.find((r: { agent: string }) => r.agent === 'bravo');
      const cek = await unwrapContentKey(bravoEntry.cek, 'alpha', 'bravo', bravoEntry.kid, w.parties['bravo']!.keys.encryption.privateKey, {});
      const d = w.parties['delta']!.verified;
      const forged = rewriteHeader(env, (h) => {
        h['to'] = [{ agent: 'delta', kid: d.encryptionKid, cek: '' }];
      });
      const lf = layout(forged);
      const fh = JSON.parse(forged.subarray(lf.headerStart, lf.headerEnd).toString());
      fh.to[0].cek = await wrapContentKey(cek, 'alpha', 'delta', d.encryptionKid, d.encryptionKey);
      fh.meta = sealMeta(
        { exchangeId: fh.exchangeId, from: 'alpha', to: ['delta'], contentType: 'application/fhir+json', consentRef: 'consent-123' },
        deriveContentKeys(cek).meta,
      );
      const out = rewriteHeader(forged, (h) => Object.assign(h, fh));
      await expectCode(openBuffer(w, out, 'delta'), 'ERR_ENVELOPE_BAD_SIGNATURE');
      // Were the header signature not checked (simulated by re-signing with alpha's key), the chunks
      // and alpha's trailer are still bound to the original header, so the forgery fails anyway.
      const lo = layout(out);
      const resigned = Buffer.from(out);
      sign(null, out.subarray(lo.headerStart, lo.headerEnd), w.parties['alpha']!.keys.signing.privateKey).copy(resigned, lo.headerEnd);
      await expectCode(openBuffer(w, resigned, 'delta'), 'ERR_ENVELOPE_TAMPERED');
    });
  });

  it('a content type the recipient could not serve back as a header (control or non-ASCII characters) is malformed', async function () {
    for (const contentType of ['text/plain\r\nX-Injected: 1', 'application/pdf; name="\u5831\u544a"', ' application/dicom']) {
      const { envelope } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { contentType }));
      await expectCode(openBuffer(w, envelope, 'bravo'), 'ERR_ENVELOPE_MALFORMED');
    }
    const { envelope } = await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { contentType: 'application/dicom; transfer-syntax=1.2.840.10008.1.2.1' }));
    expect((await openBuffer(w, envelope, 'bravo')).opened.contentType).to.equal('application/dicom; transfer-syntax=1.2.840.10008.1.2.1');
  });

  it('a replayed envelope is refused, with the store the agent keeps between opens', async function () {
    const replay = new MemoryReplayStore();
    await openBuffer(w, env, 'bravo', { replay });
    const err = await expectCode(openBuffer(w, env, 'bravo', { replay }), 'ERR_ENVELOPE_REPLAYED');
    expect(err.context.from).to.equal('alpha');
    // Another recipient keeps its own store: it still gets its copy.
    await openBuffer(w, env, 'charlie', { replay: new MemoryReplayStore() });
  });

  it('two concurrent opens of the same envelope deliver once', async function () {
    const replay = new MemoryReplayStore();
    const results = await Promise.allSettled([openBuffer(w, env, 'bravo', { replay }), openBuffer(w, env, 'bravo', { replay })]);
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((rejected.reason as CryptoError).code).to.equal('ERR_ENVELOPE_REPLAYED');
  });

  it('a failed open does not burn the exchange id: the genuine envelope still opens afterwards', async function () {
    const replay = new MemoryReplayStore();
    await expectCode(openBuffer(w, flip(env, layout(env).chunks[2]!.body), 'bravo', { replay }), 'ERR_ENVELOPE_TAMPERED');
    await openBuffer(w, env, 'bravo', { replay });
  });

  it('an envelope older than the replay window or from the future is stale', async function () {
    const old = (await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { now: new Date(Date.now() - 8 * 86_400_000) }))).envelope;
    await expectCode(openBuffer(w, old, 'bravo'), 'ERR_ENVELOPE_STALE');
    await expectCode(openBuffer(w, env, 'bravo', { now: () => new Date(Date.now() - 3_600_000) }), 'ERR_ENVELOPE_STALE');
  });

  describe('substituted key bundles', function () {
    it('a recipient bundle from a foreign CA never enters the key ring; sealing still targets the genuine key', async function () {
      const t = tempDir();
      try {
        const foreign = makeFederation(t.dir, ['bravo']);
        const fake = await createKeyBundle(loadIdentity(foreign.agents['bravo']!), generateAgentKeys());
        try {
          await w.ring.add(fake);
          expect.fail('a foreign bundle was accepted');
        } catch (err) {
          expect((err as PkiError).code).to.equal('ERR_PKI_BUNDLE_UNTRUSTED');
        }
        const target = await w.ring.encryptionBundle('bravo');
        expect(target.encryptionKid).to.equal(w.parties['bravo']!.verified.encryptionKid);
        expect(w.ring.bundles('bravo').some((b) => b.encryption.kid === fake.encryption.kid)).to.equal(false);
      } finally {
        t.cleanup();
      }
    });

    it('a sender whose bundle is not CA-signed is untrusted; claiming the genuine key id fails the signature', async function () {
      const t = tempDir();
      try {
        const foreign = makeFederation(t.dir, ['alpha']);
        const keys = await withKids(generateAgentKeys());
        const fake = await createKeyBundle(loadIdentity(foreign.agents['alpha']!), keys);
        await w.ring.add(fake).then(
          () => expect.fail('a foreign bundle was accepted'),
          (err: PkiError) => expect(err.code).to.equal('ERR_PKI_BUNDLE_UNTRUSTED'),
        );
        const imposter = senderKeys('alpha', keys);
        const e = (await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { sender: imposter }))).envelope;
        await expectCode(openBuffer(w, e, 'bravo'), 'ERR_ENVELOPE_UNTRUSTED_SENDER');
        const claiming = { ...imposter, signingKid: w.parties['alpha']!.keys.signingKid };
        const e2 = (await sealBuffer(data, sealOpts(w, 'alpha', ['bravo'], { sender: claiming }))).envelope;
        await expectCode(openBuffer(w, e2, 'bravo'), 'ERR_ENVELOPE_BAD_SIGNATURE');
      } finally {
        t.cleanup();
      }
    });

    it('a sender whose certificate was revoked is untrusted, for new envelopes and in the key ring', async function () {
      const id = w.fed.addAgent('golf');
      const golf = await makeParty(w, 'golf', loadIdentity(id));
      w.parties['golf'] = golf;
      const e = (await sealBuffer(data, sealOpts(w, 'golf', ['bravo']))).envelope;
      const e2 = (await sealBuffer(data, sealOpts(w, 'golf', ['bravo']))).envelope;
      await openBuffer(w, e, 'bravo');
      w.fed.ca.revoke({ id: 'golf', now: new Date(Date.now() - 2000) });
      w.reloadCrl();
      await expectCode(openBuffer(w, e2, 'bravo'), 'ERR_ENVELOPE_UNTRUSTED_SENDER');
      try {
        await w.ring.encryptionBundle('golf');
        expect.fail('a revoked agent was still a recipient');
      } catch (err) {
        expect((err as CryptoError).code).to.equal('ERR_KEYRING_REVOKED');
      }
      // The agent's directory tells a revoked recipient (final: ERR_UNKNOWN_RECIPIENT) from one it cannot reach (retried).
      const asked: string[] = [];
      const peers = new PeerDirectory(
        w.ring,
        () => w.parties['bravo']!.bundle,
        (to) => asked.push(to),
        50,
      );
      expect(await peers.isRevoked('golf')).to.equal(true);
      expect(await peers.isRevoked('bravo')).to.equal(false);
      expect(await peers.isRevoked('nobody-known')).to.equal(false);
      try {
        await peers.encryptionBundle('golf');
        expect.fail('a revoked agent was still a recipient');
      } catch (err) {
        expect(err).to.be.instanceOf(RecipientRevokedError);
        expect((err as RecipientRevokedError).code).to.equal('ERR_UNKNOWN_RECIPIENT');
      }
      expect(asked, 'asked the peer for a newer bundle first').to.deep.equal(['golf']);
      try {
        await peers.encryptionBundle('nobody-known');
        expect.fail('an unknown agent was a recipient');
      } catch (err) {
        expect(err).to.be.instanceOf(PeerKeyUnavailableError);
      }
      // A bundle request the relay reports undeliverable (the peer is not connected) ends then, not after the
      // (here: hour-long) wait for an answer: a send slot is not held for nothing.
      const away: PeerDirectory = new PeerDirectory(
        w.ring,
        () => w.parties['bravo']!.bundle,
        (to) => queueMicrotask(() => away.onUndeliverable(to)),
        3_600_000,
      );
      try {
        await away.encryptionBundle('nobody-known');
        expect.fail('an unknown agent was a recipient');
      } catch (err) {
        expect(err).to.be.instanceOf(PeerKeyUnavailableError);
      }
    });
  });

  describe('hostile lengths and layout', function () {
    const opts = (): Partial<OpenOptions> => ({});
    it('refuses a header length beyond the limit without reading it', async function () {
      const out = Buffer.from(env);
      out.writeUInt32BE(0xffffffff, 5);
      await expectCode(openBuffer(w, out, 'bravo', opts()), 'ERR_ENVELOPE_MALFORMED');
    });

    it('refuses a chunk longer than the chunk size and a short non-final chunk', async function () {
      const l = layout(env);
      const long = Buffer.from(env);
      long.writeUInt32BE(0x7fffffff, l.chunks[0]!.start + 5);
      await expectCode(openBuffer(w, long, 'bravo'), 'ERR_ENVELOPE_MALFORMED');
      const short = Buffer.from(env);
      short.writeUInt32BE(255, l.chunks[0]!.start + 5);
      await expectCode(openBuffer(w, short, 'bravo'), 'ERR_ENVELOPE_MALFORMED');
    });

    it('refuses a header asking for a huge chunk size, an unknown frame kind, and bytes after the trailer', async function () {
      await expectCode(
        openBuffer(
          w,
          rewriteHeader(env, (h) => (h['chunkSize'] = 2 ** 31)),
          'bravo',
        ),
        'ERR_ENVELOPE_MALFORMED',
      );
      const kind = Buffer.from(env);
      kind[layout(env).chunks[0]!.start] = 0x58;
      await expectCode(openBuffer(w, kind, 'bravo'), 'ERR_ENVELOPE_MALFORMED');
      await expectCode(openBuffer(w, Buffer.concat([env, Buffer.from([0])]), 'bravo'), 'ERR_ENVELOPE_MALFORMED');
    });

    it('refuses a header that is valid JSON but not canonical', async function () {
      const l = layout(env);
      const pretty = Buffer.from(JSON.stringify(JSON.parse(env.subarray(l.headerStart, l.headerEnd).toString()), null, 1));
      const pre = Buffer.from(env.subarray(0, 9));
      pre.writeUInt32BE(pretty.length, 5);
      await expectCode(openBuffer(w, Buffer.concat([pre, pretty, env.subarray(l.headerEnd)]), 'bravo'), 'ERR_ENVELOPE_MALFORMED');
    });
  });

  it('binds the header hash into every chunk: chunks moved under a re-signed header of the same key do not open', async function () {
    // A sender-side check of the AAD: same key and nonces, but a different header, must fail.
    const l = layout(env);
    const header = JSON.parse(env.subarray(l.headerStart, l.headerEnd).toString());
    header.created = new Date(Date.parse(header.created) + 1000).toISOString();
    const bytes = jcs(header);
    const sig = sign(null, bytes, w.parties['alpha']!.keys.signing.privateKey);
    const pre = Buffer.from(env.subarray(0, 9));
    pre.writeUInt32BE(bytes.length, 5);
    const out = Buffer.concat([pre, bytes, sig, env.subarray(l.headerSigEnd)]);
    expect(createHash('sha256').update(bytes).digest('hex')).to.not.equal(createHash('sha256').update(env.subarray(l.headerStart, l.headerEnd)).digest('hex'));
    await expectCode(openBuffer(w, out, 'bravo'), 'ERR_ENVELOPE_TAMPERED');
  });

  it('the quarantine file of a failed open is gone, and the path is free again', async function () {
    const t = tempDir();
    try {
      const path = `${t.dir}/incoming.part`;
      await expectCode(openBuffer(w, flip(env, layout(env).trailer.sig), 'bravo', { quarantine: { path } }), 'ERR_ENVELOPE_BAD_SIGNATURE');
      expect(existsSync(path)).to.equal(false);
      const { opened } = await openBuffer(w, env, 'bravo', { quarantine: { path } });
      expect(opened.path).to.equal(path);
    } finally {
      t.cleanup();
    }
  });

  describe('the source of a refused envelope (an inbound transfer: cut off, the relay aborts it; ended, it completes and is metered)', function () {
    /** Yields `bytes` at once; after `ms`, `extra` bytes (if any) and the end (unless `end` is false). */
    function endsLater(bytes: Buffer, ms: number, o: { extra?: Buffer; end?: boolean } = {}): Readable {
      const source = new Readable({ read() {} });
      source.push(bytes);
      setTimeout(() => {
        if (source.destroyed) return;
        if (o.extra) source.push(o.extra);
        if (o.end !== false) source.push(null);
      }, ms).unref();
      return source;
    }
    const open = (source: Readable, extra: Partial<OpenOptions> = {}) =>
      openEnvelope(source, {
        recipient: w.parties['bravo']!.recipient,
        resolveSender: w.ring.signerLookup(),
        replay: new MemoryReplayStore(),
        quarantine: { writable: new Collector() },
        ...extra,
      });

    it('refused after its trailer: waits for the end, so the transfer completes rather than being cut off', async function () {
      const source = endsLater(flip(env, layout(env).trailer.sig), 150);
      await expectCode(open(source), 'ERR_ENVELOPE_BAD_SIGNATURE');
      expect(source.readableEnded, 'the source ended by itself').to.equal(true);
    });

    it('refused after its trailer, then a byte more: cut off', async function () {
      const source = endsLater(flip(env, layout(env).trailer.sig), 50, { extra: Buffer.from([0]), end: false });
      await expectCode(open(source), 'ERR_ENVELOPE_BAD_SIGNATURE');
      expect(source.readableEnded).to.equal(false);
      expect(source.destroyed).to.equal(true);
    });

    it('refused after its trailer, and the end never comes: cut off after the wait', async function () {
      const source = endsLater(flip(env, layout(env).trailer.sig), 0, { end: false });
      await expectCode(open(source, { endWaitMs: 100 }), 'ERR_ENVELOPE_BAD_SIGNATURE');
      expect(source.readableEnded).to.equal(false);
      expect(source.destroyed).to.equal(true);
    });

    it('refused before its trailer: cut off at once, the rest is not waited for', async function () {
      const source = endsLater(flip(env, layout(env).chunks[1]!.body), 10_000);
      await expectCode(open(source), 'ERR_ENVELOPE_TAMPERED');
      expect(source.readableEnded).to.equal(false);
      expect(source.destroyed).to.equal(true);
    });
  });
});
