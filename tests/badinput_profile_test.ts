/**
 * Bad input to every public entry point of `profile`, one table per entry point: `record` and
 * its options, a `Recorder` after `stop`, `saveTrace`/`loadTrace` paths, `encodeTrace` and
 * `decodeTrace` of damaged bytes, `replay` with unknown allocators, bad adapters and bad
 * options, `makeAllocator`/`registerAllocator`, `summary`/`phases`/`prewarm` with things that
 * are not traces and bad options, `parseVmtrace`/`parseVmtraceLine`/`readVmtrace`, the
 * generators' options and `mergeTraces`. The rows use the issue's numbers (0, -1, NaN, 1.5,
 * 2**32, Infinity, a string) where an entry point takes a number.
 *
 * Each row says what must happen: the `UmemError` kind, "ok" where the API defines the input
 * as valid, or `fs:CODE` where the file system's own error is the documented answer (a missing
 * file). Every row runs on a fresh heap with a recorded trace; after it `heap.verify()` is
 * empty and, when the row was refused, the heap's in-use bytes and the trace are unchanged.
 *
 * Run: `npx deno test --allow-read --allow-write --allow-env tests/badinput_profile_test.ts`
 * or `npx bun test tests/badinput_profile_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { badInputTable, NUMBERS, type TableRow } from "./badinput_table.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mk } from "./helpers.ts";
import { type Heap, UmemError } from "../mod.ts";
import {
  dbTrace,
  decodeTrace,
  encodeTrace,
  formatReplayTable,
  formatStudy,
  formatSummary,
  fragmentTrace,
  gawkTrace,
  loadTrace,
  makeAllocator,
  mergeTraces,
  openTrace,
  parserTrace,
  parseVmtrace,
  parseVmtraceLine,
  phases,
  prewarm,
  readVmtrace,
  record,
  type Recorder,
  registerAllocator,
  replay,
  saveTrace,
  study,
  summary,
  Trace,
  TraceBuilder,
} from "../profile/mod.ts";
import {
  NO_REF,
  OP_ALLOC,
  OP_FREE,
  TR_ADDR,
  TR_OLDSIZE,
  TR_OP,
  TR_REF,
  TR_SIZE,
  TR_WORDS,
} from "../profile/layout.ts";

/** What a row runs against. */
interface Fixture {
  heap: Heap;
  /** A stopped recorder and its trace: 40 allocations, 20 frees, a cache and libc. */
  rec: Recorder;
  trace: Trace;
  /** The trace's bytes. */
  bytes: Uint8Array;
  /** The figures a refused call must leave. */
  before: string;
}

function fixture(): Fixture {
  const heap = mk({ size: 1 << 20 });
  const c = heap.createCache("node", 48);
  const rec = record(heap);
  const ps = Array.from({ length: 30 }, (_, i) => heap.alloc(16 + i * 8));
  const qs = Array.from({ length: 5 }, () => c.alloc());
  const m = heap.libc.realloc(heap.libc.malloc(10), 500);
  ps.slice(0, 20).forEach((p, i) => heap.free(p, 16 + i * 8));
  c.free(qs[0]);
  heap.libc.free(m);
  const trace = rec.stop();
  const f = { heap, rec, trace, bytes: encodeTrace(trace), before: "" };
  f.before = figures(f);
  return f;
}

/** The heap's in-use bytes and the trace's records, as a string to compare. */
function figures(f: Fixture): string {
  return JSON.stringify([f.heap.vmem.stats().inUse, f.trace.count, [...f.trace.words]]);
}

type Row = TableRow<Fixture>;

const table = badInputTable<Fixture>({
  fixture,
  figures,
  before: (f) => f.before,
  what: "the heap or the trace",
  check: (f) => assert.deepEqual(f.heap.verify(), []),
});

/** Rows that pass each of the seven numbers; `ok` lists the labels the API accepts. */
function numbers(
  what: string,
  call: (f: Fixture, n: never) => unknown,
  ok: string[] = [],
  kind = "invalid-argument",
): Row[] {
  return NUMBERS.map(([l, n]): Row => [
    `${what} ${l}`,
    ok.includes(l) ? "ok" : kind,
    (f) => call(f, n as never),
  ]);
}

