import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { snapshot, tempDir } from '../support/tmp.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-certs.js', import.meta.url));

function run(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env, HIE_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectOneLineError(r: { code: number | null; stderr: string }, pattern: RegExp): void {
  expect(r.code).to.not.equal(0);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).to.have.length(1);
  expect(lines[0]).to.match(/^hie-certs: error: /);
  expect(lines[0]).to.match(pattern);
  expect(r.stderr).not.to.match(/\n\s+at /);
}

describe('hie-certs CLI', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let pki: string;

  before(() => {
    tmp = tempDir();
    pki = join(tmp.dir, 'pki');
  });
  after(() => tmp.cleanup());

  it('prints help with every command and exits 0', function () {
    const r = run(['--help']);
    expect(r.code).to.equal(0);
    for (const c of ['init', 'issue-relay', 'issue-agent', 'revoke', 'crl', 'list', 'request', 'sign', 'renew', 'install']) expect(r.stdout).to.contain(c);
    const sub = run(['issue-agent', '--help']);
    expect(sub.code).to.equal(0);
    expect(sub.stdout).to.contain('--id HOSPITAL_ID');
  });

  it('runs the operator workflow with a passphrase-protected CA', function () {
    const env = { CA_PASS: 'a long enough passphrase' };
    expect(run(['init', '--dir', pki, '--name', 'CLI CA', '--days', '400', '--passphrase-env', 'CA_PASS'], env).code).to.equal(0);
    const relay = run(
      ['issue-relay', '--dir', pki, '--host', 'localhost', '--host', '127.0.0.1', '--out', join(tmp.dir, 'relay'), '--passphrase-env', 'CA_PASS'],
      env,
    );
    expect(relay.code, relay.stderr).to.equal(0);
    const agent = run(
      ['issue-agent', '--dir', pki, '--id', 'myongji', '--org', 'Myongji', '--out', join(tmp.dir, 'agents'), '--passphrase-env', 'CA_PASS'],
      env,
    );
    expect(agent.code, agent.stderr).to.equal(0);
    const list = run(['list', '--dir', pki, '--json']);
    const rows = JSON.parse(list.stdout) as Array<{ kind: string; status: string; id?: string; serial: string }>;
    expect(rows.map((r) => [r.kind, r.status])).to.deep.equal([
      ['relay', 'valid'],
      ['agent', 'valid'],
    ]);
    const revoke = run(['revoke', '--dir', pki, '--id', 'myongji', '--reason', 'superseded', '--passphrase-env', 'CA_PASS'], env);
    expect(revoke.code, revoke.stderr).to.equal(0);
    const crlOut = join(tmp.dir, 'published.crl.pem');
    expect(run(['crl', '--dir', pki, '--out', crlOut, '--days', '7', '--passphrase-env', 'CA_PASS'], env).code).to.equal(0);
    expect(readFileSync(crlOut, 'utf8')).to.contain('BEGIN X509 CRL');
    const table = run(['list', '--dir', pki]);
    expect(table.stdout).to.match(/myongji\s+agent\s+[0-9a-f]+\s+O=Myongji, CN=myongji.*revoked/);
  });

  it('gives one-line errors for bad input and changes nothing on disk', function () {
    const before = snapshot(tmp.dir);
    expectOneLineError(
      run(['issue-agent', '--dir', pki, '--id', 'Bad_Id', '--out', join(tmp.dir, 'x'), '--passphrase-env', 'CA_PASS'], { CA_PASS: 'a long enough passphrase' }),
      /invalid hospital id/,
    );
    expectOneLineError(run(['issue-agent', '--dir', join(tmp.dir, 'no-pki'), '--id', 'abc', '--out', join(tmp.dir, 'x')]), /no CA in/);
    expectOneLineError(
      run(['issue-agent', '--dir', pki, '--id', 'abc', '--out', join(tmp.dir, 'x'), '--passphrase-env', 'CA_PASS'], { CA_PASS: 'wrong passphrase!' }),
      /wrong passphrase/,
    );
    expectOneLineError(run(['issue-agent', '--dir', pki, '--id', 'abc', '--out', join(tmp.dir, 'x')]), /passphrase-protected/);
    expectOneLineError(
      run(['issue-agent', '--dir', pki, '--id', 'abc', '--out', join(tmp.dir, 'x'), '--passphrase-env', 'UNSET_VAR_X']),
      /UNSET_VAR_X.*not set/,
    );
    expectOneLineError(run(['init', '--dir', pki]), /already exists/);
    expectOneLineError(run(['frobnicate']), /unknown command/);
    expectOneLineError(run(['list', '--dir', pki, '--bogus']), /bogus/);
    expectOneLineError(run(['revoke', '--dir', pki]), /exactly one of --id or --serial/);
    expectOneLineError(run(['revoke', '--dir', pki, '--id', 'myongji', '--reason', 'boredom']), /--reason must be one of/);
    expectOneLineError(run(['init', '--dir', join(tmp.dir, 'p2'), '--days', 'ten']), /--days/);
    expect(snapshot(tmp.dir)).to.deep.equal(before);
  });

  it('refuses a duplicate hospital id with a one-line error', function () {
    const env = { CA_PASS: 'a long enough passphrase' };
    const args = ['issue-agent', '--dir', pki, '--id', 'severance', '--out', join(tmp.dir, 'agents'), '--passphrase-env', 'CA_PASS'];
    expect(run(args, env).code).to.equal(0);
    const before = snapshot(tmp.dir);
    expectOneLineError(run(args, env), /already has a live certificate/);
    expect(snapshot(tmp.dir)).to.deep.equal(before);
  });
});
