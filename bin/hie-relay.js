#!/usr/bin/env -S node --single-threaded-gc
import { run } from './run.js';

await run('hie-relay', new URL('../relay/cli.ts', import.meta.url));
