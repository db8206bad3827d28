/**
 * Blocks and segments: the boundary-tag store every method of a region builds on.
 *
 * Theory. Each segment the discipline gives is tiled by blocks from `SG_FIRST` to a sentinel
 * (a busy block of size 0). A block's header holds its size and flags; a free block also holds
 * its size in its last word, so that freeing the block after it can find it and coalesce
 * (Knuth's boundary tags). Free blocks live in the splay tree (region/splay.ts), except the
 * *wilderness*, the free block that ends the newest segment, which is kept aside and used only
 * when the tree has nothing that fits, and is the block that grows when the discipline extends
 * the segment in place (Vmalloc's Vmbest; Korn and Vo's wilderness preservation). A freed block
 * is not merged at once: it becomes *junk* on an exact-size list (or the list of big junk) and
 * keeps its busy flag, so the next request of that size takes it back in a few loads; any other
 * request first *reclaims* the junk, coalescing each block with its free neighbours.
 *
 * Invariants (between calls).
 * - In each segment the block sizes add up from `SG_FIRST` to the sentinel; every size is a
 *   multiple of 8 and at least `MIN_BLOCK`.
 * - A block is free iff `F_BUSY` is clear; a free block's footer equals its size and the next
 *   block has `F_PFREE`; no two free blocks are adjacent.
 * - Every free block is in the tree, except `RG_WILD`, which ends the newest segment (`RG_SEGS`).
 * - A junk block has `F_BUSY | F_JUNK`, check key `K_JUNK`, and is on exactly one junk list.
 * - `RG_NBUSY`, `RG_SBUSY` count the blocks with check key `K_BUSY` and their sizes.
 *
 * Lock order: everything here runs under the region lock (region.ts), or in a trusted region.
 *
 * @module
 */
import { UmemError } from "../core/mod.ts";
import type { Discipline } from "./discipline.ts";
import {
  BK_CHECK,
  BK_HDR,
  CACHE_MAX_BLOCK,
  F_BUSY,
  F_JUNK,
  F_PFREE,
  JB_NEXT,
  K_BUSY,
  K_FREE,
  K_JUNK,
  K_POOLFREE,
  K_SENTINEL,
  MIN_BLOCK,
  NCACHE,
  RG_CACHE,
  RG_EXTENT,
  RG_JUNK,
  RG_LAST,
  RG_MAXBUSY,
  RG_NBUSY,
  RG_POOLFREE,
  RG_POOLSIZE,
  RG_ROOT,
  RG_SBUSY,
  RG_SEGS,
  RG_WILD,
  roundUp,
  SENTINEL,
  SG_FIRST,
  SG_HDR,
  SG_MAGIC,
  SG_MAGIC_VALUE,
  SG_NEXT,
  SG_SIZE,
  SIZE_MASK,
} from "./layout.ts";
import { treeEach, treeInsert, treeRemove, treeTakeFit } from "./splay.ts";

/** The least bytes asked of a discipline for a new segment. */
const MIN_SEGMENT = 4096;

/** The block size that holds `n` bytes of data (header included). */
export function blockSize(n: number): number {
  const s = (n + BK_HDR + 7) & ~7;
  return s < MIN_BLOCK ? MIN_BLOCK : s;
}

/** What {@linkcode Blocks.classify} found at an address given to `free` or `resize`. */
export const enum Found {
  /** A busy block: the address is good. */
  Busy,
  /** A block already freed (junk, free, or a free pool block). */
  Freed,
  /** Not the start of a block of this region. */
  Bad,
}

/**
 * The block store of one region handle: views over the buffer, the record's address and the
 * discipline, and the operations on blocks that do not depend on the method.
 */
export class Blocks {
  /** Bytes of the buffer. */
  u8: Uint8Array;
  /** Words of the buffer. */
  u32: Uint32Array;
  /** Signed words (for Atomics). */
  i32: Int32Array;
  /** Float64s of the buffer. */
  f64: Float64Array;
  /** The region record. */
  readonly rec: number;
  /** Where segments come from. */
  readonly disc: Discipline;
  /** What the discipline is told is asking (the Region). */
  owner: unknown = null;

