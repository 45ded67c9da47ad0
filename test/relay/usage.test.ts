import { X509Certificate } from 'node:crypto';
import { expect } from 'chai';
import { loadIdentity } from '../../certs/index.ts';
import { signUsage } from '../../relay/index.ts';
import { RelayError, verifyUsageStatement } from '../../relay/protocol/index.ts';
import { makeFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

describe('verifyUsageStatement at the edges of the relay certificate', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let relay: ReturnType<typeof loadIdentity>;
  let notBefore: number;
  let notAfter: number;
  const tariff = { currency: 'EUR', perTransfer: 10, perGiB: 100 };
  const at = (ms: number) =>
    signUsage({ transferId: 'ab12cd34ef56', from: 'mgh', to: 'myongji', bytes: 2048, completedAt: new Date(ms) }, tariff, relay.privateKey, relay.certPem);

  before(function () {
    tmp = tempDir();
    relay = loadIdentity(makeFederation(tmp.dir, ['mgh']).relay);
    const cert = new X509Certificate(relay.certPem);
    notBefore = Date.parse(cert.validFrom);
    notAfter = Date.parse(cert.validTo);
  });
  after(() => tmp.cleanup());

  it('accepts a statement completed within the notAfter second (X.509 times name whole seconds), and refuses one of the next second', function () {
    expect(verifyUsageStatement(at(notAfter + 999), relay.caPem).bytes).to.equal(2048);
    expect(() => verifyUsageStatement(at(notAfter + 1000), relay.caPem)).to.throw(RelayError, /not valid at completedAt/);
  });

  it('accepts a statement of the notBefore second, and refuses one of the second before', function () {
    expect(verifyUsageStatement(at(notBefore), relay.caPem).bytes).to.equal(2048);
    expect(() => verifyUsageStatement(at(notBefore - 1), relay.caPem)).to.throw(RelayError, /not valid at completedAt/);
  });
});
