/**
 * The magazine layer and the depot (Bonwick and Adams 2001, section 3), with a worker slot in
 * the role of a CPU.
 *
 * Theory. A magazine is an array of rounds: constructed buffers. Each worker slot has, in each
 * cache, a *loaded* and a *previous* magazine (`CC_*` record). Alloc pops a round from the
 * loaded magazine; free pushes one: plain loads and stores on the slot's own words, no lock and
 * no Atomics, since no other worker ever touches them. When the loaded magazine is empty (alloc)
 * or full (free) and the previous one can serve, the two swap. Only when both are exhausted
 * does the worker go to the cache's *depot*, under the depot lock, to trade its exhausted
 * magazine for a full or an empty one. When the depot has none, the slab layer serves the alloc
 * (and the buffer is constructed), and a free allocates a new empty magazine.
 *
 * Magazine sizes adapt as in libumem: each contended acquisition of the depot lock is counted,
 * and a cache whose depot was contended more than `MAX_CONTENTION` times in one interval moves
 * to the next larger magazine type. The depot is purged (its rounds destroyed) and each slot
 * drops its old-size magazines on its next visit to the depot.
 *
 * Invariants.
 * - The previous magazine is always full or empty; `CC_ROUNDS > 0` implies a loaded magazine.
 * - `CC_MAGSIZE` is the loaded magazine's capacity, 0 when none is loaded, so the free fast
 *   path needs no other test.
 * - The depot holds only magazines of the cache's current type; full ones hold `CA_MAGROUNDS`.
 * - Buffers in magazines are constructed and in state `BUF_CACHED`, but for one per slot: the
 *   deferred free below (`CC_LAST > 0`: the top round, state `BUF_ALLOC_DEFER`).
 * - `CC_LAST < 0`: the popped round below, `~CC_LAST` the state address of the round just past
 *   the loaded magazine's top, a live buffer in state `BUF_ALLOC_DEFER`.
 * - A debugged cache never defers: its `CC_LAST` is 0.
 *
 * Deferred state. A checked free marks the buffer cached and an alloc marks it allocated again,
 * in the slab's state bytes, which neighbouring buffers share: two workers whose hot buffers sit
 * in one slab would write one cache line on every call. So when a slot frees the buffer it
 * popped last (an alloc+free pair), the state byte stays "allocated" (flagged `BUF_ALLOC_DEFER`
 * the first time) and the slot's own record remembers the state byte's address (`CC_LAST`):
 * the deferred free. Nothing is written in the buffer, so a constructed object keeps every byte.
 *
 * The popped round. The next alloc pops that very round and turns the record into its
 * complement: the round just past the top is a live buffer, allocated from this cache by this
 * slot, whose state address the record holds. A free of it (the pair's next free) needs no look
 * at the page map or the state byte: `buf` is the round past the top, and the record turns back.
 * A pair then writes the slot's own line only, and reads nothing else. Any other alloc or push
 * clears the record (the round is then an allocated buffer like any other, still flagged).
 *
 * Every other free of a flagged buffer goes to `cacheFreeSlow`, which asks every slot: one that
 * holds it deferred makes it a duplicate free; one that holds it popped loses it (an atomic
 * compare-and-swap, as that slot's worker may be writing the word), so that slot's own free of
 * it meets the state byte and is told it is a duplicate. Whatever else moves the loaded magazine
 * (the slow paths, a flush, a push from the debug layer) settles the record first; the collector
 * settles them all with the world stopped; other readers of state bytes (verify, inspect, the
 * page map, the snapshot map) see through the flag with `bufferStateAt`.
 *
 * V8's inlining budget. An alloc+free loop compiles into one function only while TurboFan's
 * cumulative budget lasts (920 bytecodes; a candidate is weighed at 1.2 times its size, plus
 * whatever its own optimized code already inlined, and candidates are taken in order of call
 * frequency per bytecode). In a real program `heap.alloc` and `heap.free` are optimized on their
 * own first, so each counts with its callees. So the fast paths are two functions that call
 * nothing inlinable: `cacheAlloc` (a round, and its state byte) and `cacheFreeChecked` (the
 * popped round's shortest way; else the checks, the deferral, the push), each with one call for
 * everything else, `cacheAllocSlow` and `cacheFreeSlow`, both past V8's size limit for inlining
 * (460 bytecodes), so they never weigh on a caller however often the program takes them.
 * Measured on V8 15 (`--trace-turbo-inlining`, with `heap.alloc` and `heap.free` optimized first
 * through `%OptimizeFunctionOnNextCall`): `heap.alloc` 91 + `cacheAlloc` 225, `heap.free` 100 +
 * `cacheFreeChecked` 377. Counted as the model above has it, `heap.free` with its callee, the
 * pair takes 316 + 1.2 × 477 = 888 of 920, 32 to spare. The popped round cost no bytecode: it
 * took the place of the stamp the deferred free used to write in the buffer and wipe (a first
 * try kept the stamp and a word of its own for the popped round, 423 bytecodes in one function,
 * or 165 + 357 in two: either way a loop of requests lost its inlined free and ran 9–13% slower).
 * `Cache.alloc` (inlined as a small function) and `Cache.free` 74 (one test each sends all but the
 * common case to a method of its own): 299 used when `cacheFreeChecked` is weighed, 676 in all.
 * So a bytecode added to these four functions comes out of that margin: measure before and after
 * (20 more in `cacheFreeChecked`, a first word saved for the deferral, once put it out of a pair
 * loop, whose free became a call). A heap created with `trust` has a handle class of its own
 * (`TrustingHeap` in heap.ts), so that its free never enters `heap.free`'s optimized body. The
 * free paths do not sync (a free past this worker's views fails the checks, and `cacheFreeSlow`
 * remaps and tries again; the slow paths sync).
 *
 * Lock order: depot lock, then slab locks (this cache's and the magazine caches').
 *
 * @module
 */

