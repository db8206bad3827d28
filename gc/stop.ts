/**
 * Stopping the world: how every worker that holds collector objects stops at a safe point
 * while one worker marks and sweeps.
 *
 * Theory. JavaScript cannot interrupt a worker, so the stop is cooperative, as a signal-free
 * Boehm collector's is. The collecting worker takes `GC_BUSY`, writes the collection's epoch
 * into the core's `HDR_SAFEPOINT` word, and waits for every other slot whose state is
 * `WS_RUNNING` to answer. A worker answers at a *safe point*: every `malloc` of the collector,
 * the core's allocation slow path (a magazine runs dry; `HeapView.safepoint`), or an explicit
 * `collector.safepoint()`. There it writes `WS_PARKED`, wakes the collector, and sleeps on
 * `HDR_SAFEPOINT` until it is 0 again. A worker that will not touch collector objects for a
 * while (waiting for a message, computing on its own data) says so with `leave()` (state
 * `WS_OUTSIDE`) and is not waited for; `enter()` brings it back, parking first if a collection
 * is under way. A worker that neither answers nor left within `GC_STOP_TIMEOUT` makes the
 * collection fail with a `safepoint-timeout` error naming it, and the world resumes untouched:
 * no mark bit has been set yet.
 *
 * Why it is sound. Each side writes its own word, then reads the other's, with sequentially
 * consistent Atomics (Dekker's pattern): the collector writes `HDR_SAFEPOINT` then reads a
 * slot's state; a worker coming back (`enter`, or waking from a park) writes `WS_RUNNING` then
 * reads `HDR_SAFEPOINT`. One of the two sees the other's write, so a worker the collector saw
 * parked or outside cannot run collector code until the request is withdrawn.
 *
 * Invariants. Only the worker holding `GC_BUSY` writes a nonzero `HDR_SAFEPOINT`; every wait is
 * bounded (`GC_STOP_TIMEOUT` for the collector, `GC_PARK_TIMEOUT` for a parked worker). A slot
 * whose heap slot is no longer live (its worker detached or was reclaimed) is not waited for.
 *
 * Lock order: no lock is taken here; a worker parks holding no lock.
 *
 * @module
 */
import { HDR_SAFEPOINT, HDR_SLOTS, hex, SLOT_LIVE, WS_SIZE, WS_STATE } from "../core/internal.ts";
import { type HeapView, UmemError } from "../core/mod.ts";
import {
  GC_BUSY,
  GC_EPOCH,
  GC_NSLOTS,
  GC_PARK_TIMEOUT,
  GC_SLOTS,
  GC_STOP_TIMEOUT,
  GS_SIZE,
  GS_STATE,
  WS_OUTSIDE,
  WS_PARKED,
  WS_RUNNING,
} from "./layout.ts";

/** The word index of slot `slot`'s state in the collector record `rec`. */
function stateWord(rec: number, slot: number): number {
  return (rec + GC_SLOTS + slot * GS_SIZE + GS_STATE) >> 2;
}

/** Whether the heap's slot table still has `slot` live. */
function heapSlotLive(h: HeapView, slot: number): boolean {
  const table = h.i32[HDR_SLOTS >> 2];
  return Atomics.load(h.i32, (table + slot * WS_SIZE + WS_STATE) >> 2) === SLOT_LIVE;
}

/**
 * Takes `GC_BUSY` for slot `me` if no collection is under way.
 *
 * @param h the heap
 * @param rec the collector record
 * @param me this worker's slot
 * @returns whether this worker now collects
 */
export function tryBeginCollection(h: HeapView, rec: number, me: number): boolean {
  return Atomics.compareExchange(h.i32, (rec + GC_BUSY) >> 2, 0, me + 1) === 0;
}

/**
 * Gives `GC_BUSY` back.
 *
 * @param h the heap
 * @param rec the collector record
 */
export function endCollection(h: HeapView, rec: number): void {
  Atomics.store(h.i32, (rec + GC_BUSY) >> 2, 0);
}

/**
 * Asks every mutator to stop and waits until each has parked or left (the caller holds
 * `GC_BUSY`). On a timeout the request is withdrawn before the error is thrown.
 *
 * @param h the heap
 * @param rec the collector record
 * @param me the collecting worker's slot
 * @param fn the caller's name, for the error
 * @throws {UmemError} `safepoint-timeout` naming the first worker that did not answer
 */
