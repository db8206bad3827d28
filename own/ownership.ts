/**
 * `Ownership`: the entry point of the module in one worker, over one heap handle.
 *
 * Theory. Rust's ownership rules for buffers of the shared heap, checked when the program runs
 * (REFERENCE.md, "Rust ownership rules as run-time checks"): one owner per buffer; a move leaves
 * the old handle dead; many shared borrows or one mutable borrow; no free while borrowed. The
 * state is in the heap (layout.ts), so the rules hold across workers: a worker that sends a
 * buffer cannot touch it afterwards, and a worker that does not own a buffer cannot free it.
 * `light` mode keeps counts and owner ids; `full` mode also records, as libumem's audit does,
 * the stack of every allocation, borrow, move and drop, and puts them in errors and leak
 * reports. An error handler (`onError`), as libumem's, can take the errors instead of having
 * them thrown, for a program that wants to log and go on.
 *
 * Invariants. See layout.ts (the records and the table) and owned.ts (the handles). An
 * `Ownership` adds no shared state of its own; the root record is the heap's, found through
 * module anchor `MOD_OWN` by every worker.
 *
 * Lock order: the table lock, then core locks (see table.ts).
 *
 * @module
 */

import { Cache, Heap, UmemError } from "../core/mod.ts";
import {
  BUF_ALLOC,
  bufferState,
  CA_BUFSIZE,
  cacheOf,
  checkSize,
  HDR_FIREWALL,
  hex,
  lock,
  MAX_IMAGE,
  sizeCache,
  UMEM_MAXBUF,
  unlock,
} from "../core/internal.ts";
import {
  OwnContext,
  type OwnershipErrorHandler,
  type OwnershipOptions,
  type OwnHeap,
  type OwnSource,
} from "./context.ts";
import {
  OT_CAP,
  OT_COUNT,
  OT_DROPPED,
  OT_LOCK,
  OT_ORPHANS,
  OT_TRACKED,
  SRC_HEAP,
  SRC_LIBC,
} from "./layout.ts";
import {
  access,
  info,
  type Owned,
  type OwnedInfo,
  type OwnedToken,
  receive,
  setStackTops,
  type Shared,
  type ShareToken,
  track,
} from "./owned.ts";
import { tableFind, tableRecords } from "./table.ts";

/**
 * Refuses to adopt what drop could not give back: an address that is not a live buffer of its
 * source and size (the start of an allocated buffer of the size class, of the cache, or a live
 * `malloc` block). Oversize allocations (whole pages past the largest class) and firewalled ones
 * are checked at drop, by the heap.
 */
function checkAdoptable(h: Heap, ptr: number, size: number, src: number): void {
  const bad = (what: string) =>
    new UmemError("invalid-argument", `Ownership.adopt: ${hex(ptr)} ${what}`, ptr);
  if (src === SRC_LIBC) {
    let usable: number;
    try {
      usable = h.libc.usableSize(ptr);
    } catch {
      throw bad("is not a block from malloc");
    }
    const st = bufferState(h, ptr - 8); // a plain block's header starts its buffer
    if (st !== -1 && st !== BUF_ALLOC) throw bad("is a freed block from malloc");
    if (usable < size) throw bad(`holds ${usable} bytes, fewer than ${size}`);
    return;
  }
  // Past the largest class, and at or past `UMEM_DEBUG=firewall=`'s size, a sized allocation
  // has a span of its own, in no cache.
  const fw = h.i32[HDR_FIREWALL >> 2];
  if (src === SRC_HEAP && (size > UMEM_MAXBUF || (fw > 0 && size >= fw))) return;
  const cp = src === SRC_HEAP ? sizeCache(h, size) : src;
  if (cacheOf(h, ptr) !== cp) {
    throw bad(
      src === SRC_HEAP
        ? `is not in a buffer of the size class of ${size} bytes`
        : "is not in a buffer of that cache",
    );
  }
  const st = bufferState(h, ptr);
  if (st === -1) throw bad("is not the start of a buffer");
  if (st !== BUF_ALLOC) throw bad("is a free buffer");
  if (src !== SRC_HEAP && size > h.i32[(cp + CA_BUFSIZE) >> 2]) {
    throw bad(`is a ${h.i32[(cp + CA_BUFSIZE) >> 2]}-byte buffer, smaller than ${size}`);
  }
}

