// The watchdog of scripts/lib/children.ts: one per bench or demo process, in its own process group,
// reading `+PGID` / `-PGID` lines on stdin as that process starts and reaps children. When stdin ends,
// its parent has gone, however it went (even SIGKILL): every group still listed gets SIGTERM, and
// SIGKILL after HIE_CHILD_WATCHDOG_GRACE_MS (3 s). Plain JavaScript, so it starts without tsx.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const GRACE_MS = Number(process.env.HIE_CHILD_WATCHDOG_GRACE_MS ?? 3000);
const groups = new Set();

/** A group counts as alive while its leader is a process that is not a zombie (nobody may reap it now). */
function alive(pgid) {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if (err.code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pgid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

function signal(pgid, sig) {
  try {
    process.kill(-pgid, sig);
  } catch {
    // Gone already.
  }
}

async function reap() {
  for (const g of groups) signal(g, 'SIGTERM');
  const end = Date.now() + GRACE_MS;
  while ([...groups].some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  for (const g of groups) signal(g, 'SIGKILL');
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const pgid = Number(line.slice(1));
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return;
  if (line.startsWith('+')) groups.add(pgid);
  else if (line.startsWith('-')) groups.delete(pgid);
});
lines.on('close', () => void reap());
