/**
 * Owned handles: one owner per buffer, moves that kill the old handle, borrows counted in the
 * buffer's state word, tokens that hand a buffer (or a reference to it) to another worker.
 *
 * Theory. An {@linkcode Owned} is Rust's `Box<[u8]>` checked at run time: it holds the
 * record's address and the *generation* it was given; the record's `OR_GEN` names the one
 * handle that may use it now. `move()` gives the record a fresh generation and a new handle, and
 * marks the old one dead; `send()` does the same and puts the record in transit
 * (`PH_TRANSIT`), so that no handle can use it until some worker's `receive(token)` makes it
 * live again with that worker as owner. Borrows are `RefCell`'s: `borrow()` adds one shared
 * borrow to the state word if the word says live, owned by this worker, not mutably borrowed;
 * `borrowMut()` sets the mutable bit if no borrow at all is held. A `Shared` is a reference lent
 * to another worker (`share()`, then `access(token)` there): it counts in the state word's lent
 * field, borrows in the same word, and while any is held the owner can neither move, send nor
 * drop the buffer. The borrows are biased (guard.ts, {@linkcode Bias}): until a handle lends a
 * reference, no other worker can write its word (a stale token is checked under the table lock,
 * which `move` takes to change the generation; `receive` and `access` hold it too), so the
 * handle counts with a plain load and store; from its first `share()` on it counts with
 * compare-and-swap, and because a compare-and-swap on one word decides, two workers racing for
 * a mutable borrow (the owner and a worker holding a {@linkcode Shared}) get exactly one winner.
 *
 * Errors go to the worker's handler when one is set (`onError`), and then nothing throws a
 * broken rule: what a refused call gives back holds nothing (a `VOID` handle, a reference with
 * `refused` set, a token with `record` 0) and reports the same kind again at every use.
 *
 * Invariants. A dead handle never reads its record (it may have been freed and reused): it
 * knows how it died. The fast paths (`borrow`, `borrowMut`, `deref`) are a few loads, a store
 * (solo) or one compare-and-swap (after a share) and, in `full` mode, a stack capture; every failure takes a slow path that
 * names the rule. Owner, phase and generation change only with no borrow held and nothing
 * lent. Tokens are plain data (structured-clone safe) and are checked against the table under
 * the table lock before anything changes.
 *
 * Lock order: `track`, `move`, `receive` and `access` take the table lock alone (growth
 * allocates with it held, which takes core locks after it); borrows take no lock.
 *
 * @module
 */

import { Cache, type Heap, UmemError, type UmemErrorKind } from "../core/mod.ts";
import { hex } from "../core/internal.ts";
import { describe, detail, type OwnContext } from "./context.ts";
import { Bias, INERT_BIAS, Ref, RefMut } from "./guard.ts";
import {
  LE_LENT,
  LE_MUT,
  LE_SHARED,
  OR_ALLOC_STACK,
  OR_BORROW_STACK,
  OR_BYTES,
  OR_GEN,
  OR_MOVE_STACK,
  OR_PTR,
  OR_SIZE,
  OR_SOURCE,
  OR_STATE,
  OS_BUSY,
  OS_COUNT,
  OS_DEST,
  OS_DEST_SHIFT,
  OS_LENT,
  OS_LENT_ONE,
  OS_LENT_SHIFT,
  OS_MUT,
  OS_OWNER,
  OS_OWNER_SHIFT,
  OS_PHASE,
  OS_PHASE_SHIFT,
  OT_DROPPED,
  OT_NEXTGEN,
  OT_TRACKED,
  PC_PAGE_SHIFT,
  PH_DROPPING,
  PH_LIVE,
  PH_ORPHAN,
  PH_TRANSIT,
  SRC_HEAP,
  SRC_LIBC,
  SRC_UNGUARDED,
  stateWord,
} from "./layout.ts";
import { BorrowError, BorrowMutError, OwnershipError } from "./own_error.ts";
import { lockTable, tableFind, tableInsert, tableRemove, unlockTable } from "./table.ts";

/** A handle that can be used. */
const ALIVE = 0;
/** A handle that was moved from. */
const MOVED = 1;
/** A handle whose buffer was sent to another worker. */
const SENT = 2;
/** A handle that was dropped. */
const DROPPED = 3;
/**
 * A handle that never held a buffer: what a refused `move`, `clone` or `receive` returns when
 * the error handler let the program go on.
 */
const VOID = 4;

/** The state-word fields a borrow by the owner compares: phase, owner, mutable bit. */
const LIVE_MASK = OS_PHASE | OS_OWNER | OS_MUT;
/** Word offsets of the record fields the fast paths read. */
const W_GEN = OR_GEN >> 2;
const W_BORROW = OR_BORROW_STACK >> 2;

/**
 * A buffer handed to another worker: pass it with `postMessage`; that worker's
 * `own.receive(token)` turns it into its own {@linkcode Owned}. Plain data.
 */
export interface OwnedToken {
  /** The buffer. */
  readonly ptr: number;
  /** Its size. */
  readonly size: number;
  /** Its ownership record. */
  readonly record: number;
  /** The generation the receiving handle will carry. */
  readonly gen: number;
  /** The sending worker's slot. */
  readonly from: number;
  /**
   * The only worker slot that may receive it, or -1 for any (for the reader: `receive` checks
   * the destination the record keeps, so editing this changes nothing).
   */
  readonly to: number;
  /**
   * Set only on the token a refused `send` returned to a program whose error handler let it go
   * on (its `record` and `gen` are 0): the kind of the rule that send broke, which `receive`
   * reports again.
   */
  readonly refused?: UmemErrorKind;
}

/**
 * A reference lent to another worker: pass it with `postMessage`; that worker's
 * `own.access(token)` turns it into a {@linkcode Shared}. Plain data.
 */
export interface ShareToken {
  /** The buffer. */
  readonly ptr: number;
  /** Its size. */
  readonly size: number;
  /** Its ownership record. */
  readonly record: number;
  /** The generation of the owner's handle when it was shared. */
  readonly gen: number;
  /**
   * Set only on the token a refused `share` returned to a program whose error handler let it
   * go on (its `record` and `gen` are 0): the kind of the rule that share broke, which `access`
   * reports again.
   */
  readonly refused?: UmemErrorKind;
}

