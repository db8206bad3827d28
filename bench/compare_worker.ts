/**
 * The worker half of bench/compare.ts: alloc+free pairs of 64 bytes with one contender, or one
 * side of a producer/consumer ring in the heap. Every run starts at a barrier (so that two
 * workers start together), times itself, and is bounded by a deadline: a worker never spins
 * forever, it reports an error instead.
 *
 * Messages (all answered with `{ ok: true, ms, ops, sink }` or `{ ok: false, error }`):
 * - `{ type: "attach", buffers, go, names }`: attach to each heap and find the caches by name.
 * - `{ type: "pairs", contender, n, minMs, gen }`: alloc+free pairs of 64 bytes, n at a time,
 *   until at least minMs have passed; answered with the pairs done in `ops`.
 * - `{ type: "produce" | "consume", contender, ring, n, gen }`: one side of the ring.
 * - `{ type: "detach" }`: give the slots back.
 *
 * @module
 */
import { type Cache, Heap } from "../core/mod.ts";
import { FLOOR_BASE, FLOOR_END } from "./pair_loops.ts";
import type * as PairLoopsModule from "./pair_loops.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

/** How long any wait in a worker may last. */
const DEADLINE_MS = 60_000;
/** Bytes of each block. */
const SIZE = 64;
/** Ring layout in the heap: head, tail (Int32 words), then RING_CAP entries. */
const RING_HEAD = 0, RING_TAIL = 4, RING_ENTRIES = 64, RING_CAP = 4096;

/** heaps[0]: the plain heap; heaps[1]: the heap created with `trust`. */
let heaps: Heap[] = [];
/** caches[i]: the 64-byte cache of heaps[i]. */
let caches: Cache[] = [];
/** The barrier: word 0 the generation allowed to start, word 1 the workers ready. */
let go: Int32Array = new Int32Array(new SharedArrayBuffer(8));
/** The floor's bump pointer, this worker's own. */
const floor = new Int32Array(2);

class Deadline extends Error {}

/** Waits at the barrier until the main thread lets generation `gen` start. */
function waitGo(gen: number): void {
  Atomics.add(go, 1, 1);
  const until = performance.now() + DEADLINE_MS;
  for (;;) {
    const v = Atomics.load(go, 0);
    if (v >= gen) return;
    Atomics.wait(go, 0, v, 50);
    if (performance.now() > until) throw new Deadline("barrier: the main thread never said go");
  }
}

// ---- pairs: each contender's own copy of the loops (see pair_loops.ts) ----

type PairLoops = typeof PairLoopsModule;
const CONTENDERS = ["umem", "trust", "libc", "cache", "obj", "u8", "floor"] as const;
const loops = new Map<string, PairLoops>();
/**
 * Loads each contender's copy, at "attach" (not at the top level: a worker that awaits before
 * it sets `onmessage` may miss the first message under Bun).
 */
async function loadLoops(): Promise<void> {
  for (const c of CONTENDERS) {
    if (loops.has(c)) continue;
    loops.set(c, await (import(`./pair_loops.ts?cell=worker-${c}`) as Promise<PairLoops>));
  }
}

function pairs(contender: string, n: number): number {
  const l = loops.get(contender);
  switch (contender) {
    case "umem":
      return l!.pairsHeap(heaps[0], SIZE, n);
    case "trust":
      return l!.pairsHeap(heaps[1], SIZE, n);
    case "libc":
      return l!.pairsLibc(heaps[0], SIZE, n);
    case "cache":
      return l!.pairsCache(caches[0], n);
    case "obj":
      return l!.pairsObj(n);
    case "u8":
      return l!.pairsU8(SIZE, n);
    case "floor":
      return l!.pairsFloor(floor, SIZE, n);
  }
  throw new Error(`compare_worker: no pairs for contender ${contender}`);
}

// ---- producer/consumer: one allocates and posts addresses through the ring, one frees ----

const K_HEAP = 0, K_LIBC = 1, K_CACHE = 2, K_FLOOR = 3;

function kindOf(contender: string): number {
  switch (contender) {
    case "umem":
    case "trust":
      return K_HEAP;
    case "libc":
      return K_LIBC;
    case "cache":
      return K_CACHE;
    case "floor":
      return K_FLOOR;
  }
  throw new Error(`compare_worker: no producer/consumer for contender ${contender}`);
}