import { OutOfMemoryError, UmemError } from "./errors.ts";
import {
  HDR_CACHE_LIST,
  HDR_CACHE_LOCK,
  HDR_FLAGS,
  HDR_MAG_CACHES,
  HDR_MAX_CONTENTION,
  HDR_NSLOTS,
  HDR_REAP_INTERVAL,
  HDR_SAFEPOINT,
  HDR_SIZE,
  type HeapView,
  HF_NOFAIL,
  PAGE_SHIFT,
} from "./image.ts";
import { lock, lockHolder, unlock } from "./lock.ts";
import { withPreStack } from "./stack.ts";
import { checkNull, logFailure } from "./debug.ts";
import { BT_BXSTAT, freeCheck } from "./buftag.ts";
import {
  badFree,
  BUF_ALLOC,
  BUF_ALLOC_DEFER,
  BUF_ALLOC_TAGGED,
  BUF_CACHED,
  CA_BUFSIZE,
  CA_CONT_BASE,
  CA_CONT_TIME,
  CA_CONTENTION,
  CA_CPU,
  CA_DEPOT_EMPTY,
  CA_DEPOT_FULL,
  CA_DEPOT_LOCK,
  CA_DEPOT_NEMPTY,
  CA_DEPOT_NFULL,
  CA_FAILS,
  CA_FLAGS,
  CA_ID,
  CA_MAGROUNDS,
  CA_MAGTYPE,
  CA_NEXT,
  CA_RESIZES,
  CA_SHIFT,
  CA_TAGOFF,
  cacheName,
  CF_NOMAGAZINE,
  construct,
  destructAndFree,
  SB_BASE,
  SB_CACHE,
  SB_STATE,
  slabAllocRaw,
  slabFreeRaw,
  slabReap,
  throwDtorError,
} from "./slab.ts";

// ---- Magazine ----
/** Next magazine in a depot list. */
export const MG_NEXT = 0;
/** First round. */
export const MG_ROUNDS = 4;
/** Rounds of each magazine type; a magazine of type t is `(rounds + 1) * 4` bytes. */
export const MAG_ROUNDS: readonly number[] = [1, 3, 7, 15, 31, 63, 127, 255];
/** The magazine type a new cache starts with. */
export const MAG_INITIAL_TYPE = 3;

// ---- Per-worker cache (one per slot in each cache record) ----
/** Loaded magazine. */
export const CC_LOADED = 0;
/** Rounds in the loaded magazine. */
export const CC_ROUNDS = 4;
/** Previous magazine. */
export const CC_PLOADED = 8;
/** Rounds in the previous magazine. */
export const CC_PROUNDS = 12;
/** Capacity of the loaded magazine; 0 when none is loaded. */
export const CC_MAGSIZE = 16;
/** Magazine type of this slot's magazines. */
export const CC_MAGTYPE = 20;
/** Allocations by this slot since the last fold (int32, wraps). */
export const CC_NALLOC = 24;
/** Frees by this slot since the last fold (int32, wraps). */
export const CC_NFREE = 28;
/** Allocations by this slot folded in from `CC_NALLOC` (float64). */
export const CC_TALLOC = 32;
/** Frees by this slot folded in from `CC_NFREE` (float64). */
export const CC_TFREE = 40;
/**
 * The deferred free: the state-byte address of the loaded magazine's top round while that
 * buffer's state byte still says allocated (`BUF_ALLOC_DEFER`) although it is cached (see
 * "Deferred state" above); or the popped round, the complement of the state-byte address of the
 * round just past the top, a live buffer (see "The popped round"); 0 when there is neither.
 */
export const CC_LAST = 48;
/** Size of a per-worker cache: one cache line, so that slots do not share lines. */
export const CC_SIZE = 64;
/** Contended depot acquisitions per interval that make a cache grow its magazines. */
export const MAX_CONTENTION = 3;
/** The contention interval, ms. */
export const CONTENTION_INTERVAL = 1000;

/** The largest magazine type for buffers of `bufsize` bytes (libumem's table). */
export function maxMagType(bufsize: number): number {
  if (bufsize <= 256) return 7;
  if (bufsize <= 1024) return 6;
  if (bufsize <= 2048) return 5;
  if (bufsize <= 4096) return 4;
  if (bufsize <= 8192) return 3;
  if (bufsize <= 16384) return 2;
  if (bufsize <= 65536) return 1;
  return 0;
}

// V8 does not fold a constant imported from another module into optimized code: each use
// stays a load from the module's cell, which costs the fast path about a fifth of its speed.
// So the fast path keeps local copies of the slab layout it reads, checked when a handle is
// made. They are a `const enum`, which the compiler (Deno's and Bun's alike) writes out as
// numbers at each use: a module's `const` is read in bytecode with a check that it is
// initialised (four bytes a use), and bytecode is what V8's inlining budget counts (see the top).
const enum Fp {
  PAGE_SHIFT = 12,
  SB_STATE = 40,
  SB_BASE = 4,
  SB_CACHE = 0,
  CA_SHIFT = 128,
  BUF_ALLOC = 1,
  BUF_CACHED = 2,
  BUF_ALLOC_DEFER = 0x41,
  // The slot record's words, as word indices from the record's first word (`CC_* >> 2`).
  CC_LOADED_W = 0,
  CC_ROUNDS_W = 1,
  CC_MAGSIZE_W = 4,
  CC_NALLOC_W = 6,
  CC_NFREE_W = 7,
  CC_LAST_W = 12,
}
/**
 * Checks the fast path's local copies of the layout against the declarations. Called when a
 * heap handle is made, not at module load: the core's modules import each other, and an
 * imported constant may not be initialised yet while this module loads.
 */
