/**
 * The allocation set: PostgreSQL's aset.c over blocks of the heap.
 *
 * Theory. A context takes *blocks* from the tree's vmem arena and carves *chunks* out of the
 * active block (the head of its block list) by moving `MC_FREEPTR`. A request of at most
 * `MC_LIMIT` bytes (`allocChunkLimit`: 8 KiB, less when `maxBlockSize` is small, so that a
 * chunk is at most a quarter of a block) is rounded up to a power of two from 8 to 8192, and a
 * freed chunk goes on the free list of its size, one list per power of two in the record, to be
 * reused by the next request of that size; chunks are never given back to the heap one by one.
 * A larger request gets a block of its own (inserted after the active block), which `pfree`
 * gives straight back. When the active block cannot hold a chunk, a new block becomes active:
 * `initBlockSize` at first, twice the last one each time after, up to `maxBlockSize` (larger
 * if the chunk needs it, smaller if a budget leaves less), and the old block's remainder is
 * carved into free-list chunks so that it is not wasted. The first block, the *keeper*, holds
 * the context record and survives `reset`, which gives back every other block, empties the
 * free lists and takes a fresh generation (so every pointer from before the reset is refused).
 *
 * The fast path (`allocFast`, `freeFast`) is a free-list pop or push, or a bump of
 * `MC_FREEPTR`: a handful of loads and stores on the heap's `Int32Array`, no lock, no
 * `Atomics`, no JavaScript object. It serves unshared contexts; anything else (a new block, a
 * large chunk, a shared context, a bad argument) takes the slow path.
 *
 * Invariants.
 * - Each normal or keeper block is tiled by chunks from its first chunk to its free pointer
 *   (`MC_FREEPTR` for the active block, `AB_FREEPTR` for the others); a large block holds one
 *   chunk that fills it.
 * - A chunk on free list k has `CH_SIZE = 8 << k ≤ MC_LIMIT` and `CH_CHECK = gen ^ size ^
 *   CHUNK_FREE`; an allocated one `CH_CHECK = gen ^ size ^ CHUNK_LIVE`, gen being `MC_GEN`.
 * - `MC_NBLOCKS` and `MC_SELF` count the blocks of the list; the keeper is always in it.
 *
 * Lock order: the context's lock (shared contexts only), then the tree lock (accounting.ts),
 * then the vmem arena's locks. An unshared context is used by one worker at a time and its
 * fast path takes no lock.
 *
 * @module
 */

import { lock, unlock } from "../core/internal.ts";
import { type HeapView, OutOfMemoryError, UmemError } from "../core/mod.ts";
import {
  afterRefusal,
  lockTree,
  notePeak,
  release,
  reserve,
  wakeChunkWaiters,
} from "./accounting.ts";
import { checkRequest } from "./budget_error.ts";
import {
  AB_CONTEXT,
  AB_FREEPTR,
  AB_HEADER,
  AB_KIND,
  AB_MAGIC,
  AB_MAGIC_VALUE,
  AB_NEXT,
  AB_PREV,
  AB_SIZE,
  ABK_KEEPER,
  ABK_LARGE,
  ABK_NORMAL,
  ARENA_QUANTUM,
  CH_CHECK,
  CH_CONTEXT,
  CH_HEADER,
  CH_REQ,
  CH_SIZE,
  CHUNK_FRACTION,
  CHUNK_FREE,
  CHUNK_LIMIT,
  CHUNK_LIVE,
  freeIndex,
  hex,
  isLiveRecord,
  MC_BLOCKS,
  MC_BUDGET,
  MC_DATA0,
  MC_DEPTH,
  MC_ENDPTR,
  MC_FIRSTCHILD,
  MC_FLAGS,
  MC_FREELIST,
  MC_FREEPTR,
  MC_GEN,
  MC_ID,
  MC_INITBLOCK,
  MC_KEEPER,
  MC_LIMIT,
  MC_LOCK,
  MC_MAGIC,
  MC_MAGIC_DEAD,
  MC_MAGIC_LIVE,
  MC_MAXBLOCK,
  MC_MINCONTEXT,
  MC_NAME,
  MC_NAMELEN,
  MC_NBLOCKS,
  MC_NCHILDREN,
  MC_NEXTBLOCK,
  MC_NEXTGEN,
  MC_NEXTSIB,
  MC_OWNER,
  MC_PARENT,
  MC_PEAK,
  MC_POLICY,
  MC_PREVSIB,
  MC_ROOT,
  MC_SELF,
  MC_SIZE,
  MC_SOFT,
  MC_TREE,
  MC_WAITERS,
  MC_WAITMS,
  MCF_SHARED,
  MCF_TOP,
  MCF_USED,
  MIN_CHUNK,
  NUM_FREELISTS,
  readName,
  roundUp,
} from "./layout.ts";
import type { BlockSource, TreeState } from "./worker_state.ts";

