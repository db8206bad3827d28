/**
 * The image of a region: the region record, the segment header, the block header and the
 * call-site table, every field a word in the region's buffer (DESIGN.md, principle 1).
 *
 * Theory. As in Vmalloc (Vo 1996), a region is a set of *segments* of raw memory that its
 * discipline hands out, each tiled by *blocks* from its first block to a sentinel. The first
 * segment (the *home* segment) holds the region record (`RG_*`) right after its header, and,
 * for the `debug` and `profile` methods, the call-site table (`ST_*`, `SE_*`) and its string
 * pool; blocks follow. Since all of it is in the buffer, a region over a buffer that was saved
 * to a file and read back, or that another worker holds, is opened again from the bytes alone.
 *
 * Layout of the home segment:
 *
 *     [SG header 16][RG record 192][site table + strings (debug, profile)][block]...[sentinel 8]
 *
 * and of any other segment `[SG header 16][block][block]...[sentinel 8]`. A block is
 * `[BK header 8][data]`; the address handed out is the data's. A free block keeps its tree
 * links in its data (`FB_LEFT`, `FB_RIGHT`) and its size in its last word (the footer), so the
 * block after it can coalesce backwards; that block's header then has {@linkcode F_PFREE}.
 * A block freed but not yet merged (*junk*, Vmalloc's cached block) keeps {@linkcode F_BUSY}
 * so its neighbours leave it alone, and links through `JB_NEXT`. Blocks of the `debug` and
 * `profile` methods end with a trailer (`TR_SIZE`, `TR_SITE`): the size asked for and the
 * call site of the allocation.
 *
 * Invariants.
 * - Addresses are byte offsets in the region's buffer; 0 is NULL. Segments and blocks are
 *   8-aligned; block sizes are multiples of 8 and at least {@linkcode MIN_BLOCK}.
 * - No two free blocks are adjacent once the junk has been reclaimed; the header word of a
 *   block holds its size and the `F_*` flags; its check word is its address XOR one of the
 *   `K_*` keys, which says what the block is (busy, free, junk, a free pool block, internal).
 *
 * Lock order: this file holds no code that locks (see region.ts).
 *
 * @module
 */

/** "RGN1": the region record's magic word. */
export const RG_MAGIC_VALUE = 0x52474e31;
/** The record's format version; a record of another version is refused as `corrupt-image`. */
export const RG_VERSION_VALUE = 1;
/** The magic word of a closed region. */
export const RG_MAGIC_DEAD = 0x52474e30;

// ---- Region record (RG_*), 192 bytes, 8-aligned, after the home segment's header ----
/** {@linkcode RG_MAGIC_VALUE} while the region lives. */
export const RG_MAGIC = 0;
/** {@linkcode RG_VERSION_VALUE}. */
export const RG_VERSION = 4;
/** The method's code (`M_*`). */
export const RG_METHOD = 8;
/** `RF_*` flags. */
export const RG_FLAGS = 12;
/** The region's lock word (region/lock.ts). */
export const RG_LOCK = 16;
/** The newest segment (the list runs through `SG_NEXT`). */
export const RG_SEGS = 20;
/** Root of the splay tree of free blocks (0: empty). */
export const RG_ROOT = 24;
/** The wilderness: the free block that ends the newest segment (0: none). */
export const RG_WILD = 28;
/** `last`: the last block allocated, the only one `free` and `resize` accept (0: none). */
export const RG_LAST = 32;
/** `pool`: the block size of the pool (0 until the first allocation after open or clear). */
export const RG_POOLSIZE = 36;
/** `pool`: the list of free pool blocks (through `JB_NEXT`). */
export const RG_POOLFREE = 40;
/** Busy blocks handed out. */
export const RG_NBUSY = 44;
/** Bytes of busy blocks (block sizes, headers included). */
export const RG_SBUSY = 48;
/** The most bytes busy at once. */
export const RG_MAXBUSY = 52;
/** Bytes of all segments. */
export const RG_EXTENT = 56;
/** Allocations since open. */
export const RG_NALLOC = 60;
/** Frees since open. */
export const RG_NFREE = 64;
/** Blocks that `resize` had to move. */
export const RG_MOVES = 68;
/** Bytes `resize` copied (a float64). */
export const RG_COPIED = 72;
/** The next handle id (the lock's holder tags); taken with `Atomics.add`. */
export const RG_NEXTID = 80;
/** The call-site table's address (0: none). */
export const RG_SITES = 84;
/** Junk blocks too big for the exact-size lists (through `JB_NEXT`). */
export const RG_JUNK = 88;
/** Watched addresses (`debug`): {@linkcode WATCH_MAX} words, 0 for an empty entry. */
export const RG_WATCH = 92;
/** Number of watch words. */
export const WATCH_MAX = 8;
/** Exact-size junk lists: {@linkcode NCACHE} words, for block sizes `MIN_BLOCK + 8 * i`. */
export const RG_CACHE = 124;
/** Number of exact-size junk lists. */
export const NCACHE = 16;
/**
 * The region's generation: drawn when it opens (one more than a closed region's at the same
 * address, else at random). Each handle keeps the one it opened, so a handle on a region since
 * closed fails even when a new region opens at the same address.
 */
