/**
 * Statistics of memory contexts: PostgreSQL's `MemoryContextStats`, as data and as its report.
 *
 * Theory. aset.c's `AllocSetStats` counts, for one context, the blocks and their bytes (the
 * *total*), the *free* bytes (what is left at the end of each block, plus every chunk on a
 * free list with its header) and the free chunks; *used* is total less free, so it includes
 * the headers and the context record. `MemoryContextStats` prints one line per context,
 * indented two spaces per level, `NAME: T total in B blocks; F free (C chunks); U used`; past
 * `maxChildren` children of one context the rest are summed into one line `N more child
 * contexts containing ...`; a last line gives the `Grand total: ...` of the subtree. Since all
 * blocks come from the tree's arena, the grand total of TopMemoryContext equals the arena's
 * in-use bytes: the heap's own view of the contexts.
 *
 * Invariants. `totalBytes` of a context is its `MC_SELF`; the totals of a subtree add up to
 * its `MC_TREE` (`memAllocated(true)`).
 *
 * Lock order: the shape of the subtree is read under the tree lock; then each context's
 * figures are read under its own lock when it is shared (never with the tree lock held). The
 * figures of an unshared context that another worker is using at the moment may be torn.
 *
 * @module
 */

import { lock, unlock } from "../core/internal.ts";
import type { HeapView } from "../core/mod.ts";
import { lockTree } from "./accounting.ts";
import {
  AB_FREEPTR,
  AB_NEXT,
  AB_SIZE,
  CH_HEADER,
  CH_REQ,
  isLiveRecord,
  MC_BLOCKS,
  MC_BUDGET,
  MC_DEPTH,
  MC_FLAGS,
  MC_FREELIST,
  MC_FREEPTR,
  MC_LOCK,
  MC_NBLOCKS,
  MC_NO_BUDGET,
  MC_PEAK,
  MC_SOFT,
  MC_TREE,
  MCF_SHARED,
  MIN_CHUNK,
  NUM_FREELISTS,
  readName,
} from "./layout.ts";
import { childrenOf } from "./tree.ts";

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/** The figures of one context, or of a sum of contexts, as aset.c counts them. */
export interface MemoryContextCounters {
  /** Blocks held. */
  blocks: number;
  /** Bytes of those blocks (headers, the context record and chunks included). */
  totalBytes: number;
  /** Bytes free: the unused ends of blocks and the free chunks with their headers. */
  freeBytes: number;
  /** Chunks on the free lists. */
  freeChunks: number;
  /** `totalBytes - freeBytes`. */
  usedBytes: number;
}

/** One context's statistics and its children's, as {@linkcode MemoryContext.stats} gives them. */
export interface MemoryContextStats extends MemoryContextCounters {
  /** The context's name. */
  name: string;
  /** Its record's address. */
  address: number;
  /** Depth in the tree (TopMemoryContext is 0). */
  depth: number;
  /** Bytes held by the context and its descendants (`memAllocated(true)`). */
  subtreeBytes: number;
  /** The most bytes the subtree has held at once. */
  peakBytes: number;
  /** The budget on `subtreeBytes`, or null. */
  budget: number | null;
  /** The soft budget, or null. */
  softBudget: number | null;
  /** Whether the context is shared between workers. */
  shared: boolean;
  /** The children, newest first. */
  children: MemoryContextStats[];
}

/** The figures of context `rec` alone (its lock held by the caller when shared). */
export function countersOf(i32: Int32Array, rec: number): MemoryContextCounters {
  const head = w(i32, rec + MC_BLOCKS), nblocks = w(i32, rec + MC_NBLOCKS);
  let blocks = 0, total = 0, free = 0, chunks = 0;
  for (let b = head; b !== 0 && blocks <= nblocks; b = w(i32, b + AB_NEXT)) {
    const size = w(i32, b + AB_SIZE);
    const fp = b === head ? w(i32, rec + MC_FREEPTR) : w(i32, b + AB_FREEPTR);
    blocks++;
    total += size;
    free += b + size - fp;
  }
  const bound = total / (CH_HEADER + MIN_CHUNK) + 1;
  for (let k = 0; k < NUM_FREELISTS; k++) {
    const bytes = (MIN_CHUNK << k) + CH_HEADER;
    let n = 0;
    for (let c = w(i32, rec + MC_FREELIST + 4 * k); c !== 0 && n < bound; n++) {
      free += bytes;
      c = w(i32, c - CH_HEADER + CH_REQ);
    }
    chunks += n;
  }
  return {
    blocks,
    totalBytes: total,
    freeBytes: free,
    freeChunks: chunks,
    usedBytes: total - free,
  };
}

/** The shape of a subtree, read under the tree lock. */
interface Shape {
  rec: number;
  children: Shape[];
}

