/**
 * Conservative marking (Boehm, Demers and Weiser): every aligned word of a scanned object that
 * points at, or into, an allocated collector object keeps that object alive.
 *
 * Theory. A candidate word `v` is checked in constant time: it must fall in the heap's arena;
 * the core's page map names the slab of its page; the slab's cache must be one of the
 * collector's, of a collectable kind (its byte in the kind table); `v - SB_BASE` gives the
 * granule, and the slab's state bytes give the object's first granule (a granule marked
 * `BUF_INTERIOR` is inside an object; the size classes keep the start at most two granules
 * back). The object must be allocated (`BUF_ALLOC`, not free, not sitting in a magazine). Its
 * mark bit is the high bit of that state byte (`BUF_MARK`). A newly marked object of a scanned
 * kind is pushed on an explicit *mark stack* in the heap, as a pair (start, end): no recursion,
 * so a list of a million nodes needs one entry, not a million frames.
 *
 * Overflow. When the stack is full, the object is marked but not pushed, and an overflow flag
 * is raised. Once the stack drains, the marker rescans the heap: every marked object of a
 * scanned kind is scanned again, which reaches whatever a dropped push would have; this repeats
 * until a pass ends without overflow (Boehm's approach). The collector then doubles the stack
 * for the next collection.
 *
 * A mistake only retains memory: a number that looks like a pointer keeps an object alive, but
 * nothing reachable is ever missed, because every word of every reachable scanned object is
 * looked at. Atomic objects are marked but never scanned; uncollectable objects are never
 * marked: they are scanned once, as roots. A word that falls in no slab may point into a large
 * object (large.ts): found by binary search in the collector's table, marked in its entry.
 *
 * Invariants. Runs only while the world is stopped (the caller holds `GC_BUSY` and every
 * mutator is parked or outside). The fast paths keep local copies of the core's layout
 * constants (V8 does not fold an imported constant), checked against the declarations in the
 * constructor.
 *
 * Lock order: none; nothing here locks.
 *
 * @module
 */
import {
  BUF_ALLOC,
  BUF_DEFER,
  BUF_INTERIOR,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_ID,
  CA_NCHUNKS,
  CA_SHIFT,
  HDR_META,
  PAGE_SHIFT,
  SB_BASE,
  SB_CACHE,
  SB_START,
  SB_STATE,
} from "../core/internal.ts";
import type { HeapView } from "../core/mod.ts";
import {
  BUF_MARK,
  GC_KINDS,
  GC_LARGE,
  GC_LARGE_COUNT,
  KIND_ATOMIC,
  KIND_NORMAL,
  KIND_TABLE_BYTES,
  KIND_UNCOLLECTABLE,
} from "./layout.ts";
import { largeIndex, LO_W_BYTES, LO_W_KIND, LO_W_MARK, LO_W_START, LO_WORDS } from "./large.ts";

// Local copies of the layout, for the marker's inner loop (checked in the constructor).
const L_SB_CACHE = 0, L_SB_BASE = 4, L_SB_STATE = 40, L_CA_ID = 124, L_CA_SHIFT = 128;
const L_CA_CHUNK = 52, L_CA_NCHUNKS = 60, L_CA_BUFSIZE = 44, L_PAGE_SHIFT = 12;
const L_ALLOC = 1, L_INTERIOR = 3, L_MARK = 0x80, L_NORMAL = 1, L_ATOMIC = 2, L_DEFER = 0x40;
const L_KT = 4096;

/** The marker of one collection. */
export class Marker {
  /** Word view of the heap at the start of the collection. */
  readonly i32: Int32Array;
  /** Byte view. */
  readonly u8: Uint8Array;
  /** Lowest address a pointer may have: the start of the heap's arena. */
  readonly lo: number = 0;
  /** One past the highest: the bytes mapped. */
  readonly hi: number = 0;
  /** Word index of the page map. */
  readonly pm: number = 0;
  /** Address of the kind table. */
  readonly kt: number = 0;
  /** Word index of the mark stack. */
  stack: number = 0;
  /** Entries the mark stack holds. */
  cap: number = 0;
  /** Entries on the stack. */
  sp = 0;
  /** A push was dropped since the last rescan. */
  overflow = false;
  /** Only pointers to an object's first byte count. */
  readonly baseOnly: boolean = false;
  /** Objects marked. */
  objects = 0;
  /** Bytes of the objects marked. */
  bytes = 0;
  /** Rescans after an overflow. */
  rescans = 0;
  /** Address of the large-object table. */
  readonly lt: number = 0;
  /** Large objects listed. */
  readonly ln: number = 0;

