/**
 * UMEM_DEBUG=mtbf at work: about one allocation in three fails on purpose, as libumem injects
 * failures, so that a program's handling of `OutOfMemoryError` is exercised before memory really
 * runs out. The fail log says where each failure struck, with its stack; the contents log keeps
 * the first bytes of each freed buffer.
 *
 * Run: `deno run --allow-read --allow-env examples/failures.ts`
 *
 * @module
 */
import { Heap, inspect, OutOfMemoryError } from "../mod.ts";

const heap = Heap.create({ debug: "mtbf=3,guards,noabort", logging: "fail,contents" });

function handleRequest(): void {
  const buf = heap.alloc(40);
  heap.u8.set(new TextEncoder().encode("GET /index.html"), buf);
  heap.free(buf, 40);
}

let failed = 0;
for (let i = 0; i < 6; i++) {
  try {
    handleRequest();
  } catch (e) {
    if (!(e instanceof OutOfMemoryError)) throw e;
    failed++; // the program's own handling goes here
  }
}
console.log(`${failed} of 6 requests failed`);
console.log(inspect(heap).formatFailLog(undefined, 1));
console.log(inspect(heap).formatContentsLog(undefined, 1));
