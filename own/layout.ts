/**
 * The image of the `own` module: its root record, the address table and the per-buffer record,
 * every field a word in the heap's buffer (DESIGN.md, principle 1).
 *
 * Theory. Rust checks ownership when it compiles; here the same rules are checked when the
 * program runs, and the state they need lives in the heap so that every worker sees it. Each
 * tracked buffer has an *ownership record* (`OR_*`, 32 bytes from the heap) whose first word,
 * the *state word* (`OS_*` bit fields), says who owns the buffer, whether it is in transit to
 * another worker, and how it is borrowed: a count of shared borrows, a mutable-borrow bit, and a
 * count of references lent to other workers. Every change of a state word that another worker
 * may race is one `Atomics.compareExchange` (or one `Atomics.sub`/`and` to release), so two
 * workers racing for a mutable borrow get exactly one winner; the owner's borrows through a
 * handle that never lent a reference (no other worker can write the word then, guard.ts) are
 * plain loads and stores. The *address table* (`OT_*` root record, and a slot
 * array of `[buffer address, record address]` pairs with open addressing and linear probing)
 * finds a record from a buffer address: for the free hook, for `receive` and `access` to check
 * a token, and for `adopt` to refuse a buffer someone owns already. A handle keeps its record's
 * address, so borrows never look anything up.
 *
 * Layout of a record:
 *
 *     [state][generation][buffer][size][alloc stack][borrow stack][move stack][source]
 *
 * and of the state word (bit 31 is always 0):
 *
 *     30 29 | 28 .. 23 | 22 .. 15 | 14  | 13 .. 0
 *     phase | owner    | lent     | mut | shared borrows
 *
 * Invariants.
 * - The page count of page `p` is at least the number of buffers in the table whose address
 *   is in page `p` (it is raised before the insert and lowered after the removal).
 * - The root record is published once through module anchor `MOD_OWN` and never moves; the
 *   slot array moves when it grows (under the table lock), records never move.
 * - A buffer address is in the table iff its record's phase is `PH_LIVE`, `PH_TRANSIT` or
 *   `PH_DROPPING`; a record is freed only after its key left the table, under the table lock,
 *   so a record found under the lock is not freed while the lock is held.
 * - `OS_MUT` set implies the shared count is 0. Owner, phase and generation change only when no
 *   borrow is held and nothing is lent (`move`, `send`, `receive`, `drop`).
 * - The generation is unique per handle (one heap-wide counter), so a token or handle that
 *   outlived its buffer's move never matches again.
 *
 * Lock order: the table lock (`OT_LOCK`) is taken before any core lock (the table grows with
 * `heap.alloc` while holding it); no free happens while it is held, since the module's free
 * hook takes it.
 *
 * @module
 */

// ---- Root record (OT_*), published through the module anchor MOD_OWN ----
/** {@linkcode OT_MAGIC_VALUE} once the record is laid. */
export const OT_MAGIC = 0;
/** The table lock (core/lock.ts): insert, remove, grow, and every lookup. */
export const OT_LOCK = 4;
/** The last handle generation handed out (a counter, `Atomics.add`). */
export const OT_NEXTGEN = 8;
/** Address of the slot array. */
export const OT_TABLE = 12;
/** Slots in the array (a power of two). */
export const OT_CAP = 16;
/** Buffers in the table (live, in transit or being dropped). */
export const OT_COUNT = 20;
/** Address of the module's own stack table for `full` mode (0 until needed, set once). */
export const OT_STACKS = 24;
/** Records given up by a free that the error handler let through (they stay allocated). */
export const OT_ORPHANS = 28;
/** Buffers ever tracked (alloc, adopt, clone); changed under the table lock. */
export const OT_TRACKED = 32;
/** Buffers dropped through their handles; changed under the table lock. */
export const OT_DROPPED = 36;
/**
 * Address of the page counts: one `Int16` per page of the heap's largest size, the number of
 * tracked buffers that start in that page, so that the free hook lets every other free through
 * after one load.
 */
export const OT_PAGES = 40;
/** log2 of the page the page counts are kept by (the heap's page size). */
export const PC_PAGE_SHIFT = 12;
/**
 * The table's sequence word: odd while a writer (holding the lock) changes the slot array, so
 * that the free hook can look a buffer up without the lock and retry if it changed meanwhile.
 */
export const OT_SEQ = 44;
/**
 * Address of the ledger directory: one word per worker slot (`LEDGER_SLOTS`), the address of
 * that slot's ledger of what it holds through lent references (ledger.ts), 0 for none.
 */
export const OT_LEDGERS = 48;
/** Size of the root record. */
export const OT_SIZE = 52;
/** "OWN1" as a little-endian word. */
export const OT_MAGIC_VALUE = 0x314e574f;

// ---- Slot array: OT_CAP pairs ----
/** Slot: the buffer address (0: empty). */
export const TS_KEY = 0;
/** Slot: the record address. */
export const TS_REC = 4;
/** Size of a slot. */
export const TS_SIZE = 8;
/** Slots of a new table. */
export const TABLE_MIN_CAP = 256;
/** The table doubles when more than this fraction of 256 of its slots is used. */
export const TABLE_LOAD_256 = 160;

