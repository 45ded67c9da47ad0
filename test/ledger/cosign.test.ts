import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  addSignatures,
  cosign,
  cosignedMessage,
  cosignerKey,
  cosignerKeyId,
  cosignerVerifierKey,
  parseCosignerKey,
  splitNote,
  verifyCosignature,
} from '../../ledger/cosign.ts';
import { noteKeyId, openNote, parseVerifierKey } from '../../ledger/note.ts';
import { tempDir } from '../support/tmp.ts';

// Carried in as data; see its "source" field.
const V = JSON.parse(readFileSync(new URL('./fixtures/cosignature-v1.json', import.meta.url), 'utf8')) as Record<string, string> & {
  time: number;
  specTime: number;
};

/** An Ed25519 private key from a Go sumdb-style `PRIVATE+KEY+name+id+base64(type || seed)`. */
function fromSkey(skey: string): KeyObject {
  const seed = Buffer.from(skey.split('+').slice(4).join('+'), 'base64').subarray(1);
  return createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
}

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? 'TypeError';
  }
  return undefined;
};

describe('cosignature/v1', () => {
  it('reproduces a third-party cosignature byte for byte from the same key and time', () => {
    const key = fromSkey(V['witSkey'] as string);
    expect(cosignerVerifierKey('witness.example.com/vector', key)).to.equal(V['witVkey']);
    expect(cosign(V['text'] as string, 'witness.example.com/vector', key, V.time)).to.equal(V['witLine']);
  });

  it('verifies the third-party note: log signature (type 0x01) and cosignature (type 0x04) with its time', () => {
    const note = `${V['text']}\n${V['logLine']}${V['witLine']}`;
    const opened = openNote(note, [parseVerifierKey(V['logVkey'] as string)]);
    expect(opened.unknown).to.equal(1);
    const { text, sigs } = splitNote(note);
    expect(verifyCosignature(text, sigs[1]!, parseCosignerKey(V['witVkey'] as string))).to.equal(V.time);
    // The log's line is not this witness's: no match by name and key id.
    expect(verifyCosignature(text, sigs[0]!, parseCosignerKey(V['witVkey'] as string))).to.equal(undefined);
  });

  it('refuses a cosignature with a changed timestamp, signature or checkpoint', () => {
    const w = parseCosignerKey(V['witVkey'] as string);
    const [sig] = splitNote(`${V['text']}\n${V['witLine']}`).sigs;
    for (const i of [4, 11, 12, 75]) {
      const blob = Buffer.from(sig!.blob);
      blob[i] = (blob[i] as number) ^ 1;
      expect(code(() => verifyCosignature(V['text'] as string, { ...sig!, blob }, w))).to.equal('ERR_LEDGER_BAD_SIGNATURE');
    }
    expect(code(() => verifyCosignature((V['text'] as string).replace('1234', '1235'), sig!, w))).to.equal('ERR_LEDGER_BAD_SIGNATURE');
    expect(code(() => verifyCosignature(V['text'] as string, { ...sig!, blob: sig!.blob.subarray(0, 75) }, w))).to.equal('ERR_LEDGER_BAD_SIGNATURE');
  });

  it('signs the exact message of the C2SP spec example and encodes key id and timestamp as its example line does', () => {
    expect(cosignedMessage(V['specText'] as string, V.specTime).toString('utf8')).to.equal(V['specMessage']);
    const [sig] = splitNote(`${V['specText']}\n${V['specLine']}`).sigs;
    expect(sig!.keyId.toString('hex')).to.equal(V['specKeyId']);
    expect(Number(sig!.blob.readBigUInt64BE(4))).to.equal(V.specTime);
    expect(sig!.blob.length).to.equal(76);
  });

  it('produces signatures OpenSSL verifies over the cosignature/v1 message, and accepts ones OpenSSL made', () => {
    const tmp = tempDir('hie-cosign-');
    try {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const name = 'hie.federation/0011223344556677/witness/bravo';
      const text = 'hie.federation/0011223344556677/alpha\n7\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n';
      const time = 1_790_000_000;
      const line = cosign(text, name, privateKey, time);
      const [sig] = splitNote(`${text}\n${line}`).sigs;
      const pub = join(tmp.dir, 'pub.pem');
      const key = join(tmp.dir, 'key.pem');
      const msg = join(tmp.dir, 'msg');
      const sigFile = join(tmp.dir, 'sig');
      writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
      writeFileSync(key, privateKey.export({ type: 'pkcs8', format: 'pem' }));
      writeFileSync(msg, `cosignature/v1\ntime ${time}\n${text}`);
      writeFileSync(sigFile, sig!.blob.subarray(12));
      const v = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', msg, '-sigfile', sigFile], { encoding: 'utf8' });
      expect(v.stdout + v.stderr).to.match(/Signature Verified Successfully/);
      const later = time + 1;
      writeFileSync(msg, `cosignature/v1\ntime ${later}\n${text}`);
      const s = spawnSync('openssl', ['pkeyutl', '-sign', '-inkey', key, '-rawin', '-in', msg]);
      expect(s.status).to.equal(0);
      const ts = Buffer.alloc(8);
      ts.writeBigUInt64BE(BigInt(later));
      const blob = Buffer.concat([cosignerKeyId(name, publicKey), ts, s.stdout]);
      expect(verifyCosignature(text, { line: '', name, keyId: blob.subarray(0, 4), blob }, cosignerKey(name, publicKey))).to.equal(later);
    } finally {
      tmp.cleanup();
    }
  });

  it('gives the same key different ids as a note signer (0x01) and as a cosigner (0x04)', () => {
    const w = parseCosignerKey(V['witVkey'] as string);
    expect(w.keyId.toString('hex')).to.equal('416f103d');
    expect(noteKeyId(w.name, w.key).toString('hex')).to.not.equal('416f103d');
    expect(code(() => parseCosignerKey(V['logVkey'] as string))).to.equal('TypeError');
    expect(code(() => parseVerifierKey(V['witVkey'] as string))).to.equal('TypeError');
  });

  it('adds signature lines once per name and key id', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const text = V['text'] as string;
    const a = cosign(text, 'w.example/a', privateKey, 1);
    const a2 = cosign(text, 'w.example/a', privateKey, 2);
    const merged = addSignatures(`${text}\n${V['logLine']}`, [a, a2, a]);
    expect(splitNote(merged).sigs.map((s) => s.line)).to.deep.equal([V['logLine'], a]);
    expect(createPublicKey(privateKey).asymmetricKeyType).to.equal('ed25519');
  });
});
