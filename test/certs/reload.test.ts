import { once } from 'node:events';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CertificateAuthority, IdentityWatcher, loadIdentity, PkiError, writeFileAtomic } from '../../certs/index.ts';
import { tempDir } from '../support/tmp.ts';

describe('IdentityWatcher', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let ca: CertificateAuthority;
  let files: { cert: string; key: string; ca: string };

  beforeEach(() => {
    tmp = tempDir();
    ca = CertificateAuthority.init(join(tmp.dir, 'pki'), { keyBits: 2048 });
    const issued = ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'agent') });
    files = { cert: issued.certPath, key: issued.keyPath, ca: issued.caPath };
  });
  afterEach(() => tmp.cleanup());

  it('refuses a half-written certificate and keeps the identity in force, then adopts the complete one', function () {
    const initial = loadIdentity(files);
    const w = new IdentityWatcher(files, initial, { expectId: 'alpha' });
    const rejected: PkiError[] = [];
    w.on('rejected', (e) => rejected.push(e));
    const renewed = ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'next'), renew: true });
    const pem = readFileSync(renewed.certPath, 'utf8');
    writeFileSync(files.key, readFileSync(renewed.keyPath));
    writeFileSync(files.cert, pem.slice(0, pem.length / 2));
    expect(w.reload()).to.equal(false);
    expect(w.current).to.equal(initial);
    expect(rejected.map((e) => e.code)).to.deep.equal(['ERR_PKI_CERT_INVALID']);
    // The same broken state is reported once, not at every poll.
    expect(w.reload()).to.equal(false);
    expect(rejected).to.have.length(1);
    writeFileSync(files.cert, pem);
    expect(w.reload()).to.equal(true);
    expect(w.current.serial).to.equal(renewed.serial);
    expect(w.reload()).to.equal(false);
  });

  it('refuses a certificate for another hospital', function () {
    const w = new IdentityWatcher(files, loadIdentity(files), { expectId: 'alpha' });
    const other = ca.issueAgent({ id: 'bravo', outDir: join(tmp.dir, 'bravo') });
    copyFileSync(other.keyPath, files.key);
    copyFileSync(other.certPath, files.cert);
    let why = '';
    w.on('rejected', (e) => (why = e.message));
    expect(w.reload()).to.equal(false);
    expect(why).to.contain("names 'bravo', not 'alpha'");
  });

  it('adopts a CA bundle (old and new root during a rollover) and then a certificate from the new root', function () {
    const w = new IdentityWatcher(files, loadIdentity(files));
    const next = CertificateAuthority.init(join(tmp.dir, 'pki-2'), { keyBits: 2048, name: 'Next Root' });
    writeFileAtomic(files.ca, `${readFileSync(files.ca, 'utf8')}${next.caCertPem()}`, 0o644);
    expect(w.reload()).to.equal(true);
    expect(w.current.caPem).to.contain(next.caCertPem().trim());
    const moved = next.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'moved') });
    copyFileSync(moved.keyPath, files.key);
    copyFileSync(moved.certPath, files.cert);
    expect(w.reload()).to.equal(true);
    expect(w.current.serial).to.equal(moved.serial);
  });

  it('notices a change on disk by itself (file events or the poll) and emits change', async function () {
    const w = new IdentityWatcher(files, loadIdentity(files), { pollMs: 100, debounceMs: 50 }).start();
    try {
      const renewed = ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'auto'), renew: true });
      const changed = once(w, 'change');
      writeFileAtomic(files.key, readFileSync(renewed.keyPath), 0o600);
      writeFileAtomic(files.cert, readFileSync(renewed.certPath), 0o644);
      const [identity] = (await changed) as [{ serial: string }];
      expect(identity.serial).to.equal(renewed.serial);
    } finally {
      w.stop();
    }
  });
});
