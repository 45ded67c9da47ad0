import { createPublicKey, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CompactEncrypt, CompactSign } from 'jose';
import { jcs, type KeyBundle } from '../../../certs/index.ts';
import { loadAgentKeys } from '../../../hospital-agent/crypto/index.ts';
import { encodeWire } from '../../../hospital-agent/engine/wire.ts';
import { startNetwork, waitFor, type TestNetwork } from '../../support/agents.ts';
import { tempDir } from '../../support/tmp.ts';

describe('a records request a member built by hand', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  // In the agent's own process an unhandled rejection stops it; mocha does not fail a test for one, so they are counted.
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };

  before(async function () {
    process.on('unhandledRejection', onUnhandled);
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'mgh']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
    process.off('unhandledRejection', onUnhandled);
  });

  /** Signs (as myongji) and encrypts (to mgh) a request payload, as RequestService.create does, and sends it through the relay. */
  async function sendRequest(patientId: string): Promise<string> {
    const keys = await loadAgentKeys(join(net.configs['myongji']!.dataDir, 'keys'));
    const holder = JSON.parse(readFileSync(join(net.configs['mgh']!.dataDir, 'keys', 'bundle.json'), 'utf8')) as KeyBundle;
    const id = randomUUID();
    const payload = { v: 1, id, from: 'myongji', to: 'mgh', patientId, purpose: 'TREAT', scope: ['*'], created: new Date().toISOString() };
    const jws = await new CompactSign(jcs(payload)).setProtectedHeader({ alg: 'EdDSA', kid: keys.signingKid }).sign(keys.signing.privateKey);
    const jwe = await new CompactEncrypt(Buffer.from(jws, 'utf8'))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: holder.encryption.kid })
      .encrypt(createPublicKey({ key: holder.encryption.jwk, format: 'jwk' }));
    net.agents['myongji']!.relay.sendMessage('mgh', encodeWire({ t: 'records.request', id, jwe }));
    return id;
  }

  const incoming = async (): Promise<Array<{ id: string; status: string; code?: string }>> =>
    ((await (await net.api('mgh', '/v1/requests?direction=incoming')).json()) as { requests: Array<{ id: string; status: string; code?: string }> }).requests;

  it('with a patient id of spaces only is dropped, and the holder goes on answering requests', async function () {
    // Signed and encrypted correctly, so only the patient id is wrong: before it was checked as the hash takes it
    // (trimmed), hashing it threw outside any handler, which would have stopped the holder's agent.
    const blank = await sendRequest('   ');
    const next = await sendRequest('SYN-000077');
    // The next one is handled (refused: mgh holds no consent for it), so the blank one came and went before it.
    const seen = await waitFor(async () => (await incoming()).find((r) => r.id === next), 20_000, 'the second request at the holder');
    expect(seen).to.include({ status: 'refused', code: 'ERR_CONSENT_MISSING' });
    expect((await incoming()).map((r) => r.id)).to.not.include(blank);
    expect((await net.api('mgh', '/healthz')).status).to.equal(200);
    expect(unhandled.map(String)).to.deep.equal([]);
  });
});