/** What `stateOf` and `leaks` say about a tracked buffer. */
export interface OwnedInfo {
  /** The buffer. */
  ptr: number;
  /** Its size. */
  size: number;
  /** The owning (or sending) worker's slot. */
  owner: number;
  /** `owned`, `in-transit` (sent, not received), `dropping`. */
  state: "owned" | "in-transit" | "dropping";
  /** Shared borrows held. */
  borrows: number;
  /** Whether a mutable borrow is held. */
  mutablyBorrowed: boolean;
  /** References lent to `Shared` handles. */
  lent: number;
  /** `full` mode: where the buffer was allocated or adopted ("" otherwise). */
  allocStack: string;
}

/** The next handle generation (never 0). */
function nextGen(ctx: OwnContext): number {
  const w = (ctx.root + OT_NEXTGEN) >> 2;
  let g = (Atomics.add(ctx.heap.i32, w, 1) + 1) | 0;
  if (g === 0) g = (Atomics.add(ctx.heap.i32, w, 1) + 1) | 0;
  return g;
}

/**
 * The owner of one buffer in the shared heap: borrow it, move it, send it to another worker,
 * drop it. Made by `own.alloc`, `own.adopt`, `own.receive` or `owned.clone`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * const own = Ownership.create(heap);
 * const a = own.alloc(16);
 * {
 *   using w = a.borrowMut();
 *   heap.u8.fill(1, w.ptr, w.ptr + 16);
 * }
 * const b = a.move(); // a is dead from here on
 * console.log(a.alive, b.alive); // false true
 * b.drop();
 * ```
 */
export class Owned {
  /** The buffer's size in bytes. */
  readonly size: number;
  /** The Ownership's context. */
  private readonly ctx: OwnContext;
  /** The record. */
  private readonly rec: number;
  /** A view over the heap that covers the record (views never shrink; the record never moves). */
  private readonly i32: Int32Array;
  /** The index of the record's state word. */
  private readonly word: number;
  /**
   * The state word of a record owned here, live, with no mutable borrow, while the handle is
   * alive; -1 (which no state word matches: bit 31 is never set) once it died.
   */
  private liveBits: number;
  /** `full` mode (the context's, kept here for the fast paths). */
  private readonly full: boolean;
  /** The buffer. */
  private readonly addr: number;
  /** This handle's generation. */
  private readonly gen: number;
  /** `ALIVE`, or how the handle died. */
  private dead = ALIVE;
  /** `full` mode: the stack of the move, send or drop that killed the handle. */
  private deathStack = 0;
  /**
   * Whether this handle is its state word's only writer (guard.ts): true until it lends a
   * reference with `share()`; its guards read it when they end.
   */
  private readonly bias: Bias;
  /** A `VOID` handle: the error of the refused call that made it, reported again at each use. */
  private readonly refused: OwnershipError | undefined;

  /**
   * Wraps a record whose `OR_GEN` is `gen` (made by the module, not by users), or makes a
   * `VOID` handle that holds nothing when `refused` is given (`rec` 0).
   *
   * @param ctx the Ownership's context
   * @param rec the record
   * @param addr the buffer
   * @param size its size
   * @param gen the handle's generation
   * @param refused for a `VOID` handle, the error that refused the call making it
   */
  constructor(
    ctx: OwnContext,
    rec: number,
    addr: number,
    size: number,
    gen: number,
    refused?: OwnershipError,
  ) {
    this.ctx = ctx;
    this.rec = rec;
    this.i32 = ctx.heap.i32;
    this.word = (rec + OR_STATE) >> 2;
    this.liveBits = refused === undefined ? ctx.liveBits : -1;
    this.full = ctx.full;
    this.addr = addr;
    this.size = size;
    this.gen = gen;
    this.bias = new Bias(refused === undefined);
    this.refused = refused;
    if (refused !== undefined) this.dead = VOID;
  }

  /**
   * Whether the handle may be used: not moved, sent or dropped, and owned by this worker.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * a.drop();
   * console.log(a.alive); // false
   * ```
   */
  get alive(): boolean {
    if (this.dead !== ALIVE) return false;
    const i32 = this.ctx.heap.i32, i = this.rec >> 2;
    return i32[i + W_GEN] === this.gen &&
      (Atomics.load(i32, i) & (OS_PHASE | OS_OWNER)) === this.ctx.liveBits;
  }

  /**
   * Takes a shared borrow: many may be held at once, none while the buffer is mutably
   * borrowed.
   *
   * @returns the guard; release it or declare it with `using`
   * @throws {BorrowError} when the buffer is mutably borrowed
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const a = own.alloc(4);
   * using r = a.borrow();
   * console.log(heap.u8[r.ptr] >= 0); // true
   * ```
   */
  borrow(): Ref {
    // The generation needs no check here: only this handle could have changed it (by a move,
    // a send or a drop, which kill it), and a record given up by a free has phase 0.
    // A solo handle is the word's only writer: a plain store; otherwise one compare-and-swap.
    const i32 = this.i32, i = this.word, s = i32[i], bias = this.bias;
    if ((s & LIVE_MASK) === this.liveBits && (s & OS_COUNT) !== OS_COUNT) {
      if (bias.solo === true) i32[i] = s + 1;
      else if (Atomics.compareExchange(i32, i, s, s + 1) !== s) {
        return this.borrowSlow(false, false, Owned.prototype.borrow) as Ref;
      }
      if (this.full) {
        Atomics.store(i32, i + W_BORROW, this.ctx.capture(Owned.prototype.borrow));
      }
      return new Ref(i32, i, this.addr, this.size, true, bias);
    }
    return this.borrowSlow(false, false, Owned.prototype.borrow) as Ref;
  }

  /**
   * Takes the mutable borrow: exclusive, refused while any borrow is held (here or by a worker
   * holding a `Shared` reference).
   *
   * @returns the guard; release it or declare it with `using`
   * @throws {BorrowMutError} when the buffer is borrowed
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const a = own.alloc(4);
   * using w = a.borrowMut();
   * heap.u8[w.ptr] = 7;
   * ```
   */
  borrowMut(): RefMut {
    const i32 = this.i32, i = this.word, s = i32[i], bias = this.bias;
    if ((s & (LIVE_MASK | OS_COUNT)) === this.liveBits) {
      if (bias.solo === true) i32[i] = s | OS_MUT;
      else if (Atomics.compareExchange(i32, i, s, s | OS_MUT) !== s) {
        return this.borrowSlow(true, false, Owned.prototype.borrowMut) as RefMut;
      }
      if (this.full) {
        Atomics.store(i32, i + W_BORROW, this.ctx.capture(Owned.prototype.borrowMut));
      }
      return new RefMut(i32, i, this.addr, this.size, true, bias);
    }
    return this.borrowSlow(true, false, Owned.prototype.borrowMut) as RefMut;
  }

