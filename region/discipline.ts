/**
 * Disciplines: where a region's raw memory comes from (Vmalloc's `Vmdisc_t`).
 *
 * Theory. A region asks its discipline for *segments* and never touches memory it was not
 * given. `memory(region, addr, csize, nsize)` follows the paper's contract: with `csize` 0 it
 * returns a new segment of `nsize` bytes (or 0 when it has none); with `nsize` 0 it takes the
 * segment back; otherwise it grows or shrinks the segment at `addr` *in place* and returns
 * `addr`, or 0 when it cannot (the region then does without, or asks for a new segment). Sizes
 * are multiples of `round`. `except(region, event, detail)` hears the events `open`, `close`,
 * `nomem` and `badaddr`, and its answer changes what happens (see {@linkcode RegionEvent}).
 *
 * Three are provided: {@linkcode heapDiscipline} (Vmdcheap) takes segments from a umem heap;
 * {@linkcode growableDiscipline} (Vmdcsbrk) grows one segment in a growable SharedArrayBuffer
 * of the region's own; {@linkcode bufferDiscipline} gives the one segment of a buffer the user
 * hands in, which may come from another worker or from a file, so that `Region.open` finds the
 * region already there (Vmalloc's mapped, persistent memory). The last two put the home
 * segment at the fixed address {@linkcode HOME}, which is how a region is found again.
 *
 * Invariants. A discipline's state is its buffer: whether the single segment of a buffer or
 * growable discipline is in use is read from the segment header's size word, so any handle in
 * any worker answers the same.
 *
 * Lock order: called under the region lock; the heap discipline then takes the heap's locks.
 *
 * @module
 */
import { OutOfMemoryError, UmemError } from "../core/mod.ts";
import { SG_SIZE } from "./layout.ts";

/**
 * The events a discipline's `except` hears, and what its answer does:
 * - `"open"`: a region is being opened (detail: `{ reopen }`); answering `false` refuses it.
 * - `"close"`: a region is being closed; answering `false` keeps it open.
 * - `"nomem"`: the discipline had no memory (detail: `{ size }`); answering `"retry"` tries
 *   again (the handler freed something), anything else makes the call fail.
 * - `"badaddr"`: a call was given an address that is not a live block (detail: `{ address }`);
 *   answering `"ignore"` makes the call return quietly instead of raising the error.
 */
export type RegionEvent = "open" | "close" | "nomem" | "badaddr";

/** What an event is about. */
export interface EventDetail {
  /** The bytes asked for (`nomem`). */
  size?: number;
  /** The address concerned (`badaddr`). */
  address?: number;
  /** Whether the region already existed in the buffer (`open`). */
  reopen?: boolean;
  /** The report, for `badaddr`. */
  message?: string;
}

/**
 * A region's source of raw memory (Vmalloc's `Vmdisc_t`).
 *
 * @example
 * ```ts
 * import { type Discipline, Region } from "@umem/umem/region";
 * const sab = new SharedArrayBuffer(1 << 16);
 * let given = false;
 * const disc: Discipline = {
 *   buffer: sab,
 *   round: 8,
 *   memory(_r, addr, csize, nsize) {
 *     if (csize === 0) return given ? 0 : (given = true, 64); // one segment, at 64
 *     if (nsize === 0) return (given = false, addr);
 *     return 64 + nsize <= sab.byteLength ? addr : 0; // grow or shrink in place
 *   },
 * };
 * const r = Region.open(disc, "best");
 * console.log(r.alloc(100) > 64); // true
 * r.close();
 * ```
 */
