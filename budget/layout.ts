/**
 * The image of a memory context: the context record, the block header and the chunk header,
 * every field a word in the heap's buffer (DESIGN.md, principle 1).
 *
 * Theory. As in PostgreSQL's aset.c, a context (an *allocation set*) owns a list of *blocks*
 * taken from the heap, and carves *chunks* out of them. Its *keeper block* holds the context
 * record itself (`MC_*`, followed by the name), so a context costs one block and nothing
 * else, and a reset keeps it. Every block opens with a 32-byte header (`AB_*`); every chunk
 * with a 16-byte header (`CH_*`) that names its context, so `pfree` and `repalloc` find the
 * owner from the pointer alone. A chunk's `CH_CHECK` word is the owner's generation XOR the
 * chunk's size XOR {@linkcode CHUNK_LIVE} while it is allocated, or XOR {@linkcode CHUNK_FREE}
 * once freed: a second `pfree` is told from a first, and since a context takes a fresh
 * generation at every reset and a deleted context's record has generation 0, a pointer that
 * outlived its context (or its context's last reset) no longer matches.
 *
 * Layout of a keeper block:
 *
 *     [AB header 32][MC record 192][name, padded to 8][chunk][chunk]...  ...free...
 *     ^ block        ^ record       ^                   ^ MC_DATA0       ^ MC_FREEPTR (active)
 *
 * and of any other block `[AB header 32][chunk][chunk]...`; a chunk is
 * `[CH header 16][data: CH_SIZE bytes]`, and pointers handed out point at the data.
 *
 * Invariants.
 * - Addresses are byte offsets; 0 is NULL. Blocks come from the tree's vmem arena (quantum
 *   1 KiB), so block and record addresses are 16-aligned (at least) and chunk data 8-aligned.
 * - `MC_ID` is nonzero and unique in the tree while the context lives; delete sets `MC_ID`
 *   and `MC_GEN` to 0 and `MC_MAGIC` to {@linkcode MC_MAGIC_DEAD}.
 * - Generations come from one counter in the tree's top record, so they never repeat.
 *
 * Lock order: this file holds no code that locks (see context.ts for the order).
 *
 * @module
 */

// ---- Context record (MC_*), in the keeper block after its header ----
/** {@linkcode MC_MAGIC_LIVE} while the context lives, {@linkcode MC_MAGIC_DEAD} after delete. */
export const MC_MAGIC = 0;
/** The context's id: the generation it was created with; 0 once deleted. */
export const MC_ID = 4;
/** The current generation (fresh at every reset; 0 once deleted). Chunk checks use it. */
export const MC_GEN = 8;
/** The active block's free pointer: where the next chunk is carved. */
export const MC_FREEPTR = 12;
/** The active block's end. */
export const MC_ENDPTR = 16;
/** The largest chunk served from the free lists (aset.c's `allocChunkLimit`). */
export const MC_LIMIT = 20;
/** Free-list heads, one word per power of two from 8 to 8192 bytes (11 words). */
export const MC_FREELIST = 24;
/** `MCF_*` flags. */
export const MC_FLAGS = 68;
/** The context's lock (core/lock.ts), taken by every operation on a shared context. */
export const MC_LOCK = 72;
/** Workers waiting to allocate in this context (budget "wait" policy). */
export const MC_WAITERS = 76;
/** The parent's record (0 for the top). */
export const MC_PARENT = 80;
/** The first child's record. */
export const MC_FIRSTCHILD = 84;
/** The next sibling's record. */
export const MC_NEXTSIB = 88;
/** The previous sibling's record. */
export const MC_PREVSIB = 92;
/** The tree's top record (TopMemoryContext), which holds the tree lock. */
export const MC_ROOT = 96;
/** The block list's head: the active block, newest first. */
export const MC_BLOCKS = 100;
/** The keeper block, which holds this record and survives a reset. */
export const MC_KEEPER = 104;
/** The first chunk address in the keeper block (after the record and the name). */
export const MC_DATA0 = 108;
/** `initBlockSize`. */
export const MC_INITBLOCK = 112;
/** `maxBlockSize`. */
export const MC_MAXBLOCK = 116;
/** The size of the next normal block. */
export const MC_NEXTBLOCK = 120;
/** `minContextSize` (0: none). */
export const MC_MINCONTEXT = 124;
/** Bytes of this context's blocks (PostgreSQL's `mem_allocated`). */
export const MC_SELF = 128;
/** Bytes of the blocks of this context and all its descendants: what a budget counts. */
export const MC_TREE = 132;
/** Blocks this context holds. */
export const MC_NBLOCKS = 136;
/** The budget on `MC_TREE` ({@linkcode MC_NO_BUDGET}: none). */
export const MC_BUDGET = 140;
/** The soft budget on `MC_TREE` ({@linkcode MC_NO_BUDGET}: none). */
export const MC_SOFT = 144;
/** `POLICY_*`: what a request past the budget does. */
export const MC_POLICY = 148;
/** How long a request waits under the "wait" policy, ms. */
export const MC_WAITMS = 152;
/** Futex word: bumped whenever memory is released in the subtree while someone sleeps on it. */
export const MC_SEQ = 156;
/** Workers sleeping on `MC_SEQ`. */
export const MC_SLEEPERS = 160;
/** The worker slot that created the context. */
export const MC_OWNER = 164;
/** Depth in the tree (the top is 0). */
export const MC_DEPTH = 168;
/** Bytes of the name (UTF-8). */
export const MC_NAMELEN = 172;
/** Top record only: the tree lock. */
export const MC_TREELOCK = 176;
/** Top record only: the generation counter. */
export const MC_NEXTGEN = 180;
/** Number of children. */
export const MC_NCHILDREN = 184;
/** The most bytes `MC_TREE` has reached. */
export const MC_PEAK = 188;
/** The name's first byte; the record proper ends here. */
export const MC_NAME = 192;
/** Bytes of the fixed part of the record. */
export const MC_SIZE = 192;
/** The longest name, in UTF-8 bytes. */
export const MC_NAME_MAX = 127;
/** "MCXT" as a little-endian word. */
export const MC_MAGIC_LIVE = 0x5458434d;
/** "mcxt" as a little-endian word: the record of a deleted context. */
export const MC_MAGIC_DEAD = 0x7478636d;
/** `MC_BUDGET`/`MC_SOFT` of a context without one. */
export const MC_NO_BUDGET = 0x7fffffff;

