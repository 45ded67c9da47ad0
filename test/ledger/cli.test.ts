import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { main } from '../../ledger/cli.ts';
import { feedKey, Store } from '../../ledger/store.ts';
import { snapshot, tempDir } from '../support/tmp.ts';
import { buildStory, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await main(argv, { out: (t) => (out += t) });
  return { code, out };
}

describe('hie-ledger CLI', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  let story: string;
  let ca: string;

  before(async () => {
    tmp = tempDir('hie-ledger-cli-');
    world = await makeWorld(tmp.dir);
    story = await buildStory(world, tmp.dir);
    ca = world.fed.caPath;
  });
  after(() => tmp.cleanup());

  it('verify exits 0 on a clean database and leaves the database untouched', async () => {
    const before = snapshot(story);
    const r = await run(['verify', '--data', story, '--ca', ca]);
    expect(r.code).to.equal(0);
    expect(r.out).to.match(/^OK: \d+ entries in 2 feeds/);
    expect(snapshot(story)).to.deep.equal(before);
  });

  it('verify exits 1 with findings (feed, seq, rule, detail) as JSON on a tampered copy', async () => {
    const p = dbPath(tmp.dir, 'tampered');
    cpSync(story, p, { recursive: true });
    const s = await Store.open(p);
    await s.entries.del(feedKey('alpha', 5));
    await s.close();
    const r = await run(['verify', '--data', p, '--ca', ca, '--json']);
    expect(r.code).to.equal(1);
    const json = JSON.parse(r.out) as { ok: boolean; findings: Array<{ feed: string; seq: number; rule: string; detail: string }> };
    expect(json.ok).to.equal(false);
    expect(json.findings[0]).to.have.keys(['feed', 'seq', 'rule', 'detail']);
    expect(json.findings.map((f) => f.rule)).to.include('seq.gap');
  });

  it('verify --at judges unanswered exchanges at a given time, with --grace', async () => {
    const later = new Date(Date.now() + 86_400_000).toISOString();
    expect((await run(['verify', '--data', story, '--ca', ca, '--at', later])).code).to.equal(0);
  });

  it('exports a bundle that verifies offline and imports into an empty database', async () => {
    const out = join(tmp.dir, 'story.bundle.json');
    expect((await run(['export', '--data', story, '--format', 'bundle', '--out', out])).code).to.equal(0);
    expect((await run(['verify', '--bundle', out, '--ca', ca])).code).to.equal(0);
    const target = dbPath(tmp.dir, 'imported');
    const imp = await run(['import', '--data', target, '--bundle', out, '--ca', ca]);
    expect(imp.out).to.match(/alpha: 12 entries imported, head 11/);
    expect((await run(['verify', '--data', target, '--ca', ca])).code).to.equal(0);
    // A bundle with an altered entry is refused on import and changes nothing.
    const bundle = JSON.parse(readFileSync(out, 'utf8')) as { feeds: Array<{ feed: string; entries: string[] }> };
    const feed = bundle.feeds.find((f) => f.feed === 'alpha')!;
    const bytes = Buffer.from(feed.entries[3]!, 'base64');
    bytes[bytes.indexOf('bravo')] = 0x63;
    feed.entries[3] = bytes.toString('base64');
    const badPath = join(tmp.dir, 'bad.bundle.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(badPath, JSON.stringify(bundle));
    expect((await run(['verify', '--bundle', badPath, '--ca', ca])).code).to.equal(1);
    const fresh = dbPath(tmp.dir, 'refused');
    const err = await run(['import', '--data', fresh, '--bundle', badPath, '--ca', ca]).catch((e: { code: string; exitCode?: number }) => e);
    expect((err as { code: string }).code).to.match(/^ERR_LEDGER_/);
    // Nothing verified is not "findings": exit 2, so a script can tell the two apart.
    expect((err as { exitCode?: number }).exitCode).to.equal(2);
    const noCa = await run(['verify', '--data', story]).catch((e: { exitCode?: number }) => e);
    expect((noCa as { exitCode?: number }).exitCode).to.equal(2);
  });

  it('exports FHIR R4 AuditEvent NDJSON without patient ids in the clear', async () => {
    const r = await run(['export', '--data', story, '--format', 'auditevent']);
    const events = r.out
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            resourceType: string;
            recorded: string;
            agent: unknown[];
            source: unknown;
            type: { code: string };
            subtype: Array<{ code: string }>;
          },
      );
    expect(events.length).to.equal(15);
    for (const e of events) {
      expect(e.resourceType).to.equal('AuditEvent');
      expect(e.recorded).to.match(/Z$/);
      expect(e.agent.length).to.be.greaterThan(0);
      expect(e.source).to.have.property('observer');
    }
    expect(events.filter((e) => e.subtype[0]?.code === 'exchange.sent').map((e) => e.type.code)).to.deep.equal(['110106', '110106', '110106']);
    expect(r.out).to.contain(patientHmac(1));
    expect(r.out).not.to.contain('patient-1');
  });

  it('reports exchanges, consents and charges per hospital', async () => {
    const r = await run(['report', '--data', story, '--json']);
    const rep = JSON.parse(r.out) as {
      hospitals: Array<{
        hospital: string;
        exchanges: Record<string, number>;
        consents: Record<string, number>;
        charges: { paid: Record<string, number>; earned: Record<string, number> };
      }>;
    };
    const alpha = rep.hospitals.find((h) => h.hospital === 'alpha')!;
    const bravo = rep.hospitals.find((h) => h.hospital === 'bravo')!;
    expect(alpha.exchanges).to.include({ sent: 3, delivered: 2, failed: 1, bytesSent: 6000 });
    expect(alpha.consents).to.deep.equal({ granted: 1, revoked: 1 });
    expect(alpha.charges.earned).to.deep.equal({ EUR: 500 });
    expect(bravo.charges.paid).to.deep.equal({ EUR: 500 });
    expect(bravo.exchanges).to.include({ received: 2, bytesReceived: 3000 });
    const text = await run(['report', '--data', story, '--from', '2000-01-01T00:00:00Z']);
    expect(text.out).to.contain('alpha\n  exchanges: 3 sent (6000 bytes)');
    const empty = await run(['report', '--data', story, '--to', '2000-01-01T00:00:00Z', '--json']);
    expect((JSON.parse(empty.out) as { hospitals: Array<{ exchanges: { sent: number } }> }).hospitals.every((h) => h.exchanges.sent === 0)).to.equal(true);
  });

  it('prints help and fails with one-line errors naming the problem', async () => {
    expect((await run(['--help'])).out).to.contain('verify');
    expect((await run(['verify', '--help'])).out).to.match(/^Usage: hie-ledger verify/);
    const err = (argv: string[]) =>
      run(argv).then(
        () => 'no error',
        (e: Error & { code: string }) => `${e.code} ${e.message}`,
      );
    expect(await err(['verify', '--data', story])).to.match(/ERR_LEDGER_INVALID_ARGUMENT --ca is required/);
    expect(await err(['verify', '--ca', ca])).to.match(/exactly one of --data DIR or --bundle FILE/);
    expect(await err(['verify', '--data', tmp.dir, '--ca', ca])).to.match(/not a ledger database/);
    expect(await err(['export', '--data', story, '--format', 'csv'])).to.match(/--format must be bundle or auditevent/);
    expect(await err(['frobnicate'])).to.match(/unknown command/);
    expect(await err(['verify', '--data', story, '--ca', ca, '--grace', 'soon'])).to.match(/--grace must be a whole number/);
  });

  it('takes RFC 3339 / FHIR dateTime dates only for --at, --from and --to, naming the option', async () => {
    const err = (argv: string[]) =>
      run(argv).then(
        () => 'no error',
        (e: Error & { code: string }) => `${e.code} ${e.message}`,
      );
    // The junk of issue 21: `new Date()` read 'hello 2031' as 2031-01-01 and the others as dates too.
    for (const junk of ['not-a-date-7731', 'hello 2031', '2031-02-30', '2031-06-01T10:00:00', 'Sun, 01 Jun 2031 10:00:00 GMT', '06/01/2031']) {
      expect(await err(['verify', '--data', story, '--ca', ca, '--at', junk]), junk).to.match(/ERR_LEDGER_INVALID_ARGUMENT --at must be an RFC 3339/);
      expect(await err(['report', '--data', story, '--from', junk]), junk).to.match(/ERR_LEDGER_INVALID_ARGUMENT --from must be an RFC 3339/);
      expect(await err(['report', '--data', story, '--to', junk]), junk).to.match(/ERR_LEDGER_INVALID_ARGUMENT --to must be an RFC 3339/);
    }
    expect((await run(['report', '--data', story, '--from', '2000', '--json'])).code).to.equal(0);
  });

  it('runs through bin/hie-ledger.js: exit code 2 (nothing verified) and a single stderr line on error', async () => {
    const bin = join(process.cwd(), 'bin', 'hie-ledger.js');
    const r = await promisify(execFile)(process.execPath, [bin, 'verify', '--data', story]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).to.equal(2);
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^hie-ledger: error: --ca is required \[ERR_LEDGER_INVALID_ARGUMENT\]/);
  });
});
