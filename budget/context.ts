/**
 * The memory context handle: PostgreSQL's `MemoryContext`, over a record in the heap.
 *
 * Theory. A {@linkcode MemoryContext} is a JavaScript handle on a context record (the record's
 * address, and the id the context had when the handle was made, so that a handle on a deleted
 * context refuses to work). All the context's state is in the heap, so any worker that
 * attached to the heap can make a handle on any context: by walking the tree from
 * {@linkcode topContext}, or from an address another worker sent ({@linkcode MemoryContext.at}).
 * The operations are mcxt.c's, with TypeScript names: `create` is `AllocSetContextCreate`,
 * `alloc` is `MemoryContextAlloc`, `reset`, `resetOnly`, `delete`, `registerResetCallback`,
 * `isEmpty`, `memAllocated` and `stats` are `MemoryContextReset`, `MemoryContextResetOnly`,
 * `MemoryContextDelete`, `MemoryContextRegisterResetCallback`, `MemoryContextIsEmpty`,
 * `MemoryContextMemAllocated` and `MemoryContextStats`.
 *
 * Sharing. An *unshared* context (the default) is used by one worker at a time, whichever
 * it is, and its allocations and frees take no lock, as in a PostgreSQL backend. A context
 * created with `shared: true` may be used by several workers at once: every operation on its
 * chunks or blocks (`alloc`, `alloc0`, `free`, `realloc`, `pfree`/`repalloc` of its chunks,
 * `reset`, `resetOnly`, `delete`, `stats`) takes its lock word. Whatever the context, the tree
 * lock (in the top record) guards the tree's shape and the byte counts: it is taken to create
 * a context, to take or give back a block, to reset or delete, and to read stats; never on
 * the allocation fast path.
 *
 * Invariants. A handle's `id` equals the record's `MC_ID` while the context lives; every
 * method checks it (on the fast path, one load) and throws `destroyed` otherwise.
 *
 * Lock order: the context's lock, then the tree lock, then the vmem arena's locks. No lock is
 * held while a reset callback or a soft-budget handler runs, or while a request waits.
 *
 * @module
 */

import { Heap, UmemError } from "../core/mod.ts";
import { checkTree } from "./check.ts";
import {
  allocChunk,
  allocFast,
  checkLive,
  chunkOwner,
  type ContextSettings,
  createRecord,
  freeChunk,
  freeFast,
  HDR_SIZE_WORD,
  isEmptySet,
  keeperBytes,
  reallocChunk,
} from "./alloc_set.ts";
import { checkSize } from "../core/internal.ts";
import {
  hex,
  isLiveRecord,
  MC_BUDGET,
  MC_FLAGS,
  MC_GEN,
  MC_ID,
  MC_NAME_MAX,
  MC_NO_BUDGET,
  MC_PARENT,
  MC_ROOT,
  MC_SELF,
  MC_SOFT,
  MC_TREE,
  MCF_SHARED,
  POLICY_ERROR,
  POLICY_WAIT,
  readName,
} from "./layout.ts";
import { type MemoryContextStats, statsOf } from "./stats.ts";
import { treeOf } from "./arena.ts";
import { childrenOf, deleteContext, resetContext } from "./tree.ts";
import {
  type ContextHeap,
  current,
  setCurrent,
  type SoftBudgetHandler,
  stateOf,
  type TreeState,
} from "./worker_state.ts";

// HDR_SIZE's and MC_ID's word indices, module-local so that V8 folds them into the fast paths
// (see core/magazine.ts), checked against the declarations.
const SIZE_WORD = 3, ID_WORD = 1;
if (SIZE_WORD !== HDR_SIZE_WORD || ID_WORD !== MC_ID >> 2) {
  throw new Error("budget/context.ts: the fast path's copies of the layout are out of date");
}

/**
 * Options of {@linkcode MemoryContext.create}: `AllocSetContextCreate`'s sizes, and the
 * budget.
 */
