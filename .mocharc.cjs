'use strict';
// The spec glob is in package.json's test script, so `npx mocha FILE` runs
// just FILE. Mocha runs the TypeScript sources directly through tsx; the custom reporter
// prints the closing "N passed, N failed" line CI reads.
module.exports = {
  'node-option': ['import=tsx'],
  extension: ['ts'],
  reporter: './test/support/summary-reporter.cjs',
  timeout: 60000,
  exit: true,
};
