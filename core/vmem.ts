/**
 * vmem: resource arenas (Bonwick and Adams 2001, section 4), with every byte of state in the
 * heap image.
 *
 * Theory. An arena manages an integer range made of *spans* (added with `add`, or imported from
 * a source arena). Each span is cut into *segments*, allocated or free, described by segment
 * records (`VS_*`) linked in address order behind a sentinel, so that boundary tags make
 * coalescing constant-time. Free segments also sit on one of 32 power-of-two free lists (list
 * i holds sizes in [2^i, 2^(i+1))), with a bitmap of the non-empty lists:
 * - instant fit takes the head of the smallest list whose every member is large enough
 *   (constant time), falling back to a scan of the list below;
 * - best fit scans from the list of the request's size upward and takes the smallest fit;
 * - next fit walks the address list from a rotor (the last segment allocated) and wraps;
 * - first fit walks the address list from its start and takes the lowest segment that fits.
 * Allocated segments are found at free through a hash of their start address that doubles
 * when its load passes 2. The root arena (`heap.vmem`) covers the heap after the metadata
 * area; when it runs out it grows the SharedArrayBuffer, the sbrk of this world, and extends its
 * last span. An arena with a source imports spans from it and returns a span as soon as it is
 * wholly free.
 *
 * Segment records come from a global pool in the header. It is refilled a page at a time from
 * the root arena *before* an operation takes its arena lock, keeping a reserve large enough for
 * the deepest chain of nested operations (an import that grows the root's hash), so an
 * operation never runs out of records half-way.
 *
 * Invariants.
 * - Segments of a span tile it exactly; no two adjacent free segments (they coalesce).
 * - A free segment is on exactly the list `floor(log2(size))`; bit i of `VM_FREEMAP` is set iff
 *   list i is non-empty.
 * - An allocated segment is in the hash exactly once; `VM_INUSE` is the sum of their sizes.
 * - `VM_TOTAL` is the sum of span sizes; `VM_IMPORTED` that of imported spans.
 *
 * Lock order: an arena's lock, then its source's lock (and so on to the root), then the
 * segment pool's lock (a leaf). The arena-list lock is taken alone.
 *
 * @module
 */

import { checkSize, hex, OutOfMemoryError, UmemError } from "./errors.ts";
import {
  HDR_ALLOCATOR,
  HDR_ARENA_LIST,
  HDR_ARENA_LOCK,
  HDR_CACHE_LIST,
  HDR_MAXSIZE,
  HDR_META_ARENA,
  HDR_META_BYTES,
  HDR_NEXT_ARENA_ID,
  HDR_ROOT_ARENA,
  HDR_SEG_FREE,
  HDR_SEG_LOCK,
  HDR_SEG_NFREE,
  HDR_SEG_TOTAL,
  HDR_SIZE,
  type HeapView,
  listRecords,
  MAX_IMAGE,
  PAGE_SHIFT,
  PAGE_SIZE,
  roundUp,
} from "./image.ts";
import { createCacheRecord, destroyCacheRecord } from "./cache.ts";
import { lock, unlock } from "./lock.ts";
import { cacheAlloc, cacheFree } from "./magazine.ts";
import { CA_NAME_LEN, CA_NEXT, cacheName, CF_QCACHE, SB_CACHE } from "./slab.ts";

// ---- Segment record (32 bytes) ----
/** First address of the segment. */
export const VS_START = 0;
/** One past the last address. */
export const VS_END = 4;
/** `SEG_*` type, with `SEG_IMPORTED` on an imported span. */
export const VS_TYPE = 8;
/** Next segment in address order. */
export const VS_ANEXT = 12;
/** Previous segment in address order. */
export const VS_APREV = 16;
/** Next on the free list, the hash chain, or the pool. */
export const VS_KNEXT = 20;
/** Previous on the free list. */
export const VS_KPREV = 24;
/** Size of a segment record. */
export const VS_SIZE = 32;

/** A free segment. */
export const SEG_FREE = 1;
/** An allocated segment. */
export const SEG_ALLOC = 2;
/** A span marker: precedes the segments that tile the span. */
export const SEG_SPAN = 3;
/** The sentinel of an arena's address list. */
export const SEG_SENTINEL = 4;
/** Mask of the type in `VS_TYPE`. */
export const SEG_TYPE_MASK = 0xff;
/** Flag on a span imported from the source arena. */
export const SEG_IMPORTED = 0x100;

// ---- Arena record ----
/** Magic word of a live arena record. */
export const VM_MAGIC = 0;
/** Name, 32 bytes of UTF-8, NUL padded. */
export const VM_NAME = 4;
/** Name field length. */
export const VM_NAME_LEN = 32;
/** The arena lock. */
export const VM_LOCK = 36;
/** Quantum: every segment is a multiple of it. */
export const VM_QUANTUM = 40;
/** Source arena record, or 0. */
export const VM_SOURCE = 44;
/** Smallest import from the source. */
export const VM_IMPORT = 48;
/** `VMF_*` flags. */
export const VM_FLAGS = 52;
/** Sentinel of the address-ordered segment list. */
export const VM_SENTINEL = 56;
/** Next-fit rotor: the segment after which the next search starts. */
export const VM_ROTOR = 60;
/** Bitmap of non-empty free lists. */
export const VM_FREEMAP = 64;
/** Hash table address. */
export const VM_HASH = 68;
/** Hash buckets - 1. */
export const VM_HASHMASK = 72;
/** Entries in the hash. */
export const VM_HASHCOUNT = 76;
/** Next arena in the heap's arena list. */
export const VM_NEXT = 80;
/** The root arena's growable span. */
export const VM_GROWSPAN = 84;
/** Largest size served by the quantum caches (0: none). */
export const VM_QCACHE_MAX = 88;
/** Number of quantum caches. */
export const VM_NQCACHE = 92;
/** Quantum cache addresses, 16 words. */
export const VM_QCACHE = 96;
/** Most quantum caches an arena has. */
export const VM_QCACHE_N = 16;
/** Bytes allocated (float64). */
export const VM_INUSE = 160;
/** Bytes imported from the source (float64). */
export const VM_IMPORTED = 168;
/** Bytes in spans (float64). */
export const VM_TOTAL = 176;
/** Allocations (float64). */
export const VM_ALLOCS = 184;
/** Frees (float64). */
export const VM_FREES = 192;
/** Failed allocations (float64). */
export const VM_FAILS = 200;
/** Heads of the 32 free lists. */
export const VM_FREELIST = 208;
/** The initial hash table, embedded. */
export const VM_HASH0 = 336;
/** Buckets of the initial hash table. */
export const VM_HASH0_N = 64;
/** Size of an arena record. */
export const VM_RECORD_SIZE = VM_HASH0 + VM_HASH0_N * 4 + 8;
/** Arena id (0 for the heap's arena): a handle remembers it to notice a reused record. */
export const VM_ID = VM_HASH0 + VM_HASH0_N * 4;

/** "VMEM". */
export const VM_MAGIC_VALUE = 0x4d454d56;
/** The root arena: grows the heap. */
export const VMF_ROOT = 1;
/** Set while the hash grows, so that the growth does not recurse. */
export const VMF_HASHGROW = 2;

/** Free segment records kept in reserve before an operation begins. */
const SEG_RESERVE = 48;

/**
 * Allocation policy of {@linkcode Vmem.alloc}, as `VM_INSTANTFIT`, `VM_BESTFIT`, `VM_NEXTFIT`
 * and `VM_FIRSTFIT`.
 */
export type VmemPolicy = "instantfit" | "bestfit" | "nextfit" | "firstfit";
/** Policy codes, in the order of {@linkcode POLICY_NAMES}. */
export const POLICY_INSTANT = 0, POLICY_BEST = 1, POLICY_NEXT = 2, POLICY_FIRST = 3;
/**
 * The arena's own policy, for an allocation that names none: the root arena's is
 * `UMEM_OPTIONS=allocator=` (`HDR_ALLOCATOR`), as libumem's applies to the heap's top arena;
 * any other arena's is instant fit.
 */
