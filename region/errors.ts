/**
 * The report of a region: a {@linkcode UmemError} that also says the region, the block and,
 * for the `debug` method, the category and the call sites, as Vmalloc's Vmdebug writes them.
 *
 * Theory. Vmdebug writes one line per problem, `category:region=..:block=..:detail:` followed
 * by `allocated at=file,line:` and `detected at=file,line:` when they are known. A report here
 * is that line as the message of an error of the matching kind: thrown to the caller, or handed
 * to the region's `onError` while the bad call is refused (Vmdebug without `VM_DBABORT`).
 *
 * @module
 */
import { UmemError, type UmemErrorKind } from "../core/mod.ts";

/** A call site: the file (its base name) and the line. */
export interface Site {
  /** The file's base name, e.g. `t.ts`. */
  file: string;
  /** The line, from 1 (0 when unknown). */
  line: number;
}

/**
 * A problem a region found: bad input to a call, or (with `debug`) damage to a block.
 *
 * @example
 * ```ts
 * import { Region, RegionError, growableDiscipline } from "@umem/umem/region";
 * const r = Region.open(growableDiscipline(), "best");
 * try {
 *   r.free(12345);
 * } catch (e) {
 *   console.log(e instanceof RegionError && e.kind); // "bad-free"
 * }
 * ```
 */
export class RegionError extends UmemError {
  /** Vmdebug's category: "corrupted data", "free error", "resize error", or "" for others. */
  readonly category: string;
  /** The region record's address. */
  readonly region: number;
  /** Where the block was allocated, when known. */
  readonly allocatedAt: Site | null;
  /** Where the bad call was made, when known. */
  readonly detectedAt: Site | null;

  /**
   * Creates the report.
   *
   * @param kind the machine-readable kind
   * @param message the report line
   * @param region the region record's address
   * @param block the block (or address) concerned
   * @param category Vmdebug's category, or ""
   * @param allocatedAt where the block was allocated
   * @param detectedAt where the bad call was made
   */
  constructor(
    kind: UmemErrorKind,
    message: string,
    region: number,
    block: number,
    category = "",
    allocatedAt: Site | null = null,
    detectedAt: Site | null = null,
  ) {
    super(kind, message, block);
    this.name = "RegionError";
    this.region = region;
    this.category = category;
    this.allocatedAt = allocatedAt;
    this.detectedAt = detectedAt;
  }
}