export function checkFastPathLayout(): void {
  if (
    Fp.PAGE_SHIFT !== PAGE_SHIFT || Fp.SB_STATE !== SB_STATE || Fp.SB_BASE !== SB_BASE ||
    Fp.SB_CACHE !== SB_CACHE || Fp.CA_SHIFT !== CA_SHIFT || Fp.BUF_ALLOC !== BUF_ALLOC ||
    Fp.BUF_CACHED !== BUF_CACHED || Fp.BUF_ALLOC_DEFER !== BUF_ALLOC_DEFER ||
    Fp.CC_LOADED_W !== CC_LOADED >> 2 || Fp.CC_ROUNDS_W !== CC_ROUNDS >> 2 ||
    Fp.CC_MAGSIZE_W !== CC_MAGSIZE >> 2 || Fp.CC_NALLOC_W !== CC_NALLOC >> 2 ||
    Fp.CC_NFREE_W !== CC_NFREE >> 2 || Fp.CC_LAST_W !== CC_LAST >> 2 ||
    MG_ROUNDS !== 4
  ) {
    throw new Error("core: the fast path's copies of the layout are out of date");
  }
}

/**
 * Allocates a constructed buffer from cache `cp`: the fast path. A round from the slot's loaded
 * magazine; when it is the slot's deferred free, it becomes the slot's popped round and nothing
 * else is written, else (unless the heap trusts) its state byte is set to allocated. An empty
 * magazine is {@linkcode cacheAllocSlow}'s.
 * @throws {OutOfMemoryError} when no buffer can be had
 */
export function cacheAlloc(h: HeapView, cp: number): number {
  const i32 = h.i32;
  const cc = (cp + h.ccOff) >> 2;
  const r = i32[cc + Fp.CC_ROUNDS_W];
  if (r > 0) {
    // Round r - 1 is the word after the magazine's MG_NEXT word plus r - 1 (MG_ROUNDS is 4).
    const buf = i32[((i32[cc + Fp.CC_LOADED_W] >> 2) + r) | 0];
    i32[cc + Fp.CC_ROUNDS_W] = r - 1;
    i32[cc + Fp.CC_NALLOC_W]++;
    const last = i32[cc + Fp.CC_LAST_W];
    if (last > 0) {
      // The slot's deferred free: its state byte still says allocated. It becomes the popped
      // round (see the top), whose free is cacheFreeChecked's shortest way.
      i32[cc + Fp.CC_LAST_W] = ~last;
    } else if (h.trust !== true) { // (one compare, not a truthiness test: heap.ts's alloc)
      // Any other round: its state byte says cached; set it to allocated. A popped round
      // before it is now below the top: an allocated buffer like any other (still flagged).
      i32[cc + Fp.CC_LAST_W] = 0;
      const sb = i32[(h.pagemap >> 2) + (buf >>> Fp.PAGE_SHIFT)];
      h.u8[
        sb + Fp.SB_STATE + ((buf - i32[(sb + Fp.SB_BASE) >> 2]) >> i32[(cp + Fp.CA_SHIFT) >> 2])
      ] = Fp.BUF_ALLOC;
    }
    return buf;
  }
  // An int32, as the round above: the two meet in one value, which V8 then keeps untagged
  // (without the `| 0` the caller's loop tags the address, checks and untags it, every pair).
  return cacheAllocSlow(h, cp) | 0;
}

/**
 * Frees buffer `buf` to cache `cp`: the fast path. Unless the heap trusts its callers, checks
 * that `buf` is a live buffer of this cache, then pushes it on the slot's loaded magazine.
 * @throws {UmemError} `bad-free`, `duplicate-free`, `wrong-cache` or `wrong-size`
 */
export function cacheFree(h: HeapView, cp: number, buf: number, fn: string): void {
  if (h.trust === true) trustFree(h, cp, buf);
  else cacheFreeChecked(h, cp, buf, fn);
}

/**
 * {@linkcode cacheFree} on a heap that checks its frees (not `trust`): the fast path that
 * `heap.free` and `Cache.free` call directly. The free of the slot's popped round takes the
 * shortest way (see the top); any other checks that `buf` is a live buffer of this cache (page
 * map, slab, index, state byte), then pushes it, deferred when it is the round popped last.
 *
 * The body is kept small, because V8 inlines a call only while the caller's cumulative budget
 * of inlined bytecode lasts, and `heap.alloc` + `heap.free` with everything they call must fit
 * it: the push is written out here (not a call to {@linkcode magazinePush}), every failed check
 * reaches the one call of `cacheFreeSlow` (which says which check failed), and every other case
 * is there too.
 * @throws {UmemError} `bad-free`, `duplicate-free`, `wrong-cache` or `wrong-size`
 */
export function cacheFreeChecked(h: HeapView, cp: number, buf: number, fn: string): void {
  const i32 = h.i32, cc = (cp + h.ccOff) >> 2, r = i32[cc + Fp.CC_ROUNDS_W];
  // The word of the round just past the loaded magazine's top, where a push goes.
  const top = ((i32[cc + Fp.CC_LOADED_W] >> 2) + 1 + r) | 0, last = i32[cc + Fp.CC_LAST_W];
  if (last < 0 && i32[top] === buf) {
    // The popped round: buf is that live buffer, allocated by this slot and freed since by no
    // one. Deferred again: its state byte still says allocated (flagged), the round is in place.
    i32[cc + Fp.CC_LAST_W] = ~last;
  } else {
    // The state byte's address when buf is the start of a buffer in a slab of this cache, else
    // 0. Interior granules hold BUF_INTERIOR, so an aligned interior pointer fails below too.
    let at = 0;
    // (A fraction fails the index test, which only a whole offset passes, so `off` is not
    // truncated with `| 0`; a negative address finds no slab of this cache, or a negative
    // offset.)
    if (buf < h.mapped) {
      const sb = i32[(h.pagemap >> 2) + (buf >>> Fp.PAGE_SHIFT)];
      if (sb !== 0 && i32[(sb + Fp.SB_CACHE) >> 2] === cp) {
        const shift = i32[(cp + Fp.CA_SHIFT) >> 2], off = buf - i32[(sb + Fp.SB_BASE) >> 2];
        const index = off >> shift;
        if (off >= 0 && index << shift === off) at = (sb + Fp.SB_STATE + index) | 0;
      }
    }
    const u8 = h.u8;
    // Allocated (a flagged buffer, deferred or popped by some slot, is cacheFreeSlow's), no
    // deferred free of this slot's to settle first, and room in the loaded magazine. Anything
    // else (a bad free, a full magazine) is cacheFreeSlow's.
    if (at === 0 || last > 0 || r >= i32[cc + Fp.CC_MAGSIZE_W] || u8[at] !== Fp.BUF_ALLOC) {
      return cacheFreeSlow(h, cp, buf, fn);
    }
    if (last === 0 && i32[top] === buf) {
      // Defer (see the top): buf is the round this slot popped last, so its line is this
      // worker's; its state byte stays "allocated" (flagged) while it is the top round.
      u8[at] = Fp.BUF_ALLOC_DEFER;
      i32[cc + Fp.CC_LAST_W] = at;
    } else {
      // The push covers the popped round's place, if one was set: it is an allocated buffer.
      u8[at] = Fp.BUF_CACHED;
      i32[top] = buf;
      i32[cc + Fp.CC_LAST_W] = 0;
    }
  }
  i32[cc + Fp.CC_ROUNDS_W] = r + 1;
  i32[cc + Fp.CC_NFREE_W]++;
}