export const POLICY_DEFAULT = -1;
/** The policies by code. */
export const POLICY_NAMES: readonly VmemPolicy[] = ["instantfit", "bestfit", "nextfit", "firstfit"];

/** Constraints of {@linkcode Vmem.xalloc}, as `vmem_xalloc`'s parameters. */
export interface XallocConstraints {
  /** The result is a multiple of `align` plus `phase` (a power of two; default the quantum). */
  align?: number;
  /** Offset from the alignment (below `align`). */
  phase?: number;
  /** `[addr, addr+size)` does not cross a multiple of `nocross` (a power of two, or 0). */
  nocross?: number;
  /** The result is at least `minaddr`. */
  minaddr?: number;
  /** The result ends at most at `maxaddr` (0: no limit). */
  maxaddr?: number;
}

/** Statistics of an arena, as `vmem_kstat`. */
export interface VmemStats {
  /** The arena's name. */
  name: string;
  /** Its quantum. */
  quantum: number;
  /** Bytes allocated. */
  inUse: number;
  /** Bytes imported from the source. */
  imported: number;
  /** Bytes in all spans. */
  total: number;
  /** Successful allocations. */
  allocs: number;
  /** Frees. */
  frees: number;
  /** Failed allocations. */
  failures: number;
}

/** One segment, as {@linkcode Vmem.walk} reports it. */
export interface VmemSegment {
  /** `span` marks the start of a span; the segments after it tile it. */
  type: "span" | "free" | "alloc";
  /** First address. */
  start: number;
  /** Size in bytes. */
  size: number;
  /** For a span: whether it was imported from the source. */
  imported: boolean;
}

/** What {@linkcode Vmem.destroy} found still allocated. */
export interface VmemLeakReport {
  /** Bytes still allocated. */
  leakedBytes: number;
  /** Segments still allocated. */
  leakedSegments: number;
  /** `vmem_destroy('NAME'): leaked N bytes`, or "" when nothing leaked. */
  message: string;
}

// ---- small accessors ----
const w = (h: HeapView, addr: number) => h.i32[addr >> 2];
const setw = (h: HeapView, addr: number, v: number) => {
  h.i32[addr >> 2] = v;
};
const segType = (h: HeapView, seg: number) => h.i32[(seg + VS_TYPE) >> 2] & SEG_TYPE_MASK;
const segSize = (h: HeapView, seg: number) =>
  h.i32[(seg + VS_END) >> 2] - h.i32[(seg + VS_START) >> 2];
const addStat = (h: HeapView, a: number, field: number, d: number) => {
  h.f64[(a + field) >> 3] += d;
};

/** Reads an arena's name. */
export function arenaName(h: HeapView, a: number): string {
  return readName(h, a + VM_NAME, VM_NAME_LEN);
}

/** Reads a NUL-padded UTF-8 name of at most `len` bytes. */
export function readName(h: HeapView, at: number, len: number): string {
  let end = at;
  while (end < at + len && h.u8[end] !== 0) end++;
  return new TextDecoder().decode(h.u8.slice(at, end));
}

/** A UTF-16 surrogate without its pair. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks that `name` can be stored in `len` bytes and read back as itself: a non-empty string
 * of fewer than `len` UTF-8 bytes, with no NUL (names end at one) and no lone surrogate (which
 * UTF-8 cannot hold). Returns its bytes.
 * @throws {UmemError} `invalid-argument` naming `fn` and what is wrong
 */
export function checkName(name: unknown, len: number, fn: string): Uint8Array {
  if (typeof name !== "string" || name.length === 0) {
    throw new UmemError("invalid-argument", `${fn}: name must be a non-empty string`);
  }
  if (name.includes("\0") || LONE_SURROGATE.test(name)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: name ${JSON.stringify(name)} holds a NUL or a lone surrogate`,
    );
  }
  const bytes = new TextEncoder().encode(name);
  if (bytes.length >= len) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: name '${name}' is ${bytes.length} bytes (at most ${len - 1})`,
    );
  }
  return bytes;
}

/** Writes `name` NUL-padded into `len` bytes; throws as {@linkcode checkName}. */
export function writeName(h: HeapView, at: number, len: number, name: unknown, fn: string): void {
  const bytes = checkName(name, len, fn);
  h.u8.fill(0, at, at + len);
  h.u8.set(bytes, at);
}

// ---- the segment record pool ----

/** Carves `[base, base+bytes)` into segment records and puts them on the pool. */
export function segCarve(h: HeapView, base: number, bytes: number): void {
  const n = Math.floor(bytes / VS_SIZE);
  lock(h, HDR_SEG_LOCK);
  let head = w(h, HDR_SEG_FREE);
  for (let i = n - 1; i >= 0; i--) {
    const seg = base + i * VS_SIZE;
    setw(h, seg + VS_KNEXT, head);
    head = seg;
  }
  setw(h, HDR_SEG_FREE, head);
  setw(h, HDR_SEG_NFREE, w(h, HDR_SEG_NFREE) + n);
  setw(h, HDR_SEG_TOTAL, w(h, HDR_SEG_TOTAL) + n);
  unlock(h, HDR_SEG_LOCK);
}

function segAlloc(h: HeapView): number {
  lock(h, HDR_SEG_LOCK);
  const seg = w(h, HDR_SEG_FREE);
  if (seg === 0) {
    unlock(h, HDR_SEG_LOCK);
    throw new OutOfMemoryError("vmem: out of segment records");
  }
  setw(h, HDR_SEG_FREE, w(h, seg + VS_KNEXT));
  setw(h, HDR_SEG_NFREE, w(h, HDR_SEG_NFREE) - 1);
  unlock(h, HDR_SEG_LOCK);
  h.i32.fill(0, seg >> 2, (seg + VS_SIZE) >> 2);
  return seg;
}

function segFree(h: HeapView, seg: number): void {
  lock(h, HDR_SEG_LOCK);
  setw(h, seg + VS_TYPE, 0);
  setw(h, seg + VS_KNEXT, w(h, HDR_SEG_FREE));
  setw(h, HDR_SEG_FREE, seg);
  setw(h, HDR_SEG_NFREE, w(h, HDR_SEG_NFREE) + 1);
  unlock(h, HDR_SEG_LOCK);
}

/** Refills the segment pool if it is below the reserve. Call with no arena lock held. */
export function segReserve(h: HeapView): void {
  if (h.refilling || Atomics.load(h.i32, HDR_SEG_NFREE >> 2) >= SEG_RESERVE) return;
  h.refilling = true;
  try {
    // From the metadata arena once it exists, so that segment pages gather in its spans
    // instead of dotting the heap's arena; before that (while the heap is made), from the root.
    const meta = w(h, HDR_META_ARENA), from = meta !== 0 ? meta : w(h, HDR_ROOT_ARENA);
    lock(h, from + VM_LOCK);
    let page = 0;
    try {
      page = allocLocked(h, from, PAGE_SIZE, POLICY_INSTANT);
    } finally {
      unlock(h, from + VM_LOCK);
    }
    if (page !== 0) {
      segCarve(h, page, PAGE_SIZE);
      if (meta === 0) Atomics.add(h.i32, HDR_META_BYTES >> 2, PAGE_SIZE);
    }
  } finally {
    h.refilling = false;
  }
}

/** Creates a segment record with the given bounds and type. */
function segCreate(h: HeapView, start: number, end: number, type: number): number {
  const seg = segAlloc(h);
  setw(h, seg + VS_START, start);
  setw(h, seg + VS_END, end);
  setw(h, seg + VS_TYPE, type);
  return seg;
}

function segDestroy(h: HeapView, a: number, seg: number): void {
  if (w(h, a + VM_ROTOR) === seg) setw(h, a + VM_ROTOR, w(h, seg + VS_APREV));
  segFree(h, seg);
}

// ---- the address list ----

function insertAfter(h: HeapView, prev: number, seg: number): void {
  const next = w(h, prev + VS_ANEXT);
  setw(h, seg + VS_APREV, prev);
  setw(h, seg + VS_ANEXT, next);
  setw(h, prev + VS_ANEXT, seg);
  setw(h, next + VS_APREV, seg);
}