/** Things that are not traces. */
const NOT_TRACES: [string, unknown][] = [
  ["null", null],
  ["undefined", undefined],
  ["a string", "trace"],
  ["an object with a count", { count: 3, words: new Uint32Array(24) }],
  ["the trace's bytes", new Uint8Array(64)],
];

/** Rows passing each non-trace to `call`. */
function notTraces(call: (f: Fixture, t: Trace) => unknown): Row[] {
  return NOT_TRACES.map(([l, t]): Row => [
    `trace: ${l}`,
    "invalid-argument",
    (f) => call(f, t as Trace),
  ]);
}

/** Rows passing options that are not an object to `call`. */
function notOptions(call: (f: Fixture, o: never) => unknown): Row[] {
  return [
    ["options null", "invalid-argument", (f) => call(f, null as never)],
    ["options a string", "invalid-argument", (f) => call(f, "fast" as never)],
    ["options a number", "invalid-argument", (f) => call(f, 7 as never)],
  ];
}

// deno-lint-ignore no-explicit-any
const any = (x: unknown) => x as any;

table("record(heap, options)", [
  ["heap null", "invalid-argument", () => record(any(null))],
  ["heap a SharedArrayBuffer", "invalid-argument", (f) => record(any(f.heap.buffer))],
  ["heap an object", "invalid-argument", () => record(any({}))],
  ...notOptions((f, o) => record(f.heap, o)),
  ...numbers("capacity", (f, n) => record(f.heap, { capacity: n }).stop(), ["0"]),
  ["capacity 2**30 (past 2**24 records)", "invalid-argument", (f) => {
    record(f.heap, { capacity: 2 ** 30 });
  }],
  ["capacity 1", "ok", (f) => {
    const r = record(f.heap, { capacity: 1 });
    for (let i = 0; i < 100; i++) f.heap.free(f.heap.alloc(8), 8);
    assert.equal(r.stop().count, 200);
  }],
  ["sites 'yes'", "invalid-argument", (f) => record(f.heap, { sites: any("yes") })],
  ["sites 1", "invalid-argument", (f) => record(f.heap, { sites: any(1) })],
  ["sites true", "ok", (f) => {
    const r = record(f.heap, { sites: true });
    f.heap.free(f.heap.alloc(8), 8);
    assert.match(r.stop().at(0).site, /badinput_profile_test/);
  }],
  ["two recorders on one heap", "ok", (f) => {
    const a = record(f.heap), b = record(f.heap);
    f.heap.free(f.heap.alloc(8), 8);
    assert.equal(a.stop().count, 2);
    f.heap.alloc(8);
    assert.equal(b.stop().count, 3);
  }],
]);

const dir = mkdtempSync(join(tmpdir(), "umem-badinput-profile-"));
let serial = 0;
/** A new path in the temporary directory. */
function path(ext = ".umt"): string {
  return join(dir, `f${serial++}${ext}`);
}
/** Writes `b` to a new file; returns its path. */
function file(b: Uint8Array | string, ext = ".umt"): string {
  const p = path(ext);
  writeFileSync(p, b);
  return p;
}

table("Recorder after stop()", [
  ["stop again: the same trace", "ok", (f) => assert.equal(f.rec.stop(), f.trace)],
  ["count", "ok", (f) => assert.equal(f.rec.count, f.trace.count)],
  ["stopped", "ok", (f) => assert.equal(f.rec.stopped, true)],
  ["nothing more is recorded", "ok", (f) => {
    f.heap.free(f.heap.alloc(8), 8);
    assert.equal(f.rec.count, f.trace.count);
  }],
  ["save", "ok", (f) => assert.equal(f.rec.save(path()), f.bytes.length)],
  ["save to a directory", "fs:EISDIR", (f) => f.rec.save(dir)],
  ["save to path 42 (a descriptor number)", "invalid-argument", (f) => f.rec.save(any(42))],
  ["save to an empty path", "invalid-argument", (f) => f.rec.save("")],
]);

