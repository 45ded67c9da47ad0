'use strict';
// Mocha runs the TypeScript sources directly through tsx; the custom reporter
// prints the closing "N passed, N failed" line CI reads.
module.exports = {
  'node-option': ['import=tsx'],
  spec: ['test/**/*.test.ts'],
  extension: ['ts'],
  reporter: './test/support/summary-reporter.cjs',
  timeout: 60000,
  exit: true,
};