function unlinkA(h: HeapView, seg: number): void {
  const prev = w(h, seg + VS_APREV), next = w(h, seg + VS_ANEXT);
  setw(h, prev + VS_ANEXT, next);
  setw(h, next + VS_APREV, prev);
}

// ---- the free lists ----

/** The free list of a segment of `size` bytes: floor(log2(size)). */
export function freeListIndex(size: number): number {
  return 31 - Math.clz32(size);
}

function flInsert(h: HeapView, a: number, seg: number): void {
  const idx = freeListIndex(segSize(h, seg));
  const head = a + VM_FREELIST + idx * 4;
  const old = w(h, head);
  setw(h, seg + VS_KNEXT, old);
  setw(h, seg + VS_KPREV, 0);
  if (old !== 0) setw(h, old + VS_KPREV, seg);
  setw(h, head, seg);
  setw(h, a + VM_FREEMAP, w(h, a + VM_FREEMAP) | (1 << idx));
}

function flRemove(h: HeapView, a: number, seg: number): void {
  const idx = freeListIndex(segSize(h, seg));
  const head = a + VM_FREELIST + idx * 4;
  const prev = w(h, seg + VS_KPREV), next = w(h, seg + VS_KNEXT);
  if (prev !== 0) setw(h, prev + VS_KNEXT, next);
  else setw(h, head, next);
  if (next !== 0) setw(h, next + VS_KPREV, prev);
  if (w(h, head) === 0) setw(h, a + VM_FREEMAP, w(h, a + VM_FREEMAP) & ~(1 << idx));
}

// ---- the hash of allocated segments ----

function bucket(h: HeapView, a: number, start: number): number {
  const x = Math.imul(start, 0x9e3779b1);
  return w(h, a + VM_HASH) + (((x ^ (x >>> 15)) & w(h, a + VM_HASHMASK)) << 2);
}

function hashInsert(h: HeapView, a: number, seg: number): void {
  const b = bucket(h, a, w(h, seg + VS_START));
  setw(h, seg + VS_KNEXT, w(h, b));
  setw(h, b, seg);
  const count = w(h, a + VM_HASHCOUNT) + 1;
  setw(h, a + VM_HASHCOUNT, count);
  if (count > 2 * (w(h, a + VM_HASHMASK) + 1)) hashGrow(h, a);
}

/** The allocated segment that starts at `start`, or 0. */
export function hashFind(h: HeapView, a: number, start: number): number {
  // Bounded, and each link checked: a damaged chain (a snapshot's, verify's) ends the search.
  let seg = w(h, bucket(h, a, start)), k = h.mapped >> 5;
  while (seg !== 0 && w(h, seg + VS_START) !== start) {
    seg = w(h, seg + VS_KNEXT);
    if (!(seg > 0 && seg < h.mapped) || --k < 0) return 0;
  }
  return seg;
}

function hashRemove(h: HeapView, a: number, seg: number): void {
  let at = bucket(h, a, w(h, seg + VS_START));
  while (w(h, at) !== seg) at = w(h, at) + VS_KNEXT;
  setw(h, at, w(h, seg + VS_KNEXT));
  setw(h, a + VM_HASHCOUNT, w(h, a + VM_HASHCOUNT) - 1);
}

/** Quadruples the hash table. The root arena allocates the table from itself (its lock held). */
function hashGrow(h: HeapView, a: number): void {
  const flags = w(h, a + VM_FLAGS);
  if ((flags & VMF_HASHGROW) !== 0) return;
  setw(h, a + VM_FLAGS, flags | VMF_HASHGROW);
  try {
    const oldN = w(h, a + VM_HASHMASK) + 1, oldT = w(h, a + VM_HASH);
    const n = oldN * 4, bytes = roundUp(n * 4, PAGE_SIZE);
    const root = w(h, HDR_ROOT_ARENA);
    const t = a === root
      ? allocLocked(h, root, bytes, POLICY_INSTANT)
      : vmemAllocAddr(h, root, bytes, false);
    if (t === 0) return;
    Atomics.add(h.i32, HDR_META_BYTES >> 2, bytes);
    h.i32.fill(0, t >> 2, (t + n * 4) >> 2);
    setw(h, a + VM_HASH, t);
    setw(h, a + VM_HASHMASK, n - 1);
    for (let i = 0; i < oldN; i++) {
      let seg = w(h, oldT + i * 4);
      while (seg !== 0) {
        const next = w(h, seg + VS_KNEXT);
        const b = bucket(h, a, w(h, seg + VS_START));
        setw(h, seg + VS_KNEXT, w(h, b));
        setw(h, b, seg);
        seg = next;
      }
    }
    if (oldT !== a + VM_HASH0) {
      const oldBytes = roundUp(oldN * 4, PAGE_SIZE);
      Atomics.sub(h.i32, HDR_META_BYTES >> 2, oldBytes);
      if (a === root) freeLocked(h, root, oldT, oldBytes);
      else vmemFreeAddr(h, root, oldT, oldBytes);
    }
  } finally {
    setw(h, a + VM_FLAGS, w(h, a + VM_FLAGS) & ~VMF_HASHGROW);
  }
}

// ---- finding a segment ----

function findInstant(h: HeapView, a: number, size: number): number {
  const lo = freeListIndex(size);
  const start = (size & (size - 1)) === 0 ? lo : lo + 1;
  if (start < 32) {
    const m = w(h, a + VM_FREEMAP) & (-1 << start);
    if (m !== 0) return w(h, a + VM_FREELIST + freeListIndex(m & -m) * 4);
  }
  for (let seg = w(h, a + VM_FREELIST + lo * 4); seg !== 0; seg = w(h, seg + VS_KNEXT)) {
    if (segSize(h, seg) >= size) return seg;
  }
  return 0;
}

function findBest(h: HeapView, a: number, size: number): number {
  const map = w(h, a + VM_FREEMAP);
  for (let i = freeListIndex(size); i < 32; i++) {
    if ((map & (1 << i)) === 0) continue;
    let best = 0, bestSize = 0;
    for (let seg = w(h, a + VM_FREELIST + i * 4); seg !== 0; seg = w(h, seg + VS_KNEXT)) {
      const s = segSize(h, seg);
      if (s >= size && (best === 0 || s < bestSize)) {
        best = seg;
        bestSize = s;
        if (s === size) break;
      }
    }
    if (best !== 0) return best;
  }
  return 0;
}

/** The free segment of the lowest address that fits: a walk of the address list. */
function findFirst(h: HeapView, a: number, size: number): number {
  const sentinel = w(h, a + VM_SENTINEL);
  for (let seg = w(h, sentinel + VS_ANEXT); seg !== sentinel; seg = w(h, seg + VS_ANEXT)) {
    if (segType(h, seg) === SEG_FREE && segSize(h, seg) >= size) return seg;
  }
  return 0;
}

function findNext(h: HeapView, a: number, size: number): number {
  const rotor = w(h, a + VM_ROTOR);
  let seg = rotor;
  do {
    seg = w(h, seg + VS_ANEXT);
    if (segType(h, seg) === SEG_FREE && segSize(h, seg) >= size) return seg;
  } while (seg !== rotor);
  return 0;
}

/** The first address in `[start, end)` that meets the constraints, or -1. */
function xfit(
  start: number,
  end: number,
  size: number,
  align: number,
  phase: number,
  nocross: number,
  minaddr: number,
  maxaddr: number,
): number {
  const lo = Math.max(start, minaddr);
  const hi = maxaddr === 0 ? end : Math.min(end, maxaddr);
  let addr = roundUp(lo - phase, align) + phase;
  if (
    nocross !== 0 && Math.floor(addr / nocross) !== Math.floor((addr + size - 1) / nocross)
  ) {
    addr = roundUp(addr, nocross) + phase;
  }
  return addr + size <= hi ? addr : -1;
}

// ---- carving, allocating, freeing (arena lock held) ----

