// The soak's end: wait for the cluster to settle, then check every promise — each accepted exchange delivered
// exactly once (byte-identical) or failed with a code, nothing partial in any inbox, every ledger verifying, and all
// ledgers converged on the same heads. Returns the violations found, each a sentence naming what broke.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { call, type Accepted } from './load.ts';
import type { AgentMember } from './procs.ts';

/** An exchange as the sender's API shows it. */
interface ExchangeView {
  id: string;
  to: string;
  status: string;
  contentSha256: string;
  bytes: number;
  failure?: { code?: string; reason?: string; message?: string };
}

interface InboxItem {
  exchangeId: string;
  from: string;
  contentSha256: string;
  bytes: number;
}

/** What the checks found. */
export interface CheckResult {
  violations: string[];
  delivered: number;
  failed: Map<string, number>;
  /** Exchanges a sender holds that the soak never saw accepted (their 202 lost to a kill), checked all the same. */
  unbooked: number;
  /** Milliseconds from the end of the load until every exchange finished and all ledgers agreed (or the limit). */
  settleMs: number;
  requests: Map<string, number>;
}

const hex = (h: string): string => (/^[0-9a-f]{64}$/.test(h) ? h : Buffer.from(h, 'base64url').toString('hex'));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns true or `ms` passed; API errors count as not yet. */
async function until(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn().catch(() => false)) return true;
    if (Date.now() > end) return false;
    await sleep(500);
  }
}

