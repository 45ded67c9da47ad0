import { expect } from 'chai';
import { Authenticator, DEFAULT_AUTH_FAILURES_PER_WINDOW, type AuthOutcome, type AuthRequest } from '../../../hospital-agent/api/auth.ts';

const TOKEN = 'ehr-token-0123456789abcdef0123456789abcdef';

/** A clock and a delay that only move when the test advances them. */
class FakeTime {
  t = 1_000_000;
  private timers: Array<{ at: number; resolve: () => void }> = [];
  readonly now = (): number => this.t;
  readonly delay = (ms: number): Promise<void> => new Promise((resolve) => this.timers.push({ at: this.t + ms, resolve }));
  get pending(): number {
    return this.timers.length;
  }
  /** Moves the clock and lets every timer that came due (and what it started) run. */
  async advance(ms: number): Promise<void> {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.resolve();
    for (let i = 0; i < 10; i++) await Promise.resolve();
  }
}

const from = (address: string, token?: string): AuthRequest => ({
  headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  socket: { remoteAddress: address },
});

function code(o: AuthOutcome): string | undefined {
  return 'error' in o ? o.error.code : undefined;
}

describe('Authenticator', function () {
  let time: FakeTime;
  const make = (o: Partial<ConstructorParameters<typeof Authenticator>[1]> = {}): Authenticator =>
    new Authenticator([{ name: 'ehr', token: TOKEN }], {
      failuresPerWindow: 5,
      windowMs: 60_000,
      penaltyMs: 1000,
      maxPenalisedPerAddress: 2,
      ...o,
      now: time.now,
      delay: time.delay,
    });
  beforeEach(() => (time = new FakeTime()));

  it('still serves the valid token, at once, after many bad tokens from the same address', async function () {
    const auth = make({ failuresPerWindow: DEFAULT_AUTH_FAILURES_PER_WINDOW });
    const guesses: Array<AuthOutcome | Promise<AuthOutcome>> = [];
    for (let i = 0; i < 200; i++) guesses.push(auth.authenticate(from('127.0.0.1', `wrong-guess-${i}-0123456789abcdef0123456789`)));
    expect(auth.stats().penalised).to.equal(200 - DEFAULT_AUTH_FAILURES_PER_WINDOW);
    // Not a promise: the valid token waits for no tarpit, however many guesses the address has held or shed.
    const ok = auth.authenticate(from('127.0.0.1', TOKEN));
    expect(ok).to.deep.equal({ principal: 'ehr', role: 'admin' });
    expect(auth.authenticate(from('::ffff:127.0.0.1', TOKEN))).to.deep.equal({ principal: 'ehr', role: 'admin' });
    await time.advance(1000);
    await Promise.all(guesses);
  });

  it('answers wrong tokens past the limit with ERR_RATE_LIMITED only after the tarpit, and holds at most the cap per address', async function () {
    const auth = make();
    for (let i = 0; i < 5; i++) expect(code(await auth.authenticate(from('127.0.0.1', 'wrong-wrong-wrong')))).to.equal('ERR_UNAUTHORIZED');
    // A missing token is a failure too, and past the limit it waits out the tarpit like a wrong one.
    const missing = Promise.resolve(auth.authenticate(from('127.0.0.1')));
    await time.advance(1000);
    expect(code(await missing)).to.equal('ERR_RATE_LIMITED');
    const settled: AuthOutcome[] = [];
    const burst = Array.from({ length: 20 }, () => Promise.resolve(auth.authenticate(from('127.0.0.1', 'wrong-wrong-wrong'))).then((o) => settled.push(o)));
    await time.advance(0);
    // The cap (2) is held; the other 18 are shed at once, each closing its connection.
    expect(auth.stats().held).to.equal(2);
    expect(settled.length).to.equal(18);
    expect(settled.every((o) => code(o) === 'ERR_RATE_LIMITED' && 'error' in o && o.close === true)).to.equal(true);
    await time.advance(999);
    expect(settled.length, 'none of the held is answered before penaltyMs').to.equal(18);
    await time.advance(1);
    await Promise.all(burst);
    expect(settled.slice(18).map((o) => [code(o), 'error' in o && o.close])).to.deep.equal([
      ['ERR_RATE_LIMITED', undefined],
      ['ERR_RATE_LIMITED', undefined],
    ]);
    // Another address is not penalised for the first one's failures.
    expect(code(await auth.authenticate(from('10.0.0.7', 'wrong-wrong-wrong')))).to.equal('ERR_UNAUTHORIZED');
  });

  it('bounds the wrong guesses a guesser gets answered on open connections to the cap per penaltyMs, however many it sends', async function () {
    const auth = make();
    for (let i = 0; i < 5; i++) await auth.authenticate(from('127.0.0.1', 'warm-up-guess'));
    // 16 guessers on one address, each sending its next guess as soon as it has an answer, for 10 simulated seconds.
    // A shed guess (answered at once, connection closed) costs the guesser a new connection: counted, and it waits a tick.
    let answeredOpen = 0;
    let shed = 0;
    let stop = false;
    const lane = async (): Promise<void> => {
      while (!stop) {
        const o = await auth.authenticate(from('127.0.0.1', 'guess-guess-guess'));
        if ('error' in o && o.close) {
          shed += 1;
          await time.delay(10);
        } else answeredOpen += 1;
      }
    };
    const lanes = Array.from({ length: 16 }, lane);
    for (let ms = 0; ms < 10_000; ms += 10) await time.advance(10);
    stop = true;
    for (let i = 0; i < 200 && time.pending > 0; i++) await time.advance(1000);
    await Promise.all(lanes);
    // At most 2 held at once, each for 1000 ms: about 2 per second, 20 in 10 s (+2 that started in the last second).
    expect(answeredOpen).to.be.at.most(22);
    expect(answeredOpen).to.be.at.least(18);
    expect(shed).to.be.greaterThan(0);
    expect(auth.stats().held).to.equal(0);
    // Throughout, the valid token was served at once.
    expect(auth.authenticate(from('127.0.0.1', TOKEN))).to.deep.equal({ principal: 'ehr', role: 'admin' });
  });

  it('keeps an address penalised until it stops failing for a whole window, then forgives it', async function () {
    const auth = make({ penaltyMs: 0 });
    for (let i = 0; i < 5; i++) await auth.authenticate(from('127.0.0.1', 'wrong-wrong-wrong'));
    for (let i = 0; i < 5; i++) {
      await time.advance(30_000);
      const o = auth.authenticate(from('127.0.0.1', 'wrong-wrong-wrong'));
      await time.advance(0);
      expect(code(await o), `still penalised after ${i + 1} x 30 s of guessing`).to.equal('ERR_RATE_LIMITED');
    }
    await time.advance(60_000);
    expect(code(await auth.authenticate(from('127.0.0.1', 'wrong-wrong-wrong')))).to.equal('ERR_UNAUTHORIZED');
  });

  it('caps what the tarpit holds across addresses', async function () {
    const outcomes: string[] = [];
    const auth = make({ failuresPerWindow: 1, maxPenalised: 3, onFailure: (o) => outcomes.push(o) });
    const held: Array<AuthOutcome | Promise<AuthOutcome>> = [];
    for (let a = 1; a <= 5; a++) {
      await auth.authenticate(from(`10.0.0.${a}`, 'wrong-wrong-wrong'));
      held.push(auth.authenticate(from(`10.0.0.${a}`, 'wrong-wrong-wrong')));
    }
    expect(auth.stats()).to.include({ held: 3, shed: 2 });
    expect(outcomes.filter((o) => o === 'unauthorized').length).to.equal(5);
    expect(outcomes.filter((o) => o === 'tarpit').length).to.equal(3);
    expect(outcomes.filter((o) => o === 'shed').length).to.equal(2);
    await time.advance(1000);
    await Promise.all(held);
    expect(auth.stats().held).to.equal(0);
  });
});
