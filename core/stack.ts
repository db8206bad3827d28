/**
 * Interned stacks: the stacks of audit records and logs, kept inside the image so that a
 * snapshot carries them.
 *
 * Theory. A stack is captured raw (an `Error` with `Error.stackTraceLimit` set to the audit
 * depth plus umem's own frames), and its text is made only when something reads it: formatted
 * (umem's frames dropped, `frames` kept), looked up in a per-worker map keyed by the raw text,
 * and on a miss interned in the shared stack table, a hash table of entries holding the text.
 * An interned stack's id is its entry's address; 0 means none.
 *
 * Formatting is what costs: V8 captures the frames eagerly but makes the text of `.stack` only
 * when it is read, and Deno's text (source-mapped, frame by frame) costs 30 to 90 µs for 16
 * frames where the capture costs 2.5 µs. So the audit path (captureStackDeferred) keeps the raw
 * capture in this worker's ring of pending stacks and writes a pending id (negative: the
 * worker's slot and the capture's sequence number) into the audit record and the transaction
 * log, noting where it wrote it (notePendingAt). A pending stack is interned, and the places
 * that still hold its id are given the interned id, when a report or a tool reads it
 * (readStack, resolveStack), when a snapshot is taken or the worker detaches (internPending),
 * and when the ring comes round to its slot again while a noted place still holds it. A stack
 * that nothing holds any more by then (the buffer had another transaction since) is dropped
 * unformatted: in a loop of pairs that is nearly every one. V8's capture also costs for each
 * frame it walks before the ones it keeps, so the public entry points of an audited heap
 * capture their caller's stack themselves, first thing, and hand the raw capture in
 * (keepPending).
 *
 * Invariants. Entries are never freed; the text area only grows, and when it is full new
 * stacks get id 0 (reports then say the table is full). The table has its own lock, a leaf.
 * A pending id names the worker that captured it; only that worker can intern it (the raw
 * capture is a JavaScript object of its own), and another worker reading it is told whose it
 * is. A place holding a pending id is replaced only by compare-and-exchange, so a transaction
 * that wrote the place since wins.
 *
 * @module
 */

import {
  HDR_AUDIT_FRAMES,
  HDR_NSLOTS,
  HDR_STACKS,
  HDR_TXLOG,
  type HeapView,
  MAX_SLOTS,
  PAGE_SIZE,
  roundUp,
} from "./image.ts";
import { LG_NREC } from "./log.ts";
import { lock, unlock } from "./lock.ts";

/** The table's lock. */
export const ST_LOCK = 0;
/** Buckets (a power of two). */
export const ST_NBUCKETS = 4;
/** Stacks interned. */
export const ST_COUNT = 8;
/** Next free byte of the text area. */
export const ST_NEXT = 12;
/** End of the table. */
export const ST_END = 16;
/** First bucket. */
export const ST_BUCKETS = 32;

/** Entry: next in the bucket. */
export const SE_NEXT = 0;
/** Entry: hash of the text. */
export const SE_HASH = 4;
/** Entry: bytes of text. */
export const SE_LEN = 8;
/** Entry: the text (UTF-8, frames separated by newlines). */
export const SE_TEXT = 12;

/** Default size of the stack table. */
export const STACK_TABLE_BYTES = 1 << 20;
const ST_BUCKETS_N = 4096;

/** Lays an empty stack table of `bytes` at `st`. */
export function layStackTable(h: HeapView, st: number, bytes: number): void {
  h.i32.fill(0, st >> 2, (st + ST_BUCKETS + ST_BUCKETS_N * 4) >> 2);
  h.i32[(st + ST_NBUCKETS) >> 2] = ST_BUCKETS_N;
  h.i32[(st + ST_NEXT) >> 2] = st + ST_BUCKETS + ST_BUCKETS_N * 4;
  h.i32[(st + ST_END) >> 2] = st + bytes;
}

/** Bytes to allocate for a stack table. */
export function stackTableBytes(): number {
  return roundUp(STACK_TABLE_BYTES, PAGE_SIZE);
}

function hashText(s: string): number {
  let x = 0x811c9dc5 | 0;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 0x01000193);
  return x;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Interns `text` in the table at `st`; returns its id (entry address), or 0 if full. */
