// The one place the demo and the benches start child processes (relay nodes, agents, nats-server,
// helpers), so that none outlives them. Each child runs in its own process group (a terminal's Ctrl-C
// reaches only this process, which stops the children in order: relay nodes before the nats-server
// they drain through) and is tracked until it exits. Four ways out, all covered:
// - the program stops them itself (`stopChild`, `stopChildren`), then leaves with `exitAfterCleanup`;
// - SIGINT/SIGTERM: every child is stopped, newest first, then this process exits 128 + signal;
// - exit with children still running (a forgotten one, an uncaught exception): SIGTERM to each group;
// - this process dies outright (SIGKILL, OOM): a watchdog (child-watchdog.js) sees its stdin end and
//   sends SIGTERM, then SIGKILL, to every group still listed.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

/** How long a child may take to exit after SIGTERM before it gets SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 5_000;
/** How long to wait for a child to go after SIGKILL (it cannot refuse; this only bounds the wait). */
const KILL_WAIT_MS = 2_000;
/**
 * Failure injection for tests: with `HIE_SPAWN_FAIL_AFTER=N`, starting child N + 1 throws, as any
 * failure part-way through a run would, after N children are up.
 */
const FAIL_AFTER_ENV = 'HIE_SPAWN_FAIL_AFTER';
const WATCHDOG = fileURLToPath(new URL('./child-watchdog.js', import.meta.url));

interface Tracked {
  child: ChildProcess;
  exited: Promise<void>;
  stopping?: Promise<void>;
}

const live = new Map<ChildProcess, Tracked>();
let started = 0;
let watchdog: ChildProcess | undefined;
let installed = false;
/** The signal that interrupted the run (not one a caller of `untilSignal` asked for). */
let signalled: NodeJS.Signals | undefined;
let awaitedSignal = false;
const signalWaiters: Array<(sig: NodeJS.Signals) => void> = [];

function gone(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined || gone(child)) return;
  try {
    process.kill(-child.pid, sig);
  } catch {
    child.kill(sig);
  }
}

function tellWatchdog(line: string): void {
  if (!watchdog?.stdin?.writable) return;
  watchdog.stdin.write(`${line}\n`);
}

function startWatchdog(): void {
  watchdog = spawn(process.execPath, [WATCHDOG], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  // Neither the watchdog nor the pipe to it may keep this process alive.
  watchdog.unref();
  (watchdog.stdin as unknown as { unref(): void }).unref();
}

async function onSignal(sig: NodeJS.Signals): Promise<void> {
  if (!awaitedSignal && signalled === undefined && signalWaiters.length > 0) {
    awaitedSignal = true;
    for (const w of signalWaiters.splice(0)) w(sig);
    return;
  }
  if (signalled !== undefined || awaitedSignal) {
    // A second interrupt: do not wait for anyone.
    for (const t of live.values()) killGroup(t.child, 'SIGKILL');
    process.exit(128 + constants.signals[sig]);
  }
  signalled = sig;
  if (live.size > 0) process.stderr.write(`${sig}: stopping ${live.size} child process(es)\n`);
  await stopChildren();
  process.exit(128 + constants.signals[sig]);
}

function install(): void {
  if (installed) return;
  installed = true;
  startWatchdog();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, (s: NodeJS.Signals) => void onSignal(s));
  process.on('exit', () => {
    for (const t of live.values()) killGroup(t.child, 'SIGTERM');
  });
}

/**
 * `child_process.spawn`, with the child in its own process group and tracked until it exits; the
 * first call installs the signal and exit handlers and starts the watchdog.
 */
export function spawnChild(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const failAfter = process.env[FAIL_AFTER_ENV];
  if (failAfter !== undefined && started >= Number(failAfter))
    throw new Error(`${FAIL_AFTER_ENV}=${failAfter}: not starting ${command} (failure injected after ${started} child process(es))`);
  if (signalled !== undefined) throw new Error(`interrupted by ${signalled}: not starting ${command}`);
  install();
  const child = spawn(command, args, { ...options, detached: true });
  started += 1;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // A command that cannot start emits 'error' and never 'exit'.
    child.once('error', () => {
      if (child.pid === undefined) resolve();
    });
  }).then(() => {
    live.delete(child);
    if (child.pid !== undefined) tellWatchdog(`-${child.pid}`);
  });
  live.set(child, { child, exited });
  if (child.pid !== undefined) tellWatchdog(`+${child.pid}`);
  return child;
}

/** SIGTERM to the child's process group, SIGKILL after `graceMs`; resolves once it has exited. */
export function stopChild(child: ChildProcess, graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
  const t = live.get(child);
  if (!t) return Promise.resolve();
  t.stopping ??= (async () => {
    killGroup(child, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
    if ((await Promise.race([t.exited, timeout])) === 'timeout') {
      killGroup(child, 'SIGKILL');
      await Promise.race([t.exited, new Promise((r) => setTimeout(r, KILL_WAIT_MS))]);
    }
    clearTimeout(timer);
  })();
  return t.stopping;
}

/** Stops every child still running, newest first (nodes before the server they depend on). */
export async function stopChildren(graceMs = DEFAULT_STOP_GRACE_MS): Promise<void> {
  for (const child of [...live.keys()].reverse()) await stopChild(child, graceMs);
}

/** The children still running, oldest first. */
export function liveChildren(): ChildProcess[] {
  return [...live.keys()];
}

/** The signal (SIGINT/SIGTERM) this process received, if any. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return signalled;
}

/**
 * Resolves on the next SIGINT/SIGTERM and leaves stopping to the caller (the demo's `--keep`), which
 * then leaves with {@link exitAfterCleanup}; a second signal stops everything at once.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  install();
  return new Promise((resolve) => signalWaiters.push(resolve));
}

/**
 * The entry point's way out: stops every child still running, then exits with `code` (or with
 * 128 + the signal, if one interrupted the run).
 */
export async function exitAfterCleanup(code: number): Promise<never> {
  await stopChildren();
  process.exit(signalled === undefined ? code : 128 + constants.signals[signalled]);
}