export interface MemoryContextOptions {
  /**
   * Bytes of the first block, which holds the context record and survives `reset`
   * (`minContextSize`; 0, the default, means `initBlockSize`). At least 1024 when not 0.
   */
  minContextSize?: number;
  /** Bytes of the first blocks (`initBlockSize`, default 8 KiB, at least 1024). */
  initBlockSize?: number;
  /** The largest block the doubling reaches (`maxBlockSize`, default 8 MiB). */
  maxBlockSize?: number;
  /**
   * The most bytes of blocks this context and its descendants may hold (`memAllocated(true)`);
   * a request that would need more throws {@linkcode BudgetExceededError} (or waits, with
   * `onExceed: "wait"`). At least the first block's size. Default: none.
   */
  budget?: number;
  /**
   * A lower limit that calls `onSoftBudget` (this worker's handler) before a request passes
   * it, so that the stage can spill to disk; the request then proceeds (at once in a worker
   * that registered no handler). Default: none.
   */
  softBudget?: number;
  /** The soft-budget handler of this worker (other workers register theirs). */
  onSoftBudget?: SoftBudgetHandler;
  /**
   * What a request past the budget does: `"error"` (default) throws; `"wait"` waits, up to
   * `waitTimeout` ms, until another worker frees enough in this subtree (libumem's
   * backpressure), then succeeds or throws the same error. It is this context's budget's: when
   * an ancestor's budget is the one a request would pass, that ancestor's `onExceed` decides.
   */
  onExceed?: "error" | "wait";
  /** How long a request waits under `onExceed: "wait"` (ms, default 10000; unused otherwise). */
  waitTimeout?: number;
  /** Whether several workers may use the context at once (every operation locks). */
  shared?: boolean;
}

/**
 * PostgreSQL's `ALLOCSET_DEFAULT_SIZES`: 0 / 8 KiB / 8 MiB, the defaults.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { ALLOCSET_DEFAULT_SIZES, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const ctx = topContext(heap).create("ExecutorState", { ...ALLOCSET_DEFAULT_SIZES });
 * console.log(ctx.memAllocated()); // 8192
 * ```
 */
export const ALLOCSET_DEFAULT_SIZES: Readonly<
  { minContextSize: number; initBlockSize: number; maxBlockSize: number }
> = Object.freeze({ minContextSize: 0, initBlockSize: 8 * 1024, maxBlockSize: 8 * 1024 * 1024 });

/**
 * PostgreSQL's `ALLOCSET_SMALL_SIZES`: 0 / 1 KiB / 8 KiB, for contexts that stay small.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { ALLOCSET_SMALL_SIZES, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const ctx = topContext(heap).create("small", ALLOCSET_SMALL_SIZES);
 * console.log(ctx.memAllocated()); // 1024
 * ```
 */
export const ALLOCSET_SMALL_SIZES: Readonly<
  { minContextSize: number; initBlockSize: number; maxBlockSize: number }
> = Object.freeze({ minContextSize: 0, initBlockSize: 1024, maxBlockSize: 8 * 1024 });

/**
 * PostgreSQL's `ALLOCSET_START_SMALL_SIZES`: 1 KiB / 1 KiB / 8 MiB, for contexts that start
 * small but may grow large.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { ALLOCSET_START_SMALL_SIZES, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const ctx = topContext(heap).create("grows", ALLOCSET_START_SMALL_SIZES);
 * console.log(ctx.memAllocated()); // 1024
 * ```
 */
export const ALLOCSET_START_SMALL_SIZES: Readonly<
  { minContextSize: number; initBlockSize: number; maxBlockSize: number }
> = Object.freeze({ minContextSize: 1024, initBlockSize: 1024, maxBlockSize: 8 * 1024 * 1024 });

const OPTION_KEYS = new Set([
  "minContextSize",
  "initBlockSize",
  "maxBlockSize",
  "budget",
  "softBudget",
  "onSoftBudget",
  "onExceed",
  "waitTimeout",
  "shared",
]);

/** The largest block (PostgreSQL caps a block offset at 1 GiB). */
const MAX_BLOCK = 1 << 30;

