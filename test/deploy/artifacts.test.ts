import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { configLeaves, loadAgentConfig, agentConfigSchema } from '../../hospital-agent/config.ts';
import { loadRelayConfig, relayConfigSchema } from '../../relay/index.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

describe('deployment artifacts', function () {
  it('the example relay config loads and names every config key', function () {
    const config = loadRelayConfig(join(ROOT, 'deploy/relay.example.yaml'), {});
    expect(config.admin.host).to.equal('127.0.0.1');
    const text = read('deploy/relay.example.yaml');
    for (const key of configLeaves(relayConfigSchema).keys()) {
      const leaf = key.split('.').pop() as string;
      expect(text, `deploy/relay.example.yaml documents ${key}`).to.match(new RegExp(`\\b${leaf}:`));
    }
  });

  it('the example agent config loads and names every config key', function () {
    const config = loadAgentConfig(join(ROOT, 'deploy/agent.example.yaml'), {});
    expect(config.api.host).to.equal('127.0.0.1');
    const text = read('deploy/agent.example.yaml');
    for (const key of configLeaves(agentConfigSchema).keys()) {
      const leaf = key.split('.').pop() as string;
      expect(text, `deploy/agent.example.yaml documents ${key}`).to.match(new RegExp(`\\b${leaf}:`));
    }
  });

  it('the relay and the agent each get their Node flags however they are started', async function () {
    const { AGENT_NODE_FLAGS, RELAY_NODE_FLAGS } = await import('../../scripts/lib/federation.ts');
    expect(RELAY_NODE_FLAGS.length).to.be.greaterThan(0);
    for (const [part, flags] of [
      ['relay', RELAY_NODE_FLAGS],
      ['agent', AGENT_NODE_FLAGS],
    ] as const) {
      const places = {
        [`bin/hie-${part}.js`]: read(`bin/hie-${part}.js`).split('\n')[0] as string,
        [`deploy/systemd/hie-${part}.service`]: /^ExecStart=.*$/m.exec(read(`deploy/systemd/hie-${part}.service`))?.[0] ?? '',
        [`deploy/docker/${part}.Dockerfile`]: /^ENTRYPOINT .*$/m.exec(read(`deploy/docker/${part}.Dockerfile`))?.[0] ?? '',
      };
      for (const [file, line] of Object.entries(places)) {
        for (const flag of flags) expect(line, `${file} starts node with ${flag}`).to.include(flag);
        if (part === 'relay') expect(line, `${file} keeps the relay's smaller heap`).not.to.include('--initial-old-space-size');
      }
    }
  });

  it('the systemd units start existing commands with the promised hardening', function () {
    for (const [unit, bin] of [
      ['hie-relay', 'hie-relay.js'],
      ['hie-agent', 'hie-agent.js'],
    ] as const) {
      const text = read(`deploy/systemd/${unit}.service`);
      expect(text).to.contain(`/opt/hie/bin/${bin}`);
      expect(existsSync(join(ROOT, 'bin', bin))).to.equal(true);
      for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'CapabilityBoundingSet=', 'Restart=on-failure']) {
        expect(text, `${unit}: ${line}`).to.contain(line);
      }
    }
    expect(read('deploy/systemd/hie-agent.service')).to.match(/StateDirectory=hie-agent[\s\S]*ReadWritePaths=\/var\/lib\/hie-agent/);
  });

  it("the relay's unit and image run it with two malloc arenas, as the load bench measured its memory", function () {
    expect(read('deploy/systemd/hie-relay.service')).to.match(/^Environment=MALLOC_ARENA_MAX=2$/m);
    expect(read('deploy/docker/relay.Dockerfile')).to.match(/^ENV MALLOC_ARENA_MAX=2$/m);
  });

  it('the Dockerfiles are multi-stage, run as a non-root user, and copy only paths that exist', function () {
    for (const file of ['deploy/docker/relay.Dockerfile', 'deploy/docker/agent.Dockerfile']) {
      const text = read(file);
      expect(text.match(/^FROM /gm), file).to.have.length.greaterThanOrEqual(2);
      const users = [...text.matchAll(/^USER (\S+)/gm)].map((m) => m[1]);
      expect(users, file).to.deep.equal(['node']);
      for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
        for (const src of (m[1] as string).split(/\s+/)) expect(existsSync(join(ROOT, src)), `${file}: COPY ${src}`).to.equal(true);
      }
    }
  });

  it('every source directory the build compiles is copied into both images and watched by bin/run.js', function () {
    const build = JSON.parse(read('tsconfig.build.json')) as { include: string[] };
    const runJs = read('bin/run.js').match(/const SOURCE_DIRS = \[([^\]]*)\]/)?.[1] ?? '';
    const watched = [...runJs.matchAll(/'([^']+)'/g)].map((m) => m[1]);
    expect([...watched].sort(), 'bin/run.js SOURCE_DIRS').to.deep.equal([...build.include].sort());
    const dev = JSON.parse(read('tsconfig.json')) as { include: string[] };
    expect(dev.include, 'tsconfig.json').to.include.members(build.include);
    for (const file of ['deploy/docker/relay.Dockerfile', 'deploy/docker/agent.Dockerfile']) {
      const copied = [...read(file).matchAll(/^COPY (?!--from)(\S+) \.\/\S+$/gm)].map((m) => m[1]);
      expect(copied, file).to.include.members(build.include);
    }
  });
});
