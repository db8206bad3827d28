/**
 * Snapshots: a heap's image as bytes, the `.ums` file that carries it, and reading it back for
 * analysis with no live program (the core file of this world).
 *
 * Theory. All allocator state is in the image, so a snapshot is the image's bytes. To make it
 * consistent while workers allocate, the copy is taken with every lock held, in the lock order
 * (the list locks, every depot lock, every slab lock, the arenas' locks from the newest arena
 * to the heap's, the segment pool's): no structure is mid-change, except the per-worker
 * magazine words, which take no lock, and may be one round off.
 *
 * The `.ums` file: a 64-byte header (`UMEMSNAP`, format version, header and image sizes, the
 * image's CRC-32, the time, the runtime, the header's own CRC-32), then the image. Reading
 * checks all of it and then the image's own header, and refuses anything else with a
 * `CorruptImageError` that says what was wrong.
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import { CorruptImageError, UmemError } from "./errors.ts";
import { internPending } from "./stack.ts";
import {
  checkHeader,
  HDR_ARENA_LIST,
  HDR_ARENA_LOCK,
  HDR_CACHE_LIST,
  HDR_CACHE_LOCK,
  HDR_ROOT_LOCK,
  HDR_SEG_LOCK,
  HDR_SIZE,
  HDR_SLOT_LOCK,
  HeapView,
  listRecords,
} from "./image.ts";
import { lock, unlock } from "./lock.ts";
import { CA_DEPOT_LOCK, CA_LOCK, CA_MAGIC, CA_MAGIC_VALUE, CA_NEXT } from "./slab.ts";
import { VM_LOCK, VM_NEXT } from "./vmem.ts";

/** Magic of a `.ums` file. */
export const UMS_MAGIC = "UMEMSNAP";
/** Format version of `.ums` files. */
export const UMS_VERSION = 1;
/** Bytes of the `.ums` header. */
export const UMS_HEADER = 64;
/** Header: format version. */
export const UMS_VERSION_OFF = 8;
/** Header: header bytes. */
export const UMS_HEADER_OFF = 12;
/** Header: image bytes. */
export const UMS_SIZE_OFF = 16;
/** Header: CRC-32 of the image. */
export const UMS_CRC_OFF = 20;
/** Header: time taken, ms since the epoch (float64). */
export const UMS_TIME_OFF = 24;
/** Header: the runtime that took it (24 bytes of ASCII). */
export const UMS_RUNTIME_OFF = 32;
/** Header: CRC-32 of the header's first 56 bytes. */
export const UMS_HCRC_OFF = 56;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (IEEE) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** The locks a snapshot takes, in the lock order. */
function snapshotLocks(h: HeapView): number[] {
  const w = (a: number) => h.i32[a >> 2];
  const locks = [HDR_SLOT_LOCK, HDR_ARENA_LOCK, HDR_CACHE_LOCK, HDR_ROOT_LOCK];
  // (A damaged heap's snapshot is what a post-mortem needs: its lists end, no lock taken twice.)
  const caches = listRecords(h, HDR_CACHE_LIST, CA_NEXT).filter((cp) =>
    cp + CA_DEPOT_LOCK + 4 <= h.mapped && w(cp + CA_MAGIC) === CA_MAGIC_VALUE
  );
  for (const cp of caches) locks.push(cp + CA_DEPOT_LOCK);
  for (const cp of caches) locks.push(cp + CA_LOCK);
  // The arena list is newest first: sub-arenas before their sources, the heap's arena last.
  for (const a of listRecords(h, HDR_ARENA_LIST, VM_NEXT)) {
    if (a + VM_LOCK + 4 <= h.mapped) locks.push(a + VM_LOCK);
  }
  locks.push(HDR_SEG_LOCK);
  return locks;
}

/**
 * Copies the image with every lock held (see the module doc).
 * @returns the image's bytes
 */
export function snapshotImage(h: HeapView): Uint8Array {
  h.sync();
  internPending(h); // this worker's stacks are in the snapshot (other workers' are as they are)
  const locks = snapshotLocks(h);
  const held: number[] = [];
  try {
    for (const l of locks) {
      lock(h, l);
      held.push(l);
    }
    h.sync();
    return h.u8.slice(0, Atomics.load(h.i32, HDR_SIZE >> 2));
  } finally {
    for (let i = held.length - 1; i >= 0; i--) unlock(h, held[i]);
  }
}

