/**
 * The debug fast path: sized alloc and free on a heap whose only debugging is `guards`,
 * `contents` and sampled `audit` (no logs, no hooks), as libumem's `umem_cache_alloc_debug` and
 * `umem_cache_free_debug` do it, less the stack of an audited transaction.
 *
 * Theory. The checks of debug.ts, in the order libumem makes them, on words only and with no
 * call on the sound path: alloc looks at the top round of the slot's loaded magazine, checks
 * the tag's check word and redzone word and (with `contents`) that every word of the buffer
 * still holds 0xdeadbeef, then takes the round, writes 0xbaddcafe, the encoded size, the 0xbb
 * bytes after the requested size and the allocated check word. Free judges the buffer by its
 * tag alone, as libumem's `umem_cache_free_debug` does (buftag.ts: the check word names the
 * buffer and its cache, so a buffer of another cache, an interior pointer and a duplicate free
 * all fail it): the check word, the redzone word, the encoded size and the 0xbb bytes, then it
 * fills 0xdeadbeef and pushes the buffer. With sampled auditing (`audit=frames/rate`) both
 * serve the transactions that are not sampled: they count the worker's `WS_AUDIT_LEFT` down and
 * clear their half of the audit record, as debug.ts's `record` does; the sampled one (the count
 * at 1) goes to debug.ts, which captures its stack. So a sampled heap pays for a stack once in
 * `rate` transactions and otherwise little more than `guards` does.
 *
 * Four pairs, one per handle class of heap.ts: `debugAllocQuick`/`debugFreeQuick` test the
 * cache's flags and serve every mix (`DebuggingHeap`); `guardsAllocQuick`/`guardsFreeQuick`
 * (`GuardingHeap`), `contentsAllocQuick`/`contentsFreeQuick` (`PatterningHeap`) and
 * `sampledAllocQuick`/`sampledFreeQuick` (`SamplingHeap`) test none.
 * V8's inliner counts bytecodes (magazine.ts): a loop of pairs inlines the whole of the guards'
 * pair and the general alloc, but not the general free (375 bytecodes), which stays one call,
 * to a function that calls nothing on the sound path; of the patterns' pair it inlines both
 * entries, and the pattern check (167 bytecodes, with `maxverify`) stays a call. The round's pop
 * and push are written out here, not called from magazine.ts, for the same budget: each such
 * call re-reads the handle's views and brings its own bytecode. Functions here are constants
 * declared before their callers: V8 then checks none of their names, nor the layout's, for the
 * temporal dead zone (two bytecodes a use for a `function` declaration's). (The ways out name
 * the fast paths, declared after them, as the frame to capture a stack above: checked there,
 * off the sound path.)
 *
 * Anything unexpected (an empty or full magazine too) leaves the fast path before it has
 * changed a thing and goes to debug.ts, which checks again, writes libumem's report and throws,
 * or completes the call through the magazine layer: this file never reports, so the two cannot
 * disagree.
 *
 * Invariants: those of buftag.ts. The buffer a free gives to the magazine is whole: 0xdeadbeef
 * throughout (with `contents`), the free check word, the redzone word.
 *
 * Lock order: none on the fast path (the magazine layer's, when it falls to its slow path).
 *
 * @module
 */

import {
  BT_A_SLOT,
  BT_A_STACK,
  BT_A_TIME,
  BT_ALLOC_MAGIC,
  BT_BXSTAT,
  BT_F_STACK,
  BT_FREE_MAGIC,
  BT_REDZONE,
  BT_SIZE,
  DBG_ABORT,
  DBG_AUDIT,
  DBG_CHECKNULL,
  DBG_CONTENTS,
  DBG_FAILLOG,
  DBG_FIREWALL,
  DBG_GUARDS,
  DBG_VERBOSE,
  FREE_PATTERN,
  REDZONE_BYTE,
  REDZONE_PATTERN,
  UNINIT_PATTERN,
} from "./buftag.ts";
import { debugAlloc, debugFree } from "./debug.ts";
import { captureStackDeferred, markInnerEntry, withPreStack } from "./stack.ts";
import { HDR_AUDIT_SAMPLE, HDR_FIREWALL, HDR_MAXVERIFY, type HeapView } from "./image.ts";
import { CC_LOADED, CC_MAGSIZE, CC_NALLOC, CC_NFREE, CC_ROUNDS, MG_ROUNDS } from "./magazine.ts";
import { CA_DEBUG, CA_TAGOFF } from "./slab.ts";

