import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { expect } from 'chai';
import { DirectoryStore, loadIdentity, verifyDirectory } from '../../certs/index.ts';
import { parsePrivateKey } from '../../certs/keys.ts';
import { buildIssuerDirectory, signIssuerDirectory, verifyKeyBinding } from '../../certs/shc/index.ts';
import { loadIssuerKey } from '../../hospital-agent/certificates/index.ts';
import { parseRelayConfig } from '../../relay/config.ts';
import type { RunningRelay } from '../../relay/server.ts';
import { makeFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { configError, startTestRelay } from './helpers.ts';

describe('relay certificate listener (certificates.*)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let relay: RunningRelay | undefined;
  after(async () => {
    await relay?.close(0);
    tmp?.cleanup();
  });

  it('serves the issuer directory and jwks.json over HTTPS with the relay certificate, no client certificate', async function () {
    tmp = tempDir();
    const fed = makeFederation(tmp.dir, ['myongji']);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const store = DirectoryStore.init(fed.ca);
    store.add({ id: 'myongji', name: 'Myongji Hospital', organisation: 'Myongji Medical Foundation', role: 'hospital', status: 'active' });
    const members = await verifyDirectory((await store.sign()).jws, { caPem });
    const key = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(fed.agents['myongji'] as never));
    const doc = buildIssuerDirectory({ members, bindings: [await verifyKeyBinding(key.binding, { caPem })], base: 'https://localhost', sequence: 1 });
    const file = join(tmp.dir, 'issuers.jws');
    const dirKey = parsePrivateKey(readFileSync(join(store.dir, 'directory.key.pem'), 'utf8'), undefined, 'key');
    writeFileSync(file, await signIssuerDirectory(doc, dirKey, readFileSync(join(store.dir, 'directory.crt.pem'), 'utf8')));
    relay = await startTestRelay(fed, { certificates: { enabled: true, issuersFile: file, host: '127.0.0.1', port: 0 } });
    expect(relay.certificatesPort).to.be.a('number');
    const body = await new Promise<string>((resolve, reject) => {
      request(
        { host: '127.0.0.1', port: relay?.certificatesPort, path: '/issuers/myongji/.well-known/jwks.json', ca: caPem, servername: 'localhost' },
        (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        },
      )
        .on('error', reject)
        .end();
    });
    expect(JSON.parse(body).keys[0].kid).to.equal(key.jwk.kid);
  });

  it('refuses certificates.enabled without certificates.issuersFile, naming the key', function () {
    const err = configError(() => parseRelayConfig({ tls: { cert: 'r.pem', key: 'k.pem', ca: 'ca.pem' }, certificates: { enabled: true } }, {}));
    expect(err.message).to.contain('certificates.issuersFile');
  });
});