/** Validates `create`'s arguments; returns the settings and the UTF-8 name. */
function settingsOf(
  fn: string,
  name: unknown,
  o: MemoryContextOptions | undefined,
): [ContextSettings, Uint8Array] {
  if (typeof name !== "string" || name.length === 0) {
    throw new UmemError("invalid-argument", `${fn}: name must be a non-empty string`);
  }
  const bytes = new TextEncoder().encode(name);
  if (bytes.length > MC_NAME_MAX) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: name '${name}' is ${bytes.length} bytes (at most ${MC_NAME_MAX})`,
    );
  }
  if (o !== undefined && (typeof o !== "object" || o === null)) {
    throw new UmemError("invalid-argument", `${fn}(${name}): options must be an object`);
  }
  const opts = o ?? {};
  for (const k of Object.keys(opts)) {
    if (!OPTION_KEYS.has(k)) {
      throw new UmemError("invalid-argument", `${fn}(${name}): unknown option '${k}'`);
    }
  }
  const f = `${fn}(${name})`;
  const init = checkSize(f, "initBlockSize", opts.initBlockSize ?? 8 * 1024, 1024, MAX_BLOCK);
  const max = checkSize(f, "maxBlockSize", opts.maxBlockSize ?? 8 * 1024 * 1024, init, MAX_BLOCK);
  const min = checkSize(f, "minContextSize", opts.minContextSize ?? 0, 0, max);
  if (min !== 0 && min < 1024) {
    throw new UmemError("invalid-argument", `${f}: minContextSize ${min} is not 0 or ≥ 1024`);
  }
  const s: ContextSettings = {
    minContextSize: min,
    initBlockSize: init,
    maxBlockSize: max,
    budget: MC_NO_BUDGET,
    softBudget: MC_NO_BUDGET,
    policy: POLICY_ERROR,
    waitTimeout: 10_000,
    flags: 0,
  };
  if (opts.budget !== undefined) {
    s.budget = checkSize(f, "budget", opts.budget, 0, MC_NO_BUDGET - 1);
    const first = keeperBytes(bytes.length, s);
    if (s.budget < first) {
      throw new UmemError(
        "invalid-argument",
        `${f}: budget ${s.budget} is less than the context's first block (${first} bytes)`,
      );
    }
  }
  if (opts.softBudget !== undefined) {
    s.softBudget = checkSize(
      f,
      "softBudget",
      opts.softBudget,
      0,
      s.budget === MC_NO_BUDGET ? MC_NO_BUDGET - 1 : s.budget,
    );
  }
  if (opts.onSoftBudget !== undefined) {
    if (typeof opts.onSoftBudget !== "function") {
      throw new UmemError("invalid-argument", `${f}: onSoftBudget must be a function`);
    }
    if (opts.softBudget === undefined) {
      throw new UmemError("invalid-argument", `${f}: onSoftBudget needs a softBudget`);
    }
  }
  if (opts.onExceed !== undefined) {
    if (opts.onExceed !== "error" && opts.onExceed !== "wait") {
      throw new UmemError(
        "invalid-argument",
        `${f}: onExceed must be "error" or "wait", not ${JSON.stringify(opts.onExceed)}`,
      );
    }
    if (opts.onExceed === "wait" && opts.budget === undefined) {
      throw new UmemError("invalid-argument", `${f}: onExceed "wait" needs a budget`);
    }
    s.policy = opts.onExceed === "wait" ? POLICY_WAIT : POLICY_ERROR;
  }
  if (opts.waitTimeout !== undefined) {
    s.waitTimeout = checkSize(f, "waitTimeout", opts.waitTimeout, 0, 1 << 30);
  }
  if (opts.shared !== undefined) {
    if (typeof opts.shared !== "boolean") {
      throw new UmemError("invalid-argument", `${f}: shared must be a boolean`);
    }
    if (opts.shared) s.flags |= MCF_SHARED;
  }
  return [s, bytes];
}

/** Throws `invalid-argument` unless `heap` is a `Heap`; returns it. */
export function checkHeap(fn: string, heap: unknown): Heap {
  if (!(heap instanceof Heap)) {
    throw new UmemError("invalid-argument", `${fn}: expected a Heap, got ${typeof heap}`);
  }
  return heap;
}