export interface Discipline {
  /** The buffer every segment of this discipline lies in. */
  readonly buffer: SharedArrayBuffer;
  /** Segment sizes are multiples of this (a power of two, at least 8). */
  readonly round: number;
  /**
   * For a discipline whose first segment is always at one address, that address: `Region.open`
   * looks there for a region to reopen. Absent for disciplines that place segments anywhere.
   */
  readonly home?: number;
  /**
   * Gets, frees, grows or shrinks a segment, as the paper's `memoryf`.
   *
   * @param region the region asking
   * @param addr the segment (0 with `csize` 0)
   * @param csize its current size (0: get a new one)
   * @param nsize the size wanted (0: free it)
   * @returns the segment's address, or 0 when it cannot
   */
  memory(region: unknown, addr: number, csize: number, nsize: number): number;
  /**
   * Hears an event; see {@linkcode RegionEvent} for what its answer does.
   *
   * @param region the region
   * @param event what happened
   * @param detail about what
   * @returns the answer
   */
  except?(region: unknown, event: RegionEvent, detail: EventDetail): unknown;
}

/** Where the buffer and growable disciplines put their one segment (0 stays NULL). */
export const HOME = 16;

/**
 * What {@linkcode heapDiscipline} needs of a heap: a umem `Heap` has it, and so has any sized
 * allocator over one SharedArrayBuffer.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import type { SegmentHeap } from "@umem/umem/region";
 * const h: SegmentHeap = Heap.create({ size: 1 << 20 });
 * h.free(h.alloc(4096), 4096);
 * ```
 */
export interface SegmentHeap {
  /** The buffer its allocations lie in. */
  readonly buffer: SharedArrayBuffer;
  /**
   * Allocates `size` bytes, 8-aligned.
   *
   * @param size bytes
   * @returns the address
   * @throws {OutOfMemoryError} when it has no memory
   */
  alloc(size: number): number;
  /**
   * Frees an allocation, given its size.
   *
   * @param ptr the address
   * @param size the size given to `alloc`
   */
  free(ptr: number, size: number): void;
}

/**
 * Vmdcheap: segments are allocations from a umem heap (`heap.alloc`), so the region's blocks
 * live in the heap's buffer beside everything else. Segments cannot change size in place;
 * the region takes a new one instead, and `compact` gives wholly free ones back.
 *
 * @param heap the heap
 * @param round segment granularity (default 64 KiB)
 * @returns the discipline
 * @throws {UmemError} `invalid-argument` when `round` is not a power of two in [8, 2^24]
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { heapDiscipline, Region } from "@umem/umem/region";
 * const heap = Heap.create({ size: 1 << 20 });
 * const r = Region.open(heapDiscipline(heap), "best");
 * const p = r.alloc(100);
 * console.log(r.buffer === heap.buffer, r.size(p) >= 100); // true true
 * r.close();
 * ```
 */
export function heapDiscipline(heap: SegmentHeap, round = 1 << 16): Discipline {
  if (!(heap?.buffer instanceof SharedArrayBuffer)) {
    throw new UmemError("invalid-argument", "heapDiscipline: expected a heap");
  }
  checkRound("heapDiscipline", round);
  return {
    buffer: heap.buffer,
    round,
    memory(_region, addr, csize, nsize) {
      if (csize === 0) {
        try {
          return heap.alloc(nsize);
        } catch (e) {
          if (
            e instanceof OutOfMemoryError || (e instanceof UmemError && e.kind === "out-of-memory")
          ) {
            return 0;
          }
          throw e;
        }
      }
      if (nsize === 0) {
        heap.free(addr, csize);
        return addr;
      }
      return 0; // no resizing in place
    },
  };
}

/** Options of {@linkcode growableDiscipline}. */
export interface GrowableOptions {
  /** The most bytes the buffer may grow to (default 256 MiB). */
  maxSize?: number;
  /** The buffer's first size (default one `round`). */
  size?: number;
  /** Growth granularity (default 64 KiB). */
  round?: number;
}

/**
 * Vmdcsbrk: one segment at {@linkcode HOME} in a growable SharedArrayBuffer of the region's
 * own, grown in place as `sbrk` grows the data segment. Shrinking is accepted and remembered
 * by the region (a SharedArrayBuffer cannot shrink); the bytes are reused when it grows again.
 *
 * @param options the most bytes, the first size and the granularity
 * @returns the discipline
 * @throws {UmemError} `invalid-argument` for sizes out of range
 *
 * @example
 * ```ts
 * import { growableDiscipline, Region } from "@umem/umem/region";
 * const r = Region.open(growableDiscipline({ maxSize: 1 << 22 }), "best");
 * const p = r.alloc(1 << 20); // grows the buffer
 * console.log(r.buffer.byteLength > 1 << 20, p > 0); // true true
 * r.close();
 * ```
 */