export function internStack(h: HeapView, st: number, text: string): number {
  const hash = hashText(text);
  const bytes = encoder.encode(text);
  const b = st + ST_BUCKETS + ((hash & (h.i32[(st + ST_NBUCKETS) >> 2] - 1)) << 2);
  lock(h, st + ST_LOCK);
  try {
    for (let e = h.i32[b >> 2]; e !== 0; e = h.i32[(e + SE_NEXT) >> 2]) {
      if (h.i32[(e + SE_HASH) >> 2] === hash && readStack(h, e) === text) return e;
    }
    const e = h.i32[(st + ST_NEXT) >> 2];
    const end = roundUp(e + SE_TEXT + bytes.length, 4);
    if (end > h.i32[(st + ST_END) >> 2]) return 0;
    h.i32[(e + SE_HASH) >> 2] = hash;
    h.i32[(e + SE_LEN) >> 2] = bytes.length;
    h.u8.set(bytes, e + SE_TEXT);
    h.i32[(e + SE_NEXT) >> 2] = h.i32[b >> 2];
    h.i32[b >> 2] = e;
    h.i32[(st + ST_NEXT) >> 2] = end;
    h.i32[(st + ST_COUNT) >> 2]++;
    return e;
  } finally {
    unlock(h, st + ST_LOCK);
  }
}

/**
 * The text of stack `id` (frames separated by newlines), or "" for id 0. A pending id of this
 * worker's is interned first (resolveStack: `at` is where the id was read, 0 if unknown);
 * another worker's reads as a line that says whose it is.
 */
export function readStack(h: HeapView, id: number, at = 0): string {
  if (id < 0) id = resolveStack(h, id, at);
  if (id < 0) return `<stack captured by worker ${pendingSlot(id)}, not interned yet>`;
  if (id === 0 || id >= h.mapped) return "";
  const len = h.i32[(id + SE_LEN) >> 2];
  if (len < 0 || id + SE_TEXT + len > h.mapped) return "";
  return decoder.decode(h.u8.slice(id + SE_TEXT, id + SE_TEXT + len));
}

/** The core's folder, as a URL (V8's frames) and as a path (JavaScriptCore's frames). */
const OWN_URL = new URL(".", import.meta.url);
const OWN = [OWN_URL.href, decodeURIComponent(OWN_URL.pathname)];
/**
 * Frames captured beyond the audit depth, for umem's own frames below the capture point (the
 * debug layer and the public entry point): capturing costs per frame, so few are wasted.
 */
const OWN_FRAMES = 4;

/** Functions that umem's public functions call and pass as `above` to captureStack. */
const innerEntries = new Set<unknown>();

/**
 * Marks `fn` as called by umem's own public functions (the debug fast path, which `alloc` and
 * `free` call): a capture above it takes one frame more, the public function's, so that as many
 * of the caller's frames are kept. Each frame taken costs (Deno source-maps it), so only these.
 */
export function markInnerEntry(fn: unknown): void {
  innerEntries.add(fn);
}

/** Keeps the frames of a raw `Error.stack` that are not umem's own: at most `frames`. */
export function formatStack(raw: string, frames: number): string {
  const out: string[] = [];
  for (const line of raw.split("\n").slice(1)) {
    const f = line.trim().replace(/^at /, "");
    if (f.length === 0 || f.includes(OWN[0]) || f.includes(OWN[1])) continue;
    out.push(f);
    if (out.length === frames) break;
  }
  return out.join("\n");
}

/** `Error`'s V8 extensions, as umem's captures use them (JavaScriptCore has them too). */
export const ErrorApi = Error as unknown as {
  stackTraceLimit: number;
  captureStackTrace(o: object, above: unknown): void;
};

/**
 * Captures the caller's stack and returns its id in the table at `st`: a raw capture, a map
 * lookup, and on a miss the formatting and interning. `above` is the public function the user
 * called (heap.alloc, cache.free, ...): it and the frames above it are left out, so exactly
 * `frames` of the user's frames are captured and none is wasted.
 */
export function captureStack(
  h: HeapView,
  st: number,
  frames: number,
  above: unknown = captureStack,
): number {
  const E = ErrorApi;
  const limit = E.stackTraceLimit;
  // Frames from `above` (the public entry point) up are not even captured; one more is when
  // `above` is called by umem's own public function, which formatStack drops.
  E.stackTraceLimit = above === captureStack
    ? frames + OWN_FRAMES
    : innerEntries.has(above)
    ? frames + 1
    : frames;
  const holder: { stack?: string } = {};
  E.captureStackTrace(holder, above);
  let raw = holder.stack ?? "";
  if (raw.indexOf("\n") < 0 && above !== captureStack) {
    // JavaScriptCore did not find `above` on the stack (it was inlined): take all, filter later.
    E.stackTraceLimit = frames + OWN_FRAMES;
    E.captureStackTrace(holder, captureStack);
    raw = holder.stack ?? "";
  }
  E.stackTraceLimit = limit;
  let id = h.stackIds.get(raw);
  if (id === undefined) {
    id = internStack(h, st, formatStack(raw, frames));
    h.stackIds.set(raw, id);
  }
  return id;
}