// The fast path's copies of the layout, as word indices (V8 does not fold a constant imported
// from another module into optimized code; see core/magazine.ts), checked at load time.
const W_ID = 1, W_GEN = 2, W_FREEPTR = 3, W_ENDPTR = 4, W_LIMIT = 5, W_FREELIST = 6;
const W_FLAGS = 17, F_SHARED = 1, LIVE = 0x2d4c4956, FREE = 0x2d465245, HDR = 16;
if (
  W_ID !== MC_ID >> 2 || W_GEN !== MC_GEN >> 2 || W_FREEPTR !== MC_FREEPTR >> 2 ||
  W_ENDPTR !== MC_ENDPTR >> 2 || W_LIMIT !== MC_LIMIT >> 2 || W_FREELIST !== MC_FREELIST >> 2 ||
  W_FLAGS !== MC_FLAGS >> 2 || F_SHARED !== MCF_SHARED || LIVE !== CHUNK_LIVE ||
  FREE !== CHUNK_FREE || HDR !== CH_HEADER || CH_CONTEXT !== 0 || CH_SIZE !== 4 ||
  CH_CHECK !== 8 || CH_REQ !== 12
) {
  throw new Error("budget/alloc_set.ts: the fast path's copies of the layout are out of date");
}

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/**
 * The word index of the header's `HDR_SIZE` (byte 12 of the image format, version 1: the bytes
 * of the buffer the heap uses). The fast paths compare it with `h.mapped` themselves rather
 * than call `h.sync()`, as the core's own fast path does (core/heap.ts).
 */
export const HDR_SIZE_WORD = 3;

/**
 * Allocates `size` bytes in the unshared context `rec` (id `id`) from a free list or the
 * active block: the fast path. Returns 0 when it cannot (the caller takes the slow path). The
 * caller has called `h.sync()`.
 */
export function allocFast(h: HeapView, rec: number, id: number, size: number): number {
  const i32 = h.i32, rw = rec >> 2;
  if (i32[rw + W_ID] !== id || (size | 0) !== size || size < 0 || size > i32[rw + W_LIMIT]) {
    return 0;
  }
  const k = size <= 8 ? 0 : 29 - Math.clz32(size - 1);
  const cap = 8 << k, check = i32[rw + W_GEN] ^ cap ^ LIVE;
  const head = i32[rw + W_FREELIST + k];
  if (head !== 0) {
    const hw = head >> 2;
    i32[rw + W_FREELIST + k] = i32[hw - 1];
    i32[hw - 2] = check;
    i32[hw - 1] = size;
    return head;
  }
  const p = i32[rw + W_FREEPTR], e = p + HDR + cap;
  if (e > i32[rw + W_ENDPTR]) return 0;
  i32[rw + W_FREEPTR] = e;
  const hw = p >> 2;
  i32[hw] = rec;
  i32[hw + 1] = cap;
  i32[hw + 2] = check;
  i32[hw + 3] = size;
  return p + HDR;
}

/**
 * Frees chunk `ptr` of an unshared context to its free list: the fast path. With `expect`
 * nonzero, only a chunk of that context. Returns false when it cannot (a large chunk, a shared
 * context, anything that is not a live chunk): the caller takes the slow path, which reports.
 * The caller has called `h.sync()`.
 */
export function freeFast(h: HeapView, ptr: number, expect: number): boolean {
  const i32 = h.i32;
  if ((ptr | 0) !== ptr || ptr < 64 || (ptr & 7) !== 0 || ptr >= h.mapped) return false;
  const hw = ptr >> 2;
  const rec = i32[hw - 4], size = i32[hw - 3];
  if (rec <= 0 || (rec & 7) !== 0 || rec >= h.mapped || (expect !== 0 && rec !== expect)) {
    return false;
  }
  const rw = rec >> 2, gen = i32[rw + W_GEN];
  if (
    i32[hw - 2] !== (gen ^ size ^ LIVE) || size > i32[rw + W_LIMIT] ||
    (i32[rw + W_FLAGS] & F_SHARED) !== 0
  ) {
    return false;
  }
  const k = 28 - Math.clz32(size);
  i32[hw - 2] = gen ^ size ^ FREE;
  i32[hw - 1] = i32[rw + W_FREELIST + k];
  i32[rw + W_FREELIST + k] = ptr;
  return true;
}