/** Allocates `[addr, addr+size)` out of the free segment `seg`. Returns the allocated seg. */
function carve(h: HeapView, a: number, seg: number, addr: number, size: number): number {
  const start = w(h, seg + VS_START), end = w(h, seg + VS_END);
  // Take the records first: running out of them must leave the arena as it was.
  const lead = addr > start ? segAlloc(h) : 0;
  let tail = 0;
  if (addr + size < end) {
    try {
      tail = segAlloc(h);
    } catch (e) {
      if (lead !== 0) segFree(h, lead);
      throw e;
    }
  }
  flRemove(h, a, seg);
  if (lead !== 0) {
    setw(h, lead + VS_START, start);
    setw(h, lead + VS_END, addr);
    setw(h, lead + VS_TYPE, SEG_FREE);
    insertAfter(h, w(h, seg + VS_APREV), lead);
    flInsert(h, a, lead);
    setw(h, seg + VS_START, addr);
  }
  if (tail !== 0) {
    setw(h, tail + VS_START, addr + size);
    setw(h, tail + VS_END, end);
    setw(h, tail + VS_TYPE, SEG_FREE);
    insertAfter(h, seg, tail);
    flInsert(h, a, tail);
    setw(h, seg + VS_END, addr + size);
  }
  setw(h, seg + VS_TYPE, SEG_ALLOC);
  addStat(h, a, VM_INUSE, size);
  addStat(h, a, VM_ALLOCS, 1);
  hashInsert(h, a, seg);
  return seg;
}

/**
 * Allocates `size` bytes (a multiple of the quantum) with the policy; imports or grows once if
 * nothing fits. Returns the address, or 0 (and counts a failure).
 */
export function allocLocked(h: HeapView, a: number, size: number, policy: number): number {
  if (policy === POLICY_DEFAULT) {
    policy = (w(h, a + VM_FLAGS) & VMF_ROOT) !== 0 ? w(h, HDR_ALLOCATOR) : POLICY_INSTANT;
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    const seg = policy === POLICY_BEST
      ? findBest(h, a, size)
      : policy === POLICY_NEXT
      ? findNext(h, a, size)
      : policy === POLICY_FIRST
      ? findFirst(h, a, size)
      : findInstant(h, a, size);
    if (seg !== 0) {
      const addr = w(h, seg + VS_START);
      const got = carve(h, a, seg, addr, size);
      if (policy === POLICY_NEXT) setw(h, a + VM_ROTOR, got);
      return addr;
    }
    if (attempt === 0 && !importSpan(h, a, size)) break;
  }
  addStat(h, a, VM_FAILS, 1);
  return 0;
}

function xallocLocked(
  h: HeapView,
  a: number,
  size: number,
  align: number,
  phase: number,
  nocross: number,
  minaddr: number,
  maxaddr: number,
): number {
  const q = w(h, a + VM_QUANTUM);
  for (let attempt = 0; attempt < 2; attempt++) {
    const map = w(h, a + VM_FREEMAP);
    for (let i = freeListIndex(size); i < 32; i++) {
      if ((map & (1 << i)) === 0) continue;
      for (let seg = w(h, a + VM_FREELIST + i * 4); seg !== 0; seg = w(h, seg + VS_KNEXT)) {
        const addr = xfit(
          w(h, seg + VS_START),
          w(h, seg + VS_END),
          size,
          align,
          phase,
          nocross,
          minaddr,
          maxaddr,
        );
        if (addr >= 0) {
          carve(h, a, seg, addr, size);
          return addr;
        }
      }
    }
    // Import only when the constraints are ones a fresh span can meet by itself.
    const free = nocross === 0 && minaddr === 0 && maxaddr === 0;
    if (attempt > 0 || !free || !importSpan(h, a, size + (align > q ? align - q : 0) + phase)) {
      break;
    }
  }
  addStat(h, a, VM_FAILS, 1);
  return 0;
}

/** Frees the segment at `addr`; returns 0, or the allocated size when `size` was wrong, or -1. */
export function freeLocked(h: HeapView, a: number, addr: number, size: number): number {
  let seg = hashFind(h, a, addr);
  if (seg === 0) return -1;
  const have = segSize(h, seg);
  if (have !== size) return have;
  hashRemove(h, a, seg);
  addStat(h, a, VM_INUSE, -size);
  addStat(h, a, VM_FREES, 1);
  setw(h, seg + VS_TYPE, SEG_FREE);
  const next = w(h, seg + VS_ANEXT);
  if (segType(h, next) === SEG_FREE) {
    flRemove(h, a, next);
    setw(h, seg + VS_END, w(h, next + VS_END));
    unlinkA(h, next);
    segDestroy(h, a, next);
  }
  const prev = w(h, seg + VS_APREV);
  if (segType(h, prev) === SEG_FREE) {
    flRemove(h, a, prev);
    setw(h, prev + VS_END, w(h, seg + VS_END));
    unlinkA(h, seg);
    segDestroy(h, a, seg);
    seg = prev;
  }
  const span = w(h, seg + VS_APREV);
  const start = w(h, seg + VS_START), end = w(h, seg + VS_END);
  if (
    w(h, span + VS_TYPE) === (SEG_SPAN | SEG_IMPORTED) && w(h, span + VS_START) === start &&
    w(h, span + VS_END) === end
  ) {
    // The span is wholly free again: give it back to the source.
    unlinkA(h, seg);
    segDestroy(h, a, seg);
    unlinkA(h, span);
    segDestroy(h, a, span);
    addStat(h, a, VM_IMPORTED, -(end - start));
    addStat(h, a, VM_TOTAL, -(end - start));
    vmemFreeAddr(h, w(h, a + VM_SOURCE), start, end - start);
  } else {
    flInsert(h, a, seg);
  }
  return 0;
}

/** Adds span `[base, base+size)` in address order, as one free segment. */
function addSpanLocked(h: HeapView, a: number, base: number, size: number, imported: boolean) {
  const sentinel = w(h, a + VM_SENTINEL);
  let after = w(h, sentinel + VS_APREV);
  // Walk back to the last segment of the last span that starts below base.
  while (after !== sentinel) {
    let span = after;
    while (segType(h, span) !== SEG_SPAN) span = w(h, span + VS_APREV);
    if (w(h, span + VS_START) < base) break;
    after = w(h, span + VS_APREV);
  }
  const span = segCreate(h, base, base + size, SEG_SPAN | (imported ? SEG_IMPORTED : 0));
  insertAfter(h, after, span);
  const seg = segCreate(h, base, base + size, SEG_FREE);
  insertAfter(h, span, seg);
  flInsert(h, a, seg);
  addStat(h, a, VM_TOTAL, size);
  if (imported) addStat(h, a, VM_IMPORTED, size);
  return span;
}

/** Imports a span of at least `size` from the source, or grows the heap for the root arena. */
function importSpan(h: HeapView, a: number, size: number): boolean {
  if ((w(h, a + VM_FLAGS) & VMF_ROOT) !== 0) return growHeap(h, a, size);
  const source = w(h, a + VM_SOURCE);
  if (source === 0) return false;
  const sq = w(h, source + VM_QUANTUM), q = w(h, a + VM_QUANTUM);
  // A span must be aligned to this arena's quantum, not only to the source's.
  const isz = roundUp(Math.max(size, w(h, a + VM_IMPORT)), Math.max(sq, q));
  const base = q > sq
    ? vmemXallocAddr(h, source, isz, q, false)
    : vmemAllocAddr(h, source, isz, false);
  if (base === 0) return false;
  addSpanLocked(h, a, base, isz, true);
  return true;
}

