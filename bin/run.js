// Shared entry point for every hie-* command: loads the TypeScript sources
// through tsx, runs the command's main(), and is the only place that calls
// process.exit. Errors become one line on stderr, never a stack trace
// (set HIE_DEBUG=1 to see the stack).
import { register } from 'tsx/esm/api';

register();

/**
 * @param {string} name command name used as the error prefix
 * @param {URL} moduleUrl the TypeScript module exporting main(argv)
 */
export async function run(name, moduleUrl) {
  try {
    const mod = await import(moduleUrl.href);
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