  /**
   * Makes the store's handle.
   *
   * @param disc the discipline
   * @param rec the region record's address
   */
  constructor(disc: Discipline, rec: number) {
    this.disc = disc;
    this.rec = rec;
    const sab = disc.buffer, n = sab.byteLength;
    this.u8 = new Uint8Array(sab, 0, n);
    this.u32 = new Uint32Array(sab, 0, n >> 2);
    this.i32 = new Int32Array(sab, 0, n >> 2);
    this.f64 = new Float64Array(sab, 0, n >> 3);
  }

  /** Reads a record word. */
  get(field: number): number {
    return this.u32[(this.rec + field) >> 2];
  }

  /** Writes a record word. */
  set(field: number, v: number): void {
    this.u32[(this.rec + field) >> 2] = v;
  }

  /** The size of block `b`. */
  bsize(b: number): number {
    return this.u32[b >> 2] & SIZE_MASK;
  }

  /** The address after the last block of segment `seg` (its sentinel). */
  segEnd(seg: number): number {
    return seg + this.u32[(seg + SG_SIZE) >> 2] - SENTINEL;
  }

  /** Writes the sentinel of a segment of `size` bytes (no F_PFREE). */
  writeSentinel(seg: number, size: number): void {
    const s = seg + size - SENTINEL;
    this.u32[s >> 2] = F_BUSY;
    this.u32[(s + BK_CHECK) >> 2] = (s ^ K_SENTINEL) >>> 0;
  }

  /** Writes segment `seg`'s header and sentinel and its one free block; returns that block. */
  initSegment(seg: number, size: number, first: number): number {
    const u32 = this.u32;
    u32[(seg + SG_SIZE) >> 2] = size;
    u32[(seg + SG_NEXT) >> 2] = this.get(RG_SEGS);
    u32[(seg + SG_FIRST) >> 2] = first;
    u32[(seg + SG_MAGIC) >> 2] = SG_MAGIC_VALUE;
    this.writeSentinel(seg, size);
    this.makeFree(first, size - (first - seg) - SENTINEL);
    return first;
  }

  /** Marks `b` free with `size` bytes: header, check, footer, and F_PFREE on the next block. */
  makeFree(b: number, size: number): void {
    const u32 = this.u32;
    u32[b >> 2] = size;
    u32[(b + BK_CHECK) >> 2] = (b ^ K_FREE) >>> 0;
    u32[(b + size - 4) >> 2] = size;
    u32[(b + size) >> 2] |= F_PFREE;
  }

  /**
   * Marks block `b` busy with `size` bytes and check key `key`, keeping its own F_PFREE (its
   * header must be a block header already); clears F_PFREE on the next block.
   */
  makeBusy(b: number, size: number, key: number): void {
    const u32 = this.u32;
    u32[b >> 2] = size | F_BUSY | (u32[b >> 2] & F_PFREE);
    u32[(b + BK_CHECK) >> 2] = (b ^ key) >>> 0;
    u32[(b + size) >> 2] &= ~F_PFREE;
  }

  /** Files a free block: the wilderness if it ends the newest segment, else the tree. */
  placeFree(b: number, size: number): void {
    this.makeFree(b, size);
    if (b + size === this.segEnd(this.get(RG_SEGS))) this.set(RG_WILD, b);
    else treeInsert(this.u32, this.rec, b);
  }

  /** Takes a free block out of the tree or the wilderness. */
  takeFree(b: number): void {
    if (this.get(RG_WILD) === b) this.set(RG_WILD, 0);
    else treeRemove(this.u32, this.rec, b);
  }

  /**
   * Makes the free block `b` (already taken out) of `size` bytes busy with `need` bytes,
   * filing the rest as a free block when it is big enough.
   */
  carve(b: number, size: number, need: number, key: number): number {
    if (size - need >= MIN_BLOCK) {
      this.makeBusy(b, need, key);
      this.placeFree(b + need, size - need);
    } else this.makeBusy(b, size, key);
    return b;
  }

  /** Counts a block handed out. */
  countBusy(b: number): void {
    const rec = this.rec, u32 = this.u32;
    u32[(rec + RG_NBUSY) >> 2]++;
    const s = (u32[(rec + RG_SBUSY) >> 2] += u32[b >> 2] & SIZE_MASK);
    if (s > u32[(rec + RG_MAXBUSY) >> 2]) u32[(rec + RG_MAXBUSY) >> 2] = s;
  }