table("saveTrace(trace, path)", [
  ...notTraces((_, t) => saveTrace(t, path())),
  ["path 42 (a descriptor number)", "invalid-argument", (f) => saveTrace(f.trace, any(42))],
  ["path undefined", "invalid-argument", (f) => saveTrace(f.trace, any(undefined))],
  ["path empty", "invalid-argument", (f) => saveTrace(f.trace, "")],
  ["a directory", "fs:EISDIR", (f) => saveTrace(f.trace, dir)],
  ["in a missing directory", "fs:ENOENT", (f) => saveTrace(f.trace, join(dir, "no", "t.umt"))],
  ["a file", "ok", (f) => assert.equal(saveTrace(f.trace, path()), f.bytes.length)],
]);

/** Damaged copies of the fixture trace's bytes. */
function damaged(read: (f: Fixture, b: Uint8Array) => unknown): Row[] {
  const edit = (f: Fixture, e: (b: Uint8Array, dv: DataView) => void) => {
    const b = f.bytes.slice();
    e(b, new DataView(b.buffer));
    return b;
  };
  return [
    ["empty", "corrupt-trace", (f) => read(f, new Uint8Array(0))],
    ["10 bytes", "corrupt-trace", (f) => read(f, new Uint8Array(10))],
    ["the header alone", "corrupt-trace", (f) => read(f, f.bytes.subarray(0, 64))],
    ["truncated by one byte", "corrupt-trace", (f) => {
      read(f, f.bytes.subarray(0, f.bytes.length - 1));
    }],
    ["a byte too many", "corrupt-trace", (f) => {
      const b = new Uint8Array(f.bytes.length + 1);
      b.set(f.bytes);
      read(f, b);
    }],
    ["a bad magic", "corrupt-trace", (f) => read(f, edit(f, (b) => b[0] ^= 0xff))],
    ["another version", "corrupt-trace", (f) => read(f, edit(f, (b) => b[4] += 1))],
    ["a count of 2**32 - 1", "corrupt-trace", (f) => {
      read(f, edit(f, (_, dv) => dv.setUint32(8, 0xffffffff, true)));
    }],
    ["a record byte altered", "corrupt-trace", (f) => {
      read(f, edit(f, (b) => b[b.length - f.trace.count * 8 - 20] ^= 0x40));
    }],
    ["a time altered", "corrupt-trace", (f) => read(f, edit(f, (b) => b[b.length - 1] ^= 1))],
    ["the header's checksum altered", "corrupt-trace", (f) => {
      read(f, edit(f, (b) => b[b.length >> 1] ^= 0x80));
    }],
    ["zeros of a trace's length", "corrupt-trace", (f) => read(f, new Uint8Array(f.bytes.length))],
    [
      "text",
      "corrupt-trace",
      (f) => read(f, new TextEncoder().encode("0:1000:24:r:Vmbest:a,1:\n")),
    ],
    ["a sound trace", "ok", (f) => {
      const t = read(f, f.bytes) as Trace;
      assert.deepEqual([...t.words], [...f.trace.words]);
    }],
  ];
}

table("decodeTrace(bytes)", [
  ...damaged((_, b) => decodeTrace(b)),
  ["a string", "invalid-argument", () => decodeTrace(any("UMT1"))],
  ["null", "invalid-argument", () => decodeTrace(any(null))],
  ["an ArrayBuffer", "invalid-argument", (f) => decodeTrace(any(f.bytes.slice().buffer))],
  ["an array of numbers", "invalid-argument", (f) => decodeTrace(any([...f.bytes]))],
  ["a sound trace at an odd offset of a larger buffer", "ok", (f) => {
    const big = new Uint8Array(f.bytes.length + 3);
    big.set(f.bytes, 3);
    assert.equal(decodeTrace(big.subarray(3)).count, f.trace.count);
  }],
]);

