/**
 * The slab layer (Bonwick 1994): object caches whose buffers are carved out of slabs.
 *
 * Theory. A cache hands out buffers of one size. Its memory comes from a vmem arena a *slab*
 * at a time: one or more pages cut into `CA_NCHUNKS` chunks. Caches of small buffers (a chunk
 * of at most 1/8 page) keep the slab record at the end of the slab's own page; caches of large
 * buffers keep it outside, in the slab-record cache, so that the slab's pages are all the
 * buffers'. Either way the *page map* (one word per heap page) names the slab record of every
 * page a slab covers, so any address leads to its slab in constant time: that is how a free is
 * checked, how `whatis` answers, and what the collector needs. A free buffer in a slab holds
 * the address of the next free one in its first word. Slabs are coloured: the first buffer is
 * offset by a rotating multiple of the alignment, so that buffers of different slabs do not all
 * compete for the same cache lines.
 *
 * Each slab record carries a state byte per *granule* of the slab, a granule being the largest
 * power of two that divides the chunk size, so a buffer's byte is found with a subtraction and a
 * shift. The byte of a granule where a buffer starts says `BUF_FREE` (on the slab's free list),
 * `BUF_ALLOC` (the user has it) or `BUF_CACHED` (constructed, in a magazine); every other byte
 * says `BUF_INTERIOR`, so a granule-aligned pointer into the middle of a buffer is refused, and
 * so is any pointer that is not granule-aligned. The magazine layer
 * flips ALLOC and CACHED on every alloc and free with plain byte stores (each byte is written
 * only by the worker that holds the buffer), which catches a double free, a free of an address
 * that is not a buffer, and a free to the wrong cache, on every heap. Two flags refine ALLOC:
 * `BUF_DEFER` (a slot's deferred free or popped round, magazine.ts) and `BUF_TAG` (a debugged
 * size class, `CF_TAGSTATE`, whose buffers out of the slab all say `BUF_ALLOC_TAGGED` and whose
 * tags' check words say allocated or cached, buftag.ts); `bufferStateAt` sees through both.
 *
 * Constructed state lives in the magazine layer: a buffer leaving its slab is constructed, and
 * destroyed when it goes back. Slabs with no buffers out stay on the cache's empty list until a
 * reap gives them back to vmem.
 *
 * Invariants.
 * - A slab is on exactly one of its cache's lists: full (no free buffer), partial, empty
 *   (`SB_REFCNT` 0).
 * - `SB_REFCNT` = buffers of the slab whose state is not `BUF_FREE` = nchunks - free-list length.
 * - In a `CF_TAGSTATE` cache a buffer's state is `BUF_FREE` or `BUF_ALLOC_TAGGED`, never ALLOC or
 *   CACHED alone (a trusting heap keeps none past "out"); in any other cache never tagged.
 * - Every page of a slab maps to its record in the page map; no other page does.
 *
 * Lock order: a cache's depot lock, then its slab lock (`CA_LOCK`), then the slab-record
 * cache's lock, then vmem locks. No path takes a depot lock while it holds a slab lock.
 *
 * @module
 */

import { report } from "./debug.ts";
import { hex, OutOfMemoryError, UmemError } from "./errors.ts";
import {
  HDR_CACHE_LIST,
  HDR_CACHE_LOCK,
  HDR_META_ARENA,
  HDR_NEXT_CACHE_ID,
  HDR_NSLOTS,
  type HeapView,
  PAGE_SHIFT,
  PAGE_SIZE,
  roundUp,
} from "./image.ts";
import { BT_AUDIT_SIZE, BT_BASIC_SIZE, BT_LINK, DBG_AUDIT, initFreeBuffer } from "./buftag.ts";
import { lock, unlock } from "./lock.ts";
import {
  readName,
  VM_QUANTUM,
  vmemAllocAddr,
  vmemFreeAddr,
  vmemXallocAddr,
  writeName,
} from "./vmem.ts";

