import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentConfig } from '../../hospital-agent/config.ts';
import { TEST_TOKEN } from './agents.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-agent.js', import.meta.url));

/** An agent running as its own process (`hie-agent start`), so a test can SIGKILL it. */
export interface AgentProcess {
  child: ChildProcess;
  apiPort: number;
  stderr: () => string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Writes `config` as JSON next to its data directory and starts `hie-agent start` on it. */
export async function spawnAgent(config: AgentConfig, secretHex: string): Promise<AgentProcess> {
  const file = join(config.dataDir, '..', `${config.id}.agent.json`);
  writeFileSync(file, JSON.stringify({ ...config, log: { level: 'warn' } }, null, 2));
  const child = spawn(process.execPath, [BIN, 'start', '--config', file], {
    env: { ...process.env, HIE_AGENT_API_TOKENS: `test:${TEST_TOKEN}`, HIE_AGENT_PATIENT_SECRET: secretHex },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const apiPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent did not start: ${err.slice(-1000)}`)), 30_000);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      err += d;
      const m = /API on [^\s]+:(\d+),/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}: ${err.slice(-1000)}`));
    });
  });
  child.removeAllListeners('exit');
  return {
    child,
    apiPort,
    stderr: () => err,
    kill: (signal = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}
