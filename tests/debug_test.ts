/**
 * Debugging without recompiling: each mistake made on purpose, reported with libumem's
 * category, the right kind and address, and (with audit) the stack of the function that made
 * the allocation; the same mistakes with debugging off harm nothing.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { corruption } from "./helpers.ts";
import { Cache, Heap, HeapCorruptionError, inspect, OutOfMemoryError, UmemError } from "../mod.ts";
import { BT_BXSTAT } from "../core/buftag.ts";
import { CA_TAGOFF } from "../core/slab.ts";
import { sizeCache } from "../core/size_class.ts";
import { ringRecords, TX_BUF, TX_OP, TXOP_ALLOC, TXOP_FREE } from "../core/log.ts";
import { HDR_CTLOG, HDR_FAILLOG, HDR_TXLOG } from "../core/image.ts";
import { parseDebug, parseLogging, parseOptions } from "../core/options.ts";
import { firewallBytes, sampleInterval } from "../core/debug.ts";
import { hex } from "../core/errors.ts";
import { attachHeapHook } from "../core/hooks.ts";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Deno, which has permissions and takes `run` before a script. */
const IS_DENO = "Deno" in globalThis;

/** A heap with debugging `debug` that reports by throwing (`noabort`), and logging `logging`. */
const debugHeap = (debug = "default", logging = "") =>
  Heap.create({ size: 4 << 20, debug: `${debug},noabort`, logging });

/** The frames on the stack from the caller's own down (at most 50). */
function framesHere(): number {
  const E = Error as unknown as { stackTraceLimit: number }, limit = E.stackTraceLimit;
  E.stackTraceLimit = 51;
  try {
    return (new Error().stack ?? "").split("\n").length - 2;
  } finally {
    E.stackTraceLimit = limit;
  }
}

