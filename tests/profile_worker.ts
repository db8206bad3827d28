/**
 * A worker for the profile tests: attaches to the heap it is sent, records its own
 * allocations, allocates `n` buffers of `size` bytes, frees half of them, hands the other half
 * to the main thread to free, and posts its trace (`.umt` bytes) back.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { encodeTrace, record } from "../profile/mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
};

worker.onmessage = (e: MessageEvent) => {
  const { buffer, n, size } = e.data as { buffer: SharedArrayBuffer; n: number; size: number };
  const heap = Heap.attach(buffer);
  const rec = record(heap);
  const ps: number[] = [];
  for (let i = 0; i < n; i++) ps.push(heap.alloc(size));
  for (let i = 0; i < n; i += 2) heap.free(ps[i], size);
  const given = ps.filter((_, i) => i % 2 === 1);
  const bytes = encodeTrace(rec.stop());
  const slot = heap.slot;
  heap.detach();
  const buf = bytes.buffer as ArrayBuffer;
  worker.postMessage({ slot, given, trace: buf }, [buf]);
};
