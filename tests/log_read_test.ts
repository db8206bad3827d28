/**
 * The contents log and the fail log read back (core/log_read.ts): `inspect(heap).contentsLog()`
 * and `failLog()`, their text, and the `umem` command's `log contents` and `log fail` over a
 * snapshot.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Heap, inspect, OutOfMemoryError, UmemError, writeSnapshot } from "../mod.ts";
import { main } from "../cli/umem.ts";
import { HDR_TXLOG } from "../core/image.ts";
import { LG_NEXT, LG_NREC, RING_SEQ_WRAP } from "../core/log.ts";

const dir = mkdtempSync(join(tmpdir(), "umem-logread-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the `umem` command in this process; returns its status and what it printed. */
function umem(...args: string[]): { code: number; out: string; err: string } {
  const out: string[] = [], err: string[] = [];
  const code = main(args, { log: (t) => out.push(t), error: (t) => err.push(t) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("a ring's count", () => {
  it("is brought back before it wraps at 2^32: the ring still reads full and newest first", () => {
    const heap = Heap.create({ size: 1 << 20, logging: "transaction", debug: "guards" });
    for (let i = 0; i < 3000; i++) heap.free(heap.alloc(24), 24); // the ring is full
    const ring = heap.i32[HDR_TXLOG >> 2], n = heap.i32[(ring + LG_NREC) >> 2];
    // Where 2^30 claims would have left it, at the same place in the ring.
    heap.i32[(ring + LG_NEXT) >> 2] = RING_SEQ_WRAP - 2 - ((RING_SEQ_WRAP - 2 - 3000 * 2) % n);
    const written = () => inspect(heap).status().logs[0].written;
    const before = written();
    const sizes = [8, 16, 24, 32, 40];
    for (const s of sizes) heap.free(heap.alloc(s), s);
    assert.equal(written(), before + 10, "the status still counts every record written");
    const log = inspect(heap).log();
    assert.equal(log.length, n);
    assert.deepEqual(log.slice(0, 10).map((e) => e.size), sizes.flatMap((s) => [s, s]).reverse());
    assert.ok((heap.i32[(ring + LG_NEXT) >> 2] >>> 0) < RING_SEQ_WRAP, "brought back");
  });
});

describe("the logs of a destroyed cache", () => {
  it("are not credited to a cache made later at the same address", () => {
    const heap = Heap.create({
      size: 4 << 20,
      debug: "audit,contents,mtbf=2,noabort",
      logging: "transaction,contents,fail",
    });
    const a = heap.createCache("alpha", 64);
    const ps: number[] = [];
    for (let i = 0; i < 20; i++) {
      try {
        ps.push(a.alloc());
      } catch { /* mtbf: logged in the fail log */ }
    }
    for (const p of ps) a.free(p);
    const ins = inspect(heap);
    assert.ok(ins.log().length > 0 && ins.contentsLog().length > 0 && ins.failLog().length > 0);
    assert.ok(
      [...ins.log(), ...ins.contentsLog(), ...ins.failLog()].every((e) => e.cache === "alpha"),
    );
    a.destroy();
    const b = heap.createCache("beta", 64); // takes alpha's record, never used
    assert.equal(b.addr, a.addr);
    for (const e of [...ins.log(), ...ins.contentsLog(), ...ins.failLog()]) {
      assert.equal(e.cache, `(a cache since destroyed, at 0x${a.addr.toString(16)})`);
    }
    assert.deepEqual(
      [
        ins.log({ cache: "beta" }),
        ins.contentsLog({ cache: "beta" }),
        ins.failLog({ cache: "beta" }),
      ],
      [[], [], []],
    );
  });
});

describe("the contents log", () => {
  it("keeps each freed buffer's first bytes as they were, newest first, filtered", () => {
    const heap = Heap.create({
      size: 1 << 20,
      debug: "contents=16,noabort",
      logging: "contents",
    });
    const a = heap.alloc(40), b = heap.alloc(8);
    heap.u8.set(new TextEncoder().encode("first buffer, more than sixteen bytes"), a);
    heap.u8.set([1, 2, 3, 4, 5, 6, 7, 8], b);
    heap.free(a, 40);
    heap.free(b, 8);
    const all = inspect(heap).contentsLog();
    assert.deepEqual(all.map((e) => e.buffer), [b, a], "newest first");
    assert.deepEqual(all[1].bytes, [...new TextEncoder().encode("first buffer, mo")], "16 bytes");
    assert.deepEqual(all[0].bytes, [1, 2, 3, 4, 5, 6, 7, 8], "a buffer shorter than 16: whole");
    assert.equal(all[1].cache, "umem_alloc_48");
    assert.equal(all[0].slot, 0);
    assert.ok(Math.abs(all[0].time - Date.now()) < 60_000);
    // The buffer itself holds 0xdeadbeef now: the log kept what the pattern overwrote.
    assert.equal(heap.u32[a >> 2], 0xdeadbeef);
    assert.deepEqual(inspect(heap).contentsLog({ buffer: a }).map((e) => e.buffer), [a]);
    assert.equal(inspect(heap).contentsLog({ cache: "umem_alloc_8" }).length, 1);
    assert.equal(inspect(heap).contentsLog({ worker: 3 }).length, 0);
    assert.throws(() => inspect(heap).contentsLog({ buffer: 1.5 }), UmemError);

    const text = inspect(heap).formatContentsLog().split("\n");
    assert.equal(text[0], "contents log: 2 records (showing 2)");
    assert.match(text[1], /^t=\S+Z thr=0 free 0x[0-9a-f]+ cache=umem_alloc_8 \(8 bytes saved\)$/);
    assert.equal(text[2], "\t0000: 01 02 03 04 05 06 07 08" + " ".repeat(24) + "  |........|");
    assert.equal(
      text[4],
      "\t0000: 66 69 72 73 74 20 62 75 66 66 65 72 2c 20 6d 6f  |first buffer, mo|",
    );
  });

  it("keeps only the newest records its ring holds", () => {
    // Records of 24 bytes of header and 256 saved: a 4 KiB ring holds 14.
    const heap = Heap.create({ size: 1 << 20, debug: "guards,noabort", logging: "contents=4k" });
    const freed: number[] = [];
    for (let i = 0; i < 40; i++) {
      const p = heap.alloc(100);
      heap.u8[p] = i;
      heap.free(p, 100);
      freed.push(i);
    }
    const kept = inspect(heap).contentsLog().map((e) => e.bytes[0]);
    assert.equal(kept.length, 14);
    assert.deepEqual(kept, freed.slice(-14).reverse());
    assert.equal(
      inspect(heap).formatContentsLog(undefined, 3).split("\n")[0],
      "contents log: 14 records (showing 3)",
    );
  });

  it("is empty without UMEM_LOGGING=contents", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "guards,noabort" });
    heap.free(heap.alloc(10), 10);
    assert.deepEqual(inspect(heap).contentsLog(), []);
  });
});

