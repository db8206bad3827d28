/**
 * Mutexes that are one Int32 word in the buffer (DESIGN.md, principle 6).
 *
 * Theory. A futex-style mutex: compare-and-swap 0 → owner to take it; on contention spin a
 * little, then set the WAITERS bit and `Atomics.wait` on the word; the releaser exchanges the
 * word with 0 and, if the WAITERS bit was set, `Atomics.notify`s one waiter.
 *
 * Word layout: bits 0..15 hold the holder's worker slot + 1 (0 = unlocked); bit 16 is WAITERS.
 * Recording the holder lets a waiter that times out name the holder and say whether its slot is
 * still alive, so a lock held by a worker that died is found rather than waited on for ever.
 *
 * Invariants. Every wait has a deadline (the heap's lock timeout); a lock is never taken twice
 * by the same slot (locks are not recursive; taking one you hold throws rather than deadlocks).
 *
 * @module
 */

import { HeapLockedError, hex } from "./errors.ts";
import {
  HDR_LOCK_TIMEOUT,
  HDR_SLOTS,
  type HeapView,
  SLOT_LIVE,
  WS_SIZE,
  WS_STATE,
} from "./image.ts";

/** Mask of the holder field in a lock word. */
export const LOCK_HOLDER_MASK = 0xffff;
/** The WAITERS bit of a lock word. */
export const LOCK_WAITERS = 0x10000;
/** The slot a worker acts as while it attaches and has no slot yet (never a real slot). */
export const ATTACHING = LOCK_HOLDER_MASK - 1;
/** Compare-and-swap attempts before a taker sleeps. */
const LOCK_SPIN = 64;

/**
 * Takes the lock at byte address `addr`, then syncs this worker's views: whatever another worker
 * grew the heap by before it let a lock go (a span, a slab, a magazine, a segment record) lies
 * inside them, so every address read under the lock can be read and written. (Without it a
 * write past the views is dropped without a word: a slab laid out in memory another worker
 * brought in, or a magazine's link, is lost.) Returns true if the lock was contended (someone
 * held it when we first tried), which the depot counts to size its magazines.
 * @throws {HeapLockedError} when the lock is not released within the heap's lock timeout
 */
export function lock(h: HeapView, addr: number): boolean {
  const i = addr >> 2;
  if (Atomics.compareExchange(h.i32, i, 0, h.slot + 1) === 0) {
    h.sync();
    return false;
  }
  lockSlow(h, addr);
  h.sync();
  return true;
}

/** Tries once to take the lock; true on success. */
export function tryLock(h: HeapView, addr: number): boolean {
  return Atomics.compareExchange(h.i32, addr >> 2, 0, h.slot + 1) === 0;
}

function lockSlow(h: HeapView, addr: number): void {
  const i32 = h.i32, i = addr >> 2, me = h.slot + 1;
  for (let n = 0; n < LOCK_SPIN; n++) {
    if (Atomics.load(i32, i) === 0 && Atomics.compareExchange(i32, i, 0, me) === 0) return;
  }
  const timeout = Atomics.load(i32, HDR_LOCK_TIMEOUT >> 2) || 10000;
  const deadline = Date.now() + timeout;
  for (;;) {
    let v = Atomics.load(i32, i);
    if (v === 0) {
      // Take it with WAITERS set: others may still sleep on it.
      if (Atomics.compareExchange(i32, i, 0, me | LOCK_WAITERS) === 0) return;
      continue;
    }
    if ((v & LOCK_HOLDER_MASK) === me && h.slot !== ATTACHING) {
      throw new HeapLockedError(
        `lock: lock at ${hex(addr)} is already held by this worker (slot ${h.slot})`,
        addr,
        h.slot,
      );
    }
    if ((v & LOCK_WAITERS) === 0) {
      if (Atomics.compareExchange(i32, i, v, v | LOCK_WAITERS) !== v) continue;
      v |= LOCK_WAITERS;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw lockTimeout(h, addr, v, timeout);
    Atomics.wait(i32, i, v, Math.min(left, 100));
  }
}

function lockTimeout(h: HeapView, addr: number, v: number, timeout: number): HeapLockedError {
  const holder = (v & LOCK_HOLDER_MASK) - 1;
  const slots = h.u32[HDR_SLOTS >> 2];
  const alive = holder === ATTACHING ||
    h.u32[(slots + holder * WS_SIZE + WS_STATE) >> 2] === SLOT_LIVE;
  return new HeapLockedError(
    `lock: lock at ${hex(addr)} not released within ${timeout} ms; held by worker ${holder} (${
      alive ? "slot still live" : "slot no longer live: the holder died"
    })`,
    addr,
    holder,
  );
}

/** Releases the lock at `addr`, waking one waiter if any sleeps. */
export function unlock(h: HeapView, addr: number): void {
  const i = addr >> 2;
  const v = Atomics.exchange(h.i32, i, 0);
  if ((v & LOCK_WAITERS) !== 0) Atomics.notify(h.i32, i, 1);
}

/** The worker slot holding the lock at `addr`, or -1 when it is free. */
export function lockHolder(h: HeapView, addr: number): number {
  return (Atomics.load(h.i32, addr >> 2) & LOCK_HOLDER_MASK) - 1;
}