table("encodeTrace(trace)", [
  ...notTraces((_, t) => encodeTrace(t)),
  ["an empty trace", "ok", () => assert.equal(decodeTrace(encodeTrace(mergeTraces([]))).count, 0)],
]);

table("loadTrace(path)", [
  ...damaged((_, b) => loadTrace(file(b))),
  ["a missing file", "fs:ENOENT", () => loadTrace(join(dir, "missing.umt"))],
  ["a directory", "fs:EISDIR", () => loadTrace(dir)],
  ["path 42 (a descriptor number)", "invalid-argument", () => loadTrace(any(42))],
  ["path undefined", "invalid-argument", () => loadTrace(any(undefined))],
  ["path empty", "invalid-argument", () => loadTrace("")],
]);

table("replay(trace, allocator, options)", [
  ...notTraces((_, t) => replay(t, "libc")),
  ["an unknown allocator", "invalid-argument", (f) => replay(f.trace, "tcmalloc")],
  ["allocator ''", "invalid-argument", (f) => replay(f.trace, "")],
  ["allocator 'toString' (an Object method)", "invalid-argument", (f) => {
    replay(f.trace, "toString");
  }],
  ["allocator 42", "invalid-argument", (f) => replay(f.trace, any(42))],
  ["allocator null", "invalid-argument", (f) => replay(f.trace, any(null))],
  ["an adapter without methods", "invalid-argument", (f) => replay(f.trace, any({ name: "x" }))],
  ["a maker that returns 42", "invalid-argument", (f) => replay(f.trace, any(() => 42))],
  ["an adapter that runs out of memory: failed is set", "ok", (f) => {
    let n = 0;
    const r = replay(f.trace, {
      name: "tiny",
      alloc: () => {
        if (++n > 3) throw new UmemError("out-of-memory", "tiny: full");
        return n * 64;
      },
      free: () => {},
      resize: (p) => p,
      extent: () => n * 64,
    });
    assert.match(r.failed ?? "", /out of memory at record 3/);
  }],
  ["an adapter that throws a TypeError: it reaches the caller", "ok", (f) => {
    const bad = {
      name: "bad",
      alloc: () => {
        throw new TypeError("the adapter's own");
      },
      free: () => {},
      resize: (p: number) => p,
      extent: () => 0,
    };
    assert.throws(() => replay(f.trace, bad), TypeError);
  }],
  ...notOptions((f, o) => replay(f.trace, "libc", o)),
  ...numbers("sampleEvery", (f, n) => replay(f.trace, "libc", { sampleEvery: n })),
  ...numbers("rounds", (f, n) => replay(f.trace, "libc", { rounds: n })),
  ["rounds 1001", "invalid-argument", (f) => replay(f.trace, "libc", { rounds: 1001 })],
  ["time 'no'", "invalid-argument", (f) => replay(f.trace, "libc", { time: any("no") })],
  ["space 0", "invalid-argument", (f) => replay(f.trace, "libc", { space: any(0) })],
  ["curve 'yes'", "invalid-argument", (f) => replay(f.trace, "libc", { curve: any("yes") })],
  ...numbers("heapSize", (f, n) => replay(f.trace, "libc", { heapSize: n })),
  ["maxHeapSize below heapSize", "invalid-argument", (f) => {
    replay(f.trace, "libc", { heapSize: 1 << 22, maxHeapSize: 1 << 21 });
  }],
  ["heapSize above maxHeapSize (16 MiB by default)", "invalid-argument", (f) => {
    replay(f.trace, "libc", { maxHeapSize: 1 << 20 });
  }],
  ["a heap too small for the trace: failed is set", "ok", () => {
    const b = new TraceBuilder();
    for (let i = 0; i < 40; i++) b.alloc(0x10000 + i * 65536, 65536);
    const r = replay(b.finish(), "libc", { heapSize: 1 << 20, maxHeapSize: 1 << 20 });
    assert.match(r.failed ?? "", /out of memory at record/);
  }],
  ["time and space off (one run, measured anyway)", "ok", (f) => {
    const r = replay(f.trace, "cache", { time: false, space: false });
    assert.equal(r.peakBusy > 0, true);
  }],
  ["an empty trace", "ok", () => {
    const r = replay(mergeTraces([]), "heap");
    assert.equal(r.operations, 0);
  }],
]);

