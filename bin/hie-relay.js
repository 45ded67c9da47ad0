#!/usr/bin/env node
import { run } from './run.js';

await run('hie-relay', new URL('../relay/cli.ts', import.meta.url));
