import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CertificateAuthority, parseCrl, PKI_FILES, PkiError, type PkiErrorCode } from '../../certs/index.ts';
import { snapshot, tempDir } from '../support/tmp.ts';

function expectPkiError(fn: () => unknown, code: PkiErrorCode): PkiError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(PkiError);
    expect((err as PkiError).code).to.equal(code);
    return err as PkiError;
  }
  throw new Error(`expected ${code}`);
}

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('CertificateAuthority', function () {
  let tmp: ReturnType<typeof tempDir>;
  let ca: CertificateAuthority;
  let pki: string;

  before(function () {
    tmp = tempDir();
    pki = join(tmp.dir, 'pki');
    ca = CertificateAuthority.init(pki, { name: 'Unit CA', keyBits: 2048 });
  });
  after(() => tmp.cleanup());

  it('creates the CA with a 0700 directory and 0600 files', function () {
    expect(statSync(pki).mode & 0o777).to.equal(0o700);
    for (const f of ['ca.crt.pem', 'ca.key.pem', 'index.json', 'crl.pem']) {
      expect(statSync(join(pki, f)).mode & 0o777, f).to.equal(0o600);
    }
    const cert = new X509Certificate(readFileSync(join(pki, 'ca.crt.pem')));
    expect(cert.ca).to.equal(true);
    expect(cert.subject).to.contain('CN=Unit CA');
  });

  it('refuses to overwrite an existing CA and changes nothing', function () {
    const before = snapshot(pki);
    expectPkiError(() => CertificateAuthority.init(pki), 'ERR_PKI_CA_EXISTS');
    expect(snapshot(pki)).to.deep.equal(before);
  });

  it('issues an agent certificate that openssl verifies, with CN, SAN URI and both EKUs', function () {
    const out = join(tmp.dir, 'out-agent');
    const issued = ca.issueAgent({ id: 'myongji', org: 'Myongji Hospital', outDir: out });
    expect(issued.certPath).to.equal(join(out, 'myongji.crt.pem'));
    expect(statSync(issued.keyPath).mode & 0o777).to.equal(0o600);
    const v = openssl(['verify', '-CAfile', issued.caPath, issued.certPath]);
    expect(v.status, v.out).to.equal(0);
    const text = openssl(['x509', '-in', issued.certPath, '-noout', '-text']).out;
    expect(text).to.match(/Subject: O = Myongji Hospital, CN = myongji/);
    expect(text).to.contain('URI:urn:hie:agent:myongji');
    expect(text).to.contain('TLS Web Server Authentication, TLS Web Client Authentication');
    expect(text).to.match(/CA:FALSE/);
    const check = openssl(['verify', '-purpose', 'sslclient', '-CAfile', issued.caPath, issued.certPath]);
    expect(check.status, check.out).to.equal(0);
  });

  it('issues a relay certificate with a SAN per host and server auth only', function () {
    const out = join(tmp.dir, 'out-relay');
    const issued = ca.issueRelay({ hosts: ['relay.example.org', '127.0.0.1', '::1'], outDir: out });
    const text = openssl(['x509', '-in', issued.certPath, '-noout', '-text']).out;
    expect(text).to.contain('DNS:relay.example.org');
    expect(text).to.contain('IP Address:127.0.0.1');
    expect(text).to.contain('IP Address:0:0:0:0:0:0:0:1');
    expect(text).to.contain('TLS Web Server Authentication');
    expect(text).not.to.contain('TLS Web Client Authentication');
    expect(openssl(['verify', '-purpose', 'sslserver', '-CAfile', issued.caPath, issued.certPath]).status).to.equal(0);
    const asClient = openssl(['verify', '-purpose', 'sslclient', '-CAfile', issued.caPath, issued.certPath]);
    expect(asClient.status, 'a relay certificate must not pass as a client certificate').to.not.equal(0);
  });

  it('rejects invalid hospital ids and hosts without touching disk', function () {
    const before = snapshot(tmp.dir);
    for (const id of ['A', 'x', 'UPPER', 'has space', 'a'.repeat(64), '../etc', 'dot.id', '']) {
      expectPkiError(() => ca.issueAgent({ id, outDir: join(tmp.dir, 'bad') }), 'ERR_PKI_INVALID_ID');
    }
    expectPkiError(() => ca.issueRelay({ hosts: ['bad host'], outDir: join(tmp.dir, 'bad') }), 'ERR_PKI_INVALID_HOST');
    expectPkiError(() => ca.issueRelay({ hosts: [], outDir: join(tmp.dir, 'bad') }), 'ERR_PKI_INVALID_HOST');
    expect(snapshot(tmp.dir)).to.deep.equal(before);
  });

  it('refuses a second live certificate for an id unless renewing, and renew keeps the old one valid', function () {
    const out = join(tmp.dir, 'out-dup');
    ca.issueAgent({ id: 'severance', outDir: out });
    const before = snapshot(tmp.dir);
    const err = expectPkiError(() => ca.issueAgent({ id: 'severance', outDir: join(tmp.dir, 'elsewhere') }), 'ERR_PKI_DUPLICATE_ID');
    expect(err.message).to.contain('--renew');
    expect(snapshot(tmp.dir)).to.deep.equal(before);
    ca.issueAgent({ id: 'severance', outDir: out, renew: true });
    const rows = ca.list().filter((r) => r.id === 'severance');
    expect(rows.map((r) => r.status)).to.deep.equal(['valid', 'valid']);
  });

  it('revokes by id and by serial, and the CRL makes openssl reject exactly those certificates', function () {
    const out = join(tmp.dir, 'out-revoke');
    const a = ca.issueAgent({ id: 'mgh', outDir: out });
    const b = ca.issueAgent({ id: 'snuh', outDir: out });
    const c = ca.issueAgent({ id: 'amc', outDir: out });
    ca.revoke({ id: 'mgh', reason: 'keyCompromise' });
    ca.revoke({ serial: b.serial.toUpperCase(), reason: 'cessationOfOperation' });
    const crlCheck = openssl(['crl', '-in', ca.crlPath, '-CAfile', ca.caCertPath, '-noout']);
    expect(crlCheck.status, crlCheck.out).to.equal(0);
    expect(crlCheck.out).to.contain('verify OK');
    const chain = join(tmp.dir, 'chain.pem');
    writeFileSync(chain, readFileSync(ca.caCertPath, 'utf8') + readFileSync(ca.crlPath, 'utf8'));
    for (const revoked of [a, b]) {
      const r = openssl(['verify', '-crl_check', '-CAfile', chain, revoked.certPath]);
      expect(r.status).to.not.equal(0);
      expect(r.out).to.contain('certificate revoked');
    }
    const ok = openssl(['verify', '-crl_check', '-CAfile', chain, c.certPath]);
    expect(ok.status, ok.out).to.equal(0);
    const parsed = parseCrl(readFileSync(ca.crlPath, 'utf8'), ca.caCertPem());
    expect(parsed.revoked.get(a.serial)?.reason).to.equal('keyCompromise');
    expect(parsed.revoked.get(b.serial)?.reason).to.equal('cessationOfOperation');
    expect(parsed.revoked.has(c.serial)).to.equal(false);
    const text = openssl(['crl', '-in', ca.crlPath, '-noout', '-text']).out;
    expect(text).to.contain('Version 2');
    expect(text).to.contain('Key Compromise');
    expect(ca.list().find((r) => r.serial === a.serial)?.status).to.equal('revoked');
    expectPkiError(() => ca.revoke({ serial: b.serial }), 'ERR_PKI_ALREADY_REVOKED');
    expectPkiError(() => ca.revoke({ serial: 'abcdef' }), 'ERR_PKI_NOT_FOUND');
    expectPkiError(() => ca.revoke({ id: 'nobody' }), 'ERR_PKI_NOT_FOUND');
  });

  it('increments the CRL number on every publication', function () {
    const first = parseCrl(ca.crl(), ca.caCertPem()).crlNumber ?? 0;
    const second = parseCrl(ca.crl({ days: 7 }), ca.caCertPem());
    expect(second.crlNumber).to.equal(first + 1);
    const lifetime = (second.nextUpdate?.getTime() ?? 0) - second.thisUpdate.getTime();
    expect(Math.round(lifetime / 86_400_000)).to.equal(7);
  });

  it('lists an expired certificate as expired', function () {
    ca.issueAgent({ id: 'old-one', outDir: join(tmp.dir, 'out-old'), days: 1 });
    const later = new Date(Date.now() + 3 * 86_400_000);
    expect(ca.list(later).find((r) => r.id === 'old-one')?.status).to.equal('expired');
  });

  it('refuses a CRL signed by another CA or altered after signing', function () {
    const other = tempDir();
    try {
      const foreign = CertificateAuthority.init(join(other.dir, 'pki'), { keyBits: 2048 });
      expectPkiError(() => parseCrl(readFileSync(foreign.crlPath, 'utf8'), ca.caCertPem()), 'ERR_PKI_CRL_INVALID');
    } finally {
      other.cleanup();
    }
    const pem = readFileSync(ca.crlPath, 'utf8');
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[40] = (der[40] ?? 0) ^ 0x01;
    const tampered = `-----BEGIN X509 CRL-----\n${der.toString('base64')}\n-----END X509 CRL-----\n`;
    expectPkiError(() => parseCrl(tampered, ca.caCertPem()), 'ERR_PKI_CRL_INVALID');
    expectPkiError(() => parseCrl('not a crl', ca.caCertPem()), 'ERR_PKI_CRL_INVALID');
  });

  it('refuses malformed CRLs and a broken CA certificate with typed errors, never a plain Error', function () {
    const b64 = (der: Buffer): string => `-----BEGIN X509 CRL-----\n${der.toString('base64')}\n-----END X509 CRL-----\n`;
    const pem = readFileSync(ca.crlPath, 'utf8');
    // Two CRL blocks, a CRL that is an empty SEQUENCE, one that is an INTEGER.
    for (const bad of [`${pem}${pem}`, b64(Buffer.from([0x30, 0x00])), b64(Buffer.from([0x02, 0x01, 0x05]))]) {
      const err = expectPkiError(() => parseCrl(bad, ca.caCertPem()), 'ERR_PKI_CRL_INVALID');
      expect(err.message).to.match(/^CRL is (malformed|not a valid PEM X\.509 CRL)/);
    }
    expectPkiError(() => parseCrl(pem, 'not a certificate'), 'ERR_PKI_CERT_INVALID');
  });

  it('reports a damaged CA certificate file as ERR_PKI_CERT_INVALID and changes nothing', function () {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'pki');
      const broken = CertificateAuthority.init(dir, { keyBits: 2048 });
      writeFileSync(join(dir, PKI_FILES.caCert), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', { mode: 0o644 });
      const before = snapshot(t.dir);
      expectPkiError(() => broken.issueAgent({ id: 'x1', outDir: join(t.dir, 'out') }), 'ERR_PKI_CERT_INVALID');
      expectPkiError(() => broken.crl(), 'ERR_PKI_CERT_INVALID');
      expect(snapshot(t.dir)).to.deep.equal(before);
    } finally {
      t.cleanup();
    }
  });

  it('reports a missing CA clearly', function () {
    expectPkiError(() => CertificateAuthority.open(join(tmp.dir, 'nowhere')), 'ERR_PKI_NO_CA');
  });

  it('detects an unreadable CA key and changes nothing', function () {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'pki');
      const broken = CertificateAuthority.init(dir, { keyBits: 2048 });
      writeFileSync(join(dir, 'ca.key.pem'), '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', { mode: 0o600 });
      const before = snapshot(t.dir);
      expectPkiError(() => broken.issueAgent({ id: 'x1', outDir: join(t.dir, 'out') }), 'ERR_PKI_KEY_UNREADABLE');
      expect(snapshot(t.dir)).to.deep.equal(before);
    } finally {
      t.cleanup();
    }
  });

  it('encrypts the CA key with a passphrase and refuses a wrong or missing one without changes', function () {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'pki');
      const enc = CertificateAuthority.init(dir, { keyBits: 2048, passphrase: 'correct horse battery' });
      expect(readFileSync(join(dir, 'ca.key.pem'), 'utf8')).to.contain('BEGIN ENCRYPTED PRIVATE KEY');
      const before = snapshot(t.dir);
      expectPkiError(() => enc.issueAgent({ id: 'x1', outDir: join(t.dir, 'out'), passphrase: 'wrong passphrase' }), 'ERR_PKI_BAD_PASSPHRASE');
      expectPkiError(() => enc.issueAgent({ id: 'x1', outDir: join(t.dir, 'out') }), 'ERR_PKI_PASSPHRASE_REQUIRED');
      expectPkiError(() => enc.revoke({ id: 'x1', passphrase: 'wrong passphrase' }), 'ERR_PKI_NOT_FOUND');
      expect(snapshot(t.dir)).to.deep.equal(before);
      const ok = enc.issueAgent({ id: 'x1', outDir: join(t.dir, 'out'), passphrase: 'correct horse battery' });
      expect(execFileSync('openssl', ['verify', '-CAfile', ok.caPath, ok.certPath], { encoding: 'utf8' })).to.contain('OK');
    } finally {
      t.cleanup();
    }
  });

  it('refuses to overwrite existing files in the output directory', function () {
    const out = join(tmp.dir, 'out-relay');
    const before = snapshot(tmp.dir);
    expectPkiError(() => ca.issueRelay({ hosts: ['localhost'], outDir: out }), 'ERR_PKI_OUT_EXISTS');
    expect(snapshot(tmp.dir)).to.deep.equal(before);
  });

  it('refuses a certificate that would outlive the CA', function () {
    const t = tempDir();
    try {
      const short = CertificateAuthority.init(join(t.dir, 'pki'), { keyBits: 2048, days: 30 });
      expectPkiError(() => short.issueAgent({ id: 'x2', outDir: join(t.dir, 'out'), days: 60 }), 'ERR_PKI_INVALID_ARGUMENT');
    } finally {
      t.cleanup();
    }
  });
});