/** Writes a chunk header at `hdr` and returns the chunk's address. */
function writeChunk(
  i32: Int32Array,
  hdr: number,
  rec: number,
  cap: number,
  gen: number,
  size: number,
): number {
  const hw = hdr >> 2;
  i32[hw] = rec;
  i32[hw + 1] = cap;
  i32[hw + 2] = gen ^ cap ^ CHUNK_LIVE;
  i32[hw + 3] = size;
  return hdr + CH_HEADER;
}

/** A fresh generation from the tree's counter in the top record `root`: never 0. */
export function nextGen(h: HeapView, root: number): number {
  let g = (Atomics.add(h.i32, (root + MC_NEXTGEN) >> 2, 1) + 1) | 0;
  while (g === 0) g = (Atomics.add(h.i32, (root + MC_NEXTGEN) >> 2, 1) + 1) | 0;
  return g;
}

/** aset.c's `allocChunkLimit` for a context whose blocks are at most `maxBlock` bytes. */
export function chunkLimit(maxBlock: number): number {
  let limit = CHUNK_LIMIT;
  while (limit + CH_HEADER > (maxBlock - AB_HEADER) / CHUNK_FRACTION && limit > MIN_CHUNK) {
    limit >>= 1;
  }
  return limit;
}

/** Throws `destroyed` unless `rec` is the live context `id`. */
export function checkLive(h: HeapView, rec: number, id: number, fn: string): void {
  if (w(h.i32, rec + MC_ID) !== id || w(h.i32, rec + MC_MAGIC) !== MC_MAGIC_LIVE) {
    throw new UmemError(
      "destroyed",
      `${fn}: the memory context at ${hex(rec)} was deleted`,
      rec,
    );
  }
}

/** The PostgreSQL report of a failed request, as an `OutOfMemoryError`. */
function outOfMemory(h: HeapView, rec: number, size: number, cause: unknown): OutOfMemoryError {
  return new OutOfMemoryError(
    `out of memory\nFailed on request of size ${size} in memory context "${
      readName(h.u8, h.i32, rec)
    }".\n${cause instanceof Error ? cause.message : String(cause)}`,
  );
}

/**
 * Takes a block of `bytes` (already reserved) from the arena for context `rec`; when the heap
 * has no room, gives the reservation back and throws PostgreSQL's `out of memory`.
 */
function takeBlock(st: TreeState, rec: number, bytes: number, size: number): number {
  try {
    const blk = st.blocks.alloc(bytes);
    notePeak(st.heap, rec);
    return blk;
  } catch (e) {
    release(st.heap, rec, bytes, bytes);
    if (e instanceof OutOfMemoryError) throw outOfMemory(st.heap, rec, size, e);
    throw e;
  }
}

/** Writes a block header. */
function layBlock(i32: Int32Array, blk: number, rec: number, size: number, kind: number): void {
  const bw = blk >> 2;
  i32[bw + (AB_CONTEXT >> 2)] = rec;
  i32[bw + (AB_PREV >> 2)] = 0;
  i32[bw + (AB_NEXT >> 2)] = 0;
  i32[bw + (AB_SIZE >> 2)] = size;
  i32[bw + (AB_FREEPTR >> 2)] = blk + AB_HEADER;
  i32[bw + (AB_MAGIC >> 2)] = AB_MAGIC_VALUE;
  i32[bw + (AB_KIND >> 2)] = kind;
  i32[bw + 7] = 0;
}

/** Links block `blk` into `rec`'s list after `after` (0: at the head). */
function linkBlock(i32: Int32Array, rec: number, blk: number, after: number): void {
  const next = after === 0 ? w(i32, rec + MC_BLOCKS) : w(i32, after + AB_NEXT);
  i32[(blk + AB_PREV) >> 2] = after;
  i32[(blk + AB_NEXT) >> 2] = next;
  if (next !== 0) i32[(next + AB_PREV) >> 2] = blk;
  if (after === 0) i32[(rec + MC_BLOCKS) >> 2] = blk;
  else i32[(after + AB_NEXT) >> 2] = blk;
  i32[(rec + MC_NBLOCKS) >> 2]++;
}

/** Unlinks block `blk` from `rec`'s list. */
function unlinkBlock(i32: Int32Array, rec: number, blk: number): void {
  const prev = w(i32, blk + AB_PREV), next = w(i32, blk + AB_NEXT);
  if (prev === 0) i32[(rec + MC_BLOCKS) >> 2] = next;
  else i32[(prev + AB_NEXT) >> 2] = next;
  if (next !== 0) i32[(next + AB_PREV) >> 2] = prev;
  i32[(rec + MC_NBLOCKS) >> 2]--;
}

/**
 * Carves what is left of the active block into free-list chunks, as aset.c does before it
 * makes a new block active, and records the block's final free pointer.
 */