/** The free of a heap created with `trust`: no checks, the push or the slow path. */
export function trustFree(h: HeapView, cp: number, buf: number): void {
  // umem_free(NULL); the caller checked nothing else. No sync(): only the slot's own record
  // and magazine are written, and the slow path syncs before it brings in another magazine.
  if (buf === 0) return;
  const i32 = h.i32, cc = (cp + h.ccOff) >> 2, r = i32[cc + Fp.CC_ROUNDS_W];
  if (r >= i32[cc + Fp.CC_MAGSIZE_W]) return cacheFreeSlow(h, cp, buf, "");
  i32[(i32[cc + Fp.CC_LOADED_W] >> 2) + 1 + r] = buf;
  i32[cc + Fp.CC_ROUNDS_W] = r + 1;
  i32[cc + Fp.CC_NFREE_W]++;
}

/**
 * The address of the state byte of `buf` when `buf` is the start of a buffer in a slab of cache
 * `cp`, else 0 (interior granules hold `BUF_INTERIOR`, so an aligned interior pointer is seen
 * for what it is by the state check that follows). A function of its own, so that V8 weighs it
 * apart from the free that calls it when it inlines them.
 */
export function stateAddress(h: HeapView, cp: number, buf: number): number {
  const i32 = h.i32,
    sb = buf > 0 && buf < h.mapped && (buf | 0) === buf
      ? i32[(h.pagemap >> 2) + (buf >>> Fp.PAGE_SHIFT)]
      : 0;
  if (sb === 0 || i32[(sb + Fp.SB_CACHE) >> 2] !== cp) return 0;
  const shift = i32[(cp + Fp.CA_SHIFT) >> 2], off = buf - i32[(sb + Fp.SB_BASE) >> 2];
  return off >= 0 && (off >> shift) << shift === off ? sb + Fp.SB_STATE + (off >> shift) : 0;
}

/**
 * The slot that deferred the buffer whose state byte is at `at` in cache `cp`, or -1: such a
 * buffer is cached although its state byte says allocated.
 */
export function deferredSlot(h: HeapView, cp: number, at: number): number {
  const n = w(h, HDR_NSLOTS);
  for (let s = 0; s < n; s++) if (w(h, cp + CA_CPU + s * CC_SIZE + CC_LAST) === at) return s;
  return -1;
}

/**
 * Takes the buffer whose state byte is at `at` in cache `cp` out of any slot's `CC_LAST` as its
 * popped round: it is being freed some other way (from another worker, say), after which that
 * slot's own free of it must meet the state byte and be told it is a duplicate. An atomic
 * compare-and-swap, as the slot's own worker may be writing the word: it either still holds the
 * round and is cleared, or has moved on already.
 */
function dropPopped(h: HeapView, cp: number, at: number): void {
  const n = w(h, HDR_NSLOTS);
  for (let s = 0; s < n; s++) {
    // A plain read first: a locked compare-and-swap takes the line from its worker even when
    // the word does not match, and every slot's record is its worker's hottest line.
    const word = (cp + CA_CPU + s * CC_SIZE + CC_LAST) >> 2;
    if (h.i32[word] === ~at) Atomics.compareExchange(h.i32, word, ~at, 0);
  }
}

/**
 * The state of buffer `buf` of cache `cp`, whose state byte is at `at`: a deferral seen through
 * (the slots say), and a debugged size class's tagged state (the tag's check word says).
 */
export function bufferStateAt(h: HeapView, cp: number, at: number, buf: number): number {
  const st = h.u8[at];
  if (st === BUF_ALLOC_DEFER) return deferredSlot(h, cp, at) >= 0 ? BUF_CACHED : BUF_ALLOC;
  if (st !== BUF_ALLOC_TAGGED) return st;
  const bx = h.i32[(buf + w(h, cp + CA_TAGOFF) + BT_BXSTAT) >> 2];
  return bx === freeCheck(cp, buf) ? BUF_CACHED : BUF_ALLOC;
}

/**
 * Settles slot record `cc`'s `CC_LAST`: a deferred free's state byte then says cached, and a
 * popped round is forgotten (it stays an allocated buffer, flagged). Every path that changes the
 * loaded magazine other than the fast paths calls it first; only the slot's own worker may, or
 * anyone while that worker is stopped or dead.
 */
function settleDeferred(h: HeapView, cc: number): void {
  const last = w(h, cc + CC_LAST);
  if (last === 0) return;
  if (last > 0) h.u8[last] = BUF_CACHED; // (a popped round stays allocated, and flagged)
  setw(h, cc + CC_LAST, 0);
}

/**
 * Settles every slot's deferred free in every cache: the collector calls it with the world
 * stopped, so that a state byte says exactly what its buffer is.
 */