// ---- Ledger of one worker slot (LG_*), and its entries (LE_*) ----
/** Worker slots the ledger directory has a word for (the owner field's range). */
export const LEDGER_SLOTS = 64;
/** Ledger: entries it has room for. */
export const LG_CAP = 0;
/** Ledger: entries in use (the first `LG_COUNT`, in no order). */
export const LG_COUNT = 4;
/** Ledger: bytes before the first entry. */
export const LG_HDR = 8;
/** Entries of a new ledger. */
export const LEDGER_MIN_CAP = 8;
/** Entry: the ownership record the slot holds something of. */
export const LE_REC = 0;
/** Entry: references the slot holds (counted in the record's lent field). */
export const LE_LENT = 4;
/** Entry: shared borrows the slot took through them (counted in the shared count). */
export const LE_SHARED = 8;
/** Entry: 1 when the slot holds the mutable borrow through one of them. */
export const LE_MUT = 12;
/** Size of an entry. */
export const LE_SIZE = 16;

// ---- Ownership record (OR_*) ----
/** The state word (`OS_*` fields). */
export const OR_STATE = 0;
/** The generation of the handle that may use the record now. */
export const OR_GEN = 4;
/** The buffer's address. */
export const OR_PTR = 8;
/** The buffer's size (as given to `heap.alloc`). */
export const OR_SIZE = 12;
/** Interned stack of the allocation or adoption (`full` mode; 0: none). */
export const OR_ALLOC_STACK = 16;
/** Interned stack of the latest borrow (`full` mode; 0: none). */
export const OR_BORROW_STACK = 20;
/** Interned stack of the latest move, send or receive (`full` mode; 0: none). */
export const OR_MOVE_STACK = 24;
/**
 * Where the buffer goes back at drop: {@linkcode SRC_HEAP} (`heap.free(ptr, size)`),
 * {@linkcode SRC_LIBC} (`heap.libc.free(ptr)`), or the address of the cache record
 * (`Cache.free(ptr)`).
 */
export const OR_SOURCE = 28;
/** Size of a record. */
export const OR_BYTES = 32;
/** Source: the heap's sized interface. */
export const SRC_HEAP = 0;
/** Source: the heap's malloc-compatible interface. */
export const SRC_LIBC = 1;
/**
 * Flag on a record's source (the sign bit: no address has it): the `Ownership` that tracks the
 * buffer asked for no vetting of frees (`guardFrees: false`), so the worker's free hook, there
 * for other `Ownership`s, lets a free of it through.
 */
export const SRC_UNGUARDED = 1 << 31;

// ---- State word (OS_*) ----
/** Mask of the shared-borrow count. */
export const OS_COUNT = 0x3fff;
/** The mutable-borrow bit. */
export const OS_MUT = 1 << 14;
/** Shift of the lent count: references held by `Shared` handles. */
export const OS_LENT_SHIFT = 15;
/** One lent reference. */
export const OS_LENT_ONE = 1 << OS_LENT_SHIFT;
/** Mask of the lent count. */
export const OS_LENT = 0xff << OS_LENT_SHIFT;
/** Shift of the owner's worker slot. */
export const OS_OWNER_SHIFT = 23;
/** Mask of the owner's worker slot. */
export const OS_OWNER = 0x3f << OS_OWNER_SHIFT;
/** Shift of the phase (`PH_*`). */
export const OS_PHASE_SHIFT = 29;
/** Mask of the phase. */
export const OS_PHASE = 3 << OS_PHASE_SHIFT;
/**
 * Shift of the destination of a buffer in transit: while the phase is `PH_TRANSIT` no reference
 * is lent, and the lent field holds the one worker slot that may receive it, plus 1 (0: any),
 * so that a token edited on its way cannot redirect it.
 */
export const OS_DEST_SHIFT = OS_LENT_SHIFT;
/** Mask of the destination (the lent field, in transit). */
export const OS_DEST = OS_LENT;
/** Any borrow or lent reference: the buffer may not move or be dropped. */
export const OS_BUSY = OS_COUNT | OS_MUT | OS_LENT;

/** Phase: given up (a free let through by the error handler); the record is kept. */
export const PH_ORPHAN = 0;
/** Phase: owned by the worker in the owner field. */
export const PH_LIVE = 1;
/** Phase: sent by the worker in the owner field, not yet received. */
export const PH_TRANSIT = 2;
/** Phase: its owner is freeing it. */
export const PH_DROPPING = 3;

/**
 * A state word from its fields.
 *
 * @param phase a `PH_*` value
 * @param owner a worker slot
 * @returns the word with no borrow and nothing lent
 */
export function stateWord(phase: number, owner: number): number {
  return (phase << OS_PHASE_SHIFT) | (owner << OS_OWNER_SHIFT);
}
