/**
 * The collector in a few lines: a binary tree of collector objects under an uncollectable root,
 * a subtree dropped, a finalizer, a pinned object, and a collection's figures.
 *
 *     deno run --allow-read --allow-env examples/gc_tree.ts
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { Collector } from "../gc/mod.ts";

const heap = Heap.create({ size: 16 << 20 });
const gc = Collector.create(heap);

/** A node is [left, right, value]: 12 bytes, scanned. */
function tree(depth: number): number {
  const node = gc.malloc(12);
  using _pin = gc.pin(node); // held only in a variable while its children are allocated
  if (depth > 0) {
    heap.i32[node >> 2] = tree(depth - 1);
    heap.i32[(node >> 2) + 1] = tree(depth - 1);
  }
  heap.i32[(node >> 2) + 2] = depth;
  return node;
}

const root = gc.mallocUncollectable(4); // the program's root: never collected
heap.i32[root >> 2] = tree(15); // 65,535 nodes
const name = gc.mallocAtomic(64); // bytes, never scanned
heap.u8.set(new TextEncoder().encode("a tree"), name);
using _name = gc.pin(name);

const top = heap.i32[root >> 2];
gc.registerFinalizer(heap.i32[(top >> 2) + 1], (p) => console.log(`finalizer: subtree at ${p}`));
heap.i32[(top >> 2) + 1] = 0; // drop the right subtree (32,767 nodes)

const r1 = gc.collect();
console.log(
  `first collection: freed ${r1.objects}, live ${r1.liveObjects}, ${r1.finalizable} finalizable`,
);
const r2 = gc.collect();
console.log(`second collection: freed ${r2.objects} (the finalized subtree)`);
const s = gc.stats();
console.log(
  `heap ${s.heapSize} bytes, free ${s.freeBytes}, ${s.collections} collections, ` +
    `${s.totalReclaimed} bytes reclaimed`,
);
console.log(`verify: ${JSON.stringify(heap.verify())}`);
