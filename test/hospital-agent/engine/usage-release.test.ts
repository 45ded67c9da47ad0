import { expect } from 'chai';
import { loadIdentity } from '../../../certs/index.ts';
import { chargesFromUsage, RELAY_ACCOUNT } from '../../../hospital-agent/engine/payments.ts';
import { signUsage } from '../../../relay/index.ts';
import { RelayError, verifyUsageStatement } from '../../../relay/protocol/index.ts';
import { makeFederation } from '../../support/federation.ts';
import { tempDir } from '../../support/tmp.ts';

describe('release fee in signed usage statements', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let relay: ReturnType<typeof loadIdentity>;
  // Completed now, at each use: the relay certificate is issued in before(), after this file was loaded.
  const base = { transferId: 'ab12cd34ef56', from: 'mgh', to: 'myongji', bytes: 2048 };
  const input = {
    ...base,
    get completedAt(): Date {
      return new Date();
    },
  };
  const tariff = { currency: 'EUR', perTransfer: 10, perGiB: 100 };

  before(function () {
    tmp = tempDir();
    const fed = makeFederation(tmp.dir, ['mgh']);
    relay = loadIdentity(fed.relay);
  });
  after(() => tmp.cleanup());

  it("signs the tariff's release fee with the statement, and only when there is one", function () {
    const withFee = signUsage(input, { ...tariff, releaseFee: 250 }, relay.privateKey, relay.certPem);
    expect(verifyUsageStatement(withFee, relay.caPem).releaseFee).to.deep.equal({ amount: 250, currency: 'EUR' });
    const without = signUsage(input, tariff, relay.privateKey, relay.certPem);
    expect(verifyUsageStatement(without, relay.caPem)).not.to.have.property('releaseFee');
    // An agent cannot raise (or invent) the fee: it is covered by the relay's signature.
    const raised = structuredClone(withFee);
    raised.statement.releaseFee = { amount: 2500, currency: 'EUR' };
    expect(() => verifyUsageStatement(raised, relay.caPem)).to.throw(RelayError, /signature does not verify/);
    const invented = structuredClone(without);
    invented.statement.releaseFee = { amount: 250, currency: 'EUR' };
    expect(() => verifyUsageStatement(invented, relay.caPem)).to.throw(RelayError);
  });

  it('charges the requester the release fee once per answering exchange, and transport to the sender', function () {
    const signed = signUsage(input, { ...tariff, releaseFee: 250 }, relay.privateKey, relay.certPem);
    const usage = { statement: verifyUsageStatement(signed, relay.caPem), signed } as Parameters<typeof chargesFromUsage>[1];
    const delivered = new Set(['x-answer-0001', 'x-plain-0001']);
    const [answer = []] = chargesFromUsage([{ id: 'x-answer-0001', to: 'myongji', requestId: 'req-1' }], usage, delivered);
    expect(answer.map((c) => [c.kind, c.payer, c.payee, c.amount])).to.deep.equal([
      ['transport', 'mgh', RELAY_ACCOUNT, 11],
      ['release', 'myongji', 'mgh', 250],
    ]);
    // A resent exchange (another transfer, another statement) is charged transport again, the release fee not.
    const again = signUsage({ ...input, transferId: 'ab12cd34ef57' }, { ...tariff, releaseFee: 250 }, relay.privateKey, relay.certPem);
    const [second = []] = chargesFromUsage(
      [{ id: 'x-answer-0001', to: 'myongji', requestId: 'req-1' }],
      { statement: verifyUsageStatement(again, relay.caPem), signed: again } as Parameters<typeof chargesFromUsage>[1],
      delivered,
    );
    expect(second[0]?.charge).not.to.equal(answer[0]?.charge);
    expect(second[1]?.charge).to.equal(answer[1]?.charge);
    // An exchange that answers no request carries no release fee.
    expect(chargesFromUsage([{ id: 'x-plain-0001', to: 'myongji' }], usage, delivered)[0]?.map((c) => c.kind)).to.deep.equal(['transport']);
    // Records that did not reach the requester (refused, or not delivered yet) cost it nothing: transport only.
    expect(chargesFromUsage([{ id: 'x-answer-0001', to: 'myongji', requestId: 'req-1' }], usage, new Set())[0]?.map((c) => c.kind)).to.deep.equal([
      'transport',
    ]);
  });

  it('charges a batch transfer once, as the relay signed it, on its first exchange; release fees stay per exchange', function () {
    const signed = signUsage({ ...input, bytes: 3 * 2048 }, { ...tariff, perTransfer: 10, releaseFee: 250 }, relay.privateKey, relay.certPem);
    const usage = { statement: verifyUsageStatement(signed, relay.caPem), signed } as Parameters<typeof chargesFromUsage>[1];
    const batch = [
      { id: 'x-batch-0001', to: 'myongji' },
      { id: 'x-batch-0002', to: 'myongji', requestId: 'req-2' },
      { id: 'x-batch-0003', to: 'myongji' },
    ];
    const all = new Set(batch.map((b) => b.id));
    const charges = chargesFromUsage(batch, usage, all);
    const transport = charges.flat().filter((c) => c.kind === 'transport');
    expect(transport.map((c) => [c.exchange, c.amount])).to.deep.equal([['x-batch-0001', usage.statement.fee.amount]]);
    // The same id as for a transfer of one exchange: one charge per signed statement.
    expect(transport[0]?.charge).to.equal(chargesFromUsage([batch[0]!], usage, all)[0]?.[0]?.charge);
    expect(charges[1]?.filter((c) => c.kind === 'release').map((c) => c.amount)).to.deep.equal([250]);
    expect(charges[2]).to.deep.equal([]);
  });
});
