/**
 * umem: libumem's vmem arenas and slab allocator, and Vmalloc's regions, for Deno and Bun, with
 * every byte of allocator state inside one SharedArrayBuffer that workers share.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * const worker = Heap.attach(heap.buffer); // what a Worker does with the buffer it is sent
 * const a = worker.vmem.alloc(4096);
 * heap.vmem.free(a, 4096);
 * worker.detach();
 * ```
 *
 * @module
 */
export * from "./core/mod.ts";