describe("the fail log", () => {
  it("records each failed allocation with its cache, size and stack", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,audit,noabort", logging: "fail" });
    function allocateTheSession() {
      return heap.alloc(100);
    }
    assert.throws(allocateTheSession, OutOfMemoryError);
    const conn = heap.createCache("conn", 200);
    assert.throws(() => conn.alloc(), OutOfMemoryError);
    const log = inspect(heap).failLog();
    assert.deepEqual(log.map((f) => [f.cache, f.size]), [["conn", 200], ["umem_alloc_112", 100]]);
    assert.match(log[1].stack, /allocateTheSession|log_read_test\.ts:\d+/);
    assert.doesNotMatch(log[1].stack, /core\/(debug|heap|magazine)\.ts/, "umem's frames left out");
    assert.deepEqual(inspect(heap).failLog({ cache: "conn" }).map((f) => f.cache), ["conn"]);
    assert.throws(
      () => inspect(heap).failLog({ buffer: 16 } as { cache?: string }),
      /a failed allocation has no buffer to filter by/,
    );
    const text = inspect(heap).formatFailLog().split("\n");
    assert.equal(text[0], "fail log: 2 records (showing 2)");
    assert.match(text[1], /^t=\S+Z thr=0 size=200 cache=conn$/);
    assert.match(text[2], /^\t/);
  });

  it("names a cache destroyed since its failure as such, not as the firewall", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,noabort", logging: "fail" });
    const doomed = heap.createCache("doomed", 40);
    assert.throws(() => doomed.alloc(), OutOfMemoryError);
    doomed.destroy();
    const [f] = inspect(heap).failLog();
    assert.match(f.cache, /^\(a cache since destroyed, at 0x[0-9a-f]+\)$/);
    assert.doesNotMatch(inspect(heap).formatFailLog(), /\(firewall\)/);
  });

  it("names a firewalled allocation's failure, and logs nothing without UMEM_LOGGING=fail", () => {
    const heap = Heap.create({ size: 1 << 20, debug: "mtbf=1,firewall=8192,noabort" });
    assert.throws(() => heap.alloc(10000), OutOfMemoryError);
    assert.deepEqual(inspect(heap).failLog(), []);
    const logged = Heap.create({
      size: 1 << 20,
      debug: "mtbf=1,firewall=8192,noabort",
      logging: "fail",
    });
    assert.throws(() => logged.alloc(10000), OutOfMemoryError);
    const [f] = inspect(logged).failLog();
    assert.equal(f.cache, "");
    assert.equal(f.size, 10000);
    assert.match(
      inspect(logged).formatFailLog(),
      /\nt=\S+ thr=0 size=10000 cache=\(firewall\)\n\t/,
    );
  });
});

