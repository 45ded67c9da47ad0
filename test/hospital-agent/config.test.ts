import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  AgentConfigError,
  agentEnvVar,
  configLeaves,
  DEFAULT_API_HOST,
  loadAgentConfig,
  loadApiTokens,
  loadPatientSecret,
  parseAgentConfig,
} from '../../hospital-agent/config.ts';
import { tempDir } from '../support/tmp.ts';

const minimal = {
  id: 'myongji',
  identity: { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem' },
  relay: { urls: ['wss://relay.example.org:8443'] },
  dataDir: 'data',
};

function expectConfigError(fn: () => unknown, key: string, pattern?: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AgentConfigError);
    expect((err as AgentConfigError).keys).to.include(key);
    if (!key.startsWith('(')) expect((err as Error).message).to.contain(`config key ${key}`);
    if (pattern) expect((err as Error).message).to.match(pattern);
    return;
  }
  throw new Error(`expected a config error for ${key}`);
}

describe('agent configuration', function () {
  it('fills defaults: the API listens on loopback', function () {
    const c = parseAgentConfig(minimal);
    expect(c.api.host).to.equal(DEFAULT_API_HOST);
    expect(c.api.host).to.equal('127.0.0.1');
    expect(c.limits.maxConcurrentSends).to.be.greaterThan(0);
  });

  it('names the key and the problem', function () {
    expectConfigError(() => parseAgentConfig({ ...minimal, id: 'Not OK' }), 'id', /a-z/);
    expectConfigError(() => parseAgentConfig({ ...minimal, relay: { urls: ['http://plain'] } }), 'relay.urls.0', /wss/);
    expectConfigError(() => parseAgentConfig({ ...minimal, api: { port: 70000 } }), 'api.port');
    expectConfigError(() => parseAgentConfig({ ...minimal, surprise: true }), 'surprise', /unknown key/);
    expectConfigError(() => parseAgentConfig({ ...minimal, identity: undefined }), 'identity');
    // The EHR webhook is told about records requests, which name the patient: https, or plain http to this machine only.
    expectConfigError(() => parseAgentConfig({ ...minimal, inbox: { webhook: { url: 'http://ehr.hospital.example/hie' } } }), 'inbox.webhook.url', /https/);
    expectConfigError(() => parseAgentConfig({ ...minimal, inbox: { webhook: { url: 'ftp://127.0.0.1/hie' } } }), 'inbox.webhook.url');
    for (const url of ['https://ehr.hospital.example/hie', 'http://127.0.0.1:8080/hie', 'http://localhost/hie', 'http://[::1]:9000/hie']) {
      expect(parseAgentConfig({ ...minimal, inbox: { webhook: { url } } }).inbox.webhook?.url).to.equal(url);
    }
  });

  it('lets every leaf be set by an env var, and says which var was wrong', function () {
    expect(configLeaves().get('api.port')).to.equal('number');
    expect(agentEnvVar('limits.maxExchangeBytes')).to.equal('HIE_AGENT_LIMITS_MAX_EXCHANGE_BYTES');
    const c = parseAgentConfig(minimal, { HIE_AGENT_API_PORT: '9999', HIE_AGENT_RELAY_URLS: 'wss://a:1,wss://b:2' });
    expect(c.api.port).to.equal(9999);
    expect(c.relay.urls).to.deep.equal(['wss://a:1', 'wss://b:2']);
    expectConfigError(() => parseAgentConfig(minimal, { HIE_AGENT_API_PORT: 'eighty' }), 'api.port', /HIE_AGENT_API_PORT/);
  });

  it('loads YAML and resolves relative paths against the file', function () {
    const t = tempDir();
    try {
      const file = join(t.dir, 'agent.yaml');
      writeFileSync(
        file,
        'id: severance\nidentity:\n  cert: certs/s.crt.pem\n  key: certs/s.key.pem\n  ca: /etc/hie/ca.pem\nrelay:\n  urls: [wss://relay:8443]\ndataDir: ./data\n',
      );
      const c = loadAgentConfig(file, {});
      expect(c.identity.cert).to.equal(join(t.dir, 'certs/s.crt.pem'));
      expect(c.identity.ca).to.equal('/etc/hie/ca.pem');
      expect(c.dataDir).to.equal(join(t.dir, 'data'));
      writeFileSync(file, 'id: [unclosed');
      expectConfigError(() => loadAgentConfig(file, {}), '(file)', /not valid YAML/);
    } finally {
      t.cleanup();
    }
  });

  it('loads API tokens and the patient secret without echoing them', function () {
    const c = parseAgentConfig(minimal);
    const token = 'x'.repeat(40);
    expect(loadApiTokens(c, { HIE_AGENT_API_TOKENS: `ehr:${token}` })).to.deep.equal([{ name: 'ehr', token }]);
    try {
      loadApiTokens(c, { HIE_AGENT_API_TOKENS: 'ehr:short-secret' });
      throw new Error('accepted a short token');
    } catch (err) {
      expect((err as Error).message).not.to.contain('short-secret');
    }
    expectConfigError(() => loadApiTokens(c, {}), 'api.tokensEnv', /not set/);
    expect(loadPatientSecret(c, { HIE_AGENT_PATIENT_SECRET: 'ab'.repeat(32) })).to.have.length(32);
    expectConfigError(() => loadPatientSecret(c, { HIE_AGENT_PATIENT_SECRET: 'abcd' }), 'patientSecret.env', /32 bytes/);
  });
});
