/**
 * Bad input to the core's public entry points that the older tables (`tests/vmem_test.ts`,
 * `tests/alloc_test.ts`) leave out, one table per entry point: `Heap.create` and each of its
 * options, `Heap.attach` of things that are not a sound image, `detach` twice,
 * `reclaimSlot`, the root registry (`addRoot`, `removeRoot`, `pin`, `unpin`), `createCache`
 * and `heap.cache`, every method of a destroyed cache, `setNofailCallback`, `heap.arena`,
 * `inspect` and its `walk`, `whatis`, `bufctl` and `log`, and the snapshot file
 * (`Snapshot.decode`, `readSnapshot`, `writeSnapshot`). The rows use the numbers (0,
 * -1, NaN, 1.5, 2**32, Infinity, a string) and addresses (0, -8, odd, past the end, inside the
 * header, inside a free buffer, inside another cache's slab) where they apply.
 *
 * Each row says what must happen: the `UmemError` kind, "ok" where the API defines the input
 * as valid, or `fs:CODE` where the file system's own error is the documented answer (a missing
 * file). Every row runs on a fresh heap; after it `heap.verify()` is empty and, when the row
 * was refused, the heap's figures (arena use, caches, arenas, roots) are what they were.
 *
 * Run: `npx deno test --allow-read --allow-write --allow-env tests/badinput_core_test.ts` or
 * `npx bun test tests/badinput_core_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { badInputTable, NUMBERS, type TableRow } from "./badinput_table.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mk, throwsKind } from "./helpers.ts";
import { type Cache, Heap, inspect, readSnapshot, Snapshot, Vmem, writeSnapshot } from "../mod.ts";
import { FORMAT_VERSION, HDR_PAGESIZE, HDR_ROOT_ARENA, HDR_VERSION } from "../core/image.ts";

/** What a row runs against. */
interface Fixture {
  heap: Heap;
  /** A user cache with a live buffer `a`. */
  cache: Cache;
  a: number;
  /** Another cache, with a live buffer `foreign`. */
  other: Cache;
  foreign: number;
  /** A destroyed cache's handle. */
  dead: Cache;
  /** A heap buffer of 256 bytes, freed. */
  freed: number;
  /** A live heap buffer of 100 bytes. */
  live: number;
  /** One past the heap's last byte. */
  end: number;
  /** The figures a refused call must leave. */
  before: string;
}

function fixture(): Fixture {
  const heap = mk({ size: 1 << 20 });
  const cache = heap.createCache("node", 64);
  const a = cache.alloc();
  const other = heap.createCache("other", 96);
  const foreign = other.alloc();
  const dead = heap.createCache("dead", 32);
  dead.free(dead.alloc());
  dead.destroy();
  const freed = heap.alloc(256);
  heap.free(freed, 256);
  const live = heap.alloc(100);
  Vmem.create(heap, "ids", { base: 1, size: 100, quantum: 1 });
  const f = { heap, cache, a, other, foreign, dead, freed, live, end: heap.size };
  return { ...f, before: figures(heap) };
}

/** The heap's figures, as a string to compare: arena use, caches, arenas, roots. */
function figures(heap: Heap): string {
  const ins = inspect(heap);
  return JSON.stringify({
    vmem: heap.vmem.stats().inUse,
    caches: heap.caches().map((c) => [c.name, c.stats().inUse]),
    arenas: heap.arenas().map((a) => a.name),
    roots: ins.findleaks().total_buffers,
  });
}

type Row = TableRow<Fixture>;

const table = badInputTable<Fixture>({
  fixture,
  figures: (f) => figures(f.heap),
  before: (f) => f.before,
  what: "the heap",
  check: (f) => assert.deepEqual(f.heap.verify(), []),
});

/** Rows that pass each of the seven numbers; `ok` lists the labels the API accepts. */
function numbers(
  what: string,
  call: (f: Fixture, n: never) => unknown,
  kind = "invalid-argument",
  ok: string[] = [],
): Row[] {
  return NUMBERS.map(([l, n]): Row => [
    `${what} ${l}`,
    ok.includes(l) ? "ok" : kind,
    (f) => call(f, n as never),
  ]);
}

/** A copy of the fixture heap's image in a new SharedArrayBuffer, `edit`ed. */
function image(f: Fixture, edit: (u32: Uint32Array) => void = () => {}, bytes?: number) {
  const src = new Uint8Array(f.heap.buffer);
  const len = bytes ?? src.length;
  const sab = new SharedArrayBuffer(len);
  new Uint8Array(sab).set(src.subarray(0, len));
  edit(new Uint32Array(sab, 0, 1024));
  return sab;
}

// deno-lint-ignore no-explicit-any
const any = (x: unknown) => x as any;