  /** Counts a block given back (call before its size changes). */
  countFree(b: number): void {
    const rec = this.rec, u32 = this.u32;
    u32[(rec + RG_NBUSY) >> 2]--;
    u32[(rec + RG_SBUSY) >> 2] -= u32[b >> 2] & SIZE_MASK;
  }

  /**
   * Finds a free block of at least `need` bytes, makes it busy with check key `key` and
   * returns it: best fit from the tree, then the wilderness, then the discipline (the newest
   * segment grown in place, else a new segment). With `wildFirst` the wilderness comes first
   * (the `last` method). Returns 0 when the discipline has no more memory.
   */
  allocRaw(need: number, key: number, wildFirst: boolean): number {
    for (;;) {
      let w = this.get(RG_WILD);
      if (wildFirst && w !== 0 && this.bsize(w) >= need) {
        this.set(RG_WILD, 0);
        return this.carve(w, this.bsize(w), need, key);
      }
      const b = treeTakeFit(this.u32, this.rec, need);
      if (b !== 0) return this.carve(b, this.bsize(b), need, key);
      w = this.get(RG_WILD);
      if (w !== 0 && this.bsize(w) >= need) {
        this.set(RG_WILD, 0);
        return this.carve(w, this.bsize(w), need, key);
      }
      if (!this.growTop(need - (w === 0 ? 0 : this.bsize(w))) && !this.newSegment(need)) return 0;
    }
  }

  /**
   * Grows the newest segment in place by at least `delta` bytes, through the discipline;
   * the wilderness takes the new bytes.
   *
   * @returns false when the discipline cannot
   */
  growTop(delta: number): boolean {
    const seg = this.get(RG_SEGS), u32 = this.u32;
    const csize = u32[(seg + SG_SIZE) >> 2];
    const nsize = roundUp(csize + Math.max(delta, MIN_BLOCK), this.disc.round);
    if (nsize > 0x7fff0000) return false;
    if (this.disc.memory(this.owner, seg, csize, nsize) !== seg) return false;
    this.refresh();
    this.checkSegment(seg, nsize, seg);
    const old = seg + csize - SENTINEL, w = this.get(RG_WILD);
    u32[(seg + SG_SIZE) >> 2] = nsize;
    this.writeSentinel(seg, nsize);
    if (w !== 0) this.makeFree(w, this.bsize(w) + nsize - csize);
    else {
      this.makeFree(old, nsize - csize);
      this.set(RG_WILD, old);
    }
    this.set(RG_EXTENT, this.get(RG_EXTENT) + nsize - csize);
    return true;
  }

  /**
   * Takes a new segment that holds a block of `need` bytes; it becomes the newest, its one
   * free block the wilderness, and the old wilderness goes into the tree.
   *
   * @returns false when the discipline has none
   */
  newSegment(need: number): boolean {
    const size = roundUp(Math.max(need + SG_HDR + SENTINEL, MIN_SEGMENT), this.disc.round);
    if (size > 0x7fff0000) return false;
    const seg = this.disc.memory(this.owner, 0, 0, size);
    if (seg === 0) return false;
    this.refresh();
    this.checkSegment(seg, size, 0);
    const w = this.get(RG_WILD);
    if (w !== 0) {
      this.set(RG_WILD, 0);
      treeInsert(this.u32, this.rec, w);
    }
    const first = this.initSegment(seg, size, seg + SG_HDR);
    this.set(RG_SEGS, seg);
    this.set(RG_WILD, first);
    this.set(RG_EXTENT, this.get(RG_EXTENT) + size);
    return true;
  }

  /**
   * Refuses a segment the discipline's `memory` answered with that the region cannot use: not
   * 8-aligned, not inside the buffer, or over a segment the region has (`self`, the one being
   * grown, aside). Walking such memory wrote nowhere and looped for ever.
   * @throws {UmemError} `invalid-argument` naming the address and the size
   */
  private checkSegment(seg: number, size: number, self: number): void {
    let bad = !Number.isInteger(seg) || seg <= 0 || (seg & 7) !== 0 ||
      seg + size > this.u8.length;
    for (let s = this.get(RG_SEGS); !bad && s !== 0; s = this.u32[(s + SG_NEXT) >> 2]) {
      if (s !== self && seg < s + this.u32[(s + SG_SIZE) >> 2] && s < seg + size) bad = true;
    }
    if (bad) {
      throw new UmemError(
        "invalid-argument",
        `vmalloc: the discipline's memory() gave ${seg} for ${size} bytes: not 8-aligned ` +
          `memory inside the region's buffer (${this.u8.length} bytes), apart from its segments`,
      );
    }
  }

