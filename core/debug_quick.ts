/**
 * The debug fast path: sized alloc and free on a heap whose only debugging is `guards` and
 * `contents` (no audit, no logs, no hooks), as libumem's `umem_cache_alloc_debug` and
 * `umem_cache_free_debug` do it for a cache without audit.
 *
 * Theory. The checks of debug.ts, in the order libumem makes them, on words only and with no
 * call on the sound path: alloc takes a round from the magazine (magazine.ts), checks the tag's
 * check word and redzone word and (with `contents`) that every word of the buffer still holds
 * 0xdeadbeef, then writes 0xbaddcafe, the encoded size, the 0xbb bytes after the requested size
 * and the allocated check word. Free finds the buffer's state byte through the page map as the
 * checked fast path does (so a buffer of another cache, an interior pointer and a duplicate
 * free are told apart), compares the check word, the redzone word, the encoded size and the
 * 0xbb bytes, then fills 0xdeadbeef and pushes the buffer on the magazine.
 *
 * Anything unexpected leaves the fast path before it has changed a thing and goes to
 * debug.ts, which checks again, writes libumem's report and throws, or completes the call: this
 * file never reports, so the two cannot disagree.
 *
 * Invariants: those of buftag.ts. The buffer a free gives to the magazine is whole: 0xdeadbeef
 * throughout (with `contents`), the free check word, the redzone word.
 *
 * Lock order: none on the fast path (the magazine layer's, when it falls to its slow path).
 *
 * @module
 */

import {
  BT_ALLOC_MAGIC,
  BT_BXSTAT,
  BT_FREE_MAGIC,
  BT_REDZONE,
  BT_SIZE,
  DBG_CONTENTS,
  DBG_FIREWALL,
  DBG_GUARDS,
  DBG_VERBOSE,
  FREE_PATTERN,
  REDZONE_BYTE,
  REDZONE_PATTERN,
  UNINIT_PATTERN,
} from "./buftag.ts";
import { debugFree, debugHandOut } from "./debug.ts";
import { HDR_FIREWALL, HDR_MAXVERIFY, type HeapView } from "./image.ts";
import { cacheAlloc, magazinePush, stateAddress } from "./magazine.ts";
import { BUF_ALLOC, BUF_CACHED, CA_DEBUG, CA_TAGOFF } from "./slab.ts";

// Module-local copies of the layout (V8 folds these, not imported ones; see magazine.ts),
// checked by checkDebugQuickLayout() when a heap handle is made.
const Q_CA_DEBUG = 196, Q_CA_TAGOFF = 200, Q_BUF_ALLOC = 1, Q_BUF_CACHED = 2;
const Q_BT_REDZONE_W = 0, Q_BT_SIZE_W = 1, Q_BT_BXSTAT_W = 2, Q_HDR_MAXVERIFY_W = 44;
const Q_DBG_CONTENTS = 2, Q_REDZONE_BYTE = 0xbb;
const Q_REDZONE = 0xfeedface | 0, Q_FREE = 0xdeadbeef | 0, Q_UNINIT = 0xbaddcafe | 0;
const Q_ALLOC_MAGIC = 0xa110c8ed | 0, Q_FREE_MAGIC = 0xf4eef4ee | 0;
// The free and uninitialised patterns twice over, as the float64 with those bits.
const Q_FREE2 = -1.1885959257070704e+148, Q_UNINIT2 = -3.8506484546989115e-25;

/** True when Q_FREE2 and Q_UNINIT2 are the patterns doubled (and no NaN, so compared exactly). */
function patternsDoubled(): boolean {
  const w = new Int32Array(4), f = new Float64Array(w.buffer);
  w.set([FREE_PATTERN, FREE_PATTERN, UNINIT_PATTERN, UNINIT_PATTERN]);
  return f[0] === Q_FREE2 && f[1] === Q_UNINIT2;
}

/**
 * The debugging flags the fast path serves: guards, contents, verbose, and the firewall (sizes
 * at or above it never come here). Any other (audit, the logs) sends every call to debug.ts.
 */
const QUICK_FLAGS = DBG_GUARDS | DBG_CONTENTS | DBG_VERBOSE | DBG_FIREWALL;

/** Checks the module-local copies of the layout against the declarations. */
export function checkDebugQuickLayout(): void {
  if (
    Q_CA_DEBUG !== CA_DEBUG ||
    Q_CA_TAGOFF !== CA_TAGOFF || Q_BUF_ALLOC !== BUF_ALLOC || Q_BUF_CACHED !== BUF_CACHED ||
    Q_BT_REDZONE_W !== BT_REDZONE >> 2 || Q_BT_SIZE_W !== BT_SIZE >> 2 ||
    Q_BT_BXSTAT_W !== BT_BXSTAT >> 2 || !patternsDoubled() ||
    Q_HDR_MAXVERIFY_W !== HDR_MAXVERIFY >> 2 || Q_DBG_CONTENTS !== DBG_CONTENTS ||
    Q_REDZONE_BYTE !== REDZONE_BYTE || Q_REDZONE !== REDZONE_PATTERN || Q_FREE !== FREE_PATTERN ||
    Q_UNINIT !== UNINIT_PATTERN || Q_ALLOC_MAGIC !== BT_ALLOC_MAGIC ||
    Q_FREE_MAGIC !== BT_FREE_MAGIC
  ) {
    throw new Error("core/debug_quick.ts: the fast path's copies of the layout are out of date");
  }
}