/** Counters of the module in a heap (all workers). */
export interface OwnershipStats {
  /** Buffers tracked now: owned, in transit, or being dropped. */
  tracked: number;
  /** Buffers ever tracked (alloc, adopt, clone). */
  everTracked: number;
  /** Buffers dropped through their handles. */
  dropped: number;
  /** Records given up by frees that an error handler let through. */
  orphaned: number;
  /** Slots of the address table. */
  capacity: number;
}

/**
 * Ownership and borrow checking for buffers of one heap, in this worker.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * using own = Ownership.create(heap, { mode: "full" });
 * const buf = own.alloc(64);
 * {
 *   using w = buf.borrowMut();
 *   heap.u8.fill(0xab, w.ptr, w.ptr + 64);
 * }
 * const token = buf.send(); // for another worker; buf is dead from here on
 * const mine = own.receive(token);
 * console.log(own.leaks().length); // 1
 * mine.drop();
 * console.log(own.leaks().length); // 0
 * ```
 */
export class Ownership {
  /** The handles' shared state. */
  private readonly ctx: OwnContext;
  /** Whether `close` ran. */
  private closed = false;

  /**
   * Binds to a heap handle (made by `create`).
   *
   * @param ctx the context
   */
  private constructor(ctx: OwnContext) {
    this.ctx = ctx;
  }

  /**
   * Starts checking ownership on a heap, in this worker. The first call on a heap (from any
   * worker) lays the module's table in it; later ones find it.
   *
   * @param heap this worker's heap handle
   * @param options `mode` (`light` or `full`), `frames` (per stack in `full` mode),
   *   `guardFrees` (refuse `heap.free` of tracked buffers, default true)
   * @returns the ownership checker
   * @throws {UmemError} `invalid-argument` for a heap that is not a `Heap`, options that are
   *   not an object, or a bad option
   * @throws {OutOfMemoryError} when the heap has no room for the table
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap, { mode: "light" });
   * console.log(own.mode); // "light"
   * ```
   */
  static create(heap: OwnHeap, options: OwnershipOptions = {}): Ownership {
    if (!(heap instanceof Heap)) {
      throw new UmemError(
        "invalid-argument",
        `Ownership.create: heap ${String(heap)} (expected a Heap of this worker)`,
      );
    }
    if (typeof options !== "object" || options === null) {
      throw new UmemError(
        "invalid-argument",
        `Ownership.create: options ${String(options)} (expected an object or nothing)`,
      );
    }
    for (const k of Object.keys(options)) {
      if (k !== "mode" && k !== "frames" && k !== "guardFrees") {
        throw new UmemError("invalid-argument", `Ownership.create: unknown option '${k}'`);
      }
    }
    const ctx = new OwnContext(heap, options);
    if (options.guardFrees !== false) ctx.worker.guardFrees();
    ctx.worker.users++;
    return new Ownership(ctx);
  }

  /** `light` or `full`. */
  get mode(): "light" | "full" {
    return this.ctx.full ? "full" : "light";
  }

  /** The heap handle. */
  get heap(): OwnHeap {
    return this.ctx.heap;
  }

  /**
   * Allocates `size` bytes with `heap.alloc` and returns their owner.
   *
   * @param size bytes, at least 1
   * @returns the owning handle
   * @throws {UmemError} `invalid-argument` for a bad size
   * @throws {OutOfMemoryError} when the heap is full
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(100);
   * console.log(a.size); // 100
   * a.drop();
   * ```
   */
  alloc(size: number): Owned {
    checkSize("Ownership.alloc", "size", size, 1, MAX_IMAGE);
    const h = this.ctx.heap, p = h.alloc(size);
    try {
      return track(this.ctx, p, size, "Ownership.alloc", Ownership.prototype.alloc);
    } catch (e) {
      this.ctx.worker.quiet++;
      try {
        h.free(p, size);
      } finally {
        this.ctx.worker.quiet--;
      }
      throw e;
    }
  }