/** Grows the SharedArrayBuffer by at least `need` bytes and extends the root's last span. */
function growHeap(h: HeapView, a: number, need: number): boolean {
  const size = w(h, HDR_SIZE), max = w(h, HDR_MAXSIZE);
  const step = Math.max(need, Math.min(size, 64 << 20));
  const newSize = Math.min(max, roundUp(size + step, PAGE_SIZE));
  if (newSize - size < need) return false;
  try {
    if (h.sab.byteLength < newSize) h.sab.grow(newSize);
  } catch {
    return false; // the runtime refused the memory: an ordinary allocation failure
  }
  Atomics.store(h.i32, HDR_SIZE >> 2, newSize);
  h.remap();
  const span = w(h, a + VM_GROWSPAN);
  const sentinel = w(h, a + VM_SENTINEL);
  const last = w(h, sentinel + VS_APREV);
  if (span !== 0 && w(h, span + VS_END) === size) {
    setw(h, span + VS_END, newSize);
    addStat(h, a, VM_TOTAL, newSize - size);
    if (segType(h, last) === SEG_FREE && w(h, last + VS_END) === size) {
      flRemove(h, a, last);
      setw(h, last + VS_END, newSize);
      flInsert(h, a, last);
    } else {
      const seg = segCreate(h, size, newSize, SEG_FREE);
      insertAfter(h, last, seg);
      flInsert(h, a, seg);
    }
  } else {
    setw(h, a + VM_GROWSPAN, addSpanLocked(h, a, size, newSize - size, false));
  }
  return true;
}

/**
 * Allocates from arena `a` with its own policy (POLICY_DEFAULT), taking its lock; returns 0
 * on failure. For internal callers; `reserve` false when an arena lock is already held.
 */
export function vmemAllocAddr(h: HeapView, a: number, size: number, reserve = true): number {
  // No image holds more (and a size past 2^31 would wrap in the arithmetic on 32-bit words).
  if (size > MAX_IMAGE) return 0;
  // Nested calls (an import, a hash growing) run with an arena lock held: the reserve taken
  // before the outer call covers them, and refilling here could take that lock again.
  if (reserve) segReserve(h);
  lock(h, a + VM_LOCK);
  try {
    return allocLocked(h, a, roundUp(size, w(h, a + VM_QUANTUM)), POLICY_DEFAULT);
  } finally {
    unlock(h, a + VM_LOCK);
  }
}

/** Allocates `size` bytes aligned to `align` from arena `a`; returns 0 on failure. Internal. */
export function vmemXallocAddr(
  h: HeapView,
  a: number,
  size: number,
  align: number,
  reserve = true,
): number {
  if (size > MAX_IMAGE) return 0; // (as vmemAllocAddr)
  if (reserve) segReserve(h);
  lock(h, a + VM_LOCK);
  try {
    const q = w(h, a + VM_QUANTUM);
    return xallocLocked(h, a, roundUp(size, q), Math.max(align, q), 0, 0, 0, 0);
  } finally {
    unlock(h, a + VM_LOCK);
  }
}

/** Frees to arena `a`, taking its lock. For internal callers, who know the address is good. */
export function vmemFreeAddr(h: HeapView, a: number, addr: number, size: number): void {
  lock(h, a + VM_LOCK);
  let r: number;
  try {
    r = freeLocked(h, a, addr, roundUp(size, w(h, a + VM_QUANTUM)));
  } finally {
    unlock(h, a + VM_LOCK);
  }
  if (r !== 0) {
    throw new UmemError(
      "bad-free",
      `vmem_free(${arenaName(h, a)}): internal free of ${hex(addr)} (${size} bytes) failed`,
      addr,
    );
  }
}

/**
 * True when arena `a`'s memory is the heap's: it is the heap's own arena, or its sources lead
 * there (an arena over an address space of its own, ids say, has none: no slab may be laid in
 * it, and the page map says nothing of its addresses).
 */
function heapBacked(h: HeapView, a: number): boolean {
  const root = w(h, HDR_ROOT_ARENA);
  for (let k = 0; a > 0 && a < h.mapped && k < 64; k++, a = w(h, a + VM_SOURCE)) {
    if (a === root) return true;
  }
  return false;
}

/** The slab record of the heap page holding `addr`, or 0 (none, or not the heap's memory). */
function slabPageAt(h: HeapView, addr: number): number {
  return addr > 0 && addr < h.mapped ? h.i32[(h.pagemap >> 2) + (addr >>> PAGE_SHIFT)] : 0;
}

/** The names of arena `name`'s quantum caches: `<name>_<n * q>` up to `qcacheMax`, at most 16. */
function qcacheNames(name: string, q: number, qcacheMax: number): string[] {
  const n = Math.min(Math.floor(qcacheMax / q), VM_QCACHE_N);
  return Array.from({ length: n }, (_, i) => `${name}_${(i + 1) * q}`);
}

/** True when the heap has a cache named `name`. */
function cacheNamed(h: HeapView, name: string): boolean {
  return listRecords(h, HDR_CACHE_LIST, CA_NEXT).some((cp) => cacheName(h, cp) === name);
}

/**
 * Creates the quantum caches of arena `a`: `min(qcacheMax / quantum, 16)` object caches named
 * `<arena>_<n * quantum>`, whose slabs come from the arena itself.
 */
function layQcaches(h: HeapView, a: number, name: string, q: number, qcacheMax: number): void {
  const names = qcacheNames(name, q, qcacheMax), n = names.length;
  for (let i = 0; i < n; i++) {
    const cp = createCacheRecord(
      h,
      names[i],
      (i + 1) * q,
      { align: q },
      CF_QCACHE,
      a,
    );
    setw(h, a + VM_QCACHE + i * 4, cp);
    setw(h, a + VM_NQCACHE, i + 1);
  }
  setw(h, a + VM_QCACHE_MAX, n * q);
}

/** Lays an arena record at `a` and links it into the heap's arena list. */
export function layArena(
  h: HeapView,
  a: number,
  name: string,
  quantum: number,
  source: number,
  importSize: number,
  flags: number,
): void {
  h.i32.fill(0, a >> 2, (a + VM_RECORD_SIZE) >> 2);
  writeName(h, a + VM_NAME, VM_NAME_LEN, name, "vmem_create");
  setw(h, a + VM_QUANTUM, quantum);
  setw(h, a + VM_SOURCE, source);
  setw(h, a + VM_IMPORT, importSize);
  setw(h, a + VM_FLAGS, flags);
  const sentinel = segCreate(h, 0, 0, SEG_SENTINEL);
  setw(h, sentinel + VS_ANEXT, sentinel);
  setw(h, sentinel + VS_APREV, sentinel);
  setw(h, a + VM_SENTINEL, sentinel);
  setw(h, a + VM_ROTOR, sentinel);
  setw(h, a + VM_HASH, a + VM_HASH0);
  setw(h, a + VM_HASHMASK, VM_HASH0_N - 1);
  lock(h, HDR_ARENA_LOCK);
  if ((flags & VMF_ROOT) === 0) {
    // The heap's arena keeps id 0: Heap's constructor makes its handle before this runs.
    setw(h, HDR_NEXT_ARENA_ID, w(h, HDR_NEXT_ARENA_ID) + 1);
    setw(h, a + VM_ID, w(h, HDR_NEXT_ARENA_ID));
  }
  setw(h, a + VM_NEXT, w(h, HDR_ARENA_LIST));
  setw(h, HDR_ARENA_LIST, a);
  unlock(h, HDR_ARENA_LOCK);
  Atomics.store(h.i32, (a + VM_MAGIC) >> 2, VM_MAGIC_VALUE);
}

/** Lays the root arena over `[base, size)` of a new image. */
export function layRootArena(h: HeapView, base: number, size: number): void {
  const a = w(h, HDR_ROOT_ARENA);
  layArena(h, a, "heap", PAGE_SIZE, 0, 0, VMF_ROOT);
  setw(h, a + VM_GROWSPAN, addSpanLocked(h, a, base, size - base, false));
}

/**
 * A handle on a vmem arena in the heap image: `vmem_t`. The arena's state is in the buffer, so
 * any worker's handle on the same record sees the same arena.
 *
 * @example
 * ```ts
 * import { Heap, Vmem } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * const ids = Vmem.create(heap, "ids", { base: 1, size: 1000, quantum: 1 });
 * const id = ids.alloc(1);
 * console.log(id); // 1
 * ids.free(id, 1);
 * ```
 */
export class Vmem {
  /** The heap image. */
  readonly heap: HeapView;
  /** The arena record's address. */
  readonly addr: number = 0;

