/**
 * Readers of the contents log and the fail log (`UMEM_LOGGING=contents`, `fail`): each ring's
 * records, newest first, as objects and as text. `inspect(heap).contentsLog()` and
 * `failLog()` return them (inspect.ts) and the `umem` command's `log contents` and `log fail`
 * print them, as mdb reads libumem's `umem_content_log` and `umem_failure_log`.
 *
 * Theory. A ring (log.ts) holds its last `LG_NREC` records; a reader walks back from the newest.
 * The image read may be a live heap, whose workers may be writing a record as it is read (a
 * record can read torn: logs are evidence, not state), or a snapshot that may be damaged: every
 * read is bounded by the image, and a record that does not fit it ends the walk.
 *
 * @module
 */

import { hex, isoTime } from "./errors.ts";
import { HDR_CTLOG, HDR_FAILLOG, type HeapView } from "./image.ts";
import {
  CT_BUF,
  CT_CACHE,
  CT_DATA,
  CT_LEN,
  CT_SLOT,
  CT_TIME,
  FL_CACHE,
  FL_SIZE,
  FL_SLOT,
  FL_STACK,
  FL_TIME,
  LG_NREC,
  LG_RECORDS,
  LG_RECSIZE,
  ringRecords,
  SLOT_ID_SHIFT,
} from "./log.ts";
import { CA_ID, CA_MAGIC, CA_MAGIC_VALUE, cacheName } from "./slab.ts";
import { readStack } from "./stack.ts";

/**
 * A buffer's first bytes, saved in the contents log when it was freed.
 *
 * @example
 * ```ts
 * import { type ContentsEntry, Heap, inspect } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, debug: "guards", logging: "contents" });
 * const p = heap.alloc(4);
 * heap.u8.set([1, 2, 3, 4], p);
 * heap.free(p, 4);
 * const [e]: ContentsEntry[] = inspect(heap).contentsLog();
 * console.log(e.buffer === p, e.bytes); // true [ 1, 2, 3, 4 ]
 * ```
 */
export interface ContentsEntry {
  /** The buffer. */
  buffer: number;
  /** Its cache's name. */
  cache: string;
  /** When it was freed, ms since the epoch. */
  time: number;
  /** The worker slot that freed it. */
  slot: number;
  /** Its first bytes as they were when it was freed (`UMEM_DEBUG=contents=bytes` of them). */
  bytes: number[];
}

/**
 * An allocation that failed, from the fail log.
 *
 * @example
 * ```ts
 * import { type FailEntry, Heap, inspect } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,noabort", logging: "fail" });
 * try {
 *   heap.alloc(64);
 * } catch {
 *   // mtbf=1: every allocation fails
 * }
 * const [f]: FailEntry[] = inspect(heap).failLog();
 * console.log(f.cache, f.size); // umem_alloc_64 64
 * ```
 */
export interface FailEntry {
  /**
   * The cache it was asked of ("" for a firewalled allocation; a cache destroyed since reads
   * `(a cache since destroyed, at 0x..)`).
   */
  cache: string;
  /** Bytes: the size asked for, or the cache's buffer size when its slab layer failed. */
  size: number;
  /** When, ms since the epoch. */
  time: number;
  /** The worker slot that asked. */
  slot: number;
  /** The stack, a frame a line ("" without a stack table: `UMEM_DEBUG=audit` or a log). */
  stack: string;
}

/** The slot in a contents or fail record's slot word. */
const SLOT_MASK = (1 << SLOT_ID_SHIFT) - 1;

/** The word at `a`, or 0 outside the image. */
function word(h: HeapView, a: number): number {
  return a >= 0 && a + 4 <= h.mapped ? h.i32[a >> 2] : 0;
}

/**
 * The name of the cache whose record is at `cp`, if it is still the cache whose id's low
 * `bits` bits are `id` (0: not recorded, the address is trusted); "" for 0 (the firewall).
 * Exported for inspect.ts's transaction log.
 *
 * @param h the heap or the snapshot's image
 * @param cp the cache record's address the log record names
 * @param id the cache's id the log record keeps, or 0
 * @param bits how many low bits of the id it keeps
 * @returns the name, or what became of the cache
 */
export function cacheNameAt(h: HeapView, cp: number, id: number, bits: number): string {
  if (cp === 0) return "";
  const mask = bits >= 32 ? -1 : (1 << bits) - 1;
  return word(h, cp + CA_MAGIC) === CA_MAGIC_VALUE &&
      (id === 0 || (word(h, cp + CA_ID) & mask) === (id & mask))
    ? cacheName(h, cp)
    : `(a cache since destroyed, at ${hex(cp)})`;
}

