/**
 * The region lock: one Int32 word in the region record (`RG_LOCK`).
 *
 * Theory. The same futex-style mutex as the core's (core/lock.ts): compare-and-swap 0 → holder
 * to take it, a short spin, then `Atomics.wait` with a deadline; the releaser exchanges the word
 * with 0 and wakes one waiter. The core's lock needs a heap handle (its worker slot and lock
 * timeout live in the heap header), but a region may live in a buffer of its own
 * (`growableDiscipline`, `bufferDiscipline`) with no heap at all, so the holder is the region
 * handle's id, taken from the record's `RG_NEXTID` counter when the handle is made.
 *
 * Invariants. A lock is never taken twice by the same handle (taking one you hold throws rather
 * than deadlocks); every wait has a deadline ({@linkcode LOCK_TIMEOUT_MS}).
 *
 * Lock order: the region lock is a leaf, except that a heap discipline takes the heap's locks
 * inside it (region lock → heap locks); nothing takes the region lock while holding a heap lock.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { HeapLockedError } from "../core/mod.ts";

/** How long a taker waits before it gives up. */
export const LOCK_TIMEOUT_MS = 10_000;
/** Compare-and-swap attempts before a taker sleeps. */
const SPIN = 64;
/** The waiters bit of the lock word. */
const WAITERS = 1 << 30;

/**
 * Takes the lock at byte address `addr`.
 *
 * @param i32 a view over the region's buffer
 * @param addr the lock word's address
 * @param me the handle's id (nonzero, below 2^30)
 * @throws {HeapLockedError} when it is not released in time, or `me` already holds it
 */
export function regionLock(i32: Int32Array, addr: number, me: number): void {
  const i = addr >> 2;
  if (Atomics.compareExchange(i32, i, 0, me) === 0) return;
  for (let n = 0; n < SPIN; n++) {
    if (Atomics.load(i32, i) === 0 && Atomics.compareExchange(i32, i, 0, me) === 0) return;
  }
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    let v = Atomics.load(i32, i);
    if (v === 0) {
      if (Atomics.compareExchange(i32, i, 0, me | WAITERS) === 0) return;
      continue;
    }
    if ((v & ~WAITERS) === me) {
      throw new HeapLockedError(
        `vmlock: region lock at ${hex(addr)} is already held by this handle (${me})`,
        addr,
        me,
      );
    }
    if ((v & WAITERS) === 0) {
      if (Atomics.compareExchange(i32, i, v, v | WAITERS) !== v) continue;
      v |= WAITERS;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new HeapLockedError(
        `vmlock: region lock at ${hex(addr)} not released within ${LOCK_TIMEOUT_MS} ms; ` +
          `held by handle ${v & ~WAITERS}`,
        addr,
        v & ~WAITERS,
      );
    }
    Atomics.wait(i32, i, v, Math.min(left, 100));
  }
}

/**
 * Releases the lock at `addr`, waking one waiter if any sleeps.
 *
 * @param i32 a view over the region's buffer
 * @param addr the lock word's address
 */
export function regionUnlock(i32: Int32Array, addr: number): void {
  const i = addr >> 2;
  const v = Atomics.exchange(i32, i, 0);
  if ((v & WAITERS) !== 0) Atomics.notify(i32, i, 1);
}