export function settleAllDeferred(h: HeapView): void {
  const n = w(h, HDR_NSLOTS);
  for (let cp = w(h, HDR_CACHE_LIST); cp !== 0; cp = w(h, cp + CA_NEXT)) {
    for (let s = 0; s < n; s++) settleDeferred(h, cp + CA_CPU + s * CC_SIZE);
  }
}

/**
 * Pushes a buffer already checked (and marked cached) onto this slot's loaded magazine, or
 * takes the slow path. The debug layer, which has checked more, frees through it; the same
 * push is written out in {@linkcode cacheFree}.
 */
export function magazinePush(h: HeapView, cp: number, buf: number): void {
  settleDeferred(h, cp + h.ccOff);
  const i32 = h.i32;
  const cc = (cp + h.ccOff) >> 2;
  const r = i32[cc + Fp.CC_ROUNDS_W];
  if (r < i32[cc + Fp.CC_MAGSIZE_W]) {
    i32[(i32[cc + Fp.CC_LOADED_W] >> 2) + 1 + r] = buf;
    i32[cc + Fp.CC_ROUNDS_W] = r + 1;
    i32[cc + Fp.CC_NFREE_W]++;
    return;
  }
  cacheFreeSlow(h, cp, buf, "");
}

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

function swapMagazines(h: HeapView, cc: number): void {
  const l = w(h, cc + CC_LOADED), r = w(h, cc + CC_ROUNDS);
  setw(h, cc + CC_LOADED, w(h, cc + CC_PLOADED));
  setw(h, cc + CC_ROUNDS, w(h, cc + CC_PROUNDS));
  setw(h, cc + CC_PLOADED, l);
  setw(h, cc + CC_PROUNDS, r);
}

/** Takes the depot lock, counting contention and growing the magazines when it is high. */
function depotLock(h: HeapView, cp: number): void {
  if (lock(h, cp + CA_DEPOT_LOCK)) noteContention(h, cp);
}

/**
 * Counts one contended acquisition of cache `cp`'s depot lock (which the caller holds). More
 * than `MAX_CONTENTION` (`UMEM_OPTIONS=max_contention`) in one `CONTENTION_INTERVAL`
 * (`reap_interval`, as libumem's update interval) moves the cache to the next larger
 * magazine type, up to the largest its buffer size allows: the depot is purged, and each slot
 * drops its old magazines on its next visit to the depot. At most one move an interval, however
 * much contention: libumem's `umem_cache_update` looks once an interval.
 */
export function noteContention(h: HeapView, cp: number): void {
  const c = w(h, cp + CA_CONTENTION) + 1;
  setw(h, cp + CA_CONTENTION, c);
  const now = Date.now(), interval = w(h, HDR_REAP_INTERVAL) * 1000 || CONTENTION_INTERVAL;
  const start = h.f64[(cp + CA_CONT_TIME) >> 3];
  if (now < start) {
    // The interval after a resize has not begun: its count starts when it does.
    setw(h, cp + CA_CONT_BASE, c);
  } else if (now - start > interval) {
    h.f64[(cp + CA_CONT_TIME) >> 3] = now;
    setw(h, cp + CA_CONT_BASE, c);
  } else if (c - w(h, cp + CA_CONT_BASE) > maxContention(w(h, HDR_MAX_CONTENTION))) {
    const t = w(h, cp + CA_MAGTYPE);
    if (t < maxMagType(w(h, cp + CA_BUFSIZE))) {
      depotPurge(h, cp);
      setw(h, cp + CA_MAGTYPE, t + 1);
      setw(h, cp + CA_MAGROUNDS, MAG_ROUNDS[t + 1]);
      h.f64[(cp + CA_RESIZES) >> 3]++;
    }
    // One resize an interval, as libumem's update makes at most one: the next interval begins
    // when this one would have ended.
    h.f64[(cp + CA_CONT_TIME) >> 3] = now + interval;
    setw(h, cp + CA_CONT_BASE, c);
  }
}

/**
 * The contention that grows magazines, from the header's `HDR_MAX_CONTENTION` word `v`: 0 when
 * `UMEM_OPTIONS=max_contention` was not given (the default), -1 when it was 0, else itself.
 */
export function maxContention(v: number): number {
  return v === 0 ? MAX_CONTENTION : v < 0 ? 0 : v;
}

function magCache(h: HeapView, type: number): number {
  return w(h, HDR_MAG_CACHES + type * 4);
}

/** Destroys every round in the depot and frees its magazines (depot lock held). */
export function depotPurge(h: HeapView, cp: number): void {
  const type = w(h, cp + CA_MAGTYPE), rounds = MAG_ROUNDS[type], mc = magCache(h, type);
  for (let m = w(h, cp + CA_DEPOT_FULL); m !== 0;) {
    const next = w(h, m + MG_NEXT);
    for (let i = 0; i < rounds; i++) destructAndFree(h, cp, w(h, m + MG_ROUNDS + i * 4));
    slabFreeRaw(h, mc, m);
    m = next;
  }
  for (let m = w(h, cp + CA_DEPOT_EMPTY); m !== 0;) {
    const next = w(h, m + MG_NEXT);
    slabFreeRaw(h, mc, m);
    m = next;
  }
  setw(h, cp + CA_DEPOT_FULL, 0);
  setw(h, cp + CA_DEPOT_EMPTY, 0);
  setw(h, cp + CA_DEPOT_NFULL, 0);
  setw(h, cp + CA_DEPOT_NEMPTY, 0);
}

/**
 * Empties slot `slot`'s magazines in cache `cp`: destroys the rounds, frees them to the slabs,
 * frees the magazines, and sizes the slot for the cache's current magazine type. Only the
 * slot's own worker may call it, or anyone once that worker is dead.
 */
