/**
 * A worker for the region sharing test: opens the region that lives in the buffer it is sent
 * (bufferDiscipline), allocates, stamps, checks and frees blocks in a seeded random mix while
 * the main thread does the same, and sends back the blocks it still holds.
 *
 * @module
 */
import { bufferDiscipline, Region } from "../region/mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

worker.onmessage = (e: MessageEvent) => {
  const { buffer, seed, ops, tag } = e.data as {
    buffer: SharedArrayBuffer;
    seed: number;
    ops: number;
    tag: number;
  };
  const r = Region.open(bufferDiscipline(buffer), "best");
  const i32 = new Int32Array(buffer);
  const held: number[] = [];
  const errors: string[] = [];
  let x = seed;
  const rand = () => (x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < ops; i++) {
    if (held.length === 0 || rand() < 0.55) {
      const p = r.alloc(8 + Math.floor(rand() * 200));
      i32[p >> 2] = tag;
      i32[(p >> 2) + 1] = i;
      held.push(p);
    } else {
      const k = Math.floor(rand() * held.length);
      const p = held[k];
      if (i32[p >> 2] !== tag) errors.push(`block 0x${p.toString(16)} was overwritten`);
      held[k] = held[held.length - 1];
      held.pop();
      r.free(p);
    }
  }
  worker.postMessage({ held, errors });
};
