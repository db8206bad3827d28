/**
 * The layout of an allocation trace: the fields of one record, the operation and interface
 * codes, and the header of a `.umt` file, each declared once here.
 *
 * Theory. A trace is a sequence of records, one per alloc, free or resize, each
 * {@linkcode TR_WORDS} unsigned 32-bit words in one `Uint32Array`, with the times in a
 * parallel `Float64Array` (microseconds since the trace began). Sites (call sites) and caches
 * are interned in two tables and a record holds their index. A free or a resize names the
 * record that made its block (`TR_REF`): replay maps addresses by record index, so a trace
 * recorded at one set of addresses replays against any allocator.
 *
 * Invariants. `TR_REF` of record `i` is {@linkcode NO_REF} or an index `< i` of an alloc or a
 * resize; `TR_SITE` indexes the site table (0 is the unknown site, the empty string);
 * `TR_CACHE` is 0 or 1 + an index of the cache table.
 *
 * Lock order: none; nothing here lives in a heap.
 *
 * @module
 */

// ---- A record: TR_WORDS words ----
/** Operation (bits 0..7, `OP_*`), worker slot (bits 8..15), interface (bits 16..23, `API_*`). */
export const TR_OP = 0;
/** Size asked for (the new size for a resize). */
export const TR_SIZE = 1;
/** The block's address (the new address for a resize). */
export const TR_ADDR = 2;
/** A resize's old address (0 otherwise). */
export const TR_OLDADDR = 3;
/** A resize's old size; a free's size given back (0 when not known). */
export const TR_OLDSIZE = 4;
/** 0, or 1 + the index of the cache in the cache table. */
export const TR_CACHE = 5;
/** Index of the call site in the site table (0: unknown). */
export const TR_SITE = 6;
/** For a free or resize: the index of the record that made the block, or {@linkcode NO_REF}. */
export const TR_REF = 7;
/** Words per record. */
export const TR_WORDS = 8;
/** Bytes per record in a file: the words and the time. */
export const TR_BYTES = TR_WORDS * 4 + 8;

/** `TR_REF` of a free or resize whose block was made before the recording began. */
export const NO_REF = 0xffffffff;

/** Shift of the worker slot in `TR_OP`. */
export const OPF_WORKER_SHIFT = 8;
/** Shift of the interface in `TR_OP`. */
export const OPF_API_SHIFT = 16;
/** Mask of one 8-bit field of `TR_OP`. */
export const OPF_MASK = 0xff;

// ---- Operations ----
/** An allocation. */
export const OP_ALLOC = 1;
/** A free. */
export const OP_FREE = 2;
/** A resize (realloc): the old block is gone, the new one lives. */
export const OP_RESIZE = 3;

// ---- Interfaces the operation came through ----
/** The heap's sized interface (`heap.alloc(size)`, `heap.free(ptr, size)`). */
export const API_HEAP = 0;
/** An object cache (`cache.alloc()`). */
export const API_CACHE = 1;
/** `heap.libc` (malloc, free, realloc). */
export const API_LIBC = 2;
/** A Vmalloc region (from a VMTRACE file). */
export const API_REGION = 3;

// ---- The .umt file header (all little-endian) ----
/** Magic number: the bytes "UMT1". */
export const UMT_MAGIC = 0x31544d55;
/** Format version. */
export const UMT_VERSION = 1;
/** Offset of the magic. */
export const UH_MAGIC = 0;
/** Offset of the version. */
export const UH_VERSION = 4;
/** Offset of the record count. */
export const UH_COUNT = 8;
/** Offset of the number of sites. */
export const UH_NSITES = 12;
/** Offset of the number of caches. */
export const UH_NCACHES = 16;
/** Offset of the byte length of the tables (sites then caches), a multiple of 8. */
export const UH_TABLES = 20;
/** Offset of the wall-clock time of the trace's start (f64, ms since the epoch). */
export const UH_START = 24;
/** Offset of the workers bitmap's low word (bit n: slot n recorded). */
export const UH_WORKERS_LO = 32;
/** Offset of the workers bitmap's high word. */
export const UH_WORKERS_HI = 36;
/** Offset of a checksum (FNV-1a, 32 bits) of the whole file but these four bytes. */
export const UH_CHECK = 40;
/** Reserved, 0. */
export const UH_RESERVED = 44;
/** Bytes of the header. */
export const UH_SIZE = 48;

// ---- Table entries in the file ----
/** A site entry: its UTF-8 byte length (u32), then the bytes, padded to 4. */
export const TS_LEN = 0;
/** A cache entry: its buffer size (u32), then its name as a site entry. */
export const TC_BUFSIZE = 0;