export function cpuFlush(h: HeapView, cp: number, slot: number): void {
  const cc = cp + CA_CPU + slot * CC_SIZE;
  settleDeferred(h, cc);
  const mc = magCache(h, w(h, cc + CC_MAGTYPE));
  for (const [mf, rf] of [[CC_LOADED, CC_ROUNDS], [CC_PLOADED, CC_PROUNDS]]) {
    const m = w(h, cc + mf), n = w(h, cc + rf);
    if (m === 0) continue;
    setw(h, cc + mf, 0);
    setw(h, cc + rf, 0);
    for (let i = 0; i < n; i++) destructAndFree(h, cp, w(h, m + MG_ROUNDS + i * 4));
    slabFreeRaw(h, mc, m);
  }
  setw(h, cc + CC_MAGSIZE, 0);
  setw(h, cc + CC_MAGTYPE, w(h, cp + CA_MAGTYPE));
}

/** Folds the slot's int32 counters into its float64 totals (on every slow path). */
function foldCounts(h: HeapView, cc: number): void {
  h.f64[(cc + CC_TALLOC) >> 3] += h.i32[(cc + CC_NALLOC) >> 2] >>> 0;
  h.f64[(cc + CC_TFREE) >> 3] += h.i32[(cc + CC_NFREE) >> 2] >>> 0;
  h.i32[(cc + CC_NALLOC) >> 2] = 0;
  h.i32[(cc + CC_NFREE) >> 2] = 0;
}

/**
 * Takes the depot lock for slot record `cc`. If the cache's magazines grew since the slot last
 * came, the slot's old magazines are emptied instead, the lock is let go, and this returns
 * false: the caller starts over.
 */
function depotEnter(h: HeapView, cp: number, cc: number): boolean {
  depotLock(h, cp);
  if (w(h, cc + CC_MAGTYPE) === w(h, cp + CA_MAGTYPE)) return true;
  unlock(h, cp + CA_DEPOT_LOCK);
  cpuFlush(h, cp, h.slot);
  return false;
}

/**
 * Every alloc that the fast path does not finish: the loaded magazine is empty. Past V8's size
 * limit for inlining, so that it never weighs on the fast path's callers (see
 * {@linkcode cacheFreeSlow}).
 * @throws {OutOfMemoryError} when no buffer can be had
 */
function cacheAllocSlow(h: HeapView, cp: number): number {
  h.sync(); // a magazine from the depot may lie past this worker's views
  // A collector asks every mutator to stop (gc/): this slow path is a safe point.
  if (h.i32[HDR_SAFEPOINT >> 2] !== 0 && h.safepoint !== undefined) h.safepoint();
  const cc = cp + h.ccOff;
  foldCounts(h, cc);
  settleDeferred(h, cc);
  if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) !== 0) return slabAllocConstructed(h, cp);
  for (;;) {
    if (w(h, cc + CC_ROUNDS) > 0) {
      h.sync(); // the alloc fast path does not: a depot magazine's rounds may lie past the views
      return cacheAlloc(h, cp);
    }
    if (w(h, cc + CC_PROUNDS) > 0) {
      swapMagazines(h, cc);
      continue;
    }
    if (!depotEnter(h, cp, cc)) continue;
    const full = w(h, cp + CA_DEPOT_FULL);
    if (full === 0) {
      unlock(h, cp + CA_DEPOT_LOCK);
      break;
    }
    setw(h, cp + CA_DEPOT_FULL, w(h, full + MG_NEXT));
    setw(h, cp + CA_DEPOT_NFULL, w(h, cp + CA_DEPOT_NFULL) - 1);
    const prev = w(h, cc + CC_PLOADED);
    if (prev !== 0) {
      setw(h, prev + MG_NEXT, w(h, cp + CA_DEPOT_EMPTY));
      setw(h, cp + CA_DEPOT_EMPTY, prev);
      setw(h, cp + CA_DEPOT_NEMPTY, w(h, cp + CA_DEPOT_NEMPTY) + 1);
    }
    setw(h, cc + CC_PLOADED, w(h, cc + CC_LOADED));
    setw(h, cc + CC_PROUNDS, 0);
    setw(h, cc + CC_LOADED, full);
    const rounds = w(h, cp + CA_MAGROUNDS);
    setw(h, cc + CC_ROUNDS, rounds);
    setw(h, cc + CC_MAGSIZE, rounds);
    unlock(h, cp + CA_DEPOT_LOCK);
  }
  return slabAllocConstructed(h, cp);
}

/**
 * Every free that the fast paths do not finish, in one function. With a name `fn`: a checked
 * free that {@linkcode cacheFreeChecked} refused: not a live buffer of this cache (throws what
 * is wrong), a buffer some slot deferred (a duplicate free), any other flagged buffer, or a
 * sound free while the slot has a deferred free to settle or a full loaded magazine; it is
 * checked here, marked cached and pushed. With `fn` empty: a buffer
 * already checked and marked cached (or a `trust` heap's), whose loaded magazine is full. The
 * push then swaps magazines, trades one at the depot, or frees to the slabs.
 *
 * One function, not a check and a push: past V8's size limit for inlining (460 bytecodes), it
 * is never inlined, so a fast path that calls it is charged nothing for it in its callers'
 * inlining budget, whatever the program's feedback (see the top of this file).
 * @throws {UmemError} `bad-free`, `duplicate-free`, `wrong-cache` or `wrong-size`
 */
function cacheFreeSlow(h: HeapView, cp: number, buf: number, fn: string): void {
  cacheFreeSlower(h, cp, buf, fn);
  throwDtorError(h); // (a destructor run by the free, or by a purge on its way)
}