  /** The arena's id when this handle was made: a reused record has another. */
  private readonly id: number = 0;
  /** The arena's name, read once (only error messages use it). */
  private cachedName: string | undefined;

  /**
   * Wraps an existing arena record. Use {@linkcode Vmem.create} or `heap.vmem` instead.
   * @param heap the heap
   * @param addr the arena record's address
   */
  constructor(heap: HeapView, addr: number) {
    this.heap = heap;
    this.addr = addr;
    this.id = heap.i32[(addr + VM_ID) >> 2];
  }

  /**
   * Creates an arena, as `vmem_create`: over `[base, base+size)` when `size` is given, and/or
   * importing spans from `source`.
   *
   * @param heap the heap to create it in
   * @param name a name of at most 31 bytes
   * @param options `quantum` (a power of two, default 8), `base` and `size` of an initial
   *   span, `source` arena and `importSize` (smallest import), `qcacheMax`: sizes up to it are
   *   served by quantum caches (object caches of 1..16 quanta, with magazines, so a small
   *   allocation takes no arena lock); needs a source, since the caches write into their slabs
   * @returns the new arena
   * @throws {UmemError} `invalid-argument` for a bad name, quantum, base or size
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const sub = Vmem.create(heap, "sub", { quantum: 64, source: heap.vmem, importSize: 8192 });
   * const a = sub.alloc(100); // imports 8 KiB from the heap's arena
   * console.log(sub.stats().imported); // 8192
   * sub.free(a, 100);
   * console.log(sub.stats().imported); // 0
   * ```
   */
  static create(
    heap: HeapView,
    name: string,
    options: {
      base?: number;
      size?: number;
      quantum?: number;
      source?: Vmem;
      importSize?: number;
      qcacheMax?: number;
    } = {},
  ): Vmem {
    heap.sync();
    if (typeof options !== "object" || options === null) {
      throw new UmemError("invalid-argument", `vmem_create(${name}): options must be an object`);
    }
    if (options.source !== undefined && !(options.source instanceof Vmem)) {
      throw new UmemError("invalid-argument", `vmem_create(${name}): source must be a Vmem`);
    }
    const quantum = checkSize("vmem_create", "quantum", options.quantum ?? 8, 1, 1 << 30);
    if ((quantum & (quantum - 1)) !== 0) {
      throw new UmemError(
        "invalid-argument",
        `vmem_create(${name}): quantum ${quantum} is not a power of two`,
      );
    }
    const base = checkSize("vmem_create", "base", options.base ?? 0, 0, MAX_IMAGE);
    const size = checkSize("vmem_create", "size", options.size ?? 0, 0, MAX_IMAGE);
    const importSize = checkSize(
      "vmem_create",
      "importSize",
      options.importSize ?? 0,
      0,
      MAX_IMAGE,
    );
    if (base % quantum !== 0 || size % quantum !== 0) {
      throw new UmemError(
        "invalid-argument",
        `vmem_create(${name}): base ${
          hex(base)
        } and size ${size} must be multiples of the quantum ${quantum}`,
      );
    }
    if (size > 0) {
      // add()'s checks, made before anything is allocated.
      checkSize("vmem_create", "base", base, 1, MAX_IMAGE);
      checkSize("vmem_create", "size", size, 1, MAX_IMAGE - base);
    }
    if (options.source !== undefined) options.source.check("vmem_create");
    const qcacheMax = checkSize("vmem_create", "qcacheMax", options.qcacheMax ?? 0, 0, 1 << 30);
    if (
      qcacheMax > 0 &&
      (options.source === undefined || !heapBacked(heap, options.source.addr) || quantum < 8 ||
        quantum > PAGE_SIZE)
    ) {
      throw new UmemError(
        "invalid-argument",
        `vmem_create(${name}): quantum caches need heap memory: a source arena and a quantum of 8 to ${PAGE_SIZE}`,
      );
    }
    // Validate the name before taking memory for the record, and the quantum caches' names too:
    // a failure once they were being made left a half-made arena listed.
    if (typeof name !== "string" || name.length === 0) {
      throw new UmemError("invalid-argument", "vmem_create: name must be a non-empty string");
    }
    for (const qname of qcacheNames(name, quantum, qcacheMax)) {
      const bytes = new TextEncoder().encode(qname).length;
      if (bytes >= CA_NAME_LEN) {
        throw new UmemError(
          "invalid-argument",
          `vmem_create(${name}): its quantum cache's name '${qname}' is ${bytes} bytes (at most ${
            CA_NAME_LEN - 1
          }): a shorter name, or a smaller qcacheMax`,
        );
      }
      if (cacheNamed(heap, qname)) {
        throw new UmemError(
          "invalid-argument",
          `vmem_create(${name}): a cache named '${qname}' exists (its quantum cache's name)`,
        );
      }
    }
    const root = w(heap, HDR_ROOT_ARENA);
    const a = vmemAllocAddr(heap, root, VM_RECORD_SIZE);
    if (a === 0) throw new OutOfMemoryError(`vmem_create(${name}): no memory for the arena record`);
    Atomics.add(heap.i32, HDR_META_BYTES >> 2, roundUp(VM_RECORD_SIZE, PAGE_SIZE));
    try {
      segReserve(heap);
      layArena(heap, a, name, quantum, options.source?.addr ?? 0, importSize, 0);
    } catch (e) {
      vmemFreeAddr(heap, root, a, VM_RECORD_SIZE);
      Atomics.sub(heap.i32, HDR_META_BYTES >> 2, roundUp(VM_RECORD_SIZE, PAGE_SIZE));
      throw e;
    }
    const arena = new Vmem(heap, a);
    if (size > 0) {
      try {
        arena.add(base, size);
      } catch (e) {
        arena.destroy();
        throw e;
      }
    }
    if (qcacheMax > 0) layQcaches(heap, a, name, quantum, qcacheMax);
    return arena;
  }

  /** Throws if this arena was destroyed. */
  check(fn: string): void {
    this.heap.sync();
    if (
      w(this.heap, this.addr + VM_MAGIC) !== VM_MAGIC_VALUE ||
      w(this.heap, this.addr + VM_ID) !== this.id
    ) {
      throw new UmemError("destroyed", `${fn}: arena at ${hex(this.addr)} was destroyed`);
    }
  }

  /** The arena's name. */
  get name(): string {
    return this.cachedName ??= arenaName(this.heap, this.addr);
  }

  /** The arena's quantum. */
  get quantum(): number {
    return w(this.heap, this.addr + VM_QUANTUM);
  }

  /** Checks an allocation size and rounds it up to the quantum. */
  private checkAllocSize(fn: string, size: unknown): number {
    const s = checkSize(`${fn}(${this.name})`, "size", size, 1, MAX_IMAGE);
    return roundUp(s, this.quantum);
  }

  /**
   * Allocates `size` bytes (rounded up to the quantum), as `vmem_alloc`.
   *
   * @param size bytes, a whole number ≥ 1
   * @param policy `"instantfit"` (constant time), `"bestfit"`, `"nextfit"` or `"firstfit"`
   *   (the lowest address that fits); when absent the arena's own: instant fit, but for the
   *   heap's top arena (`heap.vmem`) the policy `UMEM_OPTIONS=allocator=` names
   * @returns the address of the segment
   * @throws {OutOfMemoryError} when nothing fits and the source (or the heap) cannot grow
   * @throws {UmemError} `invalid-argument` for a bad size or policy
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const a = heap.vmem.alloc(3 * 4096, "bestfit");
   * heap.vmem.free(a, 3 * 4096);
   * ```
   */
  alloc(size: number, policy?: VmemPolicy): number {
    this.check("vmem_alloc");
    const s = this.checkAllocSize("vmem_alloc", size);
    const h = this.heap, a = this.addr;
    const p = policy === undefined ? POLICY_DEFAULT : POLICY_NAMES.indexOf(policy);
    if (policy !== undefined && p < 0) {
      throw new UmemError(
        "invalid-argument",
        `vmem_alloc(${this.name}): unknown policy '${policy}'`,
      );
    }
    // A size the quantum caches serve comes from them whatever the policy, as libumem's
    // vmem_alloc: free sends it back there (it had been taken from the arena itself, and free
    // then refused it).
    if (s <= w(h, a + VM_QCACHE_MAX)) {
      return cacheAlloc(h, w(h, a + VM_QCACHE + (s / w(h, a + VM_QUANTUM) - 1) * 4));
    }
    segReserve(h);
    lock(h, this.addr + VM_LOCK);
    let addr: number;
    try {
      addr = allocLocked(h, this.addr, s, p);
    } finally {
      unlock(h, this.addr + VM_LOCK);
    }
    if (addr === 0) {
      throw new OutOfMemoryError(
        `vmem_alloc(${this.name}): no ${s} bytes free (${
          policy ?? "its own policy"
        }); the arena and its source are exhausted`,
      );
    }
    return addr;
  }