/**
 * A memory context: an allocation set whose chunks are freed all at once by `reset` or
 * `delete`, in a tree whose root is {@linkcode topContext}. A context's budget caps the bytes
 * its whole subtree holds.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const job = topContext(heap).create("job", { budget: 1 << 20 });
 * const stage = job.create("parse");
 * for (let i = 0; i < 1000; i++) stage.alloc(40);
 * console.log(job.memAllocated(true) > job.memAllocated()); // true
 * stage.reset(); // every chunk of "parse" at once
 * job.delete(); // and the whole subtree
 * ```
 */
export class MemoryContext {
  /** The heap the context lives in (a `Heap`). */
  readonly heap: ContextHeap;
  /** The context record's address: send it to another worker, which calls `MemoryContext.at`. */
  readonly address: number = 0;
  /** The context's id, unique in its tree: the handle works while the record has it. */
  readonly id: number = 0;
  /** Whether the context is shared between workers (every operation takes its lock). */
  readonly shared: boolean = false;
  /** This worker's state for the heap's tree. */
  private readonly st: TreeState;
  /** The heap, typed as the core's `Heap` (the same object as `heap`). */
  private readonly h: Heap;

  private constructor(st: TreeState, address: number) {
    this.st = st;
    this.heap = st.heap;
    this.h = st.heap;
    this.address = address;
    this.id = st.heap.i32[(address + MC_ID) >> 2];
    this.shared = (st.heap.i32[(address + MC_FLAGS) >> 2] & MCF_SHARED) !== 0;
  }

  /**
   * A handle on the context whose record is at `address`, as a worker makes from an address
   * another worker sent it.
   *
   * @param heap the heap (this worker's handle)
   * @param address the record's address ({@linkcode MemoryContext.address})
   * @returns the handle
   * @throws {UmemError} `invalid-argument` when there is no live context record there, or it
   *   belongs to another tree
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { MemoryContext, topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("shared work", { shared: true });
   * // In a worker, given heap.buffer and ctx.address:
   * const w = Heap.attach(heap.buffer);
   * const same = MemoryContext.at(w, ctx.address);
   * same.alloc(100);
   * console.log(same.name); // shared work
   * w.detach();
   * ```
   */
  static at(heap: ContextHeap, address: number): MemoryContext {
    const fn = "MemoryContext.at";
    const st = treeOf(checkHeap(fn, heap));
    const h = st.heap;
    h.sync();
    if (
      !isLiveRecord(h.i32, h.mapped, address) ||
      h.i32[(address + MC_ROOT) >> 2] !== st.top
    ) {
      throw new UmemError(
        "invalid-argument",
        `${fn}: no live memory context record at ${
          typeof address === "number" ? hex(address) : typeof address
        }`,
        typeof address === "number" ? address : 0,
      );
    }
    return new MemoryContext(st, address);
  }

  /**
   * The context that owns chunk `ptr`, read from its header (`GetMemoryChunkContext`).
   *
   * @param heap the heap
   * @param ptr a chunk from `palloc` or `alloc`
   * @returns the owner's handle
   * @throws {UmemError} `bad-free`, `duplicate-free` or `destroyed` when `ptr` is not a live
   *   chunk (the same reports as `pfree`), `invalid-argument` for something not an address
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { MemoryContext, topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("owner");
   * console.log(MemoryContext.ofChunk(heap, ctx.alloc(10)).name); // owner
   * ```
   */
  static ofChunk(heap: ContextHeap, ptr: number): MemoryContext {
    const fn = "MemoryContext.ofChunk";
    const st = treeOf(checkHeap(fn, heap));
    heap.sync();
    const rec = chunkOwner(st.heap, ptr, fn);
    if (st.heap.i32[(rec + MC_ROOT) >> 2] !== st.top) {
      throw new UmemError("bad-free", `${fn}: ${hex(ptr)} belongs to another context tree`, ptr);
    }
    return new MemoryContext(st, rec);
  }

  /** Throws `destroyed` when the context was deleted. */
  private live(fn: string): void {
    this.h.sync();
    checkLive(this.h, this.address, this.id, fn);
  }

