/**
 * Interned stacks: the stacks of audit records and logs, kept inside the image so that a
 * snapshot carries them.
 *
 * Theory. A stack is captured raw (`new Error().stack` with `Error.stackTraceLimit` set to the
 * audit depth plus umem's own frames), looked up in a per-worker map keyed by that raw string,
 * and only on a miss formatted (umem's frames dropped, `frames` kept) and interned in the
 * shared stack table: a hash table of entries holding the text. A stack's id is its entry's
 * address; 0 means none. So the common case, a call site seen before, costs one capture and one
 * map lookup, and nothing is formatted until a report or a tool reads the text.
 *
 * Invariants. Entries are never freed; the text area only grows, and when it is full new
 * stacks get id 0 (reports then say the table is full). The table has its own lock, a leaf.
 *
 * @module
 */

import { type HeapView, PAGE_SIZE, roundUp } from "./image.ts";
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

/** The text of stack `id` (frames separated by newlines), or "" for id 0. */
export function readStack(h: HeapView, id: number): string {
  if (id <= 0 || id >= h.mapped) return "";
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
  const E = Error as unknown as {
    stackTraceLimit: number;
    captureStackTrace(o: object, above: unknown): void;
  };
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