  /**
   * Takes a shared borrow if the buffer is not mutably borrowed (Rust's `try_borrow`).
   *
   * @returns the guard, or undefined when the buffer is mutably borrowed
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner` (those are not
   *   borrow conflicts)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(4);
   * const w = a.borrowMut();
   * console.log(a.tryBorrow()); // undefined
   * w.release();
   * ```
   */
  tryBorrow(): Ref | undefined {
    return this.borrowSlow(false, true, Owned.prototype.tryBorrow) as Ref | undefined;
  }

  /**
   * Takes the mutable borrow if no borrow is held (Rust's `try_borrow_mut`).
   *
   * @returns the guard, or undefined when the buffer is borrowed
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(4);
   * const r = a.borrow();
   * console.log(a.tryBorrowMut()); // undefined
   * r.release();
   * a.tryBorrowMut()?.release();
   * ```
   */
  tryBorrowMut(): RefMut | undefined {
    return this.borrowSlow(true, true, Owned.prototype.tryBorrowMut) as RefMut | undefined;
  }

  /** Every borrow that the fast path did not take: races, conflicts, dead handles. */
  private borrowSlow(mut: boolean, tryOnly: boolean, above: unknown): Ref | RefMut | undefined {
    const ctx = this.ctx, fn = mut ? "Owned.borrowMut" : "Owned.borrow";
    for (;;) {
      const s = this.check(fn);
      const i32 = ctx.heap.i32, i = this.rec >> 2;
      if (s < 0) return this.inert(mut);
      if (mut ? (s & (OS_COUNT | OS_MUT)) !== 0 : (s & OS_MUT) !== 0) {
        if (tryOnly) return undefined;
        ctx.worker.fail(conflictError(ctx, this.rec, s, fn, this.addr, mut));
        return this.inert(mut);
      }
      if (!mut && (s & OS_COUNT) === OS_COUNT) {
        if (tryOnly) return undefined; // as Rust's try_borrow, an Err, not a panic
        ctx.worker.fail(countFullError(ctx.heap, this.rec, s, fn, this.addr));
        return this.inert(mut);
      }
      if (Atomics.compareExchange(i32, i, s, mut ? s | OS_MUT : s + 1) === s) {
        if (ctx.full) Atomics.store(i32, i + W_BORROW, ctx.capture(above));
        return mut
          ? new RefMut(this.i32, this.word, this.addr, this.size, true, this.bias)
          : new Ref(this.i32, this.word, this.addr, this.size, true, this.bias);
      }
    }
  }

  /** A guard that holds nothing, for an error handler that let a conflict go on. */
  private inert(mut: boolean): Ref | RefMut {
    return mut
      ? new RefMut(this.i32, this.word, this.addr, this.size, false, this.bias)
      : new Ref(this.i32, this.word, this.addr, this.size, false, this.bias);
  }

  /**
   * The state word when the handle is alive and its buffer owned here; otherwise the error
   * goes to the handler (or is thrown when there is none) and the result is -1.
   */
  private check(fn: string): number {
    const s = this.liveState();
    if (s >= 0) return s;
    this.ctx.worker.fail(this.fault(fn));
    return -1;
  }

  /** The state word when the handle is alive and its buffer owned here, else -1. */
  private liveState(): number {
    if (this.dead !== ALIVE) return -1;
    const h = this.ctx.heap, i = this.rec >> 2, s = Atomics.load(h.i32, i);
    if (h.i32[i + W_GEN] === this.gen && (s & (OS_PHASE | OS_OWNER)) === this.ctx.liveBits) {
      return s;
    }
    return -1;
  }

  /** Why the handle may not be used now (after `liveState` said -1): the error to report. */
  private fault(fn: string): OwnershipError {
    const ctx = this.ctx, h = ctx.heap;
    let e: OwnershipError;
    if (this.dead !== ALIVE) {
      e = this.deadError(fn);
    } else {
      const i = this.rec >> 2, s = Atomics.load(h.i32, i);
      const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT, owner = (s & OS_OWNER) >>> OS_OWNER_SHIFT;
      const d = detail(h, this.rec, s, ctx.full, OR_MOVE_STACK);
      if (phase === PH_ORPHAN) {
        e = new OwnershipError(
          "use-after-drop",
          `${fn}: buffer ${hex(this.addr)} was freed behind its handle's back (a free the ` +
            `error handler let through)`,
          this.addr,
          d,
        );
      } else if (owner !== h.slot) {
        e = new OwnershipError(
          "not-owner",
          `${fn}: buffer ${hex(this.addr)} is owned by worker ${owner}, not by worker ${h.slot}`,
          this.addr,
          d,
        );
      } else {
        e = new OwnershipError(
          "use-after-move",
          `${fn}: buffer ${hex(this.addr)} used through a stale handle (it moved on)` +
            at("moved", d.conflictStack),
          this.addr,
          d,
        );
      }
    }
    return e;
  }

  /**
   * Reports a refused `move`, `clone` (or `receive`) to the handler, or throws it; with a
   * handler, gives back a `VOID` handle that holds nothing and reports the same rule at every
   * use.
   */
  private refuse(e: OwnershipError): Owned {
    this.ctx.worker.fail(e);
    return new Owned(this.ctx, 0, this.addr, this.size, 0, e);
  }

  /** The error of a dead handle: how it died and, in `full` mode, where. */
  private deadError(fn: string): OwnershipError {
    const ctx = this.ctx, stack = ctx.stackText(this.deathStack);
    const d = {
      owner: -1,
      borrows: 0,
      mutablyBorrowed: false,
      lent: 0,
      conflictStack: stack,
      allocStack: "",
    };
    const a = hex(this.addr);
    if (this.dead === VOID) {
      const r = this.refused as OwnershipError;
      return new OwnershipError(
        r.kind,
        `${fn}: this handle of buffer ${a} holds nothing: it was returned by a refused call ` +
          `that the error handler let go on (${r.message.split("\n")[0]})`,
        this.addr,
        d,
      );
    }
    if (this.dead === DROPPED) {
      return fn === "Owned.drop"
        ? new OwnershipError(
          "double-drop",
          `${fn}: buffer ${a} dropped twice` + at("first dropped", stack),
          this.addr,
          d,
        )
        : new OwnershipError(
          "use-after-drop",
          `${fn}: buffer ${a} used after drop` + at("dropped", stack),
          this.addr,
          d,
        );
    }
    return new OwnershipError(
      "use-after-move",
      `${fn}: buffer ${a} used after ${
        this.dead === SENT ? "it was sent to another worker" : "move"
      }` + at(this.dead === SENT ? "sent" : "moved", stack),
      this.addr,
      d,
    );
  }

