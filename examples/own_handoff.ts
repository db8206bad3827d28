/**
 * A buffer handed from the main thread to a worker and back, with Rust's rules checked on the
 * way: the main thread fills a buffer under a mutable borrow and sends it; from then on its
 * handle is dead (the example shows the error, with the stack of the send in `full` mode); the
 * worker receives it, sums it under a shared borrow, doubles it under a mutable borrow and
 * sends it back; a `heap.free` behind the owner's back is refused; at the end `leaks()` lists
 * the one buffer the example keeps on purpose, with where it was allocated.
 *
 *     deno run --allow-read examples/own_handoff.ts
 *     bun examples/own_handoff.ts
 *
 * @module
 */
import { Heap, type UmemError } from "../mod.ts";
import { type OwnedToken, Ownership } from "../own/mod.ts";

const heap = Heap.create({ size: 4 << 20, debug: "", logging: "" });
const own = Ownership.create(heap, { mode: "full", frames: 2 });

const a = own.alloc(1000);
{
  using w = a.borrowMut();
  for (let i = 0; i < 1000; i++) heap.u8[w.ptr + i] = i & 0xff;
}
const token = a.send();
try {
  a.borrow();
} catch (e) {
  console.log(`main: ${(e as UmemError).message}`);
}

const worker = new Worker(new URL("./own_handoff_worker.ts", import.meta.url).href, {
  type: "module",
});
const back = await new Promise<{ sum: number; token: OwnedToken; slot: number }>(
  (resolve, reject) => {
    worker.onmessage = (e) => resolve(e.data);
    worker.onerror = (e) => reject(e);
    worker.postMessage({ buffer: heap.buffer, token });
  },
);
worker.terminate();
console.log(`worker ${back.slot}: sum ${back.sum}, doubled, sent back`);
const b = own.receive(back.token);
console.log(`main: owner again, byte 7 is ${heap.u8[b.deref() + 7]}`);

try {
  heap.free(b.deref(), 1000);
} catch (e) {
  console.log(`main: ${(e as UmemError).kind}: ${(e as UmemError).message}`);
}
b.drop();

own.alloc(48); // kept on purpose
for (const l of own.leaks()) {
  console.log(`leak: ${l.size} bytes at 0x${l.ptr.toString(16)}, owner ${l.owner}, ${l.state}`);
  console.log(`  allocated at ${l.allocStack.split("\n")[0]}`);
}
console.log(own.stats());
