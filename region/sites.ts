/**
 * Call sites: where a call came from, and the table of sites a `debug` or `profile` region
 * keeps in its own memory.
 *
 * Theory. Vmalloc's debug and profile methods learn the file and line of each call from
 * macros; JavaScript has no macros, so {@linkcode captureSite} reads the first stack frame
 * outside this module (only the methods that need a site pay for it). A site is interned in
 * the region's table (`ST_*`, after the record): an entry per (file, line) with the profile's
 * counters, the file names in a string pool after the entries. Blocks name their site by its
 * index, in their trailer. Entry 0 is the unknown site; a full table maps new sites to it.
 *
 * Invariants. Entries are only ever added (never removed, not even by `clear`), so an index
 * once handed out names the same site for ever and a handle may cache the mapping.
 *
 * Lock order: the table is changed under the region lock.
 *
 * @module
 */
import type { Blocks } from "./blocks.ts";
import type { Site } from "./errors.ts";
import {
  RG_SITES,
  SE_FILE,
  SE_FLEN,
  SE_LINE,
  SE_SIZE,
  SITES_MAX,
  ST_COUNT,
  ST_ENTRIES,
  ST_STRTOP,
  STR_BYTES,
} from "./layout.ts";

/** This module's folder: frames there are not call sites. */
const HERE = new URL(".", import.meta.url).pathname;
/** The site when none is known. */
export const UNKNOWN_SITE: Site = Object.freeze({ file: "?", line: 0 });

const FRAME = /((?:file:\/\/)?\/[^\s()]*?):(\d+):\d+\)?\s*$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** V8's and JavaScriptCore's structured stack API, where there is one. */
interface CallSiteLike {
  getFileName(): string | null | undefined;
  getLineNumber(): number | null;
}
const E = Error as unknown as {
  prepareStackTrace?: unknown;
  captureStackTrace?: (o: object) => void;
  stackTraceLimit?: number;
};

/**
 * The call site of the caller of this module: the first stack frame outside `region/`. The
 * structured stack (V8's call sites) is read when the engine has it, which costs a tenth of
 * formatting `Error.stack` under Deno; otherwise the formatted stack is parsed.
 *
 * @returns the file's base name and the line, or the unknown site
 */
export function captureSite(): Site {
  const limit = E.stackTraceLimit;
  if (typeof E.captureStackTrace === "function") {
    const prev = E.prepareStackTrace;
    const holder: { stack?: unknown } = {};
    E.prepareStackTrace = (_e: unknown, frames: unknown) => frames;
    E.stackTraceLimit = 12;
    try {
      E.captureStackTrace(holder);
      const frames = holder.stack;
      if (Array.isArray(frames)) return fromFrames(frames as CallSiteLike[]);
    } finally {
      E.prepareStackTrace = prev;
      E.stackTraceLimit = limit;
    }
  }
  E.stackTraceLimit = 12;
  const stack = new Error().stack ?? "";
  E.stackTraceLimit = limit;
  const lines = stack.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const m = FRAME.exec(lines[i]);
    if (m === null) continue;
    const site = siteOf(m[1], Number(m[2]));
    if (site !== null) return site;
  }
  return UNKNOWN_SITE;
}

/** The first structured frame outside this module. */
function fromFrames(frames: CallSiteLike[]): Site {
  for (const f of frames) {
    const name = typeof f?.getFileName === "function" ? f.getFileName() : null;
    if (!name) continue;
    const site = siteOf(name, f.getLineNumber() ?? 0);
    if (site !== null) return site;
  }
  return UNKNOWN_SITE;
}

/** The site of a frame's file and line, or null for a frame of this module. */
function siteOf(file: string, line: number): Site | null {
  let path = file;
  if (path.startsWith("file://")) path = decodeURIComponent(new URL(path).pathname);
  if (path.startsWith(HERE)) return null;
  return { file: path.slice(path.lastIndexOf("/") + 1), line };
}

/**
 * Writes an empty table (the unknown site only) at `table`.
 *
 * @param bk the store
 * @param table the table's address
 */
export function initSites(bk: Blocks, table: number): void {
  bk.u8.fill(0, table, table + ST_ENTRIES + SE_SIZE);
  bk.u32[(table + ST_COUNT) >> 2] = 1;
  bk.u32[(table + ST_STRTOP) >> 2] = 0;
}

/** The address of entry `i`. */
export function siteEntry(bk: Blocks, i: number): number {
  return bk.get(RG_SITES) + ST_ENTRIES + i * SE_SIZE;
}

/**
 * The index of a site in the table, adding it when new (0 when the table is full).
 *
 * @param bk the store
 * @param cache this handle's memo of the table
 * @param site the site
 * @returns its index
 */
export function internSite(bk: Blocks, cache: Map<string, number>, site: Site): number {
  const key = site.file + "," + site.line;
  const known = cache.get(key);
  if (known !== undefined) return known;
  const table = bk.get(RG_SITES), u32 = bk.u32;
  if (table === 0) return 0;
  const count = u32[(table + ST_COUNT) >> 2];
  for (let i = 1; i < count; i++) {
    const e = table + ST_ENTRIES + i * SE_SIZE;
    if (u32[(e + SE_LINE) >> 2] === site.line && readName(bk, e) === site.file) {
      cache.set(key, i);
      return i;
    }
  }
  const name = encoder.encode(site.file);
  const top = u32[(table + ST_STRTOP) >> 2];
  if (count >= SITES_MAX || top + name.length > STR_BYTES) return 0;
  const pool = table + ST_ENTRIES + SITES_MAX * SE_SIZE;
  bk.u8.set(name, pool + top);
  const e = table + ST_ENTRIES + count * SE_SIZE;
  bk.u8.fill(0, e, e + SE_SIZE);
  u32[(e + SE_FILE) >> 2] = top;
  u32[(e + SE_FLEN) >> 2] = name.length;
  u32[(e + SE_LINE) >> 2] = site.line;
  u32[(table + ST_STRTOP) >> 2] = top + name.length;
  u32[(table + ST_COUNT) >> 2] = count + 1;
  cache.set(key, count);
  return count;
}

/** The file name of entry `e`. */
function readName(bk: Blocks, e: number): string {
  const table = bk.get(RG_SITES), u32 = bk.u32;
  const off = table + ST_ENTRIES + SITES_MAX * SE_SIZE + u32[(e + SE_FILE) >> 2];
  return decoder.decode(bk.u8.slice(off, off + u32[(e + SE_FLEN) >> 2]));
}

/**
 * The site at index `i` of the table.
 *
 * @param bk the store
 * @param i the index
 * @returns the site (the unknown site for 0 or a bad index)
 */
export function siteAt(bk: Blocks, i: number): Site {
  const table = bk.get(RG_SITES);
  if (table === 0 || i <= 0 || i >= bk.u32[(table + ST_COUNT) >> 2]) return UNKNOWN_SITE;
  const e = table + ST_ENTRIES + i * SE_SIZE;
  return { file: readName(bk, e), line: bk.u32[(e + SE_LINE) >> 2] };
}

/** Formats a site as Vmalloc does: `file,line`. */
export function siteText(s: Site): string {
  return `${s.file},${s.line}`;
}