// ---- Cache record ----
/** Magic word of a live cache. */
export const CA_MAGIC = 0;
/** Name, 32 bytes, NUL padded. */
export const CA_NAME = 4;
/** Length of the name field. */
export const CA_NAME_LEN = 32;
/** The slab lock. */
export const CA_LOCK = 36;
/** The depot lock. */
export const CA_DEPOT_LOCK = 40;
/** Buffer size asked for. */
export const CA_BUFSIZE = 44;
/** Alignment of every buffer. */
export const CA_ALIGN = 48;
/** Chunk: buffer size rounded to the alignment. */
export const CA_CHUNK = 52;
/** Bytes of each slab. */
export const CA_SLABSIZE = 56;
/** Buffers per slab. */
export const CA_NCHUNKS = 60;
/** `CF_*` flags. */
export const CA_FLAGS = 64;
/** Colour of the next slab. */
export const CA_COLOR = 68;
/** Largest colour. */
export const CA_MAXCOLOR = 72;
/** The vmem arena slabs come from. */
export const CA_SOURCE = 76;
/** Next cache in the heap's list. */
export const CA_NEXT = 80;
/** Head of the full slab list. */
export const CA_FULL = 84;
/** Head of the partial slab list. */
export const CA_PARTIAL = 88;
/** Head of the empty slab list. */
export const CA_EMPTY = 92;
/** Magazine type in use (index into the magazine types). */
export const CA_MAGTYPE = 96;
/** Depot: head of the full magazine list. */
export const CA_DEPOT_FULL = 100;
/** Depot: head of the empty magazine list. */
export const CA_DEPOT_EMPTY = 104;
/** Depot: full magazines. */
export const CA_DEPOT_NFULL = 108;
/** Depot: empty magazines. */
export const CA_DEPOT_NEMPTY = 112;
/** Contended depot lock acquisitions. */
export const CA_CONTENTION = 116;
/** Contention count when the current interval began. */
export const CA_CONT_BASE = 120;
/** Unique id of this cache (a handle on a destroyed cache notices it). */
export const CA_ID = 124;
/**
 * log2 of the largest power of two dividing the chunk: a buffer's state byte is at
 * `(buf - SB_BASE) >> CA_SHIFT`, found without a division.
 */
export const CA_SHIFT = 128;
/** State bytes per slab: slab size >> `CA_SHIFT`. */
export const CA_NSTATE = 132;
/** Start of the current contention interval, ms (float64). */
export const CA_CONT_TIME = 136;
/** Buffers in all slabs (float64). */
export const CA_BUF_TOTAL = 144;
/** Most buffers the cache ever had (float64). */
export const CA_BUF_MAX = 152;
/** Slabs (float64). */
export const CA_SLABS = 160;
/** Failed allocations (float64). */
export const CA_FAILS = 168;
/** Magazine size changes (float64). */
export const CA_RESIZES = 176;
/** Slab-layer allocations, i.e. constructions (float64). */
export const CA_SLAB_ALLOCS = 184;
/** Magazine rounds each slot holds at most (the type's rounds; read on the fast path). */
export const CA_MAGROUNDS = 192;
/** `DBG_*` flags of this cache (0: no debugging; the fast path never looks). */
export const CA_DEBUG = 196;
/** Offset of the buffer tag in a chunk (debugged caches), else 0. */
export const CA_TAGOFF = 200;
/** Offset of the free-list link in a free buffer: 0, or inside the tag when debugging. */
export const CA_LINKOFF = 204;
/** First per-worker cache (`CC_*` records, one per slot, 64 bytes apart). */
export const CA_CPU = 256;

/** "CACH". */
export const CA_MAGIC_VALUE = 0x48434143;
/** The cache has no magazine layer: every alloc and free goes to the slabs. */
export const CF_NOMAGAZINE = 1;
/** Slab records live in the slab's last bytes. */
export const CF_SMALL = 2;
/** The cache's creator registered a constructor: every worker must. */
export const CF_HASCTOR = 4;
/** The cache's creator registered a destructor. */
export const CF_HASDTOR = 8;
/** One of the heap's own caches (size classes, magazines). */
export const CF_INTERNAL = 16;
/** A quantum cache of a vmem arena: destroyed with its arena. */
export const CF_QCACHE = 32;
/**
 * A debugged size class (`umem_alloc_N` with `UMEM_DEBUG` on): its buffers' tags say whether
 * they are allocated, and its state bytes only whether they are out of their slab
 * (`BUF_ALLOC_TAGGED`), so that the debug fast path (debug_quick.ts) writes none.
 */
export const CF_TAGSTATE = 64;

// ---- Slab record ----
/** Cache the slab belongs to. */
export const SB_CACHE = 0;
/** First buffer (slab start + colour). */
export const SB_BASE = 4;
/** First byte of the slab's memory. */
export const SB_START = 8;
/** Next slab on the cache's list. */
export const SB_NEXT = 12;
/** Previous slab on the list. */
export const SB_PREV = 16;
/** Buffers out of the slab. */
export const SB_REFCNT = 20;
/** Head of the slab's free-buffer list (0 = none). */
export const SB_FREE = 24;
/** Which list the slab is on (`CA_FULL`, `CA_PARTIAL`, `CA_EMPTY`). */
export const SB_LIST = 28;
/**
 * The worker slot + 1 that last took buffers from this slab (0: none). Each slot prefers its
 * own slabs, so that two workers' hot buffers do not share a slab record's cache line.
 */
