/**
 * The tree's arena: where every context's blocks come from, and how a worker finds the tree.
 *
 * Theory. Each heap has one context tree, rooted at TopMemoryContext, as each PostgreSQL
 * backend has one. Its blocks come from one vmem arena, `umem_mcxt` (quantum 1 KiB, importing
 * spans of at least 64 KiB from the heap's arena), whose quantum caches (`umem_mcxt_1024` …
 * `umem_mcxt_16384`, object caches with magazines) serve blocks of up to 16 KiB with no lock,
 * as libumem's quantum caches serve small vmem requests; larger blocks come from the arena
 * itself. So the heap's view of the tree is the arena's in-use bytes, less what its quantum
 * caches' slabs hold beyond their buffers in use.
 *
 * The top record sits in the first block the arena gave, which is never given back, so a
 * worker that attaches finds the tree by name: it walks the oldest `umem_mcxt` arena for the
 * block that holds a live record flagged `MCF_TOP`, once per heap handle. When there is none,
 * the worker creates the arena and the top. Two workers that race to do so both look again
 * afterwards; the oldest arena (the last of `heap.arenas()`, which lists the newest first)
 * wins, and the loser gives its top back and destroys its arena (or, when its arena could not
 * even be made because the winner's quantum caches took the names first, simply waits for the
 * winner's top). Call `topContext(heap)` once before starting workers to avoid the race.
 *
 * Invariants. The top record is in an allocated segment of the oldest `umem_mcxt` arena; its
 * keeper block is never freed. A block of `n` bytes, `n` a multiple of 1 KiB, is taken and
 * given back through the same path (a quantum cache when `n ≤ 16 KiB`).
 *
 * Lock order: the arena's and its caches' locks are taken inside `Vmem` and `Cache`; nothing
 * here holds a lock of its own.
 *
 * @module
 */

import { type Cache, type Heap, UmemError, Vmem } from "../core/mod.ts";
import { type ContextSettings, createRecord, killRecord } from "./alloc_set.ts";
import {
  AB_HEADER,
  AB_SIZE,
  ARENA_NAME,
  ARENA_QCACHE_MAX,
  ARENA_QUANTUM,
  CHUNK_LIMIT,
  isLiveRecord,
  MC_FLAGS,
  MC_NO_BUDGET,
  MCF_TOP,
  POLICY_ERROR,
} from "./layout.ts";
import { type BlockSource, setState, stateOf, type TreeState } from "./worker_state.ts";

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/** The settings of TopMemoryContext: PostgreSQL's `ALLOCSET_DEFAULT_SIZES`, no budget. */
const TOP_SETTINGS: ContextSettings = {
  minContextSize: 0,
  initBlockSize: 8 * 1024,
  maxBlockSize: 8 * 1024 * 1024,
  budget: MC_NO_BUDGET,
  softBudget: MC_NO_BUDGET,
  policy: POLICY_ERROR,
  waitTimeout: 0,
  flags: 0,
};
if (CHUNK_LIMIT !== 8192) throw new Error("budget/arena.ts: aset.c's chunk limit is 8 KiB");

/** Bytes each import of the tree's arena takes from the heap's arena, at least. */
const ARENA_IMPORT = 64 * 1024;

/** The names of the arena's quantum caches, smallest first. */
function qcacheNames(): string[] {
  const out: string[] = [];
  for (let n = ARENA_QUANTUM; n <= ARENA_QCACHE_MAX; n += ARENA_QUANTUM) {
    out.push(`${ARENA_NAME}_${n}`);
  }
  return out;
}

/** A block source over `arena` and its quantum caches, as this worker's handles. */
function blockSource(heap: Heap, arena: Vmem): BlockSource {
  const caches: Cache[] = qcacheNames().map((name) => heap.cache(name));
  return {
    alloc(bytes: number): number {
      return bytes <= ARENA_QCACHE_MAX
        ? caches[bytes / ARENA_QUANTUM - 1].alloc()
        : arena.alloc(bytes);
    },
    free(addr: number, bytes: number): void {
      if (bytes <= ARENA_QCACHE_MAX) caches[bytes / ARENA_QUANTUM - 1].free(addr);
      else arena.free(addr, bytes);
    },
  };
}

