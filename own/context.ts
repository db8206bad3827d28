/**
 * What the handles of one `Ownership` share in one worker: the heap, the root record, the mode,
 * the error handler and the free hook.
 *
 * Theory. The rules' state is in the heap (the records and the address table); what cannot be
 * there is per worker: functions (the error handler, the heap hook) and the handles' own
 * knowledge of how they died (a handle that was moved, sent or dropped remembers it, since its
 * record may since have been freed and reused). A worker's heap handle gets one
 * {@linkcode OwnWorker}: it attaches one free hook that refuses, through `heap.free`,
 * `libc.free` and `Cache.free`, the free of a buffer that has a live ownership record (owned by
 * another worker, in transit, borrowed, or simply still held by its handle), and it holds the
 * error handler (`onError`) that may replace throwing. An {@linkcode OwnContext} adds the mode of
 * one `Ownership`: `light` keeps counts and owner ids, `full` also interns the stack of every
 * allocation, borrow, move and drop.
 *
 * Invariants. The hook never allocates and never frees. Its first look costs one load (the
 * page counts: no tracked buffer starts in this page) or a lock-free seqlock probe of the table;
 * only for a tracked buffer does it take the table lock, alone. While
 * `quiet` is nonzero the frees are the module's own (a drop, a record, an old slot array) and the
 * hook lets them through without a lookup.
 *
 * Lock order: the hook takes the table lock with no core lock held (hooks run before the
 * allocator changes anything).
 *
 * @module
 */

import { type Heap, type HeapView, UmemError } from "../core/mod.ts";
import {
  addSlotReclaimer,
  attachHeapHook,
  captureStack,
  hex,
  HOOK_LIBC,
  MOD_OWN,
  moduleAnchor,
  readStack,
} from "../core/internal.ts";
import {
  OR_ALLOC_STACK,
  OR_BORROW_STACK,
  OR_PTR,
  OR_SOURCE,
  OR_STATE,
  OS_BUSY,
  OS_COUNT,
  OS_LENT,
  OS_LENT_SHIFT,
  OS_MUT,
  OS_OWNER,
  OS_OWNER_SHIFT,
  OS_PHASE,
  OS_PHASE_SHIFT,
  OT_ORPHANS,
  PC_PAGE_SHIFT,
  PH_DROPPING,
  PH_LIVE,
  PH_TRANSIT,
  SRC_UNGUARDED,
} from "./layout.ts";
import { Ledger, reclaimLedger } from "./ledger.ts";
import { type OwnershipDetail, OwnershipError } from "./own_error.ts";
import {
  lockTable,
  ownRoot,
  ownStackTable,
  pageCounts,
  tableFind,
  tableMayHold,
  tableRecords,
  tableRemove,
  unlockTable,
} from "./table.ts";

/** The heap handle an `Ownership` works on: a `Heap` of this worker. */
export type OwnHeap = Heap;

/**
 * Where an adopted buffer came from, and goes back at drop: the heap's sized interface, its
 * malloc-compatible one, or an object cache of the same heap.
 */
export type OwnSource = "heap" | "libc" | OwnCache;

/** An object cache as `adopt` sees it: a `Cache` of the same heap (checked when adopting). */
export interface OwnCache {
  /** The cache record's address. */
  readonly addr: number;
  /**
   * Frees a buffer of the cache.
   *
   * @param ptr the buffer
   */
  free(ptr: number): void;
}

/** A function that takes an ownership error instead of having it thrown. */
export type OwnershipErrorHandler = (error: OwnershipError) => void;

/** The per-worker state of the module on one heap handle. */
export class OwnWorker {
  /** The heap handle. */
  readonly heap: Heap;
  /** The root record. */
  readonly root: number = 0;
  /** The error handler, or undefined to throw. */
  handler: OwnershipErrorHandler | undefined = undefined;
  /** Nonzero while the module frees memory of its own: the hook lets it through. */
  quiet = 0;
  /** Ownerships open on this handle. */
  users = 0;
  /** The page counts (table.ts): a free in a page with count 0 is not of a tracked buffer. */
  readonly pages: Int16Array;
  /** What this worker holds through references (ledger.ts), for `reclaimSlot` if it dies. */
  readonly ledger: Ledger;
  /** Detaches the free hook. */
  private detach: (() => void) | undefined = undefined;

