import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { CertificateAuthority, createAgentCsr, loadIdentity, parseAgentCsr, PkiError } from '../../certs/index.ts';
import { generateRsaKeyPair } from '../../certs/keys.ts';
import { snapshot, tempDir } from '../support/tmp.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-certs.js', import.meta.url));

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HIE_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function openssl(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Every file under `dir`, recursively. */
function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out;
}

/** The X.509v3 extensions openssl prints, without the key identifiers (which differ per key). */
function profile(certPath: string): string {
  const text = openssl(['x509', '-in', certPath, '-noout', '-text']).out;
  const ext = text.slice(text.indexOf('X509v3 extensions:'), text.indexOf('Signature Algorithm:', text.indexOf('X509v3 extensions:')));
  return ext
    .replace(/X509v3 (Subject|Authority) Key Identifier:\s*\n\s*[0-9A-F:]+\n/g, '')
    .replace(/urn:hie:agent:[a-z0-9-]+/g, 'urn:hie:agent:ID')
    .trim();
}

function expectPkiError(fn: () => unknown, code: string): PkiError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(PkiError);
    expect((err as PkiError).code, (err as Error).message).to.equal(code);
    return err as PkiError;
  }
  throw new Error(`expected ${code}`);
}

describe('enrolment with a CSR (hie-certs request / sign / renew / install)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let pki: string;
  let ca: CertificateAuthority;

  before(() => {
    tmp = tempDir();
    pki = join(tmp.dir, 'pki');
    ca = CertificateAuthority.init(pki, { name: 'Enrol Test CA', keyBits: 2048 });
  });
  after(() => tmp.cleanup());

  it('issues a certificate for a key that never left the hospital, with the profile of issue-agent', function () {
    const hospital = join(tmp.dir, 'hospital');
    const operator = join(tmp.dir, 'operator');
    mkdirSync(operator);
    const req = run(['request', '--id', 'myongji', '--org', 'Myongji Hospital', '--out', hospital]);
    expect(req.code, req.stderr).to.equal(0);
    const keyPath = join(hospital, 'myongji.key.pem');
    expect(statSync(keyPath).mode & 0o777).to.equal(0o600);
    const csrPath = join(hospital, 'myongji.csr.pem');
    // OpenSSL agrees the request is well formed and self-signed, with the subject and SAN the federation uses.
    const check = openssl(['req', '-in', csrPath, '-verify', '-noout', '-text']);
    expect(check.status, check.out).to.equal(0);
    expect(check.out).to.match(/verify OK/i);
    expect(check.out).to.match(/Subject: O\s*=\s*Myongji Hospital, CN\s*=\s*myongji/);
    expect(check.out).to.contain('URI:urn:hie:agent:myongji');

    // Only the request travels; the hospital's directory is out of reach while the operator signs.
    copyFileSync(csrPath, join(operator, 'myongji.csr.pem'));
    const away = join(tmp.dir, 'hospital-away');
    renameSync(hospital, away);
    const signed = run(['sign', '--csr', join(operator, 'myongji.csr.pem'), '--ca-dir', pki, '--days', '90']);
    renameSync(away, hospital);
    expect(signed.code, signed.stderr).to.equal(0);
    const certPath = join(operator, 'myongji.crt.pem');
    expect(existsSync(certPath)).to.equal(true);
    expect(existsSync(join(operator, 'ca.crt.pem'))).to.equal(true);
    const keyPem = readFileSync(keyPath, 'utf8');
    for (const f of [...files(operator), ...files(pki)]) {
      const text = readFileSync(f, 'utf8');
      expect(text.includes(keyPem.trim()), f).to.equal(false);
      if (!f.endsWith('ca.key.pem')) expect(text, f).not.to.contain('PRIVATE KEY');
    }

    // The certificate is for the hospital's key, chains to the CA, and has issue-agent's extensions.
    const verify = openssl(['verify', '-CAfile', ca.caCertPath, '-purpose', 'sslclient', certPath]);
    expect(verify.status, verify.out).to.equal(0);
    const certKey = openssl(['x509', '-in', certPath, '-noout', '-pubkey']).out;
    const ownKey = openssl(['pkey', '-in', keyPath, '-pubout']).out;
    expect(certKey).to.equal(ownKey);
    const legacy = ca.issueAgent({ id: 'legacy', outDir: join(tmp.dir, 'legacy') });
    expect(profile(certPath)).to.equal(profile(legacy.certPath));
    expect(new X509Certificate(readFileSync(certPath)).subject).to.equal('O=Myongji Hospital\nCN=myongji');

    const noCa = run(['install', '--id', 'myongji', '--dir', hospital, '--cert', certPath]);
    expect(noCa.stderr).to.match(/ca\.crt\.pem the operator sent/);
    copyFileSync(join(operator, 'ca.crt.pem'), join(hospital, 'ca.crt.pem'));
    const inst = run(['install', '--id', 'myongji', '--dir', hospital, '--cert', certPath]);
    expect(inst.code, inst.stderr).to.equal(0);
    const id = loadIdentity({ cert: join(hospital, 'myongji.crt.pem'), key: keyPath, ca: join(hospital, 'ca.crt.pem') });
    expect(id.hospitalId).to.equal('myongji');
    // A second request never replaces the key in use.
    const again = run(['request', '--id', 'myongji', '--out', hospital]);
    expect(again.code).to.not.equal(0);
    expect(again.stderr).to.match(/refusing to replace a key/);
    expect(readFileSync(keyPath, 'utf8')).to.equal(keyPem);
  });

  it('refuses a CSR whose signature, subject or requested extensions break the rules, and signs an OpenSSL-made one', function () {
    const dir = join(tmp.dir, 'openssl-csr');
    mkdirSync(dir);
    const key = join(dir, 'k.pem');
    expect(openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key]).status).to.equal(0);
    const make = (subj: string, ...ext: string[]): string => {
      const out = join(dir, `${Math.random().toString(36).slice(2)}.csr`);
      const r = openssl(['req', '-new', '-key', key, '-subj', subj, ...ext.flatMap((e) => ['-addext', e]), '-out', out]);
      expect(r.status, r.out).to.equal(0);
      return readFileSync(out, 'utf8');
    };
    const good = parseAgentCsr(make('/O=Severance/CN=severance', 'subjectAltName=URI:urn:hie:agent:severance'));
    expect(good).to.include({ id: 'severance', organization: 'Severance' });
    const fromOpenssl = ca.signCsr({ csrPem: good.pem, out: join(dir, 'severance.crt.pem') });
    const verified = openssl(['verify', '-CAfile', ca.caCertPath, '-purpose', 'sslclient', fromOpenssl.certPath]);
    expect(verified.status, verified.out).to.equal(0);
    expect(openssl(['x509', '-in', fromOpenssl.certPath, '-noout', '-pubkey']).out).to.equal(openssl(['pkey', '-in', key, '-pubout']).out);
    const bad: Array<[string, RegExp]> = [
      [make('/CN=Not_An_Id'), /not a hospital id/],
      [make('/CN=severance/OU=x'), /only CN/],
      [make('/CN=severance', 'subjectAltName=URI:urn:hie:agent:other'), /subjectAltName must be exactly/],
      [make('/CN=severance', 'basicConstraints=critical,CA:TRUE'), /requests extension basicConstraints/],
      [make('/O=Severance'), /no CN/],
    ];
    for (const [pem, why] of bad) expect(expectPkiError(() => parseAgentCsr(pem), 'ERR_PKI_CSR_INVALID').message).to.match(why);
    // One changed byte inside the signed part: the self-signature no longer verifies.
    const der = Buffer.from(good.pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('severance')) + 1;
    der[at] = (der[at] ?? 0) ^ 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    expectPkiError(() => parseAgentCsr(tampered), 'ERR_PKI_CSR_INVALID');
    const weak = join(dir, 'weak.pem');
    expect(openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:1024', '-out', weak]).status).to.equal(0);
    const weakCsr = openssl(['req', '-new', '-key', weak, '-subj', '/CN=severance']).out;
    expect(expectPkiError(() => parseAgentCsr(weakCsr), 'ERR_PKI_CSR_INVALID').message).to.match(/at least 2048/);
    const before = snapshot(pki);
    expectPkiError(() => ca.signCsr({ csrPem: tampered, out: join(dir, 'x.crt.pem') }), 'ERR_PKI_CSR_INVALID');
    expect(snapshot(pki)).to.deep.equal(before);
  });

  it('renews with the same key and with a new key: the subject stays, the old files are kept as dated backups', function () {
    const hospital = join(tmp.dir, 'renew-hospital');
    const operator = join(tmp.dir, 'renew-operator');
    mkdirSync(operator);
    expect(run(['request', '--id', 'snuh', '--org', 'Seoul National', '--out', hospital]).code).to.equal(0);
    expect(run(['sign', '--csr', join(hospital, 'snuh.csr.pem'), '--ca-dir', pki, '--out', join(operator, 'snuh.crt.pem')]).code).to.equal(0);
    copyFileSync(join(operator, 'snuh.crt.pem'), join(hospital, 'snuh.crt.pem'));
    copyFileSync(join(operator, 'ca.crt.pem'), join(hospital, 'ca.crt.pem'));
    const first = new X509Certificate(readFileSync(join(hospital, 'snuh.crt.pem')));
    const firstKey = readFileSync(join(hospital, 'snuh.key.pem'), 'utf8');

    // Without --renew the operator is told a live certificate exists.
    expect(run(['renew', '--id', 'snuh', '--dir', hospital]).code).to.equal(0);
    const dup = run(['sign', '--csr', join(hospital, 'snuh.csr.pem'), '--ca-dir', pki, '--out', join(operator, 'snuh.crt.pem')]);
    expect(dup.code).to.not.equal(0);
    expect(dup.stderr).to.contain('--renew');
    const same = run(['sign', '--csr', join(hospital, 'snuh.csr.pem'), '--ca-dir', pki, '--renew', '--out', join(operator, 'snuh.crt.pem')]);
    expect(same.code, same.stderr).to.equal(0);
    const inst = run(['install', '--id', 'snuh', '--dir', hospital, '--cert', join(operator, 'snuh.crt.pem')]);
    expect(inst.code, inst.stderr).to.equal(0);
    const second = new X509Certificate(readFileSync(join(hospital, 'snuh.crt.pem')));
    expect(second.serialNumber).to.not.equal(first.serialNumber);
    expect(second.subject).to.equal('O=Seoul National\nCN=snuh');
    expect(readFileSync(join(hospital, 'snuh.key.pem'), 'utf8')).to.equal(firstKey);
    const backups = readdirSync(hospital).filter((f) => f.endsWith('.bak'));
    expect(backups.some((f) => /^snuh\.crt\.pem\.\d{4}-\d\d-\d\dT\d{6}Z(-\d+)?\.bak$/.test(f))).to.equal(true);
    const certBackup = backups.find((f) => f.startsWith('snuh.crt.pem.')) as string;
    expect(new X509Certificate(readFileSync(join(hospital, certBackup))).serialNumber).to.equal(first.serialNumber);

    // A new key: kept aside as .next until its certificate is installed; a certificate for another key is refused.
    expect(run(['renew', '--id', 'snuh', '--dir', hospital, '--new-key']).code).to.equal(0);
    expect(statSync(join(hospital, 'snuh.key.pem.next')).mode & 0o777).to.equal(0o600);
    const before = snapshot(hospital);
    const wrong = run(['install', '--id', 'snuh', '--dir', hospital, '--cert', join(operator, 'snuh.crt.pem')]);
    expect(wrong.code).to.not.equal(0);
    expect(wrong.stderr).to.match(/does not match the pending key/);
    expect(snapshot(hospital)).to.deep.equal(before);
    expect(run(['sign', '--csr', join(hospital, 'snuh.csr.pem'), '--ca-dir', pki, '--renew', '--out', join(operator, 'snuh.crt.pem')]).code).to.equal(0);
    expect(run(['install', '--id', 'snuh', '--dir', hospital, '--cert', join(operator, 'snuh.crt.pem')]).code).to.equal(0);
    expect(existsSync(join(hospital, 'snuh.key.pem.next'))).to.equal(false);
    expect(readFileSync(join(hospital, 'snuh.key.pem'), 'utf8')).to.not.equal(firstKey);
    const third = loadIdentity({ cert: join(hospital, 'snuh.crt.pem'), key: join(hospital, 'snuh.key.pem'), ca: join(hospital, 'ca.crt.pem') });
    expect(third.certificate.subject).to.equal('O=Seoul National\nCN=snuh');
    expect(readdirSync(hospital).filter((f) => f.startsWith('snuh.key.pem.') && f.endsWith('.bak'))).to.have.length.greaterThan(1);
  });

  it('sign --renew keeps the live organisation for a CSR without O and refuses one that names another', function () {
    const out = join(tmp.dir, 'sign-renew');
    const key = generateRsaKeyPair(2048).privateKey;
    ca.signCsr({ csrPem: createAgentCsr({ commonName: 'kuh', organization: 'Korea University' }, key), out: join(out, 'kuh.crt.pem') });
    const bare = ca.signCsr({ csrPem: createAgentCsr({ commonName: 'kuh' }, key), renew: true, out: join(out, 'kuh.crt.pem') });
    expect(bare.subject).to.equal('O=Korea University, CN=kuh');
    expect(new X509Certificate(readFileSync(bare.certPath)).subject).to.equal('O=Korea University\nCN=kuh');
    const before = snapshot(pki);
    const err = expectPkiError(
      () => ca.signCsr({ csrPem: createAgentCsr({ commonName: 'kuh', organization: 'Someone Else' }, key), renew: true, out: join(out, 'x.crt.pem') }),
      'ERR_PKI_CSR_INVALID',
    );
    expect(err.message).to.contain('a renewal keeps the subject');
    expect(snapshot(pki)).to.deep.equal(before);
  });

  it('issue-agent --renew keeps the organisation it was first issued with and backs up the old certificate and key (the bug: it dropped O)', function () {
    const out = join(tmp.dir, 'legacy-renew');
    const first = ca.issueAgent({ id: 'amc', org: 'Asan Medical', outDir: out });
    const oldCert = readFileSync(first.certPath, 'utf8');
    const oldKey = readFileSync(first.keyPath, 'utf8');
    const renewed = run(['issue-agent', '--dir', pki, '--id', 'amc', '--out', out, '--renew']);
    expect(renewed.code, renewed.stderr).to.equal(0);
    expect(new X509Certificate(readFileSync(first.certPath)).subject).to.equal('O=Asan Medical\nCN=amc');
    const bak = readdirSync(out).filter((f) => f.endsWith('.bak'));
    expect(bak).to.have.length(2);
    expect(readFileSync(join(out, bak.find((f) => f.startsWith('amc.crt.pem.')) as string), 'utf8')).to.equal(oldCert);
    const keyBak = join(out, bak.find((f) => f.startsWith('amc.key.pem.')) as string);
    expect(readFileSync(keyBak, 'utf8')).to.equal(oldKey);
    expect(statSync(keyBak).mode & 0o777).to.equal(0o600);
    expect(renewed.stdout).to.contain('backup:');
  });

  it('lists certificates with id, role, serial, not-after and status, and --expiring keeps the live ones that lapse within the period', function () {
    const dir = join(tmp.dir, 'list-pki');
    const lca = CertificateAuthority.init(dir, { keyBits: 2048 });
    const soon = lca.issueAgent({ id: 'soon', outDir: join(tmp.dir, 'list-out'), days: 10 });
    lca.issueAgent({ id: 'later', outDir: join(tmp.dir, 'list-out'), days: 200 });
    lca.issueAgent({ id: 'gone', outDir: join(tmp.dir, 'list-out'), days: 5 });
    lca.revoke({ id: 'gone' });
    const all = run(['list', '--ca-dir', dir]);
    expect(all.code, all.stderr).to.equal(0);
    expect(all.stdout.split('\n')[0]).to.match(/^ID\s+ROLE\s+SERIAL\s+SUBJECT\s+NOT AFTER\s+STATUS$/);
    expect(all.stdout).to.match(new RegExp(`soon\\s+agent\\s+${soon.serial}\\s+CN=soon\\s+\\S+\\s+ok`));
    expect(all.stdout).to.match(/gone\s+agent\s+.*revoked/);
    const expiring = run(['list', '--ca-dir', dir, '--expiring', '30d', '--json']);
    expect(expiring.code, expiring.stderr).to.equal(0);
    expect((JSON.parse(expiring.stdout) as Array<{ id: string }>).map((r) => r.id)).to.deep.equal(['soon']);
    const wide = JSON.parse(run(['list', '--ca-dir', dir, '--expiring', '365d', '--json']).stdout) as Array<{ id: string }>;
    expect(wide.map((r) => r.id)).to.deep.equal(['soon', 'later']);
    const bad = run(['list', '--ca-dir', dir, '--expiring', 'soon']);
    expect(bad.code).to.not.equal(0);
    expect(bad.stderr).to.match(/--expiring must be a period/);
  });
});
