/**
 * The vmem model: a model of every arena's segments (`World`), random operations over several
 * arenas (`opArb`, `step`) that check the real arenas against it after each step, and the
 * helpers the vmem tests share. `tests/vmem_test.ts` runs it as a property test, and
 * `tests/fuzz/main.ts --target vmem` as a fuzzer.
 *
 * @module
 */
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
} from "../../mod.ts";
import { VM_HASH, VM_HASH0, VM_HASHMASK } from "../../core/vmem.ts";
import type { Target } from "./runner.ts";
// ---------------------------------------------------------------------------------------------
// Helpers

export const PAGE = 4096;
/** Each test arena gets its own 16 MiB region of addresses for the spans it is given. */
export const REGION = 16 << 20;
/** Regions start past any heap the model test creates (its maxSize is 64 MiB). */
export const REGION0 = 64 << 20;
/** A region holds 16 slots of 64 KiB; a span lies inside one slot. */
export const SLOT = 1 << 16;
export const POLICIES: VmemPolicy[] = ["instantfit", "bestfit", "nextfit", "firstfit"];

export const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
export const isPow2 = (x: number) => Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;
export const nextPow2 = (x: number) => 2 ** Math.ceil(Math.log2(x));
/** floor(log2(size)): the free list vmem keeps a free segment of `size` bytes on. */
export const flIndex = (size: number) => 31 - Math.clz32(size);

/** Calls `fn` and checks it throws a UmemError of `kind`; returns the error. */
export function throwsKind(fn: () => unknown, kind: UmemErrorKind, what = ""): UmemError {
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
export function meets(
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
export function firstFit(
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
export function inside(
  segs: { start: number; size: number }[],
  addr: number,
  size: number,
): boolean {
  return segs.some((f) => f.start <= addr && addr + size <= f.start + f.size);
}

/** A walk, split up and checked: segments tile each span exactly, no two free ones touch. */
export interface Parsed {
  spans: VmemSegment[];
  free: VmemSegment[];
  alloc: VmemSegment[];
}

export function parseWalk(segs: VmemSegment[], q: number, what: string): Parsed {
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
export function hashTableBytes(h: Heap, a: number): number {
  if (h.u32[(a + VM_HASH) >> 2] === a + VM_HASH0) return 0;
  return roundUp((h.u32[(a + VM_HASHMASK) >> 2] + 1) * 4, PAGE);
}

export const sum = (xs: Iterable<number>) => {
  let t = 0;
  for (const x of xs) t += x;
  return t;
};

// ---------------------------------------------------------------------------------------------
// The model

export interface Live {
  size: number;
  req: number;
}

/** A test arena and what the model expects of it. */
export interface MArena {
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

export type XC = {
  align: number;
  phase: number;
  nocross: number;
  minaddr: number;
  maxaddr: number;
};

/** Whether vmem_xalloc must accept the parameters (as vmem_xalloc's own validation). */
export function xallocValid(q: number, size: number, c: XC): boolean {
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
export class World {
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
        assert.equal(st.total, this.heap.size - p.spans[0].start, "heap total");
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

export type Op =
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

export const opArb: fc.Arbitrary<Op> = fc.oneof(
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

export const MAX_ARENAS = 20;

/** Runs one operation against the world, checking its result against the model. */
export function step(w: World, op: Op): void {
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
  const preLen = w.heap.size;
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
        } else if (op.policy === "firstfit") {
          assert.equal(chosen.start, Math.min(...fits.map((f) => f.start)), "firstfit: not lowest");
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
        addr = a.root ? w.heap.size + PAGE : a.region + 15 * (1 << 20);
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

/** The vmem fuzz target: command lists over several arenas against the model. */
export const vmemTarget: Target<Op> = {
  name: "vmem",
  commands: fc.array(opArb, { minLength: 1, maxLength: 120, size: "max" }),
  run(ops: Op[]): void {
    const w = new World();
    w.create(8, SLOT, 64 * 64);
    w.createImport(w.root, 64, 0);
    w.check();
    for (const op of ops) {
      step(w, op);
      w.check();
    }
    w.drain();
  },
};