/** The name and version of the running runtime. */
function runtimeName(): string {
  const g = globalThis as unknown as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
    process?: { version: string };
  };
  if (g.Bun !== undefined) return `bun ${g.Bun.version}`;
  if (g.Deno !== undefined) return `deno ${g.Deno.version.deno}`;
  return `node ${g.process?.version ?? "?"}`;
}

/** Wraps an image in a `.ums` file. */
export function encodeSnapshot(image: Uint8Array, time = Date.now()): Uint8Array {
  const out = new Uint8Array(UMS_HEADER + image.length);
  const dv = new DataView(out.buffer);
  out.set(new TextEncoder().encode(UMS_MAGIC), 0);
  dv.setUint32(UMS_VERSION_OFF, UMS_VERSION, true);
  dv.setUint32(UMS_HEADER_OFF, UMS_HEADER, true);
  dv.setUint32(UMS_SIZE_OFF, image.length, true);
  dv.setUint32(UMS_CRC_OFF, crc32(image), true);
  dv.setFloat64(UMS_TIME_OFF, time, true);
  out.set(new TextEncoder().encode(runtimeName().slice(0, 23)), UMS_RUNTIME_OFF);
  dv.setUint32(UMS_HCRC_OFF, crc32(out.subarray(0, UMS_HCRC_OFF)), true);
  out.set(image, UMS_HEADER);
  return out;
}

/**
 * A heap image read back from a `.ums` file or from bytes: a read-only view for `inspect()`.
 *
 * @example
 * ```ts
 * import { Heap, inspect, Snapshot } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * heap.alloc(64);
 * const snap = Snapshot.decode(Snapshot.encode(heap));
 * console.log(inspect(snap).findleaks().total_buffers); // 1
 * ```
 */
export class Snapshot extends HeapView {
  /** When the snapshot was taken, ms since the epoch. */
  readonly time: number;
  /** The runtime that took it. */
  readonly runtime: string;

  private constructor(sab: SharedArrayBuffer, time: number, runtime: string) {
    super(sab, 0);
    this.time = time;
    this.runtime = runtime;
  }

  /**
   * Takes a heap's snapshot as the bytes of a `.ums` file.
   *
   * @param heap the live heap
   * @returns the file's bytes
   * @throws {UmemError} `invalid-argument` when `heap` is not a heap or a snapshot
   *
   * @example
   * ```ts
   * import { Heap, Snapshot } from "@umem/umem";
   * const heap = Heap.create({ size: 1 << 20 });
   * console.log(Snapshot.encode(heap).length > 1 << 20); // true
   * ```
   */
  static encode(heap: HeapView): Uint8Array {
    if (!(heap instanceof HeapView)) {
      throw new UmemError("invalid-argument", "Snapshot.encode: not a heap or a snapshot");
    }
    // A snapshot is read as it is (its lock words were taken with the copy: not to be waited on).
    if (heap instanceof Snapshot) return encodeSnapshot(heap.u8.slice(), heap.time);
    return encodeSnapshot(snapshotImage(heap));
  }

