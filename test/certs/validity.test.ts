import { expect } from 'chai';
import { lastMsBeforeRevocation, lastMsOfSecond, revokedForUseAt, signedAfterRevocation, withinCertificateValidity, x509Second } from '../../certs/index.ts';

describe('X.509 time comparisons (validity.ts)', function () {
  const S = Date.parse('2026-12-01T21:56:20.000Z');

  it('truncates to the second as a CRL or certificate does', function () {
    expect(x509Second(S + 380)).to.equal(S);
    expect(lastMsOfSecond(new Date(S + 380))).to.equal(S + 999);
  });

  it('counts a signature of the revocation second as before it, and one of a later second as after (head.key-validity fault)', function () {
    const listed = new Date(S); // what the CRL says for a revocation at S + 380
    expect(signedAfterRevocation(S + 127, listed)).to.equal(false);
    expect(signedAfterRevocation(S + 999, listed)).to.equal(false);
    expect(signedAfterRevocation(S + 1000, listed)).to.equal(true);
    expect(signedAfterRevocation(S - 1, listed)).to.equal(false);
  });

  it("decides the revocation second exactly with the CA's millisecond time, and ignores one outside the listed second", function () {
    const listed = new Date(S);
    expect(lastMsBeforeRevocation(listed, new Date(S + 380))).to.equal(S + 379);
    expect(signedAfterRevocation(S + 379, listed, new Date(S + 380))).to.equal(false);
    expect(signedAfterRevocation(S + 380, listed, new Date(S + 380))).to.equal(true);
    expect(lastMsBeforeRevocation(listed, new Date(S + 1380))).to.equal(S + 999);
  });

  it('applies a listed revocation to a present use from the start of its second', function () {
    expect(revokedForUseAt(S, new Date(S))).to.equal(true);
    expect(revokedForUseAt(S - 1, new Date(S))).to.equal(false);
  });

  it('holds notBefore and notAfter inclusive at second resolution', function () {
    const nb = new Date(S);
    const na = new Date(S + 10_000);
    expect(withinCertificateValidity(S - 1, nb, na)).to.equal(false);
    expect(withinCertificateValidity(S, nb, na)).to.equal(true);
    expect(withinCertificateValidity(S + 10_999, nb, na)).to.equal(true);
    expect(withinCertificateValidity(S + 11_000, nb, na)).to.equal(false);
  });
});
