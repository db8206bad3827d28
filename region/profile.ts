/**
 * Vmprofile: Vmbest that counts, per call site, the allocations, the frees, the bytes
 * allocated and freed and the most bytes busy at once, and prints them in the format of the
 * paper's Figure 10.
 *
 * Theory. A profile block ends with the same trailer as a debug block (the size asked for and
 * the index of its allocation's site), so a free is charged to the site that allocated the
 * block. The counters are the site table's entries (region/sites.ts), in the region's memory,
 * so every worker's calls add up in one place and a reopened region keeps its profile.
 *
 * Invariants: an entry's `SE_BUSY` is the sum of the sizes asked for of the busy blocks
 * allocated there; `SE_MAXBUSY` the most it has been.
 *
 * Lock order: runs under the region lock.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { type Blocks, blockSize } from "./blocks.ts";
import { bestAllocBlock, bestFreeBlock, resizeBlock, screen } from "./best.ts";
import {
  BK_HDR,
  M_PROFILE,
  RG_EXTENT,
  RG_MAXBUSY,
  RG_SITES,
  SE_BUSY,
  SE_MAXBUSY,
  SE_NALLOC,
  SE_NFREE,
  SE_SALLOC,
  SE_SFREE,
  ST_COUNT,
  TR_BYTES,
  TR_SITE,
  TR_SIZE,
} from "./layout.ts";
import type { Method } from "./method.ts";
import { siteAt, siteEntry } from "./sites.ts";

/** Charges an allocation of `n` bytes to site `i`. */
function charge(bk: Blocks, i: number, n: number): void {
  const e = siteEntry(bk, i), u32 = bk.u32;
  u32[(e + SE_NALLOC) >> 2]++;
  bk.f64[(e + SE_SALLOC) >> 3] += n;
  const busy = (u32[(e + SE_BUSY) >> 2] += n);
  if (busy > u32[(e + SE_MAXBUSY) >> 2]) u32[(e + SE_MAXBUSY) >> 2] = busy;
}

/** Credits the free of block `b` to the site that allocated it. */
function credit(bk: Blocks, b: number): void {
  const end = b + bk.bsize(b);
  creditSite(bk, bk.u32[(end - TR_SITE) >> 2], bk.u32[(end - TR_SIZE) >> 2]);
}

/** Credits the free of `n` bytes to site `i`. */
function creditSite(bk: Blocks, i: number, n: number): void {
  const e = siteEntry(bk, i), u32 = bk.u32;
  u32[(e + SE_NFREE) >> 2]++;
  bk.f64[(e + SE_SFREE) >> 3] += n;
  u32[(e + SE_BUSY) >> 2] -= n;
}

/** Writes the trailer of profile block `b` (`n` bytes for `site`) and charges them to the site. */
function stamp(bk: Blocks, b: number, n: number, site: number): void {
  const end = b + bk.bsize(b);
  bk.u32[(end - TR_SIZE) >> 2] = n;
  bk.u32[(end - TR_SITE) >> 2] = site;
  charge(bk, site, n);
}

/** The Vmprofile method. */
export const profile: Method = {
  code: M_PROFILE,
  name: "Vmprofile",
  alloc(c, size) {
    const bk = c.bk, b = bestAllocBlock(bk, blockSize(size + TR_BYTES));
    if (b === 0) return 0;
    stamp(bk, b, size, c.siteIndex());
    return b + BK_HDR;
  },
  free(c, ptr) {
    screen(c, "vmfree", ptr);
    const bk = c.bk, b = ptr - BK_HDR;
    credit(bk, b);
    bestFreeBlock(bk, b);
  },
  resize(c, ptr, size, move, copy) {
    screen(c, "vmresize", ptr);
    const bk = c.bk, b = ptr - BK_HDR, end = b + bk.bsize(b);
    const n = bk.u32[(end - TR_SIZE) >> 2], oldSite = bk.u32[(end - TR_SITE) >> 2];
    const nb = resizeBlock(
      bk,
      b,
      blockSize(size + TR_BYTES),
      move,
      copy ? Math.min(n, size) : 0,
      bestAllocBlock,
      bestFreeBlock,
    );
    if (nb === 0) return 0; // the block is as it was
    creditSite(bk, oldSite, n);
    stamp(bk, nb, size, c.siteIndex());
    return nb + BK_HDR;
  },
  size(c, ptr) {
    screen(c, "vmsize", ptr);
    const b = ptr - BK_HDR;
    return c.bk.u32[(b + c.bk.bsize(b) - TR_SIZE) >> 2];
  },
};

/**
 * The profile of a region in the format of the paper's Figure 10: a summary line, the
 * region's line, then a line per call site grouped by file.
 *
 * @param bk the store
 * @param method the method's Vmalloc name
 * @returns the report
 */
export function profileReport(bk: Blocks, method: string): string {
  const table = bk.get(RG_SITES);
  const count = table === 0 ? 0 : bk.u32[(table + ST_COUNT) >> 2];
  let na = 0, nf = 0, sa = 0, sf = 0;
  const byFile = new Map<string, string[]>();
  for (let i = 0; i < count; i++) {
    const e = siteEntry(bk, i), u32 = bk.u32;
    const a = u32[(e + SE_NALLOC) >> 2], f = u32[(e + SE_NFREE) >> 2];
    if (a === 0 && f === 0) continue;
    const s = bk.f64[(e + SE_SALLOC) >> 3], t = bk.f64[(e + SE_SFREE) >> 3];
    na += a, nf += f, sa += s, sf += t;
    const site = siteAt(bk, i);
    const lines = byFile.get(site.file) ?? [];
    lines.push(
      `\t\tline=${site.line}:n_alloc=${a}:n_free=${f}:s_alloc=${s}:s_free=${t}:` +
        `max_busy=${u32[(e + SE_MAXBUSY) >> 2]}:`,
    );
    byFile.set(site.file, lines);
  }
  const out = [
    `ALLOCATION USAGE SUMMARY: n_alloc=${na}:n_free=${nf}:s_alloc=${sa}:s_free=${sf}:`,
    `region=${hex(bk.rec)}:method=${method}:n_alloc=${na}:n_free=${nf}:s_alloc=${sa}:` +
    `s_free=${sf}:max_busy=${bk.get(RG_MAXBUSY)}:extent=${bk.get(RG_EXTENT)}:`,
  ];
  for (const [file, lines] of byFile) out.push(`\tfile=${file}:`, ...lines);
  return out.join("\n") + "\n";
}