  /**
   * Takes ownership of a buffer allocated with `heap.alloc(size)` (or `heap.libc`, or a
   * `Cache`: say so with `source`): from now on `drop()` gives it back there, and `heap.free`,
   * `libc.free` and `Cache.free` refuse it. A wrong size is found when the buffer is dropped
   * (the heap refuses the free and the handle stays alive).
   *
   * @param ptr the buffer
   * @param size the size it was allocated with (a cache's buffer size, a `malloc` request)
   * @param source where it came from: `"heap"` (the default), `"libc"`, or the `Cache`
   * @returns the owning handle
   * @throws {OwnershipError} `not-owner` when another worker owns the buffer
   * @throws {UmemError} `invalid-argument` for a bad address (out of the heap, not 8-byte
   *   aligned) or size, or a buffer this worker owns already
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * const p = heap.alloc(32);
   * const a = own.adopt(p, 32);
   * try {
   *   heap.free(p, 32);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "bad-free"
   * }
   * a.drop();
   * ```
   */
  adopt(ptr: number, size: number, source: OwnSource = "heap"): Owned {
    const h = this.ctx.heap;
    h.sync();
    checkSize("Ownership.adopt", "ptr", ptr, 8, h.mapped - 1);
    checkSize("Ownership.adopt", "size", size, 1, h.mapped - ptr);
    if ((ptr & 7) !== 0) {
      throw new UmemError(
        "invalid-argument",
        `Ownership.adopt: buffer ${hex(ptr)} is not 8-byte aligned (no allocator returns it)`,
        ptr,
      );
    }
    let src: number;
    if (source === "heap") src = SRC_HEAP;
    else if (source === "libc") src = SRC_LIBC;
    else if (source instanceof Cache && source.heap.sab === h.sab) src = source.addr;
    else {
      throw new UmemError(
        "invalid-argument",
        `Ownership.adopt: source ${
          String(source)
        } (expected "heap", "libc" or a Cache of this heap)`,
        ptr,
      );
    }
    checkAdoptable(h, ptr, size, src);
    return track(this.ctx, ptr, size, "Ownership.adopt", Ownership.prototype.adopt, src);
  }

  /**
   * Turns a token from `owned.send()` (here or in another worker) into this worker's owning
   * handle. A token is received once.
   *
   * @param token what `send` returned, as posted
   * @returns the owning handle
   * @throws {OwnershipError} `use-after-move` for a token received already, `not-owner` for a
   *   token sent to another worker, `use-after-drop` for a buffer no longer tracked
   * @throws {UmemError} `invalid-argument` for something that is not a token
   *
   * @example
   * ```ts
   * import { Heap, UmemError } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const token = own.alloc(8).send();
   * const a = own.receive(token);
   * try {
   *   own.receive(token);
   * } catch (e) {
   *   console.log((e as UmemError).kind); // "use-after-move"
   * }
   * a.drop();
   * ```
   */
  receive(token: OwnedToken): Owned {
    return receive(this.ctx, token);
  }

  /**
   * Turns a token from `owned.share()` into a reference that borrows the buffer as its owner
   * does (the state word decides between them).
   *
   * @param token what `share` returned, as posted
   * @returns the reference; release it or declare it with `using`
   * @throws {OwnershipError} `use-after-move` when the owner moved or sent the buffer since,
   *   `use-after-drop` when it dropped it
   * @throws {UmemError} `invalid-argument` for something that is not a token
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * using ref = own.access(a.share());
   * console.log(ref.held); // true
   * ```
   */
  access(token: ShareToken): Shared {
    return access(this.ctx, token);
  }

