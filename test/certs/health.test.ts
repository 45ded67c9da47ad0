import { join } from 'node:path';
import { expect } from 'chai';
import { certificateHealth, DEFAULT_CERT_WARN_DAYS, loadIdentity, parseCrl } from '../../certs/index.ts';
import { CertificateAuthority } from '../../certs/index.ts';
import { tempDir } from '../support/tmp.ts';

const DAY = 86_400_000;

describe('certificateHealth', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let ca: CertificateAuthority;
  const t0 = new Date('2026-06-01T00:00:00Z');

  before(() => {
    tmp = tempDir();
    ca = CertificateAuthority.init(join(tmp.dir, 'pki'), { keyBits: 2048, days: 400, now: t0 });
  });
  after(() => tmp.cleanup());

  it(`turns degraded ${DEFAULT_CERT_WARN_DAYS} days before the certificate expires, with the serial in the reason`, function () {
    const issued = ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'a'), days: 60, now: t0 });
    const identity = loadIdentity({ cert: issued.certPath, key: issued.keyPath, ca: issued.caPath }, t0);
    const end = Date.parse(identity.certificate.validTo);
    const early = certificateHealth(identity, undefined, new Date(end - (DEFAULT_CERT_WARN_DAYS + 1) * DAY));
    expect(early).to.include({ status: 'ok' });
    expect(early.reasons).to.deep.equal([]);
    expect(early.certExpiresInSeconds).to.equal((DEFAULT_CERT_WARN_DAYS + 1) * 86_400);
    const late = certificateHealth(identity, undefined, new Date(end - (DEFAULT_CERT_WARN_DAYS - 1) * DAY));
    expect(late.status).to.equal('degraded');
    expect(late.reasons.join(' ')).to.contain(issued.serial);
    expect(certificateHealth(identity, undefined, new Date(end - 20 * DAY), { certWarnDays: 30 }).status).to.equal('degraded');
  });

  it('turns degraded when the CA itself is close to its end', function () {
    const issued = ca.issueAgent({ id: 'bravo', outDir: join(tmp.dir, 'b'), days: 399, now: t0 });
    const identity = loadIdentity({ cert: issued.certPath, key: issued.keyPath, ca: issued.caPath }, t0);
    expect(certificateHealth(identity, undefined, new Date(t0.getTime() + 380 * DAY)).status).to.equal('ok');
    const h = certificateHealth(identity, undefined, new Date(t0.getTime() + 390 * DAY));
    expect(h.caExpiresInSeconds).to.be.below(11 * 86_400);
    expect(h.reasons.some((r) => r.startsWith('CA certificate expires'))).to.equal(true);
  });

  it('turns degraded once less than a quarter of the CRL validity is left, and reports its age', function () {
    const issued = ca.issueAgent({ id: 'charlie', outDir: join(tmp.dir, 'c'), days: 300, now: t0 });
    const identity = loadIdentity({ cert: issued.certPath, key: issued.keyPath, ca: issued.caPath }, t0);
    const crl = parseCrl(ca.crl({ days: 20, now: t0 }), identity.caPem);
    const span = (crl.nextUpdate as Date).getTime() - crl.thisUpdate.getTime();
    const at = (f: number): Date => new Date(crl.thisUpdate.getTime() + span * f);
    const fresh = certificateHealth(identity, crl, at(0.7));
    expect(fresh.status).to.equal('ok');
    expect(fresh.crlAgeSeconds).to.equal(Math.round((span * 0.7) / 1000));
    expect(fresh.crlNextUpdateInSeconds).to.equal(Math.round((span * 0.3) / 1000));
    const stale = certificateHealth(identity, crl, at(0.8));
    expect(stale.status).to.equal('degraded');
    expect(stale.reasons.join(' ')).to.match(/CRL \d+ is due for renewal/);
    expect(certificateHealth(identity, crl, at(1.1)).crlNextUpdateInSeconds).to.be.below(0);
  });
});