  /**
   * Prepares to mark: views, bounds, the mark stack.
   *
   * @param h the heap (synced)
   * @param rec the collector record
   * @param stack the mark stack's address
   * @param cap its entries
   * @param baseOnly whether only base pointers count
   */
  constructor(h: HeapView, rec: number, stack: number, cap: number, baseOnly: boolean) {
    if (
      L_SB_CACHE !== SB_CACHE || L_SB_BASE !== SB_BASE || L_SB_STATE !== SB_STATE ||
      L_CA_ID !== CA_ID || L_CA_SHIFT !== CA_SHIFT || L_CA_CHUNK !== CA_CHUNK ||
      L_CA_NCHUNKS !== CA_NCHUNKS || L_CA_BUFSIZE !== CA_BUFSIZE || L_PAGE_SHIFT !== PAGE_SHIFT ||
      L_ALLOC !== BUF_ALLOC || L_INTERIOR !== BUF_INTERIOR || L_MARK !== BUF_MARK ||
      L_DEFER !== BUF_DEFER ||
      L_NORMAL !== KIND_NORMAL || L_ATOMIC !== KIND_ATOMIC || L_KT !== KIND_TABLE_BYTES
    ) {
      throw new Error("gc/mark.ts: the marker's copies of the layout are out of date");
    }
    this.i32 = h.i32;
    this.u8 = h.u8;
    this.lo = h.i32[HDR_META >> 2];
    this.hi = h.mapped;
    this.pm = h.pagemap >> 2;
    this.kt = rec + GC_KINDS;
    this.stack = stack >> 2;
    this.cap = cap;
    this.baseOnly = baseOnly;
    this.lt = h.i32[(rec + GC_LARGE) >> 2];
    this.ln = this.lt === 0 ? 0 : h.i32[(rec + GC_LARGE_COUNT) >> 2];
  }

  /**
   * Marks the object `v` points at or into, if it is an unmarked, allocated, collectable
   * collector object, and pushes it when its kind is scanned.
   *
   * @param v a candidate word
   */
  candidate(v: number): void {
    if (v < this.lo || v >= this.hi) return;
    if (this.ln !== 0 && this.i32[this.pm + (v >>> L_PAGE_SHIFT)] === 0) this.largeCandidate(v);
    else this.slabCandidate(v);
  }

  /**
   * The candidate test for a word in the heap, as far as slabs go (a word in no slab is
   * dropped): the marker's inner loop.
   *
   * @param v a candidate word, in `[lo, hi)`
   */
  slabCandidate(v: number): void {
    const i32 = this.i32, u8 = this.u8;
    const sb = i32[this.pm + (v >>> L_PAGE_SHIFT)];
    if (sb === 0) return;
    const cp = i32[(sb + L_SB_CACHE) >> 2];
    const id = i32[(cp + L_CA_ID) >> 2];
    if (id >= L_KT) return;
    const kind = u8[this.kt + id];
    if (kind !== L_NORMAL && kind !== L_ATOMIC) return;
    const base = i32[(sb + L_SB_BASE) >> 2];
    const off = v - base;
    if (off < 0 || off >= i32[(cp + L_CA_NCHUNKS) >> 2] * i32[(cp + L_CA_CHUNK) >> 2]) return;
    const shift = i32[(cp + L_CA_SHIFT) >> 2];
    let at = sb + L_SB_STATE + (off >> shift);
    let s = u8[at];
    if (s === L_INTERIOR) {
      if (this.baseOnly === true) return;
      do at--; while (u8[at] === L_INTERIOR);
      s = u8[at];
    } else if (this.baseOnly === true && (off & ((1 << shift) - 1)) !== 0) return;
    // An object whose free was once deferred (core/magazine.ts) is allocated too: the world is
    // stopped and every deferred free settled. Marking drops the flag.
    if ((s & ~L_DEFER) !== L_ALLOC) return;
    u8[at] = L_ALLOC | L_MARK;
    const size = i32[(cp + L_CA_BUFSIZE) >> 2];
    this.objects++;
    this.bytes += size;
    if (kind === L_ATOMIC) return;
    const start = base + ((at - sb - L_SB_STATE) << shift);
    const sp = this.sp;
    if (sp === this.cap) {
      this.overflow = true;
      return;
    }
    const e = this.stack + sp * 2;
    i32[e] = start;
    i32[e + 1] = start + size;
    this.sp = sp + 1;
  }

