/**
 * A service that starts warm: record a run's allocations once, then pre-warm every later
 * start from the trace, and use the same trace to compare allocators.
 *
 * The "service" handles requests: each takes a session from an object cache (its constructor
 * clears it), a header buffer and a body buffer that grows (libc realloc) as the body arrives,
 * and frees them when the response is sent; sessions of long-poll requests stay open. The
 * example records 5,000 requests with call sites, saves the trace as a `.umt` file, prints
 * its summary (Vmprofile's format) and phases, replays it against every allocator, and then
 * starts a fresh heap pre-warmed from the trace: its first 2,000 requests touch no slab (the
 * time this saves is measured by bench/profile_bench.ts).
 *
 *     deno run --allow-read --allow-write --allow-env examples/profile_warm_start.ts
 *     bun examples/profile_warm_start.ts
 *
 * @module
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Heap } from "../mod.ts";
import {
  allocatorNames,
  formatReplayTable,
  formatSummary,
  loadTrace,
  phases,
  prewarm,
  record,
  replay,
  summary,
} from "../profile/mod.ts";

const quiet = { debug: "", logging: "", options: "" };

/** A heap as the service makes it at start-up: its session cache and constructor. */
function startHeap(): Heap {
  const heap = Heap.create({ size: 16 << 20, maxSize: 256 << 20, ...quiet });
  heap.createCache("session", 192, {
    ctor: (h, p) => {
      h.u8.fill(0, p, p + 192);
    },
  });
  return heap;
}

/** Handles `n` requests; long polls keep their session until the end. */
function serve(heap: Heap, n: number): void {
  const sessions = heap.cache("session");
  const polls: number[] = [];
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let i = 0; i < n; i++) {
    const s = sessions.alloc();
    const header = heap.alloc(256);
    let body = heap.libc.malloc(64), size = 64;
    const chunks = 1 + Math.floor(rand() * 6);
    for (let c = 0; c < chunks; c++) body = heap.libc.realloc(body, size += 400);
    heap.libc.free(body);
    heap.free(header, 256);
    if (rand() < 0.3) polls.push(s);
    else sessions.free(s);
  }
  for (const s of polls) sessions.free(s);
}

// 1. Record a run.
const first = startHeap();
const rec = record(first, { sites: true });
serve(first, 5000);
const path = join(tmpdir(), "service.umt");
const bytes = rec.save(path);
const trace = loadTrace(path);
console.log(`recorded ${trace.count} events, saved ${bytes} bytes to ${path}\n`);

// 2. What the run did.
const s = summary(trace);
console.log(formatSummary(s).split("\n").filter((l) => !l.startsWith("SIZE")).join("\n"));
for (const p of phases(trace)) {
  console.log(`phase ${p.start}..${p.end}: ${p.character}`);
}

// 3. The same run on every allocator.
console.log(`\nreplay of ${trace.count} events:`);
console.log(formatReplayTable(allocatorNames().map((a) => replay(trace, a))));

// 4. Start warm: the next start-up builds the sessions and buffers ahead of time.
console.log();
for (const warm of [false, true]) {
  const heap = startHeap();
  const report = warm ? prewarm(heap, trace) : undefined;
  const slabWork = () => heap.caches().reduce((n, c) => n + c.stats().constructed, 0);
  const before = slabWork();
  serve(heap, 2000); // the first 2,000 requests
  console.log(
    `${warm ? "prewarmed" : "cold"} start: ${
      warm ? `${report!.buffers} buffers built ahead in ${report!.caches.length} caches; ` : ""
    }the first 2,000 requests took ${slabWork() - before} buffers from slabs`,
  );
}