// Module-local copies of the layout (V8 folds these, not imported ones; see magazine.ts),
// checked by checkDebugQuickLayout() when a heap handle is made. A `const enum`, as magazine.ts's
// `Fp`: the compiler writes each use out as a number, where a module's `const` is a context load
// in bytecode, and bytecode is what V8's inlining budget counts.
const enum Q {
  // Cache record fields as word indices (`CA_* >> 2`).
  CA_DEBUG_W = 49,
  CA_TAGOFF_W = 50,
  // The slot record's words (`CC_* >> 2`); a magazine's first round is its word 1 (`MG_ROUNDS`).
  CC_LOADED_W = 0,
  CC_ROUNDS_W = 1,
  CC_MAGSIZE_W = 4,
  CC_NALLOC_W = 6,
  CC_NFREE_W = 7,
  // The tag's words (`BT_* >> 2`) and the header's `maxverify` word.
  BT_REDZONE_W = 0,
  BT_SIZE_W = 1,
  BT_BXSTAT_W = 2,
  HDR_MAXVERIFY_W = 44,
  // The audit record's allocation half (`BT_A_* >> 2`); its free half is BT_F_HALF words on.
  BT_A_STACK_W = 4,
  BT_A_SLOT_W = 5,
  BT_A_TIME_W = 6,
  BT_F_HALF = 4,
  DBG_AUDIT = 1,
  DBG_CONTENTS = 2,
  REDZONE_BYTE = 0xbb,
}
// The words' patterns, each a module constant: written out as numbers, values this large take
// longer bytecodes (a 32-bit operand) than a constant's load does.
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
 * The debugging flags the fast path serves: guards, contents, verbose, audit (the transactions
 * a sample rate leaves out), the firewall (sizes at or above it never come here), abort and
 * `checknull` (they only say what a report or a failure does) and the fail log (the slab layer
 * writes it). Any other (the transaction and contents logs, `mtbf`) sends every call to
 * debug.ts.
 */
const QUICK_FLAGS = DBG_GUARDS | DBG_CONTENTS | DBG_VERBOSE | DBG_AUDIT | DBG_FIREWALL |
  DBG_ABORT | DBG_CHECKNULL | DBG_FAILLOG;

/**
 * True when debugging flags `flags` lay a tag after each buffer (`DBG_GUARDS`, which every
 * checking feature sets), all of them are the fast path's, and auditing, if on, samples
 * (`sample`, the rate, above 1): a heap created with them gets a handle whose `alloc` and `free`
 * come here first (heap.ts's `DebuggingHeap`). Flags that only say how to report (`verbose`,
 * no `noabort`) lay no tag, so they alone never come here.
 */
export function servesQuick(flags: number, sample: number): boolean {
  return (flags & DBG_GUARDS) !== 0 && (flags & ~QUICK_FLAGS) === 0 &&
    ((flags & DBG_AUDIT) === 0 || sample > 1);
}

/** Checks the module-local copies of the layout against the declarations. */
export function checkDebugQuickLayout(): void {
  if (
    Q.CA_DEBUG_W !== CA_DEBUG >> 2 || Q.CA_TAGOFF_W !== CA_TAGOFF >> 2 ||
    Q.BT_REDZONE_W !== BT_REDZONE >> 2 || Q.BT_SIZE_W !== BT_SIZE >> 2 ||
    Q.BT_A_STACK_W !== BT_A_STACK >> 2 || Q.BT_A_SLOT_W !== BT_A_SLOT >> 2 ||
    Q.BT_A_TIME_W !== BT_A_TIME >> 2 || Q.BT_F_HALF !== (BT_F_STACK - BT_A_STACK) >> 2 ||
    Q.DBG_AUDIT !== DBG_AUDIT ||
    Q.BT_BXSTAT_W !== BT_BXSTAT >> 2 || !patternsDoubled() ||
    Q.HDR_MAXVERIFY_W !== HDR_MAXVERIFY >> 2 || Q.DBG_CONTENTS !== DBG_CONTENTS ||
    Q.REDZONE_BYTE !== REDZONE_BYTE || Q_REDZONE !== REDZONE_PATTERN || Q_FREE !== FREE_PATTERN ||
    Q_UNINIT !== UNINIT_PATTERN || Q_ALLOC_MAGIC !== BT_ALLOC_MAGIC ||
    Q_FREE_MAGIC !== BT_FREE_MAGIC ||
    Q.CC_LOADED_W !== CC_LOADED >> 2 || Q.CC_ROUNDS_W !== CC_ROUNDS >> 2 ||
    Q.CC_MAGSIZE_W !== CC_MAGSIZE >> 2 || Q.CC_NALLOC_W !== CC_NALLOC >> 2 ||
    Q.CC_NFREE_W !== CC_NFREE >> 2 || MG_ROUNDS !== 4
  ) {
    throw new Error("core/debug_quick.ts: the fast path's copies of the layout are out of date");
  }
}

