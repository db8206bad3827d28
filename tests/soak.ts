/**
 * A soak test: two workers run a mixed random alloc/free load on one heap for `--seconds N`
 * (default 10) while the main thread, every second, builds a list of collector objects, cuts
 * it in half and collects while the workers run (the collector must stop them at their safe
 * points, free exactly the cut-off half and keep the rest intact), then pauses the workers
 * between operations and runs `heap.verify()` and `inspect(...).findleaks()` on a snapshot and
 * samples `heap.vmem` in use. Prints operations,
 * peak in-use bytes and errors; exits 1 on any error, or when in-use keeps rising after the
 * warm-up (the last third's maximum above the middle third's by more than 10% + 64 KiB).
 *
 * Run: `deno task soak -- --seconds 10` (`--debug guards`, or any UMEM_DEBUG setting, runs it all
 * on a debugged heap).
 *
 * @module
 */
import { Heap, inspect, Snapshot } from "../mod.ts";
import { Collector } from "../gc/mod.ts";

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const args: string[] = g.Deno?.args ?? g.process?.argv.slice(2) ?? [];
const at = args.indexOf("--seconds");
const seconds = at >= 0 ? Number(args[at + 1]) : 10;
if (!(seconds > 0)) throw new Error("--seconds wants a positive number");

// `--debug SETTING`: the heap's UMEM_DEBUG (guards, contents, audit=8/100, ...), empty by default.
const dat = args.indexOf("--debug");
const debug = dat >= 0 ? args[dat + 1] ?? "" : "";

const heap = Heap.create({
  size: 8 << 20,
  maxSize: 256 << 20,
  debug: debug === "" ? "" : `${debug},noabort`, // (errors are counted and printed)
  logging: "",
  options: "",
});
const gc = Collector.create(heap, { auto: false });
let collections = 0, collected = 0;
/** Nodes of the list each second's collection cuts in half. */
const NODES = 20_000;

/** One collection while the workers run: a list of [value, next] nodes, half cut off. */
function collectOnce(s: number): void {
  const head = gc.malloc(8);
  using _pin = gc.pin(head);
  let prev = head, mid = 0;
  heap.i32[head >> 2] = 0;
  for (let i = 1; i < NODES; i++) {
    const p = gc.malloc(8);
    heap.i32[p >> 2] = i;
    heap.i32[(prev >> 2) + 1] = p;
    prev = p;
    if (i === NODES / 2 - 1) mid = p;
  }
  heap.i32[(mid >> 2) + 1] = 0;
  const r = gc.collect();
  collections++;
  collected += r.objects;
  if (r.liveObjects !== NODES / 2) {
    errors.push(`collection at ${s} s: ${r.liveObjects} live objects, expected ${NODES / 2}`);
  }
  let k = 0;
  for (let p = head; p !== 0 && k <= NODES; p = heap.i32[(p >> 2) + 1], k++) {
    if (heap.i32[p >> 2] !== k) errors.push(`collection at ${s} s: node ${k} changed`);
  }
  if (k !== NODES / 2) errors.push(`collection at ${s} s: the list has ${k} nodes left`);
}

const url = new URL("./fixtures/soak_worker.ts", import.meta.url).href;
const workers = [0, 1].map(() => new Worker(url, { type: "module" }));
const errors: string[] = [];
const ops = [0, 0];
const samples: number[] = [];
let peak = 0;

let paused = 0;
let onPaused: (() => void) | undefined;
const done = workers.map((w, i) =>
  new Promise<void>((resolve) => {
    w.onmessage = (e: MessageEvent) => {
      if (e.data.type === "ops") ops[i] = e.data.ops;
      if (e.data.type === "paused" && ++paused === workers.length) onPaused?.();
      if (e.data.type === "done") {
        ops[i] = e.data.ops;
        for (const x of e.data.errors as string[]) errors.push(`worker ${i}: ${x}`);
        resolve();
      }
    };
    w.onerror = (e: ErrorEvent) => {
      errors.push(`worker ${i}: ${e.message}`);
      e.preventDefault();
      resolve();
    };
  })
);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
try {
  workers.forEach((w, i) => w.postMessage({ type: "start", buffer: heap.buffer, seed: 17 + i }));
  for (let s = 1; Date.now() - t0 < seconds * 1000; s++) {
    await sleep(Math.min(1000, t0 + seconds * 1000 - Date.now()));
    try {
      collectOnce(s);
    } catch (e) {
      errors.push(`collection at ${s} s: ${e}`);
    }
    // Pause both workers between operations so that verify() sees a quiescent heap.
    paused = 0;
    const quiet = new Promise<void>((r) => onPaused = r);
    for (const w of workers) w.postMessage({ type: "pause" });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => timer = setTimeout(() => r(), 5000));
    if (await Promise.race([quiet.then(() => true), late.then(() => false)]) === false) {
      errors.push(`workers did not pause at ${s} s`);
    }
    clearTimeout(timer);
    try {
      const inUse = heap.vmem.stats().inUse;
      samples.push(inUse);
      peak = Math.max(peak, inUse);
      for (const p of heap.verify()) errors.push(`verify at ${s} s: ${p}`);
      const snap = Snapshot.decode(Snapshot.encode(heap));
      const leaks = inspect(snap).findleaks();
      console.log(
        `${s} s: ops ${ops[0] + ops[1]}, in use ${inUse}, findleaks ${leaks.total_buffers} ` +
          `unreachable buffers (live, held in worker arrays outside the heap)`,
      );
    } catch (e) {
      errors.push(`check at ${s} s: ${e}`);
    }
    for (const w of workers) w.postMessage({ type: "resume" });
  }
  for (const w of workers) w.postMessage({ type: "stop" });
  await Promise.race([Promise.all(done), sleep(10000).then(() => errors.push("workers hung"))]);
} finally {
  for (const w of workers) w.terminate();
}

const final = heap.verify();
for (const p of final) errors.push(`final verify: ${p}`);
const third = Math.floor(samples.length / 3);
let rising = false;
if (third >= 1) {
  const mid = Math.max(...samples.slice(third, 2 * third));
  const last = Math.max(...samples.slice(2 * third));
  rising = last > mid * 1.1 + 65536;
  console.log(
    `in use: middle third max ${mid}, last third max ${last}${rising ? " (RISING)" : ""}`,
  );
}
console.log(
  `soak: ${seconds} s, ${ops[0] + ops[1]} operations, ${collections} collections ` +
    `(${collected} objects collected), peak vmem in use ${peak} bytes, ${errors.length} errors`,
);
for (const e of errors.slice(0, 20)) console.log(`  ${e}`);
const code = errors.length > 0 || rising ? 1 : 0;
if (g.Deno !== undefined) g.Deno.exit(code);
else g.process.exit(code);
