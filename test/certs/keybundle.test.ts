import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  CertificateAuthority,
  createKeyBundle,
  generateAgentKeys,
  jcs,
  loadIdentity,
  parseCrl,
  PkiError,
  verifyKeyBundle,
  type KeyBundle,
  type PkiErrorCode,
} from '../../certs/index.ts';
import { sign } from 'node:crypto';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

async function expectCode(p: Promise<unknown>, code: PkiErrorCode): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(PkiError);
    expect((err as PkiError).code, (err as Error).message).to.equal(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('key bundles', function () {
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let caPem: string;
  let bundle: KeyBundle;

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['myongji', 'severance', 'mgh']);
    caPem = readFileSync(fed.caPath, 'utf8');
    bundle = await createKeyBundle(loadIdentity(fed.agents['myongji']!), generateAgentKeys());
  });
  after(() => tmp.cleanup());

  it('verifies a bundle signed by the agent certificate and imports its keys', async function () {
    const v = await verifyKeyBundle(JSON.parse(JSON.stringify(bundle)), { caPem });
    expect(v.agent).to.equal('myongji');
    expect(v.signingKey.asymmetricKeyType).to.equal('ed25519');
    expect(v.encryptionKey.asymmetricKeyType).to.equal('x25519');
    expect(v.signingKid).to.match(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a bundle whose keys were swapped after signing', async function () {
    const other = generateAgentKeys();
    const swapped = await createKeyBundle(loadIdentity(fed.agents['myongji']!), other);
    const forged = { ...bundle, encryption: swapped.encryption };
    await expectCode(verifyKeyBundle(forged, { caPem }), 'ERR_PKI_BUNDLE_SIGNATURE');
  });

  it('refuses a bundle that claims another agent', async function () {
    const forged = { ...bundle, agent: 'severance' };
    await expectCode(verifyKeyBundle(forged, { caPem }), 'ERR_PKI_BUNDLE_ID_MISMATCH');
  });

  it('refuses a bundle re-signed by another agent for a different id', async function () {
    const sev = loadIdentity(fed.agents['severance']!);
    const { sig: _s, ...body } = { ...bundle, cert: sev.certPem };
    const resigned = { ...body, sig: sign('sha256', jcs(body), sev.privateKey).toString('base64url') };
    await expectCode(verifyKeyBundle(resigned, { caPem }), 'ERR_PKI_BUNDLE_ID_MISMATCH');
  });

  it('refuses a bundle from a certificate of another CA', async function () {
    const other = tempDir();
    try {
      const foreign = makeFederation(other.dir, ['myongji']);
      const b = await createKeyBundle(loadIdentity(foreign.agents['myongji']!), generateAgentKeys());
      await expectCode(verifyKeyBundle(b, { caPem }), 'ERR_PKI_BUNDLE_UNTRUSTED');
    } finally {
      other.cleanup();
    }
  });

  it('refuses a bundle of a revoked certificate, but accepts it at a time before the revocation', async function () {
    const b = await createKeyBundle(loadIdentity(fed.agents['mgh']!), generateAgentKeys());
    // CRL times have one-second resolution: keep the probes well clear of it.
    const revokedAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 5000);
    fed.ca.revoke({ id: 'mgh', now: revokedAt });
    const crl = parseCrl(readFileSync(fed.crlPath, 'utf8'), caPem);
    await expectCode(verifyKeyBundle(b, { caPem, crl, now: new Date(revokedAt.getTime() + 2000) }), 'ERR_PKI_BUNDLE_REVOKED');
    const earlier = await verifyKeyBundle(b, { caPem, crl, now: new Date(revokedAt.getTime() - 2000) });
    expect(earlier.agent).to.equal('mgh');
  });

  it('judges a revocation at the CRL one-second resolution for a past signature (the head.key-validity fault)', async function () {
    const b = await createKeyBundle(loadIdentity(fed.addAgent('second-revoked')), generateAgentKeys(), { now: new Date(Date.now() - 60_000) });
    const S = Math.floor(Date.now() / 1000) * 1000 + 5000;
    fed.ca.revoke({ id: 'second-revoked', now: new Date(S + 380) });
    const crl = parseCrl(readFileSync(fed.crlPath, 'utf8'), caPem);
    const times = fed.ca.revocationTimes();
    // Signed in the revocation's second, before it: counts, with or without the CA's exact time.
    expect((await verifyKeyBundle(b, { caPem, crl, signedAt: new Date(S + 127) })).agent).to.equal('second-revoked');
    expect((await verifyKeyBundle(b, { caPem, crl, signedAt: new Date(S + 379), revocationTimes: times })).agent).to.equal('second-revoked');
    // Later in that second: the CRL alone cannot tell, the exact time can.
    expect((await verifyKeyBundle(b, { caPem, crl, signedAt: new Date(S + 999) })).agent).to.equal('second-revoked');
    await expectCode(verifyKeyBundle(b, { caPem, crl, signedAt: new Date(S + 380), revocationTimes: times }), 'ERR_PKI_BUNDLE_REVOKED');
    // A later second: refused.
    await expectCode(verifyKeyBundle(b, { caPem, crl, signedAt: new Date(S + 1000) }), 'ERR_PKI_BUNDLE_REVOKED');
    // A present use once the listed second has begun: revoked (the CRL exists, so the revocation has happened).
    await expectCode(verifyKeyBundle(b, { caPem, crl, now: new Date(S + 127) }), 'ERR_PKI_BUNDLE_REVOKED');
    expect((await verifyKeyBundle(b, { caPem, crl, now: new Date(S - 1) })).agent).to.equal('second-revoked');
    try {
      await verifyKeyBundle(b, { caPem, crl, now: new Date(S), signedAt: new Date(S) });
      expect.fail('both now and signedAt');
    } catch (err) {
      expect(err).to.be.instanceOf(TypeError);
    }
  });

  it("compares notBefore and notAfter at one-second resolution: valid through the notAfter second's last millisecond", async function () {
    const S = Math.floor(Date.now() / 1000) * 1000;
    // The CA's index says notAfter S + 10.5 s, the certificate S + 10 s.
    const files = fed.addAgent('second-expiry', { days: 1, notBefore: new Date(S + 10_500 - 86_400_000) });
    const identity = loadIdentity(files);
    // notBefore likewise: S - 86 389.5 s in the index, S - 86 390 s in the certificate; a bundle made in between is within it.
    const notBefore = S - 86_390_000;
    expect(new Date(identity.certificate.validFrom).getTime()).to.equal(notBefore);
    const b = await createKeyBundle(identity, generateAgentKeys(), { now: new Date(notBefore + 200) });
    expect(b.expires).to.equal(new Date(S + 10_999).toISOString());
    for (const at of [notBefore + 200, S + 10_000, S + 10_999])
      expect((await verifyKeyBundle(b, { caPem, signedAt: new Date(at) })).agent).to.equal('second-expiry');
    await expectCode(verifyKeyBundle(b, { caPem, signedAt: new Date(S + 11_000) }), 'ERR_PKI_BUNDLE_EXPIRED');
    expect(fed.ca.list(new Date(S + 10_999)).find((c) => c.id === 'second-expiry')?.status).to.equal('valid');
    expect(fed.ca.list(new Date(S + 11_000)).find((c) => c.id === 'second-expiry')?.status).to.equal('expired');
  });

  it('refuses a bundle outside its validity', async function () {
    const later = new Date(Date.now() + 400 * 86_400_000);
    await expectCode(verifyKeyBundle(bundle, { caPem, now: later }), 'ERR_PKI_BUNDLE_EXPIRED');
    const short = await createKeyBundle(loadIdentity(fed.agents['severance']!), generateAgentKeys(), { days: 1 });
    await expectCode(verifyKeyBundle(short, { caPem, now: new Date(Date.now() + 2 * 86_400_000) }), 'ERR_PKI_BUNDLE_EXPIRED');
  });

  it('refuses malformed bundles with a path to the problem', async function () {
    await expectCode(verifyKeyBundle(null, { caPem }), 'ERR_PKI_BUNDLE_INVALID');
    await expectCode(verifyKeyBundle({ ...bundle, extra: 1 }, { caPem }), 'ERR_PKI_BUNDLE_INVALID');
    await expectCode(verifyKeyBundle({ ...bundle, signing: { ...bundle.signing, kid: 'A'.repeat(43) } }, { caPem }), 'ERR_PKI_BUNDLE_SIGNATURE');
    try {
      await verifyKeyBundle({ ...bundle, agent: 'Bad Id' }, { caPem });
    } catch (err) {
      expect((err as Error).message).to.contain('agent');
    }
  });

  it('binds a rotated bundle to the same certificate; both stay verifiable', async function () {
    const id = loadIdentity(fed.agents['myongji']!);
    const next = await createKeyBundle(id, generateAgentKeys());
    const v1 = await verifyKeyBundle(bundle, { caPem });
    const v2 = await verifyKeyBundle(next, { caPem });
    expect(v1.signingKid).to.not.equal(v2.signingKid);
    expect(v1.certSerial).to.equal(v2.certSerial);
  });

  it('uses a CA created without the test helper too', async function () {
    const t = tempDir();
    try {
      const ca = CertificateAuthority.init(join(t.dir, 'pki'), { keyBits: 2048 });
      const a = ca.issueAgent({ id: 'solo', outDir: join(t.dir, 'out') });
      const b = await createKeyBundle(loadIdentity({ cert: a.certPath, key: a.keyPath, ca: a.caPath }), generateAgentKeys());
      expect((await verifyKeyBundle(b, { caPem: ca.caCertPem() })).agent).to.equal('solo');
    } finally {
      t.cleanup();
    }
  });
});