/** cacheFreeSlow's work. */
function cacheFreeSlower(h: HeapView, cp: number, buf: number, fn: string): void {
  const cc = cp + h.ccOff;
  if (fn !== "") {
    if (buf === 0 && fn === "umem_free") return; // umem_free(NULL) does nothing
    if (w(h, HDR_SIZE) !== h.mapped) {
      // The heap grew in another worker: the fast path (which does not sync) saw old views.
      h.remap();
      return cacheFreeChecked(h, cp, buf, fn);
    }
    const at = stateAddress(h, cp, buf), st = at === 0 ? -1 : h.u8[at];
    if (st !== BUF_ALLOC && st !== BUF_ALLOC_DEFER) throw badFree(h, cp, buf, fn);
    // A flagged buffer is a slot's deferred free (cached: a duplicate free), a slot's popped
    // round, or an allocated buffer that was one of those.
    if (st === BUF_ALLOC_DEFER && deferredSlot(h, cp, at) >= 0) {
      throw new UmemError(
        "duplicate-free",
        `${fn}(${cacheName(h, cp)}): duplicate free: buffer freed twice: buffer=0x${
          buf.toString(16)
        } (already in a magazine)`,
        buf,
      );
    }
    // Sound. A slot that holds it as its popped round must not free it again on its shortest
    // way: take it out of that record (see dropPopped).
    if (st === BUF_ALLOC_DEFER) dropPopped(h, cp, at);
    h.u8[at] = BUF_CACHED; // (the slot's deferred free, another buffer, is settled below)
  }
  foldCounts(h, cc);
  settleDeferred(h, cc);
  if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) !== 0) {
    destructAndFree(h, cp, buf);
    h.i32[(cc + CC_NFREE) >> 2]++;
    return;
  }
  for (;;) {
    h.sync(); // a magazine just taken from the depot may lie past this worker's views
    const loaded = w(h, cc + CC_LOADED), r = w(h, cc + CC_ROUNDS);
    if (loaded !== 0 && r < w(h, cc + CC_MAGSIZE)) {
      setw(h, loaded + MG_ROUNDS + r * 4, buf);
      setw(h, cc + CC_ROUNDS, r + 1);
      h.i32[(cc + CC_NFREE) >> 2]++;
      return;
    }
    const prev = w(h, cc + CC_PLOADED);
    if (prev !== 0 && w(h, cc + CC_PROUNDS) === 0) {
      swapMagazines(h, cc);
      continue;
    }
    if (!depotEnter(h, cp, cc)) continue;
    const empty = w(h, cp + CA_DEPOT_EMPTY);
    if (empty !== 0) {
      setw(h, cp + CA_DEPOT_EMPTY, w(h, empty + MG_NEXT));
      setw(h, cp + CA_DEPOT_NEMPTY, w(h, cp + CA_DEPOT_NEMPTY) - 1);
      if (prev !== 0) {
        setw(h, prev + MG_NEXT, w(h, cp + CA_DEPOT_FULL));
        setw(h, cp + CA_DEPOT_FULL, prev);
        setw(h, cp + CA_DEPOT_NFULL, w(h, cp + CA_DEPOT_NFULL) + 1);
      }
      setw(h, cc + CC_PLOADED, loaded);
      setw(h, cc + CC_PROUNDS, r);
      setw(h, cc + CC_LOADED, empty);
      setw(h, cc + CC_ROUNDS, 0);
      setw(h, cc + CC_MAGSIZE, w(h, cp + CA_MAGROUNDS));
      unlock(h, cp + CA_DEPOT_LOCK);
      continue;
    }
    const type = w(h, cp + CA_MAGTYPE);
    unlock(h, cp + CA_DEPOT_LOCK);
    const mag = slabAllocRaw(h, magCache(h, type));
    if (mag === 0) {
      destructAndFree(h, cp, buf);
      h.i32[(cc + CC_NFREE) >> 2]++;
      return;
    }
    depotLock(h, cp);
    if (w(h, cp + CA_MAGTYPE) === type) {
      setw(h, mag + MG_NEXT, w(h, cp + CA_DEPOT_EMPTY));
      setw(h, cp + CA_DEPOT_EMPTY, mag);
      setw(h, cp + CA_DEPOT_NEMPTY, w(h, cp + CA_DEPOT_NEMPTY) + 1);
      unlock(h, cp + CA_DEPOT_LOCK);
    } else {
      unlock(h, cp + CA_DEPOT_LOCK);
      slabFreeRaw(h, magCache(h, type), mag);
    }
  }
}

/**
 * Takes a buffer from the slabs and constructs it; under memory pressure asks every cache's
 * reclaim callback and reaps, then (on a nofail heap) calls the nofail callback.
 */
function slabAllocConstructed(h: HeapView, cp: number): number {
  let buf = slabAllocRaw(h, cp, BUF_ALLOC);
  while (buf === 0) {
    reclaimAll(h);
    buf = slabAllocRaw(h, cp, BUF_ALLOC);
    if (buf === 0) {
      logFailure(h, cp, w(h, cp + CA_BUFSIZE)); // (UMEM_LOGGING=fail, as libumem's slab layer)
      nofailOrThrow(h, () => noMemory(h, cp));
    }
  }
  h.sync(); // another worker may have grown the heap that this slab came from
  if (!construct(h, cp, buf)) {
    h.f64[(cp + CA_FAILS) >> 3]++;
    throw new OutOfMemoryError(
      `umem_cache_alloc(${
        cacheName(h, cp)
      }): constructor refused the buffer; nothing was allocated`,
    );
  }
  h.i32[(cp + h.ccOff + CC_NALLOC) >> 2]++;
  return buf;
}

/**
 * What an allocation that found no memory does, as libumem's `umem_alloc_retry`: with
 * `UMEM_DEBUG=checknull` it is reported first (debug.ts's `checkNull`). On a heap without
 * `nofail`, throws `fail()`. On a nofail heap calls the worker's nofail callback: "retry"
 * returns (the caller tries again); a number exits the process with it, as
 * `UMEM_CALLBACK_EXIT(status)` does (255 when no callback is registered).
 */