function shapeOf(i32: Int32Array, rec: number, left: { n: number }): Shape {
  if (--left.n < 0) throw new Error("budget: the context tree loops");
  return { rec, children: childrenOf(i32, rec).map((c) => shapeOf(i32, c, left)) };
}

/** Reads the statistics of the subtree of `rec`. */
export function statsOf(h: HeapView, rec: number): MemoryContextStats {
  h.sync();
  const tl = lockTree(h, rec);
  let shape: Shape;
  try {
    shape = shapeOf(h.i32, rec, { n: 1 << 22 });
  } finally {
    unlock(h, tl);
  }
  const build = (s: Shape): MemoryContextStats | null => {
    const r = s.rec;
    h.sync();
    if (!isLiveRecord(h.i32, h.mapped, r)) return null; // deleted meanwhile
    const shared = (w(h.i32, r + MC_FLAGS) & MCF_SHARED) !== 0;
    let c: MemoryContextCounters;
    if (shared) lock(h, r + MC_LOCK);
    try {
      c = countersOf(h.i32, r);
    } finally {
      if (shared) unlock(h, r + MC_LOCK);
    }
    const i32 = h.i32, b = w(i32, r + MC_BUDGET), sb = w(i32, r + MC_SOFT);
    return {
      name: readName(h.u8, i32, r),
      address: r,
      depth: w(i32, r + MC_DEPTH),
      ...c,
      subtreeBytes: w(i32, r + MC_TREE),
      peakBytes: w(i32, r + MC_PEAK),
      budget: b === MC_NO_BUDGET ? null : b,
      softBudget: sb === MC_NO_BUDGET ? null : sb,
      shared,
      children: s.children.map(build).filter((x): x is MemoryContextStats => x !== null),
    };
  };
  const out = build(shape);
  if (out === null) throw new Error("budget: the context was deleted while its stats were read");
  return out;
}

/** Adds `b`'s figures to `a`. */
function add(a: MemoryContextCounters, b: MemoryContextCounters): void {
  a.blocks += b.blocks;
  a.totalBytes += b.totalBytes;
  a.freeBytes += b.freeBytes;
  a.freeChunks += b.freeChunks;
  a.usedBytes += b.usedBytes;
}

/** The sum of a subtree's figures. */
export function grandTotal(s: MemoryContextStats): MemoryContextCounters {
  const t: MemoryContextCounters = {
    blocks: s.blocks,
    totalBytes: s.totalBytes,
    freeBytes: s.freeBytes,
    freeChunks: s.freeChunks,
    usedBytes: s.usedBytes,
  };
  for (const c of s.children) add(t, grandTotal(c));
  return t;
}

/** The sum of the figures of several subtrees. */
function totalOf(nodes: MemoryContextStats[]): MemoryContextCounters {
  const t: MemoryContextCounters = {
    blocks: 0,
    totalBytes: 0,
    freeBytes: 0,
    freeChunks: 0,
    usedBytes: 0,
  };
  for (const c of nodes) add(t, grandTotal(c));
  return t;
}

/** `T total in B blocks; F free (C chunks); U used`, as aset.c's stats line. */
function figures(c: MemoryContextCounters): string {
  return `${c.totalBytes} total in ${c.blocks} blocks; ` +
    `${c.freeBytes} free (${c.freeChunks} chunks); ${c.usedBytes} used`;
}

/**
 * Formats statistics as PostgreSQL's `MemoryContextStats` prints them.
 * @param s the subtree's statistics
 * @param maxChildren children printed per context; the rest are summed in one line
 * @param maxLevel levels printed below `s`; deeper contexts are summed in their parent's line
 */
export function formatStats(s: MemoryContextStats, maxChildren: number, maxLevel: number): string {
  const lines: string[] = [];
  const walk = (n: MemoryContextStats, level: number) => {
    const indent = "  ".repeat(level);
    lines.push(`${indent}${n.name}: ${figures(n)}`);
    if (n.children.length === 0) return;
    if (level >= maxLevel) {
      const rest = totalOf(n.children);
      lines.push(
        `${indent}  ${n.children.length} more child contexts containing ${figures(rest)}`,
      );
      return;
    }
    n.children.slice(0, maxChildren).forEach((c) => walk(c, level + 1));
    const more = n.children.slice(maxChildren);
    if (more.length > 0) {
      const rest = totalOf(more);
      lines.push(`${indent}  ${more.length} more child contexts containing ${figures(rest)}`);
    }
  };
  walk(s, 0);
  const g = grandTotal(s);
  lines.push(
    `Grand total: ${g.totalBytes} bytes in ${g.blocks} blocks; ` +
      `${g.freeBytes} free (${g.freeChunks} chunks); ${g.usedBytes} used`,
  );
  return lines.join("\n");
}
