/**
 * Inspection and snapshots: findleaks finds exactly what was leaked, whatis names what an
 * address is, a snapshot reads back the same and is refused when damaged.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CorruptImageError, Heap, inspect, Snapshot } from "../mod.ts";
import { verifyHeap } from "../core/verify.ts";
import { encodeSnapshot, UMS_HEADER } from "../core/snapshot.ts";
import { hex } from "../core/errors.ts";

function leakyHeap() {
  const heap = Heap.create({ size: 4 << 20, debug: "audit", logging: "transaction" });
  const table = heap.zalloc(64);
  heap.addRoot(table, 64);
  // A chain from the root: table -> a -> (interior pointer) b -> c; and a pinned buffer.
  const a = heap.alloc(100), b = heap.alloc(300), c = heap.alloc(24);
  heap.i32[table >> 2] = a;
  heap.i32[(a + 16) >> 2] = b + 40;
  heap.i32[(b + 8) >> 2] = c;
  const pinned = heap.alloc(5000);
  heap.pin(pinned);
  const node = heap.createCache("node", 40);
  const kept = node.alloc();
  heap.i32[(table + 4) >> 2] = kept;
  function leakThree(): number[] {
    const out: number[] = [];
    for (let i = 0; i < 2; i++) out.push(heap.alloc(200)); // one call site: one class
    out.push(node.alloc());
    return out;
  }
  const leaked = leakThree();
  return { heap, reachable: [table, a, b, c, pinned, kept], leaked };
}

describe("findleaks", () => {
  it("reports exactly the buffers leaked on purpose, with the leaking function's stack", () => {
    const { heap, leaked } = leakyHeap();
    const r = inspect(heap).findleaks();
    assert.equal(r.total_buffers, 3);
    assert.equal(r.total_bytes, 200 + 200 + 40);
    const samples = r.classes.map((c) => c.sample).sort((x, y) => x - y);
    assert.ok(samples.every((s) => leaked.includes(s)));
    assert.deepEqual(r.classes.map((c) => c.cache).sort(), ["node", "umem_alloc_224"]);
    for (const c of r.classes) {
      assert.match(c.stack, /leakThree|inspect_test\.ts/, "the stack names the leaking function");
    }
    const text = inspect(heap).formatFindleaks();
    assert.match(text, /^findleaks: 3 allocated buffers \(440 bytes\) in 2 distinct leak classes/);
    assert.match(text, /COUNT +BYTES +SIZE +CACHE +STACK \(top frame\)/);
    assert.match(text, /== class 1: 2 allocs, 400 bytes, cache=umem_alloc_224 \(sample buffer 0x/);
  });

  it("freeing the leaks, or making them reachable, empties the report", () => {
    const { heap, leaked } = leakyHeap();
    heap.free(leaked[0], 200);
    heap.free(leaked[1], 200);
    heap.pin(leaked[2]);
    assert.equal(inspect(heap).findleaks().total_buffers, 0);
    heap.unpin(leaked[2]);
    assert.equal(inspect(heap).findleaks().total_buffers, 1);
  });

  it("without audit, classes are by cache and the stack says so", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "" });
    heap.alloc(16);
    heap.alloc(16);
    const r = inspect(heap).findleaks();
    assert.deepEqual(r.classes.map((c) => [c.cache, c.count]), [["umem_alloc_16", 2]]);
    assert.match(inspect(heap).formatFindleaks(), /<no stack; enable UMEM_DEBUG=audit>/);
  });
});

describe("whatis, walk, bufctl, log, status", () => {
  it("whatis: inside an allocated buffer, a free buffer, metadata, out of range", () => {
    const { heap, reachable } = leakyHeap();
    const a = reachable[1];
    const w = inspect(heap).whatis(a + 10);
    assert.equal(w.kind, "buffer");
    assert.equal(w.buffer, a);
    assert.equal(w.offset, 10);
    assert.equal(w.state, "allocated");
    assert.match(
      w.text,
      /^0x[0-9a-f]+: umem_alloc_112 \(112 bytes, ALLOCATED\)\ncache=umem_alloc_112 slab=0x/,
    );
    assert.match(w.text, /alloc of buffer/);
    const f = heap.alloc(100);
    heap.free(f, 100);
    assert.match(inspect(heap).whatis(f).text, /\((112 bytes), (FREE|CACHED)\)/);
    assert.equal(inspect(heap).whatis(16).kind, "metadata");
    assert.match(inspect(heap).whatis(1 << 30).text, /not in any umem cache/);
    // An address outside the heap is printed as asked, not as its low 32 bits.
    for (const [a, text] of [[-16, "-0x10"], [2 ** 40, "0x10000000000"], [NaN, "NaN"]] as const) {
      assert.equal(
        inspect(heap).whatis(a).text,
        `${text}: not in any umem cache (outside the heap)`,
      );
    }
    assert.equal(inspect(heap).bufctl(f).map((t) => t.op).join(","), "free,alloc");
  });

  it("whatis: an address in a buffer's tag is the buffer's, and said to be in its tag", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "guards" });
    const p = heap.alloc(64);
    const first = (a: number) => inspect(heap).whatis(a).text.split("\n")[0];
    assert.equal(first(p + 63), `${hex(p + 63)}: umem_alloc_64 (64 bytes, ALLOCATED)`);
    const w = inspect(heap).whatis(p + 64);
    assert.equal(w.buffer, p);
    assert.equal(w.bufctl, p + 64);
    assert.equal(first(p + 64), `${hex(p + 64)}: umem_alloc_64 (64 bytes, ALLOCATED), in its tag`);
  });

  it("walk lists every buffer of a cache with its state", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const c = heap.createCache("w", 256);
    const p = c.alloc(), q = c.alloc();
    c.free(q);
    const states = new Map(inspect(heap).walk("w").map((b) => [b.address, b.state]));
    assert.equal(states.get(p), "allocated");
    assert.equal(states.get(q), "cached");
    assert.equal([...states.values()].filter((s) => s === "free").length, c.stats().total - 2);
  });

  it("the log, newest first, filters by cache and buffer; status names the settings", () => {
    const { heap, reachable } = leakyHeap();
    const ins = inspect(heap);
    const all = ins.log();
    assert.ok(all.length >= 9);
    assert.ok(all[0].time >= all[all.length - 1].time);
    assert.ok(ins.log({ cache: "node" }).every((e) => e.cache === "node"));
    assert.equal(ins.log({ buffer: reachable[1] }).length, 1);
    assert.match(
      ins.formatLog(),
      /^transaction log: \d+ records \(showing \d+\)\nt=.* thr=0 (alloc|free) 0x/,
    );
    const s = ins.status();
    assert.deepEqual(s.debug, ["audit=16", "guards"]);
    assert.deepEqual(s.logging, ["transaction"]);
    // A ring of another size says so, in words that make the same rings again.
    for (const [logging, words] of [["transaction=8k,fail=1000", "transaction=8k,fail=984"]]) {
      const sized = (l: string) =>
        inspect(Heap.create({ size: 1 << 20, debug: "audit", logging: l })).status().logging;
      assert.equal(sized(logging).join(","), words);
      assert.equal(sized(words).join(","), words);
    }
    assert.deepEqual(s.options, ["concurrency=16"]);
    assert.deepEqual(s.workers, [0]);
    const tuned = Heap.create({
      size: 1 << 20,
      options: "concurrency=4,nomagazines,max_contention=7,reap_interval=30,allocator=next",
    });
    assert.deepEqual(inspect(tuned).status().options, [
      "concurrency=4",
      "nomagazines",
      "max_contention=7",
      "reap_interval=30",
      "allocator=next",
    ]);
    assert.match(
      inspect(tuned).formatStatus(),
      /\nUMEM_OPTIONS=concurrency=4,nomagazines,max_contention=7,/,
    );
    assert.match(ins.formatStatus(), /CACHE +BUFSIZE +INUSE +TOTAL +MEMORY +ALLOCS +FAIL/);
    const zero = Heap.create({ size: 1 << 20, options: "max_contention=0", debug: "maxverify=64" });
    assert.deepEqual(inspect(zero).status().options, ["concurrency=16", "max_contention=0"]);
    assert.deepEqual(inspect(zero).status().debug, ["maxverify=64"]);
  });

  it("findleaks finds sized leaks with UMEM_OPTIONS=nomagazines, and skips only the magazines", () => {
    for (const options of ["", "nomagazines"]) {
      const heap = Heap.create({ size: 1 << 20, options });
      for (let i = 0; i < 3; i++) heap.alloc(40); // lost
      heap.createCache("conn", 30).alloc(); // lost
      heap.libc.malloc(100); // lost
      for (let i = 0; i < 50; i++) heap.free(heap.alloc(64), 64); // magazines, if any, fill
      const r = inspect(heap).findleaks();
      assert.equal(r.total_buffers, 5, `options '${options}'`);
      assert.deepEqual(r.classes.map((k) => k.cache).sort(), [
        "conn",
        "umem_alloc_112",
        "umem_alloc_48",
      ]);
    }
  });
});

describe("snapshots", () => {
  it("a snapshot taken while two workers allocate is consistent", async () => {
    const heap = Heap.create({ size: 16 << 20, maxSize: 256 << 20 });
    heap.createCache("node", 48);
    const url = new URL("./fixtures/stress_worker.ts", import.meta.url).href;
    const ws = [0, 1].map(() => new Worker(url, { type: "module" }));
    const timer = setTimeout(() => ws.forEach((w) => w.terminate()), 60_000);
    try {
      const ran = ws.map((w) =>
        new Promise<void>((resolve) => {
          w.addEventListener("message", (e: MessageEvent) => {
            if (e.data.type === "ran") resolve();
          });
        })
      );
      ws.forEach((w, i) =>
        w.postMessage({
          type: "start",
          buffer: heap.buffer,
          seed: 7 + i,
          ops: 300_000,
          caches: ["node"],
        })
      );
      const problems: string[] = [];
      for (let k = 0; k < 5; k++) {
        await new Promise((r) => setTimeout(r, 20));
        const snap = Snapshot.decode(Snapshot.encode(heap));
        // A worker's slot record and magazines take no lock (its deferred free is two words
        // written one after the other, say); everything else must be whole.
        problems.push(...verifyHeap(snap).filter((p) => !/magazine|: slot \d+: /.test(p)));
      }
      await Promise.all(ran);
      assert.deepEqual(problems, []);
    } finally {
      clearTimeout(timer);
      ws.forEach((w) => w.terminate());
    }
  });

  it("a snapshot reads back the same as the live heap", () => {
    const { heap } = leakyHeap();
    const snap = Snapshot.decode(Snapshot.encode(heap));
    assert.deepEqual(inspect(snap).findleaks(), inspect(heap).findleaks());
    assert.deepEqual(inspect(snap).caches(), inspect(heap).caches());
    assert.deepEqual(verifyHeap(snap), []);
    assert.ok(snap.runtime.length > 0);
  });

  it("a truncated or altered file is refused with CorruptImageError naming the problem", () => {
    const { heap } = leakyHeap();
    const good = Snapshot.encode(heap);
    const cases: [string, Uint8Array, RegExp][] = [
      ["truncated header", good.slice(0, 20), /truncated/],
      ["truncated image", good.slice(0, good.length - 100), /truncated/],
      ["header byte", flip(good, 9), /header checksum/],
      ["image header byte", flip(good, UMS_HEADER + 1), /image checksum/],
      ["image metadata byte", flip(good, UMS_HEADER + 5000), /image checksum/],
      ["magic", flip(good, 0), /bad magic/],
    ];
    for (const [what, bytes, why] of cases) {
      assert.throws(
        () => Snapshot.decode(bytes),
        (e) => e instanceof CorruptImageError && why.test(e.message),
        what,
      );
    }
  });

  it("an image with a bad header inside a sound file is refused too", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const image = heap.snapshot();
    image[4] = 99; // the image's format version
    assert.throws(() => Snapshot.decode(encodeSnapshot(image)), /format version 99/);
  });
});

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  out[at] ^= 0xff;
  return out;
}