table("Heap.create(options)", [
  ...numbers("size", (_, n) => mk({ size: n }), "invalid-argument"),
  ["size 1 (rounded up to pages)", "ok", () => assert.ok(mk({ size: 1 }).verify().length === 0)],
  ["size above maxSize", "invalid-argument", () => mk({ size: 1 << 22, maxSize: 1 << 21 })],
  ...numbers("maxSize", (_, n) => mk({ maxSize: n, size: 1 << 16 })),
  ["maxSize 2**31 (past 2 GiB - 4 KiB)", "invalid-argument", () => mk({ maxSize: 2 ** 31 })],
  ["maxSize 65536 (no room after the metadata)", "invalid-argument", () => {
    mk({ maxSize: 65536, size: 65536 });
  }],
  ...numbers("slots", (_, n) => mk({ size: 1 << 20, slots: n })),
  ["slots 65", "invalid-argument", () => mk({ size: 1 << 20, slots: 65 })],
  [
    "slots 64",
    "ok",
    () => assert.equal(Heap.attach(mk({ slots: 64, size: 1 << 20 }).buffer).slot, 1),
  ],
  ["slots 1: attach finds no slot", "out-of-memory", () => {
    Heap.attach(mk({ slots: 1, size: 1 << 20 }).buffer);
  }],
  ...numbers("lockTimeout", (_, n) => mk({ size: 1 << 20, lockTimeout: n })),
  ["trust 'yes' (not a boolean)", "invalid-argument", () => mk({ trust: any("yes") })],
  ["trust 1", "invalid-argument", () => mk({ trust: any(1) })],
  ["nofail 'no' (not a boolean)", "invalid-argument", () => mk({ nofail: any("no") })],
  ["trust true", "ok", () => assert.equal(mk({ size: 1 << 20, trust: true }).trusted, true)],
  ["nofail false", "ok", () => assert.equal(mk({ size: 1 << 20, nofail: false }).nofailing, false)],
  ["debug 42 (not a string)", "invalid-argument", () => mk({ debug: any(42) })],
  ["debug 'bogus'", "invalid-argument", () => mk({ debug: "bogus" })],
  ["debug 'audit=100' (frames past 64)", "invalid-argument", () => mk({ debug: "audit=100" })],
  ["debug 'audit=0'", "invalid-argument", () => mk({ debug: "audit=0" })],
  ["debug 'firewall=big'", "invalid-argument", () => mk({ debug: "firewall=big" })],
  ["debug 'contents=-1'", "invalid-argument", () => mk({ debug: "contents=-1" })],
  ["debug ' default , verbose '", "ok", () => mk({ size: 1 << 20, debug: " default , nosignal " })],
  ["logging null (as not given)", "ok", () => mk({ size: 1 << 20, logging: any(null) })],
  ["logging 'transactions' (a typo)", "invalid-argument", () => mk({ logging: "transactions" })],
  ["logging 'fail=1.5k'", "invalid-argument", () => mk({ logging: "fail=1.5k" })],
  [
    "logging 'transaction=8k,fail'",
    "ok",
    () => mk({ size: 1 << 20, logging: "transaction=8k,fail" }),
  ],
  ["options {} (an object)", "invalid-argument", () => mk({ options: any({}) })],
  ["options 'nomagazine' (a typo)", "invalid-argument", () => mk({ options: "nomagazine" })],
  ["options 'nomagazines=1' (a flag takes no value)", "invalid-argument", () => {
    mk({ options: "nomagazines=1" });
  }],
  ["options 'size_add =24' (a key trimmed, as libumem trims the word)", "ok", () => {
    assert.ok(inspect(mk({ options: "size_add =24" })).status().options.includes("size_add=24"));
  }],
  ["options 'allocator=worst'", "invalid-argument", () => mk({ options: "allocator=worst" })],
  ["options 'allocator=toString'", "invalid-argument", () => mk({ options: "allocator=toString" })],
  // Sizes past 2^31 - 1 wrapped in the image's 32-bit words (a 4 GiB log ring was laid in a
  // few KiB and wrote over the heap's metadata; firewall=2g firewalled every buffer).
  ...["transaction=4g", "fail=4294967296", "contents=8g"].map((l): Row => [
    `logging '${l}'`,
    "invalid-argument",
    () => mk({ logging: l }),
  ]),
  ...["firewall=2g", "contents=4g", "maxverify=2g", "audit=16/4294967296"].map((d): Row => [
    `debug '${d}'`,
    "invalid-argument",
    () => mk({ debug: d }),
  ]),
  ["maxSize 2 MiB and no size: the default size is capped at it", "ok", () => {
    assert.equal(mk({ maxSize: 2 << 20 }).size, 2 << 20);
  }],
  ["logging 'transaction=1g' on a 4 MiB heap", "out-of-memory", () => {
    mk({ size: 4 << 20, maxSize: 4 << 20, logging: "transaction=1g" });
  }],
  ["options 'max_contention=3g'", "invalid-argument", () => mk({ options: "max_contention=3g" })],
  ["options 'max_contention=2147483648'", "invalid-argument", () => {
    mk({ options: "max_contention=2147483648" });
  }],
  ["options 'allocator' (no value)", "invalid-argument", () => mk({ options: "allocator" })],
  [
    "options 'reap_interval' (no value)",
    "invalid-argument",
    () => mk({ options: "reap_interval" }),
  ],
  ["options 'reap_interval=0'", "invalid-argument", () => mk({ options: "reap_interval=0" })],
  ["options 'reap_interval=1d'", "invalid-argument", () => mk({ options: "reap_interval=1d" })],
  ["options 'reap_interval=30'", "ok", () => mk({ size: 1 << 20, options: "reap_interval=30" })],
  ["options 'allocator=first'", "ok", () => mk({ size: 1 << 20, options: "allocator=first" })],
  ["debug 'mtbf' (no value)", "invalid-argument", () => mk({ debug: "mtbf" })],
  ["debug 'mtbf=-1'", "invalid-argument", () => mk({ debug: "mtbf=-1" })],
  ["debug 'guards=1' (a flag)", "invalid-argument", () => mk({ debug: "guards=1" })],
  ["debug 'checknull,noabort'", "ok", () => mk({ size: 1 << 20, debug: "checknull,noabort" })],
  ["options 'backend=brk'", "invalid-argument", () => mk({ options: "backend=brk" })],
  ["backend 'brk'", "invalid-argument", () => mk({ backend: any("brk") })],
  ["backend 1 (not a string)", "invalid-argument", () => mk({ backend: any(1) })],
  ["options 'concurrency=100'", "invalid-argument", () => mk({ options: "concurrency=100" })],
  ["options 'concurrency=0'", "invalid-argument", () => mk({ options: "concurrency=0" })],
  ["options 'size=1x'", "invalid-argument", () => mk({ options: "size=1x" })],
  ["options 'maxsize=4g'", "invalid-argument", () => mk({ options: "maxsize=4g" })],
  ["options 'size=1m,concurrency=4,allocator=best'", "ok", () => {
    const h = mk({ options: "size=1m,concurrency=4,allocator=best" });
    assert.equal(h.size, 1 << 20);
  }],
  ["options null (the argument)", "invalid-argument", () => Heap.create(any(null))],
  ["options 'big' (the argument)", "invalid-argument", () => Heap.create(any("big"))],
  ["an unknown option (maxsize for maxSize)", "invalid-argument", () => {
    mk(any({ size: 1 << 20, maxsize: 1 << 24 }));
  }],
  ["options undefined (the argument)", "ok", () => mk(undefined)],
]);

