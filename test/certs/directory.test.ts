import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { CompactSign } from 'jose';
import {
  CertificateAuthority,
  DIRECTORY_SIGNING_EKU,
  DirectoryStore,
  jcs,
  parseCrl,
  PkiError,
  signDirectory,
  verifyDirectory,
  type Directory,
} from '../../certs/index.ts';
import { parsePrivateKey } from '../../certs/keys.ts';
import { tempDir } from '../support/tmp.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-certs.js', import.meta.url));

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, HIE_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function rejects(p: Promise<unknown>, code: string): Promise<PkiError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(PkiError);
    expect((err as PkiError).code, (err as Error).message).to.equal(code);
    return err as PkiError;
  }
  throw new Error(`expected ${code}`);
}

const doc = (sequence: number): Directory => ({
  v: 1,
  sequence,
  issuedAt: new Date().toISOString(),
  members: [{ id: 'alpha', name: 'Alpha Hospital', organisation: 'Alpha Health', role: 'hospital', status: 'active' }],
});

describe('member directory (certs/directory.ts)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let ca: CertificateAuthority;
  let caPem: string;
  let store: DirectoryStore;
  let dirKey: ReturnType<typeof parsePrivateKey>;
  let dirCert: string;

  before(function () {
    tmp = tempDir();
    ca = CertificateAuthority.init(join(tmp.dir, 'pki'), { keyBits: 2048 });
    caPem = ca.caCertPem();
    ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'agents') });
    store = DirectoryStore.init(ca);
    dirKey = parsePrivateKey(readFileSync(join(store.dir, 'directory.key.pem'), 'utf8'), undefined, 'key');
    dirCert = readFileSync(join(store.dir, 'directory.crt.pem'), 'utf8');
  });
  after(() => tmp.cleanup());

  it('issues a directory certificate that OpenSSL verifies, with the directory EKU only and no TLS use', function () {
    const path = join(store.dir, 'directory.crt.pem');
    const verify = spawnSync('openssl', ['verify', '-CAfile', ca.caCertPath, path], { encoding: 'utf8' });
    expect(verify.stdout.trim(), verify.stderr).to.equal(`${path}: OK`);
    const text = spawnSync('openssl', ['x509', '-in', path, '-noout', '-ext', 'extendedKeyUsage'], { encoding: 'utf8' }).stdout;
    expect(text).to.contain(DIRECTORY_SIGNING_EKU);
    expect(text).not.to.match(/TLS Web (Server|Client) Authentication/);
    // Neither can it pass for a TLS client or server under OpenSSL's purpose checks.
    for (const purpose of ['sslclient', 'sslserver']) {
      const r = spawnSync('openssl', ['verify', '-purpose', purpose, '-CAfile', ca.caCertPath, path], { encoding: 'utf8' });
      expect(r.status, purpose).to.not.equal(0);
    }
  });

  it('signs a JWS whose header carries the certificate in x5c, and verifies it with the CA alone', async function () {
    const d = doc(1);
    const jws = await signDirectory(d, dirKey, dirCert);
    const header = JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString('utf8')) as { alg: string; typ: string; x5c: string[] };
    expect(header.alg).to.equal('RS256');
    expect(header.typ).to.equal('hie-directory+json');
    expect(header.x5c).to.have.length(1);
    const v = await verifyDirectory(jws, { caPem });
    expect(v.directory.sequence).to.equal(1);
    expect(v.members.get('alpha')?.status).to.equal('active');
    // The payload is the JCS (RFC 8785) form of the document.
    expect(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')).to.equal(jcs(d).toString('utf8'));
  });

  it('refuses a payload changed after signing', async function () {
    const [h, p, s] = (await signDirectory(doc(1), dirKey, dirCert)).split('.') as [string, string, string];
    const changed = Buffer.from(Buffer.from(p, 'base64url').toString('utf8').replace('"active"', '"revoked"')).toString('base64url');
    await rejects(verifyDirectory(`${h}.${changed}.${s}`, { caPem }), 'ERR_PKI_DIRECTORY_SIGNATURE');
  });

  it('refuses a directory signed by an agent certificate (no directory EKU)', async function () {
    const agentKey = parsePrivateKey(readFileSync(join(tmp.dir, 'agents', 'alpha.key.pem'), 'utf8'), undefined, 'key');
    const agentCert = readFileSync(join(tmp.dir, 'agents', 'alpha.crt.pem'), 'utf8');
    const der = Buffer.from(agentCert.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const jws = await new CompactSign(jcs(doc(1)))
      .setProtectedHeader({ alg: 'RS256', typ: 'hie-directory+json', x5c: [der.toString('base64')] })
      .sign(agentKey);
    const err = await rejects(verifyDirectory(jws, { caPem }), 'ERR_PKI_DIRECTORY_UNTRUSTED');
    expect(err.message).to.match(/not a directory signing certificate/);
  });

  it('refuses a directory signed under another CA', async function () {
    const other = CertificateAuthority.init(join(tmp.dir, 'other'), { keyBits: 2048 });
    const otherStore = DirectoryStore.init(other);
    const key = parsePrivateKey(readFileSync(join(otherStore.dir, 'directory.key.pem'), 'utf8'), undefined, 'key');
    const jws = await signDirectory(doc(1), key, readFileSync(join(otherStore.dir, 'directory.crt.pem'), 'utf8'));
    await rejects(verifyDirectory(jws, { caPem }), 'ERR_PKI_DIRECTORY_UNTRUSTED');
  });

  it('refuses a directory whose signing certificate is revoked, and one outside its validity', async function () {
    const jws = await signDirectory(doc(1), dirKey, dirCert);
    await rejects(verifyDirectory(jws, { caPem, now: new Date(Date.now() + 400 * 86_400_000) }), 'ERR_PKI_DIRECTORY_UNTRUSTED');
    const serial = (await verifyDirectory(jws, { caPem })).signerSerial;
    ca.revoke({ serial, now: new Date(Date.now() - 1000) });
    const crl = parseCrl(readFileSync(ca.crlPath, 'utf8'), caPem);
    await rejects(verifyDirectory(jws, { caPem, crl }), 'ERR_PKI_DIRECTORY_UNTRUSTED');
  });

  it('refuses malformed input with ERR_PKI_DIRECTORY_INVALID', async function () {
    await rejects(verifyDirectory('not a jws', { caPem }), 'ERR_PKI_DIRECTORY_INVALID');
    await rejects(verifyDirectory('x'.repeat(600 * 1024), { caPem }), 'ERR_PKI_DIRECTORY_INVALID');
    const [h, , s] = (await signDirectory(doc(1), dirKey, dirCert)).split('.') as [string, string, string];
    await rejects(verifyDirectory(`${h}.${Buffer.from('{"v":1').toString('base64url')}.${s}`, { caPem }), 'ERR_PKI_DIRECTORY_SIGNATURE');
    // Nothing malformed is signed in the first place: two entries for one id.
    const dup = { ...doc(1), members: [...doc(1).members, ...doc(1).members] };
    const refused = await signDirectory(dup, dirKey, dirCert).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(refused?.message).to.match(/unique/);
  });

  it('hie-certs directory init, add, set-status, sign and show: members must hold a certificate of this CA', function () {
    const pki = join(tmp.dir, 'cli-pki');
    expect(cli(['init', '--dir', pki]).code).to.equal(0);
    expect(cli(['issue-agent', '--dir', pki, '--id', 'alpha', '--out', join(tmp.dir, 'cli-agents')]).code).to.equal(0);
    const init = cli(['directory', 'init', '--dir', pki]);
    expect(init.code, init.stderr).to.equal(0);
    const add = cli(['directory', 'add', '--dir', pki, '--id', 'alpha', '--name', 'Alpha Hospital', '--org', 'Alpha Health', '--role', 'hospital']);
    expect(add.code, add.stderr).to.equal(0);
    const unknown = cli(['directory', 'add', '--dir', pki, '--id', 'nosuch', '--name', 'X', '--org', 'Y', '--role', 'insurer']);
    expect(unknown.code).to.not.equal(0);
    expect(unknown.stderr).to.match(/^hie-certs: error: .*issued no certificate for 'nosuch'/);
    const badRole = cli(['directory', 'add', '--dir', pki, '--id', 'alpha', '--name', 'X', '--org', 'Y', '--role', 'bank']);
    expect(badRole.stderr).to.match(/--role must be one of hospital, insurer, pharmacy, issuer/);
    expect(cli(['directory', 'sign', '--dir', pki]).stdout).to.contain('sequence 1');
    expect(cli(['directory', 'set-status', '--dir', pki, '--id', 'alpha', '--status', 'suspended']).code).to.equal(0);
    expect(cli(['directory', 'sign', '--dir', pki]).stdout).to.contain('sequence 2');
    const show = cli(['directory', 'show', '--dir', pki, '--json']);
    expect(show.code, show.stderr).to.equal(0);
    const shown = JSON.parse(show.stdout) as { sequence: number; members: Array<{ id: string; status: string }> };
    expect(shown.sequence).to.equal(2);
    expect(shown.members).to.deep.equal([{ id: 'alpha', name: 'Alpha Hospital', organisation: 'Alpha Health', role: 'hospital', status: 'suspended' }]);
    // A new signing key: the next signed directory carries it, and verifies.
    const before = JSON.parse(cli(['directory', 'show', '--dir', pki, '--json']).stdout) as { signer: string };
    const rekey = cli(['directory', 'rekey', '--dir', pki]);
    expect(rekey.code, rekey.stderr).to.equal(0);
    expect(cli(['directory', 'sign', '--dir', pki]).stdout).to.contain('sequence 3');
    const after = JSON.parse(cli(['directory', 'show', '--dir', pki, '--json']).stdout) as { signer: string; sequence: number };
    expect(after.sequence).to.equal(3);
    expect(after.signer).to.not.equal(before.signer);
    expect(rekey.stdout).to.contain(after.signer);
    const help = cli(['directory', '--help']);
    expect(help.code).to.equal(0);
    for (const c of ['init', 'add', 'set-status', 'sign', 'show', 'rekey']) expect(help.stdout).to.contain(c);
    expect(cli(['--help']).stdout).to.contain('directory');
  });
});