  /**
   * The context's name.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * console.log(topContext(heap).name); // TopMemoryContext
   * ```
   */
  get name(): string {
    this.live("MemoryContext.name");
    return readName(this.h.u8, this.h.i32, this.address);
  }

  /**
   * Whether the context still lives (it was not deleted).
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("short");
   * ctx.delete();
   * console.log(ctx.isLive); // false
   * ```
   */
  get isLive(): boolean {
    this.h.sync();
    return this.h.i32[(this.address + MC_ID) >> 2] === this.id &&
      isLiveRecord(this.h.i32, this.h.mapped, this.address);
  }

  /**
   * The parent context, or null for TopMemoryContext.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * console.log(topContext(heap).create("child").parent?.name); // TopMemoryContext
   * ```
   */
  get parent(): MemoryContext | null {
    this.live("MemoryContext.parent");
    const p = this.h.i32[(this.address + MC_PARENT) >> 2];
    return p === 0 ? null : new MemoryContext(this.st, p);
  }

  /**
   * The budget on the bytes of the subtree, or null.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * console.log(topContext(heap).create("b", { budget: 65536 }).budget); // 65536
   * ```
   */
  get budget(): number | null {
    this.live("MemoryContext.budget");
    const b = this.h.i32[(this.address + MC_BUDGET) >> 2];
    return b === MC_NO_BUDGET ? null : b;
  }

  /**
   * The soft budget, or null.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * console.log(topContext(heap).create("s", { softBudget: 32768 }).softBudget); // 32768
   * ```
   */
  get softBudget(): number | null {
    this.live("MemoryContext.softBudget");
    const b = this.h.i32[(this.address + MC_SOFT) >> 2];
    return b === MC_NO_BUDGET ? null : b;
  }

  /**
   * The children, newest first.
   *
   * @returns a handle per child
   * @throws {UmemError} `destroyed` when the context was deleted
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const job = topContext(heap).create("job");
   * job.create("a");
   * job.create("b");
   * console.log(job.children().map((c) => c.name).join(",")); // b,a
   * ```
   */
  children(): MemoryContext[] {
    this.live("MemoryContext.children");
    return childrenOf(this.h.i32, this.address).map((c) => new MemoryContext(this.st, c));
  }

  /**
   * Creates a child context, as `AllocSetContextCreate(this, name, minContextSize,
   * initBlockSize, maxBlockSize)`; its first block is taken at once and counts against the
   * budgets of this context and its ancestors.
   *
   * @param name the name (at most 127 bytes of UTF-8; names need not be unique)
   * @param options sizes (defaults 0 / 8 KiB / 8 MiB), `budget`, `softBudget`,
   *   `onSoftBudget`, `onExceed`, `waitTimeout`, `shared`
   * @returns the new context
   * @throws {UmemError} `invalid-argument` for a bad name or option; `destroyed` when this
   *   context was deleted
   * @throws {BudgetExceededError} when an ancestor's budget has no room for the first block
   * @throws {OutOfMemoryError} when the heap cannot grow
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("tuples", { initBlockSize: 1024, maxBlockSize: 65536 });
   * console.log(ctx.memAllocated()); // 1024
   * ```
   */
  create(name: string, options?: MemoryContextOptions): MemoryContext {
    const fn = "MemoryContext.create";
    const [s, bytes] = settingsOf(fn, name, options);
    this.live(fn);
    const rec = createRecord(this.h, this.st, this.st.blocks, this.address, bytes, s);
    const ctx = new MemoryContext(this.st, rec);
    if (options?.onSoftBudget !== undefined) {
      this.st.soft.set(rec, { id: ctx.id, fn: options.onSoftBudget });
    }
    return ctx;
  }

