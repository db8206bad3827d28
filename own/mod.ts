/**
 * `own`: Rust's ownership rules for buffers of the shared heap, checked at run time.
 *
 * One owner per buffer ({@linkcode Owned}); `move()` gives a new handle and kills the old one;
 * many shared borrows ({@linkcode Ref}) or one mutable borrow ({@linkcode RefMut}), each a
 * `Disposable` guard; no free while borrowed, no use after move or drop, no double drop. The
 * state of each buffer is a word in the heap, changed with compare-and-swap, so the rules hold
 * across workers: `send()` hands a buffer to another worker, whose `receive(token)` makes it
 * the owner while the sender's handle is dead; `share()` lends a reference ({@linkcode Shared})
 * that borrows in the same word, so two workers racing for a mutable borrow get one winner.
 * `heap.free`, `libc.free` and `Cache.free` of a tracked buffer are refused. Errors are
 * {@linkcode OwnershipError}s with a `kind` ({@linkcode BorrowError} and
 * {@linkcode BorrowMutError} for conflicts), carrying the stack of the conflicting borrow,
 * move or drop in `full` mode; `onError` may take them instead of throwing; `leaks()` lists
 * what was never dropped.
 *
 * @example
 * ```ts
 * import { Heap, UmemError } from "@umem/umem";
 * import { Ownership } from "@umem/umem/own";
 * const heap = Heap.create({ size: 1 << 20 });
 * const own = Ownership.create(heap);
 * const a = own.alloc(16);
 * {
 *   using r = a.borrow();
 *   try {
 *     a.borrowMut();
 *   } catch (e) {
 *     console.log((e as UmemError).kind); // "borrow-conflict"
 *   }
 * }
 * const b = a.move();
 * try {
 *   a.deref();
 * } catch (e) {
 *   console.log((e as UmemError).kind); // "use-after-move"
 * }
 * b.drop();
 * ```
 *
 * @module
 */
export { Ownership, type OwnershipStats } from "./ownership.ts";
export { type OwnedInfo, type OwnedToken, type ShareToken } from "./owned.ts";
export { Owned, Shared } from "./owned.ts";
export { Ref, RefMut } from "./guard.ts";
export {
  type OwnCache,
  type OwnershipErrorHandler,
  type OwnershipOptions,
  type OwnHeap,
  type OwnSource,
} from "./context.ts";
export { BorrowError, BorrowMutError, type OwnershipDetail, OwnershipError } from "./own_error.ts";
export { UmemError, type UmemErrorKind } from "../core/mod.ts";
