/**
 * The errors of the `own` module: Rust's borrow errors and the ownership errors Rust finds when
 * it compiles, raised here when the program runs.
 *
 * Theory. `RefCell::borrow` fails with `BorrowError` ("already mutably borrowed") and
 * `borrow_mut` with `BorrowMutError` ("already borrowed"); a moved-from value cannot be used, a
 * value cannot be dropped while a reference to it lives, nor twice. Each of those is an
 * {@linkcode OwnershipError} with a machine-readable `kind`: `borrow-conflict`,
 * `use-after-move`, `use-after-drop`, `drop-while-borrowed`, `double-drop`, `not-owner`. In
 * `light` mode an error carries the counts and the owner's worker slot read from the state
 * word; in `full` mode also the stack where the conflicting borrow, the move or the drop
 * happened, and where the buffer was allocated.
 *
 * Invariants. Building an error reads the image and never changes it. Lock order: none.
 *
 * @module
 */

import { UmemError, type UmemErrorKind } from "../core/mod.ts";

/** What an {@linkcode OwnershipError} knows about the buffer when it was raised. */
export interface OwnershipDetail {
  /** The worker slot that owns (or sent) the buffer; -1 when unknown. */
  owner: number;
  /** Shared borrows held. */
  borrows: number;
  /** Whether a mutable borrow is held. */
  mutablyBorrowed: boolean;
  /** References lent to `Shared` handles. */
  lent: number;
  /** `full` mode: where the conflicting borrow, the move or the drop happened ("" if unknown). */
  conflictStack: string;
  /** `full` mode: where the buffer was allocated or adopted ("" if unknown). */
  allocStack: string;
}

/**
 * A broken ownership rule: the kind says which, the fields say the state of the buffer.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership, OwnershipError } from "@umem/umem/own";
 * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
 * const a = own.alloc(16);
 * a.move();
 * try {
 *   a.deref();
 * } catch (e) {
 *   console.log(e instanceof OwnershipError && e.kind); // "use-after-move"
 * }
 * ```
 */
export class OwnershipError extends UmemError {
  /** The worker slot that owns (or sent) the buffer; -1 when unknown. */
  readonly owner: number;
  /** Shared borrows held when the error was raised. */
  readonly borrows: number;
  /** Whether a mutable borrow was held. */
  readonly mutablyBorrowed: boolean;
  /** References lent to `Shared` handles. */
  readonly lent: number;
  /** `full` mode: where the conflicting borrow, the move or the drop happened ("" otherwise). */
  readonly conflictStack: string;
  /** `full` mode: where the buffer was allocated or adopted ("" otherwise). */
  readonly allocStack: string;

  /**
   * Creates the error.
   *
   * @param kind which rule was broken
   * @param message the report: function, address, what was expected
   * @param address the buffer
   * @param detail the state of the buffer
   */
  constructor(kind: UmemErrorKind, message: string, address: number, detail: OwnershipDetail) {
    super(kind, message, address);
    this.name = "OwnershipError";
    this.owner = detail.owner;
    this.borrows = detail.borrows;
    this.mutablyBorrowed = detail.mutablyBorrowed;
    this.lent = detail.lent;
    this.conflictStack = detail.conflictStack;
    this.allocStack = detail.allocStack;
  }
}

/**
 * A shared borrow refused because the buffer is mutably borrowed (Rust's
 * `already mutably borrowed: BorrowError`); kind `borrow-conflict`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { BorrowError, Ownership } from "@umem/umem/own";
 * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
 * const a = own.alloc(16);
 * using w = a.borrowMut();
 * try {
 *   a.borrow();
 * } catch (e) {
 *   console.log(e instanceof BorrowError); // true
 * }
 * ```
 */
export class BorrowError extends OwnershipError {
  /**
   * Creates the error.
   *
   * @param message the report
   * @param address the buffer
   * @param detail the state of the buffer
   */
  constructor(message: string, address: number, detail: OwnershipDetail) {
    super("borrow-conflict", message, address, detail);
    this.name = "BorrowError";
  }
}

/**
 * A mutable borrow refused because the buffer is borrowed, shared or mutably (Rust's
 * `already borrowed: BorrowMutError`); kind `borrow-conflict`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { BorrowMutError, Ownership } from "@umem/umem/own";
 * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
 * const a = own.alloc(16);
 * using r = a.borrow();
 * try {
 *   a.borrowMut();
 * } catch (e) {
 *   console.log(e instanceof BorrowMutError); // true
 * }
 * ```
 */
export class BorrowMutError extends OwnershipError {
  /**
   * Creates the error.
   *
   * @param message the report
   * @param address the buffer
   * @param detail the state of the buffer
   */
  constructor(message: string, address: number, detail: OwnershipDetail) {
    super("borrow-conflict", message, address, detail);
    this.name = "BorrowMutError";
  }
}
