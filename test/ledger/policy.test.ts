import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { cosign, cosignerKey, cosignerVerifierKey } from '../../ledger/cosign.ts';
import { signCheckpointNote } from '../../ledger/note.ts';
import { countWitnesses, MAX_COSIGNATURES_READ, parseWitnessPolicy, type KnownWitness } from '../../ledger/policy.ts';

const origin = 'hie.federation/0011223344556677/alpha';
const author = generateKeyPairSync('ed25519');
const note = signCheckpointNote({ origin, size: 9, root: Buffer.alloc(32, 7) }, author.privateKey);
const text = note.slice(0, note.indexOf('\n\n') + 1);

function witness(id: string): KnownWitness & { priv: ReturnType<typeof generateKeyPairSync>['privateKey'] } {
  const k = generateKeyPairSync('ed25519');
  const name = `hie.federation/0011223344556677/witness/${id}`;
  return { id, ...cosignerKey(name, k.publicKey), priv: k.privateKey };
}
const line = (w: ReturnType<typeof witness>, t = 1_790_000_000) => cosign(text, w.name, w.priv, t);
const bravo = witness('bravo');
const charlie = witness('charlie');
const delta = witness('delta');
const known = [bravo, charlie, delta];
const any1 = parseWitnessPolicy({});

describe('witness policy', () => {
  it('counts a checkpoint witnessed once a policy witness cosigned it', () => {
    const r = countWitnesses(note + line(bravo), 'alpha', known, any1);
    expect(r.witnessed).to.equal(true);
    expect(r.witnesses.map((w) => w.id)).to.deep.equal(['bravo']);
  });

  it('refuses a checkpoint with too few cosignatures for the quorum', () => {
    const r = countWitnesses(note + line(bravo), 'alpha', known, parseWitnessPolicy({ quorum: 2 }));
    expect(r.witnessed).to.equal(false);
    expect(countWitnesses(note + line(bravo) + line(charlie), 'alpha', known, parseWitnessPolicy({ quorum: 2 })).witnessed).to.equal(true);
    expect(countWitnesses(note, 'alpha', known, any1).witnessed).to.equal(false);
  });

  it('does not count a witness outside the policy', () => {
    const policy = parseWitnessPolicy({ quorum: 1, witnesses: ['bravo'] });
    const r = countWitnesses(note + line(charlie), 'alpha', known, policy);
    expect(r.witnessed).to.equal(false);
    // The author's line and charlie's.
    expect(r.ignored).to.equal(2);
  });

  it('counts one witness once: two lines of the same key, or two keys of the same agent', () => {
    const policy = parseWitnessPolicy({ quorum: 2 });
    // Two lines with the same name and key id (different times).
    const twice = `${note}${line(bravo, 1)}${line(bravo, 2)}`;
    const r = countWitnesses(twice, 'alpha', known, policy);
    expect(r.witnesses).to.have.length(1);
    expect(r.witnessed).to.equal(false);
    // A second (rotated) key of bravo under its name.
    const k2 = generateKeyPairSync('ed25519');
    const bravo2 = { ...cosignerKey(bravo.name, k2.publicKey), id: 'bravo' };
    const both = `${note}${line(bravo)}${cosign(text, bravo.name, k2.privateKey, 3)}`;
    const r2 = countWitnesses(both, 'alpha', [...known, bravo2], policy);
    expect(r2.witnesses.map((w) => w.id)).to.deep.equal(['bravo']);
    expect(r2.witnessed).to.equal(false);
  });

  it("never counts the author's own cosignature", () => {
    const alpha = witness('alpha');
    const r = countWitnesses(note + line(alpha), 'alpha', [...known, alpha], any1);
    expect(r.witnessed).to.equal(false);
    expect(r.ignored).to.equal(2);
  });

  it('ignores signatures by unknown keys (and a known name with another key id)', () => {
    const stranger = witness('echo');
    const impostor = generateKeyPairSync('ed25519');
    const fake = cosign(text, bravo.name, impostor.privateKey, 5);
    const r = countWitnesses(note + line(stranger) + fake + line(charlie), 'alpha', known, any1);
    expect(r.witnessed).to.equal(true);
    expect(r.ignored).to.equal(3);
    expect(r.witnesses.map((w) => w.id)).to.deep.equal(['charlie']);
  });

  it(`reads at most ${MAX_COSIGNATURES_READ} signature lines: a note with more counts nothing`, () => {
    const junk: string[] = [];
    // With the author's line and bravo's: two over the cap; one under it without two of them.
    for (let i = 0; i < MAX_COSIGNATURES_READ; i++) junk.push(line(witness(`x${i}`)));
    const r = countWitnesses(note + line(bravo) + junk.join(''), 'alpha', known, any1);
    expect(r.witnessed).to.equal(false);
    expect(r.problems.join()).to.match(/more than 32 signatures/);
    expect(countWitnesses(note + line(bravo) + junk.slice(2).join(''), 'alpha', known, any1).witnessed).to.equal(true);
  });

  it("refuses a known witness's line that does not verify", () => {
    const bad = line(bravo).replace(/[A-Za-z0-9+/]{4}==\n$/, 'AAAA==\n');
    const r = countWitnesses(note + bad + line(charlie), 'alpha', known, any1);
    expect(r.witnessed).to.equal(false);
    expect(r.problems.join()).to.match(/does not verify/);
  });

  it('accepts outside witnesses named by vkey, and rejects a policy asking more witnesses than it names', () => {
    const vkey = cosignerVerifierKey(delta.name, delta.key);
    const policy = parseWitnessPolicy({ quorum: 1, witnesses: [vkey] });
    const outsider = { ...delta, id: vkey };
    expect(countWitnesses(note + line(delta), 'alpha', [outsider], policy).witnessed).to.equal(true);
    expect(countWitnesses(note + line(delta), 'alpha', known, policy).witnessed).to.equal(false);
    expect(() => parseWitnessPolicy({ quorum: 2, witnesses: ['bravo'] })).to.throw(/asks for 2 witnesses but names 1/);
    expect(() => parseWitnessPolicy('{"quorum": -1}')).to.throw(/quorum/);
    expect(() => parseWitnessPolicy('{"k": 1}')).to.throw(/witness policy is invalid/);
  });
});