  /**
   * Allocates `size` bytes in this context, as `MemoryContextAlloc`. The memory is not
   * cleared; it is 8-aligned. `alloc(0)` returns a valid chunk, as in PostgreSQL.
   *
   * @param size bytes, a whole number in [0, 2^30 - 1]
   * @returns the chunk's address (never 0)
   * @throws {BudgetExceededError} when a budget refuses (after waiting, under "wait")
   * @throws {OutOfMemoryError} when the heap cannot grow
   * @throws {UmemError} `invalid-argument` for a bad size; `destroyed` when deleted
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("work");
   * const p = ctx.alloc(24);
   * heap.f64[p >> 3] = 2.5;
   * console.log(p % 8, heap.f64[p >> 3]); // 0 2.5
   * ```
   */
  alloc(size: number): number {
    const h = this.h;
    if (h.i32[SIZE_WORD] !== h.mapped) h.remap(); // h.sync(), inlined
    if (this.shared !== true) { // (one compare: see core/heap.ts's alloc)
      const p = allocFast(h, this.address, this.id, size);
      if (p !== 0) return p;
    }
    return allocChunk(this.st, this.address, this.id, size, "MemoryContext.alloc");
  }

  /**
   * Allocates `size` bytes set to zero, as `MemoryContextAllocZero`.
   *
   * @param size bytes
   * @returns the chunk's address
   * @throws {BudgetExceededError} as {@linkcode MemoryContext.alloc}
   * @throws {OutOfMemoryError} as {@linkcode MemoryContext.alloc}
   * @throws {UmemError} as {@linkcode MemoryContext.alloc}
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("work");
   * const p = ctx.alloc0(64);
   * console.log(heap.u8[p + 63]); // 0
   * ```
   */
  alloc0(size: number): number {
    const p = this.alloc(size);
    this.h.u8.fill(0, p, p + size);
    return p;
  }

  /**
   * Frees a chunk of this context (a chunk of another context is refused: use `pfree` to free
   * a chunk of any context).
   *
   * @param ptr the chunk
   * @throws {UmemError} `bad-free` (not a chunk, a chunk of another context, or from before
   *   the last reset), `duplicate-free`, `destroyed`, `invalid-argument` (NULL, not a number)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("work");
   * const p = ctx.alloc(100);
   * ctx.free(p); // onto the free list of 128-byte chunks
   * console.log(ctx.alloc(100) === p); // true
   * ```
   */
  free(ptr: number): void {
    const h = this.h;
    if (h.i32[SIZE_WORD] !== h.mapped) h.remap(); // h.sync(), inlined
    if (h.i32[(this.address >> 2) + ID_WORD] === this.id && freeFast(h, ptr, this.address)) return;
    this.live("MemoryContext.free");
    freeChunk(this.st, ptr, this.address, "MemoryContext.free");
  }

  /**
   * Resizes a chunk of this context, as `repalloc`: in place when it fits, else moved within
   * this context with its contents.
   *
   * @param ptr the chunk
   * @param size the new size
   * @returns the chunk's (possibly new) address
   * @throws {BudgetExceededError} when a budget refuses the larger chunk (the old one stays)
   * @throws {UmemError} as {@linkcode MemoryContext.free}, and `invalid-argument` for a bad size
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("work");
   * let p = ctx.alloc(8);
   * heap.u8[p] = 7;
   * p = ctx.realloc(p, 5000);
   * console.log(heap.u8[p]); // 7
   * ```
   */
  realloc(ptr: number, size: number): number {
    this.live("MemoryContext.realloc");
    return reallocChunk(this.st, ptr, size, this.address, "MemoryContext.realloc");
  }

  /**
   * Frees every chunk and deletes every child, as `MemoryContextReset`: the reset callbacks
   * run first (children's, then this context's, each last registered first), then every block
   * but the first goes back to the heap.
   *
   * @throws {UmemError} `destroyed` when deleted; an error a callback threw is rethrown after
   *   the reset is complete
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("batch");
   * ctx.create("child");
   * for (let i = 0; i < 10000; i++) ctx.alloc(64);
   * ctx.reset();
   * console.log(ctx.memAllocated(true), ctx.children().length); // 8192 0
   * ```
   */
  reset(): void {
    const r = resetContext(this.st, this.address, this.id, true, "MemoryContext.reset");
    this.leaveDoomed(r.doomed, this.address);
    if (r.error !== undefined) throw r.error;
  }

