import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CertificateAuthority, loadIdentity } from '../../../certs/index.ts';
import { main } from '../../../certs/cli.ts';
import { cardBundle, cardQrPng, cardTypes, issuerUrl, signCard } from '../../../certs/shc/index.ts';
import { loadIssuerKey, type IssuerKey } from '../../../hospital-agent/certificates/index.ts';
import { tempDir } from '../../support/tmp.ts';

const BASE = 'https://relay.example.org';

async function run(args: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(args, { out: (t) => (out += t) });
  return { code, out };
}

describe('hie-certs issuers and verify-card (certs/shc/cli.ts)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let pki: string;
  let key: IssuerKey;
  let ca: CertificateAuthority;

  before(async function () {
    tmp = tempDir();
    pki = join(tmp.dir, 'pki');
    ca = CertificateAuthority.init(pki, { keyBits: 2048 });
    const a = ca.issueAgent({ id: 'myongji', outDir: join(tmp.dir, 'agents') });
    key = await loadIssuerKey(join(tmp.dir, 'agent-keys'), loadIdentity({ cert: a.certPath, key: a.keyPath, ca: a.caPath }));
    expect((await run(['directory', 'init', '--dir', pki])).code).to.equal(0);
    await run(['directory', 'add', '--dir', pki, '--id', 'myongji', '--name', 'Myongji Hospital', '--org', 'Myongji Medical Foundation', '--role', 'hospital']);
    expect((await run(['directory', 'sign', '--dir', pki])).code).to.equal(0);
  });
  after(() => tmp.cleanup());

  /** A sick-leave card for Ara Kim signed now with the hospital's issuer key. */
  async function card(rid: string): Promise<string> {
    const bundle = cardBundle({
      purpose: 'sick-leave',
      bundle: {
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Patient', name: [{ family: 'Kim', given: ['Ara'] }], birthDate: '2001-01-01' } }],
      },
      period: { start: '2026-12-01', end: '2026-12-03' },
    });
    return signCard(
      {
        iss: issuerUrl(BASE, 'myongji'),
        nbf: Math.floor(Date.now() / 1000),
        vc: { type: cardTypes('sick-leave'), rid, credentialSubject: { fhirVersion: '4.0.1', fhirBundle: bundle as never } },
      },
      key.privateKey,
      key.jwk.kid,
    );
  }

  it("adds a hospital's key binding, signs the issuer directory, and verify-card says VALID for the QR PNG and the .smart-health-card file", async function () {
    const added = await run(['issuers', 'add-key', '--dir', pki, '--binding', key.bindingPath]);
    expect(added.out).to.contain(`key ${key.jwk.kid} of myongji added`);
    expect((await run(['issuers', 'sign', '--dir', pki, '--base', BASE])).out).to.contain('issuer directory 1 signed: 1 issuers');
    const jws = await card('ridCli00001');
    const png = join(tmp.dir, 'card.png');
    writeFileSync(png, (await cardQrPng(jws))[0] as Buffer);
    const file = join(tmp.dir, 'card.smart-health-card');
    writeFileSync(file, JSON.stringify({ verifiableCredential: [jws] }));
    const args = ['--directory', join(pki, 'issuers', 'issuers.jws'), '--ca', ca.caCertPath];
    const v = await run(['verify-card', png, ...args]);
    expect(v.code, v.out).to.equal(0);
    expect(v.out).to.match(/^VALID \(issuer Myongji Hospital, https:\/\/relay\.example\.org\/issuers\/myongji\)/);
    expect(v.out).to.contain('unfit for work from 2026-12-01 to 2026-12-03');
    expect((await run(['verify-card', file, ...args])).code).to.equal(0);

    await run(['issuers', 'revoke-card', '--dir', pki, '--kid', key.jwk.kid, '--rid', 'ridCli00001']);
    expect((await run(['issuers', 'sign', '--dir', pki, '--base', BASE])).out).to.contain('issuer directory 2 signed');
    const r = await run(['verify-card', png, ...args, '--json']);
    expect(r.code).to.equal(1);
    expect(JSON.parse(r.out).verdict).to.equal('revoked');
    const shown = await run(['issuers', 'show', '--dir', pki, '--json']);
    expect(JSON.parse(shown.out).issuers[0].crls[0]).to.deep.equal({ kid: key.jwk.kid, method: 'rid', ctr: 1, rids: ['ridCli00001'] });
  });

  it('refuses a key binding that does not verify, and says so in one line', async function () {
    const bad = join(tmp.dir, 'bad.jws');
    writeFileSync(bad, 'e30.e30.e30');
    try {
      await run(['issuers', 'add-key', '--dir', pki, '--binding', bad]);
      expect.fail('accepted');
    } catch (err) {
      expect((err as { code: string }).code).to.equal('ERR_SHC_KEY_BINDING_INVALID');
    }
  });

  it('revoke-key: once the next directory is signed, the key is listed as revoked and a card it signed is REVOKED (no ledger proof); a bad --kid or --at is refused', async function () {
    expect((await run(['issuers', 'add-key', '--dir', pki, '--binding', key.bindingPath])).code).to.equal(0);
    expect((await run(['issuers', 'sign', '--dir', pki, '--base', BASE])).code).to.equal(0);
    const file = join(tmp.dir, 'card2.smart-health-card');
    writeFileSync(file, JSON.stringify({ verifiableCredential: [await card('ridCli00002')] }));
    const verify = async (): Promise<{ code: number; verdict: string; reasons: string[] }> => {
      const r = await run(['verify-card', file, '--directory', join(pki, 'issuers', 'issuers.jws'), '--ca', ca.caCertPath, '--json']);
      const v = JSON.parse(r.out) as { verdict: string; reasons: string[] };
      return { code: r.code, ...v };
    };
    expect(await verify()).to.include({ code: 0, verdict: 'valid' });

    const revoked = await run(['issuers', 'revoke-key', '--dir', pki, '--kid', key.jwk.kid, '--at', '2026-12-01T10:00:00Z']);
    expect(revoked.code).to.equal(0);
    expect(revoked.out).to.equal(`key ${key.jwk.kid} revoked at 2026-12-01T10:00:00.000Z; run 'hie-certs issuers sign' to publish\n`);
    // Recorded, not yet published: the signed directory still trusts the key.
    expect(await verify()).to.include({ code: 0, verdict: 'valid' });
    const signed = await run(['issuers', 'sign', '--dir', pki, '--base', BASE]);
    expect(signed.out).to.match(/^issuer directory \d+ signed: 1 issuers/);

    const shown = JSON.parse((await run(['issuers', 'show', '--dir', pki, '--json'])).out) as {
      issuers: Array<{ keys: Array<{ kid: string }>; revokedKeys: Array<{ kid: string; revokedAt: string }> }>;
    };
    expect(shown.issuers[0]!.keys).to.deep.equal([]);
    expect(shown.issuers[0]!.revokedKeys.map(({ kid, revokedAt }) => ({ kid, revokedAt }))).to.deep.equal([
      { kid: key.jwk.kid, revokedAt: '2026-12-01T10:00:00.000Z' },
    ]);
    expect((await run(['issuers', 'show', '--dir', pki])).out).to.match(/^myongji\tactive\t\S+\tkeys -\trevoked keys 1$/m);
    const v = await verify();
    expect(v).to.include({ code: 1, verdict: 'revoked' });
    expect(v.reasons.join(' ')).to.contain(`key ${key.jwk.kid} of Myongji Hospital was revoked at 2026-12-01T10:00:00.000Z`);

    for (const [args, message] of [
      [['--kid', 'not-a-thumbprint'], /--kid must be a key thumbprint/],
      [['--kid', key.jwk.kid, '--at', 'yesterday'], /--at must be an ISO time/],
    ] as const) {
      const state = readFileSync(join(pki, 'issuers', 'state.json'), 'utf8');
      try {
        await run(['issuers', 'revoke-key', '--dir', pki, ...args]);
        expect.fail(`accepted ${args.join(' ')}`);
      } catch (err) {
        expect((err as { code: string }).code).to.equal('ERR_PKI_INVALID_ARGUMENT');
        expect((err as Error).message).to.match(message);
      }
      expect(readFileSync(join(pki, 'issuers', 'state.json'), 'utf8')).to.equal(state);
    }
  });
});
