import fc from 'fast-check';

/** One edit of a byte string; positions are taken modulo the current length so any op applies to any input. */
export type ByteOp =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'u32'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number }
  | { op: 'duplicate'; at: number; count: number }
  | { op: 'splice'; at: number; other: number; from: number };

/** A base input (by index) and the edits made to it. */
export interface Mutation {
  base: number;
  ops: ByteOp[];
}

/** Values that hit length, id and count checks at their edges. */
export const INTERESTING_U32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

const pos = fc.nat({ max: 1 << 20 });

/** Arbitrary edit operations (the mix favours small, structure-preserving edits). */
export const byteOpArb: fc.Arbitrary<ByteOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: pos, bit: fc.integer({ min: 0, max: 7 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      at: pos,
      value: fc.oneof(fc.constantFrom(0, 1, 0x7f, 0x80, 0xff), fc.integer({ min: 0, max: 255 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('u32' as const), at: pos, value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat()) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: pos }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: pos, bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: pos, count: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: pos, count: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('splice' as const), at: pos, other: fc.nat(), from: pos }) },
);

/** A mutation of one of `baseCount` inputs: 1 to `maxOps` edits. */
export function mutationArb(baseCount: number, maxOps = 4): fc.Arbitrary<Mutation> {
  return fc.record({ base: fc.integer({ min: 0, max: baseCount - 1 }), ops: fc.array(byteOpArb, { minLength: 1, maxLength: maxOps }) });
}

/** Applies edits to a copy of `input`; `splice` takes the tail of another input (`others[other % n]`). */
export function applyOps(input: Uint8Array, ops: readonly ByteOp[], others: readonly Uint8Array[] = [input]): Buffer {
  let b = Buffer.from(input);
  for (const o of ops) {
    const n = b.length;
    const at = n === 0 ? 0 : o.at % (n + 1);
    switch (o.op) {
      case 'flip':
        if (n > 0) b[o.at % n] = (b[o.at % n] as number) ^ (1 << o.bit);
        break;
      case 'set':
        if (n > 0) b[o.at % n] = o.value;
        break;
      case 'u32':
        if (n >= 4) b.writeUInt32BE(o.value >>> 0, o.at % (n - 3));
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), o.bytes, b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + o.count)]);
        break;
      case 'duplicate':
        b = Buffer.concat([b.subarray(0, at + o.count), b.subarray(at)]);
        break;
      case 'splice': {
        const other = others[o.other % others.length] as Uint8Array;
        b = Buffer.concat([b.subarray(0, at), other.subarray(other.length === 0 ? 0 : o.from % other.length)]);
        break;
      }
    }
  }
  return b;
}

/** Applies a {@link Mutation} to its base among `bases`. */
export function mutate(bases: readonly Uint8Array[], m: Mutation): Buffer {
  return applyOps(bases[m.base % bases.length] as Uint8Array, m.ops, bases);
}

/** One edit of a JSON value: replace, delete or add at a path chosen by index, or mutate a string leaf's text. */
export type JsonOp =
  | { op: 'replace'; at: number; value: unknown }
  | { op: 'delete'; at: number }
  | { op: 'add'; at: number; key: string; value: unknown }
  | { op: 'text'; at: number; edits: ByteOp[] }
  | { op: 'b64'; at: number; pos: number; xor: number };

const B64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Replaces the base64url character at `pos` (from the end) with one whose 6 bits differ by `xor`: close edits that hit padding bits. */
function b64Edit(s: string, pos: number, xor: number): string {
  if (s.length === 0) return s;
  const i = s.length - 1 - (pos % s.length);
  const v = B64URL_ALPHABET.indexOf(s[i] as string);
  if (v < 0) return s;
  return s.slice(0, i) + B64URL_ALPHABET[(v ^ xor) & 63] + s.slice(i + 1);
}

/** Arbitrary JSON edits; replacement values mix random JSON with edge values. */
export const jsonOpArb: fc.Arbitrary<JsonOp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('replace' as const),
      at: fc.nat(),
      value: fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.constantFrom<unknown>(null, '', 0, -1, 1e308, true, [], {}, '../../etc/passwd', 'a'.repeat(5000), '\u0000', '__proto__'),
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      at: fc.nat(),
      key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'sig', 'v')),
      value: fc.jsonValue({ maxDepth: 1 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('text' as const), at: fc.nat(), edits: fc.array(byteOpArb, { minLength: 1, maxLength: 2 }) }) },
  // Mostly the last characters of a string, where base64 keeps its spare bits.
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('b64' as const),
      at: fc.nat(),
      pos: fc.oneof(fc.integer({ min: 0, max: 2 }), fc.nat()),
      xor: fc.integer({ min: 1, max: 63 }),
    }),
  },
);

type Slot = { parent: Record<string, unknown> | unknown[] | undefined; key: string | number; value: unknown };

function slots(value: unknown, parent: Slot['parent'] = undefined, key: string | number = '', out: Slot[] = []): Slot[] {
  out.push({ parent, key, value });
  if (Array.isArray(value)) value.forEach((v, i) => slots(v, value, i, out));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) slots(v, value as Record<string, unknown>, k, out);
  return out;
}

function put(parent: Record<string, unknown> | unknown[], key: string | number, value: unknown): void {
  // defineProperty so a '__proto__' key becomes data, as JSON.parse would make it.
  Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Applies JSON edits to a deep copy of `value` (the root itself may be replaced). */
export function applyJsonOps(value: unknown, ops: readonly JsonOp[]): unknown {
  let root: unknown = structuredClone(value);
  for (const o of ops) {
    const all = slots(root);
    const s = all[o.at % all.length] as Slot;
    const set = (v: unknown): void => {
      if (s.parent === undefined) root = v;
      else put(s.parent, s.key, v);
    };
    switch (o.op) {
      case 'replace':
        set(structuredClone(o.value));
        break;
      case 'delete':
        if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
        else if (s.parent) delete (s.parent as Record<string, unknown>)[s.key as string];
        else root = undefined;
        break;
      case 'add':
        if (Array.isArray(s.value)) s.value.push(structuredClone(o.value));
        else if (s.value && typeof s.value === 'object') put(s.value as Record<string, unknown>, o.key, structuredClone(o.value));
        else set([s.value, o.value]);
        break;
      case 'text':
        if (typeof s.value === 'string') set(applyOps(Buffer.from(s.value, 'utf8'), o.edits).toString('utf8'));
        else if (typeof s.value === 'number') set(Number(applyOps(Buffer.from(String(s.value)), o.edits).toString('latin1')));
        break;
      case 'b64':
        if (typeof s.value === 'string') set(b64Edit(s.value, o.pos, o.xor));
        break;
    }
  }
  return root;
}

/** Deep equality of JSON-like values, key order ignored. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return Number.isNaN(a) && Number.isNaN(b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
