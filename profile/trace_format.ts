/**
 * The `.umt` file: an allocation trace on disk, and its reader that refuses damage.
 *
 * Format (every integer little-endian; offsets in layout.ts):
 *
 * ```
 * header   48 bytes  UH_MAGIC "UMT1" | UH_VERSION 1 | UH_COUNT records | UH_NSITES | UH_NCACHES
 *                    | UH_TABLES bytes of tables | UH_START f64 ms since the epoch
 *                    | UH_WORKERS_LO/HI bitmap of worker slots | UH_CHECK FNV-1a of the file
 *                    (every byte but the checksum's own four)
 *                    | UH_RESERVED 0
 * sites    UH_NSITES entries (the unknown site "" is entry 0 and is not stored):
 *                    u32 byte length, UTF-8 bytes, zero padding to 4
 * caches   UH_NCACHES entries: u32 buffer size, u32 byte length, UTF-8 name, padding to 4
 *          (sites and caches together take UH_TABLES bytes, padded to 8)
 * records  UH_COUNT × TR_WORDS u32 words (TR_OP, TR_SIZE, TR_ADDR, TR_OLDADDR, TR_OLDSIZE,
 *                    TR_CACHE, TR_SITE, TR_REF), then UH_COUNT f64 times (µs since the start)
 * ```
 *
 * Theory. The file is the in-memory trace written out as is: the record words and the times
 * are two arrays copied in bulk, so a 700,000-record trace saves and loads in milliseconds.
 * The reader checks the magic, the version, that the length is exactly what the header
 * announces (a truncated file is refused with the byte counts), the checksum, and every
 * record (operation, site and cache indexes, `TR_REF` pointing back to an alloc or resize), so
 * that no later step reads garbage.
 *
 * Invariants. `decodeTrace(encodeTrace(t))` equals `t` record for record. Lock order: none.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { UmemError } from "../core/mod.ts";
import {
  NO_REF,
  OP_ALLOC,
  OP_RESIZE,
  OPF_MASK,
  TC_BUFSIZE,
  TR_CACHE,
  TR_OP,
  TR_REF,
  TR_SITE,
  TR_WORDS,
  TS_LEN,
  UH_CHECK,
  UH_COUNT,
  UH_MAGIC,
  UH_NCACHES,
  UH_NSITES,
  UH_RESERVED,
  UH_SIZE,
  UH_START,
  UH_TABLES,
  UH_VERSION,
  UH_WORKERS_HI,
  UH_WORKERS_LO,
  UMT_MAGIC,
  UMT_VERSION,
} from "./layout.ts";
import { checkTrace, Trace, type TraceCache } from "./trace.ts";
import { checkPath } from "./arguments.ts";

const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const pad = (n: number, to: number) => Math.ceil(n / to) * to;

/** FNV-1a, 32 bits, over a file's bytes but the four of the checksum itself. */
function checksum(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    if (i < UH_CHECK || i >= UH_CHECK + 4) h = Math.imul(h ^ bytes[i], 0x01000193);
  }
  return h >>> 0;
}

/** A `corrupt-trace` error naming the function and the source. */
function corrupt(fn: string, source: string, what: string): UmemError {
  return new UmemError("corrupt-trace", `${fn}: ${source}: ${what}`);
}

/**
 * Encodes a trace as the bytes of a `.umt` file.
 *
 * @param trace the trace
 * @returns the file's bytes
 * @throws {UmemError} `invalid-argument` on a big-endian machine (the format is little-endian)
 *   or for something that is not a trace
 *
 * @example
 * ```ts
 * import { decodeTrace, encodeTrace, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 24);
 * const bytes = encodeTrace(b.finish());
 * console.log(decodeTrace(bytes).at(0).size); // 24
 * ```
 */