  /**
   * The candidate test for a word in no slab: a large object's span, found by binary search.
   *
   * @param v a candidate word
   */
  largeCandidate(v: number): void {
    const i = largeIndex(this.i32, this.lt, this.ln, v, !this.baseOnly);
    if (i < 0) return;
    const e = (this.lt >> 2) + i * LO_WORDS, i32 = this.i32;
    const kind = i32[e + LO_W_KIND];
    if ((kind !== L_NORMAL && kind !== L_ATOMIC) || i32[e + LO_W_MARK] !== 0) return;
    i32[e + LO_W_MARK] = 1;
    const start = i32[e + LO_W_START], bytes = i32[e + LO_W_BYTES];
    this.objects++;
    this.bytes += bytes;
    if (kind === L_ATOMIC) return;
    if (this.sp === this.cap) {
      this.overflow = true;
      return;
    }
    const at = this.stack + this.sp * 2;
    i32[at] = start;
    i32[at + 1] = start + bytes;
    this.sp++;
  }

  /**
   * Calls `f` for each large object with its table entry's word index.
   *
   * @param f the visitor, given the object's first byte, bytes, kind and entry
   */
  eachLarge(f: (p: number, bytes: number, kind: number, e: number) => void): void {
    const i32 = this.i32;
    for (let i = 0; i < this.ln; i++) {
      const e = (this.lt >> 2) + i * LO_WORDS;
      f(i32[e + LO_W_START], i32[e + LO_W_BYTES], i32[e + LO_W_KIND], e);
    }
  }

  /** The word index of the entry of the large object starting at `p`, or -1. */
  private largeEntry(p: number): number {
    if (this.ln === 0) return -1;
    const i = largeIndex(this.i32, this.lt, this.ln, p, false);
    return i < 0 ? -1 : (this.lt >> 2) + i * LO_WORDS;
  }

  /**
   * Looks at every aligned word of `[from, to)` as a candidate.
   *
   * @param from first byte
   * @param to one past the last
   */
  scan(from: number, to: number): void {
    const i32 = this.i32, lo = this.lo, hi = this.hi;
    const end = Math.min(to, this.hi) >> 2;
    if (this.ln === 0) {
      for (let i = (from + 3) >> 2; i < end; i++) {
        const v = i32[i];
        if (v >= lo && v < hi) this.slabCandidate(v);
      }
    } else {
      for (let i = (from + 3) >> 2; i < end; i++) {
        const v = i32[i];
        if (v >= lo && v < hi) this.candidate(v);
      }
    }
  }

  /** Pops and scans until the mark stack is empty. */
  drain(): void {
    const i32 = this.i32;
    while (this.sp > 0) {
      const e = this.stack + (--this.sp) * 2;
      this.scan(i32[e], i32[e + 1]);
    }
  }

  /**
   * Drains, then rescans marked objects as long as pushes were dropped.
   */
  finish(): void {
    this.drain();
    while (this.overflow) {
      this.overflow = false;
      this.rescans++;
      this.eachSlab((sb, cp, kind) => {
        if (kind !== KIND_NORMAL) return;
        this.eachObject(sb, cp, L_ALLOC | L_MARK, (p, size) => {
          this.scan(p, p + size);
          this.drain();
        });
      });
      this.eachLarge((p, bytes, kind, e) => {
        if (kind !== KIND_NORMAL || this.i32[e + LO_W_MARK] === 0) return;
        this.scan(p, p + bytes);
        this.drain();
      });
    }
  }

  /**
   * Whether the object starting at `p` is marked, or is not a collectable object at all (an
   * uncollectable one is a root: never unreachable, so never made ready for its finalizer).
   *
   * @param p an object's first byte
   * @returns whether its mark bit is set
   */
  isMarked(p: number): boolean {
    const kind = this.kindOf(p);
    if (kind !== KIND_NORMAL && kind !== KIND_ATOMIC) return true;
    const at = this.stateAt(p);
    if (at >= 0) return (this.u8[at] & L_MARK) !== 0;
    const e = this.largeEntry(p);
    return e < 0 || this.i32[e + LO_W_MARK] !== 0;
  }

  /**
   * Marks the object starting at `p` (allocated, unmarked) without scanning it.
   *
   * @param p an object's first byte
   */
  setMark(p: number): void {
    const at = this.stateAt(p);
    // As candidate's marking: the flag of a once-deferred free goes (the sweep knows a marked
    // object by its whole state byte).
    if (at >= 0) {
      if ((this.u8[at] & ~L_DEFER) === L_ALLOC) this.u8[at] = L_ALLOC | L_MARK;
    } else {
      const e = this.largeEntry(p);
      if (e >= 0) this.i32[e + LO_W_MARK] = 1;
    }
  }