table("makeAllocator(name, options), registerAllocator(name, make)", [
  ["makeAllocator of an unknown name", "invalid-argument", () => makeAllocator("tcmalloc")],
  ["makeAllocator(42)", "invalid-argument", () => makeAllocator(any(42))],
  ["makeAllocator('constructor')", "invalid-argument", () => makeAllocator("constructor")],
  ...notOptions((_, o) => makeAllocator("libc", o)),
  ...numbers("makeAllocator heapSize", (_, n) => makeAllocator("libc", { heapSize: n })),
  ...numbers("makeAllocator maxHeapSize", (_, n) => makeAllocator("libc", { maxHeapSize: n })),
  ["makeAllocator('bump') with 1 MiB", "ok", () => {
    const a = makeAllocator("bump", { heapSize: 1 << 20 });
    a.free(a.alloc(10), 10);
  }],
  ["registerAllocator of a built-in name", "invalid-argument", () => {
    registerAllocator("libc", (h) => makeAllocatorOver(h));
  }],
  ["registerAllocator('')", "invalid-argument", () => registerAllocator("", makeAllocatorOver)],
  [
    "registerAllocator(42)",
    "invalid-argument",
    () => registerAllocator(any(42), makeAllocatorOver),
  ],
  ["registerAllocator('hasOwnProperty')", "ok", () => {
    registerAllocator(`hasOwnProperty${serial++}`, makeAllocatorOver);
  }],
  ["registerAllocator(name, 42)", "invalid-argument", () => {
    registerAllocator(`n${serial++}`, any(42));
  }],
  ["registerAllocator(name, null)", "invalid-argument", () => {
    registerAllocator(`n${serial++}`, any(null));
  }],
  ["a registered maker that returns junk: replay refuses it", "invalid-argument", (f) => {
    const name = `junk${serial++}`;
    registerAllocator(name, any(() => ({ name })));
    replay(f.trace, name);
  }],
  ["a registered name twice", "invalid-argument", () => {
    const name = `twice${serial++}`;
    registerAllocator(name, makeAllocatorOver);
    registerAllocator(name, makeAllocatorOver);
  }],
]);

/** A sound adapter over `heap`'s sized interface. */
function makeAllocatorOver(heap: Heap) {
  return {
    name: "sized",
    alloc: (n: number) => heap.alloc(n),
    free: (p: number, n: number) => heap.free(p, n),
    resize: (p: number, o: number, n: number) => {
      const q = heap.alloc(n);
      heap.free(p, o);
      return q;
    },
    extent: () => heap.vmem.stats().inUse,
  };
}

table("summary(trace, options)", [
  ...notTraces((_, t) => summary(t)),
  ...notOptions((f, o) => summary(f.trace, o)),
  ...numbers("temporaryWindow", (f, n) => summary(f.trace, { temporaryWindow: n }), ["0"]),
  ["a trace", "ok", (f) => assert.equal(summary(f.trace).allocs, 36)],
  ["an empty trace", "ok", () => assert.equal(summary(mergeTraces([])).records, 0)],
]);

table("phases(trace, options)", [
  ...notTraces((_, t) => phases(t)),
  ...notOptions((f, o) => phases(f.trace, o)),
  ...numbers("window", (f, n) => phases(f.trace, { window: n })),
  ...numbers("threshold", (f, n) => phases(f.trace, { threshold: n }), ["1.5"]),
  ["threshold 2.5", "invalid-argument", (f) => phases(f.trace, { threshold: 2.5 })],
  ["threshold 0.3", "ok", (f) => assert.ok(phases(f.trace, { threshold: 0.3 }).length >= 1)],
  ["a window longer than the trace", "ok", (f) => {
    assert.equal(phases(f.trace, { window: 1000 }).length, 1);
  }],
  ["an empty trace", "ok", () => assert.deepEqual(phases(mergeTraces([])), [])],
]);

