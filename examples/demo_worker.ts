/**
 * The worker half of the demo: attach to the heap it is sent, allocate and free, forget a few
 * buffers on purpose, report.
 *
 * @module
 */
import { Heap } from "../mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

/** The bug the demo plants: buffers allocated, filled, and never freed nor kept anywhere. */
function forgetToFree(heap: Heap, n: number): void {
  for (let i = 0; i < n; i++) {
    const p = heap.alloc(40);
    heap.u8.fill(0x2a, p, p + 40);
  }
}

worker.onmessage = (e: MessageEvent<{ buffer: SharedArrayBuffer; name: string; n: number }>) => {
  const { buffer, name, n } = e.data;
  const heap = Heap.attach(buffer);
  // Spans from the heap's arena, and small buffers from the size-class caches.
  const spans: number[] = [];
  for (let i = 0; i < 8; i++) spans.push(heap.vmem.alloc(4096 * (1 + (i % 3))));
  const held: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const size = 8 + ((i * 37) % 500);
    const p = heap.alloc(size);
    heap.u8.fill(heap.slot, p, p + size);
    held.push([p, size]);
    if (held.length > 64) {
      const [q, s] = held.shift()!;
      if (heap.u8[q] !== heap.slot) throw new Error(`buffer ${q} was changed by someone else`);
      heap.free(q, s);
    }
  }
  forgetToFree(heap, 2);
  // Keep three spans: the main thread frees them, which any worker may do.
  for (const s of spans.slice(3)) heap.vmem.free(s, 4096 * (1 + (spans.indexOf(s) % 3)));
  for (const [q, s] of held) heap.free(q, s);
  const kept = spans.slice(0, 3).map((s, i) => [s, 4096 * (1 + (i % 3))]);
  const slot = heap.slot;
  heap.detach();
  worker.postMessage({ name, slot, kept });
};