  /**
   * Frees every chunk but keeps the children, as `MemoryContextResetOnly`.
   *
   * @throws {UmemError} `destroyed` when deleted; an error a callback threw, after the reset
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("batch");
   * ctx.create("child");
   * ctx.alloc(100);
   * ctx.resetOnly();
   * console.log(ctx.isEmpty(), ctx.children().length); // true 1
   * ```
   */
  resetOnly(): void {
    const r = resetContext(this.st, this.address, this.id, false, "MemoryContext.resetOnly");
    if (r.error !== undefined) throw r.error;
  }

  /**
   * Deletes the context and its whole subtree, as `MemoryContextDelete`: callbacks run
   * (children first), then every block goes back to the heap. Handles on any of them stop
   * working. If this worker's current context was in the subtree, the parent becomes current.
   *
   * @throws {UmemError} `destroyed` when deleted already; `invalid-argument` for
   *   TopMemoryContext; an error a callback threw, after the delete
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const top = topContext(heap);
   * const before = top.memAllocated(true);
   * const ctx = top.create("doomed");
   * ctx.create("child").alloc(100000);
   * ctx.delete();
   * console.log(top.memAllocated(true) === before); // true
   * ```
   */
  delete(): void {
    this.h.sync();
    const parent = this.h.i32[(this.address + MC_PARENT) >> 2];
    const r = deleteContext(this.st, this.address, this.id, "MemoryContext.delete");
    this.leaveDoomed(r.doomed, parent);
    if (r.error !== undefined) throw r.error;
  }

  /** If this worker's current context was deleted, makes `fallback` current. */
  private leaveDoomed(doomed: readonly number[], fallback: number): void {
    const c = current;
    if (doomed.length > 0 && c !== null && c.heap === this.heap && doomed.includes(c.address)) {
      setCurrent(new MemoryContext(this.st, fallback));
    }
  }

  /**
   * Registers a callback to run when the context is next reset or deleted, as
   * `MemoryContextRegisterResetCallback`; callbacks run last registered first, once. They
   * are this worker's: a reset or delete done by another worker forgets them without running
   * them (functions cannot live in the buffer).
   *
   * @param fn the callback
   * @throws {UmemError} `invalid-argument` for something not a function; `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("files");
   * const order: string[] = [];
   * ctx.registerResetCallback(() => order.push("first"));
   * ctx.registerResetCallback(() => order.push("second"));
   * ctx.reset();
   * console.log(order.join(",")); // second,first
   * ```
   */
  registerResetCallback(fn: () => void): void {
    const f = "MemoryContext.registerResetCallback";
    if (typeof fn !== "function") {
      throw new UmemError("invalid-argument", `${f}: expected a function, got ${typeof fn}`);
    }
    this.live(f);
    const gen = this.h.i32[(this.address + MC_GEN) >> 2];
    const entry = this.st.callbacks.get(this.address);
    if (entry === undefined || entry.gen !== gen) {
      this.st.callbacks.set(this.address, { gen, fns: [fn] });
    } else entry.fns.push(fn);
  }

  /**
   * Sets this worker's soft-budget handler (each worker that allocates in the subtree sets
   * its own); null removes it.
   *
   * @param fn called, with no lock held, before a request takes the subtree past the soft
   *   budget; it may free memory (spill, reset a child); the request then proceeds
   * @throws {UmemError} `invalid-argument` when the context has no soft budget or `fn` is not
   *   a function; `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const sort = topContext(heap).create("sort", { softBudget: 64 << 10 });
   * const run = sort.create("run");
   * let spills = 0;
   * sort.onSoftBudget(() => {
   *   spills++; // write the run to disk, then:
   *   run.reset();
   * });
   * for (let i = 0; i < 5000; i++) run.alloc(100);
   * console.log(spills > 0, sort.memAllocated(true) <= 64 << 10); // true true
   * ```
   */
  onSoftBudget(fn: SoftBudgetHandler | null): void {
    const f = "MemoryContext.onSoftBudget";
    this.live(f);
    if (this.h.i32[(this.address + MC_SOFT) >> 2] === MC_NO_BUDGET) {
      throw new UmemError("invalid-argument", `${f}: context "${this.name}" has no soft budget`);
    }
    if (fn === null) {
      this.st.soft.delete(this.address);
      return;
    }
    if (typeof fn !== "function") {
      throw new UmemError("invalid-argument", `${f}: expected a function, got ${typeof fn}`);
    }
    this.st.soft.set(this.address, { id: this.id, fn });
  }

