/**
 * Trace lines in Vmalloc's format, `old:new:size:region:method:file,line:`, one per call:
 * an allocation has old 0, a free has new 0, a resize has both (Vo 1996, section 4).
 *
 * Theory. A region opened with a `trace` callback (or the malloc interface with `VMTRACE`)
 * writes one line per call; the profile module reads such a file back with
 * {@linkcode parseTraceLine} to replay it against any allocator. Addresses are written in hex
 * (`0x..`, 0 as `0x0`), sizes in decimal; the parser also takes decimal addresses.
 *
 * Invariants: `parseTraceLine(formatTraceLine(t))` equals `t` for every record whose file
 * holds no `:` and no newline.
 *
 * Lock order: no locks.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { UmemError } from "../core/mod.ts";

/** One call of a trace. */
export interface TraceRecord {
  /** The block before the call (0 for an allocation). */
  old: number;
  /** The block after the call (0 for a free). */
  new: number;
  /** The size asked for (the block's size for a free). */
  size: number;
  /** The region record's address. */
  region: number;
  /** The method's Vmalloc name, e.g. `Vmbest`. */
  method: string;
  /** The caller's file. */
  file: string;
  /** The caller's line. */
  line: number;
}

/**
 * Formats a trace line (without the newline).
 *
 * @param t the record
 * @returns `old:new:size:region:method:file,line:`
 *
 * @example
 * ```ts
 * import { formatTraceLine } from "@umem/umem/region";
 * const t = { old: 0, new: 0x1f8, size: 24, region: 0x10, method: "Vmbest", file: "t.ts", line: 4 };
 * console.log(formatTraceLine(t)); // 0x0:0x1f8:24:0x10:Vmbest:t.ts,4:
 * ```
 */
export function formatTraceLine(t: TraceRecord): string {
  return `${hex(t.old)}:${hex(t.new)}:${t.size}:${hex(t.region)}:${t.method}:${t.file},${t.line}:`;
}

const NUM = /^(?:0x[0-9a-fA-F]+|[0-9]+)$/;

/**
 * Parses a trace line written by {@linkcode formatTraceLine} (or by Vmalloc). The `profile`
 * module imports this from `../region/mod.ts` to read traces back for replay.
 *
 * @param line one line (a trailing newline is allowed)
 * @returns the record: old, new, size, region, method, file, line
 * @throws {UmemError} `invalid-argument` when the line is not a trace line
 *
 * @example
 * ```ts
 * import { parseTraceLine } from "@umem/umem/region";
 * const t = parseTraceLine("0x1f8:0x0:24:0x10:Vmbest:t.ts,9:");
 * console.log(t.old, t.new, t.size, t.file, t.line); // 504 0 24 t.ts 9
 * ```
 */
export function parseTraceLine(line: string): TraceRecord {
  const s = String(line).replace(/\r?\n$/, "");
  const f = s.split(":");
  const bad = (why: string) =>
    new UmemError("invalid-argument", `parseTraceLine: ${why} in ${JSON.stringify(s)}`);
  if (f.length !== 7 || f[6] !== "") throw bad("expected old:new:size:region:method:file,line:");
  for (const i of [0, 1, 2, 3]) if (!NUM.test(f[i])) throw bad(`field ${i + 1} is not a number`);
  const comma = f[5].lastIndexOf(",");
  if (comma < 0 || !/^[0-9]+$/.test(f[5].slice(comma + 1))) throw bad("expected file,line");
  return {
    old: Number(f[0]),
    new: Number(f[1]),
    size: Number(f[2]),
    region: Number(f[3]),
    method: f[4],
    file: f[5].slice(0, comma),
    line: Number(f[5].slice(comma + 1)),
  };
}