table("prewarm(heap, from)", [
  ["heap null", "invalid-argument", (f) => prewarm(any(null), f.trace)],
  ["heap an object", "invalid-argument", (f) => prewarm(any({}), f.trace)],
  ...NOT_TRACES.map(([l, t]): Row => [
    `from: ${l}`,
    "invalid-argument",
    (f) => prewarm(f.heap, t as Trace),
  ]),
  ["a summary with pools that are not an array", "invalid-argument", (f) => {
    prewarm(f.heap, any({ pools: "node" }));
  }],
  ["a summary with a pool of -5 buffers", "invalid-argument", (f) => {
    prewarm(f.heap, any({ pools: [{ cache: "node", size: 48, allocs: 5, peakLive: -5 }] }));
  }],
  ["a summary with a pool of NaN buffers", "invalid-argument", (f) => {
    prewarm(f.heap, any({ pools: [{ cache: "node", size: 48, allocs: 5, peakLive: NaN }] }));
  }],
  ["a summary with a pool of 2**31 buffers", "invalid-argument", (f) => {
    prewarm(f.heap, any({ pools: [{ cache: "node", size: 48, allocs: 1, peakLive: 2 ** 31 }] }));
  }],
  ["a summary with a pool that is null", "invalid-argument", (f) => {
    prewarm(f.heap, any({ pools: [null] }));
  }],
  ["a trace", "ok", (f) => assert.equal(prewarm(f.heap, f.trace).missing.length, 0)],
  ["a trace of caches this heap lacks", "ok", (f) => {
    const other = mk({ size: 1 << 20 });
    assert.deepEqual(prewarm(other, f.trace).missing, ["node"]);
  }],
  ["a summary", "ok", (f) => assert.ok(prewarm(f.heap, summary(f.trace)).buffers > 0)],
  ["more buffers than the heap holds", "out-of-memory", () => {
    const small = mk({ size: 1 << 20, maxSize: 1 << 20 });
    small.createCache("big", 65536);
    const b = new TraceBuilder();
    b.cache("big", "big", 65536);
    for (let i = 0; i < 40; i++) b.alloc(0x10000 + i * 65536, 65536, 1, 1);
    const before = small.vmem.stats().inUse;
    try {
      prewarm(small, b.finish());
    } finally {
      small.reap();
      assert.equal(small.vmem.stats().inUse, before, "the buffers taken were given back");
      assert.deepEqual(small.verify(), []);
    }
  }],
]);

table("parseVmtraceLine(line)", [
  ["42", "invalid-argument", () => parseVmtraceLine(any(42))],
  ["null", "invalid-argument", () => parseVmtraceLine(any(null))],
  ["empty", "ok", () => assert.equal(parseVmtraceLine(""), null)],
  ["four fields", "ok", () => assert.equal(parseVmtraceLine("0:10:8:r"), null)],
  ["old and new 0", "ok", () => assert.equal(parseVmtraceLine("0:0:8:r:Vmbest:a,1:"), null)],
  ["a negative size", "ok", () => assert.equal(parseVmtraceLine("0:10:-8:r:Vmbest:a,1:"), null)],
  ["a size past 32 bits", "ok", () => {
    assert.equal(parseVmtraceLine("0:10:4294967296:r:Vmbest:a,1:"), null);
  }],
  ["a fractional size", "ok", () => assert.equal(parseVmtraceLine("0:10:1.5:r:Vmbest:a,1:"), null)],
  ["a sound line", "ok", () => {
    assert.deepEqual(parseVmtraceLine("0:0x10:24:r:Vmbest:a.c,1:"), {
      old: 0,
      new: 16,
      size: 24,
      region: "r",
      method: "Vmbest",
      site: "a.c,1",
    });
  }],
]);