  /**
   * Sets this worker's error handler for this heap handle (every `Ownership` on it), as
   * libumem's: a broken rule is given to it instead of thrown, for a program that logs and goes
   * on, and no operation throws a broken rule while it is set. What a refused call gives back
   * does nothing harmful and reports again at every use:
   *
   * - a borrow that conflicts (or of a dead handle) returns a guard that holds nothing (`held`
   *   false, its release changes nothing); `deref` returns the address after the report;
   * - `drop` of a borrowed, dropped or moved handle frees nothing;
   * - a refused `move`, `clone` or `receive` returns a handle that holds nothing (`alive`
   *   false; the handle it was called on stays the owner), whose every use reports the same
   *   kind again; a refused `access` returns a reference that holds nothing, likewise;
   * - a refused `send` or `share` returns a void token (`record` 0, `refused` the kind), which
   *   `receive` or `access` reports again;
   * - a refused `heap.free` of this worker's buffer goes ahead (the buffer's record is
   *   orphaned, and its handle reports `use-after-drop` from then on).
   *
   * Still thrown, handler or not: bad input (`invalid-argument`), a full heap, and a free of
   * another worker's buffer (its owner may be using it).
   *
   * @param handler the handler, or undefined to throw again
   * @throws {UmemError} `invalid-argument` when `handler` is neither a function nor undefined
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const seen: string[] = [];
   * own.onError((e) => seen.push(e.kind));
   * const a = own.alloc(8);
   * const w = a.borrowMut();
   * const r = a.borrow(); // reported, not thrown
   * console.log(seen, r.held); // [ "borrow-conflict" ] false
   * const b = a.move(); // refused while borrowed: b holds nothing, a is still the owner
   * console.log(seen, b.alive, a.alive); // [ "borrow-conflict", "borrow-conflict" ] false true
   * w.release();
   * own.onError(undefined);
   * ```
   */
  onError(handler: OwnershipErrorHandler | undefined): void {
    if (handler !== undefined && typeof handler !== "function") {
      throw new UmemError(
        "invalid-argument",
        `Ownership.onError: handler ${String(handler)} (expected a function or undefined)`,
      );
    }
    this.ctx.worker.handler = handler;
  }

  /**
   * Every buffer that was never dropped, in every worker: owned (by whom), in transit, with its
   * borrows, and in `full` mode where it was allocated.
   *
   * @param worker only the buffers this worker slot owns (default: all)
   * @returns one entry per buffer, by address
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }), { mode: "full" });
   * own.alloc(24);
   * const [leak] = own.leaks();
   * console.log(leak.size, leak.state, leak.allocStack !== ""); // 24 owned true
   * ```
   */
  leaks(worker?: number): OwnedInfo[] {
    const h = this.ctx.heap, root = this.ctx.root;
    h.sync();
    const out: OwnedInfo[] = [];
    lock(h, root + OT_LOCK);
    try {
      for (const rec of tableRecords(h, root)) {
        const i = info(this.ctx, rec);
        if (worker === undefined || i.owner === worker) out.push(i);
      }
    } finally {
      unlock(h, root + OT_LOCK);
    }
    return out.sort((a, b) => a.ptr - b.ptr);
  }

  /**
   * What the table says about one buffer.
   *
   * @param ptr the buffer
   * @returns its owner, state and borrows, or undefined when it is not tracked
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * const a = own.alloc(8);
   * using r = a.borrow();
   * console.log(own.stateOf(a.deref())?.borrows); // 1
   * ```
   */
  stateOf(ptr: number): OwnedInfo | undefined {
    const h = this.ctx.heap, root = this.ctx.root;
    h.sync();
    lock(h, root + OT_LOCK);
    try {
      const rec = tableFind(h, root, ptr);
      return rec === 0 ? undefined : info(this.ctx, rec);
    } finally {
      unlock(h, root + OT_LOCK);
    }
  }

  /**
   * The module's counters in this heap.
   *
   * @returns the counters
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const own = Ownership.create(Heap.create({ size: 1 << 20 }));
   * own.alloc(8).drop();
   * console.log(own.stats().dropped); // 1
   * ```
   */
  stats(): OwnershipStats {
    const h = this.ctx.heap, r = this.ctx.root;
    h.sync();
    const w = (off: number) => Atomics.load(h.i32, (r + off) >> 2);
    return {
      tracked: w(OT_COUNT),
      everTracked: w(OT_TRACKED),
      dropped: w(OT_DROPPED),
      orphaned: w(OT_ORPHANS),
      capacity: w(OT_CAP),
    };
  }

  /**
   * Stops checking in this worker: when the last `Ownership` on this heap handle closes, the
   * free hook is detached. Handles already made keep working; the table stays in the heap.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Ownership } from "@umem/umem/own";
   * const heap = Heap.create({ size: 1 << 20 });
   * const own = Ownership.create(heap);
   * own.close();
   * heap.free(heap.alloc(8), 8); // the plain free path again
   * ```
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (--this.ctx.worker.users === 0) this.ctx.worker.close();
  }

  /** Closes at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

setStackTops(Ownership.prototype.receive);
