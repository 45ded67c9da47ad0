'use strict';
// The spec glob is in package.json's test script, so `npx mocha FILE` runs
// just FILE. Mocha runs the TypeScript sources directly through tsx; the custom reporter
// prints the closing "N passed, N failed" line CI reads. Files run two at a
// time (one worker process per core on the 2-core machines the suite is
// kept under 15 minutes on): most of a test's time is waiting on sockets,
// child processes and fsync, not CPU. Each file is its own root suite in a
// worker, so a root hook runs per file; fixtures shared by files in one
// process clean up at process exit.
module.exports = {
  'node-option': ['import=tsx'],
  extension: ['ts'],
  reporter: './test/support/summary-reporter.cjs',
  timeout: 60000,
  exit: true,
  parallel: true,
  jobs: 2,
};
