import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import {
  formatCheckpoint,
  MAX_NOTE_SIGNATURES,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  rawEd25519,
  signCheckpointNote,
  signNote,
  verifierKeyString,
} from '../../ledger/note.ts';

// Known answers carried in as data:
// - golang.org/x/mod/sumdb/note (package documentation and note_test.go): the PeterNeumann key pair and signed note;
// - the C2SP signed-note specification (https://c2sp.org/signed-note, "Verifier keys", example): example.com/foo.
const GO_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const GO_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE =
  'This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';

function goSigner(): { name: string; key: ReturnType<typeof createPrivateKey> } {
  // The base64 part itself holds a '+': everything after the fourth one.
  const seed = Buffer.from(GO_SKEY.split('+').slice(4).join('+'), 'base64').subarray(1);
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return { name: 'PeterNeumann', key: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }) };
}

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe('signed notes (C2SP signed-note, Ed25519)', function () {
  it('reproduces the golang.org/x/mod/sumdb/note key id, verifier key and signed note byte for byte', function () {
    const s = goSigner();
    expect(noteKeyId(s.name, s.key).toString('hex')).to.equal('c74f20a3');
    expect(verifierKeyString(s.name, s.key)).to.equal(GO_VKEY);
    expect(signNote(GO_TEXT, [s])).to.equal(GO_NOTE);
    const opened = openNote(GO_NOTE, [parseVerifierKey(GO_VKEY)]);
    expect(opened.text).to.equal(GO_TEXT);
    expect(opened.verified).to.deep.equal([{ name: 'PeterNeumann', keyId: 'c74f20a3' }]);
  });

  it('verifies the example note of the C2SP signed-note specification', function () {
    const v = parseVerifierKey(SPEC_VKEY);
    expect(openNote(SPEC_NOTE, [v]).text).to.equal('This is an example message.\n');
  });

  it('ignores signatures by unknown keys, matches by name and id together, and refuses a bad signature by a known key', function () {
    const v = parseVerifierKey(GO_VKEY);
    const other = generateKeyPairSync('ed25519').privateKey;
    const both = signNote(GO_TEXT, [{ name: 'someone-else', key: other }, goSigner()]);
    expect(openNote(both, [v])).to.include({ unknown: 1 });
    expect(code(() => openNote(SPEC_NOTE, [v]))).to.equal('ERR_LEDGER_UNKNOWN_KEY');
    // Same name, another key: a different key id, so not a match.
    expect(code(() => openNote(signNote(GO_TEXT, [{ name: 'PeterNeumann', key: other }]), [v]))).to.equal('ERR_LEDGER_UNKNOWN_KEY');
    expect(code(() => openNote(GO_NOTE.replace('problem,', 'problem;'), [v]))).to.equal('ERR_LEDGER_BAD_SIGNATURE');
    const sigFlip = GO_NOTE.replace('x08go/ZJ', 'x08go/ZK');
    expect(code(() => openNote(sigFlip, [v]))).to.equal('ERR_LEDGER_BAD_SIGNATURE');
  });

  it('refuses malformed notes: no signature block, bad lines, duplicates, too many signatures, control characters', function () {
    const v = parseVerifierKey(GO_VKEY);
    const sigLine = GO_NOTE.slice(GO_TEXT.length + 1);
    for (const [desc, note] of [
      ['no blank line', GO_TEXT],
      ['no final newline', GO_NOTE.slice(0, -1)],
      ['hyphen not em dash', GO_NOTE.replace('\u2014', '-')],
      ['two spaces', GO_NOTE.replace('\u2014 ', '\u2014  ')],
      ['short blob', `${GO_TEXT}\n\u2014 PeterNeumann AAAA\n`],
      ['bad base64', GO_NOTE.replace('AM=\n', 'AM\n')],
      ['duplicate', `${GO_NOTE}${sigLine}`],
      ['control character', `a\u0007b\n\n${sigLine}`],
      ['not text', 42],
      ['too many', `${GO_NOTE}${`\u2014 x AAAAAAA=\n`.repeat(MAX_NOTE_SIGNATURES)}`],
    ] as const) {
      expect(
        code(() => openNote(note, [v])),
        desc,
      ).to.equal('ERR_LEDGER_NOTE_INVALID');
    }
  });

  it('writes and reads tlog checkpoints strictly and binds them to their origin', function () {
    const key = generateKeyPairSync('ed25519');
    const root = Buffer.alloc(32, 7);
    const origin = 'hie.federation/0123456789abcdef/myongji';
    const note = signCheckpointNote({ origin, size: 5, root }, key.privateKey);
    expect(note.startsWith(`${origin}\n5\n${root.toString('base64')}\n\n\u2014 ${origin} `)).to.equal(true);
    const cp = openCheckpoint(note, origin, [key.publicKey]);
    expect(cp.size).to.equal(5);
    expect(cp.root.equals(root)).to.equal(true);
    expect(code(() => openCheckpoint(note, 'hie.federation/0123456789abcdef/severance', [key.publicKey]))).to.equal('ERR_LEDGER_UNKNOWN_KEY');
    for (const bad of [
      'o\n05\nAAAA\n',
      `o\n5\n${root.toString('base64')}\next\n`,
      `o\n-1\n${root.toString('base64')}\n`,
      `o\n1\n${Buffer.alloc(31).toString('base64')}\n`,
    ])
      expect(
        code(() => parseCheckpoint(bad)),
        bad,
      ).to.equal('ERR_LEDGER_NOTE_INVALID');
    expect(formatCheckpoint(parseCheckpoint(`o\n0\n${root.toString('base64')}\n`))).to.equal(`o\n0\n${root.toString('base64')}\n`);
  });

  it('gives the raw public key of a key object each time, as a copy the caller may change', function () {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const first = rawEd25519(privateKey);
    expect(first.equals(rawEd25519(publicKey))).to.equal(true);
    first.fill(0);
    expect(rawEd25519(privateKey).equals(rawEd25519(publicKey))).to.equal(true);
    expect(rawEd25519(privateKey).every((b) => b === 0)).to.equal(false);
    expect(() => rawEd25519(generateKeyPairSync('x25519').publicKey)).to.throw(TypeError);
  });
});
