/**
 * Recording: a heap hook that appends every alloc, free and resize of this worker to a trace.
 *
 * Theory. The core calls a module's hooks at each allocation, free (after it succeeded) and
 * `libc.realloc`, behind the one `intercepting` flag the fast path tests anyway
 * (core/hooks.ts); with no recorder attached the heap pays that test and nothing more. A
 * recorder appends a record per event to a `TraceBuilder` (typed arrays, no object per
 * event): the operation, size, address, cache, worker slot, the time in microseconds on the
 * wall clock (so that the traces of several workers merge by time with `mergeTraces`), and,
 * with `sites: true`, the call site, the first stack frame outside umem's core and this
 * module, interned in the site table. Each worker records its own allocations: a worker calls
 * `record` on its own handle and sends `encodeTrace(rec.stop())` to whoever merges.
 *
 * Invariants. A recorder never allocates from the heap it watches. After `stop()` the hook is
 * detached, and the heap's `intercepting` flag is what it was before (unless another hook or
 * debugging keeps it set). Frees are recorded once they succeeded (`freed`), so a refused free
 * leaves no record.
 *
 * Lock order: none; the recorder touches only this worker's objects.
 *
 * @module
 */
import { Cache, type Heap, UmemError } from "../core/mod.ts";
import { attachHeapHook, CA_ID, checkSize, HOOK_LIBC } from "../core/internal.ts";
import { API_CACHE, API_HEAP, API_LIBC, OP_ALLOC, OP_FREE, OP_RESIZE } from "./layout.ts";
import { type Trace, TraceBuilder } from "./trace.ts";
import { saveTrace } from "./trace_format.ts";
import { checkFlag } from "./arguments.ts";

/** Options of {@linkcode record}. */
export interface RecordOptions {
  /** Record each event's call site (a stack capture per event: slower). Default false. */
  sites?: boolean;
  /** Records to make room for at first (the array doubles past it), at most 2^24. Default 4096. */
  capacity?: number;
}

/** The interface (`API_*`) of a hook's `cache` argument. */
function apiOf(cache: number): number {
  return cache === HOOK_LIBC ? API_LIBC : cache !== 0 ? API_CACHE : API_HEAP;
}

/** umem's own directories, as URLs (Deno's frames) and as paths (Bun's). */
const OWN_DIRS = [new URL("../core/", import.meta.url), new URL("./", import.meta.url)]
  .flatMap((u) => [u.href, decodeURIComponent(u.pathname)]);
const FRAME = /^\s*at (?:(.*?) \()?(.*?):(\d+):\d+\)?$/;

/** The first frame of the current stack in a file outside umem's core and this module. */
function callSite(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 16;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  for (const line of stack.split("\n")) {
    const m = FRAME.exec(line);
    if (m === null) continue;
    const file = m[2];
    // Past umem's own frames and the runtime's (native, node:, ext:), the program's first.
    if (!/[/\\]/.test(file) || OWN_DIRS.some((d) => file.startsWith(d))) continue;
    const name = file.slice(file.lastIndexOf("/") + 1);
    return `${m[1] ? m[1] + " " : ""}${name},${m[3]}`;
  }
  return "";
}

/**
 * A recording in progress on one worker's heap handle; made by {@linkcode record}.
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { record } from "@umem/umem/profile";
 * const heap = Heap.create({ size: 1 << 20 });
 * const rec = record(heap, { sites: true });
 * const p = heap.libc.malloc(10);
 * heap.libc.free(heap.libc.realloc(p, 500));
 * const trace = rec.stop();
 * console.log(trace.count, trace.at(1).op, trace.at(2).ref); // 3 resize 1
 * ```
 */
export class Recorder {
  /** The heap handle watched. */
  readonly heap: Heap;
  /** The records so far. */
  private builder: TraceBuilder;
  /** Detaches the hook. */
  private detach: () => void;
  /** The trace, once stopped. */
  private done: Trace | undefined;

