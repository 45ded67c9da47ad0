import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { AccessLog } from '../../../hospital-agent/console/access-log.ts';
import { sameToken, SessionStore } from '../../../hospital-agent/console/sessions.ts';
import { tempDir } from '../../support/tmp.ts';

describe('console sessions', function () {
  it('ends a session after the idle time and after the absolute lifetime, whatever its use', function () {
    let t = 0;
    const store = new SessionStore({ idleMs: 1000, maxMs: 5000, now: () => t });
    const s = store.create('officer', 'compliance');
    t = 999;
    expect(store.get(s.id)?.principal).to.equal('officer');
    t = 2000;
    expect(store.get(s.id)).to.equal(undefined);
    const busy = store.create('officer', 'compliance');
    for (t = 2000; t < 7000; t += 900) expect(store.get(busy.id), `at ${t}`).not.to.equal(undefined);
    t = 7001;
    expect(store.get(busy.id)).to.equal(undefined);
  });

  it('gives every session its own random id and CSRF token, and compares tokens in full', function () {
    const store = new SessionStore();
    const a = store.create('a', 'compliance');
    const b = store.create('b', 'admin');
    expect(a.id).not.to.equal(b.id);
    expect(a.csrf).not.to.equal(a.id);
    expect(a.id).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(sameToken(a.csrf, a.csrf)).to.equal(true);
    expect(sameToken(a.csrf, b.csrf)).to.equal(false);
    expect(sameToken(a.csrf, a.csrf.slice(0, -1))).to.equal(false);
    expect(sameToken('', '')).to.equal(false);
    expect(sameToken(undefined, a.csrf)).to.equal(false);
    expect(store.get('not a session id')).to.equal(undefined);
    store.end(a.id);
    expect(store.get(a.id)).to.equal(undefined);
  });
});

describe('console access log', function () {
  it('appends hash-chained lines that survive a restart, and detects an edited or removed line', function () {
    const tmp = tempDir('hie-access-log-');
    try {
      const path = join(tmp.dir, 'console', 'access.log');
      const log = new AccessLog(path);
      log.record({ who: 'officer', view: 'sign-in' });
      log.record({ who: 'officer', view: 'exchanges', patient: 'a'.repeat(64), query: { counterparty: 'mgh' } });
      const reopened = new AccessLog(path);
      reopened.record({ who: 'officer', view: 'proof', query: { exchange: 'x-00000001' } });
      const text = readFileSync(path, 'utf8');
      expect(AccessLog.verify(text)).to.equal(undefined);
      expect(reopened.recent().map((r) => r.view)).to.deep.equal(['proof', 'exchanges', 'sign-in']);
      const lines = text.trim().split('\n');
      expect(AccessLog.verify([lines[0], lines[2]].join('\n'))).to.equal(2);
      expect(AccessLog.verify(text.replace('"mgh"', '"bravo"'))).to.equal(3);
      writeFileSync(path, `${text}{"torn`);
      expect(new AccessLog(path).recent().map((r) => r.view)).to.deep.equal(['proof', 'exchanges', 'sign-in']);
    } finally {
      tmp.cleanup();
    }
  });
});