/**
 * The largest size the debug fast path serves on a heap with debugging flags `flags`: 0 when
 * it serves none (other flags, a `trust` heap), else up to 1 KiB (the 0xbb bytes after a
 * larger request may run to hundreds, laid and checked one at a time) and below the firewall.
 */
export function debugQuickMax(h: HeapView, flags: number): number {
  if (!servesQuick(flags, h.i32[HDR_AUDIT_SAMPLE >> 2]) || h.trust) return 0;
  const fw = h.i32[HDR_FIREWALL >> 2];
  return fw > 0 ? Math.min(1024, fw - 1) : 1024;
}

// The helpers first, then the fast paths: functions declared as constants before their callers
// read no TDZ check for them, nor for the layout constants above (a `function` declaration does,
// two bytecodes a use), and V8's inlining budget counts bytecodes (magazine.ts).

/** True when the bytes `[from, to)` all hold 0xbb. */
const redzoneBytesIntact = (u8: Uint8Array, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) if (u8[i] !== Q.REDZONE_BYTE) return false;
  return true;
};

/**
 * Checks that the buffer `[buf, tag)` still holds 0xdeadbeef (up to `UMEM_DEBUG`'s
 * `maxverify`) and fills it with 0xbaddcafe, eight bytes at a time (buffers and tags are
 * 8-aligned; both patterns doubled are ordinary float64 values, so they are stored and compared
 * bit for bit). False, with the buffer as it was found, when a byte was modified.
 */
const freedToUninit = (h: HeapView, buf: number, tag: number): boolean => {
  const f64 = h.f64, b = buf >> 3, t = tag >> 3, max = h.i32[Q.HDR_MAXVERIFY_W];
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
};

/** Fills the buffer `[buf, tag)` being freed with 0xdeadbeef, eight bytes at a time. */
const fillFreed = (h: HeapView, buf: number, tag: number): void => {
  const f64 = h.f64;
  for (let i = buf >> 3, t = tag >> 3; i < t; i++) f64[i] = Q_FREE2;
};

/** Writes 0xbb in the bytes `[from, to)` after a buffer's requested size. */
const layRedzoneBytes = (u8: Uint8Array, from: number, to: number): void => {
  for (let i = from; i < to; i++) u8[i] = Q.REDZONE_BYTE;
};

/**
 * Counts a transaction that is not sampled (the caller saw the slot's `WS_AUDIT_LEFT` above 1)
 * and clears its half of the audit record at tag word `t`: `half` is 0 for an alloc and
 * Q.BT_F_HALF for a free. As debug.ts's `record` does for one: no stack, this worker, time 0.
 */
const auditSkipped = (h: HeapView, t: number, half: number): void => {
  const i32 = h.i32;
  i32[h.auditLeft]--;
  i32[t + half + Q.BT_A_STACK_W] = 0;
  i32[t + half + Q.BT_A_SLOT_W] = h.slot;
  h.f64[(t + half + Q.BT_A_TIME_W) >> 1] = 0;
};

/**
 * Whether this worker's next transaction is audited with a stack that its entry point may
 * capture (`HeapView.auditEntry`): every one, or this one is the sample.
 */
export const auditsNext = (h: HeapView): boolean =>
  h.auditEntry === true && (h.auditSampled !== true || h.i32[h.auditLeft] <= 1);