describe("UMEM_DEBUG", () => {
  it("guards: a one-byte overrun of a 50-byte alloc is a redzone violation at free", () => {
    const heap = debugHeap();
    function allocateTheString() {
      return heap.alloc(50);
    }
    const p = allocateTheString();
    heap.u8[p + 50] = 0;
    const e = corruption(() => heap.free(p, 50));
    assert.equal(e.kind, "redzone-violation");
    assert.equal(e.address, p);
    assert.equal(e.cache, "umem_alloc_64");
    assert.match(e.message, /^umem allocator: redzone violation: write past end of buffer/);
    assert.match(e.message, /buffer=0x[0-9a-f]+ {2}bufctl=0x[0-9a-f]+ {2}cache: umem_alloc_64/);
    // V8 names the function; JavaScriptCore may call it <anonymous> but gives its file and line.
    assert.match(e.message, /allocateTheString|<anonymous> \(.*debug_test\.ts:\d+/);
    assert.doesNotMatch(
      e.message,
      /core\/(debug|heap|stack)\.ts/,
      "umem's own frames are left out",
    );
    assert.equal(e.audit[0].op, "alloc");
    assert.deepEqual(heap.verify().length, 1, "verify sees the overrun too");
    heap.u8[p + 50] = 0xbb;
    heap.free(p, 50);
    assert.deepEqual(heap.verify(), []);
  });

  it("guards alone, on an attached handle too: the fast path lays and checks the 0xbb bytes", () => {
    const heap = debugHeap("guards");
    const other = Heap.attach(heap.buffer);
    try {
      assert.equal(heap.constructor, other.constructor, "both handles of one class");
      const p = heap.alloc(50); // laid by one handle, checked by the other
      assert.deepEqual([...heap.u8.subarray(p + 50, p + 56)], new Array(6).fill(0xbb));
      other.u8[p + 55] = 0; // the last byte before the tag
      const e = corruption(() => other.free(p, 50));
      assert.equal(e.kind, "redzone-violation");
      assert.equal(e.address, p);
      other.u8[p + 55] = 0xbb;
      other.free(p, 50);
      assert.equal(corruption(() => heap.free(p, 50)).kind, "duplicate-free");
      const q = other.alloc(50); // the buffer that other's magazine now holds
      assert.equal(q, p);
      heap.free(q, 50);
      assert.deepEqual(heap.verify(), []);
    } finally {
      other.detach();
    }
  });

  it("guards: an overwritten redzone word is reported", () => {
    const heap = debugHeap("guards");
    const p = heap.alloc(64);
    heap.i32[(p + 64) >> 2] = 0;
    assert.equal(corruption(() => heap.free(p, 64)).kind, "redzone-violation");
  });

  it("a report's bufctl is the tag it prints, with or without audit; verify() counts no report", () => {
    for (const debug of ["guards,noabort", "contents,noabort", "audit,noabort"]) {
      const heap = Heap.create({ size: 1 << 20, debug });
      const p = heap.alloc(50);
      heap.u8[p + 50] = 0;
      const before = inspect(heap).status().errors;
      for (let i = 0; i < 3; i++) assert.equal(heap.verify().length, 1);
      // Before the fix each verify() counted as a report.
      assert.equal(inspect(heap).status().errors, before, debug);
      const e = corruption(() => heap.free(p, 50));
      const tag = p + heap.i32[(sizeCache(heap, 50) + CA_TAGOFF) >> 2];
      assert.equal(e.bufctl, tag, debug); // before the fix 0 without audit
      assert.match(e.message, new RegExp(`bufctl=0x${tag.toString(16)} `));
      assert.equal(inspect(heap).status().errors, before + 1);
    }
  });

  it("contents: a write after free is found when the buffer is handed out again", () => {
    const heap = debugHeap();
    const p = heap.alloc(40);
    heap.free(p, 40);
    heap.u8[p + 12] = 1;
    const e = corruption(() => heap.alloc(40));
    assert.equal(e.kind, "modified-after-free");
    assert.equal(e.address, p);
    assert.match(e.message, /modification occurred at offset 0xc \(0xdeadbeef replaced by 0x/);
    assert.deepEqual(heap.verify(), [], "the buffer was refilled and put back");
    assert.notEqual(heap.alloc(40), 0);
  });

  it("contents: verify() and reap find a write after free even when the buffer is never reused", () => {
    const heap = debugHeap();
    const p = heap.alloc(200);
    heap.free(p, 200);
    heap.u8[p] = 0;
    const problems = heap.verify();
    assert.equal(problems.length, 1);
    assert.match(problems[0], /buffer modified after being freed/);
    assert.equal(corruption(() => heap.reap()).kind, "modified-after-free");
    assert.deepEqual(heap.verify(), [], "the reap still gave the slab back");
  });

  it("contents: new buffers of a cache without a constructor hold 0xbaddcafe", () => {
    const heap = debugHeap();
    const p = heap.alloc(32);
    assert.equal(heap.u32[p >> 2], 0xbaddcafe);
    const c = heap.createCache("with-ctor", 32, {
      ctor: (h, q) => {
        h.u32[q >> 2] = 7;
      },
    });
    assert.equal(heap.u32[c.alloc() >> 2], 7);
  });

  it("duplicate free, invalid free, interior free, wrong size, wrong cache", () => {
    const heap = debugHeap();
    const p = heap.alloc(100);
    const q = heap.alloc(100);
    heap.free(p, 100);
    const dup = corruption(() => heap.free(p, 100));
    assert.equal(dup.kind, "duplicate-free");
    assert.match(dup.message, /duplicate free: buffer freed twice/);
    assert.match(dup.message, /free of buffer/, "with audit, the last free's stack is shown");
    assert.equal(corruption(() => heap.free(64, 100)).kind, "bad-free");
    assert.match(corruption(() => heap.free(64, 100)).message, /invalid free: buffer not in cache/);
    const mid = corruption(() => heap.free(q + 16, 100));
    assert.equal(mid.kind, "bad-free");
    assert.match(mid.message, /bad free: free address \(0x[0-9a-f]+\) != alloc address \(0x/);
    const size = corruption(() => heap.free(q, 90));
    assert.equal(size.kind, "wrong-size");
    assert.match(size.message, /bad free: free size \(90\) != alloc size \(100\)/);
    const a = heap.createCache("a", 48), b = heap.createCache("b", 48);
    const x = a.alloc();
    const wrong = corruption(() => b.free(x));
    assert.equal(wrong.kind, "wrong-cache");
    assert.match(wrong.message, /buffer was allocated from a,\ncaller attempting free to b\./);
    heap.free(q, 100);
    a.free(x);
    assert.deepEqual(heap.verify(), []);
  });

  it("a wrong size is told as one when it crosses the firewall or the largest class", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "guards,firewall=4096,noabort" });
    const cases: [number, number][] = [
      [100, 5000], // a size class's buffer freed past the firewall
      [4096, 4097], // a firewalled one, a page more
      [4096, 100], // a firewalled one freed as a size class's
      [131072, 131073], // the largest class freed as an oversize allocation
      [200_000, 100], // an oversize one freed as a size class's
    ];
    for (const [size, wrong] of cases) {
      const p = heap.alloc(size);
      // Before the fix: "invalid free" or vmem's own error, by where the wrong size led.
      const e = corruption(() => heap.free(p, wrong));
      assert.equal(e.kind, "wrong-size", `${size} freed as ${wrong}: ${e.message}`);
      assert.match(e.message, new RegExp(`bad free: free size \\(${wrong}\\) != alloc size`));
      assert.equal(e.address, p);
      heap.free(p, size);
    }
    // A firewalled buffer freed twice, the second time with another size: a duplicate free.
    const fw = heap.alloc(5000);
    heap.free(fw, 5000);
    for (const again of [100, 9000, 5000]) {
      assert.equal(corruption(() => heap.free(fw, again)).kind, "duplicate-free", `${again}`);
    }
    // A cache's buffer freed with a size past the firewall is a free to the wrong cache.
    const c = heap.createCache("big_things", 3584), q = c.alloc();
    assert.equal(corruption(() => heap.free(q, 5000)).kind, "wrong-cache");
    c.free(q);
    assert.deepEqual(heap.verify(), []);
  });

  it("a corrupt boundary tag and a corrupt bufctl are told apart", () => {
    const heap = debugHeap();
    const p = heap.alloc(24);
    const cp = sizeCache(heap, 24);
    const tag = p + heap.i32[(cp + CA_TAGOFF) >> 2];
    const saved = heap.i32[(tag + BT_BXSTAT) >> 2];
    heap.i32[(tag + BT_BXSTAT) >> 2] = 12345;
    assert.equal(corruption(() => heap.free(p, 24)).kind, "boundary-tag-corrupted");
    heap.i32[(tag + BT_BXSTAT) >> 2] = saved;
    heap.i32[(tag + 20) >> 2] = 999; // the audit record's worker slot
    assert.equal(corruption(() => heap.free(p, 24)).kind, "bufctl-corrupted");
  });

  it("firewall: large buffers get their own pages, a checked redzone and a quarantine", () => {
    const heap = debugHeap("default,firewall=8192");
    const p = heap.alloc(10000);
    assert.equal(p % 4096, 0);
    heap.u8[p + 10000] = 1;
    assert.equal(corruption(() => heap.free(p, 10000)).kind, "redzone-violation");
    heap.u8[p + 10000] = 0xbb;
    heap.free(p, 10000);
    const q = heap.alloc(10000);
    assert.notEqual(q, p, "a freed firewalled buffer is not reused at once");
    heap.u8[p + 5] = 9; // a write into a quarantined buffer
    assert.match(heap.verify().join("\n"), /buffer modified after being freed/);
    assert.equal(corruption(() => heap.reap()).kind, "modified-after-free");
    heap.free(q, 10000);
  });

  it("firewall: freed buffers waiting in quarantine are no leaks", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "guards,firewall=4096,noabort" });
    const a = heap.alloc(5000), b = heap.alloc(9000);
    assert.equal(inspect(heap).findleaks().total_buffers, 2);
    heap.free(a, 5000);
    heap.free(b, 9000);
    // Before the fix their spans, still allocated in umem_oversize, were counted.
    assert.equal(inspect(heap).findleaks().total_buffers, 0);
  });

  it("firewall: whatis tells a live firewalled buffer from one freed and in quarantine", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "guards,firewall=4096,noabort" });
    const p = heap.alloc(5000), q = heap.alloc(6000);
    heap.free(q, 6000);
    const live = inspect(heap).whatis(p + 10), freed = inspect(heap).whatis(q + 10);
    assert.equal(live.state, "allocated");
    assert.match(live.text, /a firewalled buffer of 5000 bytes, ALLOCATED\)$/);
    assert.equal(freed.state, "free", "before the fix both read as a plain segment");
    assert.match(freed.text, /a firewalled buffer, FREE, in quarantine\)$/);
  });

  it("firewall: findleaks scans and counts the bytes asked for, not the span's end words", () => {
    const heap = Heap.create({ size: 8 << 20, debug: "firewall=1024,noabort" });
    const x = heap.zalloc(100000); // leaked
    // A kept buffer whose encoded size (251 * s + 1, at its span's end) reads as a pointer into x.
    const s = Math.ceil(x / 251) + 16;
    heap.pin(heap.zalloc(s));
    const r = inspect(heap).findleaks();
    assert.equal(r.total_buffers, 1, "before the fix: 0, x kept by a size word");
    assert.equal(r.total_bytes, 100000, "the size asked for, not the span's 102400");
    assert.equal(r.classes[0].sample, x);
  });

  it("firewall with contents: a write after free to a buffer's last bytes is found", () => {
    for (const size of [100, 101, 103]) {
      const heap = Heap.create({ size: 1 << 20, debug: "contents,firewall=64,noabort" });
      const p = heap.alloc(size);
      heap.free(p, size); // quarantined, filled with 0xdeadbeef up to its last byte
      heap.u8[p + size - 1] ^= 1; // before the fix, 101 and 103 went unseen: only whole words
      const found = heap.verify();
      assert.equal(found.length, 1, `size ${size}`);
      assert.match(found[0], /buffer modified after being freed/);
    }
  });

  it("firewall: a quarantined buffer's redzone and end words are checked as it waits", () => {
    const size = 5000, bytes = firewallBytes(size);
    // What is damaged: the byte at this offset from the buffer is given this value.
    const cases = [
      ["a write past the end", size + 7, 1, "redzone-violation", /redzone violation/],
      ["the size word", bytes - 8, 0, "boundary-tag-corrupted", /boundary tag corrupted/],
      ["the check word", bytes - 2, 0x55, "boundary-tag-corrupted", /boundary tag corrupted/],
    ] as const;
    for (const [what, offset, value, kind, text] of cases) {
      const heap = Heap.create({ size: 1 << 20, debug: "guards,firewall=4096,noabort" });
      const p = heap.alloc(size);
      heap.free(p, size);
      assert.deepEqual(heap.verify(), [], what);
      heap.u8[p + offset] = value;
      const found = heap.verify();
      assert.equal(found.length, 1, what);
      assert.match(found[0], text, what);
      assert.match(found[0], new RegExp(`firewalled buffer ${hex(p)}`), what);
      // And as it leaves quarantine (a reap flushes it): reported, its span given back.
      assert.equal(corruption(() => heap.reap()).kind, kind, what);
      assert.deepEqual(heap.verify(), [], what);
    }
  });

  it("firewall: a buffer past this handle's views (another worker grew the heap) is laid out whole", () => {
    const heap = Heap.create({
      size: 1 << 20,
      maxSize: 16 << 20,
      debug: "guards,firewall=2048,noabort",
    });
    const other = Heap.attach(heap.buffer);
    const big = other.alloc(2 << 20); // the heap grows in the other slot
    const old = heap.mapped;
    const p = heap.alloc(3000); // firewalled, from the grown part: past this handle's views
    assert.ok(p + 3000 > old, `buffer ${p} lies past the views the alloc started with (${old})`);
    assert.equal(heap.u8[p + 3000], 0xbb, "its redzone was laid");
    heap.u8[p + 3000] = 1;
    assert.equal(corruption(() => heap.free(p, 3000)).kind, "redzone-violation");
    heap.u8[p + 3000] = 0xbb;
    heap.free(p, 3000); // before the fix: "firewalled buffer ... not found", its check word lost
    other.free(big, 2 << 20);
    assert.deepEqual(heap.verify(), []);
    other.detach();
  });

  it("guards: a buffer whose tag lies past this handle's views (the heap grew) is freed, not reported", () => {
    // 65 bytes from the 128 KiB class (size_clear): the tag lies 128 KiB past the buffer, so a
    // buffer below the other handle's views can have its tag past them.
    const heap = Heap.create({
      size: 1 << 20,
      maxSize: 16 << 20,
      debug: "guards,noabort",
      options: "size_clear,size_add=64",
    });
    const other = Heap.attach(heap.buffer);
    const held: number[] = [];
    let p = 0;
    for (let i = 0; i < 64 && p === 0; i++) {
      const q = heap.alloc(65);
      if (q < other.mapped && q + 131072 >= other.mapped) p = q;
      else held.push(q);
    }
    assert.ok(p !== 0, "a buffer straddles the other handle's views");
    other.free(p, 65); // before the fix: "redzone violation", the tag read as 0 past the views
    for (const q of held) heap.free(q, 65);
    assert.deepEqual(heap.verify(), []);
    other.detach();
  });

  it("a realloc whose old block is reported gives its new block back (noabort)", () => {
    const heap = Heap.create({ size: 8 << 20, debug: "guards,noabort" });
    const p = heap.libc.malloc(10);
    heap.u8[p + 10] = 1; // one byte past the end
    assert.equal(corruption(() => heap.libc.realloc(p, 1000)).kind, "redzone-violation");
    assert.equal(inspect(heap).findleaks().total_buffers, 1, "the old block only: before, two");
    heap.u8[p + 10] = 0xbb;
    heap.libc.free(p);
    assert.equal(inspect(heap).findleaks().total_buffers, 0);
    assert.deepEqual(heap.verify(), []);
  });

  it("the Vmalloc paper's Figure 8 program is caught in full", () => {
    // char *s = malloc(strlen("hello")); strcpy(s, "hello"); free(s); free("literal"); free(s);
    const heap = debugHeap();
    const { libc } = heap;
    const s = libc.malloc("hello".length);
    heap.u8.set(new TextEncoder().encode("hello\0"), s);
    assert.equal(corruption(() => libc.free(s)).kind, "redzone-violation");
    heap.u8[s + 5] = 0xbb; // repair, as the program would have done right
    libc.free(s);
    assert.throws(
      () => libc.free(4096 + 8),
      (e) => e instanceof UmemError && e.kind === "bad-free",
    );
    const twice = (() => {
      try {
        libc.free(s);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(twice instanceof HeapCorruptionError && twice.kind === "duplicate-free");
    // Reported as the buffer of its size class that the block is, with its audit trail.
    assert.equal(twice.address, s - 8);
    assert.equal(twice.cache, "umem_alloc_16");
    assert.match(
      twice.message,
      /buffer=0x[0-9a-f]+ {2}bufctl=0x[0-9a-f]+ {2}cache: umem_alloc_16\n/,
    );
    assert.match(
      twice.message,
      /previous transaction on buffer [^]*\nfree of buffer [^]*\nalloc of/,
    );
    assert.deepEqual(heap.verify(), []);
  });

  // guards and contents without audit take the debug fast path (core/debug_quick.ts); with
  // audit, the checked path (core/debug.ts). Both must report each mistake alike.
  for (
    const debug of ["guards", "contents", "guards,contents", "contents,maxverify=16", "default"]
  ) {
    it(`${debug}: every mistake reported alike on the fast and the checked path`, () => {
      const heap = debugHeap(debug);
      const contents = debug !== "guards";
      const report = (f: () => unknown) => {
        const e = corruption(f);
        return { kind: e.kind, address: e.address, category: e.message.split("\n")[0] };
      };
      // Sound pairs of sizes with and without slack before the tag.
      for (const n of [1, 7, 8, 50, 64, 100, 1000, 1024]) {
        const p = heap.alloc(n);
        assert.equal(p % 8, 0);
        heap.u8.fill(0x5a, p, p + n);
        heap.free(p, n);
      }
      // One byte past 50, into the slack that holds 0xbb.
      const p = heap.alloc(50);
      heap.u8[p + 50] = 0;
      assert.deepEqual(report(() => heap.free(p, 50)), {
        kind: "redzone-violation",
        address: p,
        category: "umem allocator: redzone violation: write past end of buffer",
      });
      heap.u8[p + 50] = 0xbb;
      // The wrong size, an interior pointer, a pointer outside every slab.
      assert.equal(report(() => heap.free(p, 40)).kind, "wrong-size");
      assert.equal(report(() => heap.free(p, 52)).kind, "wrong-size", "0xbb from 52 on too");
      assert.equal(report(() => heap.free(p + 8, 50)).kind, "bad-free");
      assert.equal(report(() => heap.free(64, 50)).kind, "bad-free");
      // A corrupt check word.
      const cp = sizeCache(heap, 50), tag = p + heap.i32[(cp + CA_TAGOFF) >> 2];
      heap.i32[(tag + BT_BXSTAT) >> 2] ^= 1;
      assert.equal(report(() => heap.free(p, 50)).kind, "boundary-tag-corrupted");
      heap.i32[(tag + BT_BXSTAT) >> 2] ^= 1;
      heap.free(p, 50);
      assert.deepEqual(report(() => heap.free(p, 50)), {
        kind: "duplicate-free",
        address: p,
        category: "umem allocator: duplicate free: buffer freed twice",
      });
      // A write after free at offset 40: found when the buffer is handed out, unless
      // maxverify stops the check at 16 bytes.
      heap.u8[p + 40] = 1;
      if (contents && !debug.includes("maxverify")) {
        const e = corruption(() => heap.alloc(50));
        assert.equal(e.kind, "modified-after-free");
        assert.equal(e.address, p);
        assert.match(e.message, /modification occurred at offset 0x28 \(0xdeadbeef replaced by/);
        assert.deepEqual(heap.verify(), [], "the buffer was refilled and put back");
      }
      const q = heap.alloc(50);
      assert.equal(q, p, "the same buffer comes back");
      if (contents) assert.equal(heap.u32[(q + 4) >> 2], 0xbaddcafe);
      heap.free(q, 50);
      heap.u8[p + 8] = 1; // within the first 16 bytes: maxverify checks it
      if (contents) assert.equal(report(() => heap.alloc(50)).kind, "modified-after-free");
      else heap.free(heap.alloc(50), 50);
      assert.deepEqual(heap.verify(), []);
    });
  }

  for (const debug of ["audit=8/1000", "audit=8/1000,contents"]) {
    it(`${debug}: the worker's countdown picks the audited transaction; the others clear their half`, () => {
      const heap = debugHeap(debug), other = Heap.attach(heap.buffer);
      assert.ok(heap.debugQuick > 0, "the fast path serves the transactions not sampled");
      assert.equal(debugHeap("audit=8").debugQuick, 0, "and none when every one is audited");
      const left = () => heap.i32[heap.auditLeft];
      const pairs = (h: Heap, n: number) => {
        for (let i = 0; i < n; i++) h.free(h.alloc(24), 24);
      };
      while (left() > 1) pairs(heap, 1); // the next transaction is sampled
      function allocatedWhileSampled(): number {
        return heap.alloc(40);
      }
      const p = allocatedWhileSampled();
      const ins = () => inspect(heap).bufctl(p);
      assert.deepEqual(ins().map((t) => t.op), ["alloc"]);
      // (JavaScriptCore may inline the function: then its caller's line in this file.)
      assert.match(ins()[0].stack, /allocatedWhileSampled|debug_test\.ts:\d+/);
      assert.ok(ins()[0].time > 0);
      const interval = left();
      assert.ok(interval >= 1, "the next interval is drawn");
      pairs(other, 700); // another worker's transactions count against its own rate
      assert.equal(left(), interval);
      heap.i32[heap.auditLeft] = 1000; // from here, as if the interval drawn were 1000
      heap.free(p, 40); // not sampled: the free is not recorded, the sampled alloc stays
      assert.deepEqual(ins().map((t) => t.op), ["alloc"]);
      pairs(heap, 498); // 996 transactions more, none sampled
      assert.equal(heap.alloc(40), p); // the 998th: the old alloc is no longer the last
      assert.deepEqual(ins(), [], "an older transaction is not shown as the last");
      heap.free(p, 40); // the 999th: cleared too
      assert.deepEqual(ins(), []);
      let callerFrames = 0;
      function allocatedAtTheThousandth(): number {
        const p = heap.alloc(40);
        callerFrames = framesHere(); // (and the call above is no tail call)
        return p;
      }
      assert.equal(allocatedAtTheThousandth(), p);
      assert.deepEqual(ins().map((t) => t.op), ["alloc"]);
      assert.match(ins()[0].stack, /allocatedAtTheThousandth|debug_test\.ts:\d+/);
      assert.ok(!/core\/heap\.ts/.test(ins()[0].stack), "umem's own frames are left out");
      assert.equal(
        ins()[0].stack.split("\n").length,
        Math.min(8, callerFrames),
        "and all 8 frames (or as many as there are) are the caller's",
      );
      heap.i32[heap.auditLeft] = 1; // the next transaction, a free, is sampled
      function freedWhenSampled(): void {
        heap.free(p, 40);
        callerFrames = framesHere();
      }
      freedWhenSampled();
      assert.deepEqual(ins().map((t) => t.op), ["free", "alloc"]);
      assert.match(ins()[0].stack, /freedWhenSampled|debug_test\.ts:\d+/);
      assert.ok(!/core\/heap\.ts/.test(ins()[0].stack), "umem's own frames are left out");
      assert.equal(ins()[0].stack.split("\n").length, Math.min(8, callerFrames));
      other.detach();
      assert.deepEqual(heap.verify(), []);
    });
  }

  const entryCases = [
    ["audit=8", "", 8, false],
    ["default", "", 16, false],
    ["audit=8/20", "transaction", 8, false],
    ["audit=8", "", 8, true], // a hook: the stack is captured where it is recorded
  ];
  for (
    const [debug, logging, frames, hooked] of entryCases as [string, string, number, boolean][]
  ) {
    const label = (logging === "" ? debug : `${debug} with UMEM_LOGGING=${logging}`) +
      (hooked ? " and a hook" : "");
    it(`${label}: alloc and free keep the caller's stack, ${frames} frames of it`, () => {
      const heap = debugHeap(debug, logging);
      if (hooked) attachHeapHook(heap, { alloc() {} });
      assert.equal(heap.debugQuick, 0, "no transaction takes the debug fast path");
      let callerFrames = 0;
      function allocatesIt(size: number): number {
        const p = heap.alloc(size);
        callerFrames = framesHere(); // (and the call above is no tail call)
        return p;
      }
      function freesIt(p: number, size: number): void {
        heap.free(p, size);
      }
      const sampled = () => {
        while (heap.i32[heap.auditLeft] > 1) heap.free(heap.alloc(24), 24);
      };
      for (const size of [64, 3000]) { // a size class of the table, and a larger one
        if (logging !== "") sampled();
        const p = allocatesIt(size);
        const q = heap.alloc(size); // the buffer stays apart from the countdown's pairs
        if (logging !== "") sampled();
        freesIt(p, size);
        const [free, alloc] = inspect(heap).bufctl(p);
        assert.deepEqual([free.op, alloc.op], ["free", "alloc"]);
        for (const [t, name] of [[alloc, "allocatesIt"], [free, "freesIt"]] as const) {
          // (JavaScriptCore may inline the function: then its caller's line in this file.)
          assert.match(t.stack, new RegExp(`${name}|debug_test\\.ts:\\d+`));
          assert.doesNotMatch(t.stack, /core\/(debug|heap|stack)\.ts/, "umem's frames left out");
          assert.equal(t.stack.split("\n").length, Math.min(frames, callerFrames), t.op);
        }
        heap.free(q, size);
      }
      assert.deepEqual(heap.verify(), []);
    });
  }

  it("audit=8: a cache's alloc and free capture the caller's stack themselves, 8 frames", () => {
    const heap = debugHeap("audit=8"), c = heap.createCache("node", 48);
    let callerFrames = 0;
    function allocatesNode(): number {
      const p = c.alloc();
      callerFrames = framesHere(); // (and the call above is no tail call)
      return p;
    }
    function freesNode(p: number): void {
      c.free(p);
    }
    const p = allocatesNode();
    freesNode(p);
    const [free, alloc] = inspect(heap).bufctl(p);
    for (const [t, name] of [[alloc, "allocatesNode"], [free, "freesNode"]] as const) {
      assert.match(t.stack, new RegExp(`${name}|debug_test\\.ts:\\d+`));
      assert.doesNotMatch(t.stack, /core\/(cache|debug|stack)\.ts/, "umem's frames left out");
      assert.equal(t.stack.split("\n").length, Math.min(8, callerFrames), t.op);
    }
    assert.deepEqual(heap.verify(), []);
  });

  it("audit: a constructor's and a destructor's own transactions get their own stacks", () => {
    const heap = debugHeap("audit=8"), parts = heap.createCache("part", 32);
    // A handle that does not capture its caller's stack itself: its transactions' stacks are
    // captured where they are recorded, so they must not take the outer transaction's.
    const plainParts = new Cache(heap, parts.addr);
    const made: number[] = [];
    function makesPart(): boolean {
      made.push(plainParts.alloc());
      return true;
    }
    function dropsPart(): void {
      plainParts.free(made[0]);
    }
    const whole = heap.createCache("whole", 64, {
      ctor: () => makesPart(),
      dtor: () => dropsPart(),
    });
    function allocatesWhole(): number {
      const p = whole.alloc();
      assert.ok(p > 0); // (and the call above is no tail call, which JavaScriptCore would run
      return p; // in this frame)
    }
    function freesWhole(p: number): void {
      whole.free(p);
    }
    const p = allocatesWhole();
    assert.equal(made.length, 1, "the constructor ran");
    freesWhole(p);
    const [wholeFree, wholeAlloc] = inspect(heap).bufctl(p);
    const [partFree, partAlloc] = inspect(heap).bufctl(made[0]);
    assert.match(wholeAlloc.stack, /allocatesWhole/);
    assert.match(wholeFree.stack, /freesWhole/);
    assert.match(partAlloc.stack, /makesPart/);
    assert.match(partFree.stack, /dropsPart/);
    assert.deepEqual(heap.verify(), []);
  });

  for (const via of ["reclaim", "nofail"] as const) {
    it(`audit: a ${via} callback's own free gets its own stack, not the allocation's`, () => {
      const heap = Heap.create({
        size: 1 << 20,
        maxSize: 2 << 20,
        debug: "audit=8,noabort",
        nofail: via === "nofail",
      });
      const held: number[] = [];
      let give = false;
      function givesBack(): void {
        if (give) plain.free(held.pop()!);
      }
      const hoard = heap.createCache("hoard", 8192, {
        reclaim: via === "reclaim" ? () => givesBack() : undefined,
      });
      // A handle that does not capture at its entry: its stacks are taken where recorded.
      const plain = new Cache(heap, hoard.addr);
      if (via === "nofail") {
        heap.setNofailCallback(() => {
          if (!give) throw new OutOfMemoryError("full");
          givesBack();
          return "retry";
        });
      }
      assert.throws(() => {
        for (let i = 0; i < 1000; i++) held.push(hoard.alloc());
      }, OutOfMemoryError);
      give = true;
      const x = held[held.length - 1];
      function allocatesOneMore(): number {
        const p = hoard.alloc(); // runs out; the callback frees x; the retry takes it
        assert.ok(p > 0); // (and the call above is no tail call)
        return p;
      }
      assert.equal(allocatesOneMore(), x);
      const [alloc, free] = inspect(heap).bufctl(x);
      assert.deepEqual([alloc.op, free.op], ["alloc", "free"]);
      assert.match(alloc.stack, /allocatesOneMore/);
      assert.match(free.stack, /givesBack/);
      held.push(x);
      for (const p of held) hoard.free(p);
      assert.deepEqual(heap.verify(), []);
    });
  }

  it("audit=frames/rate: intervals average the rate and do not lock onto a repeating pattern", () => {
    // The inverse of the distribution: the median and the mean interval are the geometric's.
    const draws = Array.from({ length: 999 }, (_, i) => sampleInterval(100, (i + 0.5) / 999));
    assert.ok(draws.every((k) => Number.isInteger(k) && k >= 1));
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    assert.ok(mean > 90 && mean < 110, `mean interval ${mean}`);
    assert.equal(draws[499], 69, "the median of a geometric of mean 100 is 69");
    assert.equal(sampleInterval(100, 0), 1);
    // A repeating pattern of four transactions, at a rate that is a multiple of four: a fixed
    // count would audit the same one of the four every time.
    const heap = debugHeap("audit=4/100");
    const audited = [0, 0, 0, 0];
    for (let i = 0; i < 20_000; i++) {
      const a = heap.i32[heap.auditLeft] <= 1;
      const p = heap.alloc(32);
      const b = heap.i32[heap.auditLeft] <= 1;
      const q = heap.alloc(48);
      const c = heap.i32[heap.auditLeft] <= 1;
      heap.free(p, 32);
      const d = heap.i32[heap.auditLeft] <= 1;
      heap.free(q, 48);
      [a, b, c, d].forEach((x, k) => audited[k] += x ? 1 : 0);
    }
    const total = audited.reduce((x, y) => x + y, 0);
    assert.ok(total > 600 && total < 1000, `${total} of 80,000 transactions audited`);
    for (const n of audited) assert.ok(n > total / 8, `audited by position: ${audited}`);
    assert.deepEqual(heap.verify(), []);
  });

  it("a trusting heap that debugs: verify() is empty when sound and names a write after free", () => {
    for (const debug of ["guards,noabort", "contents,noabort", "default,noabort"]) {
      const heap = Heap.create({ size: 1 << 20, trust: true, debug });
      const c = heap.createCache("trusted", 48);
      heap.free(heap.alloc(64), 64);
      c.free(c.alloc());
      const live = heap.alloc(64);
      // Before the fix: the freed buffers, whose state bytes a trusting heap leaves "out",
      // were taken for allocated ones and reported as duplicate frees.
      assert.deepEqual(heap.verify(), [], debug);
      heap.free(live, 64);
      if (debug !== "guards,noabort") {
        heap.u8[live + 3] ^= 1;
        const found = heap.verify();
        assert.equal(found.length, 1, debug);
        assert.match(found[0], /buffer modified after being freed/);
      }
    }
  });

  it("the same mistakes with debugging off do not harm the heap's metadata", () => {
    const heap = Heap.create({ size: 4 << 20, debug: "" });
    const p = heap.alloc(50);
    heap.u8.fill(1, p, p + 64); // overrun within the chunk: not detected, harmless
    heap.free(p, 50);
    heap.u8[p + 12] = 1; // write after free into a cached buffer
    for (
      const bad of [() => heap.free(p, 50), () => heap.free(64, 50), () => heap.free(p + 8, 50)]
    ) {
      assert.throws(bad, (e) => e instanceof UmemError);
    }
    assert.deepEqual(heap.verify(), []);
  });
});

describe("UMEM_LOGGING", () => {
  it("the transaction log records allocs and frees, newest first; contents and fail logs fill", () => {
    const heap = Heap.create({
      size: 1 << 20,
      maxSize: 2 << 20,
      debug: "audit,noabort",
      logging: "transaction,contents=4k,fail",
    });
    const p = heap.alloc(64);
    heap.u8.fill(0x41, p, p + 64);
    heap.free(p, 64);
    const tx = ringRecords(heap, heap.i32[HDR_TXLOG >> 2]);
    assert.equal(tx.length, 2);
    assert.equal(heap.i32[(tx[0] + TX_OP) >> 2] & 0xff, TXOP_FREE);
    assert.equal(heap.i32[(tx[1] + TX_OP) >> 2] & 0xff, TXOP_ALLOC);
    assert.equal(heap.i32[(tx[0] + TX_BUF) >> 2], p);
    const ct = ringRecords(heap, heap.i32[HDR_CTLOG >> 2]);
    assert.equal(ct.length, 1);
    assert.equal(heap.u8[ct[0] + 24], 0x41, "the freed bytes were saved");
    assert.throws(() => heap.alloc(1 << 21));
    assert.equal(
      ringRecords(heap, heap.i32[HDR_FAILLOG >> 2]).length,
      0,
      "oversize fails go unlogged",
    );
    const held: number[] = [];
    assert.throws(() => {
      for (;;) held.push(heap.alloc(65536));
    });
    assert.ok(ringRecords(heap, heap.i32[HDR_FAILLOG >> 2]).length >= 1);
  });
});

describe("the switches", () => {
  it("parse libumem's keywords and name an unknown one", () => {
    assert.deepEqual(
      [parseDebug("default").audit, parseDebug("default").contents, parseDebug("default").guards],
      [true, true, true],
    );
    assert.equal(parseDebug("audit=8/100").auditSample, 100);
    assert.equal(parseDebug("audit=8").auditFrames, 8);
    assert.equal(parseDebug("firewall=64k").firewall, 65536);
    assert.equal(parseLogging("transaction=1m").transaction, 1 << 20);
    assert.equal(parseOptions("nomagazines,concurrency=4").concurrency, 4);
    for (
      const [f, word] of [
        [() => parseDebug("audit,bogus"), "bogus"],
        [() => parseLogging("transactions"), "transactions"],
        [() => parseOptions("magazine=9"), "magazine"],
        [() => Heap.create({ debug: "guard" }), "guard"],
      ] as const
    ) {
      assert.throws(
        f,
        (e) =>
          e instanceof UmemError && e.kind === "invalid-argument" &&
          e.message.includes(`'${word}'`),
      );
    }
    assert.throws(() => parseDebug("contents=lots"), /contents=lots: not a size/);
  });

  it("UMEM_OPTIONS=nomagazines runs constructors on every allocation", () => {
    const heap = Heap.create({ size: 1 << 20, options: "nomagazines" });
    let built = 0;
    const c = heap.createCache("c", 32, { ctor: () => void built++ });
    for (let i = 0; i < 5; i++) c.free(c.alloc());
    assert.equal(built, 5);
  });

  it("reads UMEM_DEBUG from the environment when no option is given", () => {
    const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process
      ?.env;
    if (env === undefined) return;
    const old = env.UMEM_DEBUG;
    env.UMEM_DEBUG = "guards,noabort";
    try {
      const heap = Heap.create({ size: 1 << 20 });
      const p = heap.alloc(10);
      heap.u8[p + 10] = 0;
      assert.equal(corruption(() => heap.free(p, 10)).kind, "redzone-violation");
    } finally {
      if (old === undefined) delete env.UMEM_DEBUG;
      else env.UMEM_DEBUG = old;
    }
  });

  it("a report aborts the process unless noabort or nosignal, in a worker too; verify() never does", () => {
    // A subprocess of the runtime running the tests (tests/fixtures/abort_probe.ts).
    const probe = fileURLToPath(new URL("./fixtures/abort_probe.ts", import.meta.url));
    const run = (debug: string, where: string) => {
      const args = [probe, debug, where];
      const r = spawnSync(process.execPath, IS_DENO ? ["run", "--allow-read", ...args] : args, {
        encoding: "utf8",
        env: { ...process.env, NO_COLOR: "1" },
        timeout: 30_000,
      });
      if (r.error !== undefined) throw r.error;
      return { aborted: r.signal === "SIGABRT" || r.status === 134, ...r };
    };
    const duplicate =
      /^umem allocator: duplicate free: buffer freed twice\nbuffer=0x[0-9a-f]+ {2}bufctl=0x[0-9a-f]+ {2}cache: umem_alloc_32\numem: heap corruption detected\n/m;
    for (const where of ["main", "worker"] as const) {
      // The default, as libumem's: the report on stderr, then abort; nothing runs after it.
      const r = run("guards", where);
      assert.ok(r.aborted, `${where}: aborted (status ${r.status}, signal ${r.signal})`);
      assert.equal(r.stdout, "verify: 1\n", `${where}: verify() listed the overrun, no abort`);
      assert.match(r.stderr, duplicate);
      assert.doesNotMatch(r.stderr, /redzone violation/, "verify()'s problem is not reported");
      // noabort and nosignal: thrown, caught, and the program goes on; nothing printed.
      for (const debug of ["guards,noabort", "guards,nosignal"]) {
        const t = run(debug, where);
        assert.equal(t.aborted, false, `${where} ${debug}`);
        assert.equal(t.status, 0, `${where} ${debug}: ${t.stderr}`);
        const tail = where === "worker" ? "worker: done\n" : "";
        assert.equal(t.stdout, `verify: 1\ncaught duplicate-free\nafter\n${tail}`);
        assert.equal(t.stderr, "");
      }
    }
    // A libc free of a freed block or of a pointer into one, and an oversize duplicate free,
    // are reported as the rest (they were thrown, and a try swallowed them).
    for (const which of ["libc-double", "libc-interior", "oversize-double"]) {
      for (const debug of ["guards", "contents"]) {
        const r = run(debug, which);
        assert.ok(r.aborted, `${which} ${debug}: aborted (status ${r.status}, ${r.stdout})`);
        assert.match(r.stderr, /^umem allocator: (duplicate free|invalid free)/m);
        const t = run(`${debug},noabort`, which);
        assert.match(t.stdout, /caught (duplicate-free|bad-free)\nafter\n$/, `${which} ${debug}`);
      }
    }
    // The status says which: `noabort` is listed when a report is thrown.
    const status = (debug: string) => inspect(Heap.create({ size: 1 << 20, debug })).status().debug;
    assert.deepEqual(status("guards"), ["guards"]);
    assert.deepEqual(status("guards,nosignal"), ["guards", "noabort"]);
    assert.deepEqual(status("noabort"), [], "no debugging, nothing to report");
    // verbose prints each report as well, verify()'s too.
    const v = run("guards,verbose,noabort", "main");
    assert.equal(v.stdout, "verify: 1\ncaught duplicate-free\nafter\n");
    assert.match(v.stderr, /redzone violation: write past end of buffer/);
    assert.match(v.stderr, duplicate);
  });

  it("carries on with the defaults, saying nothing, without permission to read the environment", () => {
    // Deno's permissions: Bun and Node have none, and always read the environment.
    if (!IS_DENO) return;
    const probe = fileURLToPath(new URL("./fixtures/env_probe.ts", import.meta.url));
    const run = (...flags: string[]) => {
      const r = spawnSync(
        process.execPath,
        ["run", "--allow-read", "--no-prompt", ...flags, probe],
        {
          encoding: "utf8",
          env: {
            ...process.env,
            UMEM_DEBUG: "guards,nosignal",
            UMEM_LOGGING: "transaction",
            UMEM_OPTIONS: "size=3m",
            NO_COLOR: "1",
          },
          timeout: 30_000,
        },
      );
      if (r.error !== undefined) throw r.error;
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const defaults = Heap.create().size; // (no UMEM_OPTIONS here: the test runs with none)
    // Allowed, the variables are read: the overrun is reported, the log kept, the size taken.
    const allowed = run("--allow-env");
    assert.equal(allowed.stderr, "");
    assert.equal(allowed.code, 0);
    assert.match(
      allowed.stdout,
      /^free: redzone-violation\nverify: 1\nlog: [1-9]\d* records\nsize: 3145728\n$/,
    );
    // Not granted (no flag; another variable only; denied): no debugging, no prompt, no word.
    for (const flags of [[], ["--allow-env=HOME"], ["--deny-env"]]) {
      assert.deepEqual(run(...flags), {
        code: 0,
        stdout: `free: no report\nverify: 0\nlog: 0 records\nsize: ${defaults}\n`,
        stderr: "",
      }, `deno run ${flags.join(" ")}`);
    }
  });
});
