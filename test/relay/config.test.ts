import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { envVarFor, feeFor, loadRelayConfig, parseRelayConfig, DEFAULT_ADMIN_PORT } from '../../relay/index.ts';
import { backoffDelay } from '../../relay/protocol/index.ts';
import { tempDir } from '../support/tmp.ts';
import { configError } from './helpers.ts';

const tls = { cert: 'r.crt', key: 'r.key', ca: 'ca.crt' };

describe('relay config', function () {
  it('fills defaults (admin on 127.0.0.1:9090)', function () {
    const c = parseRelayConfig({ tls });
    expect(c.admin).to.deep.equal({ enabled: true, host: '127.0.0.1', port: DEFAULT_ADMIN_PORT });
    expect(c.limits.maxOpenTransfers).to.be.a('number');
    expect(c.tariff).to.deep.equal({ currency: 'EUR', perTransfer: 0, perGiB: 0, releaseFee: 0 });
  });

  it('names the key and the problem for a bad value', function () {
    const e = configError(() => parseRelayConfig({ tls, listen: { port: 70000 } }));
    expect(e.message).to.match(/config key listen\.port: /);
    expect(e.keys).to.deep.equal(['listen.port']);
  });

  it('names a missing required key and an unknown key', function () {
    const e = configError(() => parseRelayConfig({ tls: { cert: 'a', key: 'b' }, limits: { maxFrames: 5 } }));
    expect(e.message).to.contain('config key tls.ca:');
    expect(e.message).to.contain('config key limits.maxFrames: unknown key');
  });

  it('rejects a tariff in floats or a bad currency', function () {
    const e = configError(() => parseRelayConfig({ tls, tariff: { perGiB: 1.5, currency: 'euro' } }));
    expect(e.keys.sort()).to.deep.equal(['tariff.currency', 'tariff.perGiB']);
  });

  it('lets env vars override file values and says which env var was bad', function () {
    expect(envVarFor('limits.maxFrame')).to.equal('HIE_RELAY_LIMITS_MAX_FRAME');
    const c = parseRelayConfig(
      { tls, listen: { port: 1 } },
      { HIE_RELAY_LISTEN_PORT: '8555', HIE_RELAY_ADMIN_ENABLED: 'false', HIE_RELAY_TARIFF_CURRENCY: 'CHF' },
    );
    expect(c.listen.port).to.equal(8555);
    expect(c.admin.enabled).to.equal(false);
    expect(c.tariff.currency).to.equal('CHF');
    const e = configError(() => parseRelayConfig({ tls }, { HIE_RELAY_LIMITS_WRITE_TIMEOUT_MS: 'soon' }));
    expect(e.message).to.contain('config key limits.writeTimeoutMs (from HIE_RELAY_LIMITS_WRITE_TIMEOUT_MS):');
  });

  it('loads YAML and JSON files and resolves TLS paths against the file', function () {
    const tmp = tempDir();
    try {
      const y = join(tmp.dir, 'relay.yaml');
      writeFileSync(y, 'listen:\n  port: 9443\ntls:\n  cert: certs/r.crt\n  key: certs/r.key\n  ca: /abs/ca.crt\n');
      const c = loadRelayConfig(y, {});
      expect(c.listen.port).to.equal(9443);
      expect(c.tls.cert).to.equal(join(tmp.dir, 'certs/r.crt'));
      expect(c.tls.ca).to.equal('/abs/ca.crt');
      const j = join(tmp.dir, 'relay.json');
      writeFileSync(j, JSON.stringify({ tls, log: { level: 'loud' } }));
      expect(configError(() => loadRelayConfig(j, {})).message).to.contain('config key log.level:');
      writeFileSync(y, 'listen: [oops');
      expect(configError(() => loadRelayConfig(y, {})).message).to.contain('not valid YAML');
    } finally {
      tmp.cleanup();
    }
  });
});

describe('tariff', function () {
  it('charges per transfer plus per GiB rounded up, in integer minor units', function () {
    expect(feeFor(0, { currency: 'EUR', perTransfer: 5, perGiB: 100 })).to.deep.equal({ amount: 5, currency: 'EUR' });
    expect(feeFor(2 ** 30, { currency: 'EUR', perTransfer: 5, perGiB: 100 }).amount).to.equal(105);
    expect(feeFor(2 ** 30 + 1, { currency: 'EUR', perTransfer: 0, perGiB: 100 }).amount).to.equal(101);
    expect(feeFor(5 * 2 ** 40, { currency: 'USD', perTransfer: 0, perGiB: 7 }).amount).to.equal(7 * 5 * 1024);
  });
});

describe('reconnect backoff', function () {
  it('grows exponentially up to the cap, with full jitter', function () {
    const o = { baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(0, o, () => 0.999)).to.equal(99);
    expect(backoffDelay(3, o, () => 0.999)).to.equal(799);
    expect(backoffDelay(10, o, () => 0.999)).to.equal(999);
    expect(backoffDelay(10, o, () => 0)).to.equal(0);
  });
});