  /**
   * Remakes the views when the buffer grew (by this handle or another). The views have a
   * fixed length, which V8 indexes faster than length-tracking views of a growable buffer;
   * the region calls this whenever it takes its lock.
   */
  refresh(): void {
    const sab = this.disc.buffer;
    if (!sab.growable) return;
    const n = sab.byteLength;
    if (this.u8.length !== n) {
      this.u8 = new Uint8Array(sab, 0, n);
      this.u32 = new Uint32Array(sab, 0, n >> 2);
      this.i32 = new Int32Array(sab, 0, n >> 2);
      this.f64 = new Float64Array(sab, 0, n >> 3);
    }
  }

  /** Puts busy block `b` on a junk list: freed, not yet merged. */
  pushJunk(b: number): void {
    const u32 = this.u32, size = u32[b >> 2] & SIZE_MASK;
    u32[b >> 2] |= F_JUNK;
    u32[(b + BK_CHECK) >> 2] = (b ^ K_JUNK) >>> 0;
    const list = size <= CACHE_MAX_BLOCK ? RG_CACHE + ((size - MIN_BLOCK) >> 1) : RG_JUNK;
    u32[(b + JB_NEXT) >> 2] = this.get(list);
    this.set(list, b);
  }

  /** Takes a junk block of exactly `need` bytes back as busy with `key`, or returns 0. */
  popJunk(need: number, key: number): number {
    if (need > CACHE_MAX_BLOCK) return 0;
    const u32 = this.u32, li = (this.rec + RG_CACHE + ((need - MIN_BLOCK) >> 1)) >> 2;
    const b = u32[li];
    if (b === 0) return 0;
    u32[li] = u32[(b + JB_NEXT) >> 2];
    u32[b >> 2] &= ~F_JUNK;
    u32[(b + BK_CHECK) >> 2] = (b ^ key) >>> 0;
    return b;
  }

  /** Whether any junk waits to be merged. */
  hasJunk(): boolean {
    if (this.get(RG_JUNK) !== 0) return true;
    for (let i = 0; i < NCACHE; i++) if (this.get(RG_CACHE + 4 * i) !== 0) return true;
    return false;
  }

  /** Merges every junk block with its free neighbours and files the results. */
  reclaim(): void {
    for (let i = 0; i <= NCACHE; i++) {
      const list = i === NCACHE ? RG_JUNK : RG_CACHE + 4 * i;
      let b = this.get(list);
      this.set(list, 0);
      while (b !== 0) {
        const next = this.u32[(b + JB_NEXT) >> 2];
        this.release(b);
        b = next;
      }
    }
  }

  /** Turns busy (or junk) block `b` free at once, coalescing it with its free neighbours. */
  release(b: number): void {
    const u32 = this.u32;
    let start = b, size = u32[b >> 2] & SIZE_MASK;
    if ((u32[b >> 2] & F_PFREE) !== 0) {
      const p = b - u32[(b - 4) >> 2];
      this.takeFree(p);
      start = p;
      size += this.bsize(p);
    }
    const n = b + (u32[b >> 2] & SIZE_MASK);
    if ((u32[n >> 2] & F_BUSY) === 0) {
      this.takeFree(n);
      size += this.bsize(n);
    }
    this.placeFree(start, size);
  }

  /** The segment that contains address `a`, or 0. */
  segmentOf(a: number): number {
    const u32 = this.u32;
    for (let s = this.get(RG_SEGS), n = 0; s !== 0 && n < 1 << 20; s = u32[(s + SG_NEXT) >> 2]) {
      if (a >= s && a < s + u32[(s + SG_SIZE) >> 2]) return s;
      n++;
    }
    return 0;
  }

