/**
 * Failures on purpose and on want of memory: `UMEM_DEBUG=mtbf=n` fails allocations as libumem
 * injects failures, `checknull` reports an allocation that found no memory and aborts, the fail
 * log records both; and the words of `UMEM_DEBUG` that only say how a report or a failure is
 * told (`verbose`, `noabort`, `nosignal`, `maxverify`, `checknull`) and `UMEM_LOGGING=fail`
 * leave a heap with no tags and its fast paths.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Heap, inspect, OutOfMemoryError, UmemError } from "../mod.ts";
import { FL_CACHE, FL_SIZE, ringRecords } from "../core/log.ts";
import { HDR_FAILLOG } from "../core/image.ts";
import { parseDebug } from "../core/options.ts";
import { sizeCache } from "../core/size_class.ts";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Deno, which takes `run` before a script. */
const IS_DENO = "Deno" in globalThis;

/** Allocates and frees `n` times 64 bytes; returns how many allocations failed. */
function failures(heap: Heap, n: number): number {
  let failed = 0;
  for (let i = 0; i < n; i++) {
    try {
      heap.free(heap.alloc(64), 64);
    } catch (e) {
      if (!(e instanceof OutOfMemoryError)) throw e;
      failed++;
    }
  }
  return failed;
}

/** The `umem_alloc_64` row of the heap's cache table. */
const row64 = (heap: Heap) => inspect(heap).caches().find((c) => c.name === "umem_alloc_64")!;

describe("UMEM_DEBUG=mtbf", () => {
  it("mtbf=1 fails every allocation from a cache, logged and counted, and changes nothing", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,noabort", logging: "fail" });
    const before = row64(heap).inUse;
    assert.throws(() => heap.alloc(64), OutOfMemoryError);
    assert.throws(() => heap.alloc(64), (err: unknown) => {
      assert.ok(err instanceof OutOfMemoryError);
      assert.equal(err.kind, "out-of-memory");
      assert.match(err.message, /^umem_cache_alloc\(umem_alloc_64\): 64-byte allocation failed/);
      assert.match(err.message, /UMEM_DEBUG=mtbf=1/);
      return true;
    });
    const cache = heap.createCache("conn", 40);
    assert.throws(() => cache.alloc(), /umem_cache_alloc\(conn\): 40-byte allocation failed/);
    assert.throws(() => heap.libc.malloc(100), OutOfMemoryError);
    // Logged, as libumem logs an injected failure in its fail log, with the cache and size.
    const log = ringRecords(heap, heap.i32[HDR_FAILLOG >> 2]);
    assert.ok(log.length >= 4, `${log.length} records`);
    assert.equal(heap.i32[(log[log.length - 1] + FL_SIZE) >> 2], 64);
    assert.equal(
      heap.i32[(log[log.length - 1] + FL_CACHE) >> 2],
      sizeCache(heap, 64),
    );
    assert.equal(row64(heap).failures, 2);
    assert.equal(row64(heap).inUse, before, "nothing was taken");
    assert.deepEqual(heap.verify(), []);
    assert.deepEqual(inspect(heap).status().debug, ["guards", "mtbf=1", "noabort"]);
  });

  it("mtbf=4 fails about one allocation in four, at random", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "mtbf=4,noabort" });
    // 4,000 tries: a binomial of mean 1,000 and deviation 27; the bounds are 11 deviations out.
    const failed = failures(heap, 4000);
    assert.ok(failed > 700 && failed < 1300, `${failed} of 4000 failed`);
    assert.equal(row64(heap).failures, failed);
    assert.deepEqual(heap.verify(), []);
  });

  it("fails firewalled allocations too, and never a nofail heap's", () => {
    const fw = Heap.create({ size: 1 << 20, debug: "mtbf=1,firewall=4096,noabort" });
    assert.throws(() => fw.alloc(8192), (e: unknown) => {
      assert.ok(e instanceof OutOfMemoryError);
      assert.match(e.message, /^umem_alloc: 8192-byte allocation failed on purpose/);
      return true;
    });
    assert.deepEqual(fw.verify(), []);
    const nofail = Heap.create({ size: 1 << 20, debug: "mtbf=1,noabort", nofail: true });
    assert.equal(failures(nofail, 100), 0);
  });

  it("a value is required and must be a count", () => {
    for (
      const [debug, what] of [["mtbf", /mtbf: required value missing/], [
        "mtbf=often",
        /mtbf=often: not a size/,
      ], ["mtbf=4g", /mtbf=4g: overflowed/]] as const
    ) {
      assert.throws(() => Heap.create({ size: 1 << 20, debug }), (e: unknown) => {
        assert.ok(e instanceof UmemError);
        assert.equal(e.kind, "invalid-argument");
        assert.match(e.message, what);
        return true;
      });
    }
    assert.equal(parseDebug("mtbf=7").mtbf, 7);
    assert.equal(parseDebug("mtbf=7").guards, true, "injected where libumem does: the debug layer");
  });
});

