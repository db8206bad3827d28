/**
 * A worker for the `own` tests. It attaches to the heap it is sent and runs one scenario:
 *
 * - `receive`: takes ownership of a buffer the main thread sent, checks and rewrites its bytes
 *   under a mutable borrow, tries to free and to adopt a buffer the main thread still owns
 *   (both refused: `not-owner`), then sends the buffer back to the main thread's slot.
 * - `hold`: takes a reference the main thread lent (`share`) and holds a mutable borrow through
 *   it; `letgo` ends both.
 * - `keep`: receives a buffer and keeps it (the test then terminates the worker).
 * - `own`: receives a buffer and lends a reference to it (`share`) for the other racer.
 * - `access`: turns that share token into a `Shared` reference; `trymut` then says whether a
 *   mutable borrow through it can be taken now (and ends it).
 * - `holdmany`: takes two references to a buffer and two shared borrows through the first, and
 *   keeps them all (the test then terminates the worker).
 * - `race`: both racers, the owner and the holder of the reference, try for the mutable borrow
 *   at the same moment (`tryBorrowMut` in even rounds, `borrowMut` in odd ones), round after
 *   round, between barriers on a control word; each reports which rounds it won. The owner
 *   then sends the buffer back, the other releases its reference.
 *
 * @module
 */
import { Heap, UmemError } from "../mod.ts";
import { type Owned, Ownership, type RefMut, type Shared } from "../own/mod.ts";

/** The worker's global scope, typed for both Deno and Bun without the worker lib. */
const worker = self as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
};

let heap: Heap | undefined;
let own: Ownership | undefined;
let owned: Owned | undefined;
let shared: Shared | undefined;
let held: RefMut | undefined;

/** What this worker keeps alive until it is terminated ("holdmany"). */
const keep: unknown[] = [];

/** The guard `fn` returns, or undefined when it throws a borrow conflict. */
function tryMut(fn: () => RefMut): RefMut | undefined {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UmemError && e.kind === "borrow-conflict") return undefined;
    throw e;
  }
}

/** The kind of the error `fn` throws, or "none". */
function kindOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof UmemError ? e.kind : `not a UmemError: ${String(e)}`;
  }
  return "none";
}

/** Waits until `2 * (k + 1)` parties arrived at the control word (barrier number k). */
function barrier(ctrl: Int32Array, k: number, deadline: number): void {
  if (Atomics.add(ctrl, 0, 1) + 1 === 2 * (k + 1)) Atomics.notify(ctrl, 0);
  const target = 2 * (k + 1);
  for (let spins = 0;; spins++) {
    const v = Atomics.load(ctrl, 0);
    if (v >= target) return;
    if (Date.now() > deadline) throw new Error(`barrier ${k} timed out at ${v}/${target}`);
    // Spin, so that both racers leave the barrier within a few nanoseconds of each other;
    // sleep only if the other is descheduled for long.
    if (spins > 20_000) Atomics.wait(ctrl, 0, v, 1);
  }
}

worker.onmessage = (e: MessageEvent) => {
  const m = e.data as Record<string, unknown>;
  let reply: Record<string, unknown>;
  try {
    if (heap === undefined) {
      heap = Heap.attach(m.buffer as SharedArrayBuffer);
      own = Ownership.create(heap, { mode: "full" });
    }
    const h = heap, o = own!;
    switch (m.type) {
      case "receive": {
        const a = o.receive(m.token as Parameters<Ownership["receive"]>[0]);
        let sum = 0;
        {
          using w = a.borrowMut();
          for (let i = 0; i < a.size; i++) sum += h.u8[w.ptr + i];
          h.u8.fill(0x5a, w.ptr, w.ptr + a.size);
        }
        const other = m.other as { ptr: number; size: number };
        const freeKind = kindOf(() => h.free(other.ptr, other.size));
        const adoptKind = kindOf(() => o.adopt(other.ptr, other.size));
        const secondKind = kindOf(() => o.receive(m.token as Parameters<Ownership["receive"]>[0]));
        const back = a.send(0);
        const afterSend = kindOf(() => a.deref());
        reply = {
          type: "received",
          slot: h.slot,
          sum,
          freeKind,
          adoptKind,
          secondKind,
          afterSend,
          back,
        };
        break;
      }
      case "keep": {
        owned = o.receive(m.token as Parameters<Ownership["receive"]>[0]);
        reply = { type: "kept", slot: h.slot };
        break;
      }
      case "hold": {
        shared = o.access(m.share as Parameters<Ownership["access"]>[0]);
        held = shared.borrowMut();
        reply = { type: "holding", slot: h.slot };
        break;
      }
      case "letgo": {
        held?.release();
        shared?.release();
        held = undefined;
        shared = undefined;
        reply = { type: "let go", slot: h.slot };
        break;
      }
      case "own": {
        owned = o.receive(m.token as Parameters<Ownership["receive"]>[0]);
        reply = { type: "owning", slot: h.slot, share: owned.share() };
        break;
      }
      case "access": {
        shared = o.access(m.share as Parameters<Ownership["access"]>[0]);
        reply = { type: "accessing", slot: h.slot };
        break;
      }
      case "trymut": {
        // Through the reference taken by "access": can this worker take the mutable borrow now?
        const g = shared!.tryBorrowMut();
        reply = { type: "tried", slot: h.slot, won: g !== undefined };
        g?.release();
        break;
      }
      case "holdmany": {
        // Two references to the buffer; two shared borrows through the first; all kept.
        const t = m.share as Parameters<Ownership["access"]>[0];
        const r1 = o.access(t), r2 = o.access(t);
        keep.push(r1, r2, r1.borrow(), r1.borrow());
        reply = { type: "holding", slot: h.slot };
        break;
      }
      case "race": {
        const ctrl = new Int32Array(m.ctrl as SharedArrayBuffer);
        const rounds = m.rounds as number, deadline = Date.now() + (m.ms as number);
        const wins = new Uint8Array(rounds);
        for (let r = 0; r < rounds; r++) {
          barrier(ctrl, 3 * r, deadline);
          // Even rounds through tryBorrowMut, odd rounds through borrowMut's fast path.
          const g = r % 2 === 0
            ? (owned !== undefined ? owned.tryBorrowMut() : shared!.tryBorrowMut())
            : tryMut(() => owned !== undefined ? owned.borrowMut() : shared!.borrowMut());
          if (g !== undefined) {
            wins[r] = 1;
            h.u8[g.ptr] = h.slot; // the winner writes alone
          }
          barrier(ctrl, 3 * r + 1, deadline);
          g?.release();
          barrier(ctrl, 3 * r + 2, deadline);
        }
        let back: unknown = undefined;
        if (owned !== undefined) {
          // Wait until the other racer gave its reference back, then hand the buffer home.
          while (o.stateOf(owned.deref())!.lent !== 0) {
            if (Date.now() > deadline) throw new Error("the reference was never released");
            Atomics.wait(ctrl, 1, 0, 2);
          }
          back = owned.send(0);
          owned = undefined;
        } else {
          shared!.release();
          shared = undefined;
        }
        reply = { type: "raced", slot: h.slot, wins: Array.from(wins), back };
        break;
      }
      default:
        reply = { type: "error", message: `unknown message ${String(m.type)}` };
    }
  } catch (err) {
    reply = { type: "error", message: String(err), stack: (err as Error).stack };
  }
  worker.postMessage(reply);
};
