/**
 * A data-processing job with a memory context per stage and budgets, as PostgreSQL runs a
 * query: a generated CSV of orders (1,000,000 rows by default) is read and parsed in batches,
 * grouped by (region, product, day) into a hash table, and counted by distinct customer per
 * region. Each stage allocates in its own context under the job's; the per-batch contexts are
 * reset after every batch, and the distinct-customer stage, which wants far more memory than
 * its budget allows, stops with PostgreSQL's `out of memory` error. The job prints the error
 * and the stats tree at that moment, folds the customers counted so far into an approximate
 * count (HyperLogLog, 4 KiB per region) in a new, small context, deletes the stage whole, and
 * finishes with the approximation.
 *
 *     deno run examples/budget_job.ts [rows]
 *     bun examples/budget_job.ts [rows]
 *
 * @module
 */
import { Heap } from "../mod.ts";
import {
  BudgetExceededError,
  memoryContextStats,
  palloc,
  palloc0,
  pfree,
  switchTo,
  topContext,
} from "../budget/mod.ts";

const REGIONS = ["north", "south", "east", "west", "centre", "coast", "hills", "islands"];
const PRODUCTS = 50, DAYS = 365, CUSTOMERS = 4_000_000, BATCH = 20_000;
const COMMA = 44, DOT = 46, NEWLINE = 10;