/** Allocates n blocks and posts each through the ring (which lives in heaps[0]). */
function produce(contender: string, ring: number, n: number): number {
  const kind = kindOf(contender);
  const h = heaps[contender === "trust" ? 1 : 0], c = caches[contender === "trust" ? 1 : 0];
  const libc = h.libc, rh = heaps[0];
  const hw = (ring + RING_HEAD) >> 2, tw = (ring + RING_TAIL) >> 2, e = (ring + RING_ENTRIES) >> 2;
  const until = performance.now() + DEADLINE_MS;
  let tail = Atomics.load(rh.i32, tw), spins = 0, s = 0;
  for (let k = 0; k < n; k++) {
    while (tail - Atomics.load(rh.i32, hw) >= RING_CAP) {
      // The ring is full: the consumer catches up.
      if ((++spins & 1023) === 0 && performance.now() > until) {
        throw new Deadline(`producer: ring full for ${DEADLINE_MS} ms`);
      }
    }
    let p: number;
    if (kind === K_HEAP) p = h.alloc(SIZE);
    else if (kind === K_LIBC) p = libc.malloc(SIZE);
    else if (kind === K_CACHE) p = c.alloc();
    else {
      p = floor[0];
      if (p + SIZE > FLOOR_END) p = FLOOR_BASE;
      floor[0] = p + SIZE;
    }
    rh.i32[e + (tail & (RING_CAP - 1))] = p;
    s ^= p;
    tail++;
    if ((tail & 63) === 0 || k === n - 1) Atomics.store(rh.i32, tw, tail);
  }
  return s;
}

/** Takes n blocks from the ring and frees each. */
function consume(contender: string, ring: number, n: number): number {
  const kind = kindOf(contender);
  const h = heaps[contender === "trust" ? 1 : 0], c = caches[contender === "trust" ? 1 : 0];
  const libc = h.libc, rh = heaps[0];
  const hw = (ring + RING_HEAD) >> 2, tw = (ring + RING_TAIL) >> 2, e = (ring + RING_ENTRIES) >> 2;
  const until = performance.now() + DEADLINE_MS;
  let head = Atomics.load(rh.i32, hw), spins = 0, s = 0;
  for (let k = 0; k < n;) {
    const tail = Atomics.load(rh.i32, tw);
    if (head === tail) {
      // The ring is empty: the producer has not published more yet.
      if ((++spins & 1023) === 0 && performance.now() > until) {
        throw new Deadline(`consumer: ring empty for ${DEADLINE_MS} ms`);
      }
      continue;
    }
    while (head !== tail) {
      const p = rh.i32[e + (head & (RING_CAP - 1))];
      if (kind === K_HEAP) h.free(p, SIZE);
      else if (kind === K_LIBC) libc.free(p);
      else if (kind === K_CACHE) c.free(p);
      s ^= p; // the floor frees nothing
      head++;
      k++;
    }
    Atomics.store(rh.i32, hw, head);
  }
  return s;
}

worker.onmessage = (e: MessageEvent) => {
  const m = e.data;
  try {
    if (m.type === "attach") {
      heaps = (m.buffers as SharedArrayBuffer[]).map((b) => Heap.attach(b));
      caches = heaps.map((h, i) => h.cache(m.names[i] as string));
      go = new Int32Array(m.go as SharedArrayBuffer);
      floor[0] = FLOOR_BASE;
      loadLoops().then(
        () => worker.postMessage({ ok: true, ms: 0, ops: 0, sink: 0 }),
        (err) => worker.postMessage({ ok: false, error: String(err?.stack ?? err) }),
      );
      return;
    }
    if (m.type === "detach") {
      for (const h of heaps) h.detach();
      heaps = [];
      worker.postMessage({ ok: true, ms: 0, ops: 0, sink: 0 });
      return;
    }
    waitGo(m.gen);
    const t0 = performance.now();
    let sink = 0, ops = 0, ms = 0;
    if (m.type === "pairs") {
      do {
        sink ^= pairs(m.contender, m.n);
        ops += m.n;
        ms = performance.now() - t0;
      } while (ms < m.minMs);
    } else {
      if (m.type === "produce") sink = produce(m.contender, m.ring, m.n);
      else if (m.type === "consume") sink = consume(m.contender, m.ring, m.n);
      else throw new Error(`compare_worker: unknown message ${m.type}`);
      ops = m.n;
      ms = performance.now() - t0;
    }
    worker.postMessage({ ok: true, ms, ops, sink });
  } catch (err) {
    worker.postMessage({ ok: false, error: String((err as Error)?.stack ?? err) });
  }
};