  /**
   * What `ptr` is, in constant time: a busy block, a freed one, or not a block (by its
   * segment, alignment, size and check word).
   */
  classify(ptr: number): Found {
    if ((ptr & 7) !== 0) return Found.Bad;
    const seg = this.segmentOf(ptr);
    if (seg === 0) return Found.Bad;
    const u32 = this.u32, b = ptr - BK_HDR, end = this.segEnd(seg);
    if (b < u32[(seg + SG_FIRST) >> 2] || b + MIN_BLOCK > end) return Found.Bad;
    const h = u32[b >> 2], s = h & SIZE_MASK;
    if (s < MIN_BLOCK || b + s > end) return Found.Bad;
    const key = (u32[(b + BK_CHECK) >> 2] ^ b) >>> 0;
    if (key === K_BUSY) return (h & (F_BUSY | F_JUNK)) === F_BUSY ? Found.Busy : Found.Bad;
    if (key === K_JUNK || key === K_FREE || key === K_POOLFREE) return Found.Freed;
    return Found.Bad;
  }

  /**
   * Calls `f(block, size)` for every block of every segment, newest segment first.
   *
   * @returns a problem found on the way (a size that does not tile), or ""
   */
  walk(f: (b: number, size: number) => void): string {
    const u32 = this.u32;
    for (let s = this.get(RG_SEGS); s !== 0; s = u32[(s + SG_NEXT) >> 2]) {
      if (u32[(s + SG_MAGIC) >> 2] !== SG_MAGIC_VALUE) {
        return `segment 0x${s.toString(16)}: bad magic`;
      }
      const end = this.segEnd(s);
      let b = u32[(s + SG_FIRST) >> 2];
      while (b < end) {
        const size = u32[b >> 2] & SIZE_MASK;
        if (size < MIN_BLOCK || b + size > end) {
          return `block 0x${b.toString(16)}: size ${size} does not fit its segment`;
        }
        f(b, size);
        b += size;
      }
    }
    return "";
  }

  /** The busy block whose data holds address `a` (its data address), or 0. */
  find(a: number): number {
    const seg = this.segmentOf(a);
    if (seg === 0) return 0;
    const u32 = this.u32, end = this.segEnd(seg);
    let b = u32[(seg + SG_FIRST) >> 2];
    while (b < end) {
      const size = u32[b >> 2] & SIZE_MASK;
      if (size < MIN_BLOCK) return 0;
      if (a < b + size) {
        const busy = ((u32[(b + BK_CHECK) >> 2] ^ b) >>> 0) === K_BUSY;
        return busy && a >= b + BK_HDR ? b + BK_HDR : 0;
      }
      b += size;
    }
    return 0;
  }

  /** Frees every block at once: each segment becomes one free block. */
  clear(): void {
    const u32 = this.u32, newest = this.get(RG_SEGS);
    this.set(RG_ROOT, 0);
    this.set(RG_WILD, 0);
    for (let i = 0; i < NCACHE; i++) this.set(RG_CACHE + 4 * i, 0);
    this.set(RG_JUNK, 0);
    this.set(RG_POOLFREE, 0);
    this.set(RG_POOLSIZE, 0);
    this.set(RG_LAST, 0);
    this.set(RG_NBUSY, 0);
    this.set(RG_SBUSY, 0);
    this.walk((b) => (u32[(b + BK_CHECK) >> 2] = (b ^ K_FREE) >>> 0)); // no stale busy headers
    for (let s = newest; s !== 0; s = u32[(s + SG_NEXT) >> 2]) {
      const first = u32[(s + SG_FIRST) >> 2];
      this.placeFree(first, this.segEnd(s) - first);
    }
  }