/**
 * The alloc fast path's way out to debug.ts; `entry` is the fast path that took it. The sampled
 * transaction's stack is captured here, where the capture walks three of umem's frames rather
 * than five from the audit record's writer (about 0.15 µs a frame in Deno; heap.ts's
 * AuditingHeap captures at the entry itself).
 */
const quickAllocOut = (h: HeapView, cp: number, size: number, entry: unknown): number => {
  if (!auditsNext(h)) return debugAlloc(h, cp, size, entry);
  const id = captureStackDeferred(h, entry);
  return withPreStack(h, id, () => debugAlloc(h, cp, size, entry));
};

/** The free fast path's way out to debug.ts, as quickAllocOut's. */
const quickFreeOut = (h: HeapView, cp: number, buf: number, size: number, entry: unknown): void => {
  if (!auditsNext(h)) return debugFree(h, cp, buf, size, "umem_free", entry);
  const id = captureStackDeferred(h, entry);
  withPreStack(h, id, () => debugFree(h, cp, buf, size, "umem_free", entry));
};

/** True when the tag at word `t` of buffer `buf` of cache `cp` says free and intact. */
const freeTagSound = (i32: Int32Array, cp: number, buf: number, t: number): boolean =>
  i32[t + Q.BT_BXSTAT_W] === (buf ^ cp ^ Q_FREE_MAGIC) && i32[t + Q.BT_REDZONE_W] === Q_REDZONE;

/**
 * Takes round `buf`, the top of the `r` in slot record `cc`'s loaded magazine, as an allocation
 * of `size` bytes: the pop, as cacheAlloc's (a debugged cache never defers a free: its frees push
 * through magazinePush, so its CC_LAST is 0 and needs no look), then the encoded size, the 0xbb
 * bytes and the allocated check word. The state byte already says out of the slab
 * (`BUF_ALLOC_TAGGED`, slab.ts's `CF_TAGSTATE`): the check word says which.
 */
const takeTop = (
  h: HeapView,
  cp: number,
  cc: number,
  r: number,
  buf: number,
  tag: number,
  size: number,
): void => {
  const i32 = h.i32, t = tag >> 2;
  i32[cc + Q.CC_ROUNDS_W] = r - 1;
  i32[cc + Q.CC_NALLOC_W]++;
  i32[t + Q.BT_SIZE_W] = (251 * size + 1) | 0;
  if (buf + size < tag) layRedzoneBytes(h.u8, buf + size, tag);
  i32[t + Q.BT_BXSTAT_W] = buf ^ cp ^ Q_ALLOC_MAGIC;
};

/**
 * True when buffer `buf` of cache `cp`, tag at `tag`, may be freed with `size`, judged by its
 * tag alone as libumem's `umem_cache_free_debug` judges it: the check word (buftag.ts) says a
 * buffer of `cp`, allocated (not a duplicate free, not a buffer of another cache, not a pointer
 * into the middle of a buffer: its "tag" would be other words), then the redzone word, the
 * encoded size and the 0xbb bytes.
 */
const allocatedTagSound = (
  h: HeapView,
  cp: number,
  buf: number,
  tag: number,
  size: number,
): boolean => {
  const i32 = h.i32, t = tag >> 2;
  return i32[t + Q.BT_BXSTAT_W] === (buf ^ cp ^ Q_ALLOC_MAGIC) && (buf | 0) === buf &&
    i32[t + Q.BT_REDZONE_W] === Q_REDZONE && i32[t + Q.BT_SIZE_W] === ((251 * size + 1) | 0) &&
    (buf + size >= tag || redzoneBytesIntact(h.u8, buf + size, tag));
};

/**
 * Pushes freed buffer `buf` of cache `cp` on slot record `cc`'s loaded magazine, which holds `r`
 * rounds and has room, as cacheFreeChecked pushes (no deferred free to settle: see takeTop),
 * with the free check word.
 */
const pushFreed = (
  h: HeapView,
  cp: number,
  cc: number,
  r: number,
  buf: number,
  tag: number,
): void => {
  const i32 = h.i32;
  i32[(tag >> 2) + Q.BT_BXSTAT_W] = buf ^ cp ^ Q_FREE_MAGIC;
  i32[(i32[cc + Q.CC_LOADED_W] >> 2) + 1 + r] = buf;
  i32[cc + Q.CC_ROUNDS_W] = r + 1;
  i32[cc + Q.CC_NFREE_W]++;
};