  /**
   * Allocates with constraints, as `vmem_xalloc`: the result is `phase` modulo `align`,
   * `[addr, addr+size)` does not cross a multiple of `nocross`, and it lies in
   * `[minaddr, maxaddr)`.
   *
   * @param size bytes, a multiple of the quantum
   * @param c the constraints; each a multiple of the quantum
   * @returns the address
   * @throws {UmemError} `invalid-argument` for bad or overconstrained parameters
   * @throws {OutOfMemoryError} when no free address meets them
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const a = heap.vmem.xalloc(4096, { align: 65536, phase: 4096 });
   * console.log(a % 65536); // 4096
   * heap.vmem.xfree(a, 4096);
   * ```
   */
  xalloc(size: number, c: XallocConstraints = {}): number {
    this.check("vmem_xalloc");
    const fn = `vmem_xalloc(${this.name})`;
    if (typeof c !== "object" || c === null) {
      throw new UmemError("invalid-argument", `${fn}: constraints must be an object`);
    }
    const q = this.quantum;
    const s = checkSize(fn, "size", size, 1, MAX_IMAGE);
    const align = checkSize(fn, "align", c.align ?? q, 1, 1 << 30);
    const phase = checkSize(fn, "phase", c.phase ?? 0, 0, MAX_IMAGE);
    const nocross = checkSize(fn, "nocross", c.nocross ?? 0, 0, 1 << 30);
    const minaddr = checkSize(fn, "minaddr", c.minaddr ?? 0, 0, MAX_IMAGE);
    const maxaddr = checkSize(fn, "maxaddr", c.maxaddr ?? 0, 0, MAX_IMAGE);
    const bad = (why: string) => new UmemError("invalid-argument", `${fn}: ${why}`);
    for (
      const [what, v] of [["size", s], ["align", align], ["phase", phase], [
        "nocross",
        nocross,
      ]] as const
    ) {
      if (v % q !== 0) throw bad(`${what} ${v} is not a multiple of the quantum ${q}`);
    }
    if ((align & (align - 1)) !== 0) throw bad(`align ${align} is not a power of two`);
    if (phase >= align) throw bad(`invalid phase ${phase} (align ${align})`);
    if (nocross !== 0) {
      if ((nocross & (nocross - 1)) !== 0) throw bad(`nocross ${nocross} is not a power of two`);
      if (nocross < align || roundUp(phase + s, align) > nocross) {
        throw bad(
          `overconstrained allocation: size ${s} phase ${phase} align ${align} nocross ${nocross}`,
        );
      }
    }
    if (maxaddr !== 0 && minaddr + s > maxaddr) {
      throw bad(
        `overconstrained allocation: [${hex(minaddr)}, ${hex(maxaddr)}) cannot hold ${s} bytes`,
      );
    }
    const h = this.heap;
    segReserve(h);
    lock(h, this.addr + VM_LOCK);
    let addr: number;
    try {
      addr = xallocLocked(h, this.addr, s, align, phase, nocross, minaddr, maxaddr);
    } finally {
      unlock(h, this.addr + VM_LOCK);
    }
    if (addr === 0) {
      throw new OutOfMemoryError(`${fn}: no ${s} bytes free that meet the constraints`);
    }
    return addr;
  }

  /**
   * Frees a segment, as `vmem_free`: `addr` and `size` must be those of an allocation.
   *
   * @param addr the address `alloc` returned
   * @param size the size given to `alloc`
   * @throws {UmemError} `bad-free` (not allocated here), `duplicate-free` (already free),
   *   `wrong-size` (size differs from the allocation's)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const a = heap.vmem.alloc(4096);
   * heap.vmem.free(a, 4096);
   * ```
   */
  free(addr: number, size: number): void {
    this.check("vmem_free");
    const s = this.checkAllocSize("vmem_free", size);
    const h = this.heap, a = this.addr;
    if (s <= w(h, a + VM_QCACHE_MAX)) {
      cacheFree(h, w(h, a + VM_QCACHE + (s / w(h, a + VM_QUANTUM) - 1) * 4), addr, "vmem_free");
      return;
    }
    this.freeSegment(addr, s);
  }

  /** Frees a segment to the arena itself, bypassing the quantum caches. */
  private freeSegment(addr: number, s: number): void {
    const fn = `vmem_free(${this.name})`;
    checkSize(fn, "address", addr, 0, MAX_IMAGE);
    const h = this.heap, a = this.addr;
    // A cache's slab (a quantum cache's, a size class's) is this arena's segment too, but only
    // its cache gives it back: freed here, its memory would be handed out again under the cache.
    const sb = heapBacked(h, a) ? slabPageAt(h, addr) : 0;
    if (sb !== 0) {
      throw new UmemError(
        "bad-free",
        `${fn}: bad free: ${hex(addr)} is the memory of a slab of cache ${
          cacheName(h, w(h, sb + SB_CACHE))
        }; its buffers are freed to the cache`,
        addr,
      );
    }
    segReserve(h);
    lock(h, a + VM_LOCK);
    let r: number;
    try {
      r = freeLocked(h, a, addr, s);
      if (r < 0) r = -1 - this.containingType(addr);
    } finally {
      unlock(h, a + VM_LOCK);
    }
    if (r === 0) return;
    if (r > 0) {
      throw new UmemError(
        "wrong-size",
        `${fn}: bad free: free size (${s}) != alloc size (${r}) at ${hex(addr)}`,
        addr,
      );
    }
    const t = -1 - r;
    if (t === SEG_FREE) {
      throw new UmemError(
        "duplicate-free",
        `${fn}: duplicate free: ${hex(addr)} is already free`,
        addr,
      );
    }
    throw new UmemError(
      "bad-free",
      t === SEG_ALLOC
        ? `${fn}: bad free: ${hex(addr)} is inside an allocated segment but not at its start`
        : `${fn}: invalid free: ${hex(addr)} is not in any span of this arena`,
      addr,
    );
  }

  /** The type of the segment containing `addr` (scan; for error reports). Lock held. */
  private containingType(addr: number): number {
    const h = this.heap, sentinel = w(h, this.addr + VM_SENTINEL);
    for (let s = w(h, sentinel + VS_ANEXT); s !== sentinel; s = w(h, s + VS_ANEXT)) {
      const t = segType(h, s);
      if (t !== SEG_SPAN && w(h, s + VS_START) <= addr && addr < w(h, s + VS_END)) return t;
    }
    return 0;
  }

  /**
   * Frees a segment from {@linkcode Vmem.xalloc}, as `vmem_xfree`.
   *
   * @param addr the address `xalloc` returned
   * @param size the size given to `xalloc`
   * @throws {UmemError} as {@linkcode Vmem.free}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.vmem.xfree(heap.vmem.xalloc(8192, { align: 8192 }), 8192);
   * ```
   */
  xfree(addr: number, size: number): void {
    this.check("vmem_xfree");
    this.freeSegment(addr, this.checkAllocSize("vmem_xfree", size));
  }

