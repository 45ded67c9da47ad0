// Preloaded with `node --import` into an agent process to shift its wall clock
// by HIE_TEST_CLOCK_OFFSET_MS (Date.now() and `new Date()`), for the clock-skew
// fault test. Plain JavaScript: it loads before any TypeScript loader.
const offset = Number(process.env.HIE_TEST_CLOCK_OFFSET_MS ?? 0);
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = SkewedDate;
