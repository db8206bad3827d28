/**
 * A model-based fuzzer of `region`: every method (best, pool, last, debug, profile) over every
 * discipline (a umem heap, a growable buffer, a fixed buffer), with allocations, frees through
 * the region or a second handle attached to it, resizes with each of move, copy and clear,
 * sizes asked of blocks, `clear`, `compact`, `verify`, and frees, resizes and size queries of
 * addresses that are not live blocks (near a block, inside one, odd, a freed block, past the
 * end, inside the region record, negative, a buffer of the heap outside the region).
 *
 * The model keeps the live blocks (identity, address, size asked for), the pool's size (pool),
 * the last block (last) and the stat figures a call must move. Every block is filled with the
 * pattern of its identity (tests/fuzz/runner.ts) and checked before it is freed or resized, and
 * at the end. After every command the region's `stat()` must agree with the model: busy count,
 * busy bytes (the live blocks' sizes from their headers), the extent never below the busy
 * bytes, the most busy never falling; `size(p)` is the size asked for (debug, profile, pool) or
 * the block's usable size (best, last); no two live blocks overlap; `addr(p + k)` finds each.
 * A refused call must be refused with a kind the model justifies and leave `stat()` exactly as
 * it was. At the end of each list `region.verify()`, `check()` and `heap.verify()` are empty,
 * every block is freed, the region is closed, and a heap discipline's heap is back at the bytes
 * in use it started with; a closed region's buffer holds no region any more.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --target region --runs 500`.
 *
 * @module
 */

import fc from "fast-check";
import type { Heap } from "../../mod.ts";
import {
  bufferDiscipline,
  type Discipline,
  growableDiscipline,
  heapDiscipline,
  type MethodName,
  Region,
  type RegionStats,
} from "../../region/mod.ts";
import { BK_HDR, BK_HEAD, SIZE_MASK } from "../../region/layout.ts";
import { mk } from "../helpers.ts";
import {
  attempt,
  type Bytes,
  checkApart,
  checkPattern,
  expectClean,
  expectKind,
  fail,
  fillPattern,
  type Target,
} from "./runner.ts";

/** Where the region's memory comes from. */
export type DiscName = "heap" | "growable" | "buffer";

/** Kinds of address that are not a live block. */
export type BadAddr = "near" | "odd" | "freed" | "past" | "record" | "negative" | "foreign";

/** One command. `pick` indexes the live blocks modulo their number. */
export type RegionCmd =
  | {
    op: "open";
    method: MethodName;
    disc: DiscName;
    round: number;
    check: boolean;
    /** `VM_TRUST`: no lock, no checks; the list then makes no bad call. */
    trust?: boolean;
    /** A heap discipline's heap has guards (redzones after its buffers, freed ones filled). */
    guards?: boolean;
  }
  | { op: "alloc"; size: number; same: boolean }
  | { op: "free"; pick: number; other: boolean }
  | {
    op: "resize";
    pick: number;
    size: number;
    same: boolean;
    move: boolean;
    copy: boolean;
    clear: boolean;
  }
  | { op: "size"; pick: number }
  | { op: "clear" }
  | { op: "compact" }
  | { op: "verify" }
  | { op: "bad"; addr: BadAddr; via: "free" | "resize" | "size"; pick: number; d: number };

/** Bytes of a fixed buffer discipline. */
const BUFFER_BYTES = 1 << 18;
/** Most bytes of a growable discipline. */
const GROWABLE_MAX = 1 << 24;
/** Bytes of the heap under a heap discipline. */
const HEAP_BYTES = 1 << 23;

const sizeArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 64 }) },
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 600 }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 5000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 5000, max: 40000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2 ** 28, max: 2 ** 30 }) }, // never fits
);