export function nofailOrThrow(h: HeapView, fail: () => Error): void {
  const e = fail(); // (once: it counts the failure in the cache, as libumem's slab layer does)
  checkNull(h, e);
  if ((w(h, HDR_FLAGS) & HF_NOFAIL) === 0) throw e;
  const nofail = h.nofail;
  const r = nofail === undefined ? 255 : withPreStack(h, 0, nofail);
  if (r === "retry") return;
  const g = globalThis as unknown as {
    Deno?: { exit(code: number): never };
    process?: { exit(code: number): never };
  };
  console.error(`umem: ${e.message}; nofail callback exits with status ${r}`);
  if (g.Deno !== undefined) g.Deno.exit(r);
  if (g.process !== undefined) g.process.exit(r);
  throw e;
}

function noMemory(h: HeapView, cp: number): OutOfMemoryError {
  h.f64[(cp + CA_FAILS) >> 3]++;
  return new OutOfMemoryError(
    `umem_cache_alloc(${cacheName(h, cp)}): no memory for a ${w(h, cp + CA_BUFSIZE)}-byte buffer ` +
      `(heap at its maximum size)`,
  );
}

/**
 * Calls this worker's module reclaim (`HeapView.pressure`) and reclaim callbacks, then reaps
 * every cache (destructors run), the audit stack of the transaction under way set aside
 * meanwhile.
 */
export function reclaimAll(h: HeapView): void {
  withPreStack(h, 0, () => {
    h.pressure?.();
    for (const cb of h.callbacks) {
      if (cb?.reclaim !== undefined) cb.reclaim();
    }
    reapAll(h);
  });
}

/**
 * Reaps cache `cp`: empties this worker's magazines, purges the depot (running destructors),
 * and gives empty slabs back to vmem. Returns the bytes given back.
 */
export function cacheReap(h: HeapView, cp: number): number {
  if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) === 0) {
    cpuFlush(h, cp, h.slot);
    lock(h, cp + CA_DEPOT_LOCK);
    try {
      depotPurge(h, cp);
    } finally {
      unlock(h, cp + CA_DEPOT_LOCK);
    }
  }
  return slabReap(h, cp);
}

/**
 * Runs `f` over the cache list with the list's lock held, as libumem's `umem_cache_applyall`
 * holds `umem_cache_lock`: a cache another worker destroys meanwhile is unlinked before its
 * record goes, or after the walk (a walk without the lock went on into the freed record, by then
 * a slab record, and wrote there). Returns 0 without walking when this worker holds the lock
 * already (a destructor, run by a walk's reap, whose allocation reaps).
 */
function withCacheList(h: HeapView, f: (caches: number[]) => number): number {
  if (lockHolder(h, HDR_CACHE_LOCK) === h.slot) return 0;
  lock(h, HDR_CACHE_LOCK);
  try {
    const caches: number[] = [];
    for (let cp = w(h, HDR_CACHE_LIST); cp !== 0; cp = w(h, cp + CA_NEXT)) caches.push(cp);
    return f(caches);
  } finally {
    unlock(h, HDR_CACHE_LOCK);
  }
}

/** Reaps every cache, magazine caches last (they receive the magazines the others free). */
export function reapAll(h: HeapView): number {
  return withCacheList(h, (caches) => {
    let bytes = 0;
    const magazineless = (cp: number) => (w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) !== 0;
    for (const cp of caches) if (!magazineless(cp)) bytes += cacheReap(h, cp);
    for (const cp of caches) if (magazineless(cp)) bytes += slabReap(h, cp);
    return bytes;
  });
}

/** Empties the magazines of slot `slot` in every cache (the worker left or died). */
export function flushSlot(h: HeapView, slot: number): void {
  withCacheList(h, (caches) => {
    for (const cp of caches) {
      if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) === 0) cpuFlush(h, cp, slot);
    }
    return 0;
  });
}

/** Buffers in use in cache `cp`: allocations minus frees over every slot. */
export function cacheInUse(h: HeapView, cp: number): number {
  const n = w(h, HDR_NSLOTS);
  // The int32 counters wrap; their sum is exact modulo 2^32, and buffers in use are fewer.
  let used = 0, fast = 0;
  for (let s = 0; s < n; s++) {
    const cc = cp + CA_CPU + s * CC_SIZE;
    used += h.f64[(cc + CC_TALLOC) >> 3] - h.f64[(cc + CC_TFREE) >> 3];
    fast = (fast + h.i32[(cc + CC_NALLOC) >> 2] - h.i32[(cc + CC_NFREE) >> 2]) | 0;
  }
  return used + fast;
}

/** Allocations and frees over every slot. */
export function cacheCounts(h: HeapView, cp: number): { allocs: number; frees: number } {
  const n = w(h, HDR_NSLOTS);
  let allocs = 0, frees = 0;
  for (let s = 0; s < n; s++) {
    const cc = cp + CA_CPU + s * CC_SIZE;
    allocs += h.f64[(cc + CC_TALLOC) >> 3] + (h.i32[(cc + CC_NALLOC) >> 2] >>> 0);
    frees += h.f64[(cc + CC_TFREE) >> 3] + (h.i32[(cc + CC_NFREE) >> 2] >>> 0);
  }
  return { allocs, frees };
}

/** Rounds held in magazines: the slots' and the depot's. */
export function cachedRounds(h: HeapView, cp: number): number {
  const n = w(h, HDR_NSLOTS);
  let rounds = w(h, cp + CA_DEPOT_NFULL) * w(h, cp + CA_MAGROUNDS);
  for (let s = 0; s < n; s++) {
    const cc = cp + CA_CPU + s * CC_SIZE;
    rounds += w(h, cc + CC_ROUNDS) + w(h, cc + CC_PROUNDS);
  }
  return rounds;
}

/** Throws a `destroyed` error if cache `cp` is no longer the cache of id `id`. */
export function checkCacheId(h: HeapView, cp: number, id: number, fn: string): void {
  h.sync(); // the record may lie past this worker's views
  if (w(h, cp + CA_ID) !== id || cp === 0) {
    throw new UmemError("destroyed", `${fn}: cache ${id} at 0x${cp.toString(16)} was destroyed`);
  }
}
