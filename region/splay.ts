/**
 * The tree of free blocks: a top-down splay tree (Sleator and Tarjan 1985) whose nodes are the
 * free blocks themselves, as in Vmalloc's Vmbest.
 *
 * Theory. A node is a free block; its key is (size, address), so every key is distinct and a
 * block can be taken out of the tree by its key alone when a neighbour coalesces with it. The
 * links live in the block's data (`FB_LEFT`, `FB_RIGHT`), the root in the region record
 * (`RG_ROOT`). Splaying the looked-up key to the root makes a run of requests of one size cost
 * little; best fit is the smallest key not below (size, 0): after a splay for it, the root is
 * either that block or its predecessor, whose successor is the least node of its right subtree.
 *
 * Invariants. In-order keys increase; every node is a free block with check key `K_FREE`; the
 * wilderness is never in the tree.
 *
 * Lock order: called under the region lock (or in a trusted region by its one user).
 *
 * @module
 */
import { FB_LEFT, FB_RIGHT, RG_ROOT, SIZE_MASK } from "./layout.ts";

/** Compares the key of node `n` with (size, addr): negative, 0 or positive. */
function cmp(u32: Uint32Array, n: number, size: number, addr: number): number {
  const s = u32[n >> 2] & SIZE_MASK;
  return s !== size ? s - size : n - addr;
}

/**
 * Splays the tree rooted at `t` for the key (size, addr) and returns the new root.
 *
 * @param u32 a view over the region's buffer
 * @param t the root (nonzero)
 * @param size the key's size
 * @param addr the key's address (0 for "the least block of this size")
 * @returns the new root: the node with that key, or its predecessor or successor
 */
export function splay(u32: Uint32Array, t: number, size: number, addr: number): number {
  // `l` and `r` are the rightmost node of the left tree and the leftmost of the right tree;
  // the header's links are kept in two locals (hl: left tree's root, hr: right tree's root).
  let hl = 0, hr = 0, l = 0, r = 0;
  for (;;) {
    const c = cmp(u32, t, size, addr);
    if (c > 0) {
      let y = u32[(t + FB_LEFT) >> 2];
      if (y === 0) break;
      if (cmp(u32, y, size, addr) > 0) { // rotate right
        u32[(t + FB_LEFT) >> 2] = u32[(y + FB_RIGHT) >> 2];
        u32[(y + FB_RIGHT) >> 2] = t;
        t = y;
        y = u32[(t + FB_LEFT) >> 2];
        if (y === 0) break;
      }
      // link right
      if (r === 0) hr = t;
      else u32[(r + FB_LEFT) >> 2] = t;
      r = t;
      t = y;
    } else if (c < 0) {
      let y = u32[(t + FB_RIGHT) >> 2];
      if (y === 0) break;
      if (cmp(u32, y, size, addr) < 0) { // rotate left
        u32[(t + FB_RIGHT) >> 2] = u32[(y + FB_LEFT) >> 2];
        u32[(y + FB_LEFT) >> 2] = t;
        t = y;
        y = u32[(t + FB_RIGHT) >> 2];
        if (y === 0) break;
      }
      // link left
      if (l === 0) hl = t;
      else u32[(l + FB_RIGHT) >> 2] = t;
      l = t;
      t = y;
    } else break;
  }
  // assemble
  if (l === 0) hl = u32[(t + FB_LEFT) >> 2];
  else u32[(l + FB_RIGHT) >> 2] = u32[(t + FB_LEFT) >> 2];
  if (r === 0) hr = u32[(t + FB_RIGHT) >> 2];
  else u32[(r + FB_LEFT) >> 2] = u32[(t + FB_RIGHT) >> 2];
  u32[(t + FB_LEFT) >> 2] = hl;
  u32[(t + FB_RIGHT) >> 2] = hr;
  return t;
}

/**
 * Inserts the free block `b` (its size already in its header).
 *
 * @param u32 a view over the region's buffer
 * @param rec the region record
 * @param b the block
 */
