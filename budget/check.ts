/**
 * Checking a context tree: PostgreSQL's `MemoryContextCheck` (aset.c's `AllocSetCheck`).
 *
 * Theory. Every invariant the other files keep can be checked from the image alone: the
 * record's magic and generation; the links between parent and children; the block list (its
 * headers, its count, the sum of its sizes against `MC_SELF`); each block tiled by chunks whose
 * headers name the context and carry a live or free check word of the current generation; the
 * free lists holding exactly the free chunks found by tiling, each of its list's size; the
 * large blocks holding one live chunk each; and `MC_TREE` equal to the context's bytes plus its
 * children's, within its budget. The check reports what is wrong, one line per problem, and
 * changes nothing.
 *
 * Invariants. None of its own. Lock order: the tree lock is held for the whole check, so it
 * must not run while this worker holds a context's lock; contexts other workers are using at
 * that moment may show torn figures.
 *
 * @module
 */

import { unlock } from "../core/internal.ts";
import type { HeapView } from "../core/mod.ts";
import { lockTree } from "./accounting.ts";
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
  CH_CHECK,
  CH_CONTEXT,
  CH_HEADER,
  CH_REQ,
  CH_SIZE,
  CHUNK_FREE,
  CHUNK_LIVE,
  hex,
  isLiveRecord,
  MC_BLOCKS,
  MC_BUDGET,
  MC_DATA0,
  MC_DEPTH,
  MC_ENDPTR,
  MC_FIRSTCHILD,
  MC_FREELIST,
  MC_FREEPTR,
  MC_GEN,
  MC_KEEPER,
  MC_LIMIT,
  MC_NBLOCKS,
  MC_NCHILDREN,
  MC_NEXTSIB,
  MC_NO_BUDGET,
  MC_PARENT,
  MC_PREVSIB,
  MC_ROOT,
  MC_SELF,
  MC_TREE,
  MIN_CHUNK,
  NUM_FREELISTS,
  readName,
} from "./layout.ts";
import { subtreePostOrder } from "./tree.ts";

const w = (i32: Int32Array, a: number) => i32[a >> 2];