  /**
   * Finds or creates the root record and attaches the free hook.
   *
   * @param heap the heap handle
   */
  private constructor(heap: Heap) {
    this.heap = heap;
    // A cache's destroy is vetted whether frees are guarded or not (guardFrees: false drops the
    // free hook only): a drop after it would free another cache's buffer.
    heap.destroyVetoes.push(this.vetoDestroy);
    this.root = ownRoot(heap);
    this.pages = pageCounts(heap, this.root);
    this.ledger = new Ledger(heap, this.root, (p, n) => {
      this.quiet++;
      try {
        heap.free(p, n);
      } finally {
        this.quiet--;
      }
    });
  }

  /**
   * This heap handle's state, made on first use.
   *
   * @param heap the heap handle
   * @returns the state
   */
  static of(heap: Heap): OwnWorker {
    let w = workers.get(heap);
    if (w === undefined) {
      w = new OwnWorker(heap);
      workers.set(heap, w);
    }
    return w;
  }

  /** Attaches the free hook unless it is attached. */
  guardFrees(): void {
    if (this.detach !== undefined) return;
    this.detach = attachHeapHook(this.heap, {
      free: (ptr, _size, cache) => this.onFree(ptr, cache),
      // A realloc frees the block when it moves it, and changes it behind its handle when it
      // does not: vetted as a free.
      resizing: (ptr) => this.onFree(ptr, HOOK_LIBC, "realloc"),
    });
  }

  /**
   * Refuses to destroy a cache whose buffers some worker tracks: the destroy would give their
   * memory back under their handles, which a later drop would free from another cache (this
   * handle's entry in `Heap.destroyVetoes`).
   *
   * @throws {UmemError} `invalid-argument` naming the cache and how many buffers are held
   */
  private readonly vetoDestroy = (cache: number): void => {
    const h = this.heap, root = this.root;
    let held = 0, first = 0;
    lockTable(h, root);
    try {
      for (const rec of tableRecords(h, root)) {
        if ((h.i32[(rec + OR_SOURCE) >> 2] & ~SRC_UNGUARDED) !== cache) continue;
        if (held++ === 0) first = h.i32[(rec + OR_PTR) >> 2];
      }
    } finally {
      unlockTable(h, root);
    }
    if (held === 0) return;
    throw new UmemError(
      "invalid-argument",
      `umem_cache_destroy: ${held} of the cache's buffers (the first at ${
        hex(first)
      }) are held by Owned handles: drop them first`,
      first,
    );
  };

  /** Detaches the free hook and forgets this state (the last `Ownership` closed). */
  close(): void {
    this.detach?.();
    this.detach = undefined;
    const at = this.heap.destroyVetoes.indexOf(this.vetoDestroy);
    if (at >= 0) this.heap.destroyVetoes.splice(at, 1);
    workers.delete(this.heap);
  }

  /**
   * Reports a broken rule: to the handler, or by throwing.
   *
   * @param e the error
   * @throws {OwnershipError} `e`, when there is no handler
   */
  fail(e: OwnershipError): void {
    if (this.handler === undefined) throw e;
    this.handler(e);
  }

