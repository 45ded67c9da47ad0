import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { CompactEncrypt, compactDecrypt } from 'jose';
import { JweError, openJwe, sealJwe } from '../../../hospital-agent/crypto/jwe.ts';

const parties = { kid: 'kid-bravo', apu: Buffer.from('alpha'), apv: Buffer.from('bravo') };

/** Rewrites the protected header of a compact JWE (the tag no longer covers it). */
function withHeader(jwe: string, edit: (h: Record<string, unknown>) => void): string {
  const parts = jwe.split('.');
  const h = JSON.parse(Buffer.from(parts[0] as string, 'base64url').toString('utf8')) as Record<string, unknown>;
  edit(h);
  parts[0] = Buffer.from(JSON.stringify(h)).toString('base64url');
  return parts.join('.');
}

function flip(jwe: string, index: number): string {
  const parts = jwe.split('.');
  const b = Buffer.from(parts[index] as string, 'base64url');
  b[0] = (b[0] as number) ^ 1;
  parts[index] = b.toString('base64url');
  return parts.join('.');
}

function refused(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(JweError);
    expect((err as Error).message).to.match(message);
    return;
  }
  expect.fail('the JWE opened');
}

describe('JWE ECDH-ES+A256KW over X25519 (node:crypto)', function () {
  const bravo = generateKeyPairSync('x25519');
  const cek = randomBytes(32);

  it('seals a JWE that jose opens, with the party names in the protected header', async function () {
    const jwe = sealJwe(cek, bravo.publicKey, parties);
    const opened = await compactDecrypt(jwe, bravo.privateKey, { keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'] });
    expect(Buffer.from(opened.plaintext).equals(cek)).to.equal(true);
    expect(opened.protectedHeader).to.include({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: 'kid-bravo', apu: 'YWxwaGE', apv: 'YnJhdm8' });
  });

  it('opens a JWE that jose sealed', async function () {
    const jwe = await new CompactEncrypt(cek)
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: 'kid-bravo' })
      .setKeyManagementParameters({ apu: parties.apu, apv: parties.apv })
      .encrypt(bravo.publicKey);
    const opened = openJwe(jwe, bravo.privateKey);
    expect(opened.plaintext.equals(cek)).to.equal(true);
    expect([opened.kid, opened.apu.toString(), opened.apv.toString()]).to.deep.equal(['kid-bravo', 'alpha', 'bravo']);
  });

  it('uses a fresh ephemeral key for every JWE', function () {
    const epk = (jwe: string): string => (JSON.parse(Buffer.from(jwe.split('.')[0] as string, 'base64url').toString()) as { epk: { x: string } }).epk.x;
    expect(epk(sealJwe(cek, bravo.publicKey, parties))).to.not.equal(epk(sealJwe(cek, bravo.publicKey, parties)));
  });

  it('refuses the wrong private key', function () {
    refused(() => openJwe(sealJwe(cek, bravo.publicKey, parties), generateKeyPairSync('x25519').privateKey), /does not unwrap/);
  });

  it('refuses a protected header changed in transit (other party names or key id)', function () {
    const jwe = sealJwe(cek, bravo.publicKey, parties);
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['kid'] = 'kid-other')),
          bravo.privateKey,
        ),
      /does not authenticate/,
    );
    // Another apv derives another key-encryption key, so the wrapped key no longer unwraps.
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['apv'] = Buffer.from('delta').toString('base64url'))),
          bravo.privateKey,
        ),
      /does not unwrap/,
    );
  });

  it('refuses other algorithms, extra header fields and a low-order ephemeral key', function () {
    const jwe = sealJwe(cek, bravo.publicKey, parties);
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['alg'] = 'ECDH-ES')),
          bravo.privateKey,
        ),
      /other algorithms/,
    );
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['zip'] = 'DEF')),
          bravo.privateKey,
        ),
      /unexpected fields/,
    );
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['epk'] = { kty: 'OKP', crv: 'X25519', x: Buffer.alloc(32).toString('base64url') })),
          bravo.privateKey,
        ),
      /key agreement|no secret/,
    );
    refused(
      () =>
        openJwe(
          withHeader(jwe, (h) => void (h['epk'] = { kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' })),
          bravo.privateKey,
        ),
      /epk/,
    );
  });

  it('refuses a flipped bit in the wrapped key, the iv, the ciphertext or the tag, and a truncated JWE', function () {
    const jwe = sealJwe(cek, bravo.publicKey, parties);
    refused(() => openJwe(flip(jwe, 1), bravo.privateKey), /does not unwrap/);
    for (const i of [2, 3, 4]) refused(() => openJwe(flip(jwe, i), bravo.privateKey), /does not authenticate/);
    refused(() => openJwe(jwe.split('.').slice(0, 4).join('.'), bravo.privateKey), /compact serialization/);
    refused(() => openJwe(jwe.replace('.', '.!'), bravo.privateKey), /base64url|wrong length/);
  });

  describe('without party names (the sealed messages agents send each other)', function () {
    const msg = Buffer.from('eyJhbGciOiJFZERTQSJ9.e30.c2ln', 'utf8');

    it('seals a JWE with no apu or apv that jose opens, and opens one jose sealed', async function () {
      const jwe = sealJwe(msg, bravo.publicKey, { kid: 'kid-bravo' });
      const opened = await compactDecrypt(jwe, bravo.privateKey, { keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'] });
      expect(Buffer.from(opened.plaintext).equals(msg)).to.equal(true);
      expect(Object.keys(opened.protectedHeader).sort()).to.deep.equal(['alg', 'enc', 'epk', 'kid']);
      const byJose = await new CompactEncrypt(msg).setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: 'kid-bravo' }).encrypt(bravo.publicKey);
      const mine = openJwe(byJose, bravo.privateKey, { parties: false });
      expect(mine.plaintext.equals(msg)).to.equal(true);
      expect(mine.kid).to.equal('kid-bravo');
    });

    it('refuses party names where none are expected, and their absence where they are', function () {
      refused(() => openJwe(sealJwe(cek, bravo.publicKey, parties), bravo.privateKey, { parties: false }), /unexpected fields/);
      refused(() => openJwe(sealJwe(msg, bravo.publicKey, { kid: 'kid-bravo' }), bravo.privateKey), /unexpected fields/);
      expect(() => sealJwe(msg, bravo.publicKey, { kid: 'k', apu: Buffer.from('a') })).to.throw(TypeError);
    });

    it('refuses a JWE longer than maxChars', function () {
      const jwe = sealJwe(Buffer.alloc(5000, 1), bravo.publicKey, { kid: 'kid-bravo' });
      refused(() => openJwe(jwe, bravo.privateKey, { parties: false }), /compact serialization/);
      expect(openJwe(jwe, bravo.privateKey, { parties: false, maxChars: 16_384 }).plaintext.length).to.equal(5000);
    });
  });
});