function retireActive(i32: Int32Array, rec: number, gen: number): void {
  const end = w(i32, rec + MC_ENDPTR), maxK = freeIndex(w(i32, rec + MC_LIMIT));
  let fp = w(i32, rec + MC_FREEPTR);
  while (end - fp >= CH_HEADER + MIN_CHUNK) {
    const avail = end - fp - CH_HEADER;
    let k = freeIndex(avail);
    if (MIN_CHUNK << k > avail) k--;
    if (k > maxK) k = maxK;
    const cap = MIN_CHUNK << k, fl = rec + MC_FREELIST + 4 * k;
    const hw = fp >> 2;
    i32[hw] = rec;
    i32[hw + 1] = cap;
    i32[hw + 2] = gen ^ cap ^ CHUNK_FREE;
    i32[hw + 3] = w(i32, fl);
    i32[fl >> 2] = fp + CH_HEADER;
    fp += CH_HEADER + cap;
  }
  i32[(rec + MC_FREEPTR) >> 2] = fp;
  i32[(w(i32, rec + MC_BLOCKS) + AB_FREEPTR) >> 2] = fp;
}

/**
 * Allocates `size` bytes in context `rec` (its lock held when shared): a free list, the
 * active block, a new block or a block of its own. Returns 0 after a refusal by a budget
 * (see accounting.ts; nothing was changed).
 */
function allocLocked(st: TreeState, rec: number, size: number, skip: number[]): number {
  const h = st.heap;
  let i32 = h.i32;
  const gen = w(i32, rec + MC_GEN);
  if (size <= w(i32, rec + MC_LIMIT)) {
    const k = freeIndex(size), cap = MIN_CHUNK << k, fl = rec + MC_FREELIST + 4 * k;
    const head = w(i32, fl);
    if (head !== 0) {
      i32[fl >> 2] = w(i32, head - CH_HEADER + CH_REQ);
      i32[(head - CH_HEADER + CH_CHECK) >> 2] = gen ^ cap ^ CHUNK_LIVE;
      i32[(head - CH_HEADER + CH_REQ) >> 2] = size;
      return head;
    }
    const fp = w(i32, rec + MC_FREEPTR);
    if (fp + CH_HEADER + cap <= w(i32, rec + MC_ENDPTR)) {
      i32[(rec + MC_FREEPTR) >> 2] = fp + CH_HEADER + cap;
      return writeChunk(i32, fp, rec, cap, gen, size);
    }
    const required = roundUp(AB_HEADER + CH_HEADER + cap, ARENA_QUANTUM);
    let want = w(i32, rec + MC_NEXTBLOCK);
    while (want < required) want *= 2;
    const got = reserve(h, rec, required, want, true, skip, true);
    if (got === 0) return 0;
    const blk = takeBlock(st, rec, got, size);
    i32 = h.i32;
    i32[(rec + MC_NEXTBLOCK) >> 2] = Math.min(
      w(i32, rec + MC_NEXTBLOCK) * 2,
      w(i32, rec + MC_MAXBLOCK),
    );
    retireActive(i32, rec, gen);
    layBlock(i32, blk, rec, got, ABK_NORMAL);
    linkBlock(i32, rec, blk, 0);
    i32[(rec + MC_FREEPTR) >> 2] = blk + AB_HEADER + CH_HEADER + cap;
    i32[(rec + MC_ENDPTR) >> 2] = blk + got;
    return writeChunk(i32, blk + AB_HEADER, rec, cap, gen, size);
  }
  const bytes = roundUp(AB_HEADER + CH_HEADER + size, ARENA_QUANTUM);
  const got = reserve(h, rec, bytes, bytes, true, skip, true);
  if (got === 0) return 0;
  const blk = takeBlock(st, rec, got, size);
  i32 = h.i32;
  layBlock(i32, blk, rec, got, ABK_LARGE);
  Atomics.or(i32, (rec + MC_FLAGS) >> 2, MCF_USED);
  i32[(blk + AB_FREEPTR) >> 2] = blk + got;
  linkBlock(i32, rec, blk, w(i32, rec + MC_BLOCKS));
  return writeChunk(i32, blk + AB_HEADER, rec, got - AB_HEADER - CH_HEADER, gen, size);
}

/**
 * Allocates `size` bytes in context `rec` (id `id`): the slow path, with the checks, the
 * context's lock when it is shared, and the budget's policy (throw, call the soft-budget
 * handler, or wait).
 * @throws {BudgetExceededError} when a budget refuses
 * @throws {OutOfMemoryError} when the heap cannot grow
 * @throws {UmemError} `invalid-argument` for a bad size, `destroyed` for a deleted context
 */