export const SB_OWNER = 32;
/** State bytes, one per granule. */
export const SB_STATE = 40;

/** Buffer state: on its slab's free list. */
export const BUF_FREE = 0;
/** Buffer state: allocated. */
export const BUF_ALLOC = 1;
/** Buffer state: constructed, in a magazine. */
export const BUF_CACHED = 2;
/** State of a granule where no buffer starts. */
export const BUF_INTERIOR = 3;
/**
 * Flag on `BUF_ALLOC`: the buffer's free was deferred once since it left a magazine (see
 * magazine.ts). Such a buffer is cached when it is a slot's deferred free (`CC_LAST`), else
 * allocated (a slot's popped round, or one that was); a checked free of it is
 * `cacheFreeSlow`'s, which asks the slots. Readers see through it with `bufferStateAt`.
 */
export const BUF_DEFER = 0x40;
/** `BUF_ALLOC | BUF_DEFER`. */
export const BUF_ALLOC_DEFER = 0x41;
/**
 * Flag on `BUF_ALLOC`, in a `CF_TAGSTATE` cache only: the buffer is out of its slab, allocated
 * or in a magazine as its tag's check word says (buftag.ts). Readers see through it with
 * `bufferStateAt`.
 */
export const BUF_TAG = 0x20;
/** `BUF_ALLOC | BUF_TAG`. */
export const BUF_ALLOC_TAGGED = 0x21;

/** Smallest and largest alignment a cache may ask for. */
export const MIN_ALIGN = 8;

/** log2 of the largest power of two dividing `chunk`: the state granule. */
export function granuleShift(chunk: number): number {
  return 31 - Math.clz32(chunk & -chunk);
}

/** Bytes of a slab record for a slab of `slabsize` bytes and granule shift `shift`. */
export function slabRecordBytes(slabsize: number, shift: number): number {
  return roundUp(SB_STATE + (slabsize >> shift), 8);
}

/**
 * The layout a cache of `chunk`-byte buffers gets: slab size and buffers per slab, the record
 * inside the slab for small buffers, outside otherwise (at most 1/8 of the slab wasted).
 */
export function slabLayout(
  chunk: number,
  small: boolean,
): { slabsize: number; nchunks: number; waste: number } {
  const shift = granuleShift(chunk);
  if (small) {
    const record = slabRecordBytes(PAGE_SIZE, shift);
    const nchunks = Math.floor((PAGE_SIZE - record) / chunk);
    return { slabsize: PAGE_SIZE, nchunks, waste: PAGE_SIZE - record - nchunks * chunk };
  }
  for (let pages = 1; pages <= 64; pages++) {
    const bytes = pages * PAGE_SIZE;
    const n = Math.floor(bytes / chunk);
    if (n >= 1 && (bytes - n * chunk) * 8 <= bytes) {
      return { slabsize: bytes, nchunks: n, waste: bytes - n * chunk };
    }
  }
  const bytes = roundUp(chunk, PAGE_SIZE);
  return { slabsize: bytes, nchunks: 1, waste: bytes - chunk };
}

/** Bytes of a cache record for a heap of `nslots` worker slots. */
export function cacheRecordSize(nslots: number): number {
  return CA_CPU + nslots * 64;
}

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

/** Reads a cache's name. */
export function cacheName(h: HeapView, cp: number): string {
  return readName(h, cp + CA_NAME, CA_NAME_LEN);
}

/**
 * Lays a cache record at `cp` (already allocated, `cacheRecordSize` bytes) and links it into
 * the heap's cache list. The name must have been checked.
 */
