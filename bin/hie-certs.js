#!/usr/bin/env node
import { run } from './run.js';

await run('hie-certs', new URL('../certs/cli.ts', import.meta.url));