/** Checks one context; appends problems to `out`. */
function checkOne(h: HeapView, rec: number, out: string[]): void {
  const i32 = h.i32, mapped = h.mapped;
  const name = readName(h.u8, i32, rec);
  const bad = (what: string) => out.push(`context "${name}" (${hex(rec)}): ${what}`);
  if (!isLiveRecord(i32, mapped, rec)) {
    bad("not a live context record");
    return;
  }
  const gen = w(i32, rec + MC_GEN), limit = w(i32, rec + MC_LIMIT);
  if (gen === 0) bad("generation 0");
  // Links to the children.
  let n = 0, prev = 0, childBytes = 0;
  for (let c = w(i32, rec + MC_FIRSTCHILD); c !== 0; c = w(i32, c + MC_NEXTSIB)) {
    if (++n > 1 << 22) {
      bad("its children's list loops");
      return;
    }
    if (!isLiveRecord(i32, mapped, c)) {
      bad(`child ${hex(c)} is not a live context`);
      return;
    }
    if (w(i32, c + MC_PARENT) !== rec) bad(`child ${hex(c)} names another parent`);
    if (w(i32, c + MC_PREVSIB) !== prev) bad(`child ${hex(c)} has a wrong previous sibling`);
    if (w(i32, c + MC_DEPTH) !== w(i32, rec + MC_DEPTH) + 1) bad(`child ${hex(c)} depth`);
    if (w(i32, c + MC_ROOT) !== w(i32, rec + MC_ROOT)) bad(`child ${hex(c)} has another root`);
    childBytes += w(i32, c + MC_TREE);
    prev = c;
  }
  if (n !== w(i32, rec + MC_NCHILDREN)) {
    bad(`${n} children, MC_NCHILDREN says ${w(i32, rec + MC_NCHILDREN)}`);
  }
  // Blocks and their chunks.
  const head = w(i32, rec + MC_BLOCKS), keeper = w(i32, rec + MC_KEEPER);
  const freeFound = new Set<number>();
  let blocks = 0, bytes = 0, sawKeeper = false;
  prev = 0;
  for (let b = head; b !== 0; b = w(i32, b + AB_NEXT)) {
    if (++blocks > w(i32, rec + MC_NBLOCKS) + 1 || b < 0 || b + AB_HEADER > mapped) {
      bad("its block list is longer than MC_NBLOCKS or leaves the heap");
      return;
    }
    const size = w(i32, b + AB_SIZE), kind = w(i32, b + AB_KIND), end = b + size;
    bytes += size;
    if (w(i32, b + AB_MAGIC) !== AB_MAGIC_VALUE) bad(`block ${hex(b)} has a bad magic`);
    if (w(i32, b + AB_CONTEXT) !== rec) bad(`block ${hex(b)} names context ${hex(w(i32, b))}`);
    if (w(i32, b + AB_PREV) !== prev) bad(`block ${hex(b)} has a wrong previous block`);
    prev = b;
    if (b === keeper) {
      sawKeeper = true;
      if (kind !== ABK_KEEPER) bad(`keeper block ${hex(b)} has kind ${kind}`);
    } else if (kind !== ABK_NORMAL && kind !== ABK_LARGE) bad(`block ${hex(b)} has kind ${kind}`);
    if (kind === ABK_LARGE) {
      if (b === head) bad(`large block ${hex(b)} is the active block`);
      const c = b + AB_HEADER + CH_HEADER, cs = w(i32, c - CH_HEADER + CH_SIZE);
      if (w(i32, c - CH_HEADER + CH_CONTEXT) !== rec) {
        bad(`large chunk ${hex(c)} names another context`);
      }
      if (cs !== size - AB_HEADER - CH_HEADER || cs <= limit) {
        bad(`large chunk ${hex(c)} has size ${cs}`);
      }
      if (w(i32, c - CH_HEADER + CH_CHECK) !== (gen ^ cs ^ CHUNK_LIVE)) {
        bad(`large chunk ${hex(c)} is not live in this generation`);
      }
      continue;
    }
    let c = b === keeper ? w(i32, rec + MC_DATA0) : b + AB_HEADER;
    const fp = b === head ? w(i32, rec + MC_FREEPTR) : w(i32, b + AB_FREEPTR);
    if (fp < c || fp > end) {
      bad(`block ${hex(b)} has its free pointer ${hex(fp)} outside [${hex(c)}, ${hex(end)}]`);
      continue;
    }
    while (c < fp) {
      const cs = w(i32, c + CH_SIZE), chk = w(i32, c + CH_CHECK), p = c + CH_HEADER;
      if (w(i32, c + CH_CONTEXT) !== rec) bad(`chunk ${hex(p)} names context ${hex(w(i32, c))}`);
      if (cs < MIN_CHUNK || cs > limit || (cs & (cs - 1)) !== 0 || c + CH_HEADER + cs > fp) {
        bad(`chunk ${hex(p)} in block ${hex(b)} has size ${cs}`);
        break;
      }
      if (chk === (gen ^ cs ^ CHUNK_FREE)) freeFound.add(p);
      else if (chk !== (gen ^ cs ^ CHUNK_LIVE)) bad(`chunk ${hex(p)} has a bad check word`);
      else if (w(i32, c + CH_REQ) > cs || w(i32, c + CH_REQ) < 0) {
        bad(`chunk ${hex(p)} records a request of ${w(i32, c + CH_REQ)} bytes`);
      }
      c = p + cs;
    }
  }
  if (!sawKeeper) bad(`the keeper block ${hex(keeper)} is not in the block list`);
  if (blocks !== w(i32, rec + MC_NBLOCKS)) {
    bad(`${blocks} blocks, MC_NBLOCKS says ${w(i32, rec + MC_NBLOCKS)}`);
  }
  if (bytes !== w(i32, rec + MC_SELF)) {
    bad(`blocks of ${bytes} bytes, MC_SELF says ${w(i32, rec + MC_SELF)}`);
  }
  if (w(i32, rec + MC_ENDPTR) !== head + w(i32, head + AB_SIZE)) {
    bad("MC_ENDPTR is not the active block's end");
  }
  // Free lists.
  let listed = 0;
  for (let k = 0; k < NUM_FREELISTS; k++) {
    let m = 0;
    for (let p = w(i32, rec + MC_FREELIST + 4 * k); p !== 0; p = w(i32, p - CH_HEADER + CH_REQ)) {
      if (++m > freeFound.size + 1) {
        bad(`free list ${k} loops or holds chunks not in any block`);
        break;
      }
      if (!freeFound.has(p)) {
        bad(`free list ${k} holds ${hex(p)}, which is not a free chunk of a block`);
      } else if (w(i32, p - CH_HEADER + CH_SIZE) !== MIN_CHUNK << k) {
        bad(`free chunk ${hex(p)} is on list ${k}`);
      }
      listed++;
    }
  }
  if (listed !== freeFound.size) {
    bad(`${freeFound.size} free chunks in blocks, ${listed} on the free lists`);
  }
  // Accounting.
  const tree = w(i32, rec + MC_TREE), budget = w(i32, rec + MC_BUDGET);
  if (tree !== bytes + childBytes) {
    bad(`MC_TREE is ${tree}, its blocks and children hold ${bytes + childBytes}`);
  }
  if (budget !== MC_NO_BUDGET && tree > budget) {
    bad(`holds ${tree} bytes, past its budget of ${budget}`);
  }
}

/**
 * Checks the subtree of `rec` (or `rec` alone).
 * @returns the problems found, one line each; empty when the contexts are sound
 */
export function checkTree(h: HeapView, rec: number, recurse: boolean): string[] {
  h.sync();
  const out: string[] = [];
  const tl = lockTree(h, rec);
  try {
    for (const r of recurse ? subtreePostOrder(h.i32, rec) : [rec]) checkOne(h, r, out);
  } finally {
    unlock(h, tl);
  }
  return out;
}
