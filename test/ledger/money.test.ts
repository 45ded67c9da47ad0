import { expect } from 'chai';
import { currencyDecimals, formatAmount } from '../../ledger/index.ts';

describe('formatAmount', function () {
  it('shows minor units in currency units with the currency, with the decimals of ISO 4217', function () {
    expect(formatAmount(250, 'EUR')).to.equal('2.50 EUR');
    expect(formatAmount(5, 'EUR')).to.equal('0.05 EUR');
    expect(formatAmount(-1234, 'USD')).to.equal('-12.34 USD');
    expect(formatAmount(250, 'JPY')).to.equal('250 JPY');
    expect(formatAmount(1500, 'KWD')).to.equal('1.500 KWD');
    expect(currencyDecimals('KRW')).to.equal(0);
  });

  it('is exact for amounts past float precision of a division', function () {
    expect(formatAmount(Number.MAX_SAFE_INTEGER, 'EUR')).to.equal('90071992547409.91 EUR');
  });
});
