import { expect } from 'chai';
import { webcrypto } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, flattenedVerify, importJWK } from 'jose';
import canonicalize from 'canonicalize';
import {
  acceptPatientSession,
  b64u,
  exportPublic,
  generateDeviceKeys,
  jcs,
  jwkThumbprint,
  openPatientSession,
  signConsent,
  signJws,
  signPop,
  unb64u,
  verifyConsentSignature,
  verifyJws,
  verifyPop,
} from '../../patient-app/protocol.js';

const consent = {
  resourceType: 'Consent',
  status: 'active',
  provision: { purpose: [{ code: 'TREAT' }], period: { end: '2027-01-01T00:00:00.000Z' } },
  id: 'c1',
};

describe('patient channel protocol (patient-app/protocol.js)', () => {
  it('canonicalizes JSON as RFC 8785 does (checked against the canonicalize package)', () => {
    const samples = [consent, { b: [1, 2.5, -0, 1e21, 'é\u2028"'], a: { z: null, y: true } }, [{}, [], ''], { '\u20ac': 1, '\r': 2, '1': 3, a: 4 }];
    for (const v of samples) expect(jcs(v)).to.equal((canonicalize as unknown as (x: unknown) => string)(v));
  });

  it('round-trips base64url and refuses other text', () => {
    const bytes = new Uint8Array([0, 251, 255, 1, 2]);
    expect(Buffer.from(unb64u(b64u(bytes))).equals(Buffer.from(bytes))).to.equal(true);
    expect(b64u(bytes)).to.equal(Buffer.from(bytes).toString('base64url'));
    expect(() => unb64u('a+b/')).to.throw(TypeError);
  });

  it('names a key by its RFC 7638 thumbprint (as jose computes it)', async () => {
    const { sign } = await generateDeviceKeys();
    const jwk = await exportPublic(sign.publicKey);
    expect(await jwkThumbprint(jwk)).to.equal(await calculateJwkThumbprint(jwk, 'sha256'));
  });

  it('keeps the private device keys non-extractable', async () => {
    const { sign, ecdh } = await generateDeviceKeys();
    expect(sign.privateKey.extractable).to.equal(false);
    expect(ecdh.privateKey.extractable).to.equal(false);
    let refused = false;
    await webcrypto.subtle.exportKey('jwk', sign.privateKey).catch(() => (refused = true));
    expect(refused).to.equal(true);
  });

  it('signs consents as a detached ES256 JWS over the JCS bytes, which jose verifies too', async () => {
    const { sign } = await generateDeviceKeys();
    const jwk = await exportPublic(sign.publicKey);
    const kid = await jwkThumbprint(jwk);
    const jws = await signConsent(sign.privateKey, consent, kid);
    const [h, p, s] = jws.split('.');
    expect(p).to.equal('');
    const key = await importJWK(jwk, 'ES256');
    const { payload } = await flattenedVerify({ protected: h as string, payload: b64u(new TextEncoder().encode(jcs(consent))), signature: s as string }, key);
    expect(JSON.parse(Buffer.from(payload).toString())).to.deep.equal(consent);
    expect((await verifyConsentSignature(jws, jwk, consent)).kid).to.equal(kid);
  });

  it('refuses a consent altered after it was signed, and a signature by another key', async () => {
    const a = await generateDeviceKeys();
    const b = await generateDeviceKeys();
    const jwkA = await exportPublic(a.sign.publicKey);
    const jws = await signConsent(a.sign.privateKey, consent, await jwkThumbprint(jwkA));
    const widened = { ...consent, provision: { ...consent.provision, purpose: [{ code: 'TREAT' }, { code: 'HRESCH' }] } };
    let err: unknown;
    await verifyConsentSignature(jws, jwkA, widened).catch((e) => (err = e));
    expect(err).to.be.instanceOf(TypeError);
    err = undefined;
    await verifyConsentSignature(jws, await exportPublic(b.sign.publicKey), consent).catch((e) => (err = e));
    expect(err).to.be.instanceOf(TypeError);
  });

  it('makes attached JWS that jose verifies (proofs of possession) and checks the channel', async () => {
    const { sign } = await generateDeviceKeys();
    const jwk = await exportPublic(sign.publicKey);
    const pop = await signPop(sign.privateKey, 'A'.repeat(22), 1_700_000_000_000);
    await compactVerify(pop, await importJWK(jwk, 'ES256'));
    expect(await verifyPop(pop, jwk, 'A'.repeat(22))).to.equal(1_700_000_000);
    let err: unknown;
    await verifyPop(pop, jwk, 'B'.repeat(22)).catch((e) => (err = e));
    expect(err).to.be.instanceOf(TypeError);
    err = undefined;
    await verifyJws(await signJws(sign.privateKey, {}, new Uint8Array([1])), jwk).then(() => undefined);
    // Change the signature's first character: the last one partly holds padding bits, so changing it may change nothing.
    const [h, p, sig] = pop.split('.') as [string, string, string];
    await verifyJws(`${h}.${p}.${sig.startsWith('A') ? 'B' : 'A'}${sig.slice(1)}`, jwk).catch((e) => (err = e));
    expect(err).to.be.instanceOf(TypeError);
  });

  describe('session', () => {
    async function pair(channel = 'C'.repeat(22)) {
      const agent = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
      const agentJwk = await exportPublic(agent.publicKey);
      const p = await openPatientSession(agentJwk, channel);
      const a = await acceptPatientSession(agent.privateKey, channel, p.hello);
      return { patient: p.session, agent: a.session, agent2: agent, hello: p.hello };
    }

    it('carries messages both ways, each direction with its own nonces', async () => {
      const { patient, agent } = await pair();
      expect(await agent.open(await patient.seal({ t: 'log' }))).to.deep.equal({ t: 'log' });
      expect(await patient.open(await agent.seal({ t: 'ok', n: 1 }))).to.deep.equal({ t: 'ok', n: 1 });
      expect(await agent.open(await patient.seal({ t: 'again' }))).to.deep.equal({ t: 'again' });
    });

    it('refuses a replayed, reflected or altered message', async () => {
      const { patient, agent } = await pair();
      const m = await patient.seal({ t: 'approve' });
      await agent.open(m);
      const refusals: unknown[] = [];
      await agent.open(m).catch((e) => refusals.push(e));
      await patient.open(m).catch((e) => refusals.push(e));
      const n = await patient.seal({ t: 'x' });
      n[n.length - 1] = (n[n.length - 1] as number) ^ 1;
      await agent.open(n).catch((e) => refusals.push(e));
      expect(refusals).to.have.length(3);
      for (const r of refusals) expect(r).to.be.instanceOf(TypeError);
    });

    it('refuses a hello replayed onto another channel (the key is bound to the channel)', async () => {
      const { patient, agent2, hello } = await pair('C'.repeat(22));
      const other = await acceptPatientSession(agent2.privateKey, 'D'.repeat(22), hello);
      let err: unknown;
      await other.session.open(await patient.seal({ t: 'log' })).catch((e) => (err = e));
      expect(err).to.be.instanceOf(TypeError);
    });
  });
});
