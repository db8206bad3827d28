/**
 * The sweep: every collectable object the marker did not reach goes back to its cache.
 *
 * Theory. Boehm's collector sweeps block by block; here a block is a slab of one of the
 * collector's caches, found through the core's page map. Each object whose state byte is
 * `BUF_ALLOC | BUF_MARK` is live: its mark bit is cleared. Each one that is `BUF_ALLOC` alone
 * is garbage: it is freed through its cache (into the collecting worker's magazine, as any
 * `umem_cache_free`), or, in find-leak mode (`GC_find_leak`), left allocated and reported in
 * the inspection API's leak format. Buffers in magazines or on a slab's free list are not
 * looked at: they were never allocated.
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
import { BUF_ALLOC } from "../core/internal.ts";
import { BUF_MARK, KIND_ATOMIC, KIND_NORMAL } from "./layout.ts";
import type { Marker } from "./mark.ts";

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
 * @param free frees one object to cache `cp`
 * @param name the name of cache `cp`, for the leak report
 * @param findLeaks report instead of freeing
 * @returns the objects and bytes freed or found
 */
export function sweep(
  m: Marker,
  free: (cp: number, p: number) => void,
  name: (cp: number) => string,
  findLeaks: boolean,
): SweepResult {
  const u8 = m.u8;
  let objects = 0, bytes = 0;
  const classes = new Map<number, LeakClass>();
  const dead: number[] = [];
  m.eachSlab((sb, cp, kind) => {
    if (kind !== KIND_NORMAL && kind !== KIND_ATOMIC) return;
    let size = 0;
    dead.length = 0;
    m.eachObject(sb, cp, BUF_ALLOC, (p, s) => {
      dead.push(p);
      size = s;
    });
    m.eachObject(sb, cp, BUF_ALLOC | BUF_MARK, (_p, _s, at) => {
      u8[at] = BUF_ALLOC;
    });
    if (dead.length === 0) return;
    objects += dead.length;
    bytes += dead.length * size;
    if (findLeaks) {
      const c = classes.get(cp);
      if (c === undefined) {
        classes.set(cp, {
          count: dead.length,
          bytes: dead.length * size,
          size,
          cache: name(cp),
          sample: dead[0],
          stack: "",
        });
      } else {
        c.count += dead.length;
        c.bytes += dead.length * size;
        c.sample = Math.min(c.sample, dead[0]);
      }
      return;
    }
    for (const p of dead) free(cp, p);
  });
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
