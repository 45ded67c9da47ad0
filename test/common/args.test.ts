import { parseArgs } from 'node:util';
import { expect } from 'chai';
import { joinDashValues } from '../../common/args.ts';
import { main as certsMain } from '../../certs/cli.ts';

const OPTIONS = { kid: { type: 'string' }, rid: { type: 'string', short: 'r' }, json: { type: 'boolean' } } as const;

describe('option values that start with a dash (joinDashValues)', function () {
  it('gives parseArgs a base64url value that starts with - as the value of its option', function () {
    const args = ['--kid', '-AbC_9', '-r', '-xyz', '--json'];
    expect(() => parseArgs({ args, options: OPTIONS, strict: true })).to.throw(/ambiguous/);
    const { values } = parseArgs({ args: joinDashValues(args, OPTIONS), options: OPTIONS, strict: true });
    expect(values).to.deep.equal({ kid: '-AbC_9', rid: '-xyz', json: true });
  });

  it('leaves a value that starts with -- (a forgotten value), boolean options and what follows -- as they are', function () {
    expect(joinDashValues(['--kid', '--json'], OPTIONS)).to.deep.equal(['--kid', '--json']);
    expect(joinDashValues(['--json', '-r'], OPTIONS)).to.deep.equal(['--json', '-r']);
    expect(joinDashValues(['--', '--kid', '-a'], OPTIONS)).to.deep.equal(['--', '--kid', '-a']);
    expect(joinDashValues(['--kid', '-'], OPTIONS)).to.deep.equal(['--kid', '-']);
  });

  it('lets hie-certs take a key id that starts with - (it used to answer "argument is ambiguous")', async function () {
    const kid = '-' + 'A'.repeat(42);
    let message = '';
    try {
      await certsMain(['issuers', 'revoke-key', '--dir', '/nonexistent-hie-pki', '--kid', kid], { out: () => undefined });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).to.not.match(/ambiguous/);
  });
});