table("Heap.attach(sab)", [
  ["an ArrayBuffer", "invalid-argument", () => Heap.attach(any(new ArrayBuffer(1 << 16)))],
  ["a Uint8Array over the image", "invalid-argument", (f) => {
    Heap.attach(any(new Uint8Array(f.heap.buffer)));
  }],
  ["a string", "invalid-argument", () => Heap.attach(any("heap"))],
  ["undefined", "invalid-argument", () => Heap.attach(any(undefined))],
  ["null", "invalid-argument", () => Heap.attach(any(null))],
  ["an empty SharedArrayBuffer", "corrupt-image", () => Heap.attach(new SharedArrayBuffer(0))],
  ["a zeroed SharedArrayBuffer", "corrupt-image", () => {
    Heap.attach(new SharedArrayBuffer(1 << 20));
  }],
  ["an image of another format version", "corrupt-image", (f) => {
    Heap.attach(image(f, (u) => u[HDR_VERSION >> 2] = FORMAT_VERSION + 1));
  }],
  ["an image with a page size of 8192", "corrupt-image", (f) => {
    Heap.attach(image(f, (u) => u[HDR_PAGESIZE >> 2] = 8192));
  }],
  ["an image truncated to three pages", "corrupt-image", (f) => {
    Heap.attach(image(f, undefined, 3 * 4096));
  }],
  ["an image truncated to one page", "corrupt-image", (f) => {
    Heap.attach(image(f, undefined, 4096));
  }],
  ["an image with its root arena out of bounds", "corrupt-image", (f) => {
    Heap.attach(image(f, (u) => u[HDR_ROOT_ARENA >> 2] = 0x7ffffff0));
  }],
  ["an image with an odd root arena offset", "corrupt-image", (f) => {
    Heap.attach(image(f, (u) => u[HDR_ROOT_ARENA >> 2] += 2));
  }],
  ["a copy of a sound image", "ok", (f) => {
    const w = Heap.attach(image(f));
    assert.deepEqual(w.verify(), []);
  }],
  ["the live image", "ok", (f) => Heap.attach(f.heap.buffer).detach()],
]);

table("heap.detach(), twice", [
  ["detach then detach", "invalid-argument", (f) => {
    const w = Heap.attach(f.heap.buffer);
    w.detach();
    w.detach();
  }],
  ["detach, another worker takes the slot, detach again", "invalid-argument", (f) => {
    const w = Heap.attach(f.heap.buffer);
    w.detach();
    const v = Heap.attach(f.heap.buffer);
    assert.equal(v.slot, w.slot);
    try {
      w.detach();
    } finally {
      // the second worker's slot must still be its own
      const again = Heap.attach(f.heap.buffer);
      assert.notEqual(again.slot, v.slot);
      again.detach();
      v.detach();
    }
  }],
  ["detach once", "ok", (f) => Heap.attach(f.heap.buffer).detach()],
]);

table("heap.reclaimSlot(slot)", [
  ...numbers("slot", (f, n) => f.heap.reclaimSlot(n), "invalid-argument", ["0"]).map((
    [l, e, r],
  ): Row =>
    l === "slot 0"
      ? ["slot 0 (this handle's own: detach gives it back, not reclaimSlot)", "invalid-argument", r]
      : [l, e, r]
  ),
  ["slot 16 (past the table)", "invalid-argument", (f) => f.heap.reclaimSlot(16)],
  ["a free slot", "invalid-argument", (f) => f.heap.reclaimSlot(5)],
  ["a slot reclaimed already", "invalid-argument", (f) => {
    const w = Heap.attach(f.heap.buffer);
    f.heap.reclaimSlot(w.slot);
    f.heap.reclaimSlot(w.slot);
  }],
  ["a worker's slot, its magazines full", "ok", (f) => {
    const w = Heap.attach(f.heap.buffer);
    const c = w.cache("node");
    for (let i = 0; i < 5; i++) c.free(c.alloc());
    f.heap.reclaimSlot(w.slot);
  }],
]);