  /**
   * Gives unused memory back through the discipline: every segment but the home one that is
   * wholly free, then the end of the wilderness, as far as the discipline lets it shrink.
   *
   * @param home the home segment (kept)
   * @returns bytes given back
   */
  compact(home: number): number {
    this.reclaim();
    const u32 = this.u32;
    let given = 0, prev = 0;
    for (let s = this.get(RG_SEGS); s !== 0;) {
      const next = u32[(s + SG_NEXT) >> 2], first = u32[(s + SG_FIRST) >> 2];
      const size = u32[(s + SG_SIZE) >> 2];
      if (
        s !== home && (u32[first >> 2] & F_BUSY) === 0 &&
        first + this.bsize(first) === this.segEnd(s)
      ) {
        this.takeFree(first);
        if (prev === 0) this.set(RG_SEGS, next);
        else u32[(prev + SG_NEXT) >> 2] = next;
        u32[(s + SG_MAGIC) >> 2] = 0;
        this.disc.memory(this.owner, s, size, 0);
        this.set(RG_EXTENT, this.get(RG_EXTENT) - size);
        given += size;
      } else prev = s;
      s = next;
    }
    // the newest segment may have changed: its free tail becomes the wilderness
    const top = this.get(RG_SEGS), end = this.segEnd(top);
    if (this.get(RG_WILD) === 0 && (u32[end >> 2] & F_PFREE) !== 0) {
      const w = end - u32[(end - 4) >> 2];
      treeRemove(u32, this.rec, w);
      this.set(RG_WILD, w);
    }
    const w = this.get(RG_WILD);
    if (w !== 0) {
      const round = this.disc.round, ws = this.bsize(w);
      const cut = Math.floor((ws - MIN_BLOCK) / round) * round;
      const csize = u32[(top + SG_SIZE) >> 2];
      if (cut > 0 && this.disc.memory(this.owner, top, csize, csize - cut) === top) {
        u32[(top + SG_SIZE) >> 2] = csize - cut;
        this.writeSentinel(top, csize - cut);
        this.makeFree(w, ws - cut);
        this.set(RG_EXTENT, this.get(RG_EXTENT) - cut);
        given += cut;
      }
    }
    return given;
  }

  /**
   * Checks the invariants of the store (for tests and `check()`): tiling, flags, footers,
   * the tree and the wilderness, the busy counts.
   *
   * @returns the problems found (empty when sound)
   */
  verify(): string[] {
    const out: string[] = [], u32 = this.u32, h = (a: number) => "0x" + a.toString(16);
    let nfree = 0, nbusy = 0, sbusy = 0, prevFree = false;
    const top = this.get(RG_SEGS);
    let lastSeg = -1;
    const bad = this.walk((b, size) => {
      const seg = this.segmentOf(b);
      if (seg !== lastSeg) prevFree = false, lastSeg = seg;
      const head = u32[b >> 2], key = (u32[(b + BK_CHECK) >> 2] ^ b) >>> 0;
      if (((head & F_PFREE) !== 0) !== prevFree) out.push(`block ${h(b)}: F_PFREE is wrong`);
      if ((head & F_BUSY) === 0) {
        if (prevFree) out.push(`block ${h(b)}: two free blocks side by side`);
        if (key !== K_FREE) out.push(`block ${h(b)}: free block with a bad check word`);
        if (u32[(b + size - 4) >> 2] !== size) out.push(`block ${h(b)}: bad footer`);
        const isWild = b === this.get(RG_WILD);
        if (isWild !== (seg === top && b + size === this.segEnd(seg))) {
          out.push(`block ${h(b)}: wilderness mismatch`);
        }
        if (!isWild) nfree++;
        prevFree = true;
      } else {
        if (key === K_BUSY) nbusy++, sbusy += size;
        else if (key !== K_JUNK && key !== K_POOLFREE) out.push(`block ${h(b)}: bad check word`);
        prevFree = false;
      }
    });
    if (bad) out.push(bad);
    let ntree = 0, lastSize = -1, lastAddr = -1;
    const whole = treeEach(u32, this.rec, (b) => {
      ntree++;
      const s = this.bsize(b);
      if ((u32[b >> 2] & F_BUSY) !== 0) out.push(`tree node ${h(b)} is not free`);
      if (s < lastSize || (s === lastSize && b <= lastAddr)) {
        out.push(`tree out of order at ${h(b)}`);
      }
      lastSize = s, lastAddr = b;
    }, 1 << 22);
    if (!whole) out.push("tree: cycle or too many nodes");
    if (ntree !== nfree) {
      out.push(`tree holds ${ntree} blocks, ${nfree} free blocks outside the wilderness`);
    }
    if (nbusy !== this.get(RG_NBUSY)) out.push(`busy count ${this.get(RG_NBUSY)}, found ${nbusy}`);
    if (sbusy !== this.get(RG_SBUSY)) out.push(`busy bytes ${this.get(RG_SBUSY)}, found ${sbusy}`);
    return out;
  }
}