  /**
   * The free hook: refuses the free of a tracked buffer that is not being dropped here.
   *
   * @param ptr the buffer being freed
   * @param cache the cache record's address for `Cache.free`, negative for `libc.free`, else 0
   * @param name the function the report names (by `cache` when not given)
   * @throws {OwnershipError} `not-owner`, `use-after-move`, `drop-while-borrowed`, or
   *   `bad-free` for a buffer its handle still holds
   */
  private onFree(ptr: number, cache: number, name?: string): void {
    if (this.quiet !== 0 || this.pages[ptr >>> PC_PAGE_SHIFT] === 0) return;
    const h = this.heap, root = this.root;
    if (!tableMayHold(h, root, ptr)) return;
    lockTable(h, root);
    let rec: number, s = 0, d: OwnershipDetail | undefined, unguarded = false;
    try {
      rec = tableFind(h, root, ptr);
      // Read under the lock: once it is released the owner may drop the buffer and free the
      // record. Stacks are there only if some worker records them (`full` mode).
      if (rec !== 0) {
        s = Atomics.load(h.i32, (rec + OR_STATE) >> 2);
        d = detail(h, rec, s, true, OR_BORROW_STACK);
        unguarded = (h.i32[(rec + OR_SOURCE) >> 2] & SRC_UNGUARDED) !== 0;
      }
    } finally {
      unlockTable(h, root);
    }
    if (rec === 0 || d === undefined) return;
    const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT, owner = (s & OS_OWNER) >>> OS_OWNER_SHIFT;
    if (phase === PH_DROPPING && owner === h.slot) return;
    // A live buffer of this worker's, tracked by an Ownership that asked for no vetting
    // (guardFrees: false), goes through: that Ownership's word, as when no hook is attached.
    // Another worker's, or one sent and not received, is vetted as any other.
    if (unguarded && owner === h.slot && phase === PH_LIVE) return;
    // The core passes a cache record for Cache.free, a negative value (HOOK_LIBC) for libc.
    const fn = name ?? (cache > 0 ? "umem_cache_free" : cache < 0 ? "free" : "umem_free");
    let e: OwnershipError;
    if (owner !== h.slot) {
      e = new OwnershipError(
        "not-owner",
        `${fn}: buffer ${hex(ptr)} is owned by worker ${owner}, not by worker ${h.slot}: ` +
          `only its owner may drop it`,
        ptr,
        d,
      );
    } else if (phase === PH_TRANSIT) {
      e = new OwnershipError(
        "use-after-move",
        `${fn}: buffer ${hex(ptr)} was sent to another worker and not received yet`,
        ptr,
        d,
      );
    } else if ((s & OS_BUSY) !== 0) {
      e = new OwnershipError(
        "drop-while-borrowed",
        `${fn}: buffer ${hex(ptr)} freed while borrowed (${describe(s)})`,
        ptr,
        d,
      );
    } else {
      e = new OwnershipError(
        "bad-free",
        `${fn}: buffer ${hex(ptr)} is held by a live Owned handle: drop it with owned.drop()`,
        ptr,
        d,
      );
    }
    if (owner !== h.slot) {
      // Another worker's buffer is never freed from here, handler or not: its owner may be
      // using it this very moment.
      this.handler?.(e);
      throw e;
    }
    this.fail(e);
    // The handler let it go on: the free happens, so the record leaves the table (and is kept,
    // so that its handle finds it orphaned rather than reading freed memory).
    lockTable(h, root);
    try {
      if (tableRemove(h, root, ptr)) {
        for (;;) {
          const was = Atomics.load(h.i32, (rec + OR_STATE) >> 2);
          if (
            Atomics.compareExchange(h.i32, (rec + OR_STATE) >> 2, was, was & ~OS_PHASE) === was
          ) break;
        }
        Atomics.add(h.i32, (root + OT_ORPHANS) >> 2, 1);
        Atomics.sub(this.pages, ptr >>> PC_PAGE_SHIFT, 1);
      }
    } finally {
      unlockTable(h, root);
    }
  }
}

/** Every heap handle's state in this worker. */
const workers = new WeakMap<Heap, OwnWorker>();

/**
 * A dead (or detached) worker's buffers: every record it owned, live or half-dropped, leaves
 * the table as an orphan (its handles died with the worker), so its buffers become plain heap
 * buffers that any worker may free and `findleaks` reports. Buffers it had sent and that are
 * still in transit stay: their tokens may be on their way to a live worker. The references it
 * held on other workers' buffers, and the borrows it took through them, are given back from
 * its ledger (ledger.ts), so their owners can move and drop them again.
 *
 * @param h the heap, from `Heap.reclaimSlot`
 * @param slot the dead worker's slot
 */
function reclaimOwnSlot(h: HeapView, slot: number): void {
  const root = moduleAnchor(h, MOD_OWN);
  if (root === 0) return;
  const heap = h as Heap, pages = pageCounts(heap, root);
  lockTable(heap, root);
  try {
    reclaimLedger(h, root, slot);
    for (const rec of tableRecords(heap, root)) {
      const s = Atomics.load(h.i32, (rec + OR_STATE) >> 2);
      const phase = (s & OS_PHASE) >>> OS_PHASE_SHIFT;
      if ((s & OS_OWNER) >>> OS_OWNER_SHIFT !== slot || phase === PH_TRANSIT) continue;
      const ptr = h.i32[(rec + OR_PTR) >> 2];
      tableRemove(heap, root, ptr);
      Atomics.and(h.i32, (rec + OR_STATE) >> 2, ~OS_PHASE);
      Atomics.add(h.i32, (root + OT_ORPHANS) >> 2, 1);
      Atomics.sub(pages, ptr >>> PC_PAGE_SHIFT, 1);
    }
  } finally {
    unlockTable(heap, root);
  }
}
addSlotReclaimer(reclaimOwnSlot);

/** Options of `Ownership.create`. */
export interface OwnershipOptions {
  /**
   * `light` (the default) keeps counts and owner ids; `full` also records the stack of every
   * allocation, borrow, move and drop and puts it in errors and leak reports.
   */
  mode?: "light" | "full";
  /** Frames of each stack in `full` mode (default 8). */
  frames?: number;
  /**
   * Refuse `heap.free`, `libc.free` and `Cache.free` of a tracked buffer (default true). Costs
   * every free of this worker a lookup: the heap hook takes the sized free's slow path. With
   * `false`, frees of the buffers this `Ownership` tracks go through unvetted, even while another
   * `Ownership` of the worker has the hook vet its own; a buffer freed so stays tracked (its
   * address cannot be adopted again while the record lives), so drop handles rather than free.
   */
  guardFrees?: boolean;
}

