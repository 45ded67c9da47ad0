#!/usr/bin/env node
import { run } from './run.js';

await run('hie-ledger', new URL('../ledger/cli.ts', import.meta.url));
