// The patient app: device keys in IndexedDB (non-extractable), enrolment, consent requests signed on the device, revocation,
// the access log and a copy of the records, all end to end encrypted with the hospital's agent through the relay.
import { unb64u, exportPublic, generateDeviceKeys, jwkThumbprint, openPatientSession, sessionAuthPayload, signConsent, signJws, signPop } from './protocol.js';

const $ = (id) => document.getElementById(id);
const status = (text) => {
  $('status').textContent = text;
};

function idb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open('hie-patient', 1);
    r.onupgradeneeded = () => r.result.createObjectStore('state');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function load() {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const r = db.transaction('state').objectStore('state').get('device');
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function save(value) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction('state', 'readwrite');
    tx.objectStore('state').put(value, 'device');
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

/** One connection: hello, then sealed JSON messages; `onMessage` gets each one the agent sends. */
async function connect(agentKey, credential, channel, signKey, onMessage) {
  const q = new URLSearchParams({ cred: credential });
  if (signKey && channel) q.set('pop', await signPop(signKey, channel));
  const ws = new WebSocket(`wss://${location.host}/v1/patient?${q}`);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error('the relay refused the connection'));
  });
  const { hello, session, epk } = await openPatientSession(agentKey, channel);
  ws.send(hello);
  let chain = Promise.resolve();
  ws.onmessage = (ev) => {
    chain = chain.then(async () => onMessage(await session.open(ev.data))).catch((err) => status(`Error: ${err.message}`));
  };
  ws.onclose = () => status('Disconnected. Reload the page to connect again.');
  return { ws, epk, send: async (m) => ws.send(await session.seal(m)) };
}

function channelOf(credential) {
  return JSON.parse(new TextDecoder().decode(unb64u(credential.split('.')[1]))).ch;
}

let conn;
let state;
let current = { requests: [], consents: [] };

const PURPOSE = { TREAT: 'treatment', ETREAT: 'emergency treatment', HPAYMT: 'payment', HOPERAT: 'operations', PATRQT: 'your own request', HRESCH: 'research' };
const host = (ref) => String(ref?.identifier?.value ?? '').replace('urn:hie:agent:', '');

/** Says in words what a FHIR Consent permits, read from the Consent itself (the one that is signed). */
function describe(fhir, lead) {
  const p = fhir.provision ?? {};
  const to = (p.actor ?? []).map((a) => host(a.reference)).join(', ');
  const why = (p.purpose ?? []).map((x) => PURPOSE[x.code] ?? x.code).join(', ');
  const what = p.class ? p.class.map((x) => x.code).join(', ') : 'all your records (sensitive data apart)';
  const labels = p.securityLabel ? `, including ${p.securityLabel.map((x) => x.code).join(', ')}` : '';
  return `${lead} to ${to} for ${why}: ${what}${labels}, from ${String(p.period?.start).slice(0, 10)} until ${String(p.period?.end).slice(0, 10)}.`;
}

function renderRequests() {
  const ul = $('requests');
  ul.replaceChildren();
  $('no-requests').hidden = current.requests.length > 0;
  for (const r of current.requests) {
    const li = document.createElement('li');
    li.dataset.request = r.id;
    const p = document.createElement('p');
    p.textContent = describe(r.fhir, `${r.grantor} asks to send your records`);
    const approve = document.createElement('button');
    approve.type = 'button';
    approve.textContent = 'Approve and sign';
    approve.className = 'approve';
    approve.onclick = () => approveRequest(r);
    const refuse = document.createElement('button');
    refuse.type = 'button';
    refuse.textContent = 'Refuse';
    refuse.className = 'secondary refuse';
    refuse.onclick = () => conn.send({ t: 'refuse', request: r.id });
    li.append(p, approve, refuse);
    ul.append(li);
  }
}