/**
 * Allocates `size` bytes from sized cache `cp` with guards (and contents) checked and laid: the
 * top round of the slot's loaded magazine, checked before it is taken. Anything else (an empty
 * magazine, a tag or pattern not as it should be) goes to debug.ts's `debugAlloc`, which takes
 * the same round through the magazine layer, checks it again and reports.
 * @throws {HeapCorruptionError} when the buffer taken was modified after it was freed
 * @throws {OutOfMemoryError} when no memory can be had
 */
export const debugAllocQuick = (h: HeapView, cp: number, size: number): number => {
  // Word indices: of the cache record, of the slot's record in it, of the top round's tag.
  const i32 = h.i32, cw = cp >> 2, cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (r > 0) {
    const buf = i32[(i32[cc + Q.CC_LOADED_W] >> 2) + r], tag = buf + i32[cw + Q.CA_TAGOFF_W];
    const t = tag >> 2, dbg = i32[cw + Q.CA_DEBUG_W];
    if (
      freeTagSound(i32, cp, buf, t) && ((dbg & Q.DBG_AUDIT) === 0 || i32[h.auditLeft] > 1) &&
      ((dbg & Q.DBG_CONTENTS) === 0 || freedToUninit(h, buf, tag))
    ) {
      takeTop(h, cp, cc, r, buf, tag, size);
      if ((dbg & Q.DBG_AUDIT) !== 0) auditSkipped(h, t, 0);
      return buf;
    }
  }
  return quickAllocOut(h, cp, size, debugAllocQuick) | 0;
};

/**
 * Frees `buf` of `size` bytes to sized cache `cp` with every check of debug.ts, on the tag alone
 * (see allocatedTagSound), then the fill and the push on the slot's loaded magazine. Anything
 * else (a full magazine, any check failed) goes to debug.ts's `debugFree`, which finds the
 * buffer through the page map, checks again and reports, or frees through the magazine layer.
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export const debugFreeQuick = (h: HeapView, cp: number, buf: number, size: number): void => {
  // The caller (heap.ts's DebuggingHeap.free) saw buf below this handle's mapped size.
  const i32 = h.i32, cw = cp >> 2, tag = buf + i32[cw + Q.CA_TAGOFF_W];
  const cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W], dbg = i32[cw + Q.CA_DEBUG_W];
  if (
    allocatedTagSound(h, cp, buf, tag, size) && r < i32[cc + Q.CC_MAGSIZE_W] &&
    ((dbg & Q.DBG_AUDIT) === 0 || i32[h.auditLeft] > 1)
  ) {
    if ((dbg & Q.DBG_AUDIT) !== 0) auditSkipped(h, tag >> 2, Q.BT_F_HALF);
    if ((dbg & Q.DBG_CONTENTS) !== 0) fillFreed(h, buf, tag);
    return pushFreed(h, cp, cc, r, buf, tag);
  }
  quickFreeOut(h, cp, buf, size, debugFreeQuick);
};

/**
 * {@linkcode debugAllocQuick} for a heap whose only checks are the guards' (`guards`, with
 * `verbose` or `firewall` or not): no pattern, no audit record, so no test of the cache's flags
 * either. Fewer bytecodes: with its handle's `alloc` and {@linkcode guardsFreeQuick} with its
 * `free`, a loop of pairs inlines the whole of both (heap.ts's `GuardingHeap`).
 * @throws {HeapCorruptionError} when the buffer taken is not whole
 * @throws {OutOfMemoryError} when no memory can be had
 */
export const guardsAllocQuick = (h: HeapView, cp: number, size: number): number => {
  const i32 = h.i32, cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (r > 0) {
    const buf = i32[(i32[cc + Q.CC_LOADED_W] >> 2) + r];
    const tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
    if (freeTagSound(i32, cp, buf, tag >> 2)) {
      takeTop(h, cp, cc, r, buf, tag, size);
      return buf;
    }
  }
  return debugAlloc(h, cp, size, guardsAllocQuick) | 0;
};