export function allocChunk(
  st: TreeState,
  rec: number,
  id: number,
  size: number,
  fn: string,
): number {
  const h = st.heap;
  checkRequest(fn, size);
  h.sync();
  checkLive(h, rec, id, fn);
  const shared = (w(h.i32, rec + MC_FLAGS) & MCF_SHARED) !== 0;
  const skip: number[] = [];
  let deadline = -1;
  for (;;) {
    let p: number;
    if (shared) lock(h, rec + MC_LOCK);
    try {
      if (shared) checkLive(h, rec, id, fn);
      p = allocLocked(st, rec, size, skip);
    } finally {
      if (shared) unlock(h, rec + MC_LOCK);
    }
    if (p !== 0) return p;
    deadline = afterRefusal(st, rec, size, skip, deadline);
    h.sync();
    checkLive(h, rec, id, fn);
  }
}

/**
 * Finds the context that owns chunk `ptr` from its header, checking that it is a live chunk.
 * @returns the owner's record
 * @throws {UmemError} `invalid-argument` (not an address, or NULL), `duplicate-free` (freed
 *   already), `destroyed` (its context was deleted), `bad-free` (anything else: not a chunk of
 *   a memory context, an interior pointer, a chunk from before its context's last reset)
 */
export function chunkOwner(h: HeapView, ptr: number, fn: string): number {
  if (typeof ptr !== "number" || !Number.isInteger(ptr)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: expected a chunk address, got ${typeof ptr === "number" ? String(ptr) : typeof ptr}`,
    );
  }
  if (ptr === 0) {
    throw new UmemError("invalid-argument", `${fn}: invalid pointer 0x0 (NULL)`);
  }
  const i32 = h.i32, mapped = h.mapped;
  const foreign = (why: string) =>
    new UmemError(
      "bad-free",
      `${fn}: bad free: ${hex(ptr)} is not a chunk allocated in a memory context (${why})`,
      ptr,
    );
  if (ptr < 64 || ptr >= mapped || (ptr & 7) !== 0) {
    throw foreign(ptr >= mapped || ptr < 0 ? "outside the heap" : "misaligned");
  }
  const hdr = ptr - CH_HEADER;
  const rec = w(i32, hdr + CH_CONTEXT), size = w(i32, hdr + CH_SIZE);
  const chk = w(i32, hdr + CH_CHECK);
  if (rec <= 0 || (rec & 7) !== 0 || rec + MC_SIZE > mapped) {
    throw foreign(`its header at ${hex(hdr)} names ${hex(rec)}, which is not a context`);
  }
  const magic = w(i32, rec + MC_MAGIC);
  if (magic !== MC_MAGIC_LIVE && magic !== MC_MAGIC_DEAD) {
    throw foreign(`its header at ${hex(hdr)} names ${hex(rec)}, which is not a context`);
  }
  // A generation the tree has handed out: the chunk was once a chunk of this tree.
  const root = w(i32, rec + MC_ROOT);
  const gens = isLiveRecord(i32, mapped, root) ? w(i32, root + MC_NEXTGEN) : 0;
  const oldGen = (chk ^ size ^ CHUNK_LIVE) >>> 0, oldFreeGen = (chk ^ size ^ CHUNK_FREE) >>> 0;
  const wasChunk = (oldGen >= 1 && oldGen <= gens) || (oldFreeGen >= 1 && oldFreeGen <= gens);
  if (magic === MC_MAGIC_DEAD) {
    if (!wasChunk) throw foreign(`its header at ${hex(hdr)} does not match a context`);
    throw new UmemError(
      "destroyed",
      `${fn}: chunk ${hex(ptr)} belongs to memory context "${readName(h.u8, i32, rec)}" (record ${
        hex(rec)
      }), which was deleted`,
      ptr,
    );
  }
  const gen = w(i32, rec + MC_GEN);
  if (chk === (gen ^ size ^ CHUNK_LIVE)) return rec;
  const name = readName(h.u8, i32, rec);
  if (chk === (gen ^ size ^ CHUNK_FREE)) {
    throw new UmemError(
      "duplicate-free",
      `${fn}: duplicate free: chunk ${hex(ptr)} of memory context "${name}" was freed already`,
      ptr,
    );
  }
  if (wasChunk) {
    const g = oldGen >= 1 && oldGen <= gens ? oldGen : oldFreeGen;
    if (g < (w(i32, rec + MC_ID) >>> 0)) {
      throw new UmemError(
        "destroyed",
        `${fn}: chunk ${hex(ptr)} belongs to a memory context that was deleted (its record at ${
          hex(rec)
        } now holds "${name}")`,
        ptr,
      );
    }
    throw new UmemError(
      "bad-free",
      `${fn}: bad free: chunk ${
        hex(ptr)
      } of memory context "${name}" dates from before the context's last reset, which freed it`,
      ptr,
    );
  }
  throw foreign(`its header at ${hex(hdr)} does not match context "${name}" at ${hex(rec)}`);
}