/** murmur3's finalizer: a well-mixed 32-bit hash of `x`. */
function mix(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A deterministic batch of CSV lines: `order,region,product,day,quantity,price,customer`. */
function csvBatch(first: number, n: number): string {
  let out = "";
  for (let i = first; i < first + n; i++) {
    const a = mix(3 * i + 1), b = mix(3 * i + 2), c = mix(3 * i + 3);
    const region = REGIONS[a % REGIONS.length], product = (a >>> 8) % PRODUCTS;
    const day = b % DAYS, qty = 1 + ((b >>> 16) % 9);
    const price = (50 + (c % 9950)) / 100, customer = (c >>> 4) % CUSTOMERS;
    out += `${i},${region},${product},${day},${qty},${price.toFixed(2)},${customer}\n`;
  }
  return out;
}

/** An open-addressing hash set of non-negative int32 keys in one chunk (slot 0 = empty). */
class IntSet {
  ptr = 0;
  cap = 0;
  size = 0;
  constructor(private heap: Heap, cap: number) {
    this.ptr = palloc0(cap * 4);
    this.cap = cap;
  }
  /** Adds `key`; doubles the table (palloc + copy) when it is half full. */
  add(key: number): void {
    if (2 * (this.size + 1) > this.cap) this.grow();
    const i32 = this.heap.i32, base = this.ptr >> 2, k = key + 1;
    let i = Math.imul(k, 0x9e3779b1) >>> 0 & (this.cap - 1);
    for (;;) {
      const v = i32[base + i];
      if (v === k) return;
      if (v === 0) {
        i32[base + i] = k;
        this.size++;
        return;
      }
      i = (i + 1) & (this.cap - 1);
    }
  }
  private grow(): void {
    const old = this.ptr, oldCap = this.cap;
    this.ptr = palloc0(oldCap * 8); // may throw BudgetExceededError: nothing changed yet
    this.cap = oldCap * 2;
    this.size = 0;
    const i32 = this.heap.i32;
    for (let i = 0; i < oldCap; i++) {
      const v = i32[(old >> 2) + i];
      if (v !== 0) this.add(v - 1);
    }
    pfree(old);
  }
}

/** HyperLogLog with 2^12 one-byte registers (about 1.6% standard error). */
function hllAdd(heap: Heap, regs: number, key: number): void {
  const h = Math.imul(key ^ (key >>> 16), 0x45d9f3b) >>> 0;
  const h2 = Math.imul(h ^ (h >>> 13), 0x119de1f3) >>> 0;
  const idx = h2 >>> 20, rest = (h2 << 12) | 0x800;
  const rank = Math.clz32(rest) + 1;
  if (rank > heap.u8[regs + idx]) heap.u8[regs + idx] = rank;
}

function hllCount(heap: Heap, regs: number): number {
  const m = 4096;
  let sum = 0, zeros = 0;
  for (let i = 0; i < m; i++) {
    sum += 2 ** -heap.u8[regs + i];
    if (heap.u8[regs + i] === 0) zeros++;
  }
  const e = (0.7213 / (1 + 1.079 / m)) * m * m / sum;
  return e <= 2.5 * m && zeros > 0 ? m * Math.log(m / zeros) : e;
}

/** Runs the job over `rows` generated rows, printing as it goes. */
export function runJob(rows: number, print: (line: string) => void = console.log): void {
  const t0 = performance.now();
  const heap = Heap.create({ size: 16 << 20, maxSize: 256 << 20, debug: "", logging: "" });
  const top = topContext(heap);
  const job = top.create("job", { budget: 64 << 20 });
  const read = job.create("read batch"); // CSV text of one batch; reset per batch
  const parse = job.create("parse batch"); // its columns; reset per batch
  const group = job.create("group by region, product, day", { budget: 16 << 20 });
  let distinct = job.create("distinct customers", { budget: 4 << 20 });

  // The hash table of groups: open addressing over (key, rows, quantity, revenue) records.
  const old = switchTo(group);
  let gCap = 1 << 12, gSize = 0, gTab = palloc0(gCap * 32);
  const gInsert = (key: number, qty: number, revenue: number) => {
    if (4 * (gSize + 1) > 3 * gCap) {
      const oldTab = gTab, oldCap = gCap;
      gTab = palloc0(gCap * 64); // in "group" (current while the table grows)
      gCap *= 2;
      gSize = 0;
      for (let i = 0; i < oldCap; i++) {
        const r = oldTab + i * 32;
        if (heap.i32[r >> 2] !== 0) {
          gPut(
            heap.i32[r >> 2],
            heap.f64[(r + 8) >> 3],
            heap.f64[(r + 16) >> 3],
            heap.f64[(r + 24) >> 3],
          );
        }
      }
      pfree(oldTab);
    }
    gPut(key + 1, 1, qty, revenue);
  };
  const gPut = (k: number, n: number, qty: number, revenue: number) => {
    let i = Math.imul(k, 0x9e3779b1) >>> 0 & (gCap - 1);
    for (;;) {
      const r = gTab + i * 32, v = heap.i32[r >> 2];
      if (v === 0 || v === k) {
        if (v === 0) {
          heap.i32[r >> 2] = k;
          gSize++;
        }
        heap.f64[(r + 8) >> 3] += n;
        heap.f64[(r + 16) >> 3] += qty;
        heap.f64[(r + 24) >> 3] += revenue;
        return;
      }
      i = (i + 1) & (gCap - 1);
    }
  };
  switchTo(distinct);
  let sets: IntSet[] | null = REGIONS.map(() => new IntSet(heap, 1 << 12));
  let hll = 0; // the fallback's registers, 4 KiB per region
  switchTo(old);

  const enc = new TextEncoder();
  // A region by its first two bytes ("ce"ntre and "co"ast share the first).
  const regionByPrefix = new Map(
    REGIONS.map((r, i) => [(r.charCodeAt(0) << 8) | r.charCodeAt(1), i]),
  );
  let batches = 0, peakRead = 0, peakParse = 0;
  for (let first = 0; first < rows; first += BATCH) {
    const n = Math.min(BATCH, rows - first);
    // Stage 1, read: the batch's CSV text, in "read batch".
    switchTo(read);
    const text = csvBatch(first, n);
    const buf = palloc(text.length); // ASCII: one byte per character
    const len = enc.encodeInto(text, heap.u8.subarray(buf, buf + text.length)).written;
    // Stage 2, parse: columns in "parse batch".
    switchTo(parse);
    const region = palloc(n * 4), key = palloc(n * 4), qty = palloc(n * 4);
    const cust = palloc(n * 4), price = palloc(n * 8);
    const u8 = heap.u8, end = buf + len;
    let p = buf, row = 0;
    const num = (stop: number) => {
      let v = 0;
      while (u8[p] !== stop) v = v * 10 + u8[p++] - 48;
      p++;
      return v;
    };
    while (p < end) {
      num(COMMA); // the order id
      const r = regionByPrefix.get((u8[p] << 8) | u8[p + 1])!;
      while (u8[p++] !== COMMA);
      const product = num(COMMA), day = num(COMMA);
      heap.i32[(region >> 2) + row] = r;
      heap.i32[(key >> 2) + row] = (r * PRODUCTS + product) * DAYS + day;
      heap.i32[(qty >> 2) + row] = num(COMMA);
      const whole = num(DOT);
      heap.f64[(price >> 3) + row] = whole + num(COMMA) / 100;
      heap.i32[(cust >> 2) + row] = num(NEWLINE);
      row++;
    }
    // Stage 3, group: the hash table grows in "group".
    switchTo(group);
    for (let i = 0; i < row; i++) {
      const q = heap.i32[(qty >> 2) + i];
      gInsert(heap.i32[(key >> 2) + i], q, q * heap.f64[(price >> 3) + i]);
    }
    // Stage 4, distinct customers per region: exact sets, until the budget says no.
    switchTo(distinct);
    for (let i = 0; i < row; i++) {
      const r = heap.i32[(region >> 2) + i], c = heap.i32[(cust >> 2) + i];
      if (sets !== null) {
        try {
          sets[r].add(c);
          continue;
        } catch (e) {
          if (!(e instanceof BudgetExceededError)) throw e;
          print(`[row ${first + i}] ERROR:  ${e.message.split("\n")[0]}`);
          print(`DETAIL:  ${e.detail}`);
          print(`(budget of "${e.budgetContext}": ${e.budget} bytes; path ${e.path.join(" > ")})`);
          print("");
          memoryContextStats(top, { write: print });
          print("");
          // Go on with HyperLogLog in a small context: fold in what the exact sets hold,
          // then drop them (and everything else of the stage) at once.
          const approx = job.create("distinct customers (approximate)", { budget: 64 << 10 });
          switchTo(approx);
          hll = palloc0(REGIONS.length * 4096);
          sets.forEach((set, ri) => {
            for (let j = 0; j < set.cap; j++) {
              const v = heap.i32[(set.ptr >> 2) + j];
              if (v !== 0) hllAdd(heap, hll + ri * 4096, v - 1);
            }
          });
          distinct.delete();
          distinct = approx;
          sets = null;
        }
      }
      hllAdd(heap, hll + r * 4096, c);
    }
    peakRead = Math.max(peakRead, read.memAllocated());
    peakParse = Math.max(peakParse, parse.memAllocated());
    read.reset();
    parse.reset();
    batches++;
  }
  switchTo(top);

  // Results: per region, rows, quantity and revenue, from the groups.
  const perRegion = REGIONS.map(() => ({ rows: 0, qty: 0, revenue: 0 }));
  for (let i = 0; i < gCap; i++) {
    const r = gTab + i * 32, k = heap.i32[r >> 2];
    if (k === 0) continue;
    const region = Math.floor((k - 1) / (PRODUCTS * DAYS));
    perRegion[region].rows += heap.f64[(r + 8) >> 3];
    perRegion[region].qty += heap.f64[(r + 16) >> 3];
    perRegion[region].revenue += heap.f64[(r + 24) >> 3];
  }
  print(`${rows} rows in ${batches} batches; ${gSize} groups in a table of ${gCap} slots`);
  print("region    rows     quantity  revenue        distinct customers");
  REGIONS.forEach((name, i) => {
    const d = sets !== null ? sets[i].size : Math.round(hllCount(heap, hll + i * 4096));
    print(
      `${name.padEnd(8)}  ${String(perRegion[i].rows).padStart(7)}  ${
        String(perRegion[i].qty).padStart(8)
      }  ${perRegion[i].revenue.toFixed(2).padStart(13)}  ${sets !== null ? "" : "~"}${d}`,
    );
  });
  print(`peak of "read batch": ${peakRead} bytes; of "parse batch": ${peakParse} bytes`);
  print("");
  memoryContextStats(top, { write: print });
  job.delete();
  const problems = heap.verify();
  print("");
  print(
    `after job.delete(): TopMemoryContext holds ${top.memAllocated(true)} bytes; heap.verify(): ${
      JSON.stringify(problems)
    }; ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
}

if (import.meta.main) {
  const arg = (globalThis as { Deno?: { args: string[] } }).Deno?.args[0] ??
    (globalThis as { process?: { argv: string[] } }).process?.argv[2];
  runJob(arg !== undefined ? Number(arg) : 1_000_000);
}