export function stopWorld(h: HeapView, rec: number, me: number, fn: string): void {
  const i32 = h.i32;
  let epoch = (Atomics.add(i32, (rec + GC_EPOCH) >> 2, 1) + 1) | 0;
  if (epoch === 0) epoch = 1;
  Atomics.store(i32, HDR_SAFEPOINT >> 2, epoch);
  const timeout = Atomics.load(i32, (rec + GC_STOP_TIMEOUT) >> 2);
  const deadline = Date.now() + timeout;
  const n = i32[(rec + GC_NSLOTS) >> 2];
  for (let s = 0; s < n; s++) {
    if (s === me) continue;
    const at = stateWord(rec, s);
    for (;;) {
      if (Atomics.load(i32, at) !== WS_RUNNING || !heapSlotLive(h, s)) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        resumeWorld(h);
        throw new UmemError(
          "safepoint-timeout",
          `${fn}: worker ${s} did not reach a safe point within ${timeout} ms (state word at ${
            hex(at << 2)
          }); a worker must allocate, call collector.safepoint(), or leave() while it is idle`,
        );
      }
      Atomics.wait(i32, at, WS_RUNNING, Math.min(left, 20));
    }
  }
}

/**
 * Withdraws the stop request and wakes every parked worker.
 *
 * @param h the heap
 */
export function resumeWorld(h: HeapView): void {
  Atomics.store(h.i32, HDR_SAFEPOINT >> 2, 0);
  Atomics.notify(h.i32, HDR_SAFEPOINT >> 2);
}

/**
 * The safe point: if a collection by another worker asks the world to stop, parks this worker
 * until it ends. Does nothing for the collecting worker itself, or a worker that left.
 *
 * @param h the heap
 * @param rec the collector record
 * @param me this worker's slot
 * @returns whether this worker parked
 * @throws {UmemError} `safepoint-timeout` when the collection does not end within
 *   `GC_PARK_TIMEOUT` (the collecting worker died); the worker is running again
 */
export function park(h: HeapView, rec: number, me: number): boolean {
  const i32 = h.i32;
  if (Atomics.load(i32, HDR_SAFEPOINT >> 2) === 0) return false;
  if (Atomics.load(i32, (rec + GC_BUSY) >> 2) === me + 1) return false;
  const at = stateWord(rec, me);
  if (Atomics.load(i32, at) !== WS_RUNNING) return false;
  const timeout = Atomics.load(i32, (rec + GC_PARK_TIMEOUT) >> 2);
  const deadline = Date.now() + timeout;
  for (;;) {
    Atomics.store(i32, at, WS_PARKED);
    Atomics.notify(i32, at);
    for (let v = Atomics.load(i32, HDR_SAFEPOINT >> 2); v !== 0;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        Atomics.store(i32, at, WS_RUNNING);
        throw new UmemError(
          "safepoint-timeout",
          `GC safepoint: worker ${me} waited ${timeout} ms for the collection by worker ${
            Atomics.load(i32, (rec + GC_BUSY) >> 2) - 1
          } to end`,
        );
      }
      Atomics.wait(i32, HDR_SAFEPOINT >> 2, v, left);
      v = Atomics.load(i32, HDR_SAFEPOINT >> 2);
    }
    Atomics.store(i32, at, WS_RUNNING);
    if (Atomics.load(i32, HDR_SAFEPOINT >> 2) === 0) return true;
  }
}

/**
 * Declares this worker outside: it touches no collector object until {@linkcode enterWorld}.
 *
 * @param h the heap
 * @param rec the collector record
 * @param me this worker's slot
 */
export function leaveWorld(h: HeapView, rec: number, me: number): void {
  const at = stateWord(rec, me);
  Atomics.store(h.i32, at, WS_OUTSIDE);
  Atomics.notify(h.i32, at);
}

/**
 * Comes back from {@linkcode leaveWorld}, parking first if a collection is under way.
 *
 * @param h the heap
 * @param rec the collector record
 * @param me this worker's slot
 */
export function enterWorld(h: HeapView, rec: number, me: number): void {
  Atomics.store(h.i32, stateWord(rec, me), WS_RUNNING);
  park(h, rec, me);
}

/**
 * Sets slot `me`'s state (attach: running; detach: none).
 *
 * @param h the heap
 * @param rec the collector record
 * @param me the slot
 * @param state a `WS_*` state
 */
export function setSlotState(h: HeapView, rec: number, me: number, state: number): void {
  const at = stateWord(rec, me);
  Atomics.store(h.i32, at, state);
  Atomics.notify(h.i32, at);
}