/** Throws `bad-free` when chunk `ptr` of context `rec` was given to another context. */
function checkExpected(h: HeapView, ptr: number, rec: number, expect: number, fn: string): void {
  if (expect !== 0 && rec !== expect) {
    throw new UmemError(
      "bad-free",
      `${fn}: bad free: chunk ${hex(ptr)} belongs to memory context "${
        readName(h.u8, h.i32, rec)
      }" (${hex(rec)}), not to "${readName(h.u8, h.i32, expect)}" (${hex(expect)})`,
      ptr,
    );
  }
}

/** Frees live chunk `ptr` of context `rec` (its lock held when shared). */
function freeLocked(st: TreeState, rec: number, ptr: number): void {
  const h = st.heap, i32 = h.i32, hdr = ptr - CH_HEADER;
  const size = w(i32, hdr + CH_SIZE), gen = w(i32, rec + MC_GEN);
  i32[(hdr + CH_CHECK) >> 2] = gen ^ size ^ CHUNK_FREE;
  if (size <= w(i32, rec + MC_LIMIT)) {
    const fl = rec + MC_FREELIST + 4 * freeIndex(size);
    i32[(hdr + CH_REQ) >> 2] = w(i32, fl);
    i32[fl >> 2] = ptr;
    if (Atomics.load(i32, (rec + MC_WAITERS) >> 2) > 0) wakeChunkWaiters(h, rec);
    return;
  }
  const blk = hdr - AB_HEADER, bytes = w(i32, blk + AB_SIZE);
  unlinkBlock(i32, rec, blk);
  i32[(blk + AB_MAGIC) >> 2] = 0;
  release(h, rec, bytes, bytes);
  st.blocks.free(blk, bytes);
}

/**
 * Frees chunk `ptr`, finding its context from the header (with `expect` nonzero, it must be
 * that context): the slow path, with every check and the owner's lock when it is shared.
 * @throws {UmemError} as {@linkcode chunkOwner}; `bad-free` for a chunk of another context
 *   than `expect`
 */
export function freeChunk(st: TreeState, ptr: number, expect: number, fn: string): void {
  const h = st.heap;
  h.sync();
  const rec = chunkOwner(h, ptr, fn);
  checkExpected(h, ptr, rec, expect, fn);
  const shared = (w(h.i32, rec + MC_FLAGS) & MCF_SHARED) !== 0;
  if (!shared) {
    freeLocked(st, rec, ptr);
    return;
  }
  lock(h, rec + MC_LOCK);
  try {
    // Checked again under the lock: another worker may have freed it meanwhile.
    if (chunkOwner(h, ptr, fn) !== rec) {
      throw new UmemError(
        "bad-free",
        `${fn}: bad free: chunk ${hex(ptr)} changed context while this worker waited`,
        ptr,
      );
    }
    freeLocked(st, rec, ptr);
  } finally {
    unlock(h, rec + MC_LOCK);
  }
}

/**
 * Resizes chunk `ptr` to `size` bytes in its own context, as `repalloc`: in place when it
 * fits, else a new chunk in the same context, the old contents copied and the old chunk freed.
 * On failure the old chunk is untouched.
 * @throws {BudgetExceededError} when the owner's budget refuses the new chunk
 * @throws {UmemError} as {@linkcode chunkOwner}; `invalid-argument` for a bad size
 */
export function reallocChunk(
  st: TreeState,
  ptr: number,
  size: number,
  expect: number,
  fn: string,
): number {
  const h = st.heap;
  checkRequest(fn, size);
  h.sync();
  const rec = chunkOwner(h, ptr, fn);
  checkExpected(h, ptr, rec, expect, fn);
  const shared = (w(h.i32, rec + MC_FLAGS) & MCF_SHARED) !== 0;
  let keep: number;
  if (shared) lock(h, rec + MC_LOCK);
  try {
    if (shared) chunkOwner(h, ptr, fn);
    const hdr = ptr - CH_HEADER;
    keep = w(h.i32, hdr + CH_REQ);
    if (size <= w(h.i32, hdr + CH_SIZE)) {
      h.i32[(hdr + CH_REQ) >> 2] = size;
      return ptr;
    }
  } finally {
    if (shared) unlock(h, rec + MC_LOCK);
  }
  const gen = w(h.i32, rec + MC_GEN);
  const np = allocChunk(st, rec, w(h.i32, rec + MC_ID), size, fn);
  // The allocation may have run a soft-budget handler that reset the context or freed the
  // chunk: then the old chunk is gone (the new one may even lie where it was), and the new one
  // is given back before the error goes on.
  let gone: unknown = undefined;
  if (np === ptr || w(h.i32, rec + MC_GEN) !== gen) {
    gone = new UmemError(
      "bad-free",
      `${fn}: chunk ${hex(ptr)} was freed while its new chunk was allocated ` +
        `(a soft-budget handler reset its context, or freed it)`,
      ptr,
    );
  } else {
    try {
      chunkOwner(h, ptr, fn);
    } catch (e) {
      gone = e;
    }
  }
  if (gone !== undefined) {
    freeChunk(st, np, rec, fn);
    throw gone;
  }
  h.u8.copyWithin(np, ptr, ptr + Math.min(keep, size));
  freeChunk(st, ptr, rec, fn);
  return np;
}

