/**
 * Pins: how a JavaScript variable becomes a root.
 *
 * Theory. The collector cannot see a worker's JavaScript variables (Boehm's collector scans
 * the C stack; there is no such stack here). An address a program keeps only in a variable is
 * therefore pinned in the heap's one root registry (`heap.pin`, DESIGN.md principle 9), so
 * that `findleaks` and the collector agree, and unpinned when the variable goes out of scope:
 * the handle is `Disposable`, so `using` does it.
 *
 * Invariants. A handle unpins once; disposing it again does nothing. The registry entry is in
 * the heap, so a pin made by one worker keeps the object alive for every collector.
 *
 * Lock order: the root table's lock (core/roots.ts), taken alone.
 *
 * @module
 */
import type { Heap } from "../core/mod.ts";

/**
 * A pinned address: the object it points at (or into, when the collector takes interior
 * pointers, its default) survives every collection until the handle is disposed. A pin is a
 * root word like any other: with `interior: false` only a pin of an object's first byte keeps it.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { Collector } from "@umem/umem/gc";
 * const heap = Heap.create({ size: 4 << 20 });
 * const gc = Collector.create(heap);
 * {
 *   using pin = gc.pin(gc.malloc(16));
 *   gc.collect();
 *   console.log(gc.isLive(pin.ptr)); // true
 * }
 * console.log(gc.collect().objects); // 1
 * ```
 */
export class PinHandle implements Disposable {
  /** The pinned address. */
  readonly ptr: number;
  /** The heap whose root registry holds the pin. */
  private readonly heap: Heap;
  /** Whether the pin is still in force. */
  private live = true;

  /**
   * Pins `ptr` in the heap's root registry. Use `collector.pin(ptr)`.
   *
   * @param heap the heap
   * @param ptr the address
   */
  constructor(heap: Heap, ptr: number) {
    heap.pin(ptr);
    this.heap = heap;
    this.ptr = ptr;
  }

  /**
   * Whether the pin is still in force.
   *
   * @returns true until the handle is disposed
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * const pin = gc.pin(gc.malloc(8));
   * pin.dispose();
   * console.log(pin.pinned); // false
   * ```
   */
  get pinned(): boolean {
    return this.live;
  }

  /**
   * Unpins the address; a second call does nothing.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { Collector } from "@umem/umem/gc";
   * const gc = Collector.create(Heap.create({ size: 4 << 20 }));
   * const pin = gc.pin(gc.malloc(8));
   * pin.dispose();
   * pin.dispose();
   * ```
   */
  dispose(): void {
    if (!this.live) return;
    this.live = false;
    this.heap.unpin(this.ptr);
  }

  /** Unpins the address at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
