import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { generateAgentKeys } from '../../../certs/index.ts';
import { CryptoError, KEY_FILES, loadAgentKeys, saveAgentKeys } from '../../../hospital-agent/crypto/index.ts';
import { tempDir } from '../../support/tmp.ts';
import { getWorld } from './fixtures.ts';

describe('agent key files', function () {
  it('saves PKCS#8 PEM files 0600 and loads the same keys with the same kids', async function () {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'keys', 'gen-1');
      const saved = await saveAgentKeys(dir, generateAgentKeys());
      for (const f of Object.values(KEY_FILES)) {
        expect(statSync(join(dir, f)).mode & 0o777).to.equal(0o600);
        expect(readFileSync(join(dir, f), 'utf8')).to.contain('-----BEGIN PRIVATE KEY-----');
      }
      expect(statSync(dir).mode & 0o777).to.equal(0o700);
      const loaded = await loadAgentKeys(dir);
      expect(loaded.signingKid).to.equal(saved.signingKid);
      expect(loaded.encryptionKid).to.equal(saved.encryptionKid);
      expect(loaded.signing.privateKey.equals(saved.signing.privateKey)).to.equal(true);
      try {
        await saveAgentKeys(dir, generateAgentKeys());
        expect.fail('overwrote keys');
      } catch (err) {
        expect(err).to.be.instanceOf(TypeError);
      }
    } finally {
      t.cleanup();
    }
  });

  it('refuses key files others can read, keys of the wrong type, and missing files', async function () {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'k');
      await saveAgentKeys(dir, generateAgentKeys());
      chmodSync(join(dir, KEY_FILES.signing), 0o644);
      await loadAgentKeys(dir).then(
        () => expect.fail('loaded a world-readable key'),
        (err: CryptoError) => expect([err.code, err.message.includes('644')]).to.deep.equal(['ERR_KEYS_UNREADABLE', true]),
      );
      chmodSync(join(dir, KEY_FILES.signing), 0o600);
      writeFileSync(join(dir, KEY_FILES.encryption), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      await loadAgentKeys(dir).then(
        () => expect.fail('loaded an Ed25519 key as X25519'),
        (err: CryptoError) => expect(err.code).to.equal('ERR_KEYS_UNREADABLE'),
      );
      await loadAgentKeys(join(t.dir, 'nope')).then(
        () => expect.fail('loaded nothing'),
        (err: CryptoError) => expect(err.code).to.equal('ERR_KEYS_UNREADABLE'),
      );
    } finally {
      t.cleanup();
    }
  });
});

describe('KeyRing', function () {
  it('encrypts to the newest valid bundle and keeps the older one for its signatures', async function () {
    const w = await getWorld();
    const { createKeyBundle, loadIdentity } = await import('../../../certs/index.ts');
    const { withKids } = await import('../../../hospital-agent/crypto/index.ts');
    const identity = loadIdentity(w.fed.addAgent('india'));
    const older = await withKids(generateAgentKeys());
    const newer = await withKids(generateAgentKeys());
    await w.ring.add(await createKeyBundle(identity, newer, { now: new Date(Date.now() - 1000) }));
    await w.ring.add(await createKeyBundle(identity, older, { now: new Date(Date.now() - 60_000) }));
    expect((await w.ring.encryptionBundle('india')).encryptionKid).to.equal(newer.encryptionKid);
    expect((await w.ring.signer('india', older.signingKid))?.signingKid).to.equal(older.signingKid);
    expect(await w.ring.signer('india', 'A'.repeat(43))).to.equal(undefined);
    expect(w.ring.bundles('india')).to.have.length(2);
    await w.ring.encryptionBundle('nobody').then(
      () => expect.fail('found a key for an unknown agent'),
      (err: CryptoError) => expect(err.code).to.equal('ERR_KEYRING_NO_KEY'),
    );
  });
});
