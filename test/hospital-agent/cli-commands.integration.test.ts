import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { grantConsent, startNetwork, TEST_TOKEN, waitFor, type TestNetwork } from '../support/agents.ts';
import { makeFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { dicomFile } from '../support/dicom.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('hie-agent CLI: every hospital-IT task, each command with its own help', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let api: (id: string) => string;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    api = (id) => `http://127.0.0.1:${net.agents[id]!.apiPort}`;
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  it('prints the help of one command or group, not the global help', async function () {
    const global = await run(['--help']);
    expect(global.code).to.equal(0);
    for (const c of ['send', 'cancel', 'exchange status', 'inbox content', 'inbox delete', 'requests create', 'consent show', 'settlement'])
      expect(global.stdout).to.contain(c);
    const send = await run(['send', '--help']);
    expect(send.code).to.equal(0);
    expect(send.stdout).to.match(/^Usage: hie-agent send --to ID/);
    expect(send.stdout).to.contain('--no-wait');
    expect(send.stdout).to.not.contain('consent grant');
    const content = await run(['inbox', 'content', '--help']);
    expect(content.stdout).to.match(/^Usage: hie-agent inbox content ID/);
    const group = await run(['requests', '--help']);
    expect(group.code).to.equal(0);
    expect(group.stdout).to.match(/^Usage: hie-agent requests <list\|create\|show>/);
    expect((await run(['help', 'exchange', 'cancel'])).stdout).to.match(/^Usage: hie-agent exchange cancel ID/);
    const unknown = await run(['inbox', 'frobnicate']);
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.match(/^hie-agent: error: unknown command 'inbox frobnicate'/);
  });

  it('inbox show/content/ack/delete, exchange list/status, send --no-wait, and settlement in currency units', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-CLI-1');
    const file = join(tmp.dir, 'study.dcm');
    const data = dicomFile({ patientId: 'SYN-CLI-1', pixelBytes: 120_000 });
    writeFileSync(file, data);
    const sum = createHash('sha256').update(data).digest('hex');
    const sent = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-CLI-1', '--consent', consent, '--no-wait', file]);
    expect(sent.code, sent.stderr).to.equal(0);
    const id = /^exchange (\S+) queued \(sha-256 ([0-9a-f]{64})\)/.exec(sent.stdout);
    expect(id, sent.stdout).to.not.equal(null);
    expect(id![2]).to.equal(sum);
    const x = id![1] as string;
    await waitFor(async () => (await run(['exchange', 'status', '--api', api('myongji'), x])).stdout.includes(': delivered'), 30_000, 'delivered');
    const status = await run(['exchange', 'status', '--api', api('myongji'), x]);
    expect(status.stdout).to.contain(`sha-256 ${sum}`);
    expect(status.stdout).to.match(new RegExp(`receipt .* content sha-256 ${sum}`));
    expect((await run(['exchange', 'list', '--api', api('myongji'), '--status', 'delivered'])).stdout).to.contain(x);

    const shown = await run(['inbox', 'show', '--api', api('severance'), x]);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.stdout).to.contain(`sha-256 ${sum}`);
    const out = join(tmp.dir, 'got.dcm');
    const got = await run(['inbox', 'content', '--api', api('severance'), x, '--out', out]);
    expect(got.code, got.stderr).to.equal(0);
    expect(readFileSync(out).equals(data)).to.equal(true);
    // As sha256sum prints it: "<hex>  <file>".
    expect(got.stderr).to.match(new RegExp(`^${sum}  ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    expect((await run(['inbox', 'ack', '--api', api('severance'), x])).stdout).to.match(new RegExp(`inbox item ${x} acked at \\d{4}-`));
    expect((await run(['inbox', '--unacked', '--api', api('severance')])).stdout).to.not.contain(x);
    expect((await run(['inbox', 'delete', '--api', api('severance'), x])).code).to.equal(0);
    const gone = await run(['inbox', 'show', '--api', api('severance'), x]);
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.match(/\[ERR_NOT_FOUND\]/);

    const settlement = await run(['settlement', '--api', api('myongji')]);
    expect(settlement.code, settlement.stderr).to.equal(0);
    // The test tariff: 10 minor units per transfer: 0.10 EUR, never "10".
    expect(settlement.stdout).to.match(/relay-operator\s+owes \d+\.\d{2} EUR, owed 0\.00 EUR \(\d+ charges\)/);
    expect(settlement.stdout).to.match(/total EUR: owes \d+\.\d{2} EUR/);
    expect(settlement.stdout).to.not.match(/minor units/);
  });

  it("leaves a send's wait with Ctrl-C (exit 130), cancels queued exchanges (cancel, exchange cancel), and refuses a second cancel with the state", async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-CLI-2');
    const file = join(tmp.dir, 'note.bin');
    writeFileSync(file, Buffer.alloc(2_000, 1));
    await net.agents['severance']!.close();
    delete net.agents['severance'];
    try {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await run([
          'send',
          '--api',
          api('myongji'),
          '--to',
          'severance',
          '--patient',
          'SYN-CLI-2',
          '--consent',
          consent,
          '--no-wait',
          '--json',
          file,
        ]);
        expect(r.code, r.stderr).to.equal(0);
        ids.push((JSON.parse(r.stdout) as { id: string }).id);
      }
      // A send that waits for a receipt that cannot come yet: Ctrl-C leaves the wait, the exchange goes on.
      const waiting = spawn(
        process.execPath,
        [BIN, 'send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-CLI-2', '--consent', consent, file],
        {
          env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '' },
        },
      );
      let waitErr = '';
      waiting.stderr.on('data', (d) => {
        waitErr += d;
      });
      const exited = new Promise<number | null>((resolve) => waiting.on('close', resolve));
      await waitFor(() => /exchange \S+ accepted; waiting for the receipt/.test(waitErr), 30_000, 'the send waiting');
      waiting.kill('SIGINT');
      expect(await exited, waitErr).to.equal(130);
      const left = /left the wait; exchange (\S+) goes on/.exec(waitErr);
      expect(left, waitErr).to.not.equal(null);
      ids.push(left![1] as string);

      // On a terminal (util-linux `script` gives the command a pseudo-terminal) the wait shows what the exchange is doing.
      const cmd = [process.execPath, BIN, 'send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-CLI-2', '--consent', consent, file]
        .map((a) => `'${a}'`)
        .join(' ');
      const tty = spawn('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '' } });
      let screen = '';
      tty.stdout.on('data', (d) => {
        screen += d;
      });
      const ttyExit = new Promise<number | null>((resolve) => tty.on('close', resolve));
      // eslint-disable-next-line no-control-regex -- the terminal control sequence that redraws the line
      await waitFor(() => /\r\x1b\[2K {2}(queued|sending), [1-9]\d* attempt\(s\)/.test(screen), 60_000, 'the progress line');
      tty.stdin.write('\x03');
      expect(await ttyExit, screen).to.equal(130);
      ids.push(/left the wait; exchange (\S+) goes on/.exec(screen)![1] as string);
      for (const id of ids)
        await waitFor(async () => /attempts +[1-9]/.test((await run(['exchange', 'status', '--api', api('myongji'), id])).stdout), 30_000, 'an attempt');
      const a = await run(['cancel', '--api', api('myongji'), ids[0] as string]);
      expect(a.code, a.stderr).to.equal(0);
      expect(a.stdout).to.contain(`exchange ${ids[0]} cancelled`);
      const b = await run(['exchange', 'cancel', '--api', api('myongji'), ids[1] as string]);
      expect(b.code, b.stderr).to.equal(0);
      const again = await run(['cancel', '--api', api('myongji'), ids[0] as string]);
      expect(again.code).to.equal(1);
      expect(again.stderr).to.match(/cannot be cancelled: .*\(state: failed\) \[ERR_CONFLICT\]\n$/);
      expect((await run(['exchange', 'status', '--api', api('myongji'), ids[1] as string])).stdout).to.contain('ERR_EXCHANGE_CANCELLED');
      for (const left of ids.slice(2)) expect((await run(['cancel', '--api', api('myongji'), left])).code, 'an exchange whose wait was left').to.equal(0);
    } finally {
      await net.startAgent('severance');
    }
  });

  it('requests create/list/show: a records request and its state', async function () {
    await waitFor(() => net.agents['severance']!.relay.connected, 20_000, 'severance connected');
    await grantConsent(net, 'severance', 'myongji', 'SYN-CLI-3');
    const created = await run(['requests', 'create', '--api', api('myongji'), '--holder', 'severance'], { HIE_PATIENT_ID: 'SYN-CLI-3' });
    expect(created.code, created.stderr).to.equal(0);
    const id = /^records request (\S+) sent to severance/.exec(created.stdout)?.[1] as string;
    expect(id).to.be.a('string');
    await waitFor(async () => (await run(['requests', 'show', '--api', api('myongji'), id])).stdout.includes('accepted'), 20_000, 'accepted');
    expect((await run(['requests', 'list', '--api', api('severance'), '--direction', 'incoming'])).stdout).to.match(
      new RegExp(`${id}  from myongji  accepted`),
    );
    expect((await run(['consent', 'list', '--api', api('severance')])).code).to.equal(0);
  });

  it('check-config opens every file it names and says what is wrong, one line per problem', async function () {
    const env = { HIE_AGENT_API_TOKENS: `ehr:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: 'ab'.repeat(32) };
    const base = net.configs['myongji']!;
    const write = (name: string, identity: Record<string, string | undefined>): string => {
      const p = join(tmp.dir, name);
      writeFileSync(p, JSON.stringify({ ...base, api: { host: '127.0.0.1', port: 8480 }, identity: { ...base.identity, ...identity } }));
      return p;
    };
    const good = await run(['check-config', '--config', write('good.json', {})], env);
    expect(good.code, good.stderr).to.equal(0);
    expect(good.stdout).to.match(/^config OK: agent myongji, .*certificate matches its key and the CA\n$/);

    const missing = await run(['check-config', '--config', write('missing.json', { cert: join(tmp.dir, 'nope.pem'), crl: join(tmp.dir, 'nope.crl') })], env);
    expect(missing.code).to.equal(1);
    expect(missing.stdout).to.equal('');
    expect(missing.stderr).to.contain(`identity.cert: cannot read ${join(tmp.dir, 'nope.pem')} (no such file)`);
    expect(missing.stderr).to.contain('identity.crl: cannot read');

    const other = net.fed.agents['severance']!;
    const wrongKey = await run(['check-config', '--config', write('wrongkey.json', { key: other.key })], env);
    expect(wrongKey.code).to.equal(1);
    expect(wrongKey.stderr.trim().split('\n')).to.deep.equal([
      `hie-agent: config problem: identity.key: ${other.key} is not the key of the certificate ${base.identity.cert}`,
    ]);
    const wrongId = await run(['check-config', '--config', write('wrongid.json', { cert: other.cert, key: other.key })], env);
    expect(wrongId.stderr).to.contain("identity.cert: the certificate is agent 'severance', the config's id is 'myongji'");

    // Another federation's CA did not issue this certificate; an expired certificate of this agent's own.
    const foreign = makeFederation(join(tmp.dir, 'foreign'), []);
    const wrongCa = await run(['check-config', '--config', write('wrongca.json', { ca: foreign.caPath, crl: undefined })], env);
    expect(wrongCa.stderr).to.contain(`identity.ca: no CA certificate in ${foreign.caPath} issued and signed the certificate`);
    const old = foreign.addAgent('myongji', { notBefore: new Date(Date.now() - 10 * 86_400_000), days: 2 });
    const expired = await run(['check-config', '--config', write('expired.json', { cert: old.cert, key: old.key, ca: old.ca, crl: foreign.crlPath })], env);
    expect(expired.code).to.equal(1);
    expect(expired.stderr.trim().split('\n')).to.deep.equal([
      `hie-agent: config problem: identity.cert: the certificate expired on ${new Date(Date.now() - 8 * 86_400_000).toISOString().slice(0, 10)}`,
    ]);
    // A CRL of another CA is refused.
    const badCrl = await run(['check-config', '--config', write('badcrl.json', { crl: foreign.crlPath })], env);
    expect(badCrl.stderr).to.match(/identity\.crl: .* CRL signature does not verify/);
  });
});
