/**
 * Buffer tags: what a debugged cache keeps after each buffer, as libumem's `umem_buftag_t`.
 *
 * Theory. In a cache with debugging on, each chunk is the buffer, rounded to 8 bytes, then the
 * tag: a redzone word (0xfeedface), the requested size encoded as libumem encodes it
 * (`251 * size + 1`), the check word `BT_BXSTAT`, the slab free-list link (so a free buffer's own
 * bytes can hold the 0xdeadbeef pattern whole), and with `audit` the last allocation's and the
 * last free's stack, worker and time. The bytes between the requested size and the tag hold
 * 0xbb, so even a one-byte overrun is caught at free.
 *
 * The check word is the buffer's address XOR its cache record's address XOR one constant while
 * allocated and another while free, as libumem's `bt_bxstat` is its bufctl's address XOR one of
 * two constants. It vouches for the tag on its own, so a free can be checked without the page
 * map (debug_quick.ts): a duplicate free finds the free word; a buffer freed to another cache
 * (even one with the same layout) and a pointer into the middle of a buffer (whose "tag" is other
 * words) find neither; a tag overwritten by a stray write shows. Both constants have the top bit
 * set and no address has, so no address stored in the heap is ever a check word.
 *
 * Invariants. While a buffer is free in its slab or its cache's magazines:
 * `BT_BXSTAT = freeCheck(cp, buf)`, the redzone word is intact, and with `contents` every byte of
 * the buffer holds the freed pattern. While allocated: `BT_BXSTAT = allocCheck(cp, buf)`, the size
 * decodes, the redzone is intact.
 *
 * @module
 */

import type { HeapView } from "./image.ts";

/** Redzone word. */
export const BT_REDZONE = 0;
/** Requested size, encoded as `251 * size + 1`. */
export const BT_SIZE = 4;
/** Check word: buffer ^ `BT_ALLOC_MAGIC` or ^ `BT_FREE_MAGIC`. */
export const BT_BXSTAT = 8;
/** Slab free-list link of a free buffer. */
export const BT_LINK = 12;
/** Audit: stack of the last allocation. */
export const BT_A_STACK = 16;
/** Audit: worker slot of the last allocation. */
export const BT_A_SLOT = 20;
/** Audit: time of the last allocation (float64). */
export const BT_A_TIME = 24;
/** Audit: stack of the last free. */
export const BT_F_STACK = 32;
/** Audit: worker slot of the last free. */
export const BT_F_SLOT = 36;
/** Audit: time of the last free (float64). */
export const BT_F_TIME = 40;
/** Bytes of a tag without audit. */
export const BT_BASIC_SIZE = 16;
/** Bytes of a tag with audit. */
export const BT_AUDIT_SIZE = 48;

/** libumem's redzone word. */
export const REDZONE_PATTERN = 0xfeedface | 0;
/** The byte written after the requested size. */
export const REDZONE_BYTE = 0xbb;
/** The pattern of a freed buffer. */
export const FREE_PATTERN = 0xdeadbeef | 0;
/** The pattern of a new, unconstructed buffer. */
export const UNINIT_PATTERN = 0xbaddcafe | 0;
/** Check-word constant of an allocated buffer (see {@linkcode allocCheck}). */
export const BT_ALLOC_MAGIC = 0xa110c8ed | 0;
/** Check-word constant of a free buffer (see {@linkcode freeCheck}). */
export const BT_FREE_MAGIC = 0xf4eef4ee | 0;

/** The check word of buffer `buf` of cache `cp` while it is allocated. */
export function allocCheck(cp: number, buf: number): number {
  return buf ^ cp ^ BT_ALLOC_MAGIC;
}

/** The check word of buffer `buf` of cache `cp` while it is free. */
export function freeCheck(cp: number, buf: number): number {
  return buf ^ cp ^ BT_FREE_MAGIC;
}

