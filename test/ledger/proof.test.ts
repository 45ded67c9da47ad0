import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { main } from '../../ledger/cli.ts';
import { decodeEntry } from '../../ledger/entry.ts';
import type { ProofFile } from '../../ledger/proof.ts';
import { tempDir } from '../support/tmp.ts';
import { generateKeyPairSync } from 'node:crypto';
import { cosign, cosignerVerifierKey, witnessName } from '../../ledger/cosign.ts';
import { MAX_COSIGNATURES_READ } from '../../ledger/policy.ts';
import { buildStory, contentHash, dbPath, makeWorld, patientHmac, type LedgerWorld } from './support.ts';

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  try {
    const code = await main(argv, { out: (t) => (out += t) });
    return { code, out };
  } catch (err) {
    return { code: (err as { exitCode?: number }).exitCode ?? -1, out: (err as Error).message };
  }
}

describe('hie-ledger prove and verify-proof', function () {
  let tmp: { dir: string; cleanup: () => void };
  let world: LedgerWorld;
  let story: string;
  let ca: string;
  let proof: ProofFile;
  let n = 0;

  before(async () => {
    tmp = tempDir('hie-ledger-proof-');
    world = await makeWorld(tmp.dir);
    story = await buildStory(world, tmp.dir, 'story', { witnessed: true });
    ca = world.fed.caPath;
    const out = join(tmp.dir, 'p.json');
    const r = await run(['prove', '--data', story, '--exchange', 'exchange-0001', '--out', out]);
    expect(r.code, r.out).to.equal(0);
    proof = JSON.parse(readFileSync(out, 'utf8')) as ProofFile;
  });
  after(() => tmp.cleanup());

  const write = (p: unknown): string => {
    const f = join(tmp.dir, `v${n++}.json`);
    writeFileSync(f, typeof p === 'string' ? p : JSON.stringify(p));
    return f;
  };
  const copy = (): ProofFile => JSON.parse(JSON.stringify(proof)) as ProofFile;
  const verify = (p: unknown) => run(['verify-proof', write(p), '--ca', ca]);

  it('writes the exchange story and nothing else: consent, sent, received, receipt, charge, with checkpoints and bundles', () => {
    const types = proof.entries.map((e) => decodeEntry(Buffer.from(e.entry, 'base64')).entry.type).sort();
    expect(types).to.deep.equal(['consent.granted', 'consent.revoked', 'exchange.received', 'exchange.sent', 'payment.charged', 'receipt']);
    expect(new Set(proof.checkpoints.map((c) => c.feed))).to.deep.equal(new Set(['alpha', 'bravo']));
    expect(proof.bundles.map((b) => (b as { agent: string }).agent).sort()).to.deep.equal(['alpha', 'bravo']);
  });

  it('verifies a valid proof offline and says what it proved', async () => {
    const r = await verify(proof);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/^PROVED: 6 entries/);
    expect(r.out).to.match(/valid from \S+, revoked at \S+, after this release\)/);
    expect(r.out).to.match(/exchange exchange-0001: sent by alpha to bravo at \S+ for TREAT under consent consent-0001 \(granted by alpha at /);
    expect(r.out).to.match(/received by bravo from alpha at /);
    expect(r.out).to.match(/content SHA-256 [0-9a-f]{64}/);
    expect(r.out).to.match(/receipt delivered from bravo/);
  });

  it('proves named entries with --entry', async () => {
    const out = join(tmp.dir, 'e.json');
    expect((await run(['prove', '--data', story, '--entry', 'alpha:1', '--entry', 'bravo:1', '--out', out])).code).to.equal(0);
    const r = await run(['verify-proof', out, '--ca', ca]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/entry alpha:1 \(consent\.granted/);
  });

  it('fails (exit 1, saying which) on a changed entry byte', async () => {
    const p = copy();
    const e = p.entries.find((x) => decodeEntry(Buffer.from(x.entry, 'base64')).entry.type === 'exchange.sent') as ProofFile['entries'][number];
    const bytes = Buffer.from(e.entry, 'base64');
    // One hex digit of the content hash: the entry still parses, its leaf hash no longer fits the proof.
    const at = bytes.indexOf('"hash":"') + 8;
    bytes[at] = bytes[at] === 0x61 ? 0x62 : 0x61;
    e.entry = bytes.toString('base64');
    const r = await verify(p);
    expect(r.code).to.equal(1);
    expect(r.out).to.match(new RegExp(`entry ${e.feed}:${e.seq}: the inclusion proof does not lead`));
  });

  it('fails on a proof for the wrong index, a truncated proof and a padded proof', async () => {
    const wrong = copy();
    const e = wrong.entries.find((x) => x.proof.length > 1) as ProofFile['entries'][number];
    const other = wrong.entries.find((x) => x.feed === e.feed && x.seq !== e.seq) as ProofFile['entries'][number];
    e.proof = other.proof;
    const r0 = await verify(wrong);
    expect(r0.code).to.equal(1);
    expect(r0.out).to.match(new RegExp(`entry ${e.feed}:${e.seq}: the inclusion proof does not lead from this entry at index ${e.seq}`));
    const cut = copy();
    const c = cut.entries.find((x) => x.proof.length > 0) as ProofFile['entries'][number];
    c.proof = c.proof.slice(0, -1);
    const r1 = await verify(cut);
    expect(r1.code).to.equal(1);
    expect(r1.out).to.match(/the inclusion proof does not lead/);
    const pad = copy();
    const d = pad.entries[0] as ProofFile['entries'][number];
    d.proof = [...d.proof, Buffer.alloc(32).toString('base64')];
    expect((await verify(pad)).code).to.equal(1);
  });

  it('fails on a checkpoint signed by the wrong key, or one whose bundle is missing', async () => {
    const p = copy();
    // bravo's bundle in place of alpha's: alpha's checkpoints are then signed by no CA-bound key of alpha.
    p.bundles = p.bundles.filter((b) => (b as { agent: string }).agent !== 'alpha');
    const r = await verify(p);
    expect(r.code).to.equal(1);
    expect(r.out).to.match(/checkpoint \d+ of alpha: it is not signed by a CA-bound key of alpha/);
    const q = copy();
    const cp = q.checkpoints.find((c) => c.feed === 'alpha') as { note: string };
    const bravoNote = (q.checkpoints.find((c) => c.feed === 'bravo') as { note: string }).note;
    cp.note = cp.note.slice(0, cp.note.lastIndexOf('\u2014')) + bravoNote.slice(bravoNote.lastIndexOf('\u2014'));
    expect((await verify(q)).code).to.equal(1);
  });

  it('exits 2 when nothing could be checked: not JSON, wrong format, no entries', async () => {
    expect((await verify('{')).code).to.equal(2);
    expect((await verify({ ...copy(), format: 'other' })).code).to.equal(2);
    expect((await verify({ ...copy(), entries: [] })).code).to.equal(2);
    expect((await run(['prove', '--data', story, '--exchange', 'exchange-9999'])).code).to.equal(2);
  });

  describe('witness policy', () => {
    const cosigned = (p: ProofFile): ProofFile['checkpoints'][number] => p.checkpoints.find((c) => c.feed === 'alpha') as ProofFile['checkpoints'][number];
    const textOf = (note: string): string => note.slice(0, note.indexOf('\n\n') + 1);
    const policyFile = (p: unknown): string => write(p);
    const bravoName = (): string => witnessName(world.caPem, 'bravo');

    it('proves against checkpoints cosigned by a witness other than the author, and names the witness', async () => {
      expect(cosigned(proof).note).to.include(`\u2014 ${bravoName()} `);
      const r = await verify(proof);
      expect(r.code, r.out).to.equal(0);
      expect(r.out).to.match(/the log of alpha at tree size \d+ was witnessed by bravo \(at /);
      expect(r.out).to.match(/1 witness other than the author/);
    });

    it('fails a proof against a checkpoint with too few cosignatures for the policy', async () => {
      const r = await run(['verify-proof', write(proof), '--ca', ca, '--policy', policyFile({ quorum: 2 })]);
      expect(r.code, r.out).to.equal(1);
      expect(r.out).to.match(
        /checkpoint \d+ of alpha \(tree size \d+\) is not witnessed as the policy requires \(2 witnesses other than alpha\): 1 counted \(bravo\)/,
      );
      // Without any cosignature, the default policy (1 witness) already fails.
      const bare = copy();
      for (const c of bare.checkpoints) c.note = authorOnly(c.note);
      const r2 = await verify(bare);
      expect(r2.code, r2.out).to.equal(1);
      expect(r2.out).to.match(/is not witnessed as the policy requires \(1 witness other than alpha\): 0 counted/);
    });

    it('does not count a witness outside the policy', async () => {
      const r = await run(['verify-proof', write(proof), '--ca', ca, '--policy', policyFile({ quorum: 1, witnesses: ['charlie'] })]);
      expect(r.code, r.out).to.equal(1);
      expect(r.out).to.match(/not witnessed as the policy requires \(1 of charlie\): 0 counted, 2 signatures ignored/);
      const ok = await run(['verify-proof', write(proof), '--ca', ca, '--policy', policyFile({ quorum: 1, witnesses: ['alpha', 'bravo'] })]);
      expect(ok.code, ok.out).to.equal(0);
    });

    it('counts one witness once: a second cosignature line by the same key does not make two', async () => {
      const p = copy();
      const c = cosigned(p);
      c.note += cosign(textOf(c.note), bravoName(), world.agents['bravo']!.signingKey, 1_790_000_123);
      const r = await run(['verify-proof', write(p), '--ca', ca, '--policy', policyFile({ quorum: 2 })]);
      expect(r.code, r.out).to.equal(1);
      expect(r.out).to.match(/2 witnesses other than alpha\): 1 counted \(bravo\)/);
    });

    it('ignores cosignatures by unknown keys, and by a known name with a key the CA never bound', async () => {
      const p = copy();
      const c = cosigned(p);
      const stranger = generateKeyPairSync('ed25519').privateKey;
      c.note += cosign(textOf(c.note), 'witness.example.org/w1', stranger, 1_790_000_000);
      c.note += cosign(textOf(c.note), witnessName(world.caPem, 'charlie'), stranger, 1_790_000_000);
      const r = await verify(p);
      expect(r.code, r.out).to.equal(0);
      const two = await run(['verify-proof', write(p), '--ca', ca, '--policy', policyFile({ quorum: 2 })]);
      expect(two.out).to.match(/1 counted \(bravo\), 3 signatures ignored/);
    });

    it(`reads at most ${MAX_COSIGNATURES_READ} signature lines of a checkpoint: more fail the proof`, async () => {
      const p = copy();
      const c = cosigned(p);
      for (let i = 0; i < MAX_COSIGNATURES_READ; i++)
        c.note += cosign(textOf(c.note), `witness.example.org/w${i}`, generateKeyPairSync('ed25519').privateKey, 1);
      const r = await verify(p);
      expect(r.code, r.out).to.equal(1);
      expect(r.out).to.match(/note has more than 32 signatures/);
    });

    it('accepts an outside witness named by vkey in the policy', async () => {
      const p = copy();
      const k = generateKeyPairSync('ed25519');
      for (const c of p.checkpoints) c.note += cosign(textOf(c.note), 'witness.example.org/w1', k.privateKey, 1_790_000_000);
      const vkey = cosignerVerifierKey('witness.example.org/w1', k.publicKey);
      const r = await run(['verify-proof', write(p), '--ca', ca, '--policy', policyFile({ quorum: 2, witnesses: ['alpha', 'bravo', vkey] })]);
      expect(r.code, r.out).to.equal(0);
      expect(r.out).to.match(/witnessed by bravo \(at [^)]+\), witness\.example\.org\/w1 \(at /);
      expect((await run(['verify-proof', write(p), '--ca', ca, '--policy', policyFile('{"quorum": 3}')])).code).to.equal(1);
      expect((await run(['verify-proof', write(p), '--ca', ca, '--policy', policyFile('{"quorum": "x"}')])).code).to.equal(2);
    });

    it('proves a consent: its grant, its revocation and the releases under it', async () => {
      const out = join(tmp.dir, 'consent.json');
      const w = await run(['prove', '--data', story, '--consent', 'consent-0001', '--out', out]);
      expect(w.code, w.out).to.equal(0);
      const r = await run(['verify-proof', out, '--ca', ca]);
      expect(r.code, r.out).to.equal(0);
      expect(r.out).to.match(
        /consent consent-0001: granted by alpha at \S+ to bravo for TREAT, valid from \S+; revoked by alpha at \S+ \(patient-request\); releases under it: exchange exchange-0001 to bravo/,
      );
    });
  });

  it('fails an exchange whose consent was revoked before the release, saying when', async () => {
    const path = dbPath(tmp.dir, 'revoked-first');
    const alpha = await world.open('alpha', path);
    const t0 = new Date(Date.now() - 3_600_000).toISOString();
    await alpha.append({
      type: 'consent.granted',
      body: { consent: 'consent-0099', patient: patientHmac(9), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: t0 },
    });
    await alpha.append({ type: 'consent.revoked', body: { consent: 'consent-0099', reason: 'patient-request' } });
    const body = { exchange: 'exchange-0099', to: 'bravo', consent: 'consent-0099', patient: patientHmac(9), purpose: 'TREAT' as const };
    await alpha.append({ type: 'exchange.sent', body: { ...body, contentType: 'application/fhir+json', bytes: 10, hash: contentHash(9) } });
    await alpha.close();
    const out = join(tmp.dir, 'revoked.json');
    expect((await run(['prove', '--data', path, '--exchange', 'exchange-0099', '--out', out])).code).to.equal(0);
    const r = await run(['verify-proof', out, '--ca', ca, '--policy', write({ quorum: 0 })]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.match(/consent consent-0099 was revoked at \S+, before the release at /);
  });

  it('runs through bin/hie-ledger.js: prove writes the file, verify-proof exits 0 on it and 1 on a tampered copy', async () => {
    const bin = join(process.cwd(), 'bin', 'hie-ledger.js');
    const exec = (args: string[]) =>
      promisify(execFile)(process.execPath, [bin, ...args]).then(
        (r) => ({ code: 0, stdout: r.stdout }),
        (e: { code: number; stdout: string }) => e,
      );
    const out = join(tmp.dir, 'bin.proof.json');
    expect((await exec(['prove', '--data', story, '--exchange', 'exchange-0002', '--out', out])).code).to.equal(0);
    const ok = await exec(['verify-proof', out, '--ca', ca]);
    expect(ok.code, ok.stdout).to.equal(0);
    expect(ok.stdout).to.match(/exchange exchange-0002: sent by alpha/);
    const p = JSON.parse(readFileSync(out, 'utf8')) as ProofFile;
    (p.entries[0] as ProofFile['entries'][number]).proof.reverse();
    (p.entries[0] as ProofFile['entries'][number]).proof.push(Buffer.alloc(32).toString('base64'));
    const bad = await exec(['verify-proof', write(p), '--ca', ca]);
    expect(bad.code).to.equal(1);
    expect(bad.stdout).to.match(/^FAILED: 1 checks failed/);
  });
});

/** `note` with only its first (the author's) signature line. */
function authorOnly(note: string): string {
  const split = note.indexOf('\n\n');
  const first = note.slice(split + 2).split('\n')[0];
  return `${note.slice(0, split + 1)}\n${first}\n`;
}
