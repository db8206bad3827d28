/**
 * The sweep: every collectable object the marker did not reach goes back to its cache.
 *
 * Theory. Boehm's collector sweeps block by block; here a block is a slab of one of the
 * collector's caches, found through the core's page map. Each object whose state byte is
 * `BUF_ALLOC | BUF_MARK` is live: its mark bit is cleared. Each one that is `BUF_ALLOC` alone
 * is garbage: it is freed through its cache (into the collecting worker's magazine, as any
 * `umem_cache_free`), or, in find-leak mode (`GC_find_leak`), left allocated and reported in
 * the inspection API's leak format. Buffers in magazines or on a slab's free list are not
 * looked at: they were never allocated. Large objects (large.ts) are swept the same way from
 * their table, their marks cleared there, the dead ones' spans given back to the arena.
 *
 * Invariants. Runs while the world is stopped, after marking; when it returns no state byte of
 * a collector cache has its mark bit set. Uncollectable caches are not swept (their objects are
 * never marked).
 *
 * Lock order: the frees take the cache's depot and slab locks, one at a time.
 *
 * @module
 */
import type { LeakClass, LeakReport } from "../core/mod.ts";
import {
  BUF_ALLOC,
  BUF_DEFER,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_NCHUNKS,
  CA_SHIFT,
  SB_BASE,
  SB_STATE,
} from "../core/internal.ts";
import { BUF_MARK, KIND_ATOMIC, KIND_NORMAL } from "./layout.ts";
import type { Marker } from "./mark.ts";
import { LO_W_MARK } from "./large.ts";

/** The arena large objects come from, as `findleaks` names their class. */
const LARGE_CACHE = "umem_oversize";

/** The state byte of a marked, allocated object. */
const LIVE = BUF_ALLOC | BUF_MARK;

/** What a sweep did. */
export interface SweepResult {
  /** Objects freed (or, in find-leak mode, found unreachable). */
  objects: number;
  /** Their bytes. */
  bytes: number;
  /** The leak report, in find-leak mode. */
  leaks?: LeakReport;
}

/**
 * Sweeps every slab of the collector's collectable caches.
 *
 * @param m the marker of this collection
 * @param free the function that frees one object to cache `cp`
 * @param name the name of cache `cp`, for the leak report
 * @param findLeaks report instead of freeing
 * @param freeLarge frees one large object
 * @returns the objects and bytes freed or found
 */
export function sweep(
  m: Marker,
  free: (cp: number) => (p: number) => void,
  name: (cp: number) => string,
  findLeaks: boolean,
  freeLarge: (p: number) => void,
): SweepResult {
  const u8 = m.u8, i32 = m.i32;
  let objects = 0, bytes = 0;
  const classes = new Map<number, LeakClass>();
  let dead = new Int32Array(1024);
  m.eachSlab((sb, cp, kind) => {
    if (kind !== KIND_NORMAL && kind !== KIND_ATOMIC) return;
    const n = i32[(cp + CA_NCHUNKS) >> 2], chunk = i32[(cp + CA_CHUNK) >> 2];
    const shift = i32[(cp + CA_SHIFT) >> 2], size = i32[(cp + CA_BUFSIZE) >> 2];
    const base = i32[(sb + SB_BASE) >> 2], states = sb + SB_STATE;
    if (dead.length < n) dead = new Int32Array(n);
    let nd = 0;
    for (let k = 0, off = 0; k < n; k++, off += chunk) {
      const at = states + (off >> shift), st = u8[at];
      if (st === LIVE) u8[at] = BUF_ALLOC;
      else if ((st & ~BUF_DEFER) === BUF_ALLOC) dead[nd++] = base + off;
    }
    if (nd === 0) return;
    objects += nd;
    bytes += nd * size;
    if (findLeaks) {
      const c = classes.get(cp);
      if (c === undefined) {
        classes.set(cp, {
          count: nd,
          bytes: nd * size,
          size,
          cache: name(cp),
          sample: dead[0],
          stack: "",
        });
      } else {
        c.count += nd;
        c.bytes += nd * size;
        c.sample = Math.min(c.sample, dead[0]);
      }
      return;
    }
    const f = free(cp);
    for (let k = 0; k < nd; k++) f(dead[k]);
  });
  // Large objects: the mark is in the table entry.
  const deadLarge: number[] = [];
  m.eachLarge((p, size, kind, e) => {
    if (kind !== KIND_NORMAL && kind !== KIND_ATOMIC) return;
    if (i32[e + LO_W_MARK] !== 0) {
      i32[e + LO_W_MARK] = 0;
      return;
    }
    objects++;
    bytes += size;
    deadLarge.push(p);
    if (!findLeaks) return;
    const c = classes.get(0);
    if (c === undefined) {
      classes.set(0, { count: 1, bytes: size, size, cache: LARGE_CACHE, sample: p, stack: "" });
    } else {
      c.count++;
      c.bytes += size;
      c.sample = Math.min(c.sample, p);
    }
  });
  if (!findLeaks) { for (const p of deadLarge) freeLarge(p); }
  if (!findLeaks) return { objects, bytes };
  const list = [...classes.values()].sort((a, b) => b.bytes - a.bytes || b.count - a.count);
  return {
    objects,
    bytes,
    leaks: {
      version: 1,
      total_buffers: objects,
      total_bytes: bytes,
      cached_skipped: 0,
      classes: list,
    },
  };
}