table("parseVmtrace(text, options)", [
  ["42", "invalid-argument", () => parseVmtrace(any(42))],
  ["null", "invalid-argument", () => parseVmtrace(any(null))],
  ["bytes", "invalid-argument", () => parseVmtrace(any(new Uint8Array(4)))],
  ...notOptions((_, o) => parseVmtrace("0:10:8:r:Vmbest:a,1:", o)),
  ["strict 'yes'", "invalid-argument", () => parseVmtrace("", { strict: any("yes") })],
  ["strict, a bad line", "corrupt-trace", () => {
    parseVmtrace("0:10:8:r:Vmbest:a,1:\nnonsense\n", { strict: true });
  }],
  ["not strict, a bad line: skipped", "ok", () => {
    assert.equal(parseVmtrace("0:10:8:r:Vmbest:a,1:\nnonsense\n").skipped, 1);
  }],
  ["a free of an address never allocated: kept, unlinked", "ok", () => {
    const { trace } = parseVmtrace("10:0:8:r:Vmbest:a,1:");
    assert.equal(summary(trace).unmatchedFrees, 1);
  }],
  ["CRLF line ends", "ok", () => {
    assert.equal(parseVmtrace("0:10:8:r:Vmbest:a,1:\r\n10:0:8:r:Vmbest:a,2:\r\n").trace.count, 2);
  }],
  ["empty", "ok", () => assert.equal(parseVmtrace("").trace.count, 0)],
]);

table("readVmtrace(path, options)", [
  ["a missing file", "fs:ENOENT", () => readVmtrace(join(dir, "missing.trace"))],
  ["a directory", "fs:EISDIR", () => readVmtrace(dir)],
  ["path 42 (a descriptor number)", "invalid-argument", () => readVmtrace(any(42))],
  ["path empty", "invalid-argument", () => readVmtrace("")],
  ["a binary file (a .umt)", "ok", (f) => {
    const r = readVmtrace(file(f.bytes));
    assert.equal(r.trace.count, 0);
  }],
  ["a binary file, strict", "corrupt-trace", (f) => readVmtrace(file(f.bytes), { strict: true })],
  ["a sound file", "ok", () => {
    assert.equal(readVmtrace(file("0:10:8:r:Vmbest:a,1:\n", ".trace")).trace.count, 1);
  }],
]);

table("the generators' options", [
  ...(
    [["gawkTrace", gawkTrace], ["dbTrace", dbTrace], ["parserTrace", parserTrace]] as const
  ).flatMap(([name, gen]): Row[] => [
    ...notOptions((_, o) => gen(o)).map(([l, e, r]): Row => [`${name} ${l}`, e, r]),
    ...numbers(`${name} seed`, (_, n) => gen({ seed: n, scale: 0.001 }), ["0"]),
    ...numbers(`${name} scale`, (_, n) => gen({ scale: n }), ["1.5"]),
    [`${name} scale 101`, "invalid-argument", () => gen({ scale: 101 })],
    [`${name} scale 0.001`, "ok", () => assert.ok(gen({ scale: 0.001 }).count > 0)],
  ]),
  ...notOptions((_, o) => fragmentTrace(o)).map(([l, e, r]): Row => [`fragmentTrace ${l}`, e, r]),
  ...numbers("fragmentTrace iterations", (_, n) => fragmentTrace({ iterations: n }), ["0"]),
  ["fragmentTrace iterations 2**24 + 1", "invalid-argument", () => {
    fragmentTrace({ iterations: 2 ** 24 + 1 });
  }],
]);

table("mergeTraces(traces)", [
  ["null", "invalid-argument", () => mergeTraces(any(null))],
  ["a trace (not an array)", "invalid-argument", (f) => mergeTraces(any(f.trace))],
  ["a string", "invalid-argument", () => mergeTraces(any("ab"))],
  ...NOT_TRACES.map(([l, t]): Row => [
    `an array holding ${l}`,
    "invalid-argument",
    (f) => mergeTraces([f.trace, t as Trace]),
  ]),
  ["an empty array", "ok", () => assert.equal(mergeTraces([]).count, 0)],
  ["the same trace twice", "ok", (f) => {
    const m = mergeTraces([f.trace, f.trace]);
    assert.equal(m.count, 2 * f.trace.count);
    assert.deepEqual(f.heap.verify(), []);
  }],
]);