/** Settles the cluster and checks the soak's promises. */
export async function checkSoak(
  agents: AgentMember[],
  token: string,
  accepted: Map<string, Accepted>,
  requestIds: Array<{ id: string; requester: string }>,
  settleLimitMs: number,
): Promise<CheckResult> {
  const violations: string[] = [];
  const byId = new Map(agents.map((a) => [a.id, a]));
  const t0 = Date.now();

  // 1. Every exchange any sender holds reaches delivered or failed.
  const unfinished = async (a: AgentMember): Promise<ExchangeView[]> => {
    const out: ExchangeView[] = [];
    for (const status of ['queued', 'sending'])
      out.push(...(await call<{ exchanges: ExchangeView[] }>(a, token, `/v1/exchanges?status=${status}&limit=1000`)).body.exchanges);
    return out;
  };
  let stuck: Array<{ a: AgentMember; x: ExchangeView }> = [];
  await until(async () => {
    stuck = [];
    for (const a of agents) for (const x of await unfinished(a)) stuck.push({ a, x });
    return stuck.length === 0;
  }, settleLimitMs);
  for (const { a, x } of stuck)
    violations.push(`exchange ${x.id} from ${a.id} to ${x.to} still '${x.status}' ${Math.round((Date.now() - t0) / 1000)} s after the load stopped`);

  // 2. Nothing partial: receivers drain their quarantines (a discarded attempt may still be finishing).
  for (const a of agents) {
    const q = join(a.dataDir, 'inbox', 'quarantine');
    const empty = (): boolean => !existsSync(q) || readdirSync(q).length === 0;
    if (!(await until(async () => empty(), 30_000))) violations.push(`${a.id}: quarantine not empty: ${readdirSync(q).join(', ')}`);
  }

  // 3. Ledgers converge (same feeds, same heads everywhere).
  let views: string[] = [];
  const converged = await until(
    async () => {
      views = [];
      for (const a of agents) {
        const feeds = (await call<{ feeds: Array<{ feed: string; seq: number; hash?: string }> }>(a, token, '/v1/ledger/status')).body.feeds;
        views.push(JSON.stringify(feeds.map((f) => [f.feed, f.seq, f.hash]).sort()));
      }
      return new Set(views).size === 1;
    },
    Math.max(60_000, settleLimitMs - (Date.now() - t0)),
  );
  const settleMs = Date.now() - t0;
  if (!converged) violations.push(`ledgers did not converge: ${agents.map((a, i) => `${a.id} ${views[i] ?? '?'}`).join(' | ')}`);

  // 4. The sender's final view of every exchange it holds, and of every booked one.
  const finals = new Map<string, { from: string; x: ExchangeView }>();
  for (const a of agents) {
    for (const status of ['delivered', 'failed']) {
      for (const x of (await call<{ exchanges: ExchangeView[] }>(a, token, `/v1/exchanges?status=${status}&limit=1000`)).body.exchanges)
        finals.set(x.id, { from: a.id, x });
    }
  }
  for (const b of accepted.values()) {
    if (finals.has(b.id)) continue;
    const r = await call<ExchangeView>(byId.get(b.from)!, token, `/v1/exchanges/${b.id}`);
    if (r.status === 200) finals.set(b.id, { from: b.from, x: r.body });
    else violations.push(`accepted exchange ${b.id} (${b.kind}, ${b.from} -> ${b.to}) is unknown to its sender (HTTP ${r.status})`);
  }

  // 5. Inboxes: no id twice; each item's bytes hash to what it lists; delivered once, failed never.
  const inboxes = new Map<string, Map<string, InboxItem[]>>();
  for (const a of agents) {
    const items = (await call<{ items: InboxItem[] }>(a, token, '/v1/inbox')).body.items;
    const m = new Map<string, InboxItem[]>();
    for (const i of items) m.set(i.exchangeId, [...(m.get(i.exchangeId) ?? []), i]);
    inboxes.set(a.id, m);
    for (const [id, list] of m) if (list.length > 1) violations.push(`${a.id}'s inbox lists exchange ${id} ${list.length} times`);
    for (const i of items) {
      const res = await fetch(`http://127.0.0.1:${a.apiPort()}/v1/inbox/${i.exchangeId}/content`, { headers: { authorization: `Bearer ${token}` } });
      const body = Buffer.from(await res.arrayBuffer());
      const got = createHash('sha256').update(body).digest('hex');
      if (res.status !== 200 || got !== hex(i.contentSha256) || body.length !== i.bytes)
        violations.push(
          `${a.id}'s inbox item ${i.exchangeId} from ${i.from}: content (HTTP ${res.status}, ${body.length} bytes, sha256 ${got}) is not what it lists (${i.bytes} bytes, ${hex(i.contentSha256)})`,
        );
      let sent = finals.get(i.exchangeId);
      // The lists above stop at 1,000 per status: an item whose 202 the load never saw is looked up at its sender.
      const sender = byId.get(i.from);
      if (!sent && sender) {
        const r = await call<ExchangeView>(sender, token, `/v1/exchanges/${i.exchangeId}`);
        if (r.status === 200) finals.set(i.exchangeId, (sent = { from: i.from, x: r.body }));
      }
      if (!sent) violations.push(`${a.id}'s inbox holds ${i.exchangeId} from ${i.from}, which its sender does not know`);
      else if (sent.from !== i.from) violations.push(`${a.id}'s inbox item ${i.exchangeId} says it is from ${i.from}; ${sent.from} sent it`);
    }
  }
  let delivered = 0;
  let unbooked = 0;
  const failed = new Map<string, number>();
  for (const [id, { from, x }] of finals) {
    const booked = accepted.get(id);
    if (!booked) unbooked += 1;
    const items = inboxes.get(x.to)?.get(id) ?? [];
    const what = `exchange ${id} (${booked?.kind ?? 'unbooked'}, ${from} -> ${x.to})`;
    if (x.status === 'delivered') {
      delivered += 1;
      if (items.length !== 1) violations.push(`${what} is delivered at its sender but in ${x.to}'s inbox ${items.length} times`);
      else if (hex(items[0]!.contentSha256) !== (booked?.sha256 ?? hex(x.contentSha256)))
        violations.push(`${what}: the inbox holds sha256 ${hex(items[0]!.contentSha256)}, the sender sent ${booked?.sha256 ?? hex(x.contentSha256)}`);
    } else if (x.status === 'failed') {
      const code = x.failure?.code ?? x.failure?.reason;
      failed.set(code ?? 'no reason', (failed.get(code ?? 'no reason') ?? 0) + 1);
      if (!code) violations.push(`${what} failed without a code: ${JSON.stringify(x.failure)}`);
      if (items.length > 0) violations.push(`${what} failed at its sender (${code}) yet is in ${x.to}'s inbox`);
    }
    if (booked && hex(x.contentSha256) !== booked.sha256)
      violations.push(`${what}: the sender recorded sha256 ${hex(x.contentSha256)}, the soak uploaded ${booked.sha256}`);
  }

  // 6. Every ledger verifies, with no grace.
  for (const a of agents) {
    const v = (await call<{ ok: boolean; findings: unknown[] }>(a, token, '/v1/ledger/verify?grace=0')).body;
    if (!v.ok || (v.findings ?? []).length > 0) violations.push(`${a.id}'s ledger does not verify: ${JSON.stringify(v.findings).slice(0, 2000)}`);
  }

  // Records requests carry no delivery promise (a message, not an exchange): counted, not judged.
  const requests = new Map<string, number>();
  for (const { id, requester } of requestIds) {
    const r = await call<{ status?: string; code?: string }>(byId.get(requester)!, token, `/v1/requests/${id}`).catch(() => undefined);
    const k = r?.status === 200 ? `${r.body.status}${r.body.code ? ` ${r.body.code}` : ''}` : 'unknown';
    requests.set(k, (requests.get(k) ?? 0) + 1);
  }
  return { violations, delivered, failed, unbooked, settleMs, requests };
}