  /**
   * The address of the state byte of the object starting at `p`, or -1.
   *
   * @param p an object's first byte
   * @returns the state byte's address, or -1
   */
  stateAt(p: number): number {
    if (p < this.lo || p >= this.hi) return -1;
    const sb = this.i32[this.pm + (p >>> L_PAGE_SHIFT)];
    if (sb === 0) return -1;
    const cp = this.i32[(sb + L_SB_CACHE) >> 2];
    const off = p - this.i32[(sb + L_SB_BASE) >> 2];
    return off < 0 ? -1 : sb + L_SB_STATE + (off >> this.i32[(cp + L_CA_SHIFT) >> 2]);
  }

  /**
   * The size of the objects of the cache holding `p` (0 when `p` is in no slab).
   *
   * @param p an address
   * @returns the cache's buffer size
   */
  sizeOf(p: number): number {
    if (p < this.lo || p >= this.hi) return 0;
    const sb = this.i32[this.pm + (p >>> L_PAGE_SHIFT)];
    if (sb !== 0) return this.i32[(this.i32[(sb + L_SB_CACHE) >> 2] + L_CA_BUFSIZE) >> 2];
    const e = this.largeEntry(p);
    return e < 0 ? 0 : this.i32[e + LO_W_BYTES];
  }

  /**
   * The kind of the cache holding `p` (`KIND_*`).
   *
   * @param p an address
   * @returns its kind, 0 when not a collector cache
   */
  kindOf(p: number): number {
    if (p < this.lo || p >= this.hi) return 0;
    const sb = this.i32[this.pm + (p >>> L_PAGE_SHIFT)];
    if (sb === 0) {
      const e = this.largeEntry(p);
      return e < 0 ? 0 : this.i32[e + LO_W_KIND];
    }
    const id = this.i32[(this.i32[(sb + L_SB_CACHE) >> 2] + L_CA_ID) >> 2];
    return id < L_KT ? this.u8[this.kt + id] : 0;
  }

  /**
   * Calls `f` for each slab of a collector cache, found through the page map (each slab once,
   * at its first page), with the slab, its cache and the cache's kind.
   *
   * @param f the visitor
   */
  eachSlab(f: (sb: number, cp: number, kind: number) => void): void {
    const i32 = this.i32, u8 = this.u8;
    for (let p = this.lo >>> L_PAGE_SHIFT, end = this.hi >>> L_PAGE_SHIFT; p < end; p++) {
      const sb = i32[this.pm + p];
      if (sb === 0 || i32[(sb + SB_START) >> 2] >>> L_PAGE_SHIFT !== p) continue;
      const cp = i32[(sb + L_SB_CACHE) >> 2];
      const id = i32[(cp + L_CA_ID) >> 2];
      const kind = id < L_KT ? u8[this.kt + id] : 0;
      if (kind !== 0) f(sb, cp, kind);
    }
  }

  /**
   * Calls `f` for each object of slab `sb` whose state byte is `state`.
   *
   * @param sb the slab
   * @param cp its cache
   * @param state the state byte wanted (an allocated object's deferral flag is not counted)
   * @param f the visitor, given the object's first byte and its size
   */
  eachObject(
    sb: number,
    cp: number,
    state: number,
    f: (p: number, size: number, at: number) => void,
  ): void {
    const i32 = this.i32, u8 = this.u8;
    const n = i32[(cp + L_CA_NCHUNKS) >> 2], chunk = i32[(cp + L_CA_CHUNK) >> 2];
    const shift = i32[(cp + L_CA_SHIFT) >> 2], size = i32[(cp + L_CA_BUFSIZE) >> 2];
    const base = i32[(sb + L_SB_BASE) >> 2];
    for (let k = 0, off = 0; k < n; k++, off += chunk) {
      const at = sb + L_SB_STATE + (off >> shift);
      if ((u8[at] & ~L_DEFER) === state) f(base + off, size, at);
    }
  }

  /** Scans every allocated uncollectable object: they are roots. */
  scanUncollectable(): void {
    this.eachSlab((sb, cp, kind) => {
      if (kind !== KIND_UNCOLLECTABLE) return;
      this.eachObject(sb, cp, L_ALLOC, (p, size) => {
        this.scan(p, p + size);
        this.drain();
      });
    });
    this.eachLarge((p, bytes, kind) => {
      if (kind !== KIND_UNCOLLECTABLE) return;
      this.scan(p, p + bytes);
      this.drain();
    });
  }
}
