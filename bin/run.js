// Shared entry point for every hie-* command. It runs the compiled JavaScript
// in dist/ (built by `npm run build`, which `npm ci` and `npm pack` run) when
// that build is at least as new as every TypeScript source, and otherwise
// loads the sources through tsx (a checkout being worked on). An installed
// copy (the tarball `npm pack` makes) holds dist/ and no sources, so it never
// needs tsx. It runs the command's main() and is the only place that calls
// process.exit. Errors become one line on stderr, never a stack trace (set
// HIE_DEBUG=1 to see the stack).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE_DIRS = ['certs', 'common', 'relay', 'hospital-agent', 'ledger'];
const STAMP = join(ROOT, 'dist', '.build-stamp');

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function builtModule(sourceUrl) {
  if (process.env.HIE_FROM_SOURCE === '1' || !existsSync(STAMP)) return undefined;
  const stamp = statSync(STAMP).mtimeMs;
  if (SOURCE_DIRS.some((d) => existsSync(join(ROOT, d)) && newestSource(join(ROOT, d)) > stamp)) return undefined;
  const rel = fileURLToPath(sourceUrl).slice(ROOT.length).replace(/\.ts$/, '.js');
  const built = join(ROOT, 'dist', rel);
  return existsSync(built) ? pathToFileURL(built) : undefined;
}

/**
 * @param {string} name command name used as the error prefix
 * @param {URL} moduleUrl the TypeScript module exporting main(argv)
 */
export async function run(name, moduleUrl) {
  try {
    let target = builtModule(moduleUrl);
    if (!target && !existsSync(fileURLToPath(moduleUrl))) {
      throw Object.assign(
        new Error(`this copy has neither a build (${join(ROOT, 'dist')}) nor the sources: reinstall it (docs/install.md) or run 'npm run build'`),
        {
          code: 'ERR_NOT_BUILT',
        },
      );
    }
    if (!target) {
      const { register } = await import('tsx/esm/api');
      register();
      target = moduleUrl;
    }
    const mod = await import(target.href);
    const code = await mod.main(process.argv.slice(2));
    process.exitCode = typeof code === 'number' ? code : 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const code = err && typeof err === 'object' && 'code' in err ? ` [${err.code}]` : '';
    process.stderr.write(`${name}: error: ${message.split('\n')[0]}${code}\n`);
    if (process.env.HIE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exit(typeof err?.exitCode === 'number' ? err.exitCode : 1);
  }
}