export function encodeTrace(trace: Trace): Uint8Array {
  checkTrace("encodeTrace", trace);
  if (!LITTLE) throw new UmemError("invalid-argument", "encodeTrace: needs a little-endian host");
  const enc = new TextEncoder();
  const sites = trace.sites.slice(1).map((s) => enc.encode(s));
  const caches = trace.caches.map((c) => ({ bufsize: c.bufsize, name: enc.encode(c.name) }));
  const tables = pad(
    sites.reduce((n, s) => n + 4 + pad(s.length, 4), 0) +
      caches.reduce((n, c) => n + 8 + pad(c.name.length, 4), 0),
    8,
  );
  const n = trace.count;
  const total = UH_SIZE + tables + n * TR_WORDS * 4 + n * 8;
  const out = new Uint8Array(total), dv = new DataView(out.buffer);
  let at = UH_SIZE;
  for (const s of sites) {
    dv.setUint32(at + TS_LEN, s.length, true);
    out.set(s, at + 4);
    at += 4 + pad(s.length, 4);
  }
  for (const c of caches) {
    dv.setUint32(at + TC_BUFSIZE, c.bufsize, true);
    dv.setUint32(at + 4 + TS_LEN, c.name.length, true);
    out.set(c.name, at + 8);
    at += 8 + pad(c.name.length, 4);
  }
  at = UH_SIZE + tables;
  out.set(new Uint8Array(trace.words.buffer, trace.words.byteOffset, n * TR_WORDS * 4), at);
  at += n * TR_WORDS * 4;
  out.set(new Uint8Array(trace.times.buffer, trace.times.byteOffset, n * 8), at);
  let lo = 0, hi = 0;
  for (const w of trace.workers()) {
    if (w < 32) lo |= 1 << w;
    else hi |= 1 << (w - 32);
  }
  dv.setUint32(UH_MAGIC, UMT_MAGIC, true);
  dv.setUint32(UH_VERSION, UMT_VERSION, true);
  dv.setUint32(UH_COUNT, n, true);
  dv.setUint32(UH_NSITES, sites.length, true);
  dv.setUint32(UH_NCACHES, caches.length, true);
  dv.setUint32(UH_TABLES, tables, true);
  dv.setFloat64(UH_START, trace.start, true);
  dv.setUint32(UH_WORKERS_LO, lo >>> 0, true);
  dv.setUint32(UH_WORKERS_HI, hi >>> 0, true);
  dv.setUint32(UH_RESERVED, 0, true);
  dv.setUint32(UH_CHECK, checksum(out), true);
  return out;
}

/**
 * Decodes the bytes of a `.umt` file, checking everything first.
 *
 * @param bytes the file's bytes
 * @param source what to call the bytes in an error (a path)
 * @returns the trace
 * @throws {UmemError} `corrupt-trace` for a file that is not a trace, of another version,
 *   truncated or too long, whose checksum fails, or with a record that does not hold together;
 *   `invalid-argument` when `bytes` is not a Uint8Array
 *
 * @example
 * ```ts
 * import { decodeTrace, encodeTrace, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 24);
 * const bytes = encodeTrace(b.finish());
 * try {
 *   decodeTrace(bytes.subarray(0, bytes.length - 3));
 * } catch (e) {
 *   console.log((e as Error).message.includes("truncated")); // true
 * }
 * ```
 */