export function layCache(
  h: HeapView,
  cp: number,
  name: string,
  bufsize: number,
  align: number,
  source: number,
  flags: number,
  magtype: number,
  magrounds: number,
  debug = 0,
): void {
  const nslots = w(h, HDR_NSLOTS);
  h.i32.fill(0, cp >> 2, (cp + cacheRecordSize(nslots)) >> 2);
  writeName(h, cp + CA_NAME, CA_NAME_LEN, name, "umem_cache_create");
  // A debugged cache keeps a tag after each buffer; its magazines hold free (unconstructed)
  // buffers, filled and checked by the debug layer, which constructs on every allocation.
  const tagOff = debug !== 0 ? roundUp(bufsize, 8) : 0;
  const tagSize = (debug & DBG_AUDIT) !== 0 ? BT_AUDIT_SIZE : BT_BASIC_SIZE;
  const chunk = debug !== 0 ? roundUp(tagOff + tagSize, align) : roundUp(bufsize, align);
  setw(h, cp + CA_DEBUG, debug);
  setw(h, cp + CA_TAGOFF, tagOff);
  setw(h, cp + CA_LINKOFF, debug !== 0 ? tagOff + BT_LINK : 0);
  const small = chunk <= PAGE_SIZE / 8;
  const { slabsize, nchunks, waste } = slabLayout(chunk, small);
  setw(h, cp + CA_BUFSIZE, bufsize);
  setw(h, cp + CA_ALIGN, align);
  setw(h, cp + CA_CHUNK, chunk);
  setw(h, cp + CA_SLABSIZE, slabsize);
  setw(h, cp + CA_NCHUNKS, nchunks);
  setw(h, cp + CA_FLAGS, flags | (small ? CF_SMALL : 0));
  setw(h, cp + CA_MAXCOLOR, waste - (waste % align));
  setw(h, cp + CA_SOURCE, source);
  setw(h, cp + CA_MAGTYPE, magtype);
  setw(h, cp + CA_MAGROUNDS, magrounds);
  setw(h, cp + CA_SHIFT, granuleShift(chunk));
  setw(h, cp + CA_NSTATE, slabsize >> granuleShift(chunk));
  h.f64[(cp + CA_CONT_TIME) >> 3] = Date.now();
  setw(h, cp + CA_ID, Atomics.add(h.i32, HDR_NEXT_CACHE_ID >> 2, 1) + 1);
  lock(h, HDR_CACHE_LOCK);
  // Append, so that caches list in creation order.
  let at = HDR_CACHE_LIST;
  while (w(h, at) !== 0) at = w(h, at) + CA_NEXT;
  setw(h, at, cp);
  unlock(h, HDR_CACHE_LOCK);
  Atomics.store(h.i32, (cp + CA_MAGIC) >> 2, CA_MAGIC_VALUE);
}

/** Unlinks a cache from the heap's list. */
export function unlinkCache(h: HeapView, cp: number): void {
  lock(h, HDR_CACHE_LOCK);
  let at = HDR_CACHE_LIST;
  while (w(h, at) !== cp && w(h, at) !== 0) at = w(h, at) + CA_NEXT;
  if (w(h, at) === cp) setw(h, at, w(h, cp + CA_NEXT));
  unlock(h, HDR_CACHE_LOCK);
}

// ---- slab lists (cache lock held) ----

function listRemove(h: HeapView, cp: number, sb: number): void {
  const prev = w(h, sb + SB_PREV), next = w(h, sb + SB_NEXT);
  if (prev !== 0) setw(h, prev + SB_NEXT, next);
  else setw(h, cp + w(h, sb + SB_LIST), next);
  if (next !== 0) setw(h, next + SB_PREV, prev);
}

function listPush(h: HeapView, cp: number, sb: number, list: number): void {
  const head = w(h, cp + list);
  setw(h, sb + SB_NEXT, head);
  setw(h, sb + SB_PREV, 0);
  if (head !== 0) setw(h, head + SB_PREV, sb);
  setw(h, cp + list, sb);
  setw(h, sb + SB_LIST, list);
}

function listMove(h: HeapView, cp: number, sb: number, list: number): void {
  if (w(h, sb + SB_LIST) === list) return;
  listRemove(h, cp, sb);
  listPush(h, cp, sb, list);
}

/**
 * The state byte offset of buffer `buf` in slab `sb` of cache `cp`, or -1 if `buf` is not the
 * start of a buffer of that slab.
 */
export function bufIndex(h: HeapView, cp: number, sb: number, buf: number): number {
  const off = buf - w(h, sb + SB_BASE), shift = w(h, cp + CA_SHIFT);
  if (off < 0 || (off & ((1 << shift) - 1)) !== 0) return -1;
  const idx = off >> shift;
  if (idx >= w(h, cp + CA_NSTATE) || h.u8[sb + SB_STATE + idx] === BUF_INTERIOR) return -1;
  return off < w(h, cp + CA_NCHUNKS) * w(h, cp + CA_CHUNK) ? idx : -1;
}

/** The slab record of the page holding `addr`, or 0. */
export function slabOf(h: HeapView, addr: number): number {
  return addr > 0 && addr < h.mapped ? h.i32[(h.pagemap >> 2) + (addr >>> PAGE_SHIFT)] : 0;
}

// ---- creating and destroying slabs ----