  /**
   * Reads a `.ums` file's bytes, checking everything before it trusts anything.
   *
   * @param bytes the file's bytes
   * @returns the snapshot
   * @throws {CorruptImageError} naming what was wrong: truncated, bad magic, version,
   *   checksum, or an image whose own header is unsound
   * @throws {UmemError} `invalid-argument` when `bytes` is not a Uint8Array
   *
   * @example
   * ```ts
   * import { CorruptImageError, Snapshot } from "@umem/umem";
   * try {
   *   Snapshot.decode(new Uint8Array(10));
   * } catch (e) {
   *   console.log(e instanceof CorruptImageError); // true
   * }
   * ```
   */
  static decode(bytes: Uint8Array): Snapshot {
    if (!((bytes as unknown) instanceof Uint8Array)) {
      const b = bytes as unknown;
      throw new UmemError(
        "invalid-argument",
        `Snapshot.decode: expected a Uint8Array, got ${
          b === null ? "null" : typeof b === "object" ? b.constructor?.name : typeof b
        }`,
      );
    }
    if (bytes.length < UMS_HEADER) {
      throw new CorruptImageError(
        `snapshot: truncated: ${bytes.length} bytes, the header alone needs ${UMS_HEADER}`,
      );
    }
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const magic = new TextDecoder().decode(bytes.subarray(0, 8));
    if (magic !== UMS_MAGIC) {
      throw new CorruptImageError(
        `snapshot: bad magic '${magic.replace(/[^\x20-\x7e]/g, "?")}' (expected ${UMS_MAGIC})`,
      );
    }
    const hcrc = crc32(bytes.subarray(0, UMS_HCRC_OFF));
    if (dv.getUint32(UMS_HCRC_OFF, true) !== hcrc) {
      throw new CorruptImageError("snapshot: header checksum mismatch: the header was altered");
    }
    const version = dv.getUint32(UMS_VERSION_OFF, true);
    if (version !== UMS_VERSION) {
      throw new CorruptImageError(
        `snapshot: format version ${version} (this code reads ${UMS_VERSION})`,
      );
    }
    const size = dv.getUint32(UMS_SIZE_OFF, true), header = dv.getUint32(UMS_HEADER_OFF, true);
    if (header !== UMS_HEADER || bytes.length < header + size) {
      throw new CorruptImageError(
        `snapshot: truncated: ${bytes.length - UMS_HEADER} bytes of image, the header says ${size}`,
      );
    }
    const image = bytes.subarray(header, header + size);
    if (crc32(image) !== dv.getUint32(UMS_CRC_OFF, true)) {
      throw new CorruptImageError("snapshot: image checksum mismatch: the image was altered");
    }
    const sab = new SharedArrayBuffer(size);
    new Uint8Array(sab).set(image);
    checkHeader(sab);
    const runtime = new TextDecoder().decode(bytes.subarray(UMS_RUNTIME_OFF, UMS_RUNTIME_OFF + 24))
      .replace(/\0+$/, "");
    return new Snapshot(sab, dv.getFloat64(UMS_TIME_OFF, true), runtime);
  }

  /** A snapshot is read-only: nothing to re-map. */
  override sync(): void {}
}

/** Refuses a path that is not a non-empty string (a number would be taken as a descriptor). */
function checkPath(fn: string, path: unknown): void {
  if (typeof path !== "string" || path.length === 0) {
    throw new UmemError("invalid-argument", `${fn}: path must be a non-empty string`);
  }
}

/**
 * Writes a heap's snapshot to a `.ums` file.
 *
 * @param heap the live heap
 * @param path the file to write
 * @returns the bytes written
 * @throws {UmemError} `invalid-argument` for a path that is not a non-empty string or a
 *   `heap` that is not a heap or a snapshot
 * @throws {Error} the file system's error (with its `code`, e.g. `EISDIR`, `ENOENT`) when the
 *   file cannot be written
 *
 * @example
 * ```ts
 * import { Heap, readSnapshot, writeSnapshot } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * const path = Deno.makeTempFileSync({ suffix: ".ums" });
 * writeSnapshot(heap, path);
 * console.log(readSnapshot(path).runtime.startsWith("deno")); // true
 * Deno.removeSync(path);
 * ```
 */
export function writeSnapshot(heap: HeapView, path: string): number {
  checkPath("writeSnapshot", path);
  const bytes = Snapshot.encode(heap);
  writeFileSync(path, bytes);
  return bytes.length;
}

/**
 * Reads a `.ums` file.
 *
 * @param path the file
 * @returns the snapshot, ready for `inspect()`
 * @throws {CorruptImageError} for a truncated or altered file (see {@linkcode Snapshot.decode})
 * @throws {UmemError} `invalid-argument` for a path that is not a non-empty string
 * @throws {Error} the file system's error (with its `code`, e.g. `ENOENT`, `EISDIR`) when the
 *   file cannot be read
 *
 * @example
 * ```ts
 * import { Heap, inspect, readSnapshot, writeSnapshot } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20 });
 * heap.alloc(24);
 * const path = Deno.makeTempFileSync({ suffix: ".ums" });
 * writeSnapshot(heap, path);
 * console.log(inspect(readSnapshot(path)).findleaks().total_buffers); // 1
 * Deno.removeSync(path);
 * ```
 */
export function readSnapshot(path: string): Snapshot {
  checkPath("readSnapshot", path);
  return Snapshot.decode(new Uint8Array(readFileSync(path)));
}
