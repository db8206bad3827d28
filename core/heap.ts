/**
 * The heap: the public handle on one image, in one worker.
 *
 * `Heap.create` makes a growable SharedArrayBuffer, lays the header, the page map, the first
 * segment records and the root arena; `Heap.attach` opens an existing image in another worker
 * (or a copy from a file) after checking the header, and takes a worker slot. The creator holds
 * slot 0. A slot is what a CPU is to libumem: each slot has its own magazines in every cache.
 *
 * Lock order: the slot-table lock is taken alone.
 *
 * @module
 */

import { checkSize, UmemError } from "./errors.ts";
import {
  checkHeader,
  HDR_ARENA_LIST,
  HDR_NSLOTS,
  HDR_ROOT_ARENA,
  HDR_SLOT_LOCK,
  HDR_SLOTS,
  HeapView,
  layHeader,
  MAX_IMAGE,
  MAX_SLOTS,
  PAGE_SIZE,
  roundUp,
  SL_GEN,
  SL_SIZE,
  SL_STATE,
  SLOT_FREE,
  SLOT_LIVE,
} from "./image.ts";
import { lock, unlock } from "./lock.ts";
import {
  arenaName,
  layRootArena,
  segCarve,
  VM_MAGIC,
  VM_MAGIC_VALUE,
  VM_NEXT,
  Vmem,
} from "./vmem.ts";

/** Options of {@linkcode Heap.create}. */
export interface HeapOptions {
  /** Initial size in bytes (default 4 MiB). Rounded up to pages. */
  size?: number;
  /** Largest size the buffer may grow to (default 256 MiB, at most 2 GiB - 4 KiB). */
  maxSize?: number;
  /** Worker slots, the creator's included (default 16, at most 64). */
  slots?: number;
  /** How long a lock wait may last before it throws `HeapLockedError` (ms, default 10000). */
  lockTimeout?: number;
}

/**
 * One heap image in a SharedArrayBuffer, as seen from one worker.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, maxSize: 64 << 20 });
 * const span = heap.vmem.alloc(8192);
 * heap.u8[span] = 42;
 * const other = Heap.attach(heap.buffer); // as a worker would, with the buffer it was sent
 * console.log(other.u8[span]); // 42
 * other.detach();
 * ```
 */
export class Heap extends HeapView {
  /** The root arena: the whole heap after the metadata area; grows the buffer when it runs out. */
  readonly vmem: Vmem;

  private constructor(sab: SharedArrayBuffer, slot: number) {
    super(sab, slot);
    this.vmem = new Vmem(this, this.u32[HDR_ROOT_ARENA >> 2]);
  }

  /**
   * Creates a heap in a new growable SharedArrayBuffer. The calling worker takes slot 0.
   *
   * @param options initial and maximum size, worker slots, lock timeout
   * @returns the heap
   * @throws {UmemError} `invalid-argument` for sizes out of range
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(heap.buffer.byteLength); // 1048576
   * ```
   */
  static create(options: HeapOptions = {}): Heap {
    const maxSize = roundUp(
      checkSize("Heap.create", "maxSize", options.maxSize ?? 256 << 20, 1 << 16, MAX_IMAGE),
      PAGE_SIZE,
    );
    const slots = checkSize("Heap.create", "slots", options.slots ?? 16, 1, MAX_SLOTS);
    const lockTimeout = checkSize(
      "Heap.create",
      "lockTimeout",
      options.lockTimeout ?? 10000,
      1,
      1 << 30,
    );
    const wanted = checkSize("Heap.create", "size", options.size ?? 4 << 20, 1, maxSize);
    // The metadata area (header, page map, first segment records) plus some room to allocate.
    const metaBytes = 2 * PAGE_SIZE + roundUp((maxSize / PAGE_SIZE) * 4, PAGE_SIZE);
    const size = roundUp(Math.max(wanted, metaBytes + 16 * PAGE_SIZE), PAGE_SIZE);
    if (size > maxSize) {
      throw new UmemError(
        "invalid-argument",
        `Heap.create: maxSize ${maxSize} leaves no room after ${metaBytes} bytes of metadata`,
      );
    }
    const sab = new SharedArrayBuffer(size, { maxByteLength: maxSize });
    const meta = layHeader(sab, { size, maxSize, slots, lockTimeout, flags: 0 });
    const u32 = new Uint32Array(sab, 0, PAGE_SIZE >> 2);
    const slotTable = u32[HDR_SLOTS >> 2];
    u32[(slotTable + SL_STATE) >> 2] = SLOT_LIVE;
    u32[(slotTable + SL_GEN) >> 2] = 1;
    const heap = new Heap(sab, 0);
    segCarve(heap, meta - PAGE_SIZE, PAGE_SIZE);
    layRootArena(heap, meta, size);
    return heap;
  }

