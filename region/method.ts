/**
 * The method interface: what each of Vmalloc's methods (best, pool, last, debug, profile)
 * implements, and the context a region gives it.
 *
 * Theory. A region is a discipline (where memory comes from) and a method (how blocks are
 * managed); the region does the locking, the argument screening that every method shares,
 * the events and the trace, and hands the rest to its method. A method works on the region's
 * block store (region/blocks.ts) and raises a {@linkcode RegionError} for bad input before it
 * changes anything.
 *
 * Lock order: a method runs under the region lock; it takes no lock itself.
 *
 * @module
 */
import type { Blocks } from "./blocks.ts";
import type { RegionError, Site } from "./errors.ts";

/** What a method is given by its region. */
export interface MethodContext {
  /** The block store. */
  readonly bk: Blocks;
  /** Whether arguments are checked (false for `trust`). */
  readonly checking: boolean;
  /** The call site of the current call (captured on first use; the unknown site when off). */
  site(): Site;
  /** The index of the current call site in the region's site table. */
  siteIndex(): number;
  /** The site at an index of the site table. */
  siteAt(index: number): Site;
  /** Delivers a watch alert (after the call, outside the lock). */
  alert(line: string): void;
  /**
   * Reports a problem: throws it when the region has no `onError`, else queues it for
   * `onError` (called after the call, outside the lock) and returns.
   */
  report(e: RegionError): void;
}

/** A method: Vmalloc's `Vmethod_t`. */
export interface Method {
  /** Its `M_*` code. */
  readonly code: number;
  /** Its Vmalloc name (`Vmbest`, ...). */
  readonly name: string;
  /** Allocates; returns the data address, or 0 when the discipline has no memory. */
  alloc(c: MethodContext, size: number): number;
  /** Frees; throws a RegionError for an address that is not a live block. */
  free(c: MethodContext, ptr: number): void;
  /**
   * Resizes in place, or moves when `move` (copying the data when `copy`); returns the new
   * address, or 0 when it could not.
   */
  resize(c: MethodContext, ptr: number, size: number, move: boolean, copy: boolean): number;
  /** The usable size of the block at `ptr` (the size asked for, for debug and profile). */
  size(c: MethodContext, ptr: number): number;
}