export function growableDiscipline(options: GrowableOptions = {}): Discipline {
  options ??= {}; // null: the defaults
  const round = options.round ?? 1 << 16;
  checkRound("growableDiscipline", round);
  const maxSize = options.maxSize ?? 256 << 20;
  if (!Number.isInteger(maxSize) || maxSize < round || maxSize > 2 ** 31) {
    throw new UmemError(
      "invalid-argument",
      `growableDiscipline: maxSize ${maxSize} is not a whole number in [${round}, 2^31]`,
    );
  }
  const first = options.size ?? round;
  if ((first !== Infinity && !Number.isInteger(first)) || first < HOME + 256) {
    throw new UmemError(
      "invalid-argument",
      `growableDiscipline: size ${
        typeof first === "string" ? `"${first}"` : String(first)
      } is not a whole number of at least ${HOME + 256}`,
    );
  }
  const size = Math.min(first, maxSize);
  // deno-lint-ignore no-explicit-any
  const sab = new (SharedArrayBuffer as any)(size, { maxByteLength: maxSize }) as SharedArrayBuffer;
  return fixedHome(sab, round, true);
}

/**
 * A discipline over a buffer the user hands in: its one segment starts at {@linkcode HOME} and
 * may grow up to the buffer's end (or, for a growable buffer, its maximum). If the buffer
 * already holds a region (from another worker, or saved to a file and read back),
 * `Region.open` reopens it with its blocks.
 *
 * @param sab the buffer
 * @returns the discipline
 * @throws {UmemError} `invalid-argument` when the buffer is too small to hold a region
 *
 * @example
 * ```ts
 * import { bufferDiscipline, Region } from "@umem/umem/region";
 * const sab = new SharedArrayBuffer(1 << 16);
 * const a = Region.open(bufferDiscipline(sab), "best");
 * const p = a.alloc(10);
 * const b = Region.open(bufferDiscipline(sab), "best"); // the same region, as another worker would
 * console.log(b.size(p) >= 10); // true
 * ```
 */
export function bufferDiscipline(sab: SharedArrayBuffer): Discipline {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < HOME + 512) {
    throw new UmemError(
      "invalid-argument",
      "bufferDiscipline: expected a SharedArrayBuffer of at least 528 bytes",
    );
  }
  return fixedHome(sab, 8, sab.growable);
}

/** The one-segment discipline at HOME shared by the buffer and growable disciplines. */
function fixedHome(sab: SharedArrayBuffer, round: number, growable: boolean): Discipline {
  const u32 = new Uint32Array(sab);
  const limit = () => (growable ? sab.maxByteLength : sab.byteLength);
  const fit = (end: number): boolean => {
    if (end > limit()) return false;
    if (end > sab.byteLength) {
      sab.grow(Math.min(limit(), Math.ceil(end / round) * round));
    }
    return true;
  };
  return {
    buffer: sab,
    round,
    home: HOME,
    memory(_region, addr, csize, nsize) {
      if (csize === 0) {
        if (u32[(HOME + SG_SIZE) >> 2] !== 0) return 0; // the one segment is taken
        return fit(HOME + nsize) ? HOME : 0;
      }
      if (addr !== HOME) return 0;
      if (nsize === 0) return addr;
      return fit(HOME + nsize) ? addr : 0;
    },
  };
}

/** Checks a segment granularity. */
function checkRound(fn: string, round: number): void {
  if (!Number.isInteger(round) || round < 8 || round > 1 << 24 || (round & (round - 1)) !== 0) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: round ${round} is not a power of two in [8, 2^24]`,
    );
  }
}
