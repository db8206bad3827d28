/**
 * Borrow guards: a shared borrow ({@linkcode Ref}) or a mutable one ({@linkcode RefMut}) that
 * ends when the guard is released, by `release()` or at the end of a `using` block.
 *
 * Theory. As `std::cell::Ref` and `RefMut`: the borrow is counted in the buffer's state word
 * when the guard is made and uncounted when it ends. While the owner's handle is *solo* (see
 * {@linkcode Bias}: it never lent a reference, so no other worker can write the word) the end is
 * a plain subtract or mask on the word; otherwise it is one atomic read-modify-write
 * (`Atomics.sub` of one shared borrow, `Atomics.and` clearing the mutable bit), which stays
 * right while other workers change the word's other fields. Either way the end of a borrow needs
 * no compare-and-swap loop and no lock. `using` ends the borrow when the block is
 * left by any path, exceptions included. A guard made while an error handler let a broken rule
 * go on holds nothing (`held` is false) and its end changes nothing.
 *
 * Invariants. A guard ends its borrow at most once; after it ended, `ptr` throws. A guard reads
 * its handle's bias when it ends, not when it was made: a handle that lent a reference while
 * the guard was held is no longer solo, and the end is then atomic. While a guard
 * holds a borrow the record cannot be freed (drop refuses a borrowed buffer), so the guard's
 * record address stays valid until it ends.
 *
 * Lock order: none.
 *
 * @module
 */

import { hex } from "../core/internal.ts";
import { LE_MUT, LE_SHARED, OS_MUT } from "./layout.ts";
import type { Ledger } from "./ledger.ts";
import { OwnershipError } from "./own_error.ts";

/** A guard that holds its borrow. */
const HELD = 1;
/** A guard whose borrow ended. */
const ENDED = 0;
/** A guard that never held a borrow (an error handler let a conflict go on). */
const INERT = 2;

/**
 * Whether one owner's handle is the only writer of its record's state word (biased counting,
 * after Choi, Shull and Torrellas's biased reference counting): true from the handle's making
 * until it lends a reference (`share()`), false for good after that and for the guards of a
 * `Shared` reference. While it is true the owner's borrows count with plain loads and stores;
 * the other workers' writers of a live word are all reached through a lent reference (`access`
 * and its `Shared`), and `access` checks the handle's generation under the table lock, which
 * `move` also takes, so a stale token never writes the word of a solo handle; `receive` writes
 * only a word in transit, and `Heap.reclaimSlot` only the words of a dead owner's buffers and
 * of buffers lent to the dead worker (whose handles are not solo).
 */
export class Bias {
  /** Whether the handle is the word's only writer. */
  solo: boolean = false;
  /** For a `Shared` reference: its worker's ledger (ledger.ts), told when a borrow ends. */
  readonly ledger: Ledger | undefined;
  /** For a `Shared` reference: the record, as the ledger names it. */
  readonly rec: number = 0;

  /**
   * Makes a bias (by the module, one per handle or reference).
   *
   * @param solo whether the handle starts as the word's only writer
   * @param ledger for a reference, its worker's ledger
   * @param rec for a reference, the record
   */
  constructor(solo: boolean, ledger?: Ledger, rec = 0) {
    this.solo = solo;
    this.ledger = ledger;
    this.rec = rec;
  }
}

/** The bias of the guards that hold nothing (made when an error handler let a rule go). */
export const INERT_BIAS: Bias = new Bias(false);

/** The error of a guard used after its borrow ended. */
function ended(fn: string, addr: number): OwnershipError {
  return new OwnershipError(
    "use-after-drop",
    `${fn}: the borrow of buffer ${hex(addr)} has ended (the guard was released)`,
    addr,
    { owner: -1, borrows: 0, mutablyBorrowed: false, lent: 0, conflictStack: "", allocStack: "" },
  );
}

/**
 * A shared borrow of an owned buffer: many may be held at once, none while it is mutably
 * borrowed. Release it, or declare it with `using`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * const own = Ownership.create(heap);
 * const a = own.alloc(4);
 * {
 *   using r1 = a.borrow();
 *   using r2 = a.borrow(); // shared borrows coexist
 *   console.log(heap.u8[r1.ptr] === heap.u8[r2.ptr]); // true
 * }
 * a.drop(); // both borrows ended with the block
 * ```
 */
