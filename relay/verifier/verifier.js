// The relay's static SMART Health Card verifier: plain JS, no CDN, WebCrypto ES256, DecompressionStream('deflate-raw').
// It follows certs/shc/verify.ts (the CLI's verifier); the verdicts and their order are the same.
/* global document, window, createImageBitmap */
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const STORE = 'hie-issuers.jws';
  const HEALTH_CARD = 'https://smarthealth.cards#health-card';
  let directory = null;

  const b64urlBytes = (s) => {
    const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
    return Uint8Array.from(b, (c) => c.charCodeAt(0));
  };
  const text = (bytes) => new TextDecoder().decode(bytes);

  function useDirectory(jws, source) {
    const parts = jws.trim().split('.');
    const doc = JSON.parse(text(b64urlBytes(parts[1] || '')));
    if (doc.v !== 1 || !Array.isArray(doc.issuers)) throw new Error('not an issuer directory');
    directory = doc;
    try {
      localStorage.setItem(STORE, jws.trim());
    } catch {
      /* storage may be off; the page still works while open */
    }
    $('source').textContent = `Issuer directory ${doc.sequence} of ${doc.issuedAt} (${source}), ${doc.issuers.length} issuers.`;
  }

  async function loadDirectory() {
    try {
      const r = await fetch('/.well-known/hie-issuers.jws', { cache: 'no-cache' });
      if (r.ok) return useDirectory(await r.text(), 'from the relay');
    } catch {
      /* offline: fall back to the copy kept */
    }
    const kept = localStorage.getItem(STORE);
    if (kept) useDirectory(kept, 'kept from an earlier visit');
    else $('source').textContent = 'No issuer directory yet: connect once, or choose the directory file.';
  }

  function jwsFromQr(texts) {
    const parts = texts.map((t) => {
      const m = /^shc:\/(?:(\d{1,2})\/(\d{1,2})\/)?(\d+)$/.exec(t.trim());
      if (!m || m[3].length % 2) throw new Error('not a SMART Health Card QR code');
      return { i: Number(m[1] || 1), digits: m[3] };
    });
    parts.sort((a, b) => a.i - b.i);
    return parts
      .map((p) =>
        p.digits
          .match(/\d\d/g)
          .map((d) => String.fromCharCode(Number(d) + 45))
          .join(''),
      )
      .join('');
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    const out = await new Response(stream).arrayBuffer();
    if (out.byteLength > 256 * 1024) throw new Error('payload too large');
    return text(new Uint8Array(out));
  }

  async function signatureValid(jws, jwk) {
    const [h, p, s] = jws.split('.');
    const key = await crypto.subtle.importKey(
      'jwk',
      { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, ext: true },
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['verify'],
    );
    return crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, b64urlBytes(s), new TextEncoder().encode(`${h}.${p}`));
  }

  const codes = (cc) => ((cc && cc.coding) || []).map((c) => `${c.system || ''}|${c.code || ''}`).join(', ') || '(no code)';
  const nameOf = (r) => {
    const n = (r.name || [])[0] || {};
    return [...(n.given || []), n.family || ''].join(' ').trim();
  };
  function describe(payload) {
    const lines = [`issued ${new Date(payload.nbf * 1000).toISOString()} by ${payload.iss}`];
    for (const e of payload.vc.credentialSubject.fhirBundle.entry || []) {
      const r = e.resource || {};
      if (r.resourceType === 'Patient') lines.push(`patient: ${nameOf(r)}${r.birthDate ? `, born ${r.birthDate}` : ''}`);
      else if (r.resourceType === 'Practitioner') lines.push(`practitioner: ${nameOf(r)}`);
      else if (r.resourceType === 'Observation' && codes(r.code) === 'urn:hie:certificate|unfit-for-work')
        lines.push(`unfit for work from ${(r.effectivePeriod || {}).start} to ${(r.effectivePeriod || {}).end}`);
      else if (r.resourceType === 'Observation') lines.push(`observation ${codes(r.code)}${r.effectiveDateTime ? ` on ${r.effectiveDateTime}` : ''}`);
      else if (r.resourceType === 'Condition') lines.push(`diagnosis ${codes(r.code)}${r.onsetDateTime ? ` since ${r.onsetDateTime}` : ''}`);
      else if (r.resourceType === 'Immunization') lines.push(`vaccination ${codes(r.vaccineCode)}${r.occurrenceDateTime ? ` on ${r.occurrenceDateTime}` : ''}`);
      else lines.push(String(r.resourceType || 'resource'));
    }
    return lines;
  }

  async function verify(jws) {
    const parts = jws.split('.');
    if (parts.length !== 3) return { verdict: 'invalid', reasons: ['not a SMART Health Card'] };
    let header, payload;
    try {
      header = JSON.parse(text(b64urlBytes(parts[0])));
      if (header.zip !== 'DEF' || header.alg !== 'ES256' || typeof header.kid !== 'string')
        return { verdict: 'invalid', reasons: ['the card header is not {zip: DEF, alg: ES256, kid}'] };
      payload = JSON.parse(await inflate(b64urlBytes(parts[1])));
      if (!payload.vc || !payload.vc.type.includes(HEALTH_CARD)) throw new Error('not a health card');
    } catch {
      return { verdict: 'forged', reasons: ['the card cannot be read: it was changed after signing'] };
    }
    const statements = describe(payload);
    const out = (verdict, reasons) => ({ verdict, reasons, statements });
    if (!directory) return out('unknown-issuer', ['no issuer directory loaded']);
    const issuer = directory.issuers.find((i) => i.iss === payload.iss);
    if (!issuer) return out('unknown-issuer', [`issuer ${payload.iss} is not in the federation's issuer directory`]);
    const key = issuer.keys.find((k) => k.kid === header.kid);
    const revokedKey = issuer.revokedKeys.find((k) => k.kid === header.kid);
    const signer = key || (revokedKey && revokedKey.jwk);
    if (!signer) return out('forged', [`${issuer.name} has no key ${header.kid}: the card was not signed by the issuer it names`]);
    if (!(await signatureValid(jws, signer))) return out('forged', ['the signature does not match the card: it was changed after signing']);
    if (revokedKey)
      return out('revoked', [
        `key ${revokedKey.kid} of ${issuer.name} was revoked at ${revokedKey.revokedAt}; check its ledger proof with hie-certs verify-card --proof`,
      ]);
    if (issuer.status !== 'active')
      return out(issuer.status === 'suspended' ? 'issuer-suspended' : 'issuer-revoked', [`${issuer.name} is ${issuer.status} in the federation`]);
    const crl = issuer.crls.find((c) => c.kid === signer.kid);
    const rid = payload.vc.rid;
    if (
      rid &&
      crl &&
      crl.rids.some((r) => {
        const [id, until] = r.split('.');
        return id === rid && (until === undefined || payload.nbf < Number(until));
      })
    )
      return out('revoked', [`the issuer revoked this card (rid ${rid})`]);
    if (payload.exp !== undefined && payload.exp * 1000 <= Date.now())
      return out('expired', [`the card expired at ${new Date(payload.exp * 1000).toISOString()}`]);
    return out('valid', [`signed by ${issuer.name} (${issuer.iss}) with key ${signer.kid}`]);
  }

  function show(result) {
    const v = $('verdict');
    v.textContent = result.verdict.toUpperCase().replace('-', ' ');
    v.className = result.verdict === 'valid' ? 'valid' : result.verdict === 'expired' ? 'warn' : 'bad';
    v.dataset.verdict = result.verdict;
    $('reasons').replaceChildren(...result.reasons.map((r) => Object.assign(document.createElement('li'), { textContent: r })));
    $('statements').replaceChildren(...(result.statements || []).map((s) => Object.assign(document.createElement('li'), { textContent: s })));
  }

  async function checkText(t) {
    try {
      show(await verify(jwsFromQr(t.trim().split(/\s+/))));
    } catch (e) {
      show({ verdict: 'invalid', reasons: [e.message] });
    }
  }

  async function readImage(file) {
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const found = window.jsQR(img.data, img.width, img.height);
    if (!found) throw new Error('no QR code found in the image');
    return found.data;
  }

  $('image').addEventListener('change', async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    try {
      const t = await readImage(file);
      $('text').value = t;
      await checkText(t);
    } catch (e) {
      show({ verdict: 'invalid', reasons: [e.message] });
    }
  });
  $('check').addEventListener('click', () => checkText($('text').value));
  $('directory').addEventListener('change', async (ev) => {
    const file = ev.target.files[0];
    if (file) useDirectory(await file.text(), `from ${file.name}`);
  });
  loadDirectory();
})();