/** The state one `Ownership` shares with its handles. */
export class OwnContext {
  /** The heap handle. */
  readonly heap: Heap;
  /** The worker's state. */
  readonly worker: OwnWorker;
  /** The root record. */
  readonly root: number = 0;
  /** `full` mode: stacks are recorded. */
  readonly full: boolean = false;
  /** Frames per stack. */
  readonly frames: number = 0;
  /** The state word of a record owned here, live, with no mutable borrow. */
  readonly liveBits: number = 0;
  /** The stack table (`full` mode; 0 otherwise). */
  readonly stacks: number = 0;
  /** Frees of this context's buffers are vetted (`guardFrees`, default true). */
  readonly guardFrees: boolean = true;

  /**
   * Binds the context to a heap handle.
   *
   * @param heap the heap handle
   * @param options the mode and the frames
   */
  constructor(heap: Heap, options: OwnershipOptions) {
    if (options.mode !== undefined && options.mode !== "light" && options.mode !== "full") {
      throw new UmemError(
        "invalid-argument",
        `Ownership.create: mode '${String(options.mode)}' (expected "light" or "full")`,
      );
    }
    const frames = options.frames ?? 8;
    if (!Number.isInteger(frames) || frames < 1 || frames > 64) {
      throw new UmemError(
        "invalid-argument",
        `Ownership.create: frames ${String(frames)} is not a whole number in [1, 64]`,
      );
    }
    heap.sync();
    this.heap = heap;
    this.worker = OwnWorker.of(heap);
    this.root = this.worker.root;
    this.full = options.mode === "full";
    this.frames = frames;
    this.liveBits = (1 << OS_PHASE_SHIFT) | (heap.slot << OS_OWNER_SHIFT);
    this.stacks = this.full ? ownStackTable(heap, this.root) : 0;
    this.guardFrees = options.guardFrees !== false;
  }

  /**
   * Interns the caller's stack (`full` mode).
   *
   * @param above the public function the user called: it and its callers' frames above are
   *   left out
   * @returns the stack's id, 0 in `light` mode
   */
  capture(above: unknown): number {
    return this.full ? captureStack(this.heap, this.stacks, this.frames, above) : 0;
  }

  /**
   * The text of an interned stack (`full` mode).
   *
   * @param id the stack's id
   * @returns the frames, one a line; "" in `light` mode or for id 0
   */
  stackText(id: number): string {
    return this.full ? readStack(this.heap, id) : "";
  }
}

/**
 * The shared borrows, mutable borrow and lent references of a state word, for messages.
 *
 * @param s the state word
 * @returns e.g. "2 shared, 0 mutable, 1 lent"
 */
export function describe(s: number): string {
  return `${s & OS_COUNT} shared, ${(s & OS_MUT) !== 0 ? 1 : 0} mutable, ${
    (s & OS_LENT) >>> OS_LENT_SHIFT
  } lent`;
}

/**
 * What an error reports of a record in state `s`.
 *
 * @param heap the heap
 * @param rec the record (must be live)
 * @param s its state word
 * @param full whether to read stacks
 * @param stackField the record field of the stack that conflicts (`OR_*_STACK`), or -1
 * @param stackId a stack id to use instead of a field (when the record is gone)
 * @returns the detail
 */
export function detail(
  heap: Heap,
  rec: number,
  s: number,
  full: boolean,
  stackField: number,
  stackId = 0,
): OwnershipDetail {
  const id = stackField >= 0 && rec !== 0
    ? Atomics.load(heap.i32, (rec + stackField) >> 2)
    : stackId;
  return {
    owner: rec === 0 ? -1 : (s & OS_OWNER) >>> OS_OWNER_SHIFT,
    borrows: s & OS_COUNT,
    mutablyBorrowed: (s & OS_MUT) !== 0,
    // In transit the lent field holds the destination (layout.ts): nothing is lent then.
    lent: (s & OS_PHASE) >>> OS_PHASE_SHIFT === PH_TRANSIT ? 0 : (s & OS_LENT) >>> OS_LENT_SHIFT,
    conflictStack: full ? readStack(heap, id) : "",
    allocStack: full && rec !== 0 ? readStack(heap, heap.i32[(rec + OR_ALLOC_STACK) >> 2]) : "",
  };
}