/**
 * The largest size the debug fast path serves on a heap with debugging flags `flags`: 0 when
 * it serves none (other flags, a `trust` heap), else up to 1 KiB (the first size table) and
 * below the firewall.
 */
export function debugQuickMax(h: HeapView, flags: number): number {
  if (flags === 0 || (flags & ~QUICK_FLAGS) !== 0 || h.trust) return 0;
  const fw = h.i32[HDR_FIREWALL >> 2];
  return fw > 0 ? Math.min(1024, fw - 1) : 1024;
}

/**
 * Allocates `size` bytes from sized cache `cp` with guards (and contents) checked and laid;
 * on any doubt debug.ts takes the buffer (and reports).
 * @throws {HeapCorruptionError} when the buffer taken was modified after it was freed
 * @throws {OutOfMemoryError} when no memory can be had
 */
export function debugAllocQuick(h: HeapView, cp: number, size: number): number {
  const buf = cacheAlloc(h, cp);
  const i32 = h.i32;
  const tag = buf + i32[(cp + Q_CA_TAGOFF) >> 2], t = tag >> 2;
  if (i32[t + Q_BT_BXSTAT_W] !== (buf ^ Q_FREE_MAGIC) || i32[t + Q_BT_REDZONE_W] !== Q_REDZONE) {
    return debugHandOut(h, cp, buf, size, debugAllocQuick);
  }
  if ((i32[(cp + Q_CA_DEBUG) >> 2] & Q_DBG_CONTENTS) !== 0 && !freedToUninit(h, buf, tag)) {
    return debugHandOut(h, cp, buf, size, debugAllocQuick);
  }
  i32[t + Q_BT_SIZE_W] = (251 * size + 1) | 0;
  if (buf + size < tag) h.u8.fill(Q_REDZONE_BYTE, buf + size, tag);
  i32[t + Q_BT_BXSTAT_W] = buf ^ Q_ALLOC_MAGIC;
  return buf;
}

/**
 * Frees `buf` of `size` bytes to sized cache `cp` with every check of debug.ts; on anything
 * unexpected debug.ts takes the call (and reports).
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export function debugFreeQuick(h: HeapView, cp: number, buf: number, size: number): void {
  const i32 = h.i32, at = stateAddress(h, cp, buf);
  const u8 = h.u8, tag = buf + i32[(cp + Q_CA_TAGOFF) >> 2], t = tag >> 2;
  if (
    at === 0 || u8[at] !== Q_BUF_ALLOC || i32[t + Q_BT_BXSTAT_W] !== (buf ^ Q_ALLOC_MAGIC) ||
    i32[t + Q_BT_REDZONE_W] !== Q_REDZONE || i32[t + Q_BT_SIZE_W] !== ((251 * size + 1) | 0) ||
    (buf + size < tag && !redzoneBytesIntact(u8, buf + size, tag))
  ) return debugFree(h, cp, buf, size, "umem_free", debugFreeQuick);
  if ((i32[(cp + Q_CA_DEBUG) >> 2] & Q_DBG_CONTENTS) !== 0) fillFreed(h, buf, tag);
  i32[t + Q_BT_BXSTAT_W] = buf ^ Q_FREE_MAGIC;
  u8[at] = Q_BUF_CACHED;
  magazinePush(h, cp, buf);
}

/** True when the bytes `[from, to)` all hold 0xbb. */
function redzoneBytesIntact(u8: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (u8[i] !== Q_REDZONE_BYTE) return false;
  return true;
}

/**
 * Checks that the buffer `[buf, tag)` still holds 0xdeadbeef (up to `UMEM_DEBUG`'s
 * `maxverify`) and fills it with 0xbaddcafe, eight bytes at a time (buffers and tags are
 * 8-aligned; both patterns doubled are ordinary float64 values, so they are stored and compared
 * bit for bit). False, with the buffer as it was found, when a byte was modified.
 */
function freedToUninit(h: HeapView, buf: number, tag: number): boolean {
  const f64 = h.f64, b = buf >> 3, t = tag >> 3, max = h.i32[Q_HDR_MAXVERIFY_W];
  const v = max > 0 && b + ((max + 7) >> 3) < t ? b + ((max + 7) >> 3) : t;
  for (let i = b; i < v; i++) {
    if (f64[i] !== Q_FREE2) {
      for (let j = b; j < i; j++) f64[j] = Q_FREE2;
      return false;
    }
    f64[i] = Q_UNINIT2;
  }
  for (let i = v; i < t; i++) f64[i] = Q_UNINIT2;
  return true;
}

/** Fills the buffer `[buf, tag)` being freed with 0xdeadbeef, eight bytes at a time. */
function fillFreed(h: HeapView, buf: number, tag: number): void {
  const f64 = h.f64;
  for (let i = buf >> 3, t = tag >> 3; i < t; i++) f64[i] = Q_FREE2;
}
