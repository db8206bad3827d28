/**
 * Reading Vmalloc's `VMTRACE` files into a trace.
 *
 * Theory. With `VMTRACE=file` in the environment, Vmalloc writes one line per event:
 * `old:new:size:region:method:file,line:`; an allocation has `old` 0, a free has `new` 0, and
 * a resize has both. Addresses are hexadecimal (with or without `0x`) or decimal. The reader
 * turns each line into a record (interface `API_REGION`), the region into a cache-table
 * entry (its buffer size 0) and `file,line` into a site; then links frees and resizes to
 * the records that made their blocks, so the trace replays and summarises like a recorded one.
 * It is tolerant: blank lines and `#` comments are skipped, and so is any line that does not
 * parse, unless `strict` is set; the skipped lines are counted.
 *
 * Invariants. The records keep the lines' order; times count lines.
 *
 * Lock order: none.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { UmemError } from "../core/mod.ts";
import { API_REGION, OP_ALLOC, OP_FREE, OP_RESIZE } from "./layout.ts";
import { type Trace, TraceBuilder } from "./trace.ts";
import { checkFlag, checkOptions, checkPath } from "./arguments.ts";

/** One VMTRACE line, parsed. */
export interface VmtraceLine {
  /** The old address (0 for an allocation). */
  old: number;
  /** The new address (0 for a free). */
  new: number;
  /** The size. */
  size: number;
  /** The region, as written. */
  region: string;
  /** The method, as written. */
  method: string;
  /** `file,line`, as written ("" when absent). */
  site: string;
}

/** Parses an address or size: `0x` hex, bare hex with a letter, or decimal. */
function num(s: string): number {
  const t = s.trim();
  let v = NaN;
  if (/^0x[0-9a-f]+$/i.test(t)) v = parseInt(t.slice(2), 16);
  else if (/^\d+$/.test(t)) v = Number(t);
  else if (/^[0-9a-f]+$/i.test(t)) v = parseInt(t, 16);
  return Number.isSafeInteger(v) && v >= 0 && v <= 0xffffffff ? v : NaN;
}

/**
 * Parses one VMTRACE line, `old:new:size:region:method:file,line:`.
 *
 * @param line the line
 * @returns the fields, or null when the line is not a trace line
 * @throws {UmemError} `invalid-argument` when `line` is not a string
 *
 * @example
 * ```ts
 * import { parseVmtraceLine } from "@umem/umem/profile";
 * console.log(parseVmtraceLine("0:0x8050a10:24:0x8050000:Vmbest:t.c,4:")?.size); // 24
 * ```
 */
export function parseVmtraceLine(line: string): VmtraceLine | null {
  if (typeof line !== "string") {
    throw new UmemError(
      "invalid-argument",
      `parseVmtraceLine: expected a string, got ${typeof line}`,
    );
  }
  const parts = line.trim().split(":");
  if (parts.length < 5) return null;
  const old = num(parts[0]), nw = num(parts[1]), size = num(parts[2]);
  if (Number.isNaN(old) || Number.isNaN(nw) || Number.isNaN(size)) return null;
  if (old === 0 && nw === 0) return null;
  return {
    old,
    new: nw,
    size,
    region: parts[3].trim(),
    method: parts[4].trim(),
    site: (parts[5] ?? "").trim(),
  };
}

/** Options of {@linkcode readVmtrace}. */
export interface VmtraceOptions {
  /** Refuse a line that does not parse instead of skipping it (default false). */
  strict?: boolean;
}

/** A trace read from VMTRACE text, and the lines skipped. */
export interface VmtraceResult {
  /** The trace. */
  trace: Trace;
  /** Lines that were not trace lines (blank lines and comments not counted). */
  skipped: number;
}

/**
 * Reads VMTRACE text into a trace.
 *
 * @param text the file's text
 * @param options `strict`
 * @param source what to call the text in an error
 * @returns the trace and the count of lines skipped
 * @throws {UmemError} `corrupt-trace` in strict mode, naming the first bad line;
 *   `invalid-argument` for text that is not a string or bad options
 *
 * @example
 * ```ts
 * import { parseVmtrace, summary } from "@umem/umem/profile";
 * const { trace } = parseVmtrace([
 *   "0:1000:24:r1:Vmbest:t.c,4:",
 *   "1000:2000:48:r1:Vmbest:t.c,5:",
 *   "2000:0:48:r1:Vmbest:t.c,6:",
 * ].join("\n"));
 * console.log(trace.at(2).ref, summary(trace).maxBusy); // 1 48
 * ```
 */
export function parseVmtrace(
  text: string,
  options: VmtraceOptions = {},
  source = "VMTRACE",
): VmtraceResult {
  if (typeof text !== "string") {
    throw new UmemError("invalid-argument", `parseVmtrace: expected text, got ${typeof text}`);
  }
  checkOptions("parseVmtrace", options);
  checkFlag("parseVmtrace", "strict", options.strict);
  const b = new TraceBuilder(0);
  let skipped = 0, lineNo = 0;
  for (const raw of text.split("\n")) {
    lineNo++;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const l = parseVmtraceLine(line);
    if (l === null) {
      if (options.strict === true) {
        throw new UmemError(
          "corrupt-trace",
          `readVmtrace: ${source}:${lineNo}: '${
            line.slice(0, 80)
          }' is not old:new:size:region:method:file,line:`,
        );
      }
      skipped++;
      continue;
    }
    const cache = b.cache("r" + l.region, l.region, 0), site = b.site(l.site);
    if (l.old === 0) b.push(OP_ALLOC, API_REGION, l.size, l.new, 0, 0, cache, site);
    else if (l.new === 0) b.push(OP_FREE, API_REGION, 0, l.old, 0, l.size, cache, site);
    else b.push(OP_RESIZE, API_REGION, l.size, l.new, l.old, 0, cache, site);
  }
  return { trace: b.finish(), skipped };
}

/**
 * Reads a VMTRACE file into a trace.
 *
 * @param path the file
 * @param options `strict`
 * @returns the trace and the count of lines skipped
 * @throws {UmemError} `corrupt-trace` in strict mode; `invalid-argument` for a path that is
 *   not a non-empty string
 * @throws {Error} what the file system says when the file cannot be read
 *
 * @example
 * ```ts
 * import { writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { readVmtrace } from "@umem/umem/profile";
 * const path = join(tmpdir(), "vm.trace");
 * writeFileSync(path, "0:1000:24:r:Vmbest:t.c,4:\nnot a line\n1000:0:24:r:Vmbest:t.c,6:\n");
 * const { trace, skipped } = readVmtrace(path);
 * console.log(trace.count, skipped); // 2 1
 * ```
 */
export function readVmtrace(path: string, options: VmtraceOptions = {}): VmtraceResult {
  checkPath("readVmtrace", path);
  return parseVmtrace(readFileSync(path, "utf8"), options, path);
}