  /**
   * Whether nothing was allocated in the context since it was made or last reset, as
   * `MemoryContextIsEmpty` (a chunk allocated and freed since still counts).
   *
   * @returns true when empty
   * @throws {UmemError} `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("e");
   * console.log(ctx.isEmpty()); // true
   * ctx.alloc(1);
   * console.log(ctx.isEmpty()); // false
   * ```
   */
  isEmpty(): boolean {
    this.live("MemoryContext.isEmpty");
    return isEmptySet(this.h.i32, this.address);
  }

  /**
   * Bytes of blocks the context holds from the heap, as `MemoryContextMemAllocated`: its own,
   * or with `recurse` its whole subtree's (what a budget counts).
   *
   * @param recurse include the descendants
   * @returns bytes
   * @throws {UmemError} `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const job = topContext(heap).create("job");
   * job.create("stage");
   * console.log(job.memAllocated(), job.memAllocated(true)); // 8192 16384
   * ```
   */
  memAllocated(recurse = false): number {
    this.live("MemoryContext.memAllocated");
    return this.h.i32[(this.address + (recurse ? MC_TREE : MC_SELF)) >> 2];
  }

  /**
   * The statistics of the context and its subtree, as data (`MemoryContextStats` prints
   * them with {@linkcode memoryContextStats}).
   *
   * @returns blocks, total, free (bytes and chunks) and used bytes, budgets, children
   * @throws {UmemError} `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("s");
   * ctx.free(ctx.alloc(100));
   * const s = ctx.stats();
   * console.log(s.totalBytes, s.blocks, s.freeChunks); // 8192 1 1
   * ```
   */
  stats(): MemoryContextStats {
    this.live("MemoryContext.stats");
    return statsOf(this.h, this.address);
  }

  /**
   * Checks the context (and with `recurse` its subtree), as `MemoryContextCheck`: links,
   * blocks, every chunk header, the free lists and the byte counts.
   *
   * @param recurse check the descendants too (default true)
   * @returns the problems found, one line each; empty when sound
   * @throws {UmemError} `destroyed`
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { topContext } from "@umem/umem/budget";
   * const heap = Heap.create({ size: 4 << 20 });
   * const ctx = topContext(heap).create("c");
   * ctx.free(ctx.alloc(10));
   * console.log(ctx.check()); // []
   * ```
   */
  check(recurse = true): string[] {
    this.live("MemoryContext.check");
    return checkTree(this.h, this.address, recurse);
  }
}

/**
 * The heap's TopMemoryContext, the root of its context tree: found in the heap (any worker
 * sees the same tree), or created there the first time. The first call for a heap handle in a
 * worker makes it the current context, as PostgreSQL's `MemoryContextInit` does.
 *
 * @param heap the heap
 * @returns TopMemoryContext
 * @throws {UmemError} `invalid-argument` for something not a `Heap`
 * @throws {OutOfMemoryError} when the heap has no room for the tree's first block
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { palloc, topContext } from "@umem/umem/budget";
 * const heap = Heap.create({ size: 4 << 20 });
 * const top = topContext(heap);
 * const p = palloc(32); // in TopMemoryContext, now current
 * console.log(top.name, p > 0); // TopMemoryContext true
 * const w = Heap.attach(heap.buffer); // another worker finds the same tree
 * console.log(topContext(w).address === top.address); // true
 * w.detach();
 * ```
 */
export function topContext(heap: ContextHeap): MemoryContext {
  const h = checkHeap("topContext", heap);
  const first = stateOf(h) === undefined;
  const top = MemoryContext.at(h, treeOf(h).top);
  if (first) setCurrent(top);
  return top;
}