export function decodeTrace(bytes: Uint8Array, source = "trace"): Trace {
  const fn = "loadTrace";
  if (!LITTLE) throw new UmemError("invalid-argument", `${fn}: needs a little-endian host`);
  if (!((bytes as unknown) instanceof Uint8Array)) {
    throw new UmemError("invalid-argument", `decodeTrace: expected a Uint8Array`);
  }
  if (bytes.length < UH_SIZE) {
    throw corrupt(
      fn,
      source,
      `truncated: ${bytes.length} bytes, less than the ${UH_SIZE}-byte header of a .umt file`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(UH_MAGIC, true);
  if (magic !== UMT_MAGIC) {
    throw corrupt(
      fn,
      source,
      `not a .umt trace (magic 0x${magic.toString(16)}, expected 0x${UMT_MAGIC.toString(16)})`,
    );
  }
  const version = dv.getUint32(UH_VERSION, true);
  if (version !== UMT_VERSION) {
    throw corrupt(fn, source, `format version ${version} (this reader knows ${UMT_VERSION})`);
  }
  const n = dv.getUint32(UH_COUNT, true), nsites = dv.getUint32(UH_NSITES, true);
  const ncaches = dv.getUint32(UH_NCACHES, true), tables = dv.getUint32(UH_TABLES, true);
  const want = UH_SIZE + tables + n * TR_WORDS * 4 + n * 8;
  if (tables % 8 !== 0) throw corrupt(fn, source, `table length ${tables} is not a multiple of 8`);
  if (bytes.length < want) {
    throw corrupt(
      fn,
      source,
      `truncated: the header announces ${n} records and ${tables} bytes of tables (${want} bytes), the file has ${bytes.length}`,
    );
  }
  if (bytes.length > want) {
    throw corrupt(fn, source, `${bytes.length - want} bytes past the ${want} the header announces`);
  }
  const check = dv.getUint32(UH_CHECK, true), got = checksum(bytes);
  if (check !== got) {
    throw corrupt(
      fn,
      source,
      `checksum 0x${got.toString(16)} does not match the header's 0x${check.toString(16)}`,
    );
  }
  const dec = new TextDecoder("utf-8", { fatal: true });
  const end = UH_SIZE + tables;
  let at = UH_SIZE;
  const text = (what: string): string => {
    if (at + 4 > end) throw corrupt(fn, source, `${what} runs past the tables`);
    const len = dv.getUint32(at + TS_LEN, true);
    if (at + 4 + len > end) throw corrupt(fn, source, `${what} runs past the tables`);
    let s: string;
    try {
      s = dec.decode(bytes.subarray(at + 4, at + 4 + len));
    } catch {
      throw corrupt(fn, source, `${what} is not UTF-8`);
    }
    at += 4 + pad(len, 4);
    return s;
  };
  const sites = [""];
  for (let i = 0; i < nsites; i++) sites.push(text(`site ${i + 1}`));
  const caches: TraceCache[] = [];
  for (let i = 0; i < ncaches; i++) {
    if (at + 4 > end) throw corrupt(fn, source, `cache ${i} runs past the tables`);
    const bufsize = dv.getUint32(at + TC_BUFSIZE, true);
    at += 4;
    caches.push({ bufsize, name: text(`cache ${i}`) });
  }
  const words = new Uint32Array(n * TR_WORDS);
  new Uint8Array(words.buffer).set(bytes.subarray(end, end + n * TR_WORDS * 4));
  const times = new Float64Array(n);
  new Uint8Array(times.buffer).set(bytes.subarray(end + n * TR_WORDS * 4, want));
  // Records whose block a later free or resize took already: a second taker is no trace's.
  const taken = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const b = i * TR_WORDS, op = words[b + TR_OP] & OPF_MASK, ref = words[b + TR_REF];
    if (op < OP_ALLOC || op > OP_RESIZE) {
      throw corrupt(
        fn,
        source,
        `record ${i}: operation ${op} (expected 1 alloc, 2 free, 3 resize)`,
      );
    }
    if (words[b + TR_SITE] > nsites) {
      throw corrupt(fn, source, `record ${i}: site ${words[b + TR_SITE]} past the ${nsites} sites`);
    }
    if (words[b + TR_CACHE] > ncaches) {
      throw corrupt(
        fn,
        source,
        `record ${i}: cache ${words[b + TR_CACHE]} past the ${ncaches} caches`,
      );
    }
    if (op !== OP_ALLOC && ref !== NO_REF) {
      const rop = ref < i ? words[ref * TR_WORDS + TR_OP] & OPF_MASK : 0;
      if (rop !== OP_ALLOC && rop !== OP_RESIZE) {
        throw corrupt(fn, source, `record ${i}: its block's record ${ref} is not an earlier alloc`);
      }
      if (taken[ref] !== 0) {
        throw corrupt(
          fn,
          source,
          `record ${i}: its block's record ${ref} was freed or resized by an earlier record`,
        );
      }
      taken[ref] = 1;
    }
    if (!Number.isFinite(times[i])) throw corrupt(fn, source, `record ${i}: time is not finite`);
  }
  const start = dv.getFloat64(UH_START, true);
  if (!Number.isFinite(start)) throw corrupt(fn, source, `start time ${start} is not finite`);
  return new Trace(words, times, sites, caches, start);
}

/**
 * Writes a trace to a `.umt` file.
 *
 * @param trace the trace
 * @param path the file
 * @returns the bytes written
 * @throws {UmemError} `invalid-argument` for something that is not a trace, or a path that is
 *   not a non-empty string
 * @throws {Error} what the file system says when the file cannot be written
 *
 * @example
 * ```ts
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { saveTrace, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 24);
 * console.log(saveTrace(b.finish(), join(tmpdir(), "one.umt"))); // 88
 * ```
 */
export function saveTrace(trace: Trace, path: string): number {
  checkPath("saveTrace", path);
  const bytes = encodeTrace(trace);
  writeFileSync(path, bytes);
  return bytes.length;
}

/**
 * Reads a `.umt` file.
 *
 * @param path the file
 * @returns the trace
 * @throws {UmemError} `corrupt-trace` as {@linkcode decodeTrace}; `invalid-argument` for a
 *   path that is not a non-empty string
 * @throws {Error} what the file system says when the file cannot be read
 *
 * @example
 * ```ts
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { loadTrace, saveTrace, TraceBuilder } from "@umem/umem/profile";
 * const b = new TraceBuilder();
 * b.alloc(0x100, 24);
 * b.free(0x100, 24);
 * const path = join(tmpdir(), "two.umt");
 * saveTrace(b.finish(), path);
 * console.log(loadTrace(path).at(1).ref); // 0
 * ```
 */
export function loadTrace(path: string): Trace {
  checkPath("loadTrace", path);
  const bytes = readFileSync(path);
  return decodeTrace(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}
