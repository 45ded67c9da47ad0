#!/usr/bin/env -S node --single-threaded-gc --initial-old-space-size=128
import { run } from './run.js';

await run('hie-agent', new URL('../hospital-agent/cli.ts', import.meta.url));