  /**
   * Opens an existing image, as a worker does with the buffer it was sent, and takes a free
   * worker slot. Checks the header first and refuses anything that is not a sound image.
   *
   * @param sab the image
   * @returns a handle acting as a new worker slot
   * @throws {CorruptImageError} for a bad magic, version, size or root offset
   * @throws {UmemError} `invalid-argument` for something that is not a SharedArrayBuffer;
   *   `out-of-memory` when every worker slot is taken
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const w = Heap.attach(heap.buffer);
   * console.log(w.slot); // 1
   * w.detach();
   * ```
   */
  static attach(sab: SharedArrayBuffer): Heap {
    checkHeader(sab);
    const probe = new HeapView(sab, 0);
    const n = probe.u32[HDR_NSLOTS >> 2], table = probe.u32[HDR_SLOTS >> 2];
    lock(probe, HDR_SLOT_LOCK);
    let slot = -1;
    try {
      for (let i = 0; i < n; i++) {
        const at = table + i * SL_SIZE;
        if (probe.u32[(at + SL_STATE) >> 2] === SLOT_FREE) {
          probe.u32[(at + SL_STATE) >> 2] = SLOT_LIVE;
          probe.u32[(at + SL_GEN) >> 2]++;
          slot = i;
          break;
        }
      }
    } finally {
      unlock(probe, HDR_SLOT_LOCK);
    }
    if (slot < 0) {
      throw new UmemError("out-of-memory", `Heap.attach: all ${n} worker slots are taken`);
    }
    return new Heap(sab, slot);
  }

  /** The SharedArrayBuffer: send it to a worker, which calls `Heap.attach` on it. */
  get buffer(): SharedArrayBuffer {
    return this.sab;
  }

  /**
   * Leaves the heap: gives this worker's slot back. The handle must not be used after.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Heap.attach(heap.buffer).detach();
   * ```
   */
  detach(): void {
    this.reclaimSlot(this.slot);
  }

  /**
   * Gives back the slot of a worker that was terminated without detaching. The creator calls it
   * from the worker's exit (`worker.onerror` or after `worker.terminate()`).
   *
   * @param slot the dead worker's slot
   * @throws {UmemError} `invalid-argument` for a slot out of range or not live
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * const w = Heap.attach(heap.buffer);
   * heap.reclaimSlot(w.slot);
   * ```
   */
  reclaimSlot(slot: number): void {
    this.sync();
    const n = this.u32[HDR_NSLOTS >> 2], table = this.u32[HDR_SLOTS >> 2];
    checkSize("Heap.reclaimSlot", "slot", slot, 0, n - 1);
    const at = table + slot * SL_SIZE;
    lock(this, HDR_SLOT_LOCK);
    try {
      if (this.u32[(at + SL_STATE) >> 2] !== SLOT_LIVE) {
        throw new UmemError("invalid-argument", `Heap.reclaimSlot: slot ${slot} is not live`);
      }
      this.u32[(at + SL_STATE) >> 2] = SLOT_FREE;
    } finally {
      unlock(this, HDR_SLOT_LOCK);
    }
  }

  /**
   * Every arena in the heap, the root arena included.
   *
   * @returns a handle per arena
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Vmem.create(heap, "ids", { base: 0, size: 100, quantum: 1 });
   * console.log(heap.arenas().map((a) => a.name).sort().join(",")); // heap,ids
   * ```
   */
  arenas(): Vmem[] {
    this.sync();
    const out: Vmem[] = [];
    for (let a = this.u32[HDR_ARENA_LIST >> 2]; a !== 0; a = this.u32[(a + VM_NEXT) >> 2]) {
      out.push(new Vmem(this, a));
    }
    return out;
  }

  /**
   * Finds an arena by name, as another worker does for an arena the creator made.
   *
   * @param name the arena's name
   * @returns its handle
   * @throws {UmemError} `invalid-argument` when there is no arena of that name
   *
   * @example
   * ```ts
   * import { Heap, Vmem } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * Vmem.create(heap, "ids", { base: 0, size: 100, quantum: 1 });
   * const w = Heap.attach(heap.buffer);
   * console.log(w.arena("ids").stats().total); // 100
   * w.detach();
   * ```
   */
  arena(name: string): Vmem {
    this.sync();
    for (let a = this.u32[HDR_ARENA_LIST >> 2]; a !== 0; a = this.u32[(a + VM_NEXT) >> 2]) {
      if (this.u32[(a + VM_MAGIC) >> 2] === VM_MAGIC_VALUE && arenaName(this, a) === name) {
        return new Vmem(this, a);
      }
    }
    throw new UmemError("invalid-argument", `Heap.arena: no arena named '${name}'`);
  }
}