export function treeInsert(u32: Uint32Array, rec: number, b: number): void {
  const ri = (rec + RG_ROOT) >> 2;
  let t = u32[ri];
  if (t === 0) {
    u32[(b + FB_LEFT) >> 2] = 0;
    u32[(b + FB_RIGHT) >> 2] = 0;
    u32[ri] = b;
    return;
  }
  const size = u32[b >> 2] & SIZE_MASK;
  t = splay(u32, t, size, b);
  if (cmp(u32, t, size, b) > 0) {
    u32[(b + FB_LEFT) >> 2] = u32[(t + FB_LEFT) >> 2];
    u32[(b + FB_RIGHT) >> 2] = t;
    u32[(t + FB_LEFT) >> 2] = 0;
  } else {
    u32[(b + FB_RIGHT) >> 2] = u32[(t + FB_RIGHT) >> 2];
    u32[(b + FB_LEFT) >> 2] = t;
    u32[(t + FB_RIGHT) >> 2] = 0;
  }
  u32[ri] = b;
}

/** Joins two trees whose keys are all below and all above each other; returns the root. */
function join(u32: Uint32Array, left: number, right: number): number {
  if (left === 0) return right;
  // Splaying the left tree for an infinite key brings its greatest node up: no right child.
  const t = splay(u32, left, 0x7fffffff, 0x7fffffff);
  u32[(t + FB_RIGHT) >> 2] = right;
  return t;
}

/**
 * Takes the free block `b` out of the tree.
 *
 * @param u32 a view over the region's buffer
 * @param rec the region record
 * @param b a block in the tree
 */
export function treeRemove(u32: Uint32Array, rec: number, b: number): void {
  const ri = (rec + RG_ROOT) >> 2;
  const t = splay(u32, u32[ri], u32[b >> 2] & SIZE_MASK, b);
  // t === b when the tree is sound; verify() in tests walks it
  u32[ri] = join(u32, u32[(t + FB_LEFT) >> 2], u32[(t + FB_RIGHT) >> 2]);
}

/**
 * Takes out and returns the best-fitting free block: the smallest of at least `size` bytes,
 * the lowest address among equals; 0 when none is big enough.
 *
 * @param u32 a view over the region's buffer
 * @param rec the region record
 * @param size the block size wanted
 * @returns the block, or 0
 */
export function treeTakeFit(u32: Uint32Array, rec: number, size: number): number {
  const ri = (rec + RG_ROOT) >> 2;
  let t = u32[ri];
  if (t === 0) return 0;
  t = splay(u32, t, size, 0);
  if ((u32[t >> 2] & SIZE_MASK) < size) {
    const right = u32[(t + FB_RIGHT) >> 2];
    if (right === 0) {
      u32[ri] = t;
      return 0;
    }
    const s = splay(u32, right, size, 0); // every key there is bigger: s is the least
    u32[(t + FB_RIGHT) >> 2] = u32[(s + FB_RIGHT) >> 2];
    u32[ri] = t;
    return s;
  }
  u32[ri] = join(u32, u32[(t + FB_LEFT) >> 2], u32[(t + FB_RIGHT) >> 2]);
  return t;
}

/**
 * Calls `f` for each block of the tree in key order (for checks and stats).
 *
 * @param u32 a view over the region's buffer
 * @param rec the region record
 * @param f the visitor
 * @param limit the most nodes to visit (a damaged tree may have a cycle)
 * @returns false when the walk stopped at the limit
 */
export function treeEach(
  u32: Uint32Array,
  rec: number,
  f: (b: number) => void,
  limit: number,
): boolean {
  const stack: number[] = [];
  let t = u32[(rec + RG_ROOT) >> 2], n = 0;
  while (t !== 0 || stack.length > 0) {
    while (t !== 0) {
      if (++n > limit) return false;
      stack.push(t);
      t = u32[(t + FB_LEFT) >> 2];
    }
    t = stack.pop()!;
    f(t);
    t = u32[(t + FB_RIGHT) >> 2];
  }
  return true;
}