/** Creates a slab for cache `cp` (no cache lock held). Returns the slab record, or 0. */
function slabCreate(h: HeapView, cp: number): number {
  const slabsize = w(h, cp + CA_SLABSIZE), source = w(h, cp + CA_SOURCE);
  const mem = w(h, source + VM_QUANTUM) >= PAGE_SIZE
    ? vmemAllocAddr(h, source, slabsize)
    : vmemXallocAddr(h, source, slabsize, PAGE_SIZE);
  if (mem === 0) return 0;
  const nchunks = w(h, cp + CA_NCHUNKS), chunk = w(h, cp + CA_CHUNK);
  const shift = w(h, cp + CA_SHIFT), nstate = w(h, cp + CA_NSTATE);
  const record = slabRecordBytes(slabsize, shift);
  let sb: number;
  if ((w(h, cp + CA_FLAGS) & CF_SMALL) !== 0) {
    sb = mem + slabsize - record;
  } else {
    sb = vmemAllocAddr(h, w(h, HDR_META_ARENA), record);
    if (sb === 0) {
      vmemFreeAddr(h, source, mem, slabsize);
      return 0;
    }
  }
  let color = w(h, cp + CA_COLOR);
  const next = color + w(h, cp + CA_ALIGN);
  setw(h, cp + CA_COLOR, next > w(h, cp + CA_MAXCOLOR) ? 0 : next);
  if (color > w(h, cp + CA_MAXCOLOR)) color = 0;
  const base = mem + color;
  h.i32.fill(0, sb >> 2, (sb + SB_STATE) >> 2);
  h.u8.fill(BUF_INTERIOR, sb + SB_STATE, sb + SB_STATE + nstate);
  setw(h, sb + SB_CACHE, cp);
  setw(h, sb + SB_BASE, base);
  setw(h, sb + SB_START, mem);
  const link = w(h, cp + CA_LINKOFF), debug = w(h, cp + CA_DEBUG), tagOff = w(h, cp + CA_TAGOFF);
  for (let i = 0; i < nchunks; i++) {
    const buf = base + i * chunk;
    if (debug !== 0) initFreeBuffer(h, cp, buf, tagOff, debug);
    setw(h, buf + link, i + 1 < nchunks ? buf + chunk : 0);
    h.u8[sb + SB_STATE + ((i * chunk) >> shift)] = BUF_FREE;
  }
  setw(h, sb + SB_FREE, base);
  const pm = h.pagemap >> 2;
  for (let p = mem >>> PAGE_SHIFT, end = (mem + slabsize) >>> PAGE_SHIFT; p < end; p++) {
    h.i32[pm + p] = sb;
  }
  return sb;
}

/** Gives an empty slab back to vmem (cache lock held; the slab already off its list). */
function slabDestroy(h: HeapView, cp: number, sb: number): void {
  const mem = w(h, sb + SB_START), slabsize = w(h, cp + CA_SLABSIZE);
  const pm = h.pagemap >> 2;
  for (let p = mem >>> PAGE_SHIFT, end = (mem + slabsize) >>> PAGE_SHIFT; p < end; p++) {
    h.i32[pm + p] = 0;
  }
  h.f64[(cp + CA_SLABS) >> 3]--;
  h.f64[(cp + CA_BUF_TOTAL) >> 3] -= w(h, cp + CA_NCHUNKS);
  if ((w(h, cp + CA_FLAGS) & CF_SMALL) === 0) {
    vmemFreeAddr(h, w(h, HDR_META_ARENA), sb, slabRecordBytes(slabsize, w(h, cp + CA_SHIFT)));
  }
  vmemFreeAddr(h, w(h, cp + CA_SOURCE), mem, slabsize);
}

/**
 * Takes one buffer out of the slabs of cache `cp`, creating a slab if none has room. The
 * buffer is not constructed; its state becomes `state`. Returns 0 when no memory can be had.
 */