/**
 * Whether a raw capture is made with `new Error()` (JavaScriptCore, which formats a stack in
 * `Error.captureStackTrace` itself, 7 µs for 16 frames, and only lazily for `new Error()`, under
 * 1 µs; umem's own frames are then captured too, and formatting drops them) rather than with
 * `Error.captureStackTrace(holder, above)` (V8, which formats either lazily).
 */
export const RAW_BY_ERROR: boolean = "Bun" in globalThis;
/**
 * The most frames of umem's own that lie between a public entry point and a capture (eight, in
 * heap.free's debug path): a capture by `new Error()`, which cannot start above the entry
 * point, takes this many more, and formatting drops them, so the caller keeps all `frames`.
 */
const OWN_FRAMES_MOST = 10;

/**
 * Pending stacks a worker keeps (a power of two; a capture's slot is its sequence's low bits),
 * or more than the transaction log has records if that is more, up to PENDING_STACKS_MOST: a
 * stack that only the log holds is then overwritten there before the ring comes round to it.
 */
export const PENDING_STACKS = 1024;
/** The most pending stacks a worker keeps (a raw capture of 16 frames is about 1.5 KiB). */
export const PENDING_STACKS_MOST = 16384;
/** Pending slot: the capture's sequence number. */
const PS_SEQ = 0;
/** Pending slot: the first place its id was written (0: none). */
const PS_AT = 1;
/** Places noted per pending stack; a stack written to more is interned at once. */
const PS_NAT = 2;
/** Words per pending slot. */
const PS_WORDS = PS_AT + PS_NAT;
/** Bits of a pending id that name the worker slot. */
const PENDING_SLOT_BITS = 6;
/** The sequence numbers a pending id holds (its other bits). */
const PENDING_SEQ_MASK = (1 << (31 - PENDING_SLOT_BITS)) - 1;
if (MAX_SLOTS > 1 << PENDING_SLOT_BITS) throw new Error("stack.ts: PENDING_SLOT_BITS too few");

/**
 * A worker's pending stacks: raw captures whose text nobody has read yet. A JavaScript object
 * can hold them only in the worker that made them, so this is the one piece of audit state
 * outside the image; what is in the image is the pending id.
 */
export class PendingStacks {
  /** The raw captures, by slot (undefined: free); their number is a power of two. */
  holders: (object | undefined)[];
  /** `PS_*` words of each slot. */
  meta: Int32Array;
  /** The next capture's sequence number. */
  seq = 0;

  /**
   * An empty ring.
   *
   * @param size slots, a power of two
   */
  constructor(size: number) {
    this.holders = new Array(size).fill(undefined);
    this.meta = new Int32Array(size * PS_WORDS);
  }
}

/** A new ring of pending stacks for the handle `h` (see PENDING_STACKS). */
function newPendingStacks(h: HeapView): PendingStacks {
  const log = h.i32[HDR_TXLOG >> 2], nrec = log > 0 ? h.i32[(log + LG_NREC) >> 2] : 0;
  let size = PENDING_STACKS;
  // More than the log's records: a capture evicts before its own transaction is logged.
  while (size <= nrec && size < PENDING_STACKS_MOST) size *= 2;
  return new PendingStacks(size);
}

/** The pending id of capture `seq` by worker `slot` (negative). */
function pendingId(slot: number, seq: number): number {
  return -(((seq & PENDING_SEQ_MASK) << PENDING_SLOT_BITS | slot) + 1);
}

/** The worker slot that a pending id names. */
export function pendingSlot(id: number): number {
  return (-id - 1) & ((1 << PENDING_SLOT_BITS) - 1);
}

/**
 * Whether `id` can be a stack id of this image: 0, an entry's address, or a pending id naming
 * one of its worker slots (debug.ts's check of an allocated buffer's audit record uses it).
 */
export function stackIdValid(h: HeapView, id: number): boolean {
  return id < 0 ? pendingSlot(id) < h.i32[HDR_NSLOTS >> 2] : id < h.mapped && (id & 3) === 0;
}