/** The oldest `umem_mcxt` arena and the top record in it (0 when not laid yet), or null. */
function findTop(heap: Heap): { arena: Vmem; top: number } | null {
  const arenas = heap.arenas();
  for (let i = arenas.length - 1; i >= 0; i--) {
    const arena = arenas[i];
    if (arena.name !== ARENA_NAME) continue;
    for (const seg of arena.walk()) {
      if (seg.type !== "alloc") continue;
      const rec = seg.start + AB_HEADER;
      heap.sync();
      if (
        isLiveRecord(heap.i32, heap.mapped, rec) && (w(heap.i32, rec + MC_FLAGS) & MCF_TOP) !== 0
      ) {
        return { arena, top: rec };
      }
    }
    return { arena, top: 0 };
  }
  return null;
}

/** Waits (up to 10 s) until the oldest `umem_mcxt` arena has its top record. */
function waitTop(heap: Heap): { arena: Vmem; top: number } {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = findTop(heap);
    if (found !== null && found.top !== 0) return found;
    if (Date.now() > deadline) {
      throw new UmemError(
        "heap-locked",
        `topContext: the arena '${ARENA_NAME}' has no TopMemoryContext after 10 s ` +
          "(its creator died?)",
      );
    }
    Atomics.wait(nap, 0, 0, 1);
  }
}

/** Creates the tree's arena and top record; resolves a race with another worker. */
function createTree(heap: Heap): { arena: Vmem; top: number } {
  let arena: Vmem;
  try {
    arena = Vmem.create(heap, ARENA_NAME, {
      quantum: ARENA_QUANTUM,
      source: heap.vmem,
      importSize: ARENA_IMPORT,
      qcacheMax: ARENA_QCACHE_MAX,
    });
  } catch (e) {
    // Another worker's arena took the quantum caches' names first: use its tree.
    if (e instanceof UmemError && e.kind === "invalid-argument" && findTop(heap) !== null) {
      return waitTop(heap);
    }
    throw e;
  }
  const source = blockSource(heap, arena);
  let top: number;
  try {
    top = createRecord(
      heap,
      null,
      source,
      0,
      new TextEncoder().encode("TopMemoryContext"),
      TOP_SETTINGS,
    );
  } catch (e) {
    arena.destroy();
    throw e;
  }
  const winner = waitTop(heap);
  if (winner.top !== top) {
    // Another worker laid its tree first: give ours back and use theirs.
    const keeper = top - AB_HEADER, bytes = w(heap.i32, keeper + AB_SIZE);
    killRecord(heap, top);
    source.free(keeper, bytes);
    arena.destroy();
  }
  return winner;
}

/**
 * This worker's state for `heap`'s context tree: found in the heap the first time (or created
 * there when the heap has none yet).
 */
export function treeOf(heap: Heap): TreeState {
  const known = stateOf(heap);
  if (known !== undefined) return known;
  heap.sync();
  let found = findTop(heap);
  if (found === null) found = createTree(heap);
  else if (found.top === 0) found = waitTop(heap);
  const st: TreeState = {
    heap,
    arena: found.arena,
    blocks: blockSource(heap, found.arena),
    top: found.top,
    callbacks: new Map(),
    soft: new Map(),
    inSoft: new Set(),
  };
  setState(heap, st);
  return st;
}

/**
 * The bytes of blocks the tree holds, as the heap sees them: the arena's in-use bytes, less
 * what its quantum caches' slabs hold beyond the buffers in use. Equals TopMemoryContext's
 * `memAllocated(true)` while no operation is in flight.
 */
export function heapViewBytes(heap: Heap): number {
  const st = treeOf(heap);
  let bytes = st.arena.stats().inUse;
  const names = new Set(qcacheNames());
  for (const c of heap.caches()) {
    if (!names.has(c.name)) continue;
    const s = c.stats();
    bytes -= s.memoryInUse - s.inUse * s.bufsize;
  }
  return bytes;
}
