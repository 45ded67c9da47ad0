import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import pino from 'pino';
import { Writable } from 'node:stream';
import { CertificateAuthority, DirectoryStore, parseCrl } from '../../certs/index.ts';
import { FederationDocuments, FEDERATION_DIR, FEDERATION_FILES, REVOKED_RETRY_MS, SelfStanding } from '../../hospital-agent/federation/index.ts';
import { tempDir } from '../support/tmp.ts';

const DAY = 86_400_000;

describe('FederationDocuments', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let ca: CertificateAuthority;
  let caPem: string;

  before(function () {
    tmp = tempDir();
    ca = CertificateAuthority.init(join(tmp.dir, 'pki'), { keyBits: 2048 });
    caPem = ca.caCertPem();
    ca.issueAgent({ id: 'alpha', outDir: join(tmp.dir, 'agents') });
  });
  after(() => tmp.cleanup());

  const fresh = (): string => ca.crl();

  it('adopts a newer CRL, refuses the same number again, an older one and one outside its validity (clock injected)', function () {
    let now = new Date();
    const docs = new FederationDocuments(join(tmp.dir, 'a'), caPem, () => now);
    const refused: string[] = [];
    docs.on('refused', (r) => refused.push(r.reason));
    return docs.open(undefined).then(() => {
      const one = fresh();
      const two = fresh();
      expect(docs.offerCrl(two, 'relay')).to.deep.equal({ adopted: true });
      expect(docs.offerCrl(two, 'relay')).to.deep.equal({ adopted: false, reason: 'same' });
      expect(docs.offerCrl(one, 'relay')).to.deep.include({ adopted: false, reason: 'older' });
      // Thirty-one days on, a CRL signed for thirty days has expired: the next one from the same signing is refused.
      const three = fresh();
      now = new Date(Date.now() + 31 * DAY);
      expect(docs.crlExpired()).to.equal(true);
      expect(docs.offerCrl(three, 'relay')).to.deep.include({ adopted: false, reason: 'expired' });
      // And a CRL from the future (beyond the allowed skew) likewise.
      now = new Date(Date.now() - DAY);
      expect(docs.offerCrl(three, 'relay')).to.deep.include({ adopted: false, reason: 'expired' });
      now = new Date();
      expect(docs.offerCrl(three, 'relay')).to.deep.equal({ adopted: true });
      expect(docs.offerCrl('-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n', 'relay')).to.deep.include({ adopted: false, reason: 'invalid' });
      expect(refused).to.deep.equal(['older', 'expired', 'expired', 'invalid']);
      expect(readFileSync(join(tmp.dir, 'a', FEDERATION_DIR, FEDERATION_FILES.crl), 'utf8')).to.equal(three);
    });
  });

  it('prefers the kept CRL over an older CRL file at start-up, and the file when it is newer', async function () {
    const dir = join(tmp.dir, 'b');
    const older = parseCrl(fresh(), caPem);
    const newer = fresh();
    const first = new FederationDocuments(dir, caPem);
    await first.open(undefined);
    first.offerCrl(newer, 'relay');
    const again = new FederationDocuments(dir, caPem);
    const refused: unknown[] = [];
    again.on('refused', (r) => refused.push(r));
    await again.open(older);
    expect(again.crl?.pem).to.equal(newer);
    expect(refused).to.deep.equal([]);
    const newest = parseCrl(fresh(), caPem);
    const third = new FederationDocuments(dir, caPem);
    await third.open(newest);
    expect(third.crl?.crlNumber).to.equal(newest.crlNumber);
  });

  it('adopts a newer directory only, keeps it on disk, and ignores a corrupt kept copy', async function () {
    const store = DirectoryStore.init(ca);
    store.add({ id: 'alpha', name: 'Alpha', organisation: 'Alpha Org', role: 'hospital', status: 'active' });
    const one = (await store.sign()).jws;
    const two = (await store.sign()).jws;
    const dir = join(tmp.dir, 'c');
    const docs = new FederationDocuments(dir, caPem);
    await docs.open(undefined);
    expect(await docs.offerDirectory(two, 'relay')).to.deep.equal({ adopted: true });
    expect(await docs.offerDirectory(one, 'relay')).to.deep.include({ adopted: false, reason: 'older' });
    expect(await docs.offerDirectory(two, 'relay')).to.deep.equal({ adopted: false, reason: 'same' });
    const kept = new FederationDocuments(dir, caPem);
    await kept.open(undefined);
    expect(kept.directory?.directory.sequence).to.equal(2);
    writeFileSync(join(dir, FEDERATION_DIR, FEDERATION_FILES.directory), 'garbage');
    const corrupt = new FederationDocuments(dir, caPem);
    const refused: string[] = [];
    corrupt.on('refused', (r) => refused.push(`${r.type}:${r.reason}`));
    await corrupt.open(undefined);
    expect(corrupt.directory).to.equal(undefined);
    expect(refused).to.deep.equal(['directory:invalid']);
  });
});

describe('SelfStanding', function () {
  function make(serial = 'abc'): { standing: SelfStanding; holds: number[]; lines: Array<{ level: number; msg: string }>; gauge: number[] } {
    const lines: Array<{ level: number; msg: string }> = [];
    const out = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { level: number; msg: string });
        cb();
      },
    });
    const holds: number[] = [];
    const gauge: number[] = [];
    const standing = new SelfStanding(() => serial, { holdOff: (ms) => holds.push(ms) }, pino({ level: 'debug' }, out), { set: (v) => gauge.push(v) });
    return { standing, holds, lines, gauge };
  }
  const crlListing = (serials: string[]) => ({ revoked: new Map(serials.map((s) => [s, { serial: s, revokedAt: new Date() }])) }) as never;

  it('says it once, holds the relay off, and lifts the hold when the relay greets it again', function () {
    const { standing, holds, lines, gauge } = make();
    standing.onRelayRefusal(false);
    expect(standing.revoked).to.equal(false);
    standing.onRelayRefusal(true);
    standing.onRelayRefusal(true);
    expect(standing.revoked).to.equal(true);
    expect(lines.filter((l) => l.level === 50)).to.have.length(1);
    expect(holds).to.deep.equal([REVOKED_RETRY_MS]);
    standing.onRelayReady();
    expect(standing.revoked).to.equal(false);
    expect(holds).to.deep.equal([REVOKED_RETRY_MS, 0]);
    expect(gauge.at(-1)).to.equal(0);
  });

  it('is revoked while the CRL in force lists its serial, whatever the relay says', function () {
    const { standing, holds } = make('abc');
    standing.onCrl(crlListing(['def']));
    expect(standing.revoked).to.equal(false);
    standing.onCrl(crlListing(['abc']));
    standing.onRelayReady();
    expect(standing.revoked).to.equal(true);
    expect(holds).to.deep.equal([REVOKED_RETRY_MS]);
  });
});
