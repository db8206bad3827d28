/**
 * Tests of the vmem layer (issue "Core I"): a fast-check model test of random operation
 * sequences over several arenas, unit tests of the policies, growth, import and destroy, and a
 * table of bad input. Runs under `deno test` and `bun test`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CorruptImageError,
  Heap,
  OutOfMemoryError,
  UmemError,
  type UmemErrorKind,
  Vmem,
  type VmemPolicy,
  type VmemSegment,
} from "../mod.ts";
import { HDR_SIZE, HDR_VERSION } from "../core/image.ts";
import { VM_HASH, VM_HASH0, VM_HASHMASK } from "../core/vmem.ts";

// ---------------------------------------------------------------------------------------------
// Helpers

const PAGE = 4096;
/** Each test arena gets its own 16 MiB region of addresses for the spans it is given. */
const REGION = 16 << 20;
/** Regions start past any heap the model test creates (its maxSize is 64 MiB). */
const REGION0 = 64 << 20;
/** A region holds 16 slots of 64 KiB; a span lies inside one slot. */
const SLOT = 1 << 16;
const POLICIES: VmemPolicy[] = ["instantfit", "bestfit", "nextfit"];

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
const isPow2 = (x: number) => Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;
const nextPow2 = (x: number) => 2 ** Math.ceil(Math.log2(x));
/** floor(log2(size)): the free list vmem keeps a free segment of `size` bytes on. */
const flIndex = (size: number) => 31 - Math.clz32(size);