export const RG_GEN = 188;
/** Bytes of the record. */
export const RG_SIZE = 192;

/** Largest block size kept on an exact-size junk list. */
export const CACHE_MAX_BLOCK = 24 + 8 * (NCACHE - 1);

// ---- Method codes (RG_METHOD) ----
/** Vmbest. */
export const M_BEST = 1;
/** Vmpool. */
export const M_POOL = 2;
/** Vmlast. */
export const M_LAST = 3;
/** Vmdebug. */
export const M_DEBUG = 4;
/** Vmprofile. */
export const M_PROFILE = 5;

// ---- Region flags (RG_FLAGS) ----
/** `VM_TRUST`: no locking, no argument checks. */
export const RF_TRUST = 1;
/** `VM_DBCHECK`: check the whole region at every allocation (`debug`). */
export const RF_CHECK = 2;

// ---- Segment header (SG_*), 16 bytes ----
/** Bytes of the segment, header and sentinel included. */
export const SG_SIZE = 0;
/** The next older segment (0: none). */
export const SG_NEXT = 4;
/** The segment's first block. */
export const SG_FIRST = 8;
/** {@linkcode SG_MAGIC_VALUE}. */
export const SG_MAGIC = 12;
/** Bytes of the segment header. */
export const SG_HDR = 16;
/** "RSEG". */
export const SG_MAGIC_VALUE = 0x52534547;
/** Bytes of the sentinel block that ends every segment. */
export const SENTINEL = 8;

// ---- Block header (BK_*), 8 bytes before the data ----
/** The block's size (header included) with the `F_*` flags in its low 3 bits. */
export const BK_HEAD = 0;
/** The block's address XOR a `K_*` key. */
export const BK_CHECK = 4;
/** Bytes of the block header. */
export const BK_HDR = 8;
/** The smallest block: header, two tree links and the footer. */
export const MIN_BLOCK = 24;
/** Mask of the size in a header word. */
export const SIZE_MASK = ~7;

/** The block is busy (or junk, or a sentinel): neighbours must not merge with it. */
export const F_BUSY = 1;
/** The block before this one is free, and its footer holds its size. */
export const F_PFREE = 2;
/** The block was freed and waits on a junk list to be merged. */
export const F_JUNK = 4;

/** Check key of a busy user block. */
export const K_BUSY = 0x2b05e11a;
/** Check key of a free block (in the tree or the wilderness). */
export const K_FREE = 0x0f4ee0b1;
/** Check key of a junk block. */
export const K_JUNK = 0x3a4c0bad;
/** Check key of a free block of a pool. */
export const K_POOLFREE = 0x9001f4ee;
/** Check key of a sentinel. */
export const K_SENTINEL = 0x5e971e1;

// ---- Free and junk block fields, in the data ----
/** Left child in the splay tree. */
export const FB_LEFT = 8;
/** Right child in the splay tree. */
export const FB_RIGHT = 12;
/** Next junk or free pool block. */
export const JB_NEXT = 8;

// ---- Trailer of debug and profile blocks, counted back from the block's end ----
/** The size asked for. */
export const TR_SIZE = 8;
/** The call site (index in the site table). */
export const TR_SITE = 4;
/** Bytes of the trailer. */
export const TR_BYTES = 8;
/** Least bytes of redzone after a debug block's data. */
export const REDZONE_MIN = 4;
/** Most redzone bytes written and checked after a debug block's data (the rest of a block
 * with slack is left alone, so a check costs constant time). */
export const REDZONE_SPAN = 64;
/** The redzone's byte. */
export const REDZONE_BYTE = 0xbb;

// ---- Call-site table (ST_*), after the record in debug and profile regions ----
/** Sites in use. */
export const ST_COUNT = 0;
/** Bytes of the string pool in use. */
export const ST_STRTOP = 4;
/** First entry. */
export const ST_ENTRIES = 8;
/** Entries in the table; site 0 is the unknown site. */
export const SITES_MAX = 128;
/** Bytes of one entry. */
export const SE_SIZE = 48;
/** Offset of the file name in the string pool. */
export const SE_FILE = 0;
/** Bytes of the file name (UTF-8). */
export const SE_FLEN = 4;
/** The line. */
export const SE_LINE = 8;
/** Allocations made here. */
export const SE_NALLOC = 12;
/** Frees of blocks allocated here. */
export const SE_NFREE = 16;
/** Bytes busy from here now. */
export const SE_BUSY = 20;
/** Bytes allocated here (a float64). */
export const SE_SALLOC = 24;
/** Bytes freed of blocks allocated here (a float64). */
export const SE_SFREE = 32;
/** The most bytes busy from here at once. */
export const SE_MAXBUSY = 40;
/** Bytes of the string pool. */
export const STR_BYTES = 4096;
/** Bytes of the table and its string pool. */
export const ST_BYTES = ST_ENTRIES + SITES_MAX * SE_SIZE + STR_BYTES;

/** Rounds `n` up to a multiple of `m` (a power of two). */
export function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}