/**
 * The ring slot of pending id `id` when it is this worker's and its capture is still held,
 * else -1 (an interned id, another worker's, or one this worker dropped).
 */
function pendingIndex(h: HeapView, id: number): number {
  const r = h.pending;
  if (id >= 0 || r === undefined || pendingSlot(id) !== h.slot) return -1;
  const seq = (-id - 1) >>> PENDING_SLOT_BITS, i = seq & (r.holders.length - 1);
  return r.holders[i] !== undefined && r.meta[i * PS_WORDS + PS_SEQ] === seq ? i : -1;
}

/**
 * Captures the caller's stack without formatting it and returns a pending id (negative) that
 * stands for it until it is interned (see the module doc). The caller writes the id somewhere
 * in the image and says where with notePendingAt. Nothing here is formatted, unless the ring
 * comes round to a pending stack that a noted place still holds: that one is interned then.
 *
 * @param h the worker's handle, whose image has a stack table (`HDR_STACKS`); the audit depth
 *   is the image's (`HDR_AUDIT_FRAMES`)
 * @param above the public function the user called: in V8 it and the frames above it are not
 *   captured (JavaScriptCore formats at `captureStackTrace`, so there an `Error` is made instead
 *   and umem's frames are dropped when it is formatted)
 * @returns the pending id
 */
export function captureStackDeferred(h: HeapView, above: unknown): number {
  const frames = h.i32[HDR_AUDIT_FRAMES >> 2], E = ErrorApi;
  const limit = E.stackTraceLimit;
  let holder: object;
  if (RAW_BY_ERROR) {
    E.stackTraceLimit = frames + OWN_FRAMES_MOST;
    holder = new Error();
  } else {
    E.stackTraceLimit = innerEntries.has(above) ? frames + 1 : frames;
    holder = {};
    E.captureStackTrace(holder, above);
  }
  E.stackTraceLimit = limit;
  return keepPending(h, holder);
}

/**
 * The `Error.stackTraceLimit` for a capture made by a public entry point itself (heap.ts's
 * `AuditingHeap`): the audit depth, and under JavaScriptCore one more for the entry point's own
 * frame (see {@linkcode RAW_BY_ERROR}).
 */
export function entryCaptureLimit(h: HeapView): number {
  return h.i32[HDR_AUDIT_FRAMES >> 2] + (RAW_BY_ERROR ? 1 : 0);
}

/**
 * Runs `f` with `HeapView.preStack`, the stack captured for the transaction under way, set to
 * `id`, and puts the old value back after it. The audit record's writer takes the stack from
 * there (and clears it), so that a transaction whose entry point captured its caller's stack is
 * recorded with it. With `id` 0 it sets the capture aside while a callback of the user's runs in
 * the middle of a transaction (a constructor, a destructor, a reclaim or nofail callback): the
 * callback's own transactions then capture their own.
 *
 * @param h the worker's handle
 * @param id a pending id, or 0
 * @param f what to run
 * @returns what `f` returns
 */
export function withPreStack<T>(h: HeapView, id: number, f: () => T): T {
  const pre = h.preStack, entry = h.entryStack;
  h.preStack = id;
  if (id === 0) h.entryStack = 0; // a callback of the user's: its transactions are its own
  try {
    return f();
  } finally {
    h.preStack = pre;
    h.entryStack = entry;
  }
}

/**
 * Keeps a raw capture (`holder`, an object whose `stack` the runtime has not formatted yet) in
 * this worker's ring and returns its pending id, as {@linkcode captureStackDeferred} does with
 * its own capture: for a public entry point that captured its caller's stack itself, where V8
 * walks none of umem's frames.
 *
 * @param h the worker's handle
 * @param holder the raw capture
 * @returns the pending id (negative)
 */
export function keepPending(h: HeapView, holder: object): number {
  let r = h.pending;
  if (r === undefined) r = h.pending = newPendingStacks(h);
  const seq = r.seq & PENDING_SEQ_MASK;
  r.seq = seq + 1;
  const i = seq & (r.holders.length - 1), m = i * PS_WORDS;
  if (r.holders[i] !== undefined) evict(h, r, i);
  r.holders[i] = holder;
  r.meta[m + PS_SEQ] = seq;
  for (let k = 0; k < PS_NAT; k++) r.meta[m + PS_AT + k] = 0;
  return pendingId(h.slot, seq);
}

/**
 * Notes that pending id `id` was written at address `at`, so that the place gets the interned
 * id when the stack is interned. An id that is not this worker's pending one is left alone.
 */