/** Rows for the root registry's address argument, as `addRoot` and `pin` check it. */
function rootAddresses(call: (f: Fixture, addr: number) => unknown): Row[] {
  return [
    ...numbers("address", (f, n) => call(f, n)),
    ["address -8", "invalid-argument", (f) => call(f, -8)],
    ["past the end", "invalid-argument", (f) => call(f, f.end + 64)],
    ["far past the end", "invalid-argument", (f) => call(f, 2 ** 31 - 8)],
  ];
}

table("heap.addRoot(addr, bytes)", [
  ...rootAddresses((f, p) => f.heap.addRoot(p, 8)),
  ...numbers("bytes", (f, n) => f.heap.addRoot(f.live, n), "invalid-argument", ["0"]),
  ["an odd address", "invalid-argument", (f) => f.heap.addRoot(f.live + 1, 8)],
  ["bytes 6 (not whole words)", "invalid-argument", (f) => f.heap.addRoot(f.live, 6)],
  ["a range running past the end", "invalid-argument", (f) => f.heap.addRoot(f.end - 8, 16)],
  ["inside the header (a range of words: allowed)", "ok", (f) => f.heap.addRoot(16, 8)],
  ["inside a free buffer (allowed)", "ok", (f) => f.heap.addRoot(f.freed, 64)],
  ["inside another cache's slab", "ok", (f) => f.heap.addRoot(f.foreign, 96)],
  ["a live buffer, then findleaks follows it", "ok", (f) => {
    f.heap.addRoot(f.live, 100 - 100 % 4);
    f.heap.u32[f.live >> 2] = f.a;
    f.heap.pin(f.live);
    assert.equal(inspect(f.heap).findleaks().total_buffers, 1); // `foreign` only
  }],
  ["a thousand roots (the table grows)", "ok", (f) => {
    for (let i = 0; i < 1000; i++) f.heap.addRoot(f.live, 4);
    for (let i = 0; i < 1000; i++) assert.equal(f.heap.removeRoot(f.live, 4), true);
  }],
]);

table("heap.removeRoot(addr, bytes), heap.unpin(addr)", [
  ...NUMBERS.map(([l, n]): Row => [`removeRoot address ${l}`, "ok", (f) => {
    assert.equal(f.heap.removeRoot(n as number, 8), false);
  }]),
  ...NUMBERS.map(([l, n]): Row => [`removeRoot bytes ${l}`, "ok", (f) => {
    assert.equal(f.heap.removeRoot(f.live, n as number), false);
  }]),
  ...NUMBERS.map(([l, n]): Row => [`unpin ${l}`, "ok", (f) => {
    assert.equal(f.heap.unpin(n as number), false);
  }]),
  ["removeRoot of a root of another length", "ok", (f) => {
    f.heap.addRoot(f.live, 8);
    assert.equal(f.heap.removeRoot(f.live, 4), false);
    assert.equal(f.heap.removeRoot(f.live, 8), true);
  }],
  ["removeRoot twice", "ok", (f) => {
    f.heap.addRoot(f.live, 8);
    assert.equal(f.heap.removeRoot(f.live, 8), true);
    assert.equal(f.heap.removeRoot(f.live, 8), false);
  }],
  ["unpin of a root range (not a pin)", "ok", (f) => {
    f.heap.addRoot(f.live, 8);
    assert.equal(f.heap.unpin(f.live), false);
  }],
  ["unpin twice", "ok", (f) => {
    f.heap.pin(f.live);
    assert.equal(f.heap.unpin(f.live), true);
    assert.equal(f.heap.unpin(f.live), false);
  }],
]);

table("heap.pin(addr)", [
  ...rootAddresses((f, p) => f.heap.pin(p)),
  ["an odd address (an interior pointer JS holds)", "ok", (f) => f.heap.pin(f.live + 1)],
  ["inside the header", "ok", (f) => f.heap.pin(16)],
  ["inside a free buffer", "ok", (f) => f.heap.pin(f.freed)],
  ["inside another cache's slab", "ok", (f) => f.heap.pin(f.foreign)],
]);

