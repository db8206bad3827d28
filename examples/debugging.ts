/**
 * UMEM_DEBUG at work: the Vmalloc paper's Figure 8 program (a string one byte too short, a
 * free of something never allocated, a double free) on a heap with debugging on, and the
 * reports it gets. `noabort` makes each report a thrown `HeapCorruptionError` that the program
 * catches and prints; without it the first report would abort the process, as libumem's does.
 *
 * Run: `deno run --allow-read --allow-env examples/debugging.ts`
 * (or with no `debug` option and `UMEM_DEBUG=default,noabort` in the environment).
 *
 * @module
 */
import { Heap, UmemError } from "../mod.ts";

const heap = Heap.create({ size: 1 << 20, debug: "default,noabort", logging: "transaction" });
const { libc, u8 } = heap;

function copyString(s: string): number {
  const p = libc.malloc(s.length); // one byte too short: no room for the NUL
  u8.set(new TextEncoder().encode(s + "\0"), p);
  return p;
}

const report = (f: () => void) => {
  try {
    f();
    console.log("(no error)");
  } catch (e) {
    console.log(e instanceof UmemError ? `[${e.kind}]\n${e.message}\n` : e);
  }
};

const s = copyString("hello");
report(() => libc.free(s)); // the overrun: a redzone violation
u8[s + 5] = 0xbb; // (put the redzone byte back, so that the free below goes through)
libc.free(s);
report(() => libc.free(4096 + 8)); // a free of something malloc never returned
report(() => libc.free(s)); // a double free
console.log(`heap.verify(): ${JSON.stringify(heap.verify())}`);