  /**
   * The buffer's address, after checking that the handle is alive and the buffer owned by
   * this worker.
   *
   * @returns the address
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner` (with an error
   *   handler: reported, and the address is returned)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const a = own.alloc(4);
   * heap.u8[a.deref()] = 1;
   * ```
   */
  deref(): number {
    if ((this.i32[this.word] & (OS_PHASE | OS_OWNER)) === this.liveBits) {
      return this.addr;
    }
    this.check("Owned.deref");
    return this.addr;
  }

  /**
   * Moves the buffer to a new handle; this one is dead from then on (Rust's move).
   *
   * The generation changes under the table lock, which `own.access` holds while it checks a
   * token's generation and counts the reference, so a token shared before the move never
   * writes the record's state word afterwards (the new handle starts solo, see guard.ts).
   *
   * @returns the new handle; with an error handler, when the move is refused, a handle that
   *   holds nothing (`alive` false, every use reported again with the same kind) while this
   *   one stays the owner
   * @throws {OwnershipError} `borrow-conflict` when borrowed or lent; `use-after-move`,
   *   `use-after-drop`, `not-owner`
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * const b = a.move();
   * try {
   *   a.borrow();
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "use-after-move"
   * }
   * b.drop();
   * ```
   */
  move(): Owned {
    const ctx = this.ctx, h = ctx.heap, i = this.rec >> 2;
    for (;;) {
      const s = this.liveState();
      if (s < 0) return this.refuse(this.fault("Owned.move"));
      if ((s & OS_BUSY) !== 0) return this.refuse(this.busy("Owned.move", "move out of", s));
      let gen = 0;
      lockTable(h, ctx.root);
      try {
        // Unchanged under the lock: no reference was counted since the check.
        if (Atomics.load(h.i32, i) === s) {
          gen = nextGen(ctx);
          Atomics.store(h.i32, i + W_GEN, gen);
        }
      } finally {
        unlockTable(h, ctx.root);
      }
      if (gen === 0) continue;
      this.die(MOVED, Owned.prototype.move);
      return new Owned(ctx, this.rec, this.addr, this.size, gen);
    }
  }

  /**
   * Hands the buffer to another worker: returns a token to post to it, whose
   * `own.receive(token)` makes it the owner. This handle is dead from then on, and until the
   * token is received no handle can use the buffer.
   *
   * @param to the only worker slot that may receive it (default: any)
   * @returns the token (plain data, for `postMessage`); with an error handler, when the send
   *   is refused, a token whose `refused` names the rule: `receive` reports it again and gives
   *   a handle that holds nothing, and this handle stays the owner
   * @throws {OwnershipError} `borrow-conflict` when borrowed or lent; `use-after-move`,
   *   `use-after-drop`, `not-owner`
   * @throws {UmemError} `invalid-argument` for a bad slot (bad input, thrown even with a
   *   handler)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const token = own.alloc(8).send();
   * // ... worker.postMessage(token); there: Ownership.create(Heap.attach(buf)).receive(token)
   * const back = own.receive(token); // any worker, this one included
   * back.drop();
   * ```
   */
  send(to = -1): OwnedToken {
    if (to !== -1 && (!Number.isInteger(to) || to < 0 || to > OS_OWNER >>> OS_OWNER_SHIFT)) {
      throw new UmemError(
        "invalid-argument",
        `Owned.send: worker slot ${String(to)} (expected -1 or 0..${OS_OWNER >>> OS_OWNER_SHIFT})`,
      );
    }
    const ctx = this.ctx, h = ctx.heap, i = this.rec >> 2;
    for (;;) {
      const s = this.liveState();
      if (s < 0) return this.refuseToken(this.fault("Owned.send"), to);
      if ((s & OS_BUSY) !== 0) return this.refuseToken(this.busy("Owned.send", "send", s), to);
      const transit = stateWord(PH_TRANSIT, h.slot) | ((to + 1) << OS_DEST_SHIFT);
      if (Atomics.compareExchange(h.i32, i, s, transit) === s) break;
    }
    const gen = nextGen(ctx);
    Atomics.store(h.i32, i + W_GEN, gen);
    this.die(SENT, Owned.prototype.send);
    return { ptr: this.addr, size: this.size, record: this.rec, gen, from: h.slot, to };
  }

  /**
   * Lends a reference to another worker: returns a token whose `own.access(token)` there makes
   * a {@linkcode Shared} that borrows the buffer as this handle does. While a `Shared` is held
   * the buffer cannot be moved, sent or dropped.
   *
   * From then on this handle's borrows count with compare-and-swap (it is no longer solo).
   *
   * @returns the token (plain data, for `postMessage`); with an error handler, when the share
   *   is refused, a token whose `refused` names the rule: `access` reports it again and gives
   *   a reference that holds nothing
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * const ref = own.access(a.share()); // another worker would do this
   * const w = a.tryBorrowMut();
   * console.log(w !== undefined); // true: a reference alone is no borrow
   * w?.release();
   * ref.release();
   * a.drop();
   * ```
   */
  share(): ShareToken {
    if (this.liveState() < 0) {
      const e = this.fault("Owned.share");
      this.ctx.worker.fail(e);
      return { ptr: this.addr, size: this.size, record: 0, gen: 0, refused: e.kind };
    }
    // No longer the word's only writer: later borrows and the ends of the guards held now are
    // atomic, and the read-modify-write publishes the counts stored so far to other workers.
    this.bias.solo = false;
    Atomics.or(this.i32, this.word, 0);
    return { ptr: this.addr, size: this.size, record: this.rec, gen: this.gen };
  }

  /** Reports a refused `send` (or throws it); with a handler, returns a token that is void. */
  private refuseToken(e: OwnershipError, to: number): OwnedToken {
    this.ctx.worker.fail(e);
    const from = this.ctx.heap.slot;
    return { ptr: this.addr, size: this.size, record: 0, gen: 0, from, to, refused: e.kind };
  }