table("heap.createCache(name, size, options)", [
  ["name empty", "invalid-argument", (f) => f.heap.createCache("", 64)],
  // Stored as UTF-8 up to a NUL: "a\0b" and "a\0c" both read back as "a", no longer unique.
  ["name with a NUL", "invalid-argument", (f) => f.heap.createCache("a\0b", 64)],
  ["name with a lone surrogate", "invalid-argument", (f) => f.heap.createCache("x\uD800", 64)],
  ["name with a surrogate pair (an emoji)", "ok", (f) => {
    assert.equal(f.heap.createCache("cache \u{1F600}", 64).name, "cache \u{1F600}");
  }],
  ["name a number", "invalid-argument", (f) => f.heap.createCache(any(42), 64)],
  ["name null", "invalid-argument", (f) => f.heap.createCache(any(null), 64)],
  ["name of 32 bytes", "invalid-argument", (f) => f.heap.createCache("n".repeat(32), 64)],
  ["name of 31 bytes", "ok", (f) => f.heap.createCache("n".repeat(31), 64)],
  ["name of 11 characters, 33 bytes", "invalid-argument", (f) => {
    f.heap.createCache("é".repeat(11) + "x".repeat(11), 64);
  }],
  ["a name in use", "invalid-argument", (f) => f.heap.createCache("node", 64)],
  ["the name of a heap's own cache", "invalid-argument", (f) => {
    f.heap.createCache("umem_alloc_64", 64);
  }],
  ["the name of a destroyed cache", "ok", (f) => f.heap.createCache("dead", 32).alloc()],
  ...numbers("size", (f, n) => f.heap.createCache("n", n)),
  ["size 262145 (past 256 KiB)", "invalid-argument", (f) => f.heap.createCache("n", 262145)],
  ["size 262144", "ok", (f) => f.heap.createCache("n", 262144)],
  ["size 1", "ok", (f) => f.heap.createCache("n", 1).alloc()],
  ...numbers("align", (f, n) => f.heap.createCache("n", 64, { align: n })),
  ["align 3", "invalid-argument", (f) => f.heap.createCache("n", 64, { align: 3 })],
  ["align 8192", "invalid-argument", (f) => f.heap.createCache("n", 64, { align: 8192 })],
  ["align 4096", "ok", (f) => {
    assert.equal(f.heap.createCache("n", 64, { align: 4096 }).alloc() % 4096, 0);
  }],
  ["ctor 42", "invalid-argument", (f) => f.heap.createCache("n", 64, { ctor: any(42) })],
  ["dtor 'x'", "invalid-argument", (f) => f.heap.createCache("n", 64, { dtor: any("x") })],
  ["reclaim {}", "invalid-argument", (f) => f.heap.createCache("n", 64, { reclaim: any({}) })],
  ["ctor null", "invalid-argument", (f) => f.heap.createCache("n", 64, { ctor: any(null) })],
  ["nomagazines 'yes'", "invalid-argument", (f) => {
    f.heap.createCache("n", 64, { nomagazines: any("yes") });
  }],
  ["nomagazines true", "ok", (f) => {
    assert.equal(f.heap.createCache("n", 64, { nomagazines: true }).stats().magazineSize, 0);
  }],
  ["options null", "invalid-argument", (f) => f.heap.createCache("n", 64, any(null))],
  ["options 'big'", "invalid-argument", (f) => f.heap.createCache("n", 64, any("big"))],
  // Other keys are ignored: the options may be an object that carries the callbacks' own state.
  ["an unknown option (other keys are ignored: options may be any object with them)", "ok", (f) => {
    assert.equal(f.heap.createCache("n", 64, any({ aling: 4096, built: 0 })).stats().align, 16);
  }],
  ["a constructor that throws: the error is the caller's, the heap sound", "ok", (f) => {
    const c = f.heap.createCache("n", 64, {
      ctor: () => {
        throw new Error("the constructor's own");
      },
    });
    assert.throws(() => c.alloc(), /the constructor's own/);
  }],
  ["a constructor that refuses: out-of-memory, counted as a failure", "ok", (f) => {
    const c = f.heap.createCache("n", 64, { ctor: () => false });
    throwsKind(() => c.alloc(), "out-of-memory");
    assert.equal(c.stats().failures, 1);
    assert.equal(c.stats().inUse, 0);
  }],
]);

table("heap.cache(name, callbacks)", [
  ["no cache of that name", "invalid-argument", (f) => f.heap.cache("nope")],
  ["name a number", "invalid-argument", (f) => f.heap.cache(any(42))],
  ["name empty", "invalid-argument", (f) => f.heap.cache("")],
  ["a destroyed cache's name", "invalid-argument", (f) => f.heap.cache("dead")],
  ["ctor 42", "invalid-argument", (f) => f.heap.cache("node", { ctor: any(42) })],
  ["dtor 'x'", "invalid-argument", (f) => f.heap.cache("node", { dtor: any("x") })],
  ["reclaim {}", "invalid-argument", (f) => f.heap.cache("node", { reclaim: any({}) })],
  ["callbacks null", "invalid-argument", (f) => f.heap.cache("node", any(null))],
  ["callbacks 'x'", "invalid-argument", (f) => f.heap.cache("node", any("x"))],
  ["other keys (ignored)", "ok", (f) => f.heap.cache("node", any({ count: 0 }))],
  ["a ctor for a cache created without one (it would never run)", "invalid-argument", (f) => {
    f.heap.cache("node", { ctor: () => {} });
  }],
  ["a dtor for a cache created without one", "invalid-argument", (f) => {
    f.heap.cache("node", { dtor: () => {} });
  }],
  ["a reclaim callback for any cache", "ok", (f) => f.heap.cache("node", { reclaim: () => {} })],
  ["a heap's own cache", "ok", (f) => assert.equal(f.heap.cache("umem_alloc_64").bufsize, 64)],
  ["from another worker, with a constructor", "ok", (f) => {
    f.heap.createCache("built", 48, { ctor: () => {} });
    const w = Heap.attach(f.heap.buffer);
    let built = 0;
    const c = w.cache("built", { ctor: () => void built++ });
    c.free(c.alloc());
    assert.equal(built, 1);
    w.detach();
  }],
]);

table("the methods of a destroyed cache", [
  ["alloc", "destroyed", (f) => f.dead.alloc()],
  ["free", "destroyed", (f) => f.dead.free(f.a)],
  ["stats", "destroyed", (f) => f.dead.stats()],
  ["reap", "destroyed", (f) => f.dead.reap()],
  ["destroy", "destroyed", (f) => f.dead.destroy()],
  ["name", "destroyed", (f) => f.dead.name],
  ["bufsize", "destroyed", (f) => f.dead.bufsize],
  ["alloc, its record reused by a new cache", "destroyed", (f) => {
    f.heap.createCache("reuse", 32);
    f.before = figures(f.heap);
    f.dead.alloc();
  }],
  ["a handle from another worker, then destroyed by the creator", "destroyed", (f) => {
    const w = Heap.attach(f.heap.buffer);
    const c = w.cache("other");
    f.other.free(f.foreign);
    f.other.destroy();
    f.before = figures(f.heap);
    try {
      c.alloc();
    } finally {
      w.detach();
    }
  }],
  ["destroy of a heap's own cache", "invalid-argument", (f) => {
    f.heap.cache("umem_alloc_64").destroy();
  }],
  ["a live cache's name", "ok", (f) => assert.equal(f.cache.name, "node")],
]);

table("cache.free(ptr)", [
  ...numbers("address", (f, n) => f.cache.free(n)).map(([l, e, r]): Row => [
    l,
    l === "address 0" || l === "address -1" || l === "address 2**32" ? "bad-free" : e,
    r,
  ]),
  ["address -8", "bad-free", (f) => f.cache.free(-8)],
  ["an odd address", "bad-free", (f) => f.cache.free(f.a + 1)],
  // (A round of a loaded magazine, just popped: the checked fast path sees the free.)
  ["a live buffer's address plus a half", "invalid-argument", (f) => {
    f.cache.free(f.cache.alloc());
    const q = f.cache.alloc();
    try {
      f.cache.free(q + 0.5);
    } finally {
      f.cache.free(q);
    }
  }],
  ["past the end", "bad-free", (f) => f.cache.free(f.end + 64)],
  ["inside the header", "bad-free", (f) => f.cache.free(16)],
  ["a free buffer of another cache", "wrong-cache", (f) => f.cache.free(f.freed)],
  ["inside another cache's slab", "wrong-cache", (f) => f.cache.free(f.foreign)],
  ["inside a buffer (interior pointer)", "bad-free", (f) => f.cache.free(f.a + 8)],
  ["a second free", "duplicate-free", (f) => {
    const p = f.cache.alloc();
    f.cache.free(p);
    f.before = figures(f.heap);
    f.cache.free(p);
  }],
  ["its own buffer", "ok", (f) => f.cache.free(f.a)],
]);

table("heap.setNofailCallback(callback)", [
  ["42", "invalid-argument", (f) => f.heap.setNofailCallback(any(42))],
  ["null", "invalid-argument", (f) => f.heap.setNofailCallback(any(null))],
  ["'retry'", "invalid-argument", (f) => f.heap.setNofailCallback(any("retry"))],
  ["a function", "ok", (f) => f.heap.setNofailCallback(() => 1)],
  ["a callback that retries once on a nofail heap, after a free", "ok", () => {
    const heap = mk({ size: 1 << 20, maxSize: 1 << 20, nofail: true });
    const big = heap.alloc(400000);
    let calls = 0;
    heap.setNofailCallback(() => {
      calls++;
      heap.free(big, 400000);
      return "retry";
    });
    heap.alloc(600000);
    assert.equal(calls, 1);
  }],
]);

table("heap.arena(name)", [
  ["no arena of that name", "invalid-argument", (f) => f.heap.arena("nope")],
  ["a number", "invalid-argument", (f) => f.heap.arena(any(42))],
  ["empty", "invalid-argument", (f) => f.heap.arena("")],
  ["undefined", "invalid-argument", (f) => f.heap.arena(any(undefined))],
  ["the root arena", "ok", (f) => assert.equal(f.heap.arena("heap").name, "heap")],
  ["an arena made by the creator, from a worker", "ok", (f) => {
    const w = Heap.attach(f.heap.buffer);
    assert.equal(w.arena("ids").stats().total, 100);
    w.detach();
  }],
]);

table("inspect(target)", [
  ["null", "corrupt-image", () => inspect(any(null))],
  ["a string", "corrupt-image", () => inspect(any("heap"))],
  ["an object", "corrupt-image", () => inspect(any({}))],
  ["a SharedArrayBuffer", "corrupt-image", (f) => inspect(any(f.heap.buffer))],
  ["{ i32: 1 } (was a TypeError)", "corrupt-image", () => inspect(any({ i32: 1 }))],
  ["a heap", "ok", (f) => assert.ok(inspect(f.heap).caches().length > 0)],
]);

table("inspect(heap).walk(cache)", [
  ["no cache of that name", "invalid-argument", (f) => inspect(f.heap).walk("nope")],
  ["a number", "invalid-argument", (f) => inspect(f.heap).walk(any(42))],
  ["empty", "invalid-argument", (f) => inspect(f.heap).walk("")],
  ["a destroyed cache", "invalid-argument", (f) => inspect(f.heap).walk("dead")],
  ["a live cache", "ok", (f) => {
    const rows = inspect(f.heap).walk("node").filter((b) => b.state === "allocated");
    assert.deepEqual(rows.map((b) => b.address), [f.a]);
  }],
]);

/** Rows for whatis-like calls: every address gets an answer of the right kind. */
function whatisRows(): Row[] {
  const kind = (f: Fixture, addr: number) => inspect(f.heap).whatis(addr).kind;
  const none = (addr: (f: Fixture) => number): Row[2] => (f: Fixture) =>
    assert.equal(kind(f, addr(f)), "none");
  return [
    ["0", "ok", none(() => 0)],
    ["-1", "ok", none(() => -1)],
    ["-8", "ok", none(() => -8)],
    ["NaN", "ok", none(() => NaN)],
    ["Infinity", "ok", none(() => Infinity)],
    ["2**32", "ok", none(() => 2 ** 32)],
    ["past the end", "ok", none((f) => f.end + 64)],
    ["1.5 (rounded down: the header)", "ok", (f) => assert.equal(kind(f, 1.5), "metadata")],
    ['"8" (a string)', "invalid-argument", (f) => inspect(f.heap).whatis(any("8"))],
    ["undefined", "invalid-argument", (f) => inspect(f.heap).whatis(any(undefined))],
    ["inside the header", "ok", (f) => assert.equal(kind(f, 16), "metadata")],
    ["an odd address in a buffer", "ok", (f) => {
      const w = inspect(f.heap).whatis(f.a + 1);
      assert.equal(w.kind, "buffer");
      assert.equal(w.buffer, f.a);
      assert.equal(w.offset, 1);
    }],
    ["inside a free buffer", "ok", (f) => {
      const w = inspect(f.heap).whatis(f.freed);
      assert.equal(w.kind, "buffer");
      assert.notEqual(w.state, "allocated");
    }],
    ["inside another cache's slab", "ok", (f) => {
      assert.equal(inspect(f.heap).whatis(f.foreign).name, "other");
    }],
  ];
}

table("inspect(heap).whatis(addr)", whatisRows());

table("inspect(heap).bufctl(addr)", [
  ...NUMBERS.filter(([l]) => !l.includes("string")).map(([l, n]): Row => [
    `address ${l}`,
    "ok",
    (f) => assert.deepEqual(inspect(f.heap).bufctl(n as number), []),
  ]),
  ['"8" (a string)', "invalid-argument", (f) => inspect(f.heap).bufctl(any("8"))],
  ["a buffer without audit", "ok", (f) => assert.deepEqual(inspect(f.heap).bufctl(f.a), [])],
  ["a freed buffer with audit", "ok", () => {
    const heap = mk({ size: 1 << 20, debug: "audit,noabort" });
    const p = heap.alloc(10);
    heap.free(p, 10);
    assert.deepEqual(inspect(heap).bufctl(p + 3).map((t) => t.op), ["free", "alloc"]);
    assert.deepEqual(inspect(heap).bufctl(heap.size + 8), []);
  }],
]);

table("inspect(heap).log(filter)", [
  ["null", "invalid-argument", (f) => inspect(f.heap).log(any(null))],
  ["a string", "invalid-argument", (f) => inspect(f.heap).log(any("node"))],
  ["an unknown filter (slot for worker)", "invalid-argument", (f) => {
    inspect(f.heap).log(any({ slot: 0 }));
  }],
  ["cache 42", "invalid-argument", (f) => inspect(f.heap).log(any({ cache: 42 }))],
  ["buffer '8'", "invalid-argument", (f) => inspect(f.heap).log(any({ buffer: "8" }))],
  ["worker NaN", "invalid-argument", (f) => inspect(f.heap).log({ worker: NaN })],
  ["no log (logging off)", "ok", (f) => assert.deepEqual(inspect(f.heap).log(), [])],
  ["filters that match nothing", "ok", () => {
    const heap = mk({ size: 1 << 20, debug: "audit,noabort", logging: "transaction" });
    heap.free(heap.alloc(10), 10);
    const ins = inspect(heap);
    assert.equal(ins.log().length, 2);
    assert.deepEqual(ins.log({ cache: "nope" }), []);
    assert.deepEqual(ins.log({ buffer: -8 }), []);
    assert.deepEqual(ins.log({ worker: 63 }), []);
  }],
]);

table("inspect(heap).format*(records, limit)", [
  ["formatLog limit -1 (it showed all but one)", "invalid-argument", (f) => {
    inspect(f.heap).formatLog(undefined, -1);
  }],
  ["formatLog limit NaN", "invalid-argument", (f) => inspect(f.heap).formatLog(undefined, NaN)],
  ["formatLog of null", "invalid-argument", (f) => inspect(f.heap).formatLog(any(null))],
  ["formatContentsLog limit 1.5", "invalid-argument", (f) => {
    inspect(f.heap).formatContentsLog(undefined, 1.5);
  }],
  ["formatFailLog of a string", "invalid-argument", (f) => {
    inspect(f.heap).formatFailLog(any("x"));
  }],
  ["formatFindleaks of null", "invalid-argument", (f) => {
    inspect(f.heap).formatFindleaks(any(null));
  }],
  ["formatVerify of a string", "invalid-argument", (f) => inspect(f.heap).formatVerify(any("x"))],
  ["formatLog limit 0", "ok", (f) => {
    assert.match(inspect(f.heap).formatLog([], 0), /^transaction log: 0 records \(showing 0\)$/);
  }],
]);

// ---- snapshot files ----

const dir = mkdtempSync(join(tmpdir(), "umem-badinput-core-"));
let serial = 0;
/** Writes `bytes` to a new file of the temporary directory; returns its path. */
function file(bytes: Uint8Array): string {
  const path = join(dir, `s${serial++}.ums`);
  writeFileSync(path, bytes);
  return path;
}
/** The fixture heap's snapshot, `edit`ed. */
function snap(f: Fixture, edit: (b: Uint8Array) => void = () => {}): Uint8Array {
  const b = Snapshot.encode(f.heap);
  edit(b);
  return b;
}

/** Rows of damaged snapshot bytes, passed to `read`. */
function damaged(read: (f: Fixture, b: Uint8Array) => unknown): Row[] {
  return [
    ["empty", "corrupt-image", (f) => read(f, new Uint8Array(0))],
    ["10 bytes", "corrupt-image", (f) => read(f, new Uint8Array(10))],
    ["the header alone", "corrupt-image", (f) => read(f, snap(f).subarray(0, 64))],
    ["truncated by one byte", "corrupt-image", (f) => {
      const b = snap(f);
      read(f, b.subarray(0, b.length - 1));
    }],
    ["half the image", "corrupt-image", (f) => {
      const b = snap(f);
      read(f, b.subarray(0, b.length >> 1));
    }],
    ["a bad magic", "corrupt-image", (f) => read(f, snap(f, (b) => b[0] ^= 0xff))],
    ["a header byte altered", "corrupt-image", (f) => read(f, snap(f, (b) => b[12] ^= 1))],
    ["an image byte altered", "corrupt-image", (f) => {
      read(f, snap(f, (b) => b[b.length - 100] ^= 0x10));
    }],
    ["the image's CRC altered", "corrupt-image", (f) => {
      // Every header field is covered by the header's own CRC: altering the image CRC is
      // caught there; altering both (a forged header) by the image check.
      read(f, snap(f, (b) => b[b.length - 1] ^= 1));
    }],
    ["zeros of a snapshot's length", "corrupt-image", (f) => {
      read(f, new Uint8Array(snap(f).length));
    }],
    ["a sound snapshot", "ok", (f) => {
      const s = read(f, snap(f)) as Snapshot;
      assert.equal(inspect(s).walk("node").filter((b) => b.state === "allocated").length, 1);
    }],
  ];
}

describe("snapshot files", () => {
  table("Snapshot.decode(bytes)", [
    ...damaged((_, b) => Snapshot.decode(b)),
    ["a string", "invalid-argument", () => Snapshot.decode(any("UMEMSNAP"))],
    ["null", "invalid-argument", () => Snapshot.decode(any(null))],
    ["an ArrayBuffer", "invalid-argument", (f) => {
      Snapshot.decode(any(snap(f).buffer));
    }],
    ["an array of numbers", "invalid-argument", () => Snapshot.decode(any([1, 2, 3]))],
    ["a sound snapshot in a larger buffer (an offset view)", "ok", (f) => {
      const b = snap(f), big = new Uint8Array(b.length + 16);
      big.set(b, 8);
      assert.ok(inspect(Snapshot.decode(big.subarray(8, 8 + b.length))).caches().length > 0);
    }],
  ]);

  table("readSnapshot(path)", [
    ...damaged((_, b) => readSnapshot(file(b))),
    ["a missing file", "fs:ENOENT", () => readSnapshot(join(dir, "missing.ums"))],
    ["a directory", "fs:EISDIR", () => readSnapshot(dir)],
    ["path 42 (a file descriptor number)", "invalid-argument", () => readSnapshot(any(42))],
    ["path undefined", "invalid-argument", () => readSnapshot(any(undefined))],
    ["path empty", "invalid-argument", () => readSnapshot("")],
  ]);

  table("writeSnapshot(heap, path)", [
    ["a directory", "fs:EISDIR", (f) => writeSnapshot(f.heap, dir)],
    ["in a missing directory", "fs:ENOENT", (f) => {
      writeSnapshot(f.heap, join(dir, "no", "such", "x.ums"));
    }],
    ["path 42 (a file descriptor number)", "invalid-argument", (f) => {
      writeSnapshot(f.heap, any(42));
    }],
    ["path empty", "invalid-argument", (f) => writeSnapshot(f.heap, "")],
    ["heap null", "invalid-argument", () => writeSnapshot(any(null), join(dir, "x.ums"))],
    ["heap an object", "invalid-argument", () => writeSnapshot(any({}), join(dir, "x.ums"))],
    ["a snapshot read back, written again", "ok", (f) => {
      const p = file(snap(f));
      const q = join(dir, "again.ums");
      writeSnapshot(readSnapshot(p), q);
      assert.equal(inspect(readSnapshot(q)).walk("node").length > 0, true);
    }],
  ]);

  it("cleans up", () => rmSync(dir, { recursive: true, force: true }));
});