describe("umem log contents and umem log fail", () => {
  it("read the logs of a snapshot, as text and as JSON, filtered", () => {
    const heap = Heap.create({
      size: 2 << 20,
      debug: "mtbf=2,audit,noabort",
      logging: "transaction,contents,fail",
    });
    let freed = 0, failed = 0;
    for (let i = 0; i < 40; i++) {
      try {
        const p = heap.alloc(24);
        heap.u8[p] = 0x41 + (i % 26);
        heap.free(p, 24);
        freed++;
      } catch (e) {
        if (!(e instanceof OutOfMemoryError)) throw e;
        failed++;
      }
    }
    assert.ok(freed > 0 && failed > 0, `${freed} freed, ${failed} failed`);
    const dump = join(dir, "logs.ums");
    writeSnapshot(heap, dump);

    const contents = umem("--dump", dump, "log", "contents", "--limit", "2");
    assert.equal(contents.code, 0, contents.err);
    assert.match(contents.out, new RegExp(`^contents log: ${freed} records \\(showing 2\\)\\n`));
    assert.match(
      contents.out,
      /\nt=\S+ thr=0 free 0x[0-9a-f]+ cache=umem_alloc_32 \(24 bytes saved\)\n\t0000: [45][0-9a-f] /,
    );
    const json = JSON.parse(umem("--dump", dump, "log", "contents", "-f", "json").out);
    assert.equal(json.length, freed);
    assert.deepEqual(json[0], inspect(heap).contentsLog()[0]);

    const fail = umem("--dump", dump, "log", "fail", "--cache", "umem_alloc_32");
    assert.equal(fail.code, 0, fail.err);
    assert.match(fail.out, new RegExp(`^fail log: ${failed} records \\(showing ${failed}\\)\\n`));
    assert.match(fail.out, /\nt=\S+ thr=0 size=24 cache=umem_alloc_32\n\t\S/);
    const fj = JSON.parse(umem("--dump", dump, "log", "fail", "-f", "json").out);
    assert.deepEqual(fj, inspect(heap).failLog());

    // The transaction log stays the default.
    assert.match(umem("--dump", dump, "log", "--limit", "1").out, /^transaction log: /);
    assert.match(
      umem("--dump", dump, "log", "transaction", "--limit", "1").out,
      /^transaction log: /,
    );
  });
});