/** Calls `fn` and checks it throws a UmemError of `kind`; returns the error. */
function throwsKind(fn: () => unknown, kind: UmemErrorKind, what = ""): UmemError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${what}: expected a UmemError '${kind}', nothing was thrown`);
  assert.ok(caught instanceof UmemError, `${what}: expected a UmemError, got ${caught}`);
  assert.equal(caught.kind, kind, `${what}: ${caught.message}`);
  if (kind === "out-of-memory") assert.ok(caught instanceof OutOfMemoryError, what);
  if (kind === "corrupt-image") assert.ok(caught instanceof CorruptImageError, what);
  assert.ok(caught.message.length > 0);
  return caught;
}

/** Whether `[addr, addr+size)` meets xalloc's constraints. */
function meets(
  addr: number,
  size: number,
  c: { align: number; phase: number; nocross: number; minaddr: number; maxaddr: number },
): boolean {
  if (addr % c.align !== c.phase) return false;
  if (
    c.nocross !== 0 && Math.floor(addr / c.nocross) !== Math.floor((addr + size - 1) / c.nocross)
  ) {
    return false;
  }
  if (addr < c.minaddr) return false;
  return c.maxaddr === 0 || addr + size <= c.maxaddr;
}

/**
 * The lowest address in the free segment `[start, end)` that meets the constraints, or -1.
 * A brute-force search over aligned addresses, written independently of vmem's `xfit`.
 */
function firstFit(
  start: number,
  end: number,
  size: number,
  c: { align: number; phase: number; nocross: number; minaddr: number; maxaddr: number },
): number {
  const lo = Math.max(start, c.minaddr);
  const hi = c.maxaddr === 0 ? end : Math.min(end, c.maxaddr);
  let addr = lo + ((((c.phase - lo) % c.align) + c.align) % c.align);
  for (; addr + size <= hi; addr += c.align) {
    if (meets(addr, size, c)) return addr;
  }
  return -1;
}

/** Whether `[addr, addr+size)` lies inside one of the segments. */
function inside(segs: { start: number; size: number }[], addr: number, size: number): boolean {
  return segs.some((f) => f.start <= addr && addr + size <= f.start + f.size);
}

/** A walk, split up and checked: segments tile each span exactly, no two free ones touch. */
interface Parsed {
  spans: VmemSegment[];
  free: VmemSegment[];
  alloc: VmemSegment[];
}

function parseWalk(segs: VmemSegment[], q: number, what: string): Parsed {
  const out: Parsed = { spans: [], free: [], alloc: [] };
  let i = 0, lastEnd = -1;
  while (i < segs.length) {
    const span = segs[i++];
    assert.equal(span.type, "span", `${what}: walk must start each span with a span entry`);
    assert.ok(span.size > 0, `${what}: empty span`);
    assert.ok(span.start >= lastEnd, `${what}: spans out of order or overlapping`);
    assert.equal(span.start % q, 0, `${what}: span start ${span.start} not a multiple of ${q}`);
    assert.equal(span.size % q, 0, `${what}: span size ${span.size} not a multiple of ${q}`);
    out.spans.push(span);
    const end = span.start + span.size;
    let pos = span.start, prevFree = false, nsegs = 0, nalloc = 0;
    while (i < segs.length && segs[i].type !== "span") {
      const s = segs[i++];
      assert.equal(s.start, pos, `${what}: gap or overlap at ${pos} (segment at ${s.start})`);
      assert.ok(s.size > 0, `${what}: empty segment at ${s.start}`);
      assert.equal(s.size % q, 0, `${what}: segment size ${s.size} not a multiple of ${q}`);
      pos += s.size;
      nsegs++;
      if (s.type === "free") {
        assert.ok(!prevFree, `${what}: two adjacent free segments at ${s.start}`);
        out.free.push(s);
      } else {
        nalloc++;
        out.alloc.push(s);
      }
      prevFree = s.type === "free";
    }
    assert.equal(pos, end, `${what}: segments do not tile span ${span.start}+${span.size}`);
    assert.ok(nsegs > 0, `${what}: span without segments`);
    if (span.imported) {
      assert.ok(nalloc > 0, `${what}: imported span ${span.start} is wholly free, not returned`);
    }
    lastEnd = end;
  }
  return out;
}

/** Bytes of an arena's hash table outside its record (0 while it uses the embedded one). */
function hashTableBytes(h: Heap, a: number): number {
  if (h.u32[(a + VM_HASH) >> 2] === a + VM_HASH0) return 0;
  return roundUp((h.u32[(a + VM_HASHMASK) >> 2] + 1) * 4, PAGE);
}

const sum = (xs: Iterable<number>) => {
  let t = 0;
  for (const x of xs) t += x;
  return t;
};

// ---------------------------------------------------------------------------------------------
// The model

interface Live {
  size: number;
  req: number;
}

/** A test arena and what the model expects of it. */
interface MArena {
  name: string;
  vm: Vmem;
  q: number;
  root: boolean;
  source: MArena | undefined;
  importSize: number;
  /** Base of this arena's address region (for spans given with `add`). */
  region: number;
  /** Spans added by the test: base → size. */
  spans: Map<number, number>;
  /** Live allocations: address → rounded and requested size. */
  live: Map<number, Live>;
  /** Imported spans as last seen in the walk: base → size. */
  imports: Map<number, number>;
  /** Addresses freed earlier, for duplicate-free probes. */
  freed: number[];
  allocs: number;
  frees: number;
  failures: number;
  /** Imports from this arena by other arenas, as seen in their walks. */
  childAllocs: number;
  childFrees: number;
  children: MArena[];
  dead: boolean;
  /** Arenas created before this one was destroyed (a later create may reuse its record). */
  deadAt: number;
  parsed: Parsed;
}

type XC = { align: number; phase: number; nocross: number; minaddr: number; maxaddr: number };

/** Whether vmem_xalloc must accept the parameters (as vmem_xalloc's own validation). */
function xallocValid(q: number, size: number, c: XC): boolean {
  if (size % q !== 0 || c.align % q !== 0 || c.phase % q !== 0 || c.nocross % q !== 0) {
    return false;
  }
  if (!isPow2(c.align) || c.phase >= c.align) return false;
  if (c.nocross !== 0) {
    if (!isPow2(c.nocross) || c.nocross < c.align || c.phase + size > c.nocross) return false;
  }
  return c.maxaddr === 0 || c.minaddr + size <= c.maxaddr;
}

/** A heap with a set of arenas and the model of each; `check()` compares them. */
class World {
  readonly heap: Heap;
  readonly arenas: MArena[] = [];
  readonly root: MArena;
  created = 0;

  constructor(options: { size?: number; maxSize?: number } = {}) {
    this.heap = Heap.create({
      size: options.size ?? 1 << 20,
      maxSize: options.maxSize ?? 64 << 20,
    });
    this.root = this.track(this.heap.vmem, PAGE, true, undefined, 0, 0);
    assert.equal(this.heap.vmem.stats().inUse, this.heap.metadataBytes, "a new heap");
    this.check();
  }

  private track(
    vm: Vmem,
    q: number,
    root: boolean,
    source: MArena | undefined,
    importSize: number,
    region: number,
  ): MArena {
    const a: MArena = {
      name: vm.name,
      vm,
      q,
      root,
      source,
      importSize,
      region,
      spans: new Map(),
      live: new Map(),
      imports: new Map(),
      freed: [],
      allocs: 0,
      frees: 0,
      failures: 0,
      childAllocs: 0,
      childFrees: 0,
      children: [],
      dead: false,
      deadAt: 0,
      parsed: { spans: [], free: [], alloc: [] },
    };
    source?.children.push(a);
    this.arenas.push(a);
    return a;
  }

  /** Creates an arena over `[base, base+size)` (no span when size is 0). */
  create(q: number, base: number, size: number): MArena {
    const idx = this.arenas.length;
    const name = `a${idx}`;
    const region = REGION0 + idx * REGION;
    const vm = Vmem.create(this.heap, name, { quantum: q, base: region + base, size });
    this.created++;
    const a = this.track(vm, q, false, undefined, 0, region);
    if (size > 0) a.spans.set(region + base, size);
    return a;
  }

  /** Creates an arena that imports from `src`. */
  createImport(src: MArena, q: number, importSize: number): MArena {
    const idx = this.arenas.length;
    const name = `a${idx}`;
    const vm = Vmem.create(this.heap, name, { quantum: q, source: src.vm, importSize });
    this.created++;
    return this.track(vm, q, false, src, importSize, REGION0 + idx * REGION);
  }

  /** Allocations the arena must hold: its own and the spans its children imported. */
  expectedAllocs(a: MArena): Map<number, number> {
    const m = new Map<number, number>();
    for (const [addr, l] of a.live) m.set(addr, l.size);
    for (const c of a.children) if (!c.dead) { for (const [b, s] of c.imports) m.set(b, s); }
    return m;
  }

  /** A tracked allocation (must succeed). */
  alloc(a: MArena, size: number, policy: VmemPolicy = "instantfit"): number {
    const addr = a.vm.alloc(size, policy);
    a.live.set(addr, { size: roundUp(size, a.q), req: size });
    a.allocs++;
    return addr;
  }

  /** A tracked xalloc (must succeed). */
  xalloc(a: MArena, size: number, c: Partial<XC> = {}): number {
    const addr = a.vm.xalloc(size, c);
    a.live.set(addr, { size, req: size });
    a.allocs++;
    return addr;
  }

  /** A tracked free (must succeed). */
  free(a: MArena, addr: number): void {
    const l = a.live.get(addr);
    assert.ok(l !== undefined, `free of untracked ${addr}`);
    a.vm.free(addr, l.req);
    a.live.delete(addr);
    a.freed.push(addr);
    a.frees++;
  }

  /** Frees everything the arena holds. */
  freeAll(a: MArena): void {
    for (const addr of [...a.live.keys()]) this.free(a, addr);
  }

  /** Destroys `a` (which must have no live children) and checks the leak report. */
  destroy(a: MArena): void {
    const bytes = sum([...a.live.values()].map((l) => l.size));
    const r = a.vm.destroy();
    assert.equal(r.leakedBytes, bytes);
    assert.equal(r.leakedSegments, a.live.size);
    assert.equal(r.message, bytes > 0 ? `vmem_destroy('${a.name}'): leaked ${bytes} bytes` : "");
    if (a.source !== undefined) a.source.childFrees += a.imports.size;
    a.imports.clear();
    a.live.clear();
    a.dead = true;
    a.deadAt = this.created;
  }

  /** Whether a destroyed arena's handle can be probed (its record has not been reused). */
  probeable(a: MArena): boolean {
    return a.dead && a.deadAt === this.created;
  }

  /** Compares every arena with the model, and runs the heap's own consistency check. */
  check(): void {
    assert.deepEqual(this.heap.verify(), [], "heap.verify()");
    const live = this.arenas.filter((a) => !a.dead);
    // Pass 1: walk every arena; note the spans each imported or returned since the last check.
    for (const a of live) {
      const p = parseWalk(a.vm.walk(), a.q, a.name);
      a.parsed = p;
      const now = new Map<number, number>();
      for (const s of p.spans) if (s.imported) now.set(s.start, s.size);
      if (a.source === undefined) {
        assert.equal(now.size, 0, `${a.name}: imported spans without a source`);
      } else {
        for (const [b, s] of now) {
          if (a.imports.get(b) === s) continue;
          a.source.childAllocs++;
          assert.ok(s >= a.importSize, `${a.name}: imported ${s} bytes, below importSize`);
        }
        for (const [b, s] of a.imports) if (now.get(b) !== s) a.source.childFrees++;
      }
      a.imports = now;
      if (!a.root) {
        const user = p.spans.filter((s) => !s.imported).map((s) => [s.start, s.size]);
        assert.deepEqual(
          new Map(user as [number, number][]),
          a.spans,
          `${a.name}: spans differ from those added`,
        );
      }
    }
    // Pass 2: statistics and allocated segments.
    for (const a of live) {
      const p = a.parsed, st = a.vm.stats(), what = a.name;
      assert.equal(st.name, a.name);
      assert.equal(st.quantum, a.q);
      assert.equal(st.total, sum(p.spans.map((s) => s.size)), `${what}: total`);
      assert.equal(
        st.imported,
        sum(p.spans.filter((s) => s.imported).map((s) => s.size)),
        `${what}: imported`,
      );
      assert.equal(st.inUse, sum(p.alloc.map((s) => s.size)), `${what}: inUse`);
      assert.equal(st.allocs - st.frees, p.alloc.length, `${what}: allocs - frees`);
      const want = this.expectedAllocs(a);
      const have = new Map(p.alloc.map((s) => [s.start, s.size]));
      if (a.root) {
        for (const [addr, size] of want) {
          assert.equal(have.get(addr), size, `${what}: allocation ${addr}+${size} missing`);
        }
        assert.equal(p.spans.length, 1, "the heap's arena has one span");
        assert.equal(st.total, this.heap.buffer.byteLength - p.spans[0].start, "heap total");
        assert.ok(st.failures >= a.failures);
      } else {
        assert.deepEqual(have, want, `${what}: allocated segments differ from the model`);
        assert.equal(st.inUse, sum([...want.values()]), `${what}: inUse`);
        assert.equal(st.allocs, a.allocs + a.childAllocs, `${what}: allocs`);
        assert.equal(st.frees, a.frees + a.childFrees, `${what}: frees`);
        if (a.children.length === 0) assert.equal(st.failures, a.failures, `${what}: failures`);
        else assert.ok(st.failures >= a.failures, `${what}: failures`);
      }
      // No two live allocations overlap (the model's own view).
      const sorted = [...a.live].sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < sorted.length; i++) {
        assert.ok(sorted[i - 1][0] + sorted[i - 1][1].size <= sorted[i][0], `${what}: overlap`);
      }
    }
  }

  /** Frees all, checks every span is one free segment, destroys every arena, checks leaks. */
  drain(): void {
    for (const a of [...this.arenas].reverse()) if (!a.dead) this.freeAll(a);
    this.check();
    for (const a of this.arenas) {
      if (a.dead || a.root) continue;
      const segs = a.vm.walk();
      for (let i = 0; i < segs.length; i += 2) {
        assert.equal(segs[i].type, "span", `${a.name}: span expected`);
        assert.equal(segs[i + 1]?.type, "free", `${a.name}: one free segment per span`);
        assert.equal(segs[i + 1].start, segs[i].start);
        assert.equal(segs[i + 1].size, segs[i].size);
      }
      const st = a.vm.stats();
      assert.equal(st.imported, 0, `${a.name}: imported spans not returned`);
      assert.equal(st.inUse, 0);
      assert.equal(st.total, sum(a.spans.values()));
    }
    for (const a of [...this.arenas].reverse()) if (!a.dead && !a.root) this.destroy(a);
    this.check();
    // Everything is freed and destroyed: the heap's arena holds only vmem's and the heap's own
    // records, which is what the heap reports as its metadata.
    assert.equal(this.heap.vmem.stats().inUse, this.heap.metadataBytes, "heap leak");
  }
}

// ---------------------------------------------------------------------------------------------
// Random operations

type Op =
  | { t: "create"; qi: number; slot: number; off: number; units: number }
  | { t: "import"; src: number; qi: number; importSize: number }
  | { t: "alloc"; a: number; units: number; slack: number; policy: VmemPolicy }
  | {
    t: "xalloc";
    a: number;
    units: number;
    alignExp: number;
    phaseSel: number;
    ncExp: number;
    minKind: number;
    minPick: number;
    minDelta: number;
    maxKind: number;
    maxExtra: number;
    bad: number;
  }
  | { t: "free"; a: number; pick: number }
  | { t: "badfree"; a: number; kind: number; pick: number }
  | { t: "add"; a: number; slot: number; off: number; units: number }
  | { t: "destroy"; a: number }
  | { t: "freeall"; a: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("create" as const),
      qi: fc.nat(2),
      slot: fc.nat(15),
      off: fc.nat(255),
      units: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 256 })),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("import" as const),
      src: fc.nat(),
      qi: fc.nat(3),
      importSize: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 16384 })),
    }),
  },
  {
    weight: 14,
    arbitrary: fc.record({
      t: fc.constant("alloc" as const),
      a: fc.nat(),
      units: fc.nat(),
      slack: fc.nat(),
      policy: fc.constantFrom(...POLICIES),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      t: fc.constant("xalloc" as const),
      a: fc.nat(),
      units: fc.nat(),
      alignExp: fc.nat(6),
      phaseSel: fc.nat(),
      ncExp: fc.constantFrom(0, 0, 1, 2, 3),
      minKind: fc.constantFrom(0, 0, 0, 1),
      minPick: fc.nat(),
      minDelta: fc.integer({ min: -8, max: 8 }),
      maxKind: fc.constantFrom(0, 0, 0, 1),
      maxExtra: fc.nat(64),
      bad: fc.nat(24),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({ t: fc.constant("free" as const), a: fc.nat(), pick: fc.nat() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("badfree" as const),
      a: fc.nat(),
      kind: fc.nat(3),
      pick: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant("add" as const),
      a: fc.nat(),
      slot: fc.nat(15),
      off: fc.nat(255),
      units: fc.integer({ min: 1, max: 256 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("destroy" as const), a: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("freeall" as const), a: fc.nat() }) },
);

const MAX_ARENAS = 20;

/** Runs one operation against the world, checking its result against the model. */
function step(w: World, op: Op): void {
  const n = w.arenas.length;
  if (op.t === "create") {
    if (n >= MAX_ARENAS) return;
    const q = [1, 8, 64][op.qi];
    w.create(q, op.slot * SLOT + op.off * q, op.units * q);
    return;
  }
  if (op.t === "import") {
    if (n >= MAX_ARENAS) return;
    const src = w.arenas[op.src % n];
    const q = Math.min([1, 8, 64, PAGE][op.qi], src.q);
    if (src.dead) {
      if (!w.probeable(src)) return;
      throwsKind(
        () => Vmem.create(w.heap, "x", { quantum: q, source: src.vm }),
        "destroyed",
        "import from a destroyed arena",
      );
      return;
    }
    w.createImport(src, q, op.importSize);
    return;
  }
  const a = w.arenas[op.a % n];
  if (a.dead) {
    // Every entry point refuses a destroyed arena (while its record has not been reused).
    if (!w.probeable(a)) return;
    const calls: Record<string, () => unknown> = {
      alloc: () => a.vm.alloc(8),
      xalloc: () => a.vm.xalloc(a.q),
      free: () => a.vm.free(a.region, 8),
      badfree: () => a.vm.walk(),
      add: () => a.vm.add(a.region, a.q),
      destroy: () => a.vm.destroy(),
      freeall: () => a.vm.stats(),
    };
    throwsKind(calls[op.t], "destroyed", `${op.t} on destroyed ${a.name}`);
    return;
  }
  const q = a.q;
  const pre = a.parsed;
  const preImports = new Map(a.imports);
  const preLen = w.heap.buffer.byteLength;
  /** Whether `[addr, addr+size)` is in a span imported (or, for the heap, grown) by this op. */
  const fresh = (addr: number, size: number) => {
    if (a.root) return addr + size > preLen;
    const spans = a.vm.walk().filter((s) => s.type === "span" && s.imported);
    return spans.some((s) =>
      !preImports.has(s.start) && s.start <= addr && addr + size <= s.start + s.size
    );
  };
  switch (op.t) {
    case "alloc": {
      const units = (op.units % (a.root ? 16 : 64)) + 1;
      const size = Math.max(1, units * q - (op.slack % q));
      const s = roundUp(size, q);
      const fits = pre.free.filter((f) => f.size >= s);
      let addr: number;
      try {
        addr = w.alloc(a, size, op.policy);
      } catch (e) {
        assert.ok(e instanceof OutOfMemoryError, `alloc: ${e}`);
        a.failures++;
        // Nothing fits in the arena, and its source could not supply an import either.
        const post = parseWalk(a.vm.walk(), q, a.name).free;
        assert.ok(!post.some((f) => f.size >= s), `${a.name}: OOM with a free fit for ${s}`);
        assert.ok(!a.root, "the heap's arena failed to grow");
        const src = a.source;
        if (src !== undefined) {
          assert.ok(!src.root, `${a.name}: import from the heap failed`);
          if (src.source === undefined) {
            const isz = roundUp(Math.max(s, a.importSize), src.q);
            const srcFree = parseWalk(src.vm.walk(), src.q, src.name).free;
            assert.ok(!srcFree.some((f) => f.size >= isz), `${a.name}: import of ${isz} possible`);
          }
        }
        return;
      }
      assert.equal(addr % q, 0, `${a.name}: ${addr} not a multiple of the quantum`);
      if (a.root) {
        assert.ok(inside(pre.free, addr, s) || fresh(addr, s), `heap: ${addr} was not free`);
      } else if (fits.length === 0) {
        assert.ok(a.source !== undefined, `${a.name}: allocated ${s} with no fit and no source`);
        assert.ok(fresh(addr, s), `${a.name}: ${addr} is not in a newly imported span`);
      } else {
        const chosen = fits.find((f) => f.start === addr);
        assert.ok(chosen !== undefined, `${a.name}: ${op.policy} ${addr} is not a fitting segment`);
        if (op.policy === "bestfit") {
          assert.equal(chosen.size, Math.min(...fits.map((f) => f.size)), "bestfit: not smallest");
        } else if (op.policy === "instantfit") {
          const lo = flIndex(s), start = isPow2(s) ? lo : lo + 1;
          const lists = pre.free.map((f) => flIndex(f.size)).filter((i) => i >= start);
          const want = lists.length > 0 ? Math.min(...lists) : lo;
          assert.equal(flIndex(chosen.size), want, "instantfit: not the first list that fits");
        }
      }
      return;
    }
    case "xalloc": {
      const size = ((op.units % 32) + 1) * q;
      let align = q * 2 ** (op.alignExp % (a.root ? 5 : 7));
      let phase = (op.phaseSel % (align / q)) * q;
      let nocross = op.ncExp === 0
        ? 0
        : Math.max(align, nextPow2(phase + size)) * 2 ** (op.ncExp - 1);
      const points = [a.region];
      for (const s of [...pre.spans, ...pre.free, ...pre.alloc]) {
        points.push(s.start, s.start + s.size);
      }
      const minaddr = op.minKind === 0
        ? 0
        : Math.max(0, points[op.minPick % points.length] + op.minDelta * q);
      let maxaddr = op.maxKind === 0 ? 0 : minaddr + size + op.maxExtra * q;
      let sz = size;
      switch (op.bad) {
        case 1:
          phase = align;
          break;
        case 2:
          align = 3 * q;
          break;
        case 3:
          nocross = align >= 2 * q ? align / 2 : 3 * align;
          break;
        case 4:
          maxaddr = Math.max(1, minaddr + size - 1);
          break;
        case 5:
          if (q > 1) sz = size + 1;
          break;
      }
      const c: XC = { align, phase, nocross, minaddr, maxaddr };
      const what = `${a.name}: xalloc(${sz}, ${JSON.stringify(c)})`;
      if (!xallocValid(q, sz, c)) {
        throwsKind(() => a.vm.xalloc(sz, c), "invalid-argument", what);
        return;
      }
      const fitBefore = pre.free.some((f) => firstFit(f.start, f.start + f.size, sz, c) >= 0);
      const eligible = nocross === 0 && minaddr === 0 && maxaddr === 0;
      let addr: number;
      try {
        addr = w.xalloc(a, sz, c);
      } catch (e) {
        assert.ok(e instanceof OutOfMemoryError, `${what}: ${e}`);
        a.failures++;
        const post = parseWalk(a.vm.walk(), q, a.name).free;
        assert.ok(
          !post.some((f) => firstFit(f.start, f.start + f.size, sz, c) >= 0),
          `${what}: OOM although a free segment fits`,
        );
        if (eligible) {
          assert.ok(!a.root, `${what}: the heap did not grow`);
          const src = a.source;
          if (src !== undefined) {
            assert.ok(!src.root, `${what}: import from the heap failed`);
            if (src.source === undefined) {
              const need = roundUp(Math.max(sz + align + phase, a.importSize), src.q);
              const srcFree = parseWalk(src.vm.walk(), src.q, src.name).free;
              assert.ok(!srcFree.some((f) => f.size >= need), `${what}: import possible`);
            }
          }
        }
        return;
      }
      assert.ok(meets(addr, sz, c), `${what} returned ${addr}, which violates them`);
      assert.equal(addr % q, 0);
      if (fitBefore && !a.root) {
        assert.ok(inside(pre.free, addr, sz), `${what}: ${addr} was not free`);
        assert.deepEqual(new Map(a.imports), preImports, `${what}: imported although it fit`);
      } else {
        assert.ok(inside(pre.free, addr, sz) || fresh(addr, sz), `${what}: ${addr} was not free`);
      }
      return;
    }
    case "free": {
      if (a.live.size === 0) return;
      const addr = [...a.live.keys()][op.pick % a.live.size];
      w.free(a, addr);
      return;
    }
    case "freeall":
      w.freeAll(a);
      return;
    case "badfree": {
      const before = a.vm.walk();
      const liveList = [...a.live];
      let addr: number, size = q, kind: UmemErrorKind;
      if (op.kind === 0) {
        addr = a.root ? w.heap.buffer.byteLength + PAGE : a.region + 15 * (1 << 20);
        kind = "bad-free";
      } else if (op.kind === 1) {
        if (liveList.length === 0) return;
        const [x, l] = liveList[op.pick % liveList.length];
        addr = x;
        size = l.size + q;
        kind = "wrong-size";
      } else if (op.kind === 2) {
        const big = liveList.filter(([, l]) => l.size > q);
        if (big.length === 0) return;
        addr = big[op.pick % big.length][0] + q;
        kind = "bad-free";
      } else {
        if (a.freed.length === 0) return;
        addr = a.freed[op.pick % a.freed.length];
        const seg = before.find((s) =>
          s.type !== "span" && s.start <= addr && addr < s.start + s.size
        );
        if (seg === undefined) kind = "bad-free";
        else if (seg.type === "free") kind = "duplicate-free";
        else if (seg.start === addr) return; // allocated again: a free would be legitimate
        else kind = "bad-free";
      }
      const e = throwsKind(() => a.vm.free(addr, size), kind, `${a.name}: free(${addr}, ${size})`);
      assert.equal(e.address, addr);
      // (The heap's arena may have given a page to the segment-record pool meanwhile.)
      if (!a.root) assert.deepEqual(a.vm.walk(), before, "a refused free changed the arena");
      return;
    }
    case "add": {
      const base = a.region + op.slot * SLOT + op.off * q, size = op.units * q;
      if (a.root) {
        throwsKind(() => a.vm.add(base, size), "invalid-argument", "add to the heap's arena");
        return;
      }
      const overlaps = pre.spans.some((s) => s.start < base + size && base < s.start + s.size);
      if (overlaps) {
        throwsKind(() => a.vm.add(base, size), "invalid-argument", "overlapping add");
        return;
      }
      a.vm.add(base, size);
      a.spans.set(base, size);
      return;
    }
    case "destroy": {
      if (a.root) {
        throwsKind(() => a.vm.destroy(), "invalid-argument", "destroy of the heap's arena");
        return;
      }
      if (a.children.some((c) => !c.dead)) return;
      w.destroy(a);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------

describe("vmem: model test", () => {
  it("random operation sequences over several arenas match the model", () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 80, size: "max" }), (ops) => {
        const w = new World();
        // Always at least one arena of each kind besides the heap's.
        w.create(8, SLOT, 64 * 64);
        w.createImport(w.root, 64, 0);
        w.check();
        for (const op of ops) {
          step(w, op);
          w.check();
        }
        w.drain();
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});

describe("vmem: policies", () => {
  /** An arena with holes of 24 bytes at 1024 and 40 bytes at 1056, and a free tail. */
  function holes() {
    const w = new World();
    const a = w.create(8, 1024, 256);
    const base = a.region + 1024;
    const h1 = w.alloc(a, 24), s1 = w.alloc(a, 8), h2 = w.alloc(a, 40), s2 = w.alloc(a, 8);
    assert.deepEqual([h1, s1, h2, s2], [base, base + 24, base + 32, base + 72]);
    w.free(a, h1);
    w.free(a, h2);
    w.check();
    return { w, a, base };
  }

  it("instantfit takes the first list whose every segment fits; bestfit the smallest hole", () => {
    const r: Record<string, number> = {};
    for (const policy of POLICIES) {
      const { w, a, base } = holes();
      r[policy] = w.alloc(a, 24, policy) - base;
      w.check();
      w.drain();
    }
    // instantfit: 24 is not a power of two, so lists from [32, 64) up: the 40-byte hole.
    assert.equal(r.instantfit, 32);
    // bestfit: the 24-byte hole fits exactly.
    assert.equal(r.bestfit, 0);
    // nextfit: continues after the last segment it allocated... which was none yet, so the
    // walk starts at the beginning of the arena.
    assert.equal(r.nextfit, 0);
  });

  it("instantfit takes an exact power-of-two list in constant time", () => {
    const { w, a, base } = holes();
    // 16 is a power of two: the list [16, 32) holds the 24-byte hole, all of whose members fit.
    assert.equal(w.alloc(a, 16, "instantfit"), base);
    w.check();
    w.drain();
  });

  it("nextfit does not reuse a freed lower segment until it wraps", () => {
    const w = new World();
    const a = w.create(8, 0, 64);
    const base = a.region;
    const x = w.alloc(a, 8, "nextfit"), y = w.alloc(a, 8, "nextfit"), z = w.alloc(a, 8, "nextfit");
    assert.deepEqual([x, y, z], [base, base + 8, base + 16]);
    w.free(a, x);
    // instantfit would take the freed 8 bytes at the base (an exact list); nextfit goes on.
    assert.equal(w.alloc(a, 8, "nextfit"), base + 24);
    assert.equal(w.alloc(a, 8, "nextfit"), base + 32);
    assert.equal(w.alloc(a, 16, "nextfit"), base + 40);
    // The rest of the span after the rotor holds 8 bytes; 16 wraps around... and there is
    // no 16-byte hole anywhere, so it fails.
    assert.throws(() => a.vm.alloc(16, "nextfit"), OutOfMemoryError);
    a.failures++;
    assert.equal(w.alloc(a, 8, "nextfit"), base + 56);
    // Now it wraps to the freed segment at the base.
    assert.equal(w.alloc(a, 8, "nextfit"), base);
    w.check();
    w.drain();
  });

  it("instantfit reuses the freed segment that nextfit passes over", () => {
    const w = new World();
    const a = w.create(8, 0, 64);
    const x = w.alloc(a, 8);
    w.alloc(a, 8);
    w.free(a, x);
    assert.equal(w.alloc(a, 8, "instantfit"), x);
    w.check();
    w.drain();
  });

  it("bestfit and instantfit differ on the heap's arena too", () => {
    const w = new World();
    const r = w.root;
    const p = [w.alloc(r, 3 * PAGE), w.alloc(r, PAGE), w.alloc(r, 2 * PAGE), w.alloc(r, PAGE)];
    w.free(r, p[0]); // a 3-page hole, list [8K, 16K)
    w.free(r, p[2]); // a 2-page hole, list [8K, 16K), now at its head
    // instantfit looks only at lists whose every member fits: from [16K, 32K) up.
    const i = w.alloc(r, 3 * PAGE, "instantfit");
    assert.ok(i > p[3], `instantfit took ${i}, not the free space past the holes`);
    w.free(r, i);
    const b = w.alloc(r, 3 * PAGE, "bestfit");
    assert.equal(b, p[0], "bestfit takes the exact 3-page hole");
    w.check();
    w.drain();
  });
});

describe("vmem: the heap's arena grows", () => {
  it("grows the buffer like sbrk, then fails at maxSize and stays usable", () => {
    const w = new World({ size: 1 << 16, maxSize: 1 << 22 });
    const heap = w.heap, r = w.root;
    const len0 = heap.buffer.byteLength, total0 = heap.vmem.stats().total;
    assert.ok(len0 < 1 << 20, `initial ${len0}`);
    const other = Heap.attach(heap.buffer);
    try {
      const big = w.alloc(r, 2 * len0);
      assert.ok(heap.buffer.byteLength > len0, "the buffer grew");
      assert.ok(heap.vmem.stats().total > total0, "the arena's total grew");
      assert.ok(big + 2 * len0 <= heap.buffer.byteLength);
      heap.u8[big + 2 * len0 - 1] = 7;
      // Another handle on the same buffer sees the growth at its next entry point.
      const o = other.vmem.alloc(PAGE);
      other.u8[big + 2 * len0 - 2] = 9;
      assert.equal(heap.u8[big + 2 * len0 - 2], 9);
      assert.equal(other.u8[big + 2 * len0 - 1], 7);
      r.live.set(o, { size: PAGE, req: PAGE });
      r.allocs++;
      w.check();
      // More than maxSize can hold.
      const fails0 = heap.vmem.stats().failures;
      throwsKind(() => heap.vmem.alloc(1 << 22), "out-of-memory", "alloc past maxSize");
      assert.equal(heap.vmem.stats().failures, fails0 + 1);
      // Fill the heap up to maxSize.
      const pages: number[] = [];
      for (;;) {
        try {
          pages.push(w.alloc(r, 16 * PAGE));
        } catch (e) {
          assert.ok(e instanceof OutOfMemoryError);
          break;
        }
      }
      assert.ok(heap.buffer.byteLength <= 1 << 22);
      assert.ok(heap.buffer.byteLength > (1 << 22) - 17 * PAGE, `${heap.buffer.byteLength}`);
      w.check();
      // Still usable: free one, allocate again.
      w.free(r, pages.pop()!);
      const again = w.alloc(r, 16 * PAGE);
      heap.u8[again] = 1;
      w.check();
      w.drain();
    } finally {
      other.detach();
    }
  });

  it("xalloc with a large alignment grows the heap to find an aligned address", () => {
    const w = new World({ size: 1 << 16, maxSize: 1 << 24 });
    const a = w.xalloc(w.root, PAGE, { align: 1 << 20, phase: 3 * PAGE });
    assert.equal(a % (1 << 20), 3 * PAGE);
    w.check();
    w.drain();
  });
});

describe("vmem: metadata accounting", () => {
  it("heap.metadataBytes stays exact after destroying an arena whose hash grew", () => {
    const heap = Heap.create({ size: 1 << 20 });
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
    const a = Vmem.create(heap, "big", { base: 1 << 20, size: 1 << 16, quantum: 8 });
    const xs: number[] = [];
    for (let i = 0; i < 1000; i++) xs.push(a.alloc(8));
    assert.ok(hashTableBytes(heap, a.addr) > 0, "precondition: the hash grew");
    for (const x of xs) a.free(x, 8);
    a.destroy();
    assert.equal(heap.vmem.stats().inUse, heap.metadataBytes);
  });
});

describe("vmem: address 0", () => {
  it("no span may hold address 0 (NULL): add refuses base 0", () => {
    const w = new World();
    const a = w.create(8, 0, 0);
    throwsKind(() => a.vm.add(0, 64), "invalid-argument", "add(0, 64)");
    a.vm.add(8, 64); // base 8 is fine
    a.spans.set(8, 64);
    const x = w.alloc(a, 8);
    assert.equal(x, 8);
    w.check();
    w.drain();
  });
});

describe("vmem: import and destroy", () => {
  it("an importing arena returns a span to its source as soon as it is wholly free", () => {
    const w = new World();
    const c = w.createImport(w.root, 64, 8192);
    // What the heap's arena holds beyond its own metadata.
    const held = () => w.heap.vmem.stats().inUse - w.heap.metadataBytes;
    const held0 = held();
    const x = w.alloc(c, 100), y = w.alloc(c, 100);
    assert.equal(c.vm.stats().imported, 8192);
    assert.equal(held(), held0 + 8192);
    w.check();
    w.free(c, x);
    assert.equal(c.vm.stats().imported, 8192);
    w.free(c, y);
    assert.equal(c.vm.stats().imported, 0);
    assert.equal(c.vm.stats().total, 0);
    assert.deepEqual(c.vm.walk(), []);
    assert.equal(held(), held0);
    w.check();
    // A request larger than importSize imports that much.
    const z = w.alloc(c, 3 * 8192);
    assert.equal(c.vm.stats().imported, 3 * 8192);
    w.free(c, z);
    assert.equal(c.vm.stats().imported, 0);
    w.check();
    w.drain();
  });

  it("imports from a source arena, through two levels", () => {
    const w = new World();
    const src = w.create(64, 0, 64 * 64);
    const mid = w.createImport(src, 64, 512);
    const leaf = w.createImport(mid, 8, 0);
    const xs = [w.alloc(leaf, 8), w.alloc(leaf, 24), w.alloc(leaf, 64)];
    w.check();
    assert.ok(mid.vm.stats().imported > 0);
    assert.ok(src.vm.stats().inUse > 0);
    for (const x of xs) w.free(leaf, x);
    w.check();
    assert.equal(leaf.vm.stats().imported, 0);
    assert.equal(mid.vm.stats().imported, 0);
    assert.equal(src.vm.stats().inUse, 0);
    w.drain();
  });

  it("destroy reports leaks as vmem_destroy('NAME'): leaked N bytes", () => {
    const w = new World();
    const a = w.create(8, 0, 4096);
    w.alloc(a, 24);
    w.alloc(a, 100);
    const r = a.vm.destroy();
    assert.equal(r.message, "vmem_destroy('a1'): leaked 128 bytes");
    assert.equal(r.leakedBytes, 128);
    assert.equal(r.leakedSegments, 2);
    a.live.clear();
    a.dead = true;
    a.deadAt = w.created;
    throwsKind(() => a.vm.alloc(8), "destroyed");
    throwsKind(() => w.heap.arena("a1"), "invalid-argument");
    // A clean arena reports nothing.
    const b = w.create(8, 0, 4096);
    w.free(b, w.alloc(b, 8));
    assert.deepEqual(b.vm.destroy(), { leakedBytes: 0, leakedSegments: 0, message: "" });
    b.dead = true;
    b.deadAt = w.created;
    w.check();
    w.drain();
  });

  it("destroy gives an importing arena's spans back, even with allocations left", () => {
    const w = new World();
    const src = w.create(8, 0, 8192);
    const c = w.createImport(src, 8, 1024);
    w.alloc(c, 16);
    w.alloc(c, 2048);
    w.check();
    assert.ok(src.vm.stats().inUse > 0);
    w.destroy(c);
    assert.equal(src.vm.stats().inUse, 0);
    w.check();
    w.drain();
  });

  it("another worker's handle finds an arena by name", () => {
    const w = new World();
    const a = w.create(8, 0, 4096);
    const other = Heap.attach(w.heap.buffer);
    try {
      const x = other.arena("a1").alloc(16);
      a.live.set(x, { size: 16, req: 16 });
      a.allocs++;
      w.check();
      const names = other.arenas().map((v) => v.name);
      assert.ok(names.includes("a1") && names.includes("heap"), `${names}`);
    } finally {
      other.detach();
    }
    w.drain();
  });
});

describe("vmem: the hash of allocated segments grows", () => {
  it("holds thousands of live segments in one arena, then frees them all", () => {
    const w = new World();
    const a = w.create(8, 0, 1 << 16);
    const N = 6000;
    const xs: number[] = [];
    for (let i = 0; i < N; i++) xs.push(w.alloc(a, 8));
    const buckets = w.heap.u32[(a.vm.addr + VM_HASHMASK) >> 2] + 1;
    assert.ok(buckets * 2 >= N, `hash has ${buckets} buckets for ${N} segments`);
    assert.notEqual(w.heap.u32[(a.vm.addr + VM_HASH) >> 2], a.vm.addr + VM_HASH0);
    w.check();
    // Free in a scrambled but fixed order.
    for (let i = 0; i < N; i++) {
      const j = (i * 7919) % N;
      w.free(a, xs[j]);
    }
    const st = a.vm.stats();
    assert.deepEqual([st.inUse, st.allocs, st.frees], [0, N, N]);
    w.check();
    w.drain();
  });

  it("the heap's arena holds thousands of pages", () => {
    const w = new World({ size: 1 << 20, maxSize: 32 << 20 });
    const xs: number[] = [];
    for (let i = 0; i < 3000; i++) xs.push(w.alloc(w.root, PAGE));
    w.check();
    for (const x of xs.reverse()) w.free(w.root, x);
    w.check();
    w.drain();
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input

describe("vmem: bad input", () => {
  let world: World | undefined;
  const W = () => (world ??= makeWorld());
  function makeWorld(): World {
    const w = new World();
    w.create(8, 0, 1 << 16); // a1
    w.createImport(w.root, 64, 0); // a2
    return w;
  }
  const base = () => W().arenas[1];
  const child = () => W().arenas[2];
  const root = () => W().root;

  const badNumbers: [string, unknown][] = [
    ["0", 0],
    ["-1", -1],
    ["NaN", NaN],
    ["1.5", 1.5],
    ["2**32", 2 ** 32],
    ["Infinity", Infinity],
    ['"8"', "8"],
  ];
  const asNum = (v: unknown) => v as number;

  type Row = { name: string; run: () => unknown; kind: UmemErrorKind };
  const rows: Row[] = [];
  for (const [label, v] of badNumbers) {
    for (const [an, arena] of [["heap", root], ["a1", base], ["a2", child]] as const) {
      rows.push({
        name: `${an}.alloc(${label})`,
        run: () => arena().vm.alloc(asNum(v)),
        kind: "invalid-argument",
      });
      rows.push({
        name: `${an}.xalloc(${label})`,
        run: () => arena().vm.xalloc(asNum(v)),
        kind: "invalid-argument",
      });
      if (label !== "0") {
        rows.push({
          name: `${an}.free(${label}, q)`,
          run: () => arena().vm.free(asNum(v), arena().q),
          kind: "invalid-argument",
        });
      }
      rows.push({
        name: `${an}.free(live, ${label})`,
        run: () => {
          const x = W().alloc(arena(), arena().q);
          return arena().vm.free(x, asNum(v));
        },
        kind: "invalid-argument",
      });
    }
  }
  rows.push(
    {
      name: "alloc with an unknown policy",
      run: () => base().vm.alloc(8, "worstfit" as VmemPolicy),
      kind: "invalid-argument",
    },
    { name: "free(0) of the heap's arena", run: () => root().vm.free(0, PAGE), kind: "bad-free" },
    {
      name: "free of an address in no span",
      run: () => base().vm.free(base().region + (8 << 20), 8),
      kind: "bad-free",
    },
    {
      name: "free past the heap's end",
      run: () => root().vm.free(W().heap.buffer.byteLength, PAGE),
      kind: "bad-free",
    },
    {
      name: "free of a wrong size",
      run: () => base().vm.free(W().alloc(base(), 64), 72),
      kind: "wrong-size",
    },
    {
      name: "free of a wrong size (smaller)",
      run: () => root().vm.free(W().alloc(root(), 2 * PAGE), PAGE),
      kind: "wrong-size",
    },
    {
      name: "free twice",
      run: () => {
        const w = W(), x = w.alloc(base(), 16);
        w.alloc(base(), 8); // keep the freed segment from coalescing with the tail
        w.free(base(), x);
        return base().vm.free(x, 16);
      },
      kind: "duplicate-free",
    },
    {
      name: "free twice in an importing arena",
      run: () => {
        const w = W(), x = w.alloc(child(), 64);
        w.alloc(child(), 64);
        w.free(child(), x);
        return child().vm.free(x, 64);
      },
      kind: "duplicate-free",
    },
    {
      name: "free inside an allocated segment",
      run: () => base().vm.free(W().alloc(base(), 64) + 8, 8),
      kind: "bad-free",
    },
    {
      name: "free inside an allocated page of the heap",
      run: () => root().vm.free(W().alloc(root(), 2 * PAGE) + PAGE, PAGE),
      kind: "bad-free",
    },
    {
      name: "xalloc phase >= align",
      run: () => base().vm.xalloc(8, { align: 16, phase: 16 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc align not a power of two",
      run: () => base().vm.xalloc(8, { align: 24 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc align below the quantum",
      run: () => base().vm.xalloc(8, { align: 4 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc phase not a multiple of the quantum",
      run: () => base().vm.xalloc(8, { align: 64, phase: 4 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc size not a multiple of the quantum",
      run: () => base().vm.xalloc(12),
      kind: "invalid-argument",
    },
    {
      name: "xalloc nocross < align",
      run: () => base().vm.xalloc(8, { align: 64, nocross: 32 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc nocross not a power of two",
      run: () => base().vm.xalloc(8, { nocross: 48 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc overconstrained (phase + size > nocross)",
      run: () => base().vm.xalloc(32, { align: 16, phase: 8, nocross: 32 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc size > nocross",
      run: () => base().vm.xalloc(128, { nocross: 64 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc minaddr + size > maxaddr",
      run: () => base().vm.xalloc(64, { minaddr: 4096, maxaddr: 4096 + 32 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc align 2**31",
      run: () => base().vm.xalloc(8, { align: 2 ** 31 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc negative minaddr",
      run: () => base().vm.xalloc(8, { minaddr: -8 }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc NaN phase",
      run: () => base().vm.xalloc(8, { phase: NaN }),
      kind: "invalid-argument",
    },
    {
      name: "xalloc with minaddr past every span",
      run: () => base().vm.xalloc(8, { minaddr: 1 << 30 }),
      kind: "out-of-memory",
    },
    {
      name: "xalloc with maxaddr below every span",
      run: () => base().vm.xalloc(8, { maxaddr: 4096 }),
      kind: "out-of-memory",
    },
    {
      name: "xalloc on the heap with maxaddr below the heap",
      run: () => root().vm.xalloc(PAGE, { maxaddr: PAGE }),
      kind: "out-of-memory",
    },
    {
      name: "xalloc alignment larger than any span",
      run: () => base().vm.xalloc(8, { align: 1 << 29, phase: 8 }),
      kind: "out-of-memory",
    },
    {
      name: "alloc larger than the arena",
      run: () => base().vm.alloc(1 << 17),
      kind: "out-of-memory",
    },
    {
      name: "alloc larger than the heap's maxSize",
      run: () => root().vm.alloc(1 << 30),
      kind: "out-of-memory",
    },
    {
      name: "add of an overlapping span",
      run: () => base().vm.add(base().region + 4096, 8),
      kind: "invalid-argument",
    },
    {
      name: "add of a misaligned span",
      run: () => base().vm.add(base().region + (4 << 20) + 4, 8),
      kind: "invalid-argument",
    },
    {
      name: "add of size 0",
      run: () => base().vm.add(base().region + (4 << 20), 0),
      kind: "invalid-argument",
    },
    {
      name: "add to the heap's arena",
      run: () => root().vm.add(1 << 30, PAGE),
      kind: "invalid-argument",
    },
    {
      name: "destroy of the heap's arena",
      run: () => root().vm.destroy(),
      kind: "invalid-argument",
    },
    {
      name: "create with quantum 3",
      run: () => Vmem.create(W().heap, "q3", { quantum: 3 }),
      kind: "invalid-argument",
    },
    {
      name: "create with an empty name",
      run: () => Vmem.create(W().heap, ""),
      kind: "invalid-argument",
    },
    {
      name: "create with a 32-byte name",
      run: () => Vmem.create(W().heap, "x".repeat(32)),
      kind: "invalid-argument",
    },
    {
      name: "create with a misaligned base",
      run: () => Vmem.create(W().heap, "mis", { base: 4100, size: 64 }),
      kind: "invalid-argument",
    },
    {
      name: "arena() of an unknown name",
      run: () => W().heap.arena("nope"),
      kind: "invalid-argument",
    },
  );
  // A destroyed arena refuses every entry point.
  let dead: Vmem | undefined;
  const D = () => {
    if (dead === undefined) {
      dead = Vmem.create(W().heap, "dead", { base: 1 << 30, size: 4096 });
      dead.destroy();
    }
    return dead;
  };
  rows.push(
    { name: "alloc on a destroyed arena", run: () => D().alloc(8), kind: "destroyed" },
    { name: "xalloc on a destroyed arena", run: () => D().xalloc(8), kind: "destroyed" },
    { name: "free on a destroyed arena", run: () => D().free((1 << 30) + 8, 8), kind: "destroyed" },
    { name: "add on a destroyed arena", run: () => D().add(1 << 29, 8), kind: "destroyed" },
    { name: "walk on a destroyed arena", run: () => D().walk(), kind: "destroyed" },
    { name: "stats on a destroyed arena", run: () => D().stats(), kind: "destroyed" },
    { name: "destroy twice", run: () => D().destroy(), kind: "destroyed" },
    {
      name: "create importing from a destroyed arena",
      run: () => Vmem.create(W().heap, "orphan", { source: D() }),
      kind: "destroyed",
    },
  );
  // Images that are not umem heaps.
  const copyOf = (sab: SharedArrayBuffer) => {
    const c = new SharedArrayBuffer(sab.byteLength);
    new Uint8Array(c).set(new Uint8Array(sab));
    return c;
  };
  rows.push(
    {
      name: "attach of an ArrayBuffer",
      run: () => Heap.attach(new ArrayBuffer(1 << 16) as unknown as SharedArrayBuffer),
      kind: "invalid-argument",
    },
    {
      name: "attach of null",
      run: () => Heap.attach(null as unknown as SharedArrayBuffer),
      kind: "invalid-argument",
    },
    {
      name: "attach of a zeroed SharedArrayBuffer",
      run: () => Heap.attach(new SharedArrayBuffer(1 << 16)),
      kind: "corrupt-image",
    },
    {
      name: "attach of a one-page SharedArrayBuffer",
      run: () => Heap.attach(new SharedArrayBuffer(4096)),
      kind: "corrupt-image",
    },
    {
      name: "attach of an image with another format version",
      run: () => {
        const c = copyOf(W().heap.buffer);
        const u32 = new Uint32Array(c);
        u32[HDR_VERSION >> 2] += 1;
        return Heap.attach(c);
      },
      kind: "corrupt-image",
    },
    {
      name: "attach of an image with a bad magic",
      run: () => {
        const c = copyOf(W().heap.buffer);
        new Uint8Array(c)[0] ^= 0xff;
        return Heap.attach(c);
      },
      kind: "corrupt-image",
    },
    {
      name: "attach of an image whose size field exceeds the buffer",
      run: () => {
        const c = copyOf(W().heap.buffer);
        new Uint32Array(c)[HDR_SIZE >> 2] = c.byteLength + PAGE;
        return Heap.attach(c);
      },
      kind: "corrupt-image",
    },
  );

  for (const row of rows) {
    it(`${row.name} → ${row.kind}`, () => {
      const w = W();
      const live = w.arenas.filter((a) => !a.dead);
      const failures = live.map((a) => a.vm.stats().failures);
      throwsKind(row.run, row.kind, row.name);
      // A refused call counts a failure only when it ran out of memory.
      live.forEach((a, i) => {
        const d = a.vm.stats().failures - failures[i];
        if (row.kind !== "out-of-memory") assert.equal(d, 0, `${a.name}: failure counted`);
        a.failures += d;
      });
      // The refused call changed nothing but what the row set up itself (the model knows
      // that), and every arena still works.
      w.check();
      for (const a of live) w.free(a, w.alloc(a, a.q));
      w.check();
    });
  }

  it("after every row: free all, every span is one free segment again, nothing leaked", () => {
    W().drain();
  });
});

// ---------------------------------------------------------------------------------------------
// Known bugs: each test shows a bug in core/ and is skipped until it is fixed (see the note on
// each). Remove the `.skip` once the fix lands.

describe("vmem: known bugs", () => {
  it("a Vmem.create refused for its span leaves no arena behind", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const inUse = heap.vmem.stats().inUse, names = heap.arenas().length;
    throwsKind(() => Vmem.create(heap, "zero", { base: 0, size: 64 }), "invalid-argument");
    throwsKind(
      () => Vmem.create(heap, "huge", { base: 1 << 30, size: 1 << 30 }),
      "invalid-argument",
    );
    assert.equal(heap.arenas().length, names, "no arena registered");
    throwsKind(() => heap.arena("zero"), "invalid-argument");
    assert.equal(heap.vmem.stats().inUse, inUse, "the record was given back");
    assert.equal(heap.metadataBytes, inUse);
  });

  it("an arena with a larger quantum than its source still returns aligned addresses", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const src = Vmem.create(heap, "src8", { base: 8, size: 4096, quantum: 8 });
    const c = Vmem.create(heap, "c64", { quantum: 64, source: src, importSize: 100 });
    const x = c.alloc(64);
    assert.equal(x % 64, 0, `got ${x}`);
    for (const s of c.walk()) assert.equal(s.size % 64, 0, `segment ${s.start}+${s.size}`);
    c.free(x, 64);
  });

  it("a stale handle stays destroyed after its record is reused", () => {
    const heap = Heap.create({ size: 1 << 20 });
    const old = Vmem.create(heap, "old", { base: 4096, size: 4096 });
    old.destroy();
    const fresh = Vmem.create(heap, "new", { base: 8192, size: 4096 });
    assert.equal(fresh.addr, old.addr, "precondition: the record was reused");
    throwsKind(() => old.alloc(8), "destroyed", "stale handle");
    assert.equal(fresh.stats().allocs, 0);
  });

  it("running out of segment records leaves the arena consistent", () => {
    const heap = Heap.create({ size: 1 << 16, maxSize: 1 << 19 });
    const ids = Vmem.create(heap, "ids", { base: 8, size: 1 << 20, quantum: 1 });
    const pages: number[] = [];
    for (;;) {
      try {
        pages.push(heap.vmem.alloc(PAGE));
      } catch {
        break;
      }
    }
    let failed = false;
    for (let i = 0; i < 100_000 && !failed; i++) {
      try {
        ids.alloc(1);
      } catch (e) {
        assert.ok(e instanceof OutOfMemoryError);
        failed = true;
      }
    }
    assert.ok(failed, "precondition: the pool ran dry");
    assert.deepEqual(heap.verify(), []);
    parseWalk(ids.walk(), 1, "ids");
    // Give the heap pages back so that the pool can refill: the arena, nearly all free
    // according to its walk, must now allocate.
    for (const p of pages) heap.vmem.free(p, PAGE);
    const x = ids.alloc(1);
    assert.ok(x > 0);
  });
});
