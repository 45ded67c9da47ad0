import { expect } from 'chai';
import { AddressCounter, addressKey } from '../../relay/address-limit.ts';

describe('AddressCounter', function () {
  it('counts an IPv4-mapped IPv6 address as its IPv4 address', function () {
    expect(addressKey('::ffff:127.0.0.1')).to.equal('127.0.0.1');
    expect(addressKey('127.0.0.1')).to.equal('127.0.0.1');
    expect(addressKey('::1')).to.equal('::1');
    expect(addressKey(undefined)).to.equal(undefined);
  });

  it('refuses a slot beyond max per address, keeps addresses apart, and forgets an address that holds none', function () {
    const c = new AddressCounter(2);
    expect([c.acquire('a'), c.acquire('a'), c.acquire('a')]).to.deep.equal([true, true, false]);
    expect(c.held('a')).to.equal(2);
    expect(c.acquire('b')).to.equal(true);
    c.release('a');
    expect(c.acquire('a')).to.equal(true);
    c.release('a');
    c.release('a');
    c.release('b');
    expect(c.addresses).to.equal(0);
  });

  it('rejects a max that is not a positive integer', function () {
    expect(() => new AddressCounter(0)).to.throw(TypeError);
  });
});
