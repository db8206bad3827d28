/**
 * vmem benchmarks (issue "Core I"): alloc+free of 1, 4 and 16 pages from the heap's arena with
 * each policy, and constrained xalloc, all with a thousand live segments interleaved with holes
 * of mixed sizes so that the free lists are not trivial.
 *
 *     deno bench bench/vmem_bench.ts
 *
 * Each group's baseline is instantfit (or plain alloc for xalloc), so the report shows the
 * other entries as ratios of it.
 */
import { Heap, Vmem, type VmemPolicy } from "../mod.ts";

const PAGE = 4096;
const POLICIES: VmemPolicy[] = ["instantfit", "bestfit", "nextfit"];

/**
 * A heap whose arena holds `live` allocated segments of 2, 4 or 6 pages, each followed by a
 * hole of 1, 3 or 5 pages (so the free lists hold holes of several sizes), and a free tail.
 */
function fragmentedHeap(live: number): Heap {
  const heap = Heap.create({ size: 64 << 20, maxSize: 256 << 20 });
  const held: [number, number][] = [];
  for (let i = 0; i < 2 * live; i++) {
    const size = (1 + ((i * 7) % 6)) * PAGE;
    held.push([heap.vmem.alloc(size), size]);
  }
  for (let i = 0; i < held.length; i += 2) heap.vmem.free(held[i][0], held[i][1]);
  return heap;
}

const heap = fragmentedHeap(1000);
const vm = heap.vmem;

for (const pages of [1, 4, 16]) {
  const size = pages * PAGE;
  const group = `alloc+free ${pages} page${pages > 1 ? "s" : ""}`;
  for (const policy of POLICIES) {
    Deno.bench({
      name: `${policy} ${pages}p`,
      group,
      baseline: policy === "instantfit",
      fn() {
        const a = vm.alloc(size, policy);
        vm.free(a, size);
      },
    });
  }
}

Deno.bench({
  name: "alloc 4 KiB",
  group: "xalloc",
  baseline: true,
  fn() {
    const a = vm.alloc(PAGE);
    vm.free(a, PAGE);
  },
});
Deno.bench({
  name: "xalloc 4 KiB align 64 KiB",
  group: "xalloc",
  fn() {
    const a = vm.xalloc(PAGE, { align: 65536 });
    vm.xfree(a, PAGE);
  },
});
Deno.bench({
  name: "xalloc 4 KiB align 64 KiB phase 12 KiB",
  group: "xalloc",
  fn() {
    const a = vm.xalloc(PAGE, { align: 65536, phase: 3 * PAGE });
    vm.xfree(a, PAGE);
  },
});
Deno.bench({
  name: "xalloc 16 KiB nocross 64 KiB",
  group: "xalloc",
  fn() {
    const a = vm.xalloc(4 * PAGE, { nocross: 65536 });
    vm.xfree(a, 4 * PAGE);
  },
});
Deno.bench({
  name: "xalloc 4 KiB minaddr 16 MiB",
  group: "xalloc",
  fn() {
    const a = vm.xalloc(PAGE, { minaddr: 16 << 20 });
    vm.xfree(a, PAGE);
  },
});

// A small-quantum arena over an integer range (as an id or port allocator would be), with a
// thousand live 8-byte segments interleaved with holes.
const ids = Vmem.create(heap, "ids", { base: 1 << 20, size: 1 << 20, quantum: 8 });
{
  const held: number[] = [];
  for (let i = 0; i < 2000; i++) held.push(ids.alloc(8 * (1 + (i % 3))));
  for (let i = 0; i < held.length; i += 2) ids.free(held[i], 8 * (1 + (i % 3)));
}
for (const policy of POLICIES) {
  Deno.bench({
    name: `${policy} 24 B`,
    group: "alloc+free 24 bytes, quantum 8 arena",
    baseline: policy === "instantfit",
    fn() {
      const a = ids.alloc(24, policy);
      ids.free(a, 24);
    },
  });
}