export class Ref {
  /** The buffer's size in bytes. */
  readonly size: number = 0;
  /** A view over the heap that covers the record. */
  private readonly i32: Int32Array;
  /** The state word's index. */
  private readonly word: number = 0;
  /** The buffer. */
  private readonly addr: number = 0;
  /** `HELD`, `ENDED` or `INERT`. */
  private state: number = 0;
  /** The handle's bias, read when the borrow ends. */
  private readonly bias: Bias;

  /**
   * Wraps a borrow already counted in the state word (made by `borrow()`, not by users).
   *
   * @param i32 a view over the heap that covers the record
   * @param word the index of the record's state word
   * @param addr the buffer
   * @param size its size
   * @param held false for a guard that counts nothing
   * @param bias the handle's bias
   */
  constructor(
    i32: Int32Array,
    word: number,
    addr: number,
    size: number,
    held: boolean,
    bias: Bias,
  ) {
    this.i32 = i32;
    this.word = word;
    this.addr = addr;
    this.size = size;
    this.state = held ? HELD : INERT;
    this.bias = bias;
  }

  /**
   * The buffer's address, while the borrow lasts.
   *
   * @throws {OwnershipError} `use-after-drop` once the guard was released
   */
  get ptr(): number {
    if (this.state === ENDED) throw ended("Ref.ptr", this.addr);
    return this.addr;
  }

  /** Whether the guard counts a borrow (false once released, or for an inert guard). */
  get held(): boolean {
    return this.state === HELD;
  }

  /**
   * Ends the borrow; a second call does nothing.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * const r = a.borrow();
   * r.release();
   * console.log(r.held); // false
   * a.drop();
   * ```
   */
  release(): void {
    if (this.state === HELD) {
      const b = this.bias;
      if (b.solo === true) this.i32[this.word] -= 1;
      else {
        // Out of the ledger first (ledger.ts); nothing to give back once this worker detached.
        if (b.ledger?.enter(b.rec, LE_SHARED, -1) !== false) Atomics.sub(this.i32, this.word, 1);
      }
    }
    this.state = ENDED;
  }

  /** Ends the borrow at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/**
 * A mutable borrow of an owned buffer: exclusive, none other (shared or mutable) while it lasts.
 * Release it, or declare it with `using`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * const own = Ownership.create(heap);
 * const a = own.alloc(4);
 * {
 *   using w = a.borrowMut();
 *   heap.u8[w.ptr] = 42;
 *   console.log(a.tryBorrow()); // undefined: mutably borrowed
 * }
 * console.log(a.tryBorrow() !== undefined); // true
 * ```
 */
export class RefMut {
  /** The buffer's size in bytes. */
  readonly size: number = 0;
  /** A view over the heap that covers the record. */
  private readonly i32: Int32Array;
  /** The state word's index. */
  private readonly word: number = 0;
  /** The buffer. */
  private readonly addr: number = 0;
  /** `HELD`, `ENDED` or `INERT`. */
  private state: number = 0;
  /** The handle's bias, read when the borrow ends. */
  private readonly bias: Bias;

  /**
   * Wraps a mutable borrow already set in the state word (made by `borrowMut()`, not by users).
   *
   * @param i32 a view over the heap that covers the record
   * @param word the index of the record's state word
   * @param addr the buffer
   * @param size its size
   * @param held false for a guard that holds nothing
   * @param bias the handle's bias
   */
  constructor(
    i32: Int32Array,
    word: number,
    addr: number,
    size: number,
    held: boolean,
    bias: Bias,
  ) {
    this.i32 = i32;
    this.word = word;
    this.addr = addr;
    this.size = size;
    this.state = held ? HELD : INERT;
    this.bias = bias;
  }

  /**
   * The buffer's address, while the borrow lasts.
   *
   * @throws {OwnershipError} `use-after-drop` once the guard was released
   */
  get ptr(): number {
    if (this.state === ENDED) throw ended("RefMut.ptr", this.addr);
    return this.addr;
  }

  /** Whether the guard holds the mutable borrow (false once released, or for an inert guard). */
  get held(): boolean {
    return this.state === HELD;
  }

  /**
   * Ends the borrow; a second call does nothing.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * const w = a.borrowMut();
   * w.release();
   * a.borrowMut().release(); // free again
   * ```
   */
  release(): void {
    if (this.state === HELD) {
      const b = this.bias;
      if (b.solo === true) this.i32[this.word] &= ~OS_MUT;
      else {
        if (b.ledger?.enter(b.rec, LE_MUT, -1) !== false) Atomics.and(this.i32, this.word, ~OS_MUT);
      }
    }
    this.state = ENDED;
  }

  /** Ends the borrow at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.release();
  }
}
