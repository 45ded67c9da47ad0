import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { expect } from 'chai';
import {
  CertificateAuthority,
  clientTlsOptions,
  CrlWatcher,
  loadIdentity,
  peerHospitalId,
  PkiError,
  secureContextOptions,
  serverTlsOptions,
  type Identity,
} from '../../certs/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

interface Outcome {
  ok: boolean;
  id?: string;
  error?: string;
}

describe('mTLS with the identity helpers', function () {
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let server: tls.Server;
  let port: number;
  let serverIdentity: Identity;
  let watcher: CrlWatcher;
  const accepted: string[] = [];

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['myongji', 'severance', 'mgh']);
    serverIdentity = loadIdentity({ ...fed.relay, crl: fed.crlPath });
    server = tls.createServer(serverTlsOptions(serverIdentity), (socket) => {
      const peer = peerHospitalId(socket);
      accepted.push(peer.id);
      socket.end(`hello ${peer.id}\n`);
    });
    server.on('tlsClientError', () => {});
    watcher = new CrlWatcher(fed.crlPath, serverIdentity.caPem, { intervalMs: 50 });
    watcher.on('change', (crl) => server.setSecureContext(secureContextOptions(serverIdentity, crl.pem)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });

  after(function () {
    watcher.stop();
    server.close();
    tmp.cleanup();
  });

  async function connect(options: tls.ConnectionOptions): Promise<Outcome> {
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (d) => {
        data += d;
      });
      socket.on('end', () => resolve(data.startsWith('hello ') ? { ok: true, id: data.trim().slice(6) } : { ok: false, error: 'closed without greeting' }));
      socket.on('error', (err) => resolve({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    });
  }

  function agentOptions(id: string): tls.ConnectionOptions {
    const files = fed.agents[id];
    if (!files) throw new Error(`no agent ${id}`);
    return clientTlsOptions(loadIdentity(files));
  }

  it('accepts a valid agent and names it from its certificate', async function () {
    const r = await connect(agentOptions('myongji'));
    expect(r).to.deep.equal({ ok: true, id: 'myongji' });
  });

  it('refuses a client without a certificate', async function () {
    const r = await connect({ ca: readFileSync(fed.caPath) });
    expect(r.ok).to.equal(false);
  });

  it('refuses a certificate from another CA', async function () {
    const other = tempDir();
    try {
      const foreign = makeFederation(other.dir, ['myongji']);
      const files = foreign.agents['myongji'];
      if (!files) throw new Error('missing');
      const r = await connect({ cert: readFileSync(files.cert), key: readFileSync(files.key), ca: readFileSync(fed.caPath) });
      expect(r.ok).to.equal(false);
    } finally {
      other.cleanup();
    }
  });

  it('refuses an expired certificate', async function () {
    const files = fed.addAgent('expired-one', { notBefore: new Date(Date.now() - 10 * 86_400_000), days: 2 });
    const r = await connect({ cert: readFileSync(files.cert), key: readFileSync(files.key), ca: readFileSync(fed.caPath) });
    expect(r.ok).to.equal(false);
    expect(() => loadIdentity(files)).to.throw(PkiError, /expired/);
  });

  it('refuses a relay certificate used as a client certificate', async function () {
    const r = await connect({ cert: readFileSync(fed.relay.cert), key: readFileSync(fed.relay.key), ca: readFileSync(fed.caPath) });
    expect(r.ok).to.equal(false);
  });

  it('refuses an agent revoked while the server runs, after the CRL reload, and keeps serving others', async function () {
    const before = await connect(agentOptions('severance'));
    expect(before.ok).to.equal(true);
    const changed = once(watcher, 'change');
    watcher.start();
    fed.ca.revoke({ id: 'severance', reason: 'keyCompromise' });
    const [crl] = await changed;
    expect(watcher.isRevoked(loadIdentity({ ...fed.agents['severance']! }).serial)).to.equal(true);
    expect((crl as { revoked: Map<string, unknown> }).revoked.size).to.be.greaterThan(0);
    const after = await connect(agentOptions('severance'));
    expect(after.ok).to.equal(false);
    const other = await connect(agentOptions('mgh'));
    expect(other).to.deep.equal({ ok: true, id: 'mgh' });
    expect(() => loadIdentity({ ...fed.agents['severance']!, crl: fed.crlPath })).to.throw(PkiError, /revoked/);
  });

  it('keeps the CRL in force when the file is replaced by garbage', async function () {
    const rejected = once(watcher, 'rejected');
    const { writeFileSync } = await import('node:fs');
    const good = readFileSync(fed.crlPath, 'utf8');
    writeFileSync(fed.crlPath, 'garbage');
    const [err] = await rejected;
    expect((err as PkiError).code).to.equal('ERR_PKI_CRL_INVALID');
    expect(watcher.isRevoked(loadIdentity({ ...fed.agents['severance']! }).serial)).to.equal(true);
    writeFileSync(fed.crlPath, good);
  });

  it('checks that a loaded identity belongs together', function () {
    const a = fed.agents['myongji']!;
    const b = fed.agents['mgh']!;
    expect(() => loadIdentity({ cert: a.cert, key: b.key, ca: a.ca })).to.throw(PkiError, /does not match/);
    expect(() => loadIdentity({ cert: a.cert, key: join(tmp.dir, 'missing.pem'), ca: a.ca })).to.throw(PkiError, /cannot read key/);
    const other = tempDir();
    try {
      const foreignCa = CertificateAuthority.init(join(other.dir, 'pki'), { keyBits: 2048 });
      expect(() => loadIdentity({ cert: a.cert, key: a.key, ca: foreignCa.caCertPath })).to.throw(PkiError, /not issued by the CA/);
    } finally {
      other.cleanup();
    }
    expect(loadIdentity(a).hospitalId).to.equal('myongji');
    expect(loadIdentity(fed.relay).hospitalId).to.equal(undefined);
  });
});