  /**
   * Adds the span `[base, base+size)` to the arena, as `vmem_add`.
   *
   * @param base first address, a multiple of the quantum, not 0 (NULL is never handed out)
   * @param size bytes, a multiple of the quantum
   * @throws {UmemError} `invalid-argument` for misaligned bounds or a span overlapping another
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const ports = Vmem.create(heap, "ports", { quantum: 1 });
   * ports.add(1024, 64);
   * console.log(ports.stats().total); // 64
   * ```
   */
  add(base: number, size: number): void {
    this.check("vmem_add");
    const fn = `vmem_add(${this.name})`;
    // 0 is NULL: an arena never hands it out, so no span may contain it.
    checkSize(fn, "base", base, 1, MAX_IMAGE);
    checkSize(fn, "size", size, 1, MAX_IMAGE - base);
    const q = this.quantum, h = this.heap, a = this.addr;
    if (base % q !== 0 || size % q !== 0) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: span ${hex(base)}+${size} is not aligned to the quantum ${q}`,
      );
    }
    if ((w(h, a + VM_FLAGS) & VMF_ROOT) !== 0) {
      throw new UmemError("invalid-argument", `${fn}: the heap's arena grows by itself`);
    }
    segReserve(h);
    lock(h, a + VM_LOCK);
    try {
      const sentinel = w(h, a + VM_SENTINEL);
      for (let s = w(h, sentinel + VS_ANEXT); s !== sentinel; s = w(h, s + VS_ANEXT)) {
        if (segType(h, s) !== SEG_SPAN) continue;
        if (w(h, s + VS_START) < base + size && base < w(h, s + VS_END)) {
          throw new UmemError(
            "invalid-argument",
            `${fn}: span ${hex(base)}+${size} overlaps span ${hex(w(h, s + VS_START))}+${
              segSize(h, s)
            }`,
          );
        }
      }
      addSpanLocked(h, a, base, size, false);
    } finally {
      unlock(h, a + VM_LOCK);
    }
  }

  /**
   * Every span and segment in address order, as `vmem_walk`.
   *
   * @returns the segments; a `span` entry precedes the segments that tile it
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const a = Vmem.create(heap, "a", { base: 64, size: 64, quantum: 8 });
   * a.alloc(16);
   * console.log(a.walk().map((s) => `${s.type}:${s.size}`).join(" ")); // span:64 alloc:16 free:48
   * ```
   */
  walk(): VmemSegment[] {
    this.check("vmem_walk");
    const h = this.heap, a = this.addr, out: VmemSegment[] = [];
    lock(h, a + VM_LOCK);
    try {
      const sentinel = w(h, a + VM_SENTINEL);
      for (let s = w(h, sentinel + VS_ANEXT); s !== sentinel; s = w(h, s + VS_ANEXT)) {
        const t = w(h, s + VS_TYPE);
        out.push({
          type: (t & SEG_TYPE_MASK) === SEG_SPAN
            ? "span"
            : (t & SEG_TYPE_MASK) === SEG_FREE
            ? "free"
            : "alloc",
          start: w(h, s + VS_START),
          size: segSize(h, s),
          imported: (t & SEG_IMPORTED) !== 0,
        });
      }
    } finally {
      unlock(h, a + VM_LOCK);
    }
    return out;
  }

  /**
   * The arena's statistics.
   *
   * @returns bytes in use, imported and total, and the counts of allocs, frees and failures
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * heap.vmem.alloc(4096);
   * console.log(heap.vmem.stats().allocs >= 1); // true
   * ```
   */
  stats(): VmemStats {
    this.check("vmem_stats");
    return arenaStats(this.heap, this.addr);
  }

  /**
   * Destroys the arena, as `vmem_destroy`: gives every imported span back to the source and
   * reports what was still allocated. The handle (and every other worker's) is dead after.
   *
   * @returns what leaked; `message` reads `vmem_destroy('NAME'): leaked N bytes`
   * @throws {UmemError} `invalid-argument` for the heap's own arena
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const a = Vmem.create(heap, "a", { base: 4096, size: 4096, quantum: 8 });
   * a.alloc(24);
   * console.log(a.destroy().message); // vmem_destroy('a'): leaked 24 bytes
   * ```
   */
  destroy(): VmemLeakReport {
    this.check("vmem_destroy");
    const h = this.heap, a = this.addr, name = this.name;
    if ((w(h, a + VM_FLAGS) & VMF_ROOT) !== 0) {
      throw new UmemError(
        "invalid-argument",
        "vmem_destroy(heap): the heap's arena cannot be destroyed",
      );
    }
    // An arena that imports from this one would go on with spans of a dead record.
    const importer = listRecords(h, HDR_ARENA_LIST, VM_NEXT).find((b) =>
      b !== a && w(h, b + VM_MAGIC) === VM_MAGIC_VALUE && w(h, b + VM_SOURCE) === a
    );
    if (importer !== undefined) {
      throw new UmemError(
        "invalid-argument",
        `vmem_destroy(${name}): arena ${
          arenaName(h, importer)
        } imports from it; destroy that first`,
      );
    }
    // The quantum caches go first; what they still had allocated counts as leaked.
    let qleaked = 0, qsegs = 0;
    const nq = w(h, a + VM_NQCACHE), q = w(h, a + VM_QUANTUM);
    for (let i = 0; i < nq; i++) {
      const n = destroyCacheRecord(h, w(h, a + VM_QCACHE + i * 4));
      qleaked += n * (i + 1) * q;
      qsegs += n;
    }
    setw(h, a + VM_QCACHE_MAX, 0);
    setw(h, a + VM_NQCACHE, 0);
    lock(h, HDR_ARENA_LOCK);
    let at = HDR_ARENA_LIST;
    while (w(h, at) !== a && w(h, at) !== 0) at = w(h, at) + VM_NEXT;
    if (w(h, at) === a) setw(h, at, w(h, a + VM_NEXT));
    unlock(h, HDR_ARENA_LOCK);
    lock(h, a + VM_LOCK);
    let leakedBytes = qleaked, leakedSegments = qsegs;
    const spans: [number, number][] = [];
    try {
      Atomics.store(h.i32, (a + VM_MAGIC) >> 2, 0);
      const sentinel = w(h, a + VM_SENTINEL);
      let s = w(h, sentinel + VS_ANEXT);
      while (s !== sentinel) {
        const next = w(h, s + VS_ANEXT);
        const t = w(h, s + VS_TYPE);
        if ((t & SEG_TYPE_MASK) === SEG_ALLOC) {
          leakedBytes += segSize(h, s);
          leakedSegments++;
        }
        if (t === (SEG_SPAN | SEG_IMPORTED)) spans.push([w(h, s + VS_START), segSize(h, s)]);
        segFree(h, s);
        s = next;
      }
      segFree(h, sentinel);
      const t = w(h, a + VM_HASH);
      if (t !== a + VM_HASH0) {
        const bytes = roundUp((w(h, a + VM_HASHMASK) + 1) * 4, PAGE_SIZE);
        vmemFreeAddr(h, w(h, HDR_ROOT_ARENA), t, bytes);
        Atomics.sub(h.i32, HDR_META_BYTES >> 2, bytes);
      }
    } finally {
      unlock(h, a + VM_LOCK);
    }
    const source = w(h, a + VM_SOURCE);
    for (const [base, size] of spans) vmemFreeAddr(h, source, base, size);
    vmemFreeAddr(h, w(h, HDR_ROOT_ARENA), a, VM_RECORD_SIZE);
    Atomics.sub(h.i32, HDR_META_BYTES >> 2, roundUp(VM_RECORD_SIZE, PAGE_SIZE));
    return {
      leakedBytes,
      leakedSegments,
      message: leakedBytes > 0 ? `vmem_destroy('${name}'): leaked ${leakedBytes} bytes` : "",
    };
  }
}

/** Reads an arena's statistics from the image (no lock: a consistent-enough snapshot). */
export function arenaStats(h: HeapView, a: number): VmemStats {
  const f = (field: number) => h.f64[(a + field) >> 3];
  return {
    name: arenaName(h, a),
    quantum: w(h, a + VM_QUANTUM),
    inUse: f(VM_INUSE),
    imported: f(VM_IMPORTED),
    total: f(VM_TOTAL),
    allocs: f(VM_ALLOCS),
    frees: f(VM_FREES),
    failures: f(VM_FAILS),
  };
}