/** Flag: the context is shared between workers: every operation takes its lock. */
export const MCF_SHARED = 1;
/** Flag: the tree's top (TopMemoryContext). */
export const MCF_TOP = 2;
/**
 * Flag: a large chunk (a block of its own) was allocated since the context was made or last
 * reset; freeing it leaves no other trace, and `isEmpty` must still say no (PostgreSQL's
 * `isReset` is cleared by any palloc).
 */
export const MCF_USED = 4;

/** Policy: a request past the budget throws `BudgetExceededError`. */
export const POLICY_ERROR = 0;
/** Policy: a request past the budget waits for memory to be released in the subtree. */
export const POLICY_WAIT = 1;

/** Number of free lists (aset.c's `ALLOCSET_NUM_FREELISTS`). */
export const NUM_FREELISTS = 11;
/** The smallest chunk (aset.c's `1 << ALLOC_MINBITS`). */
export const MIN_CHUNK = 8;
/** The largest free-list chunk (aset.c's `ALLOC_CHUNK_LIMIT`). */
export const CHUNK_LIMIT = 8192;
/** A chunk may be at most this fraction of the largest block (`ALLOC_CHUNK_FRACTION`). */
export const CHUNK_FRACTION = 4;

// ---- Block header (AB_*) ----
/** The owning context's record. */
export const AB_CONTEXT = 0;
/** Previous block in the context's list. */
export const AB_PREV = 4;
/** Next block in the context's list. */
export const AB_NEXT = 8;
/** Bytes of the block, header included: the size taken from the arena. */
export const AB_SIZE = 12;
/** The free pointer when the block is not the active one (the end, for a full block). */
export const AB_FREEPTR = 16;
/** {@linkcode AB_MAGIC_VALUE}. */
export const AB_MAGIC = 20;
/** `ABK_*` kind. */
export const AB_KIND = 24;
/** Bytes of a block header. */
export const AB_HEADER = 32;
/** "MCXB" as a little-endian word. */
export const AB_MAGIC_VALUE = 0x4258434d;
/** The keeper block. */
export const ABK_KEEPER = 1;
/** A block carved into chunks. */
export const ABK_NORMAL = 2;
/** A block holding one chunk larger than `MC_LIMIT`. */
export const ABK_LARGE = 3;

// ---- Chunk header (CH_*), at chunk - CH_HEADER ----
/** The owning context's record. */
export const CH_CONTEXT = 0;
/** Bytes of data: a power of two up to `MC_LIMIT`, or more for a chunk with its own block. */
export const CH_SIZE = 4;
/** Owner's generation ^ size ^ {@linkcode CHUNK_LIVE} (or ^ {@linkcode CHUNK_FREE}). */
export const CH_CHECK = 8;
/** The requested size while allocated; the next free chunk while on a free list. */
export const CH_REQ = 12;
/** Bytes of a chunk header. */
export const CH_HEADER = 16;
/** Mixed into `CH_CHECK` of an allocated chunk. */
export const CHUNK_LIVE = 0x2d4c4956;
/** Mixed into `CH_CHECK` of a freed chunk. */
export const CHUNK_FREE = 0x2d465245;

/** The largest request (PostgreSQL's `MaxAllocSize`, 1 GiB - 1). */
export const MAX_ALLOC = 0x3fffffff;
/** The name of the vmem arena every context's blocks come from. */
export const ARENA_NAME = "umem_mcxt";
/** The arena's quantum: every block is a multiple of it (aset.c's sizes all are). */
export const ARENA_QUANTUM = 1024;
/** Blocks up to this size come from the arena's quantum caches (magazines, no lock). */
export const ARENA_QCACHE_MAX = 16 * 1024;

/** Rounds `n` up to a multiple of the power of two `a`. */
export function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** The free list of a chunk of `size` bytes (0 ≤ size ≤ 8192): 8 << index ≥ size. */
export function freeIndex(size: number): number {
  return size <= MIN_CHUNK ? 0 : 29 - Math.clz32(size - 1);
}

/** Formats an address as libumem does: `0x` and lower-case hex. */
export function hex(addr: number): string {
  return "0x" + (addr >>> 0).toString(16);
}

/** Reads a context's name from its record. */
export function readName(u8: Uint8Array, i32: Int32Array, rec: number): string {
  const n = i32[(rec + MC_NAMELEN) >> 2];
  if (n <= 0 || n > MC_NAME_MAX) return "?";
  return new TextDecoder().decode(u8.slice(rec + MC_NAME, rec + MC_NAME + n));
}

/** Whether `rec` is the address of a live context record in views of `mapped` bytes. */
export function isLiveRecord(i32: Int32Array, mapped: number, rec: number): boolean {
  return (rec | 0) === rec && rec > 0 && (rec & 7) === 0 && rec + MC_SIZE <= mapped &&
    i32[(rec + MC_MAGIC) >> 2] === MC_MAGIC_LIVE && i32[(rec + MC_ID) >> 2] !== 0;
}
