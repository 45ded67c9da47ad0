/** Option specs as node:util parseArgs takes them (what this module reads of them). */
type Options = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: unknown }>;

/**
 * `args` with each value that starts with a single `-` joined to its string
 * option (`--kid -AbC` becomes `--kid=-AbC`): node:util's parseArgs refuses
 * such a value as ambiguous, and key thumbprints and other base64url ids
 * start with `-` one time in 64. A value that starts with `--` is left as it
 * is, so a forgotten value before the next option is still an error, and
 * nothing after a `--` terminator is touched.
 */
export function joinDashValues(args: readonly string[], options: Options): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i += 1) {
    const a = args[i] as string;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (takesValue.has(a) && next !== undefined && next.startsWith('-') && !next.startsWith('--') && next !== '-') {
      out.push(a.startsWith('--') ? `${a}=${next}` : `${a}${next}`);
      i += 1;
    } else out.push(a);
  }
  return out;
}
