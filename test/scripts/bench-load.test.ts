import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { raiseFileLimit } from '../../scripts/bench/load.ts';

/** This process's open-file limits, read from /proc as the kernel reports them. */
function limits(): { soft: number; hard: number } {
  const m = /Max open files\s+(\S+)\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return { soft: Number(m?.[1]), hard: m?.[2] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m?.[2]) };
}

describe('bench load: the bench raises its own open-file limit (prlimit) for 10,000 connections', function () {
  it('leaves a limit that is already enough as it is', function () {
    const before = limits();
    expect(raiseFileLimit(Math.max(1, before.soft - 1))).to.equal(before.soft);
    expect(limits()).to.deep.equal(before);
  });

  it('raises the soft limit of the running process to what it needs', function () {
    const before = limits();
    // Lower the soft limit first (anyone may), so there is something to raise whatever the machine's limits.
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.soft - 100}:${before.hard}`]);
    expect(limits().soft).to.equal(before.soft - 100);
    const got = raiseFileLimit(before.soft);
    expect(got).to.equal(before.soft);
    // The kernel's view, not the function's own claim.
    expect(limits()).to.deep.equal(before);
  });
});
