import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('npm run demo', function () {
  this.timeout(240_000);

  it('runs every step on a small imaging file, verifies every ledger, and exits 0', async function () {
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--size', '8MiB'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        out += d;
      });
      child.on('close', (c) => resolve({ code: c, out }));
    });
    expect(code, out).to.equal(0);
    for (const h of ['myongji', 'severance', 'mgh', 'kidi', 'apotheke']) {
      expect(out).to.match(new RegExp(`✔ ${h}: 5 feeds, \\d+ entries, links, signatures, consents and receipts all verify`));
    }
    expect(out).to.contain('refused with 403 ERR_CONSENT_REVOKED');
    expect(out).to.match(/apotheke scanned it and accepted it/);
    expect(out).to.contain('a second dispense of the same prescription is refused: 412 ERR_RX_WRONG_STATE');
    expect(out).to.match(/delivered to mgh's inbox; the request is now answered/);
    expect(out).to.contain('returns the first claim (idempotent on Claim.identifier)');
    expect(out).to.match(/kidi's claims system adjudicated it: complete/);
    expect(out).to.match(/SHA-256 identical at MGH/);
    expect(out).to.match(/relay operator is owed \d+\.\d\d EUR/);
    expect(out).to.match(/mgh owes severance 3\.00 EUR: the tariff's release fee/);
    expect(out).to.contain('Demo finished: every step succeeded.');
  });
});