  /**
   * Frees the buffer (Rust's drop). Refused while it is borrowed or lent.
   *
   * @throws {OwnershipError} `drop-while-borrowed`, `double-drop`, `use-after-move`,
   *   `not-owner` (with an error handler: reported, and nothing is freed)
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * a.drop();
   * try {
   *   a.drop();
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "double-drop"
   * }
   * ```
   */
  drop(): void {
    const ctx = this.ctx, h = ctx.heap, w = ctx.worker, i = this.rec >> 2;
    let s: number;
    for (;;) {
      s = this.check("Owned.drop");
      if (s < 0) return;
      if ((s & OS_BUSY) !== 0) {
        const d = detail(h, this.rec, s, ctx.full, OR_BORROW_STACK);
        w.fail(
          new OwnershipError(
            "drop-while-borrowed",
            `Owned.drop: buffer ${hex(this.addr)} dropped while borrowed (${describe(s)})` +
              at("latest borrow", d.conflictStack),
            this.addr,
            d,
          ),
        );
        return;
      }
      if (Atomics.compareExchange(h.i32, i, s, stateWord(PH_DROPPING, h.slot)) === s) break;
    }
    w.quiet++;
    try {
      const src = h.i32[(this.rec + OR_SOURCE) >> 2] & ~SRC_UNGUARDED;
      if (src === SRC_HEAP) h.free(this.addr, this.size);
      else if (src === SRC_LIBC) h.libc.free(this.addr);
      else new Cache(h, src).free(this.addr);
    } catch (e) {
      Atomics.store(h.i32, i, s); // the heap refused: the handle lives on
      throw e;
    } finally {
      w.quiet--;
    }
    lockTable(h, ctx.root);
    try {
      tableRemove(h, ctx.root, this.addr);
      h.i32[(ctx.root + OT_DROPPED) >> 2]++; // counters change under the lock
    } finally {
      unlockTable(h, ctx.root);
    }
    Atomics.sub(w.pages, this.addr >>> PC_PAGE_SHIFT, 1);
    Atomics.store(h.i32, i, 0);
    w.quiet++;
    try {
      h.free(this.rec, OR_BYTES);
    } finally {
      w.quiet--;
    }
    this.die(DROPPED, Owned.prototype.drop);
  }

  /**
   * Copies the buffer into a new one with its own owner (Rust's `clone`), under a shared
   * borrow.
   *
   * @returns the new handle; with an error handler, when the clone is refused, a handle that
   *   holds nothing (`alive` false, every use reported again with the same kind)
   * @throws {BorrowError} when the buffer is mutably borrowed
   * @throws {OwnershipError} `use-after-move`, `use-after-drop`, `not-owner`
   * @throws {OutOfMemoryError} when the heap is full (not a rule: thrown even with a handler)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const a = own.alloc(4);
   * heap.u8[a.deref()] = 9;
   * const b = a.clone();
   * console.log(heap.u8[b.deref()], b.deref() !== a.deref()); // 9 true
   * ```
   */
  clone(): Owned {
    const ctx = this.ctx, i = this.rec >> 2;
    for (;;) {
      const s = this.liveState();
      if (s < 0) return this.refuse(this.fault("Owned.clone"));
      if ((s & OS_MUT) !== 0) {
        const d = detail(ctx.heap, this.rec, s, ctx.full, OR_BORROW_STACK);
        return this.refuse(
          new BorrowError(
            `Owned.clone: buffer ${hex(this.addr)} already mutably borrowed: BorrowError` +
              at("mutable borrow", d.conflictStack),
            this.addr,
            d,
          ),
        );
      }
      if (Atomics.compareExchange(ctx.heap.i32, i, s, s + 1) === s) break;
    }
    try {
      const p = ctx.heap.alloc(this.size);
      try {
        ctx.heap.u8.copyWithin(p, this.addr, this.addr + this.size);
        return track(ctx, p, this.size, "Owned.clone", Owned.prototype.clone);
      } catch (e) {
        ctx.worker.quiet++;
        try {
          ctx.heap.free(p, this.size);
        } finally {
          ctx.worker.quiet--;
        }
        throw e;
      }
    } finally {
      Atomics.sub(ctx.heap.i32, i, 1);
    }
  }

  /** The error of a move or send of a borrowed or lent buffer. */
  private busy(fn: string, what: string, s: number): OwnershipError {
    const ctx = this.ctx, d = detail(ctx.heap, this.rec, s, ctx.full, OR_BORROW_STACK);
    return new OwnershipError(
      "borrow-conflict",
      `${fn}: cannot ${what} buffer ${hex(this.addr)} because it is borrowed (${describe(s)})` +
        at("latest borrow", d.conflictStack),
      this.addr,
      d,
    );
  }

  /** Marks the handle dead, remembering where (`full` mode). */
  private die(how: number, above: unknown): void {
    const ctx = this.ctx;
    this.dead = how;
    this.liveBits = -1;
    if (!ctx.full) return;
    this.deathStack = ctx.capture(above);
    if (how !== DROPPED) {
      Atomics.store(ctx.heap.i32, (this.rec + OR_MOVE_STACK) >> 2, this.deathStack);
    }
  }
}

/**
 * A reference to a buffer another worker owns (or this one: `own.access(owned.share())`),
 * made by `own.access(token)`. It borrows as the owner does, in the same state word; while it is
 * held the owner cannot move, send or drop the buffer. Release it, or declare it with `using`.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * const own = Ownership.create(heap);
 * const a = own.alloc(8);
 * {
 *   using ref = own.access(a.share());
 *   using w = ref.borrowMut();
 *   console.log(a.tryBorrow()); // undefined: the reference holds the mutable borrow
 *   heap.u8[w.ptr] = 1;
 * }
 * a.drop();
 * ```
 */
export class Shared {
  /** The buffer's size in bytes. */
  readonly size: number;
  /** The Ownership's context. */
  private readonly ctx: OwnContext;
  /** The record. */
  private readonly rec: number;
  /** The buffer. */
  private readonly addr: number;
  /** Whether the reference is still held. */
  private open: boolean;
  /** A reference that holds nothing: the error of the refused `access` that made it. */
  private readonly refused: OwnershipError | undefined;
  /** Never solo; names the worker's ledger, which its guards tell when they end. */
  private readonly bias: Bias;

  /**
   * Wraps a reference already counted in the lent field (made by `own.access`), or makes one
   * that holds nothing when `refused` is given (`rec` 0).
   *
   * @param ctx the Ownership's context
   * @param rec the record
   * @param addr the buffer
   * @param size its size
   * @param refused for a reference that holds nothing, the error that refused its `access`
   */
  constructor(
    ctx: OwnContext,
    rec: number,
    addr: number,
    size: number,
    refused?: OwnershipError,
  ) {
    this.ctx = ctx;
    this.rec = rec;
    this.addr = addr;
    this.size = size;
    this.open = refused === undefined;
    this.refused = refused;
    this.bias = refused === undefined ? new Bias(false, ctx.worker.ledger, rec) : INERT_BIAS;
  }