describe("UMEM_DEBUG=checknull", () => {
  /** Runs tests/fixtures/checknull_probe.ts with `debug` in a subprocess of this runtime. */
  const run = (debug: string) => {
    const probe = fileURLToPath(new URL("./fixtures/checknull_probe.ts", import.meta.url));
    const r = spawnSync(
      process.execPath,
      IS_DENO ? ["run", "--allow-read", probe, debug] : [probe, debug],
      { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 },
    );
    if (r.error !== undefined) throw r.error;
    return { aborted: r.signal === "SIGABRT" || r.status === 134, ...r };
  };
  const noMemory =
    /^umem: out of heap space\numem_cache_alloc\(umem_alloc_65536\): no memory for a 65536-byte buffer/;

  it("an allocation that finds no memory is reported and aborts the process", () => {
    const r = run("checknull");
    assert.ok(r.aborted, `aborted (status ${r.status}, signal ${r.signal})`);
    assert.equal(r.stdout, "", "nothing ran after the failure");
    assert.match(r.stderr, noMemory);
    // An injected failure is one too, as in libumem (its umem_alloc_retry checks checknull).
    const m = run("mtbf=1,checknull");
    assert.ok(m.aborted);
    assert.match(m.stderr, /^umem: out of heap space\n.*allocation failed on purpose/);
  });

  it("with noabort the allocation fails as it would have, printed only with verbose", () => {
    const r = run("checknull,noabort");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "caught out-of-memory after some\nafter: verify 0\n");
    assert.equal(r.stderr, "");
    const v = run("checknull,noabort,verbose");
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, "caught out-of-memory after some\nafter: verify 0\n");
    assert.match(v.stderr, noMemory);
    // Without checknull a failure is only thrown, as before.
    const plain = run("");
    assert.equal(plain.stdout, "caught out-of-memory after some\nafter: verify 0\n");
    assert.equal(plain.stderr, "");
  });

  it("the status lists it, and noabort with it", () => {
    const status = (debug: string) => inspect(Heap.create({ size: 1 << 20, debug })).status().debug;
    assert.deepEqual(status("checknull"), ["checknull"]);
    assert.deepEqual(status("checknull,noabort"), ["checknull", "noabort"]);
    assert.deepEqual(status("guards,checknull"), ["guards", "checknull"]);
  });
});