/** Resolved sizes and budget settings of a new context. */
export interface ContextSettings {
  /** `minContextSize` (0: none). */
  minContextSize: number;
  /** `initBlockSize`. */
  initBlockSize: number;
  /** `maxBlockSize`. */
  maxBlockSize: number;
  /** The budget, or `MC_NO_BUDGET`. */
  budget: number;
  /** The soft budget, or `MC_NO_BUDGET`. */
  softBudget: number;
  /** `POLICY_*`. */
  policy: number;
  /** Wait timeout (ms). */
  waitTimeout: number;
  /** `MCF_*` flags. */
  flags: number;
}

/** Bytes of the keeper block of a context with a name of `nameBytes` UTF-8 bytes. */
export function keeperBytes(nameBytes: number, s: ContextSettings): number {
  const first = AB_HEADER + MC_SIZE + roundUp(nameBytes, 8) + CH_HEADER + MIN_CHUNK;
  const asked = s.minContextSize !== 0 ? s.minContextSize : s.initBlockSize;
  return roundUp(Math.max(first, asked), ARENA_QUANTUM);
}

/**
 * Creates a context record under `parent` (0 for the top, with `st` null and `arena` the
 * tree's new block source): reserves its keeper block in the parent's subtree (budgets apply; a
 * creation never waits), takes it from the arena, lays the record and links it under the
 * parent.
 * @returns the new record's address
 */
export function createRecord(
  h: HeapView,
  st: TreeState | null,
  source: BlockSource,
  parent: number,
  name: Uint8Array,
  s: ContextSettings,
): number {
  const keeper = keeperBytes(name.length, s);
  if (st !== null && parent !== 0) {
    const skip: number[] = [];
    while (reserve(h, parent, keeper, keeper, false, skip, false) === 0) {
      afterRefusal(st, parent, keeper, skip, -1);
    }
  }
  let blk: number;
  try {
    blk = source.alloc(keeper);
    if (st !== null && parent !== 0) notePeak(h, parent);
  } catch (e) {
    if (parent === 0) throw e;
    release(h, parent, keeper, 0);
    if (e instanceof OutOfMemoryError) throw outOfMemory(h, parent, keeper, e);
    throw e;
  }
  const i32 = h.i32, rec = blk + AB_HEADER, data = rec + MC_SIZE + roundUp(name.length, 8);
  layBlock(i32, blk, rec, keeper, ABK_KEEPER);
  i32.fill(0, rec >> 2, (rec + MC_SIZE) >> 2);
  h.u8.set(name, rec + MC_NAME);
  const set = (field: number, v: number) => {
    i32[(rec + field) >> 2] = v;
  };
  set(MC_LIMIT, chunkLimit(s.maxBlockSize));
  set(MC_FREEPTR, data);
  set(MC_ENDPTR, blk + keeper);
  set(MC_FLAGS, s.flags);
  set(MC_BLOCKS, blk);
  set(MC_KEEPER, blk);
  set(MC_DATA0, data);
  set(MC_INITBLOCK, s.initBlockSize);
  set(MC_MAXBLOCK, s.maxBlockSize);
  set(MC_NEXTBLOCK, s.initBlockSize);
  set(MC_MINCONTEXT, s.minContextSize);
  set(MC_SELF, keeper);
  set(MC_TREE, keeper);
  set(MC_PEAK, keeper);
  set(MC_NBLOCKS, 1);
  set(MC_BUDGET, s.budget);
  set(MC_SOFT, s.softBudget);
  set(MC_POLICY, s.policy);
  set(MC_WAITMS, s.waitTimeout);
  set(MC_OWNER, h.slot);
  set(MC_NAMELEN, name.length);
  i32[(blk + AB_FREEPTR) >> 2] = data;
  if (parent === 0) {
    set(MC_ROOT, rec);
    set(MC_NEXTGEN, 1);
    set(MC_ID, 1);
    set(MC_GEN, 1);
    set(MC_FLAGS, s.flags | MCF_TOP);
    Atomics.store(i32, (rec + MC_MAGIC) >> 2, MC_MAGIC_LIVE);
    return rec;
  }
  const root = w(i32, parent + MC_ROOT);
  const gen = nextGen(h, root);
  set(MC_ROOT, root);
  set(MC_ID, gen);
  set(MC_GEN, gen);
  set(MC_PARENT, parent);
  const tl = lockTree(h, parent);
  try {
    const j = h.i32;
    j[(rec + MC_DEPTH) >> 2] = w(j, parent + MC_DEPTH) + 1;
    const first = w(j, parent + MC_FIRSTCHILD);
    j[(rec + MC_NEXTSIB) >> 2] = first;
    if (first !== 0) j[(first + MC_PREVSIB) >> 2] = rec;
    j[(parent + MC_FIRSTCHILD) >> 2] = rec;
    j[(parent + MC_NCHILDREN) >> 2]++;
    Atomics.store(j, (rec + MC_MAGIC) >> 2, MC_MAGIC_LIVE);
  } finally {
    unlock(h, tl);
  }
  return rec;
}

