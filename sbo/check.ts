/**
 * Argument checks and error reports for the `sbo` module.
 *
 * Theory. Every public entry point of `sbo` validates its arguments before it touches the image
 * (DESIGN.md, principle 8), so a bad call throws a {@linkcode UmemError} whose `kind` programs can
 * branch on and leaves the heap as it was. Messages read like the core's: the function, the
 * address in hex, and what was expected. The core keeps its own helpers private; these are the
 * same few lines, built on the public {@linkcode UmemError} only.
 *
 * Invariants. No helper here reads or writes the image. Lock order: none.
 *
 * @module
 */

import { UmemError } from "../core/mod.ts";
import { checkSize, hex } from "../core/internal.ts";

/** The largest byte count or address of an image (2 GiB less a page), as the core's limit. */
export const MAX_BYTES = 0x80000000 - 4096;
/** The largest alignment a block can ask for. */
export const MAX_ALIGN = 65536;

/** Formats an address as libumem does (the core's formatter). */
export { hex };

/** Checks an alignment: a power of two in [1, {@linkcode MAX_ALIGN}]. */
export function checkAlign(fn: string, align: unknown): number {
  const a = checkSize(fn, "align", align, 1, MAX_ALIGN);
  if ((a & (a - 1)) !== 0) {
    throw new UmemError("invalid-argument", `${fn}: align ${a} is not a power of two`);
  }
  return a;
}

/** The smallest power of two that is at least `n` (n ≥ 1, n ≤ 2^30). */
export function pow2ceil(n: number): number {
  return n <= 1 ? 1 : 2 ** (32 - Math.clz32(n - 1));
}