function renderConsents() {
  const ul = $('consents');
  ul.replaceChildren();
  for (const c of current.consents) {
    const li = document.createElement('li');
    li.dataset.consent = c.id;
    const revoked = c.revokedAt !== undefined;
    li.textContent = `${describe(c.fhir, 'Your records go')} `;
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = revoked ? 'revoked' : c.attestation === 'patient-signed' ? 'signed by you' : 'recorded by the hospital';
    li.append(tag);
    if (!revoked) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary revoke';
      b.textContent = 'Revoke';
      b.onclick = () => revokeConsent(c);
      li.append(' ', b);
    }
    ul.append(li);
  }
}

function renderLog(entries) {
  const body = $('log');
  body.replaceChildren();
  // Each cell names its column too: on a phone the rows are stacked and the header row is hidden (app.css).
  const labels = [...body.closest('table').querySelectorAll('thead th')].map((th) => th.textContent);
  for (const e of entries) {
    const tr = document.createElement('tr');
    const copy = e.kind === 'copy';
    if (copy) tr.dataset.copy = e.sha256;
    else tr.dataset.exchange = e.exchange;
    const cells = copy
      ? [
          e.at,
          e.device === state.thumb ? 'you (this device)' : 'you (another device)',
          PURPOSE[e.purpose] ?? e.purpose,
          '—',
          'a copy of your records',
          `${e.proof.feed}#${e.proof.seq}`,
        ]
      : [
          e.at,
          e.to,
          PURPOSE[e.purpose] ?? e.purpose,
          e.consent,
          e.receipt ? `${e.receipt.disposition} ${e.receipt.at}` : 'no receipt yet',
          `${e.proof.feed}#${e.proof.seq}`,
        ];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement('td');
      td.textContent = text;
      td.dataset.label = labels[i] ?? '';
      tr.append(td);
    }
    body.append(tr);
  }
}

async function sha256hex(text) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** What a resource is, in a few words, for the list of the copy's contents. */
function summary(r) {
  const code = r.code?.text ?? r.code?.coding?.[0]?.display ?? r.code?.coding?.[0]?.code ?? r.type?.[0]?.text;
  const when = r.effectiveDateTime ?? r.issued ?? r.onsetDateTime ?? r.recordedDate ?? r.authoredOn ?? r.date ?? r.period?.start;
  const value = r.valueQuantity ? `${r.valueQuantity.value} ${r.valueQuantity.unit ?? ''}`.trim() : r.valueString;
  if (r.resourceType === 'Patient') {
    const n = r.name?.[0];
    return `Patient: ${[...(n?.given ?? []), n?.family].filter(Boolean).join(' ') || 'you'}${r.birthDate ? `, born ${r.birthDate}` : ''}`;
  }
  return [r.resourceType + (code ? `: ${code}` : ''), value, when ? String(when).slice(0, 10) : undefined].filter(Boolean).join(', ');
}

function renderRecords(bundle, m) {
  const entries = (bundle.entry ?? []).filter((e) => e.resource);
  $('records').textContent =
    `Your records, sent ${String(m.receivedAt).slice(0, 10)}: a FHIR Bundle of ${entries.length} resource${entries.length === 1 ? '' : 's'}.`;
  const ul = $('records-list');
  ul.replaceChildren();
  for (const e of entries) {
    const li = document.createElement('li');
    li.textContent = summary(e.resource);
    ul.append(li);
  }
  const a = $('records-download');
  a.href = URL.createObjectURL(new Blob([m.bundle], { type: 'application/fhir+json' }));
  a.hidden = false;
}

// What is shown is what is signed: the hospital sends the FHIR Consent; the device sets its time and signs it.
async function approveRequest(r) {
  const signedAt = new Date().toISOString();
  const jws = await signConsent(state.sign.privateKey, { ...r.fhir, dateTime: signedAt }, state.thumb);
  await conn.send({ t: 'approve', request: r.id, signedAt, jws });
}

async function revokeConsent(c) {
  const signedAt = new Date().toISOString();
  const fhir = { ...c.fhir, status: 'inactive', dateTime: signedAt, provision: { ...c.fhir.provision, period: { ...c.fhir.provision.period, end: signedAt } } };
  const jws = await signConsent(state.sign.privateKey, fhir, state.thumb);
  await conn.send({ t: 'revoke', consent: c.id, signedAt, jws });
}

