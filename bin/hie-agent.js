#!/usr/bin/env node
import { run } from './run.js';

await run('hie-agent', new URL('../hospital-agent/cli.ts', import.meta.url));