/** `UMEM_DEBUG=audit`. */
export const DBG_AUDIT = 1;
/** `UMEM_DEBUG=contents`. */
export const DBG_CONTENTS = 2;
/** `UMEM_DEBUG=guards` (set by every debugging feature: they need the tag). */
export const DBG_GUARDS = 4;
/** `UMEM_DEBUG=verbose`. */
export const DBG_VERBOSE = 8;
/** `UMEM_DEBUG=firewall=`. */
export const DBG_FIREWALL = 16;
/** `UMEM_LOGGING=transaction`. */
export const DBG_TXLOG = 32;
/** `UMEM_LOGGING=contents`. */
export const DBG_CTLOG = 64;
/** `UMEM_LOGGING=fail`. */
export const DBG_FAILLOG = 128;
/**
 * A report aborts the process, as libumem's does: set with any debugging unless `UMEM_DEBUG`
 * says `noabort` or `nosignal` (then the report is thrown). Never set by logging alone.
 */
export const DBG_ABORT = 256;
/**
 * `UMEM_DEBUG=mtbf=n`: about one allocation from a debugged cache in `n` fails, as libumem
 * injects failures (the rate in `HDR_MTBF`).
 */
export const DBG_MTBF = 512;
/**
 * `UMEM_DEBUG=checknull`: an allocation that fails for want of memory is reported ("umem: out of
 * heap space") and, unless `noabort`, aborts the process, as libumem's `UMF_CHECKNULL`.
 */
export const DBG_CHECKNULL = 1024;
/**
 * The flags whose work the debug layer does on every alloc and free: any of them makes a heap
 * debug (`HeapView.debugging`) and lays a tag after every buffer of its caches. The others say
 * only how a report or a failure is told (`verbose`, abort, `checknull`) or log what the slow
 * paths see anyway (`UMEM_LOGGING=fail`), so a heap with no more than those keeps the fast paths.
 */
export const DBG_LAYER = DBG_AUDIT | DBG_CONTENTS | DBG_GUARDS | DBG_FIREWALL | DBG_TXLOG |
  DBG_CTLOG | DBG_MTBF;

/** Encodes a requested size as libumem does. */
export function encodeSize(size: number): number {
  return (251 * size + 1) | 0;
}

/** Decodes a size; -1 when the word is not an encoded size. */
export function decodeSize(word: number): number {
  // A multiplication and a check, not a division: this runs on every checked free.
  const x = (word >>> 0) - 1;
  const size = Math.round(x * (1 / 251));
  return size * 251 === x ? size : -1;
}

/** Fills `[from, to)` (4-aligned) with a 32-bit pattern. */
export function fillPattern(h: HeapView, from: number, to: number, pattern: number): void {
  h.i32.fill(pattern, from >> 2, to >> 2);
}

/**
 * The first offset in `[from, to)` whose word differs from `pattern`, or -1.
 */
export function findPatternBreak(h: HeapView, from: number, to: number, pattern: number): number {
  const i32 = h.i32;
  for (let i = from >> 2, e = to >> 2; i < e; i++) {
    if (i32[i] !== pattern) return (i << 2) - from;
  }
  return -1;
}

/**
 * Lays the tag of a fresh buffer in a new slab of cache `cp`: free, intact, filled if
 * `contents`.
 */
export function initFreeBuffer(
  h: HeapView,
  cp: number,
  buf: number,
  tagOff: number,
  flags: number,
): void {
  const tag = buf + tagOff;
  if ((flags & DBG_CONTENTS) !== 0) fillPattern(h, buf, tag, FREE_PATTERN);
  h.i32[(tag + BT_REDZONE) >> 2] = REDZONE_PATTERN;
  h.i32[(tag + BT_SIZE) >> 2] = 0;
  h.i32[(tag + BT_BXSTAT) >> 2] = freeCheck(cp, buf);
  if ((flags & DBG_AUDIT) !== 0) h.i32.fill(0, (tag + BT_A_STACK) >> 2, (tag + BT_AUDIT_SIZE) >> 2);
}