export function slabAllocRaw(h: HeapView, cp: number, state = BUF_ALLOC): number {
  lock(h, cp + CA_LOCK);
  const me = h.slot + 1;
  let sb = pickSlab(h, cp, me);
  if (sb === 0) {
    unlock(h, cp + CA_LOCK);
    const made = slabCreate(h, cp);
    if (made === 0) {
      // No memory for a slab of our own: share another worker's, if it has room.
      lock(h, cp + CA_LOCK);
      sb = w(h, cp + CA_PARTIAL);
      if (sb === 0) {
        unlock(h, cp + CA_LOCK);
        return 0;
      }
    } else {
      lock(h, cp + CA_LOCK);
      listPush(h, cp, made, CA_EMPTY);
      const n = w(h, cp + CA_NCHUNKS);
      h.f64[(cp + CA_SLABS) >> 3]++;
      const total = (h.f64[(cp + CA_BUF_TOTAL) >> 3] += n);
      if (total > h.f64[(cp + CA_BUF_MAX) >> 3]) h.f64[(cp + CA_BUF_MAX) >> 3] = total;
      sb = pickSlab(h, cp, me) || made;
    }
  }
  setw(h, sb + SB_OWNER, me);
  const buf = w(h, sb + SB_FREE);
  // The free list runs through the free buffers themselves (or their tags): a write after free,
  // or past the end of a buffer, can break it. Its head and the link it holds must be free
  // buffers of this slab (or the link 0), or nothing is handed out.
  const next = freeInSlab(h, cp, sb, buf) ? w(h, buf + w(h, cp + CA_LINKOFF)) : -1;
  if (next !== 0 && !freeInSlab(h, cp, sb, next)) {
    const bad = next === -1 ? buf : next;
    rebuildFreeList(h, cp, sb);
    unlock(h, cp + CA_LOCK);
    // (debug.ts imports this file: `report` is a function declaration, there from the start,
    // and called only here, never while the modules load.)
    throw report(
      h,
      "bufctl-corrupted",
      "bufctl corrupted",
      [
        `umem_cache_alloc(${cacheName(h, cp)}): slab ${hex(sb)}'s free list leads to ${
          hex(bad)
        }, not a free buffer of the slab${
          next === -1 ? "" : ` (the link in free buffer ${hex(buf)})`
        }: a write after free or past the end of a buffer; the list was made again from the ` +
        `slab's state bytes`,
      ],
      next === -1 ? 0 : buf,
      cp,
    );
  }
  setw(h, sb + SB_FREE, next);
  const ref = w(h, sb + SB_REFCNT) + 1;
  setw(h, sb + SB_REFCNT, ref);
  h.u8[sb + SB_STATE + bufIndex(h, cp, sb, buf)] = state;
  listMove(h, cp, sb, ref === w(h, cp + CA_NCHUNKS) ? CA_FULL : CA_PARTIAL);
  h.f64[(cp + CA_SLAB_ALLOCS) >> 3]++;
  unlock(h, cp + CA_LOCK);
  return buf;
}

/** True when `buf` is a buffer of slab `sb` of cache `cp` whose state says on the free list. */
function freeInSlab(h: HeapView, cp: number, sb: number, buf: number): boolean {
  const idx = buf > 0 && buf < h.mapped ? bufIndex(h, cp, sb, buf) : -1;
  return idx >= 0 && h.u8[sb + SB_STATE + idx] === BUF_FREE;
}

/**
 * Lays slab `sb`'s free list again from its state bytes (cache lock held), after a broken link:
 * every buffer whose state is `BUF_FREE`, in address order; its count and list follow
 * (`SB_REFCNT` = the buffers not free).
 */
function rebuildFreeList(h: HeapView, cp: number, sb: number): void {
  const n = w(h, cp + CA_NCHUNKS), chunk = w(h, cp + CA_CHUNK), shift = w(h, cp + CA_SHIFT);
  const base = w(h, sb + SB_BASE), link = w(h, cp + CA_LINKOFF);
  let head = 0, free = 0;
  for (let i = n - 1; i >= 0; i--) {
    if (h.u8[sb + SB_STATE + ((i * chunk) >> shift)] !== BUF_FREE) continue;
    setw(h, base + i * chunk + link, head);
    head = base + i * chunk;
    free++;
  }
  setw(h, sb + SB_FREE, head);
  setw(h, sb + SB_REFCNT, n - free);
  listMove(h, cp, sb, free === 0 ? CA_FULL : free === n ? CA_EMPTY : CA_PARTIAL);
}

/** Puts buffer `buf` (already destroyed, if it was constructed) back on its slab. */
export function slabFreeRaw(h: HeapView, cp: number, buf: number): void {
  const sb = slabOf(h, buf);
  lock(h, cp + CA_LOCK);
  h.u8[sb + SB_STATE + bufIndex(h, cp, sb, buf)] = BUF_FREE;
  setw(h, buf + w(h, cp + CA_LINKOFF), w(h, sb + SB_FREE));
  setw(h, sb + SB_FREE, buf);
  const ref = w(h, sb + SB_REFCNT) - 1;
  setw(h, sb + SB_REFCNT, ref);
  listMove(h, cp, sb, ref === 0 ? CA_EMPTY : CA_PARTIAL);
  if (ref === 0) setw(h, sb + SB_OWNER, 0);
  unlock(h, cp + CA_LOCK);
}

