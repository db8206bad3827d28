/**
 * What a worker keeps in JavaScript about a heap's context tree: the only state of memory
 * contexts that is not in the buffer.
 *
 * Theory. Every byte of a context lives in the heap (DESIGN.md, principle 1); what cannot is
 * code. Reset callbacks and soft-budget handlers are functions, so each worker keeps its own,
 * as the core keeps each worker's cache constructors: a map from a context record's address
 * to the functions this worker registered for it, tagged with the context's generation so
 * that a context reset or deleted by another worker (or a record reused by a new context)
 * never runs a stale callback. Besides that, a worker caches, per heap handle, the addresses
 * it found in the buffer (the tree's top record and its vmem arena), so that finding them
 * costs a search of the heap's arenas once per handle. And a worker has a *current context*,
 * PostgreSQL's `CurrentMemoryContext`, a JavaScript variable of this module.
 *
 * Invariants. A state belongs to one `Heap` handle (a worker that attaches twice has two);
 * `callbacks.get(rec).gen` is the generation the context had when the first of them was
 * registered; they run only while the context still has it.
 *
 * Lock order: none; nothing here touches the image.
 *
 * @module
 */

import type { Heap, Vmem } from "../core/mod.ts";
import type { MemoryContext } from "./context.ts";

/**
 * The heap a context tree lives in, as budget's signatures name it: a `Heap` of "@umem/umem"
 * (from `Heap.create` or `Heap.attach`); anything else is refused at run time. Its views read
 * and write the chunks.
 */
export interface ContextHeap {
  /** The heap's SharedArrayBuffer (send it to a worker, which calls `Heap.attach`). */
  readonly buffer: SharedArrayBuffer;
  /** This handle's worker slot. */
  readonly slot: number;
  /** Byte view over the heap (follows growth after `sync`). */
  u8: Uint8Array;
  /** Signed word view. */
  i32: Int32Array;
  /** Unsigned word view. */
  u32: Uint32Array;
  /** Float64 view. */
  f64: Float64Array;
  /** Re-maps the views if another worker grew the heap. */
  sync(): void;
}

/** What a soft-budget handler is told. */
export interface SoftBudgetEvent {
  /** The address of the context whose soft budget the request would pass. */
  readonly address: number;
  /** The name of that context. */
  readonly name: string;
  /** The size of the request that would pass it. */
  readonly request: number;
  /** Bytes that context's subtree holds now. */
  readonly allocated: number;
  /** Its soft budget. */
  readonly softBudget: number;
  /** Bytes the request needs from the heap (a new block). */
  readonly needed: number;
}

/** A soft-budget handler: free what you can (spill to disk, reset a child), then return. */
export type SoftBudgetHandler = (event: SoftBudgetEvent) => void;

/** Where a tree's blocks come from: its vmem arena, through the arena's quantum caches. */
export interface BlockSource {
  /** Takes a block of `bytes` (a multiple of the arena's quantum). */
  alloc(bytes: number): number;
  /** Gives back a block of `bytes`. */
  free(addr: number, bytes: number): void;
}

/** One worker's view of one heap's context tree. */
export interface TreeState {
  /** The heap handle. */
  readonly heap: Heap;
  /** The vmem arena every context's blocks come from. */
  readonly arena: Vmem;
  /** This worker's handles on the arena and its quantum caches. */
  readonly blocks: BlockSource;
  /** The top record (TopMemoryContext). */
  readonly top: number;
  /** This worker's reset callbacks, by context record: LIFO on reset and delete. */
  readonly callbacks: Map<number, { gen: number; fns: (() => void)[] }>;
  /** This worker's soft-budget handlers, by context record. */
  readonly soft: Map<number, { id: number; fn: SoftBudgetHandler }>;
  /** Contexts whose soft-budget handler is running in this worker (no re-entry). */
  readonly inSoft: Set<number>;
}

const states = new WeakMap<Heap, TreeState>();

/** This worker's state for `heap`, or undefined before `topContext(heap)` found the tree. */
export function stateOf(heap: Heap): TreeState | undefined {
  return states.get(heap);
}

/** Records this worker's state for a heap handle. */
export function setState(heap: Heap, st: TreeState): void {
  states.set(heap, st);
}

/**
 * The current memory context of this worker (PostgreSQL's `CurrentMemoryContext`): one per
 * worker, as PostgreSQL has one per backend, whatever heap it belongs to. `palloc` allocates
 * in it and `pfree` reads chunks in its heap.
 */
export let current: MemoryContext | null = null;

/** Sets this worker's current memory context; returns the previous one. */
export function setCurrent(ctx: MemoryContext | null): MemoryContext | null {
  const old = current;
  current = ctx;
  return old;
}