table("study(options) and formatReplayTable(results, baseline)", [
  ["study traces ['fragmnet'] (a typo)", "invalid-argument", () => {
    study({ traces: ["fragmnet"], allocators: ["heap"] });
  }],
  ["study traces ['toString']", "invalid-argument", () => {
    study({ traces: ["toString"], allocators: ["heap"] });
  }],
  ["study traces [] (none)", "ok", () => {
    assert.deepEqual(study({ traces: [], allocators: ["heap"] }), []);
  }],
  ["formatReplayTable baseline 'libcc' (none of them)", "invalid-argument", () => {
    const t = fragmentTrace({ iterations: 10 });
    formatReplayTable([replay(t, "heap"), replay(t, "libc")], "libcc");
  }],
  ["formatReplayTable baseline 'libc'", "ok", () => {
    const t = fragmentTrace({ iterations: 10 });
    const table = formatReplayTable([replay(t, "heap"), replay(t, "libc")], "libc");
    assert.match(table, /\nlibc +\S+ +\S+ +1\.00 /);
  }],
  // (each was a bare TypeError; study's onResult only after every replay had run)
  ["study(null)", "invalid-argument", () => study(any(null))],
  ["study onResult 5", "invalid-argument", () => study(any({ traces: [], onResult: 5 }))],
  ["formatStudy(null)", "invalid-argument", () => formatStudy(any(null))],
  ["formatReplayTable(null)", "invalid-argument", () => formatReplayTable(any(null))],
  ["formatSummary(null)", "invalid-argument", () => formatSummary(any(null))],
]);

table("the trace's own figures: a builder's start and sites, a file's start and references", [
  ["new TraceBuilder(NaN)", "invalid-argument", () => new TraceBuilder(NaN)],
  ["setSite(99) with one site", "invalid-argument", () => {
    const b = new TraceBuilder();
    b.alloc(0x100, 8);
    b.setSite(99);
  }],
  ["a file whose start time is NaN (mergeTraces then threw a TypeError)", "corrupt-trace", () => {
    decodeTrace(encodeTrace(new Trace(new Uint32Array(0), new Float64Array(0), [""], [], NaN)));
  }],
  ["a file whose two frees both name the alloc", "corrupt-trace", () => {
    // Records of TR_WORDS words: an alloc of 64 bytes, then two frees whose block is record 0.
    const w = new Uint32Array(3 * TR_WORDS);
    const rec = (i: number, op: number, size: number, ref: number) => {
      w[i * TR_WORDS + TR_OP] = op;
      w[i * TR_WORDS + TR_SIZE] = size;
      w[i * TR_WORDS + TR_ADDR] = 0x100;
      w[i * TR_WORDS + TR_OLDSIZE] = op === OP_FREE ? 64 : 0;
      w[i * TR_WORDS + TR_REF] = ref;
    };
    rec(0, OP_ALLOC, 64, NO_REF);
    rec(1, OP_FREE, 0, 0);
    rec(2, OP_FREE, 0, 0); // before the fix: loaded, busy at the end -64
    decodeTrace(encodeTrace(new Trace(w, new Float64Array([0, 1, 2]), [""], [], 0)));
  }],
  ["openTrace(0) (standard input's descriptor)", "invalid-argument", () => openTrace(any(-1))],
]);

table("replay of sizes past 2^31 on the cache and pool adapters", [
  ...(["cache", "pool"] as const).map((a): Row => [
    `${a}: a resize to 2^32 - 1 fails the replay, the heap sound`,
    "ok",
    () => {
      const b = new TraceBuilder();
      b.alloc(0x100, 64);
      b.resize(0x100, 64, 0x200, 4294967295);
      const r = replay(b.finish(), a);
      assert.match(r.failed ?? "", /invalid-argument/); // before: an 8-byte block, 64 copied in
    },
  ]),
]);

describe("cleanup", () => {
  it("removes the temporary directory", () => rmSync(dir, { recursive: true, force: true }));
});