/** Partial slabs looked at for one of this slot's own before another is taken. */
const OWNER_SCAN = 16;

/**
 * The slab a slot takes its next buffer from (cache lock held): a partial slab of its own, else
 * a partial slab nobody owns, else an empty slab; 0 when a new slab should be made.
 */
function pickSlab(h: HeapView, cp: number, me: number): number {
  let free = 0, k = 0;
  for (let s = w(h, cp + CA_PARTIAL); s !== 0 && k < OWNER_SCAN; s = w(h, s + SB_NEXT), k++) {
    const owner = w(h, s + SB_OWNER);
    if (owner === me) return s;
    if (owner === 0 && free === 0) free = s;
  }
  return free || w(h, cp + CA_EMPTY);
}

/**
 * What is wrong with the cache record at `cp`, when its fields could not have been laid by
 * `createCacheRecord` (a damaged image: one bad word there would have a walk of its slabs read
 * past them, or count to two billion); undefined when they could.
 */
export function cacheRecordFault(h: HeapView, cp: number): string | undefined {
  if (cp <= 0 || (cp & 7) !== 0 || cp + cacheRecordSize(w(h, HDR_NSLOTS)) > h.mapped) {
    return "is out of bounds";
  }
  if (w(h, cp + CA_MAGIC) !== CA_MAGIC_VALUE) return `has magic ${hex(w(h, cp + CA_MAGIC))}`;
  const chunk = w(h, cp + CA_CHUNK), nchunks = w(h, cp + CA_NCHUNKS);
  const slabsize = w(h, cp + CA_SLABSIZE), shift = w(h, cp + CA_SHIFT);
  const nstate = w(h, cp + CA_NSTATE);
  if (
    !(slabsize > 0 && slabsize <= h.mapped && chunk > 0 && nchunks > 0 &&
      nchunks * chunk <= slabsize && shift === granuleShift(chunk) && nstate === slabsize >> shift)
  ) {
    return `has a slab layout no cache has (${nchunks} chunks of ${chunk} bytes in ${slabsize}, ` +
      `granule shift ${shift}, ${nstate} state bytes)`;
  }
  return undefined;
}

/** Gives every empty slab of cache `cp` back to vmem. Returns the bytes given back. */
export function slabReap(h: HeapView, cp: number): number {
  let bytes = 0;
  lock(h, cp + CA_LOCK);
  try {
    for (let sb = w(h, cp + CA_EMPTY); sb !== 0; sb = w(h, cp + CA_EMPTY)) {
      listRemove(h, cp, sb);
      slabDestroy(h, cp, sb);
      bytes += w(h, cp + CA_SLABSIZE);
    }
  } finally {
    unlock(h, cp + CA_LOCK);
  }
  return bytes;
}

/**
 * Frees every slab of a cache that is being destroyed, whatever is still allocated.
 * Returns the buffers that were still allocated.
 */
export function slabDestroyAll(h: HeapView, cp: number): number {
  let leaked = 0;
  lock(h, cp + CA_LOCK);
  try {
    for (const list of [CA_FULL, CA_PARTIAL, CA_EMPTY]) {
      for (let sb = w(h, cp + list); sb !== 0; sb = w(h, cp + list)) {
        leaked += w(h, sb + SB_REFCNT);
        listRemove(h, cp, sb);
        slabDestroy(h, cp, sb);
      }
    }
  } finally {
    unlock(h, cp + CA_LOCK);
  }
  return leaked;
}

/**
 * Constructs a buffer fresh from its slab with this worker's constructor. On refusal the
 * buffer goes back to the slab and this returns false.
 */
export function construct(h: HeapView, cp: number, buf: number): boolean {
  const flags = w(h, cp + CA_FLAGS);
  // A debugged cache constructs on every allocation, in the debug layer.
  if ((flags & CF_HASCTOR) === 0 || w(h, cp + CA_DEBUG) !== 0) return true;
  const cb = h.callbacks[w(h, cp + CA_ID)];
  if (cb?.ctor === undefined) {
    slabFreeRaw(h, cp, buf);
    throw new UmemError(
      "invalid-argument",
      `umem_cache_alloc(${cacheName(h, cp)}): cache has a constructor but worker ${h.slot} ` +
        `has not registered it (call heap.cache(name, { ctor, dtor }))`,
    );
  }
  let ok: boolean | void;
  try {
    ok = cb.ctor(h, buf);
  } catch (e) {
    slabFreeRaw(h, cp, buf);
    throw e;
  }
  if (ok === false) {
    slabFreeRaw(h, cp, buf);
    return false;
  }
  return true;
}

