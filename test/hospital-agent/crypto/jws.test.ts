import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, compactVerify } from 'jose';
import { signCompactEdDsa } from '../../../hospital-agent/crypto/index.ts';

const ed = generateKeyPairSync('ed25519');
const x = generateKeyPairSync('x25519');
const payload = Buffer.from('{"resourceType":"ClaimResponse","note":"é ü"}', 'utf8');

describe('signCompactEdDsa', function () {
  it('makes the JWS jose makes, byte for byte, and jose verifies it', async function () {
    const header = { kid: 'kid-1', typ: 'hie-medication-request+jws', cty: 'application/fhir+json' };
    const mine = signCompactEdDsa(payload, header, ed.privateKey);
    const theirs = await new CompactSign(payload).setProtectedHeader({ alg: 'EdDSA', ...header }).sign(ed.privateKey);
    expect(mine).to.equal(theirs);
    const { payload: back, protectedHeader } = await compactVerify(mine, ed.publicKey, { algorithms: ['EdDSA'] });
    expect(Buffer.from(back).equals(payload)).to.equal(true);
    expect(protectedHeader).to.deep.equal({ alg: 'EdDSA', ...header });
  });

  it('refuses a key that is not an Ed25519 private key', function () {
    expect(() => signCompactEdDsa(payload, { kid: 'k' }, ed.publicKey)).to.throw(TypeError);
    expect(() => signCompactEdDsa(payload, { kid: 'k' }, x.privateKey)).to.throw(TypeError);
  });
});