  /**
   * Starts recording; use {@linkcode record}.
   *
   * @param heap the heap handle
   * @param options sites, capacity
   */
  constructor(heap: Heap, options: RecordOptions = {}) {
    this.heap = heap;
    const t0 = performance.now();
    const b = new TraceBuilder(performance.timeOrigin + t0, options.capacity ?? 4096);
    b.worker = heap.slot;
    b.clock = () => (performance.now() - t0) * 1000;
    this.builder = b;
    const sites = options.sites === true;
    // The trace's cache number of each cache record seen, so that an event of a known cache
    // makes no Cache handle and reads no name. Keyed by the record's address and checked
    // against its cache id: a cache made where a destroyed one's record was is another cache
    // (its events were once the destroyed one's).
    const known = new Map<number, { cacheId: number; index: number }>();
    const cacheOf = (addr: number): number => {
      if (addr <= 0) return 0; // the sized interface, or HOOK_LIBC
      const cacheId = heap.i32[(addr + CA_ID) >> 2];
      let k = known.get(addr);
      if (k === undefined || k.cacheId !== cacheId) {
        const c = new Cache(heap, addr);
        k = { cacheId, index: b.cache(`${addr}#${cacheId}`, c.name, c.bufsize) };
        known.set(addr, k);
      }
      return k.index;
    };
    this.detach = attachHeapHook(heap, {
      alloc(ptr, size, cache) {
        b.push(OP_ALLOC, apiOf(cache), size, ptr, 0, 0, cacheOf(cache), 0);
        if (sites) b.setSite(b.site(callSite()));
      },
      freed(ptr, size, cache) {
        b.push(OP_FREE, apiOf(cache), 0, ptr, 0, size, cacheOf(cache), 0);
        if (sites) b.setSite(b.site(callSite()));
      },
      resize(oldPtr, oldSize, newPtr, newSize) {
        b.push(OP_RESIZE, API_LIBC, newSize, newPtr, oldPtr, oldSize, 0, 0);
        if (sites) b.setSite(b.site(callSite()));
      },
    });
  }

  /** The records so far.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { record } from "@umem/umem/profile";
   * const heap = Heap.create({ size: 1 << 20 });
   * const rec = record(heap);
   * heap.alloc(16);
   * console.log(rec.count); // 1
   * ```
   */
  get count(): number {
    return this.done?.count ?? this.builder.count;
  }

  /** Whether `stop()` was called.
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { record } from "@umem/umem/profile";
   * const rec = record(Heap.create({ size: 1 << 20 }));
   * rec.stop();
   * console.log(rec.stopped); // true
   * ```
   */
  get stopped(): boolean {
    return this.done !== undefined;
  }

  /**
   * Stops recording (detaches the hook) and returns the trace; a second call returns the same
   * trace.
   *
   * @returns the trace, linked (each free and resize names the record that made its block)
   *
   * @example
   * ```ts
   * import { Heap } from "@umem/umem";
   * import { record } from "@umem/umem/profile";
   * const heap = Heap.create({ size: 1 << 20 });
   * const rec = record(heap);
   * heap.alloc(8);
   * const t = rec.stop();
   * heap.alloc(8); // not recorded
   * console.log(t.count, rec.stop() === t); // 1 true
   * ```
   */
  stop(): Trace {
    if (this.done === undefined) {
      this.detach();
      this.done = this.builder.finish();
    }
    return this.done;
  }

  /**
   * Stops recording if it was not and writes the trace to a `.umt` file.
   *
   * @param path the file
   * @returns the bytes written
   * @throws {UmemError} `invalid-argument` for a path that is not a non-empty string
   * @throws {Error} what the file system says when the file cannot be written
   *
   * @example
   * ```ts
   * import { tmpdir } from "node:os";
   * import { join } from "node:path";
   * import { Heap } from "@umem/umem";
   * import { loadTrace, record } from "@umem/umem/profile";
   * const heap = Heap.create({ size: 1 << 20 });
   * const rec = record(heap);
   * heap.free(heap.alloc(24), 24);
   * const path = join(tmpdir(), "rec.umt");
   * rec.save(path);
   * console.log(loadTrace(path).count); // 2
   * ```
   */
  save(path: string): number {
    return saveTrace(this.stop(), path);
  }
}

/**
 * Starts recording every alloc, free and resize this worker makes on `heap` (through the sized
 * interface, `heap.libc` and every cache).
 *
 * @param heap the heap handle (another worker records on its own handle)
 * @param options `sites: true` records call sites; `capacity` sizes the first array
 * @returns the recorder: `stop()`, `save(path)`
 * @throws {UmemError} `invalid-argument` for a heap that is not a heap handle, options that
 *   are not an object, a capacity that is not a whole number up to 2^24, `sites` not a boolean
 *
 * @example
 * ```ts
 * import { Heap } from "@umem/umem";
 * import { record, summary } from "@umem/umem/profile";
 * const heap = Heap.create({ size: 1 << 20 });
 * const rec = record(heap);
 * const ps = [1, 2, 3].map((n) => heap.alloc(n * 16));
 * ps.forEach((p, i) => heap.free(p, (i + 1) * 16));
 * console.log(summary(rec.stop()).maxBusy); // 96
 * ```
 */
export function record(heap: Heap, options: RecordOptions = {}): Recorder {
  if (
    typeof heap !== "object" || heap === null || !Array.isArray((heap as { hooks?: unknown }).hooks)
  ) {
    throw new UmemError("invalid-argument", "record: the first argument is not a heap handle");
  }
  if (typeof options !== "object" || options === null) {
    throw new UmemError("invalid-argument", "record: options must be an object");
  }
  if (options.capacity !== undefined) checkSize("record", "capacity", options.capacity, 0, 1 << 24);
  checkFlag("record", "sites", options.sites);
  return new Recorder(heap, options);
}