  /**
   * Takes a shared borrow.
   *
   * @returns the guard
   * @throws {BorrowError} when the buffer is mutably borrowed
   * @throws {OwnershipError} `use-after-drop` once the reference was released
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * using ref = own.access(own.alloc(8).share());
   * using r = ref.borrow();
   * console.log(r.size); // 8
   * ```
   */
  borrow(): Ref {
    return this.take(false, false) as Ref;
  }

  /**
   * Takes the mutable borrow.
   *
   * @returns the guard
   * @throws {BorrowMutError} when the buffer is borrowed
   * @throws {OwnershipError} `use-after-drop` once the reference was released
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * using ref = own.access(own.alloc(8).share());
   * using w = ref.borrowMut();
   * console.log(w.held); // true
   * ```
   */
  borrowMut(): RefMut {
    return this.take(true, false) as RefMut;
  }

  /**
   * Takes a shared borrow unless the buffer is mutably borrowed.
   *
   * @returns the guard, or undefined on a conflict
   * @throws {OwnershipError} `use-after-drop` once the reference was released
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * using ref = own.access(a.share());
   * using w = a.borrowMut();
   * console.log(ref.tryBorrow()); // undefined
   * ```
   */
  tryBorrow(): Ref | undefined {
    return this.take(false, true) as Ref | undefined;
  }

  /**
   * Takes the mutable borrow unless any borrow is held: of two workers racing for it, exactly
   * one wins.
   *
   * @returns the guard, or undefined on a conflict
   * @throws {OwnershipError} `use-after-drop` once the reference was released
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * using ref = own.access(a.share());
   * const w = ref.tryBorrowMut();
   * console.log(w !== undefined, a.tryBorrowMut()); // true undefined
   * w?.release();
   * ```
   */
  tryBorrowMut(): RefMut | undefined {
    return this.take(true, true) as RefMut | undefined;
  }

  /** Takes a borrow through the reference. */
  private take(mut: boolean, tryOnly: boolean): Ref | RefMut | undefined {
    const ctx = this.ctx, h = ctx.heap, i = this.rec >> 2;
    const fn = mut ? "Shared.borrowMut" : "Shared.borrow";
    if (this.open) ctx.worker.ledger.reserve(); // room to enter the borrow once it is taken
    for (;;) {
      const s = Atomics.load(h.i32, i);
      let e: OwnershipError | undefined;
      if (this.refused !== undefined) {
        e = new OwnershipError(
          this.refused.kind,
          `${fn}: this reference to buffer ${hex(this.addr)} holds nothing: it was returned by ` +
            `a refused Ownership.access that the error handler let go on (${
              this.refused.message.split("\n")[0]
            })`,
          this.addr,
          detail(h, 0, 0, false, -1),
        );
      } else if (!this.open) {
        e = new OwnershipError(
          "use-after-drop",
          `${fn}: the reference to buffer ${hex(this.addr)} was released`,
          this.addr,
          detail(h, 0, 0, false, -1),
        );
      } else if ((s & OS_PHASE) >>> OS_PHASE_SHIFT !== PH_LIVE) {
        e = new OwnershipError(
          "use-after-drop",
          `${fn}: buffer ${hex(this.addr)} was freed behind its owner's back`,
          this.addr,
          detail(h, this.rec, s, ctx.full, OR_BORROW_STACK),
        );
      } else if (mut ? (s & (OS_COUNT | OS_MUT)) !== 0 : (s & OS_MUT) !== 0) {
        if (tryOnly) return undefined;
        e = conflictError(ctx, this.rec, s, fn, this.addr, mut);
      } else if (!mut && (s & OS_COUNT) === OS_COUNT) {
        if (tryOnly) return undefined;
        e = countFullError(h, this.rec, s, fn, this.addr);
      }
      if (e !== undefined) {
        ctx.worker.fail(e);
        return mut
          ? new RefMut(h.i32, i, this.addr, this.size, false, INERT_BIAS)
          : new Ref(h.i32, i, this.addr, this.size, false, INERT_BIAS);
      }
      if (Atomics.compareExchange(h.i32, i, s, mut ? s | OS_MUT : s + 1) === s) {
        ctx.worker.ledger.enter(this.rec, mut ? LE_MUT : LE_SHARED, 1);
        if (ctx.full) Atomics.store(h.i32, i + W_BORROW, ctx.capture(Shared.prototype.take));
        return mut
          ? new RefMut(h.i32, i, this.addr, this.size, true, this.bias)
          : new Ref(h.i32, i, this.addr, this.size, true, this.bias);
      }
    }
  }

  /** Whether the reference is still held. */
  get held(): boolean {
    return this.open;
  }

  /**
   * Gives the reference back; the owner may move or drop the buffer once no reference and no
   * borrow is held. A second call does nothing. Borrows taken through it stay counted until
   * their guards end.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * const ref = own.access(a.share());
   * ref.release();
   * a.drop();
   * ```
   */
  release(): void {
    if (!this.open) return;
    this.open = false;
    // Out of the ledger first (ledger.ts); nothing to give back once this worker detached.
    if (this.ctx.worker.ledger.enter(this.rec, LE_LENT, -1)) {
      Atomics.sub(this.ctx.heap.i32, this.rec >> 2, OS_LENT_ONE);
    }
  }

