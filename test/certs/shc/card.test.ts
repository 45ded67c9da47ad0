import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { expect } from 'chai';
import {
  cardBundle,
  cardCrlSchema,
  cardQrPng,
  cardTypes,
  decodeCard,
  issuerJwk,
  issuerJwkSchema,
  jwkThumbprint,
  jwsFromQr,
  MAX_SINGLE_QR_JWS,
  qrTexts,
  readQrPng,
  signCard,
  toNumeric,
  verifyCard,
  type Issuer,
} from '../../../certs/shc/index.ts';

const fixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../fixtures/shc/${name}`, import.meta.url), 'utf8'));
const SPEC_ISS = 'https://spec.smarthealth.cards/examples/issuer';
type Jwk = { kid: string; kty: 'EC'; crv: 'P-256'; x: string; y: string; d?: string; x5c?: string[]; crlVersion?: number; use: 'sig'; alg: 'ES256' };
const specPublic = (fixture('jwks.json') as { keys: Jwk[] }).keys;
const specPrivate = (fixture('issuer.jwks.private.json') as { keys: Jwk[] }).keys;
const specCrl = cardCrlSchema.parse(fixture('3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s.json'));
const KID0 = '3Kfdg-XwP-7gXyywtUfUADwBumDOPKMQx-iELL11W9s';
const specKey = createPrivateKey({ key: specPrivate.find((k) => k.kid === KID0) as never, format: 'jwk' });
/** The spec's example issuer as our verifier sees it: its published JWKS and CRL. */
const specIssuer: Issuer = {
  id: 'spec-example',
  name: 'SMART Health Cards example issuer',
  status: 'active',
  iss: SPEC_ISS,
  keys: specPublic.map((k) => issuerJwkSchema.parse(k)),
  revokedKeys: [],
  crls: [specCrl],
};
const specDirectory = { byIss: new Map([[SPEC_ISS, specIssuer]]) };
const payload = (bundle: Record<string, unknown>, nbf: number, rid?: string) => ({
  iss: SPEC_ISS,
  nbf,
  vc: { type: cardTypes('vaccination'), ...(rid ? { rid } : {}), credentialSubject: { fhirVersion: '4.0.1', fhirBundle: bundle as never } },
});

describe("SMART Health Card format (certs/shc) against the spec's published examples", function () {
  it("every kid of the spec's published JWKS is the RFC 7638 thumbprint of its key, and ours computes the same", async function () {
    for (const k of [...specPublic, ...specPrivate]) expect(await jwkThumbprint(k)).to.equal(k.kid);
    const mine = await issuerJwk(specKey);
    expect(mine.kid).to.equal(KID0);
    expect(issuerJwkSchema.parse(specPublic[0]).crlVersion).to.equal(specCrl.ctr);
  });

  it("minimises the spec's example-0 bundle into resource:N fullUrls with no id, display or narrative, keeping meta.security", function () {
    const bundle = cardBundle({ purpose: 'vaccination', bundle: fixture('covid-vaccines-bundle.json') });
    const text = JSON.stringify(bundle);
    expect(text).not.to.match(/"(id|display|text)":/);
    const entries = bundle['entry'] as Array<{ fullUrl: string; resource: Record<string, unknown> }>;
    expect(entries.map((e) => e.fullUrl)).to.deep.equal(entries.map((_, i) => `resource:${i}`));
    expect(entries[0]?.resource['resourceType']).to.equal('Patient');
    expect(entries.filter((e) => e.resource['resourceType'] === 'Immunization')).to.have.length(3);
    for (const e of entries.slice(1)) expect((e.resource['patient'] as { reference: string }).reference).to.equal('resource:0');
    expect(text).to.contain('"security"');
  });

  it('signs a card the SHC way: header {zip: DEF, alg: ES256, kid}, raw-DEFLATE payload, one QR of shc:/ digits under 1195 characters', async function () {
    const bundle = cardBundle({ purpose: 'vaccination', bundle: fixture('covid-vaccines-bundle.json') });
    const jws = await signCard(payload(bundle, 1_700_000_000), specKey, KID0);
    const [h, p] = jws.split('.') as [string, string];
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).to.deep.equal({ zip: 'DEF', alg: 'ES256', kid: KID0 });
    // Raw DEFLATE, no zlib header: inflateRaw reads it back to the claims.
    expect(JSON.parse(inflateRawSync(Buffer.from(p, 'base64url')).toString()).iss).to.equal(SPEC_ISS);
    expect(jws.length).to.be.at.most(MAX_SINGLE_QR_JWS);
    const texts = qrTexts(jws);
    expect(texts).to.have.length(1);
    expect(texts[0]).to.match(/^shc:\/\d+$/);
    expect(texts[0]?.length).to.equal(5 + 2 * jws.length);
    expect(jwsFromQr(texts)).to.equal(jws);
    const check = await verifyCard(jws, specDirectory);
    expect(check.verdict, check.reasons.join('; ')).to.equal('valid');
    expect(check.statements.join('\n')).to.contain('patient: John B. Anyperson, born 1951-01-20');
  });

  it("encodes each character as its code minus 45 in two digits (the spec's numeric mode), and refuses malformed QR texts", function () {
    expect(toNumeric('-')).to.equal('00');
    expect(toNumeric('ey')).to.equal(`${'e'.charCodeAt(0) - 45}${'y'.charCodeAt(0) - 45}`);
    expect(jwsFromQr(['shc:/5676'])).to.equal('ey');
    for (const bad of ['shc:/567', 'shc:/99', 'http://x', 'shc:/2/2/5676']) expect(() => jwsFromQr([bad]), bad).to.throw(/shc|digit|chunk/);
  });

  it('chunks only a JWS longer than 1195 characters, into balanced chunks that reassemble in any order', function () {
    const long = 'a'.repeat(3000);
    const texts = qrTexts(long);
    expect(texts).to.have.length(3);
    expect(texts[0]).to.match(/^shc:\/1\/3\/\d+$/);
    expect(jwsFromQr([texts[2] as string, texts[0] as string, texts[1] as string])).to.equal(long);
    expect(qrTexts('a'.repeat(MAX_SINGLE_QR_JWS))).to.have.length(1);
  });

  it("applies the spec's published revocation list: a listed rid is revoked, a rid.timestamp only for cards issued before it", async function () {
    const bundle = cardBundle({ purpose: 'vaccination', bundle: fixture('covid-vaccines-bundle.json') });
    const plain = specCrl.rids.find((r) => !r.includes('.')) as string;
    const timed = specCrl.rids.find((r) => r.includes('.')) as string;
    const [timedRid, until] = timed.split('.') as [string, string];
    const check = async (nbf: number, rid: string) => (await verifyCard(await signCard(payload(bundle, nbf, rid), specKey, KID0), specDirectory)).verdict;
    expect(await check(1_700_000_000, plain)).to.equal('revoked');
    expect(await check(Number(until) - 10, timedRid)).to.equal('revoked');
    expect(await check(Number(until) + 10, timedRid)).to.equal('valid');
    expect(await check(1_700_000_000, 'notListed')).to.equal('valid');
  });

  it("renders a PNG whose QR code jsQR reads back as the card's shc:/ text", async function () {
    const bundle = cardBundle({ purpose: 'vaccination', bundle: fixture('covid-vaccines-bundle.json') });
    const jws = await signCard(payload(bundle, 1_700_000_000), specKey, KID0);
    const [png] = await cardQrPng(jws);
    const read = readQrPng(png as Buffer);
    expect(read).to.equal(qrTexts(jws)[0]);
    expect(jwsFromQr([read])).to.equal(jws);
  });

  it('says forged for one changed character of the payload, and invalid for what is no card', async function () {
    const bundle = cardBundle({ purpose: 'vaccination', bundle: fixture('covid-vaccines-bundle.json') });
    const jws = await signCard(payload(bundle, 1_700_000_000), specKey, KID0);
    const [h, p, s] = jws.split('.') as [string, string, string];
    for (const i of [0, Math.floor(p.length / 2), p.length - 2]) {
      const c = p[i] === 'A' ? 'B' : 'A';
      const changed = `${h}.${p.slice(0, i)}${c}${p.slice(i + 1)}.${s}`;
      expect((await verifyCard(changed, specDirectory)).verdict, `char ${i}`).to.equal('forged');
    }
    expect((await verifyCard('hello', specDirectory)).verdict).to.equal('invalid');
  });

  it('refuses a header without zip DEF or with another alg, and a payload that inflates past the limit', async function () {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = await issuerJwk(other.publicKey);
    const { CompactSign } = await import('jose');
    const plain = await new CompactSign(Buffer.from('{"iss":"x"}')).setProtectedHeader({ alg: 'ES256', kid: jwk.kid }).sign(other.privateKey);
    expect(() => decodeCard(plain)).to.throw(/zip/);
    const { deflateRawSync } = await import('node:zlib');
    const bomb = await new CompactSign(deflateRawSync(Buffer.alloc(2_000_000, 0x20)))
      .setProtectedHeader({ zip: 'DEF', alg: 'ES256', kid: jwk.kid })
      .sign(other.privateKey);
    expect(() => decodeCard(bomb)).to.throw(/at most/);
  });
});
