/**
 * The worker of examples/own_handoff.ts: receives a buffer, sums it under a shared borrow,
 * doubles every byte under a mutable borrow, and sends it back to the main thread's slot.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { type OwnedToken, Ownership } from "../own/mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

worker.onmessage = (e: MessageEvent) => {
  const { buffer, token } = e.data as { buffer: SharedArrayBuffer; token: OwnedToken };
  const heap = Heap.attach(buffer);
  const own = Ownership.create(heap);
  const a = own.receive(token);
  let sum = 0;
  {
    using r = a.borrow();
    for (let i = 0; i < a.size; i++) sum += heap.u8[r.ptr + i];
  }
  {
    using w = a.borrowMut();
    for (let i = 0; i < a.size; i++) heap.u8[w.ptr + i] = (heap.u8[w.ptr + i] * 2) & 0xff;
  }
  worker.postMessage({ sum, token: a.send(0), slot: heap.slot });
};
