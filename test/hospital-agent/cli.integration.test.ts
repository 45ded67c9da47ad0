import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { startNetwork, TEST_TOKEN, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../../scripts/fixtures/patient-bundle.json', import.meta.url));

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

describe('hie-agent CLI', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let api: (id: string) => string;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    api = (id) => `http://127.0.0.1:${net.agents[id]!.apiPort}`;
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  it('grants a consent, sends a file, waits for the receipt, and shows it in the inbox and the settlement', async function () {
    const until = new Date(Date.now() + 86_400_000).toISOString();
    const granted = await run(['consent', 'grant', '--api', api('myongji'), '--patient', 'SYN-000001', '--to', 'severance', '--until', until, '--json']);
    expect(granted.code, granted.stderr).to.equal(0);
    const consentId = (JSON.parse(granted.stdout) as { id: string }).id;
    const listed = await run(['consent', 'list', '--api', api('myongji')]);
    expect(listed.stdout).to.contain(consentId);
    const sent = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-000001', '--consent', consentId, '--quiet', BUNDLE]);
    expect(sent.code, sent.stderr).to.equal(0);
    expect(sent.stdout).to.match(/delivered to severance; receipt signed/);
    const inbox = await run(['inbox', '--api', api('severance')]);
    expect(inbox.stdout).to.match(/from myongji\s+application\/fhir\+json/);
    // The patient id from the environment (kept out of the process list), and the exchange id shown before the wait.
    const viaEnv = await run(['send', '--api', api('myongji'), '--to', 'severance', '--consent', consentId, BUNDLE], { HIE_PATIENT_ID: 'SYN-000001' });
    expect(viaEnv.code, viaEnv.stderr).to.equal(0);
    const early = /exchange (\S+) accepted; waiting for the receipt/.exec(viaEnv.stderr);
    expect(early, viaEnv.stderr).to.not.equal(null);
    expect(viaEnv.stdout).to.contain(`exchange ${early![1]} delivered to severance`);
    const status = await run(['status', '--api', api('myongji')]);
    expect(status.stdout).to.match(/agent myongji: relay connected; 0 unfinished \(queued or sending\)/);
    const verified = await run(['verify', '--api', api('severance')]);
    expect(verified.code, verified.stderr).to.equal(0);
    expect(verified.stdout).to.match(/^ledger OK: \d+ feeds, \d+ entries/);
    expect((await run(['verify', '--api', api('severance'), '--grace', '0'])).code).to.equal(0);
    const badGrace = await run(['verify', '--api', api('severance'), '--grace', 'soon']);
    expect(badGrace.code).to.equal(2);
    expect(badGrace.stderr).to.match(/--grace must be a whole number of seconds/);
    const settlement = await run(['settlement', '--api', api('myongji'), '--period', new Date().toISOString().slice(0, 7)]);
    expect(settlement.code, settlement.stderr).to.equal(0);
    expect(settlement.stdout).to.match(/relay-operator\s+owes \d+\.\d\d EUR, owed 0\.00 EUR \(2 charges\)/);
  });

  it('sends a PSY-labelled record only under a consent granted with --label PSY, and names the label when it refuses', async function () {
    const bundle = JSON.parse(readFileSync(BUNDLE, 'utf8')) as { entry: Array<{ resource: Record<string, unknown> }> };
    const obs = bundle.entry.find((e) => e.resource['resourceType'] === 'Observation')!.resource;
    obs['meta'] = { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }] };
    const file = join(tmp.dir, 'psy.json');
    writeFileSync(file, JSON.stringify(bundle));
    const until = '2099-01-01T00:00:00Z';
    const grant = async (...extra: string[]): Promise<string> => {
      const r = await run(['consent', 'grant', '--api', api('myongji'), '--patient', 'SYN-000001', '--to', 'severance', '--until', until, '--json', ...extra]);
      expect(r.code, r.stderr).to.equal(0);
      return (JSON.parse(r.stdout) as { id: string }).id;
    };
    const all = await grant();
    const refused = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-000001', '--consent', all, '--quiet', file]);
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr.trim().split('\n')).to.have.length(1);
    expect(refused.stderr)
      .to.contain('v3-ActCode|PSY')
      .and.match(/ERR_CONSENT_SENSITIVE/);
    const named = await grant('--label', 'PSY', '--category', 'http://loinc.org|85354-9', '--category', 'http://snomed.info/sct|38341003');
    const shown = (await run(['consent', 'list', '--api', api('myongji'), '--json'])).stdout;
    expect(shown).to.contain(named);
    const partial = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-000001', '--consent', named, '--quiet', file]);
    // The fixture's MedicationStatement and AllergyIntolerance carry none of those two categories.
    expect(partial.stderr)
      .to.match(/ERR_CONSENT_SCOPE/)
      .and.contain('MedicationStatement');
    const sent = await run([
      'send',
      '--api',
      api('myongji'),
      '--to',
      'severance',
      '--patient',
      'SYN-000001',
      '--consent',
      await grant('--label', 'PSY'),
      '--quiet',
      file,
    ]);
    expect(sent.code, sent.stderr).to.equal(0);
    expect(sent.stdout).to.match(/delivered to severance/);
  });

  it('consent show: one consent, REVOKED with the time once revoked, --fhir as an active then inactive FHIR Consent; an unknown id exits 1', async function () {
    const until = '2099-01-01T00:00:00.000Z';
    const granted = await run(['consent', 'grant', '--api', api('myongji'), '--patient', 'SYN-3', '--to', 'severance', '--until', until, '--json']);
    expect(granted.code, granted.stderr).to.equal(0);
    const id = (JSON.parse(granted.stdout) as { id: string }).id;
    const shown = await run(['consent', 'show', '--api', api('myongji'), id]);
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.stdout)
      .to.contain(`consent ${id}\n`)
      .and.match(/^ {2}grantees {3}severance$/m)
      .and.contain(`.. ${until}`)
      .and.not.contain('REVOKED');
    const fhir = async (): Promise<{ resourceType: string; id: string; status: string }> => {
      const r = await run(['consent', 'show', '--api', api('myongji'), id, '--fhir']);
      expect(r.code, r.stderr).to.equal(0);
      return JSON.parse(r.stdout) as { resourceType: string; id: string; status: string };
    };
    expect(await fhir()).to.include({ resourceType: 'Consent', status: 'active' });
    expect((await run(['consent', 'revoke', '--api', api('myongji'), id, '--reason', 'patient-request'])).code).to.equal(0);
    expect((await run(['consent', 'show', '--api', api('myongji'), id])).stdout).to.match(/^ {2}REVOKED {4}\d{4}-\d\d-\d\dT\S+/m);
    expect(await fhir()).to.include({ resourceType: 'Consent', status: 'inactive' });
    const unknown = await run(['consent', 'show', '--api', api('myongji'), '00000000-0000-4000-8000-000000000000']);
    expect(unknown.code).to.equal(1);
    expect(unknown.stderr.trim().split('\n')).to.have.length(1);
    expect(unknown.stderr).to.match(/ERR_\w*NOT_FOUND/);
  });

  it('refuses a send under a revoked consent with the code, and gives one-line errors on bad input', async function () {
    const until = new Date(Date.now() + 86_400_000).toISOString();
    const c = JSON.parse(
      (await run(['consent', 'grant', '--api', api('myongji'), '--patient', 'SYN-2', '--to', 'severance', '--until', until, '--json'])).stdout,
    ) as { id: string };
    expect((await run(['consent', 'revoke', '--api', api('myongji'), c.id])).code).to.equal(0);
    const refused = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-2', '--consent', c.id, '--quiet', BUNDLE]);
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr.trim().split('\n')).to.have.length(1);
    expect(refused.stderr).to.match(/ERR_CONSENT_REVOKED/);
    const bad = await run(['send', '--api', api('myongji'), BUNDLE]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/^hie-agent: error: --to is required/);
    const noPatient = await run(['send', '--api', api('myongji'), '--to', 'severance', '--consent', c.id, BUNDLE], { HIE_PATIENT_ID: '' });
    expect(noPatient.code).to.equal(2);
    expect(noPatient.stderr).to.match(/--patient is required \(or set HIE_PATIENT_ID/);
    // A directory, or a file it may not read: a one-line usage error, not a stack trace.
    for (const path of [tmp.dir, join(tmp.dir, 'missing.dcm')]) {
      const unreadable = await run(['send', '--api', api('myongji'), '--to', 'severance', '--patient', 'SYN-2', '--consent', c.id, path]);
      expect(unreadable.code, unreadable.stderr).to.equal(2);
      expect(unreadable.stderr).to.match(/^hie-agent: error: cannot read .* \(a readable file is needed\) \[ERR_USAGE\]\n$/);
    }
    const help = await run(['--help']);
    expect(help.code).to.equal(0);
    for (const c of ['start', 'check-config', 'send', 'consent grant', 'inbox', 'status', 'settlement', 'verify']) expect(help.stdout).to.contain(c);
    const good = join(tmp.dir, 'good.json');
    writeFileSync(good, JSON.stringify({ ...net.configs['myongji'], api: { host: '127.0.0.1', port: 8480 } }));
    const secrets = { HIE_AGENT_API_TOKENS: `ehr:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: 'ab'.repeat(32) };
    const okCfg = await run(['check-config', '--config', good], secrets);
    expect(okCfg.code, okCfg.stderr).to.equal(0);
    expect(okCfg.stdout).to.match(/^config OK: agent myongji, .*, 1 API token\(s\), patient secret set, certificate matches its key and the CA\n$/);
    // What start would fail on is caught here too: a patient secret too short, or not set at all.
    const weak = await run(['check-config', '--config', good], { ...secrets, HIE_AGENT_PATIENT_SECRET: 'abcd' });
    expect(weak.code).to.equal(1);
    expect(weak.stderr).to.match(/patient secret must be at least 32 bytes/);
    const unset = await run(['check-config', '--config', good], { ...secrets, HIE_AGENT_API_TOKENS: '' });
    expect(unset.code).to.equal(1);
    expect(unset.stderr).to.match(/HIE_AGENT_API_TOKENS is not set/);
    const file = join(tmp.dir, 'bad.yaml');
    writeFileSync(file, 'id: Not-Valid\n');
    const cfg = await run(['check-config', '--config', file]);
    expect(cfg.code).to.equal(1);
    expect(cfg.stderr).to.match(/config key id/);
    expect(cfg.stderr).not.to.match(/\n\s+at /);
  });
});