export function notePendingAt(h: HeapView, id: number, at: number): void {
  const i = pendingIndex(h, id);
  if (i < 0) return;
  const r = h.pending!, m = i * PS_WORDS;
  for (let k = 0; k < PS_NAT; k++) {
    if (r.meta[m + PS_AT + k] === 0) {
      r.meta[m + PS_AT + k] = at;
      return;
    }
  }
  // A third place: interned now, the places noted so far given the id, and this one too.
  const interned = internSlot(h, r, i);
  if (isStackPlace(h, at)) Atomics.compareExchange(h.i32, at >> 2, id, interned);
}

/**
 * The interned id of stack `id`, read at address `at` (0: unknown): `id` itself when it is
 * interned already (or 0), the interned id when it is a pending id of this worker's (interned
 * now), and `id` unchanged when it is another worker's pending id or one that this worker
 * dropped. With `at`, the pending stack must have been noted there: a worker that took over a
 * dead worker's slot may have a capture of the same sequence number, written elsewhere.
 */
export function resolveStack(h: HeapView, id: number, at = 0): number {
  const i = pendingIndex(h, id);
  if (i < 0) return id;
  const r = h.pending!, m = i * PS_WORDS;
  if (at !== 0) {
    let noted = false;
    for (let k = 0; k < PS_NAT; k++) if (r.meta[m + PS_AT + k] === at) noted = true;
    if (!noted) return id;
  }
  return internSlot(h, r, i);
}

/**
 * Interns every pending stack of this worker that a noted place still holds (a snapshot is
 * about to be taken, or the worker detaches: after it, any worker can read them), and drops
 * the rest.
 */
export function internPending(h: HeapView): void {
  const r = h.pending;
  if (r === undefined) return;
  for (let i = 0; i < r.holders.length; i++) if (r.holders[i] !== undefined) evict(h, r, i);
}

/**
 * Whether a noted place is still one where stack ids are written: the buffer whose audit record
 * held it may have lost its slab since, and the memory be anyone's, so a word there that happens
 * to equal a pending id is not to be replaced. debug.ts, which writes the places, sets it.
 */
let isStackPlace: (h: HeapView, at: number) => boolean = () => false;

/** Sets the check of the places that notePendingAt notes (debug.ts's, at its evaluation). */
export function setStackPlaceCheck(check: (h: HeapView, at: number) => boolean): void {
  isStackPlace = check;
}

/** Whether noted place `at` still holds pending id `id`. */
function holds(h: HeapView, at: number, id: number): boolean {
  return at > 0 && at < h.mapped && Atomics.load(h.i32, at >> 2) === id && isStackPlace(h, at);
}

/** Frees pending slot `i`: interned if a noted place still holds its id, else dropped. */
function evict(h: HeapView, r: PendingStacks, i: number): void {
  const m = i * PS_WORDS, id = pendingId(h.slot, r.meta[m + PS_SEQ]);
  for (let k = 0; k < PS_NAT; k++) {
    if (holds(h, r.meta[m + PS_AT + k], id)) {
      internSlot(h, r, i);
      return;
    }
  }
  r.holders[i] = undefined;
}

/**
 * Formats and interns pending slot `i`, gives its noted places the interned id, and frees the
 * slot.
 */
function internSlot(h: HeapView, r: PendingStacks, i: number): number {
  const m = i * PS_WORDS, holder = r.holders[i]!, pid = pendingId(h.slot, r.meta[m + PS_SEQ]);
  r.holders[i] = undefined;
  const E = Error as unknown as { prepareStackTrace?: unknown };
  const prepare = E.prepareStackTrace;
  E.prepareStackTrace = undefined; // the runtime's own text, whatever the program set
  let raw: unknown;
  try {
    raw = (holder as { stack?: unknown }).stack;
  } finally {
    E.prepareStackTrace = prepare;
  }
  const text = typeof raw === "string" ? raw : "";
  let id = h.stackIds.get(text);
  if (id === undefined) {
    id = internStack(h, h.i32[HDR_STACKS >> 2], formatStack(text, h.i32[HDR_AUDIT_FRAMES >> 2]));
    h.stackIds.set(text, id);
  }
  for (let k = 0; k < PS_NAT; k++) {
    const at = r.meta[m + PS_AT + k];
    if (holds(h, at, pid)) Atomics.compareExchange(h.i32, at >> 2, pid, id);
  }
  return id;
}