/** The cache a contents or fail record names by its address and its slot word. */
function recordCache(h: HeapView, cp: number, slotWord: number): string {
  return cacheNameAt(h, cp, slotWord >>> SLOT_ID_SHIFT, 32 - SLOT_ID_SHIFT);
}

/**
 * The records of the ring whose address is in header field `field`, newest first, as far as
 * they lie whole inside the image (inspect.ts reads the transaction log with it too).
 *
 * @param h the heap or the snapshot's image
 * @param field the header field (`HDR_TXLOG`, `HDR_CTLOG`, `HDR_FAILLOG`)
 * @returns the records' addresses
 */
export function ringRecordsIn(h: HeapView, field: number): number[] {
  const ring = word(h, field);
  if (ring <= 0 || ring + LG_RECORDS > h.mapped) return [];
  const size = word(h, ring + LG_RECSIZE), n = word(h, ring + LG_NREC);
  // A ring that says it holds more records than fit in the image is damaged: none are read
  // (ringRecords would list them all first).
  if (size <= 0 || n <= 0 || ring + LG_RECORDS + n * size > h.mapped) return [];
  return ringRecords(h, ring);
}

/**
 * The contents log, newest first (empty without `UMEM_LOGGING=contents`).
 *
 * @param h the heap or the snapshot's image
 * @returns the records
 */
export function readContentsLog(h: HeapView): ContentsEntry[] {
  const size = word(h, word(h, HDR_CTLOG) + LG_RECSIZE);
  return ringRecordsIn(h, HDR_CTLOG).map((r) => {
    const n = Math.max(0, Math.min(word(h, r + CT_LEN), size - CT_DATA));
    return {
      buffer: word(h, r + CT_BUF),
      cache: recordCache(h, word(h, r + CT_CACHE), word(h, r + CT_SLOT)),
      time: h.f64[(r + CT_TIME) >> 3],
      slot: word(h, r + CT_SLOT) & SLOT_MASK,
      bytes: Array.from(h.u8.subarray(r + CT_DATA, r + CT_DATA + n)),
    };
  });
}

/**
 * The fail log, newest first (empty without `UMEM_LOGGING=fail`).
 *
 * @param h the heap or the snapshot's image
 * @returns the records
 */
export function readFailLog(h: HeapView): FailEntry[] {
  return ringRecordsIn(h, HDR_FAILLOG).map((r) => ({
    cache: recordCache(h, word(h, r + FL_CACHE), word(h, r + FL_SLOT)),
    size: word(h, r + FL_SIZE),
    time: h.f64[(r + FL_TIME) >> 3],
    slot: word(h, r + FL_SLOT) & SLOT_MASK,
    stack: readStack(h, word(h, r + FL_STACK), r + FL_STACK),
  }));
}

/** Sixteen bytes a line, as `od -A x -t x1z` shows them: offset, hex, printable text. */
function hexdump(bytes: number[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const text = row.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    const hexes = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    lines.push(`\t${i.toString(16).padStart(4, "0")}: ${hexes.padEnd(47)}  |${text}|`);
  }
  return lines;
}

/**
 * The contents log as text: a line per freed buffer, then its saved bytes.
 *
 * @param entries records from {@linkcode readContentsLog}
 * @param limit at most this many records
 * @returns the text
 */
export function formatContentsLog(entries: ContentsEntry[], limit: number): string {
  const lines = [
    `contents log: ${entries.length} records (showing ${Math.min(limit, entries.length)})`,
  ];
  for (const e of entries.slice(0, limit)) {
    lines.push(
      `t=${isoTime(e.time)} thr=${e.slot} free ${
        hex(e.buffer)
      } cache=${e.cache} (${e.bytes.length} bytes saved)`,
    );
    lines.push(...hexdump(e.bytes));
  }
  return lines.join("\n");
}

/**
 * The fail log as text: a line per failed allocation, then its stack.
 *
 * @param entries records from {@linkcode readFailLog}
 * @param limit at most this many records
 * @param noStack what a record without a stack shows
 * @returns the text
 */
export function formatFailLog(entries: FailEntry[], limit: number, noStack: string): string {
  const lines = [
    `fail log: ${entries.length} records (showing ${Math.min(limit, entries.length)})`,
  ];
  for (const e of entries.slice(0, limit)) {
    lines.push(
      `t=${isoTime(e.time)} thr=${e.slot} size=${e.size} cache=${
        e.cache === "" ? "(firewall)" : e.cache
      }`,
    );
    lines.push(...(e.stack === "" ? [noStack] : e.stack.split("\n")).map((f) => `\t${f}`));
  }
  return lines.join("\n");
}