describe("words that only say how a report or a failure is told", () => {
  it("leave the heap untagged on its fast paths, and every interface works", () => {
    // UMEM_DEBUG=verbose alone, or UMEM_LOGGING=fail alone, once made a debugging handle whose
    // fast path read tags the heap had never laid: the first allocation reported a corrupt one.
    const settings: [string, string][] = [
      ["verbose", ""],
      ["noabort", ""],
      ["nosignal", ""],
      ["verbose,noabort", ""],
      ["maxverify=64", ""],
      ["checknull", ""],
      ["", "fail"],
      ["verbose,checknull", "fail=4k"],
    ];
    for (const [debug, logging] of settings) {
      const what = `debug '${debug}', logging '${logging}'`;
      const heap = Heap.create({ size: 1 << 20, debug, logging });
      assert.equal(heap.constructor.name, "Heap", what);
      const held: [number, number][] = [];
      for (let i = 0; i < 200; i++) {
        for (const size of [64, 50, 2000]) held.push([heap.alloc(size), size]);
      }
      for (const [p, size] of held) heap.free(p, size);
      const cache = heap.createCache("conn", 40);
      cache.free(cache.alloc());
      const m = heap.libc.realloc(heap.libc.malloc(100), 300);
      heap.libc.free(m);
      assert.deepEqual(heap.verify(), [], what);
      // The mistakes every heap refuses are still refused, with a UmemError, not a report.
      const p = heap.alloc(24);
      heap.free(p, 24);
      assert.throws(() => heap.free(p, 24), (e: unknown) => {
        assert.ok(e instanceof UmemError, what);
        assert.equal(e.kind, "duplicate-free", what);
        return true;
      });
    }
  });

  it("UMEM_LOGGING=fail alone logs a cache's failure", () => {
    const heap = Heap.create({ size: 2 << 20, maxSize: 2 << 20, logging: "fail" });
    assert.throws(() => {
      for (;;) heap.alloc(65536);
    }, OutOfMemoryError);
    const log = ringRecords(heap, heap.i32[HDR_FAILLOG >> 2]);
    assert.equal(log.length, 1);
    assert.equal(heap.i32[(log[0] + FL_SIZE) >> 2], 65536);
  });

  it("a flag given a value is an error that names it", () => {
    for (const word of ["guards=1", "verbose=yes", "noabort=0", "checknull=1", "default=2"]) {
      assert.throws(() => Heap.create({ size: 1 << 20, debug: word }), (e: unknown) => {
        assert.ok(e instanceof UmemError);
        assert.equal(e.kind, "invalid-argument");
        assert.match(e.message, new RegExp(`UMEM_DEBUG: ${word}: \\w+ does not take a value`));
        return true;
      });
    }
  });
});

describe("every mix of the switches", () => {
  it("runs a mixed workload soundly: verify() finds nothing, before and after a reap", () => {
    // Words of every kind: those that lay tags, those that sample, those that only say how a
    // report or a failure is told, and the logs. The handle class, the fast path and the
    // layout of each cache follow from the mix; each must serve every interface.
    const words = [
      "guards",
      "contents",
      "audit",
      "audit=4/10",
      "firewall=4096",
      "verbose",
      "maxverify=32",
      "mtbf=50",
      "checknull",
      "lite",
      "nosignal",
    ];
    const logs = ["transaction=8k", "contents=8k", "fail=8k"];
    const quiet = console.error;
    console.error = () => {}; // verbose prints what the workload's failures say
    try {
      fc.assert(
        fc.property(
          fc.subarray(words),
          fc.subarray(logs),
          fc.array(fc.tuple(fc.nat(9), fc.nat(1 << 16)), { maxLength: 150 }),
          (debugWords, logWords, ops) => {
            const heap = Heap.create({
              size: 4 << 20,
              debug: [...debugWords, "noabort"].join(","),
              logging: logWords.join(","),
            });
            const cache = heap.createCache("c", 40, { ctor: () => true });
            const held: [kind: number, ptr: number, size: number][] = [];
            const release = ([kind, p, s]: [number, number, number]) =>
              kind === 0 ? heap.free(p, s) : kind === 1 ? cache.free(p) : heap.libc.free(p);
            for (const [op, arg] of ops) {
              try {
                if (op < 4) held.push([0, heap.alloc(1 + (arg % 300)), 1 + (arg % 300)]);
                else if (op === 4) held.push([0, heap.alloc(4000 + arg % 9000), 4000 + arg % 9000]);
                else if (op === 5) held.push([1, cache.alloc(), 40]);
                else if (op === 6) {
                  held.push([2, heap.libc.realloc(heap.libc.malloc(1 + (arg % 200)), 300), 300]);
                } else if (held.length > 0) release(held.splice(arg % held.length, 1)[0]);
              } catch (e) {
                // Only mtbf fails an allocation here (the heap has room for all of them).
                if (!(e instanceof OutOfMemoryError) || !debugWords.includes("mtbf=50")) throw e;
              }
            }
            assert.deepEqual(heap.verify(), []);
            held.forEach(release);
            heap.reap();
            assert.deepEqual(heap.verify(), []);
          },
        ),
        { numRuns: 60 },
      );
    } finally {
      console.error = quiet;
    }
  });
});
