/**
 * Errors raised by umem.
 *
 * Every failure that reaches a user is a {@linkcode UmemError} with a machine-readable
 * {@linkcode UmemErrorKind}. Messages read like libumem's reports: the function, the address
 * (in hex) and what was expected. Raising an error never leaves the heap half-changed: each
 * operation validates its arguments before it touches the image.
 *
 * @module
 */

/**
 * The machine-readable kind of a {@linkcode UmemError}.
 *
 * @example
 * ```ts
 * import { Heap, UmemError } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * try {
 *   heap.vmem.alloc(-1);
 * } catch (e) {
 *   if (e instanceof UmemError) console.log(e.kind); // "invalid-argument"
 * }
 * ```
 */
export type UmemErrorKind =
  | "out-of-memory"
  | "invalid-argument"
  | "bad-free"
  | "duplicate-free"
  | "modified-after-free"
  | "redzone-violation"
  | "boundary-tag-corrupted"
  | "bufctl-corrupted"
  | "wrong-size"
  | "wrong-cache"
  | "budget-exceeded"
  | "borrow-conflict"
  | "use-after-move"
  | "use-after-drop"
  | "double-drop"
  | "drop-while-borrowed"
  | "not-owner"
  | "corrupt-image"
  | "corrupt-trace"
  | "heap-locked"
  | "destroyed"
  | "safepoint-timeout";

/**
 * The base class of every error umem raises.
 *
 * @example
 * ```ts
 * import { Heap, UmemError } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * try {
 *   heap.vmem.free(0x1234, 4096);
 * } catch (e) {
 *   console.log(e instanceof UmemError && e.kind); // "bad-free"
 * }
 * ```
 */
export class UmemError extends Error {
  /** What went wrong, for programs to branch on. */
  readonly kind: UmemErrorKind;
  /** The address concerned, when there is one (0 otherwise). */
  readonly address: number;

  /**
   * Creates the error.
   *
   * @param kind what went wrong
   * @param message the report, naming the function, the address and what was expected
   * @param address the address concerned, or 0
   */
  constructor(kind: UmemErrorKind, message: string, address = 0) {
    super(message);
    this.name = "UmemError";
    this.kind = kind;
    this.address = address;
  }
}

/**
 * Raised when an allocation cannot be satisfied (the arena and its sources are exhausted and
 * the buffer cannot grow further).
 *
 * @example
 * ```ts
 * import { Heap, OutOfMemoryError } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, maxSize: 1 << 20 });
 * try {
 *   heap.vmem.alloc(1 << 21);
 * } catch (e) {
 *   console.log(e instanceof OutOfMemoryError); // true
 * }
 * ```
 */
export class OutOfMemoryError extends UmemError {
  /**
   * Creates the error.
   *
   * @param message what could not be allocated, and from where
   */
  constructor(message: string) {
    super("out-of-memory", message);
    this.name = "OutOfMemoryError";
  }
}

/**
 * Raised when an image is not a umem heap, or is damaged: bad magic, another format version,
 * an offset out of bounds.
 *
 * @example
 * ```ts
 * import { CorruptImageError, Heap } from "@umem/umem";
 * try {
 *   Heap.attach(new SharedArrayBuffer(65536));
 * } catch (e) {
 *   console.log(e instanceof CorruptImageError); // true
 * }
 * ```
 */
export class CorruptImageError extends UmemError {
  /**
   * Creates the error.
   *
   * @param message what was wrong with the image
   */
  constructor(message: string) {
    super("corrupt-image", message);
    this.name = "CorruptImageError";
  }
}

/**
 * Raised when a lock could not be taken in time; names the holder and whether it is still alive.
 *
 * @example
 * ```ts
 * import { HeapLockedError } from "@umem/umem";
 * const e = new HeapLockedError("lock at 0x40 held by worker 3 (dead)", 0x40, 3);
 * console.log(e.kind, e.holder); // "heap-locked" 3
 * ```
 */
export class HeapLockedError extends UmemError {
  /** The worker slot that held the lock. */
  readonly holder: number;
  /**
   * Creates the error.
   *
   * @param message what lock, who holds it
   * @param address the lock word's address
   * @param holder the worker slot holding it
   */
  constructor(message: string, address: number, holder: number) {
    super("heap-locked", message, address);
    this.name = "HeapLockedError";
    this.holder = holder;
  }
}

/** Formats an address as libumem does: `0x` and lower-case hex. */
export function hex(addr: number): string {
  return "0x" + (addr >>> 0).toString(16);
}

/**
 * A time in ms since the epoch as ISO 8601 text, as the logs and audit records print it; a time
 * no Date can hold (a damaged image's) as `(bad time N)` rather than a RangeError.
 *
 * @param t ms since the epoch
 * @returns the text
 */
export function isoTime(t: number): string {
  return Number.isFinite(t) && Math.abs(t) <= 8.64e15
    ? new Date(t).toISOString()
    : `(bad time ${t})`;
}

/**
 * Checks that `n` is a whole number in [min, max]; throws an `invalid-argument` error naming
 * the function and the parameter otherwise. Accepts only numbers (a string is refused).
 */
export function checkSize(fn: string, what: string, n: unknown, min: number, max: number): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: ${what} ${
        typeof n === "number" ? String(n) : typeof n
      } is not a whole number in [${min}, ${max}]`,
    );
  }
  return n;
}
