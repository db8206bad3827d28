/**
 * The worker half of bench/workers_bench.ts: alloc+free pairs, or one side of a
 * producer/consumer ring in the heap.
 *
 * @module
 */
import { Heap } from "../mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

let heap: Heap;

/** Ring layout in the heap: head, tail (Int32 words), then RING_CAP entries. */
const RING_HEAD = 0, RING_TAIL = 4, RING_ENTRIES = 64;
const RING_CAP = 4096;

function pairs(n: number): void {
  for (let i = 0; i < n; i++) heap.free(heap.alloc(64), 64);
}

function produce(ring: number, n: number): void {
  const i32 = heap.i32, h = (ring + RING_HEAD) >> 2, t = (ring + RING_TAIL) >> 2;
  const e = (ring + RING_ENTRIES) >> 2;
  let tail = Atomics.load(i32, t);
  for (let k = 0; k < n; k++) {
    while (tail - Atomics.load(i32, h) >= RING_CAP) { /* ring full: the consumer catches up */ }
    heap.i32[e + (tail & (RING_CAP - 1))] = heap.alloc(64);
    tail++;
    if ((tail & 63) === 0 || k === n - 1) Atomics.store(i32, t, tail);
  }
}

function consume(ring: number, n: number): void {
  const i32 = heap.i32, h = (ring + RING_HEAD) >> 2, t = (ring + RING_TAIL) >> 2;
  const e = (ring + RING_ENTRIES) >> 2;
  let head = Atomics.load(i32, h);
  for (let k = 0; k < n;) {
    const tail = Atomics.load(i32, t);
    while (head !== tail) {
      heap.free(heap.i32[e + (head & (RING_CAP - 1))], 64);
      head++;
      k++;
    }
    Atomics.store(i32, h, head);
  }
}

worker.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.type === "attach") heap = Heap.attach(m.buffer);
  else if (m.type === "pairs") pairs(m.n);
  else if (m.type === "produce") produce(m.ring, m.n);
  else if (m.type === "consume") consume(m.ring, m.n);
  else if (m.type === "detach") heap.detach();
  worker.postMessage(m.type);
};
