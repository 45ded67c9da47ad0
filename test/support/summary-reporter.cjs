'use strict';
// Spec output while running, then one closing line that CI parses:
// "N passed, N failed" with ", N skipped" when any test was skipped.
const Mocha = require('mocha');

const { EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    runner.on(EVENT_TEST_PASS, () => {
      passed += 1;
    });
    runner.on(EVENT_TEST_FAIL, () => {
      failed += 1;
    });
    runner.on(EVENT_TEST_PENDING, () => {
      skipped += 1;
    });
    // Registered after Spec's own epilogue listener, so this line comes last.
    runner.once(EVENT_RUN_END, () => {
      const parts = [`${passed} passed`, `${failed} failed`];
      if (skipped > 0) parts.push(`${skipped} skipped`);
      process.stdout.write(`\n${parts.join(', ')}\n`);
    });
  }
}

module.exports = SummaryReporter;