const cmdArb: fc.Arbitrary<RegionCmd> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({ op: fc.constant("alloc" as const), size: sizeArb, same: fc.boolean() }),
  },
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant("free" as const), pick: fc.nat(), other: fc.boolean() }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("resize" as const),
      pick: fc.nat(),
      size: sizeArb,
      same: fc.boolean(),
      move: fc.oneof(
        { weight: 3, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      copy: fc.oneof(
        { weight: 3, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      clear: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("size" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: "clear" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "compact" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "verify" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("bad" as const),
      addr: fc.constantFrom<BadAddr>(
        "near",
        "near",
        "odd",
        "freed",
        "freed",
        "past",
        "record",
        "negative",
        "foreign",
      ),
      via: fc.constantFrom("free" as const, "free" as const, "resize" as const, "size" as const),
      pick: fc.nat(),
      d: fc.integer({ min: -40, max: 40 }).filter((d) => d !== 0),
    }),
  },
);

const openArb = fc.record({
  op: fc.constant("open" as const),
  method: fc.constantFrom<MethodName>("best", "pool", "last", "debug", "profile"),
  disc: fc.constantFrom<DiscName>("heap", "growable", "buffer"),
  round: fc.constantFrom(4096, 1 << 16),
  check: fc.boolean(),
  trust: fc.oneof(
    { weight: 4, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
  guards: fc.boolean(),
});

/** A live block of the model. */
interface Block {
  id: number;
  addr: number;
  /** The size asked for. */
  size: number;
}

/** The kinds a free, resize or size of an address that is no live block may be refused with. */
const BAD_KINDS = ["bad-free", "duplicate-free", "invalid-argument"] as const;

/** Runs one command list on a fresh region; throws on any disagreement with the model. */
export function runRegion(cmds: RegionCmd[]): void {
  const setup = cmds[0]?.op === "open" ? cmds[0] : {
    op: "open" as const,
    method: "best" as MethodName,
    disc: "growable" as DiscName,
    round: 4096,
    check: false,
  };
  const { method } = setup;
  const trust = setup.trust === true;
  let heap: Heap | null = null, foreign = 0, start = 0;
  let disc: Discipline;
  if (setup.disc === "heap") {
    heap = mk({ size: HEAP_BYTES, debug: setup.guards ? "guards,noabort" : "" });
    foreign = heap.alloc(64);
    heap.reap();
    start = heap.vmem.stats().inUse;
    disc = heapDiscipline(heap, setup.round);
  } else if (setup.disc === "growable") {
    disc = growableDiscipline({ maxSize: GROWABLE_MAX, round: setup.round });
  } else disc = bufferDiscipline(new SharedArrayBuffer(BUFFER_BYTES));
  const r = Region.open(disc, method, { check: setup.check && method === "debug", trust });
  const r2 = Region.attach(disc, r.address);
  const name = `${method}${trust ? " (trust)" : ""} over ${setup.disc}`;

  let u8 = new Uint8Array(r.buffer);
  let u32 = new Uint32Array(r.buffer);
  const bytes: Bytes = {
    sync() {
      if (u8.byteLength !== r.buffer.byteLength) {
        u8 = new Uint8Array(r.buffer);
        u32 = new Uint32Array(r.buffer);
      }
    },
    get u8() {
      return u8;
    },
  };
  const asked = method === "debug" || method === "profile" || method === "pool";
  const live: Block[] = [];
  const freed: number[] = [];
  let nextId = 1;
  /** pool: the size of its blocks, once fixed. */
  let poolSize = -1;
  /** last: the block free and resize accept. */
  let lastBlock: Block | null = null;
  let maxBusy = 0;

  /** The size of block `addr` from its header (header included). */
  const blockBytes = (addr: number) => {
    bytes.sync();
    return u32[(addr - BK_HDR + BK_HEAD) >> 2] & SIZE_MASK;
  };
  const stat = () => r.stat();
  /** Fails unless `b` is `a` (but for the free figures when `junk`: cached blocks may merge). */
  const same = (a: RegionStats, b: RegionStats, what: string, junk = false) => {
    const key = (s: RegionStats) => JSON.stringify(junk ? { ...s, freeCount: 0, freeBytes: 0 } : s);
    if (key(a) !== key(b)) {
      fail(`${name}: ${what} changed stat() from ${JSON.stringify(a)} to ${JSON.stringify(b)}`);
    }
  };
  /** The model's figures against the region's. */
  const checkStat = (what: string) => {
    const s = stat();
    if (s.busyCount !== live.length) {
      fail(`${name}: ${what}: busyCount ${s.busyCount}, the model has ${live.length} blocks`);
    }
    const bytesOf = live.reduce((t, b) => t + blockBytes(b.addr) - BK_HDR, 0);
    if (s.busyBytes !== bytesOf) {
      fail(`${name}: ${what}: busyBytes ${s.busyBytes}, the live blocks' headers say ${bytesOf}`);
    }
    if (s.maxBusy < maxBusy) fail(`${name}: ${what}: maxBusy fell from ${maxBusy} to ${s.maxBusy}`);
    if (s.maxBusy < s.busyBytes + BK_HDR * s.busyCount) {
      fail(`${name}: ${what}: maxBusy ${s.maxBusy} under what is busy now`);
    }
    maxBusy = s.maxBusy;
    if (s.extent < s.busyBytes + s.freeBytes) {
      fail(`${name}: ${what}: extent ${s.extent} < busy ${s.busyBytes} + free ${s.freeBytes}`);
    }
    if (s.method !== method) fail(`${name}: stat() says method ${s.method}`);
  };
  /** Every live block: its size, where addr() finds it, and no overlap of whole blocks. */
  const checkBlocks = (what: string, full: boolean) => {
    const spans: [number, number, number][] = live.map((b) => {
      const n = blockBytes(b.addr);
      if (n < b.size + BK_HDR) fail(`${name}: ${what}: block ${b.id} of ${b.size} B has ${n} B`);
      return [b.addr - BK_HDR, b.addr - BK_HDR + n, b.id];
    });
    spans.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i - 1][1] > spans[i][0]) {
        fail(`${name}: ${what}: blocks ${spans[i - 1][2]} and ${spans[i][2]} overlap`);
      }
    }
    if (!full) return;
    for (const b of live) {
      checkPattern(bytes, b.id, b.addr, b.size, `${name}: ${what}`);
      const n = r.size(b.addr);
      const want = asked ? b.size : blockBytes(b.addr) - BK_HDR;
      if (n !== want) fail(`${name}: ${what}: size(block ${b.id}) = ${n}, expected ${want}`);
      if (r.addr(b.addr + (b.size >> 1)) !== b.addr) {
        fail(`${name}: ${what}: addr() does not find block ${b.id} from inside it`);
      }
    }
  };
  /** A new block: 8-aligned, apart from every live one, filled. */
  const add = (addr: number, size: number, what: string, id = nextId++): Block => {
    if (addr <= 0 || addr % 8 !== 0) fail(`${name}: ${what} returned ${addr}`);
    checkApart(
      `${name}: ${what} of ${size} B`,
      addr - BK_HDR,
      addr - BK_HDR + blockBytes(addr),
      live.map((b) => [b.addr - BK_HDR, b.addr - BK_HDR + blockBytes(b.addr), `block ${b.id}`]),
    );
    const b = { id, addr, size };
    fillPattern(bytes, id, addr, size);
    live.push(b);
    const i = freed.indexOf(addr);
    if (i >= 0) freed.splice(i, 1);
    return b;
  };
  const drop = (b: Block) => {
    live.splice(live.indexOf(b), 1);
    freed.push(b.addr);
    if (freed.length > 32) freed.shift();
    if (lastBlock === b) lastBlock = null;
  };
  /** An out-of-memory refusal is justified only where memory is bounded and nearly used. */
  const justifyNomem = (kind: string, size: number, what: string) => {
    const s = stat();
    const cap = setup.disc === "buffer"
      ? BUFFER_BYTES
      : setup.disc === "heap"
      ? HEAP_BYTES
      : GROWABLE_MAX;
    if (kind !== "out-of-memory" || (s.busyBytes + 2 * size + 4096) * 2 < cap) {
      fail(`${name}: ${what} of ${size} B refused as ${kind} with ${s.busyBytes} B busy`);
    }
  };
  /** The block free and resize act on: the last one under `last`, else any. */
  const choose = (pick: number): Block | undefined => {
    if (live.length === 0) return undefined;
    if (method === "last" && lastBlock !== null && (trust || pick % 3 !== 0)) return lastBlock;
    if (method === "last" && trust) return undefined; // a trusted caller is never wrong
    return live[pick % live.length];
  };

  for (const c of cmds) {
    switch (c.op) {
      case "open":
        break;
      case "alloc": {
        const size = method === "pool" && c.same && poolSize >= 0 ? poolSize : c.size;
        const before = stat();
        const out: { value?: number } = {};
        const refused = attempt(["wrong-size", "out-of-memory"], () => r.alloc(size), out);
        if (refused === "wrong-size") {
          if (method !== "pool" || poolSize < 0 || size === poolSize) {
            fail(`${name}: alloc(${size}) refused as wrong-size (pool size ${poolSize})`);
          }
          same(before, stat(), "a refused alloc");
          break;
        }
        if (method === "pool" && poolSize >= 0 && size !== poolSize) {
          fail(`${name}: alloc(${size}) accepted in a pool of ${poolSize} B blocks`);
        }
        if (refused !== null) {
          justifyNomem(refused, size, "alloc");
          same(before, stat(), "an alloc with no memory", true); // cached blocks merged first
          break;
        }
        const b = add(out.value!, size, "alloc");
        if (method === "pool") poolSize = size;
        if (method === "last") lastBlock = b;
        if (stat().allocs !== before.allocs + 1) fail(`${name}: alloc not counted`);
        checkStat("alloc");
        break;
      }
      case "free": {
        const b = choose(c.pick);
        if (b === undefined) break;
        const h = c.other ? r2 : r;
        const before = stat();
        if (method === "last" && b !== lastBlock) {
          expectKind(`${name}: free of a block not the last`, ["bad-free"], () => h.free(b.addr));
          same(before, stat(), "a refused free");
          break;
        }
        checkPattern(bytes, b.id, b.addr, b.size, `${name}: before free`);
        h.free(b.addr);
        drop(b);
        if (stat().frees !== before.frees + 1) fail(`${name}: free not counted`);
        checkStat("free");
        break;
      }
      case "resize": {
        const b = choose(c.pick);
        if (b === undefined) break;
        const size = method === "pool" && c.same ? b.size : c.size;
        const before = stat();
        const old = r.size(b.addr);
        const opts = { move: c.move, copy: c.copy, clear: c.clear };
        checkPattern(bytes, b.id, b.addr, b.size, `${name}: before resize`);
        if (method === "last" && b !== lastBlock) {
          expectKind(
            `${name}: resize of a block not the last`,
            size === 0 ? ["bad-free"] : ["invalid-argument"],
            () => r.resize(b.addr, size, opts),
          );
          same(before, stat(), "a refused resize");
          break;
        }
        const out: { value?: number } = {};
        const refused = attempt(
          ["wrong-size", "out-of-memory"],
          () => r.resize(b.addr, size, opts),
          out,
        );
        if (refused === "wrong-size") {
          if (method !== "pool" || size === poolSize || size === 0) {
            fail(`${name}: resize to ${size} refused as wrong-size (pool size ${poolSize})`);
          }
          same(before, stat(), "a refused resize");
          checkPattern(bytes, b.id, b.addr, b.size, `${name}: after a refused resize`);
          break;
        }
        if (method === "pool" && size !== poolSize && size !== 0) {
          fail(`${name}: resize to ${size} accepted in a pool of ${poolSize} B blocks`);
        }
        if (refused !== null) {
          justifyNomem(refused, size, "resize");
          same(before, stat(), "a resize with no memory", true);
          checkPattern(bytes, b.id, b.addr, b.size, `${name}: after a refused resize`);
          break;
        }
        const q = out.value!;
        if (size === 0) {
          if (q !== 0) fail(`${name}: resize(p, 0) returned ${q}`);
          drop(b);
          checkStat("resize to 0");
          break;
        }
        if (q === 0) {
          // Refused in place without leave to move: nothing changed.
          if (c.move) fail(`${name}: resize ${b.size}→${size} (move allowed) returned 0`);
          same(before, stat(), "a resize refused in place", true);
          checkPattern(bytes, b.id, b.addr, b.size, `${name}: after a resize refused in place`);
          break;
        }
        if (!c.move && q !== b.addr) fail(`${name}: resize without move moved the block`);
        const after = stat();
        if (after.moves !== before.moves + (q !== b.addr ? 1 : 0)) {
          fail(`${name}: moves ${before.moves}→${after.moves} for ${b.addr}→${q}`);
        }
        if (after.copied < before.copied || (!c.copy && after.copied !== before.copied)) {
          fail(`${name}: copied ${before.copied}→${after.copied} (copy ${c.copy})`);
        }
        if (q === b.addr || c.copy) {
          checkPattern(bytes, b.id, q, Math.min(b.size, size), `${name}: resize ${b.size}→${size}`);
        }
        if (c.clear && size > old) {
          for (let i = old; i < size; i++) {
            if (u8[q + i] !== 0) fail(`${name}: resize with clear left byte +${i} of ${q}`);
          }
        }
        live.splice(live.indexOf(b), 1);
        if (q !== b.addr) {
          freed.push(b.addr);
          if (freed.length > 32) freed.shift();
        }
        const nb = add(q, size, "resize", b.id);
        if (lastBlock === b) lastBlock = nb;
        checkStat("resize");
        break;
      }
      case "size": {
        const b = choose(c.pick);
        if (b === undefined) break;
        const want = asked ? b.size : blockBytes(b.addr) - BK_HDR;
        if (r2.size(b.addr) !== want) fail(`${name}: size(block ${b.id}) is not ${want}`);
        break;
      }
      case "clear":
        for (const b of live) checkPattern(bytes, b.id, b.addr, b.size, `${name}: before clear`);
        r.clear();
        for (const b of [...live]) drop(b);
        poolSize = -1;
        lastBlock = null;
        checkStat("clear");
        break;
      case "compact": {
        const before = stat();
        const given = r.compact();
        const after = stat();
        if (!(given >= 0) || before.extent - after.extent !== given) {
          fail(
            `${name}: compact gave ${given} B, the extent went ${before.extent}→${after.extent}`,
          );
        }
        checkBlocks("compact", true);
        checkStat("compact");
        break;
      }
      case "verify":
        expectClean(`${name}: verify()`, r.verify());
        expectClean(`${name}: check()`, r.check().map((e) => e.message));
        if (heap !== null) expectClean(`${name}: heap.verify()`, heap.verify());
        break;
      case "bad": {
        if (trust) break; // a trusted region checks nothing
        bytes.sync();
        const base = live.length > 0 ? live[c.pick % live.length] : undefined;
        let a: number;
        switch (c.addr) {
          case "near":
            a = (base?.addr ?? r.address + 256) + 4 * c.d;
            break;
          case "odd":
            a = (base?.addr ?? r.address + 256) + 1;
            break;
          case "freed":
            a = freed.length > 0 ? freed[c.pick % freed.length] : r.address + 8 * c.d;
            break;
          case "past":
            a = r.buffer.byteLength + 8 * Math.abs(c.d);
            break;
          case "record":
            a = r.address + (Math.abs(c.d) & ~7);
            break;
          case "negative":
            a = -8 * Math.abs(c.d);
            break;
          case "foreign":
            a = foreign !== 0 ? foreign : u8.byteLength - 8;
            break;
        }
        if (a === 0 || live.some((b) => b.addr === a)) break;
        const before = stat();
        const size = method === "pool" && poolSize >= 0 ? poolSize : 16;
        expectKind(`${name}: ${c.via} of ${c.addr} address ${a}`, BAD_KINDS, () => {
          if (c.via === "free") r.free(a);
          else if (c.via === "resize") r.resize(a, size);
          else r.size(a);
        });
        same(before, stat(), `a refused ${c.via} of a ${c.addr} address`);
        break;
      }
    }
  }
  checkBlocks("at the end", true);
  checkStat("at the end");
  expectClean(`${name}: verify() at the end`, r.verify());
  expectClean(`${name}: check() at the end`, r.check().map((e) => e.message));
  if (heap !== null) expectClean(`${name}: heap.verify() at the end`, heap.verify());
  // Free everything (the last one first, under last), then close.
  while (live.length > 0) {
    const b = method === "last" && lastBlock !== null ? lastBlock : live[live.length - 1];
    if (method === "last" && b !== lastBlock) {
      r.clear();
      for (const x of [...live]) drop(x);
      break;
    }
    checkPattern(bytes, b.id, b.addr, b.size, `${name}: at the end`);
    r.free(b.addr);
    drop(b);
  }
  r.compact();
  checkStat("after freeing every block");
  expectClean(`${name}: verify() after freeing every block`, r.verify());
  if (!r.close()) fail(`${name}: close refused`);
  if (!trust) expectKind(`${name}: alloc after close`, ["destroyed"], () => r2.alloc(8));
  expectKind(
    `${name}: attach after close`,
    ["corrupt-image"],
    () => Region.attach(disc, r.address),
  );
  if (heap !== null) {
    expectClean(`${name}: heap.verify() after close`, heap.verify());
    heap.reap();
    const end = heap.vmem.stats().inUse;
    if (end !== start) fail(`${name}: heap in use ${end} B after close, ${start} B before open`);
    heap.free(foreign, 64);
    expectClean(`${name}: heap.verify() at the very end`, heap.verify());
  } else {
    // The buffer holds no region now: a new one opens in it.
    const again = Region.open(bufferDiscipline(r.buffer), "best");
    if (again.stat().busyCount !== 0) fail(`${name}: a region reopened after close has blocks`);
  }
}

/** Command lists: an open (method, discipline) then up to `max` commands. */
export function regionCommands(max = 120): fc.Arbitrary<RegionCmd[]> {
  return fc.tuple(openArb, fc.array(cmdArb, { minLength: 1, maxLength: max, size: "max" }))
    .map(([open, cmds]): RegionCmd[] => [open, ...cmds]);
}

/** The region fuzzer as a target of tests/fuzz/main.ts. */
export const regionTarget: Target<RegionCmd> = {
  name: "region",
  commands: regionCommands(),
  run: runRegion,
};