async function onMessage(m) {
  switch (m.t) {
    case 'welcome':
      state.credential = m.credential;
      await save(state);
      current = { requests: m.requests, consents: m.consents };
      $('hospital').textContent = m.hospital;
      $('device').textContent = state.thumb;
      $('home').hidden = false;
      renderRequests();
      renderConsents();
      $('records').textContent = m.records
        ? `Your hospital sent a copy of your records on ${String(m.records.receivedAt).slice(0, 10)} (${m.records.entries} resources).`
        : 'Your hospital has not sent a copy of your records yet.';
      status('Connected.');
      await conn.send({ t: 'log' });
      return;
    case 'request':
      current.requests.push(m.request);
      renderRequests();
      status('A new consent request arrived.');
      return;
    case 'approved':
    case 'refused':
    case 'revoked':
      current.requests = current.requests.filter((r) => r.id !== (m.request ?? m.consent));
      if (m.consents) current.consents = m.consents;
      renderRequests();
      renderConsents();
      status(m.t === 'approved' ? 'Consent signed and recorded.' : m.t === 'revoked' ? 'Consent revoked.' : 'Request refused.');
      return;
    case 'log':
      renderLog(m.entries);
      status(`Access log: ${m.entries.length} release${m.entries.length === 1 ? '' : 's'}.`);
      return;
    case 'records': {
      // The Bundle's bytes as the hospital sent them; their SHA-256 is what its ledger entry names.
      if ((await sha256hex(m.bundle)) !== m.sha256) return status('The copy of your records did not arrive intact.');
      const bundle = JSON.parse(m.bundle);
      renderRecords(bundle, m);
      status('A copy of your records arrived.');
      await conn.send({ t: 'log' });
      return;
    }
    case 'error':
      status(`Refused: ${m.code}: ${m.message}`);
      return;
    default:
  }
}

async function startSession() {
  status('Connecting…');
  const channel = channelOf(state.credential);
  conn = await connect(state.agentKey, state.credential, channel, state.sign.privateKey, onMessage);
  const sig = await signJws(state.sign.privateKey, {}, await sessionAuthPayload(channel, conn.epk), true);
  await conn.send({ t: 'auth', sig });
}

async function enrol(offer) {
  status('Enrolling…');
  const keys = await generateDeviceKeys();
  const sign = await exportPublic(keys.sign.publicKey);
  const channel = channelOf(offer.cred);
  const done = new Promise((resolve, reject) => {
    connect(offer.k, offer.cred, channel, undefined, async (m) => {
      if (m.t === 'enrolled') resolve(m);
      else reject(new Error(`${m.code}: ${m.message}`));
    }).then(async (c) => {
      const sig = await signJws(keys.sign.privateKey, {}, await sessionAuthPayload(channel, c.epk), true);
      await c.send({ t: 'enrol', code: offer.c, sign, sig });
      done.finally(() => c.ws.close());
    }, reject);
  });
  const m = await done;
  state = { sign: keys.sign, hospital: m.hospital, agentKey: offer.k, credential: m.credential, thumb: await jwkThumbprint(sign) };
  await save(state);
  history.replaceState(null, '', location.pathname);
  $('enrol').hidden = true;
  await startSession();
}

async function main() {
  $('log-button').onclick = () => conn?.send({ t: 'log' });
  $('records-button').onclick = () => conn?.send({ t: 'records' });
  const fragment = new URLSearchParams(location.hash.slice(1)).get('enrol');
  state = await load();
  if (fragment) {
    const offer = JSON.parse(new TextDecoder().decode(unb64u(fragment)));
    $('enrol-hospital').textContent = offer.h;
    $('enrol').hidden = false;
    $('enrol-button').onclick = () => enrol(offer).catch((err) => status(`Enrolment failed: ${err.message}`));
    status('Ready to enrol.');
    return;
  }
  if (!state) return status('This device is not enrolled. Scan the code your hospital gave you.');
  await startSession();
}

main().catch((err) => status(`Error: ${err.message}`));