/**
 * Empties context `rec` (its lock and the tree lock held): every block but the keeper leaves
 * the list, the free lists are emptied, the keeper's space is free again, the next block is
 * `initBlockSize` again and the context takes generation `gen`. Returns the blocks that left,
 * as `[address, size, ...]`, for the caller to account for and give back.
 */
export function resetBlocks(h: HeapView, rec: number, gen: number): number[] {
  const i32 = h.i32, keeper = w(i32, rec + MC_KEEPER), out: number[] = [];
  for (let b = w(i32, rec + MC_BLOCKS); b !== 0; b = w(i32, b + AB_NEXT)) {
    if (b !== keeper) out.push(b, w(i32, b + AB_SIZE));
  }
  const data = w(i32, rec + MC_DATA0);
  Atomics.and(i32, (rec + MC_FLAGS) >> 2, ~MCF_USED);
  i32[(keeper + AB_PREV) >> 2] = 0;
  i32[(keeper + AB_NEXT) >> 2] = 0;
  i32[(keeper + AB_FREEPTR) >> 2] = data;
  i32[(rec + MC_BLOCKS) >> 2] = keeper;
  i32[(rec + MC_NBLOCKS) >> 2] = 1;
  i32[(rec + MC_FREEPTR) >> 2] = data;
  i32[(rec + MC_ENDPTR) >> 2] = keeper + w(i32, keeper + AB_SIZE);
  i32.fill(0, (rec + MC_FREELIST) >> 2, (rec + MC_FREELIST + 4 * NUM_FREELISTS) >> 2);
  i32[(rec + MC_NEXTBLOCK) >> 2] = w(i32, rec + MC_INITBLOCK);
  i32[(rec + MC_GEN) >> 2] = gen;
  return out;
}

/**
 * Marks context `rec` deleted (tree lock held) and returns all its blocks, the keeper (which
 * holds the record) last, as `[address, size, ...]`. The record keeps its name, parent and
 * root for the reports about pointers that outlive it, until the memory is reused.
 */
export function killRecord(h: HeapView, rec: number): number[] {
  const i32 = h.i32, keeper = w(i32, rec + MC_KEEPER), out: number[] = [];
  for (let b = w(i32, rec + MC_BLOCKS); b !== 0; b = w(i32, b + AB_NEXT)) {
    if (b !== keeper) out.push(b, w(i32, b + AB_SIZE));
  }
  out.push(keeper, w(i32, keeper + AB_SIZE));
  Atomics.store(i32, (rec + MC_MAGIC) >> 2, MC_MAGIC_DEAD);
  i32[(rec + MC_ID) >> 2] = 0;
  i32[(rec + MC_GEN) >> 2] = 0;
  for (let i = 0; i < out.length; i += 2) i32[(out[i] + AB_MAGIC) >> 2] = 0;
  return out;
}

/** Whether context `rec` holds nothing allocated since it was made or last reset. */
export function isEmptySet(i32: Int32Array, rec: number): boolean {
  if ((w(i32, rec + MC_FLAGS) & MCF_USED) !== 0) return false;
  if (w(i32, rec + MC_BLOCKS) !== w(i32, rec + MC_KEEPER) || w(i32, rec + MC_NBLOCKS) !== 1) {
    return false;
  }
  if (w(i32, rec + MC_FREEPTR) !== w(i32, rec + MC_DATA0)) return false;
  for (let k = 0; k < NUM_FREELISTS; k++) {
    if (w(i32, rec + MC_FREELIST + 4 * k) !== 0) return false;
  }
  return true;
}
