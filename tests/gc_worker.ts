/**
 * A worker for the collector tests. `build`: attaches to the heap and its collector, then
 * builds linked lists of collector objects (each kept reachable from an uncollectable root
 * object, dropped whole every `list` nodes to make garbage) until the stop word is set, and
 * after every collection it notices (its own or another worker's) walks its current list and
 * checks that every node is still allocated and holds what it wrote. `plain`: allocates and
 * frees with the heap alone, so that only the core's slow path is a safe point. `idle`:
 * attaches and waits for messages without reaching a safe point, then `leave`s when told.
 *
 * @module
 */
import { Heap } from "../mod.ts";
import { Collector } from "../gc/mod.ts";
import { GC_COLLECTIONS } from "../gc/layout.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

let heap: Heap | undefined;
let gc: Collector | undefined;

/** Builds lists until told to stop; returns what it checked. */
function build(stop: number, list: number): Record<string, unknown> {
  const h = heap!, c = gc!;
  const root = c.mallocUncollectable(8); // [head, length]
  const tag = (h.slot << 24) >>> 0;
  let seen = h.f64[(c.record + GC_COLLECTIONS) >> 3];
  let checks = 0, nodes = 0, errors = 0, longest = 0, finalized = 0, dropped = 0;
  worker.postMessage({ type: "running" });
  const errorText: string[] = [];
  while (Atomics.load(h.i32, stop >> 2) === 0) {
    const node = c.malloc(12); // [id, next, id ^ next]
    const head = h.i32[root >> 2], n = h.i32[(root >> 2) + 1];
    h.i32[node >> 2] = (tag | n) | 0;
    h.i32[(node >> 2) + 1] = head;
    h.i32[(node >> 2) + 2] = (tag | n) ^ head;
    h.i32[root >> 2] = node;
    h.i32[(root >> 2) + 1] = n + 1;
    nodes++;
    if (n + 1 === list) {
      // The whole list becomes garbage; its head's finalizer runs here, at a safe point.
      c.registerFinalizer(node, (p) => {
        if (p === node) finalized++;
      });
      h.i32[root >> 2] = 0;
      h.i32[(root >> 2) + 1] = 0;
      dropped++;
    }
    const now = h.f64[(c.record + GC_COLLECTIONS) >> 3];
    if (now !== seen) {
      seen = now;
      checks++;
      let len = 0;
      for (let p = h.i32[root >> 2], k = h.i32[(root >> 2) + 1] - 1; p !== 0; k--) {
        const id = h.i32[p >> 2], next = h.i32[(p >> 2) + 1];
        if (!c.isLive(p) || id !== ((tag | k) | 0) || h.i32[(p >> 2) + 2] !== (id ^ next)) {
          errors++;
          if (errorText.length < 5) errorText.push(`node ${k} at ${p} lost (id ${id})`);
          break;
        }
        len++;
        p = next;
      }
      if (len !== h.i32[(root >> 2) + 1] && errors === 0) {
        errors++;
        errorText.push(`list of ${h.i32[(root >> 2) + 1]} nodes walked as ${len}`);
      }
      if (len > longest) longest = len;
    }
  }
  c.free(root);
  c.collect(); // the last dropped list's head is found ready, and finalized here
  return { checks, nodes, errors, errorText, longest, finalized, dropped };
}

worker.onmessage = (e: MessageEvent) => {
  const msg = e.data as { op: string; buffer: SharedArrayBuffer; stop: number; list: number };
  try {
    if (msg.op === "build") {
      heap = Heap.attach(msg.buffer);
      gc = Collector.attach(heap);
      const r = build(msg.stop, msg.list);
      gc.detach();
      heap.detach();
      worker.postMessage({ type: "done", slot: heap.slot, ...r });
    } else if (msg.op === "plain") {
      // Allocates from the heap only (never from the collector) until the stop word is set:
      // it answers collections at the core's allocation slow path alone.
      heap = Heap.attach(msg.buffer);
      gc = Collector.attach(heap);
      worker.postMessage({ type: "running" });
      const held = new Int32Array(200);
      let rounds = 0;
      while (Atomics.load(heap.i32, msg.stop >> 2) === 0) {
        for (let i = 0; i < held.length; i++) held[i] = heap.alloc(64);
        for (let i = 0; i < held.length; i++) heap.free(held[i], 64);
        rounds++;
      }
      gc.detach();
      heap.detach();
      worker.postMessage({ type: "done", rounds });
    } else if (msg.op === "idle") {
      heap = Heap.attach(msg.buffer);
      gc = Collector.attach(heap);
      worker.postMessage({ type: "ready", slot: heap.slot });
    } else if (msg.op === "leave") {
      gc!.leave();
      worker.postMessage({ type: "left" });
    } else if (msg.op === "finish") {
      gc!.detach();
      heap!.detach();
      worker.postMessage({ type: "done" });
    }
  } catch (err) {
    worker.postMessage({ type: "error", message: String((err as Error)?.stack ?? err) });
  }
};