  /** Gives the reference back at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/**
 * Rust's error for a borrow of the buffer at `addr` (record `rec`, state word `s`) that
 * conflicts with the borrows out: `BorrowMutError` for a mutable one, else `BorrowError`.
 */
function conflictError(
  ctx: OwnContext,
  rec: number,
  s: number,
  fn: string,
  addr: number,
  mut: boolean,
): OwnershipError {
  const d = detail(ctx.heap, rec, s, ctx.full, OR_BORROW_STACK);
  return mut
    ? new BorrowMutError(
      `${fn}: buffer ${hex(addr)} already borrowed (${describe(s)}): BorrowMutError` +
        at("latest borrow", d.conflictStack),
      addr,
      d,
    )
    : new BorrowError(
      `${fn}: buffer ${hex(addr)} already mutably borrowed: BorrowError` +
        at("mutable borrow", d.conflictStack),
      addr,
      d,
    );
}

/** The error for a shared borrow past the most the state word can count. */
function countFullError(
  heap: Heap,
  rec: number,
  s: number,
  fn: string,
  addr: number,
): OwnershipError {
  return new OwnershipError(
    "borrow-conflict",
    `${fn}: buffer ${hex(addr)} has ${OS_COUNT} shared borrows, the most it can count`,
    addr,
    detail(heap, rec, s, false, -1),
  );
}

/** The stack text of a report, indented, or "" when there is none. */
function at(what: string, stack: string): string {
  if (stack === "") return "";
  return `\n  ${what} at:\n` + stack.split("\n").map((f) => `    ${f}`).join("\n");
}

/**
 * Starts tracking a buffer this worker owns: a record, then its address in the table.
 *
 * @param ctx the Ownership's context
 * @param ptr the buffer (allocated with `heap.alloc(size)`)
 * @param size its size
 * @param fn the public function, for messages
 * @param above the public function, for the stack
 * @param source where the buffer goes back at drop (`SRC_*` or a cache record)
 * @returns the handle
 * @throws {OwnershipError} `not-owner` when another worker owns the buffer
 * @throws {UmemError} `invalid-argument` when this worker tracks it already
 */
export function track(
  ctx: OwnContext,
  ptr: number,
  size: number,
  fn: string,
  above: unknown,
  source = SRC_HEAP,
): Owned {
  const h = ctx.heap, w = ctx.worker;
  const rec = h.alloc(OR_BYTES);
  const gen = nextGen(ctx);
  const i32 = h.i32, r = rec >> 2;
  i32[r + (OR_PTR >> 2)] = ptr;
  i32[r + (OR_SIZE >> 2)] = size;
  i32[r + (OR_ALLOC_STACK >> 2)] = ctx.capture(above);
  i32[r + (OR_BORROW_STACK >> 2)] = 0;
  i32[r + (OR_MOVE_STACK >> 2)] = 0;
  i32[r + (OR_SOURCE >> 2)] = ctx.guardFrees ? source : source | SRC_UNGUARDED;
  i32[r + W_GEN] = gen;
  Atomics.store(i32, r + (OR_STATE >> 2), ctx.liveBits);
  let old: [number, number] | undefined, there = -1, err: unknown;
  Atomics.add(w.pages, ptr >>> PC_PAGE_SHIFT, 1); // before the insert: the hook may skip on 0
  lockTable(h, ctx.root);
  try {
    const e = tableFind(h, ctx.root, ptr);
    if (e !== 0) there = Atomics.load(h.i32, (e + OR_STATE) >> 2);
    else {
      old = tableInsert(h, ctx.root, ptr, rec);
      h.i32[(ctx.root + OT_TRACKED) >> 2]++; // counters change under the lock
    }
  } catch (e) {
    err = e;
  } finally {
    unlockTable(h, ctx.root);
  }
  if (there !== -1 || err !== undefined) {
    Atomics.sub(w.pages, ptr >>> PC_PAGE_SHIFT, 1);
    w.quiet++;
    try {
      h.free(rec, OR_BYTES);
    } finally {
      w.quiet--;
    }
    if (err !== undefined) throw err;
    const owner = (there & OS_OWNER) >>> OS_OWNER_SHIFT;
    if (owner !== h.slot) {
      throw new OwnershipError(
        "not-owner",
        `${fn}: buffer ${hex(ptr)} is owned by worker ${owner}, not by worker ${h.slot}`,
        ptr,
        detail(h, 0, there, false, -1),
      );
    }
    throw new UmemError(
      "invalid-argument",
      `${fn}: buffer ${hex(ptr)} has an owner already (a live handle in this worker)`,
      ptr,
    );
  }
  if (old !== undefined) {
    w.quiet++;
    try {
      h.free(old[0], old[1]);
    } finally {
      w.quiet--;
    }
  }
  return new Owned(ctx, rec, ptr, size, gen);
}

/** Checks that a token is plain data of whole numbers; throws `invalid-argument` otherwise. */
function checkToken(fn: string, t: unknown, keys: readonly string[]): void {
  const o = t as Record<string, unknown>;
  if (typeof t !== "object" || t === null || keys.some((k) => !Number.isInteger(o[k]))) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: not a token (expected an object with whole-number ${keys.join(", ")})`,
    );
  }
}

/** The kinds a refused `send` or `share` may name in its token. */
const RULE_KINDS: readonly UmemErrorKind[] = [
  "borrow-conflict",
  "use-after-move",
  "use-after-drop",
  "double-drop",
  "drop-while-borrowed",
  "not-owner",
];

/** The error of a void token (record 0): the rule its refused `send` or `share` broke. */
function voidToken(fn: string, token: OwnedToken | ShareToken, from: string): OwnershipError {
  const k = RULE_KINDS.includes(token.refused as UmemErrorKind)
    ? token.refused as UmemErrorKind
    : "use-after-drop";
  return new OwnershipError(
    k,
    `${fn}: buffer ${hex(token.ptr)}: the token is void: it was returned by a refused ${from} ` +
      `that the error handler let go on (${k})`,
    token.ptr,
    { owner: -1, borrows: 0, mutablyBorrowed: false, lent: 0, conflictStack: "", allocStack: "" },
  );
}

/**
 * Makes this worker the owner of a buffer another worker sent (or this one).
 *
 * @param ctx the Ownership's context
 * @param token what `send` returned
 * @returns the handle; with an error handler, when the receive is refused, a handle that holds
 *   nothing (`alive` false, every use reported again with the same kind)
 * @throws {OwnershipError} `use-after-move` for a token received already, `not-owner` for a
 *   token addressed to another worker, `use-after-drop` for a buffer no longer tracked; the
 *   kind in `refused` for a token a refused `send` returned
 */
export function receive(ctx: OwnContext, token: OwnedToken): Owned {
  checkToken("Ownership.receive", token, ["ptr", "size", "record", "gen", "from", "to"]);
  const h = ctx.heap, fn = "Ownership.receive", a = hex(token.ptr);
  if (token.record === 0) return voidHandle(ctx, voidToken(fn, token, "Owned.send"), token);
  h.sync();
  let e: OwnershipError | undefined, rec = 0;
  lockTable(h, ctx.root);
  try {
    rec = tableFind(h, ctx.root, token.ptr);
    const s = rec === 0 ? 0 : Atomics.load(h.i32, (rec + OR_STATE) >> 2);
    const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT, dest = ((s & OS_DEST) >>> OS_DEST_SHIFT) - 1;
    if (rec === 0 || rec !== token.record) {
      e = new OwnershipError(
        "use-after-drop",
        `${fn}: buffer ${a} is not tracked (dropped, or never sent)`,
        token.ptr,
        detail(h, 0, 0, false, -1),
      );
    } else if (h.i32[(rec + OR_GEN) >> 2] !== token.gen || phase !== PH_TRANSIT) {
      e = new OwnershipError(
        "use-after-move",
        `${fn}: buffer ${a}: the token was received already (it is owned by worker ${
          (s & OS_OWNER) >>> OS_OWNER_SHIFT
        })`,
        token.ptr,
        detail(h, rec, s, ctx.full, OR_MOVE_STACK),
      );
    } else if (dest !== -1 && dest !== h.slot) {
      // The destination is the record's, not the token's: a token is plain data.
      e = new OwnershipError(
        "not-owner",
        `${fn}: buffer ${a} was sent to worker ${dest}, not to worker ${h.slot}`,
        token.ptr,
        detail(h, rec, s, ctx.full, OR_MOVE_STACK),
      );
    } else if (
      Atomics.compareExchange(h.i32, (rec + OR_STATE) >> 2, s, ctx.liveBits) !== s
    ) {
      e = new OwnershipError(
        "use-after-move",
        `${fn}: buffer ${a}: another worker received the token first`,
        token.ptr,
        detail(h, rec, s, false, -1),
      );
    } else {
      // The receiving Ownership's guardFrees holds for the buffer now (under the table lock,
      // where the free hook reads it).
      const src = h.i32[(rec + OR_SOURCE) >> 2] & ~SRC_UNGUARDED;
      h.i32[(rec + OR_SOURCE) >> 2] = ctx.guardFrees ? src : src | SRC_UNGUARDED;
    }
  } finally {
    unlockTable(h, ctx.root);
  }
  if (e !== undefined) return voidHandle(ctx, e, token);
  h.sync(); // the handle keeps the current view: it must cover the record
  if (ctx.full) {
    Atomics.store(h.i32, (rec + OR_MOVE_STACK) >> 2, ctx.capture(receiveAbove));
  }
  return new Owned(ctx, rec, token.ptr, h.i32[(rec + OR_SIZE) >> 2], token.gen);
}

/** Reports a refused `receive` (or throws it); with a handler, returns a handle of nothing. */
function voidHandle(ctx: OwnContext, e: OwnershipError, token: OwnedToken): Owned {
  ctx.worker.fail(e);
  return new Owned(ctx, 0, token.ptr, token.size, 0, e);
}

/** The function a `full` mode stack of a receive starts above. */
let receiveAbove: unknown = receive;

/**
 * Sets the public functions the stacks of `receive` and `access` start above.
 *
 * @param recv `Ownership.prototype.receive`
 */
export function setStackTops(recv: unknown): void {
  receiveAbove = recv;
}

/**
 * Takes a reference lent with `share`.
 *
 * @param ctx the Ownership's context
 * @param token what `share` returned
 * @returns the reference; with an error handler, when the access is refused, a reference that
 *   holds nothing (`held` false, every borrow reported again with the same kind)
 * @throws {OwnershipError} `use-after-move` when the owner moved or sent the buffer since,
 *   `use-after-drop` when it was dropped; the kind in `refused` for a token a refused `share`
 *   returned
 */
export function access(ctx: OwnContext, token: ShareToken): Shared {
  checkToken("Ownership.access", token, ["ptr", "size", "record", "gen"]);
  const h = ctx.heap, fn = "Ownership.access", a = hex(token.ptr);
  if (token.record === 0) {
    const e = voidToken(fn, token, "Owned.share");
    ctx.worker.fail(e);
    return new Shared(ctx, 0, token.ptr, token.size, e);
  }
  ctx.worker.ledger.reserve(); // room to enter the reference once it is counted
  h.sync();
  let e: OwnershipError | undefined, rec = 0;
  lockTable(h, ctx.root);
  try {
    rec = tableFind(h, ctx.root, token.ptr);
    for (;;) {
      const s = rec === 0 ? 0 : Atomics.load(h.i32, (rec + OR_STATE) >> 2);
      if (rec === 0 || rec !== token.record || (s & OS_PHASE) >>> OS_PHASE_SHIFT === PH_DROPPING) {
        e = new OwnershipError(
          "use-after-drop",
          `${fn}: buffer ${a} was dropped`,
          token.ptr,
          detail(h, 0, 0, false, -1),
        );
      } else if (
        h.i32[(rec + OR_GEN) >> 2] !== token.gen || (s & OS_PHASE) >>> OS_PHASE_SHIFT !== PH_LIVE
      ) {
        e = new OwnershipError(
          "use-after-move",
          `${fn}: buffer ${a} was moved or sent since it was shared`,
          token.ptr,
          detail(h, rec, s, ctx.full, OR_MOVE_STACK),
        );
      } else if ((s & OS_LENT) === OS_LENT) {
        e = new OwnershipError(
          "borrow-conflict",
          `${fn}: buffer ${a} is lent ${OS_LENT >>> OS_LENT_SHIFT} times, the most it can count`,
          token.ptr,
          detail(h, rec, s, false, -1),
        );
      } else {
        if (Atomics.compareExchange(h.i32, (rec + OR_STATE) >> 2, s, s + OS_LENT_ONE) !== s) {
          continue;
        }
        if (h.i32[(rec + OR_GEN) >> 2] !== token.gen) {
          // The owner moved it between the check and the count: take the count back.
          Atomics.sub(h.i32, (rec + OR_STATE) >> 2, OS_LENT_ONE);
          continue;
        }
      }
      break;
    }
  } finally {
    unlockTable(h, ctx.root);
  }
  if (e !== undefined) {
    ctx.worker.fail(e);
    return new Shared(ctx, 0, token.ptr, token.size, e);
  }
  ctx.worker.ledger.enter(rec, LE_LENT, 1);
  h.sync();
  return new Shared(ctx, rec, token.ptr, h.i32[(rec + OR_SIZE) >> 2]);
}

/**
 * What a record says, for `stateOf` and `leaks`.
 *
 * @param ctx the Ownership's context
 * @param rec the record (the caller holds the table lock)
 * @returns the description
 */
export function info(ctx: OwnContext, rec: number): OwnedInfo {
  const h = ctx.heap, i32 = h.i32, s = Atomics.load(i32, (rec + OR_STATE) >> 2);
  const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT;
  const d = detail(h, rec, s, ctx.full, -1);
  return {
    ptr: i32[(rec + OR_PTR) >> 2],
    size: i32[(rec + OR_SIZE) >> 2],
    owner: d.owner,
    state: phase === PH_TRANSIT ? "in-transit" : phase === PH_DROPPING ? "dropping" : "owned",
    borrows: d.borrows,
    mutablyBorrowed: d.mutablyBorrowed,
    lent: d.lent,
    allocStack: d.allocStack,
  };
}