/**
 * {@linkcode debugFreeQuick} for a heap whose only checks are the guards' (see
 * {@linkcode guardsAllocQuick}).
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export const guardsFreeQuick = (h: HeapView, cp: number, buf: number, size: number): void => {
  const i32 = h.i32, tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
  const cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (allocatedTagSound(h, cp, buf, tag, size) && r < i32[cc + Q.CC_MAGSIZE_W]) {
    return pushFreed(h, cp, cc, r, buf, tag);
  }
  debugFree(h, cp, buf, size, "umem_free", guardsFreeQuick);
};

/**
 * {@linkcode debugAllocQuick} for a heap whose checks are the guards' and the patterns'
 * (`contents`, with `guards`, `verbose` or `firewall` or not): no audit record, so no test of
 * the cache's flags (heap.ts's `PatterningHeap`).
 * @throws {HeapCorruptionError} when the buffer taken was modified after it was freed
 * @throws {OutOfMemoryError} when no memory can be had
 */
export const contentsAllocQuick = (h: HeapView, cp: number, size: number): number => {
  const i32 = h.i32, cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (r > 0) {
    const buf = i32[(i32[cc + Q.CC_LOADED_W] >> 2) + r];
    const tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
    if (freeTagSound(i32, cp, buf, tag >> 2) && freedToUninit(h, buf, tag)) {
      takeTop(h, cp, cc, r, buf, tag, size);
      return buf;
    }
  }
  return debugAlloc(h, cp, size, contentsAllocQuick) | 0;
};

/**
 * {@linkcode debugFreeQuick} for a heap whose checks are the guards' and the patterns' (see
 * {@linkcode contentsAllocQuick}).
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export const contentsFreeQuick = (h: HeapView, cp: number, buf: number, size: number): void => {
  const i32 = h.i32, tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
  const cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (allocatedTagSound(h, cp, buf, tag, size) && r < i32[cc + Q.CC_MAGSIZE_W]) {
    fillFreed(h, buf, tag);
    return pushFreed(h, cp, cc, r, buf, tag);
  }
  debugFree(h, cp, buf, size, "umem_free", contentsFreeQuick);
};

/**
 * {@linkcode debugAllocQuick} for a heap whose checks are the guards' and a sampled audit's
 * (`audit=frames/rate` without `contents`): no pattern, so no test of the cache's flags
 * (heap.ts's `SamplingHeap`). The sampled transaction, as every doubt, takes the way out.
 * @throws {HeapCorruptionError} when the buffer taken is not whole
 * @throws {OutOfMemoryError} when no memory can be had
 */
export const sampledAllocQuick = (h: HeapView, cp: number, size: number): number => {
  const i32 = h.i32, cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (r > 0 && i32[h.auditLeft] > 1) {
    const buf = i32[(i32[cc + Q.CC_LOADED_W] >> 2) + r];
    const tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
    if (freeTagSound(i32, cp, buf, tag >> 2)) {
      takeTop(h, cp, cc, r, buf, tag, size);
      auditSkipped(h, tag >> 2, 0);
      return buf;
    }
  }
  return quickAllocOut(h, cp, size, sampledAllocQuick) | 0;
};

/**
 * {@linkcode debugFreeQuick} for a heap whose checks are the guards' and a sampled audit's (see
 * {@linkcode sampledAllocQuick}).
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export const sampledFreeQuick = (h: HeapView, cp: number, buf: number, size: number): void => {
  const i32 = h.i32, tag = buf + i32[(cp >> 2) + Q.CA_TAGOFF_W];
  const cc = (cp + h.ccOff) >> 2, r = i32[cc + Q.CC_ROUNDS_W];
  if (
    allocatedTagSound(h, cp, buf, tag, size) && r < i32[cc + Q.CC_MAGSIZE_W] &&
    i32[h.auditLeft] > 1
  ) {
    auditSkipped(h, tag >> 2, Q.BT_F_HALF);
    return pushFreed(h, cp, cc, r, buf, tag);
  }
  quickFreeOut(h, cp, buf, size, sampledFreeQuick);
};

// Their fallbacks name them as the frame above which a stack is captured; alloc or free calls them.
// (The guards' and the patterns' own pairs never audit, so no stack is captured above them.)
markInnerEntry(debugAllocQuick);
markInnerEntry(debugFreeQuick);
markInnerEntry(sampledAllocQuick);
markInnerEntry(sampledFreeQuick);