/**
 * Destroys a constructed buffer with this worker's destructor, then frees it to its slab. A
 * destructor that throws does not stop the work it runs in (a magazine's purge, under the depot
 * lock, with lists half walked): the buffer is freed all the same and the first error is kept
 * for {@linkcode throwDtorError}.
 */
export function destructAndFree(h: HeapView, cp: number, buf: number): void {
  if ((w(h, cp + CA_FLAGS) & CF_HASDTOR) !== 0 && w(h, cp + CA_DEBUG) === 0) {
    const dtor = h.callbacks[w(h, cp + CA_ID)]?.dtor;
    if (dtor !== undefined) {
      try {
        dtor(h, buf);
      } catch (e) {
        if (!h.dtorFailed) {
          h.dtorFailed = true;
          h.dtorError = e;
        }
      }
    }
  }
  slabFreeRaw(h, cp, buf);
}

/**
 * Throws the first error a destructor threw since the last call, if any: called by the public
 * calls that run destructors (a free without magazines or that found the magazines full, a
 * reap, a destroy, a detach, a reclaim) once their work is complete and their locks let go. One
 * an allocation ran (a magazine resize, a reap under memory pressure) waits for the next such
 * call: the allocation itself succeeds.
 *
 * @param h the worker's handle
 */
export function throwDtorError(h: HeapView): void {
  if (!h.dtorFailed) return;
  const e = h.dtorError;
  h.dtorFailed = false;
  h.dtorError = undefined;
  throw e;
}

/** Builds the error for a free of `buf` to cache `cp` that is not a live buffer of it. */
export function badFree(h: HeapView, cp: number, buf: unknown, fn: string): UmemError {
  const name = cacheName(h, cp);
  if (typeof buf !== "number" || !Number.isInteger(buf)) {
    return new UmemError(
      "invalid-argument",
      `${fn}(${name}): address ${String(buf)} is not a whole number`,
    );
  }
  const sb = slabOf(h, buf);
  if (sb === 0) {
    return new UmemError(
      "bad-free",
      `${fn}(${name}): invalid free: buffer not in cache: ${hex(buf)} is not in any slab`,
      buf,
    );
  }
  const owner = w(h, sb + SB_CACHE);
  if (owner !== cp && bufIndex(h, owner, sb, buf) < 0) {
    return new UmemError(
      "bad-free",
      `${fn}(${name}): invalid free: ${
        hex(buf)
      } is not the start of a buffer (it lies in a slab of ${cacheName(h, owner)})`,
      buf,
    );
  }
  if (owner !== cp) {
    const ob = w(h, owner + CA_BUFSIZE), mb = w(h, cp + CA_BUFSIZE);
    if ((w(h, owner + CA_FLAGS) & CF_INTERNAL) !== 0 && (w(h, cp + CA_FLAGS) & CF_INTERNAL) !== 0) {
      return new UmemError(
        "wrong-size",
        `${fn}(${name}): bad free: free size (${mb}) != alloc size (${ob}) at ${hex(buf)}`,
        buf,
      );
    }
    return new UmemError(
      "wrong-cache",
      `${fn}(${name}): buffer freed to wrong cache: buffer was allocated from ${
        cacheName(h, owner)
      }, caller attempting free to ${name}. buffer=${hex(buf)}`,
      buf,
    );
  }
  const idx = bufIndex(h, cp, sb, buf);
  if (idx < 0) {
    const chunk = w(h, cp + CA_CHUNK), base = w(h, sb + SB_BASE);
    const start = buf < base ? base : base + Math.floor((buf - base) / chunk) * chunk;
    return new UmemError(
      "bad-free",
      `${fn}(${name}): bad free: free address (${hex(buf)}) != alloc address (${hex(start)})`,
      buf,
    );
  }
  const st = h.u8[sb + SB_STATE + idx];
  if (st !== BUF_ALLOC) {
    return new UmemError(
      "duplicate-free",
      `${fn}(${name}): duplicate free: buffer freed twice: buffer=${hex(buf)} (${
        st === BUF_CACHED ? "already in a magazine" : "already free in its slab"
      })`,
      buf,
    );
  }
  return new UmemError("bad-free", `${fn}(${name}): free of ${hex(buf)} refused`, buf);
}

/** Throws if the slab layer cannot give a buffer: the allocation's out-of-memory error. */
export function allocFailure(h: HeapView, cp: number, size: number): OutOfMemoryError {
  h.f64[(cp + CA_FAILS) >> 3]++;
  return new OutOfMemoryError(
    `umem_alloc(${cacheName(h, cp)}): no memory for a ${size}-byte buffer`,
  );
}
