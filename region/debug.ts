/**
 * Vmdebug: Vmbest with checks. Every block carries a redzone after its data and a trailer
 * with the size asked for and the call site of its allocation; frees and resizes are checked
 * against the walk of the region, so each problem is reported with its category and both call
 * sites, in the format of the paper's Figure 8:
 *
 *     corrupted data:region=0x10:block=0x1f8:bad byte at=4:allocated at=t.ts,4:detected at=t.ts,6:
 *     free error:region=0x10:block=0x2000:unallocated block:detected at=t.ts,6:
 *     free error:region=0x10:block=0x1f8:already freed:allocated at=t.ts,8:detected at=t.ts,19:
 *     alert:region=0x10:block=0x1f8:size=5:just allocated:at=t.ts,4:
 *
 * Theory. A debug block is `[header][data: n][redzone: at least 4 bytes of 0xbb][n][site]`
 * (the redzone is written and checked for at most `REDZONE_SPAN` bytes, so that a block with
 * slack costs no more to check than another).
 * A write past the data changes a redzone byte (or the trailer), which `free`, `resize` and
 * `check` (vmdbcheck) find; with the open flag `check` (VM_DBCHECK) every allocation checks
 * the whole region first. An address given to `free` or `resize` is looked up by walking its
 * segment, so an address inside a block, one outside the region, and a block already freed
 * (its stale check word is a free or junk key) are told apart. A bad call is refused: the
 * region is left as it was. A block freed twice while it is still cached keeps its trailer,
 * so that report names its allocation's site too. Watched addresses (`RG_WATCH`, vmdbwatch) raise an alert at every
 * call that allocates, frees or resizes them.
 *
 * Invariants: every busy block's trailer holds its size `n` with `n + 4 + 8 + 8 <= block size`
 * unless its redzone or trailer was overwritten; those of region/blocks.ts.
 *
 * Lock order: runs under the region lock; reports and alerts are delivered after it.
 *
 * @module
 */
import { hex } from "../core/internal.ts";
import { type Blocks, blockSize, Found } from "./blocks.ts";
import { bestAllocBlock, bestFreeBlock, resizeBlock } from "./best.ts";
import { RegionError, type Site } from "./errors.ts";
import {
  BK_CHECK,
  BK_HDR,
  F_BUSY,
  K_BUSY,
  K_FREE,
  K_JUNK,
  K_POOLFREE,
  M_DEBUG,
  REDZONE_BYTE,
  REDZONE_MIN,
  REDZONE_SPAN,
  RF_CHECK,
  RG_FLAGS,
  RG_WATCH,
  SG_FIRST,
  SIZE_MASK,
  TR_BYTES,
  TR_SITE,
  TR_SIZE,
  WATCH_MAX,
} from "./layout.ts";
import type { Method, MethodContext } from "./method.ts";
import { siteText } from "./sites.ts";

/** The block size of a debug block of `n` data bytes. */
function debugNeed(n: number): number {
  return blockSize(n + REDZONE_MIN + TR_BYTES);
}

/** Writes the trailer and the redzone of debug block `b` holding `n` bytes from `site`. */
function seal(bk: Blocks, b: number, n: number, site: number): void {
  const end = b + bk.bsize(b);
  bk.u32[(end - TR_SIZE) >> 2] = n;
  bk.u32[(end - TR_SITE) >> 2] = site;
  bk.u8.fill(REDZONE_BYTE, b + BK_HDR + n, Math.min(end - TR_BYTES, b + BK_HDR + n + REDZONE_SPAN));
}

/** The size asked for of debug block `b` (its trailer). */
function asked(bk: Blocks, b: number): number {
  return bk.u32[(b + bk.bsize(b) - TR_SIZE) >> 2];
}

/**
 * The offset from the data of the first damaged byte after it (redzone or trailer), or -1.
 *
 * @param bk the store
 * @param b a busy debug block
 * @returns the offset, or -1 when intact
 */
export function firstBadByte(bk: Blocks, b: number): number {
  const size = bk.bsize(b), n = asked(bk, b), data = b + BK_HDR;
  if (n + REDZONE_MIN + TR_BYTES > size - BK_HDR) {
    // the trailer itself was overwritten: look for the first redzone byte that is not 0xbb
    const u8 = bk.u8;
    for (let i = data; i < b + size - TR_BYTES - 1; i++) {
      if (u8[i] !== REDZONE_BYTE && u8[i + 1] === REDZONE_BYTE) return i + 1 - data;
    }
    return size - BK_HDR - TR_BYTES;
  }
  const u8 = bk.u8, end = Math.min(b + size - TR_BYTES, data + n + REDZONE_SPAN);
  for (let i = data + n; i < end; i++) if (u8[i] !== REDZONE_BYTE) return i - data;
  return -1;
}

/** What an address given to free or resize is, found by walking its segment. */
type Lookup = "busy" | "freed" | "unallocated";

/**
 * Says what `ptr` is: a busy block when its header and check word say so (constant time),
 * else by walking its segment, which tells a block already freed (and perhaps merged) from an
 * address that was never a block.
 */
function lookup(bk: Blocks, ptr: number): Lookup {
  if ((ptr & 7) !== 0) return "unallocated";
  if (bk.classify(ptr) === Found.Busy) return "busy";
  const seg = bk.segmentOf(ptr);
  if (seg === 0) return "unallocated";
  const u32 = bk.u32, a = ptr - BK_HDR, end = bk.segEnd(seg);
  let b = u32[(seg + SG_FIRST) >> 2];
  while (b < end) {
    const size = u32[b >> 2] & SIZE_MASK;
    if (size === 0) return "unallocated";
    if (a < b + size) {
      if (a < b) return "unallocated";
      const key = (u32[(a + BK_CHECK) >> 2] ^ a) >>> 0;
      const free = (u32[b >> 2] & F_BUSY) === 0 ||
        ((u32[(b + BK_CHECK) >> 2] ^ b) >>> 0) !== K_BUSY;
      if (a === b) return key === K_BUSY ? "busy" : "freed";
      // inside a block: a stale header of a block that was freed and merged?
      return free && (key === K_JUNK || key === K_FREE || key === K_POOLFREE)
        ? "freed"
        : "unallocated";
    }
    b += size;
  }
  return "unallocated";
}

/** Vmdebug's line head: `category:region=..:block=..:`. */
function head(bk: Blocks, category: string, ptr: number): string {
  return `${category}:region=${hex(bk.rec)}:block=${hex(ptr)}:`;
}

/** Checks an address given to free or resize; reports and returns false when it is bad. */
function vet(c: MethodContext, ptr: number, what: "free" | "resize"): boolean {
  const bk = c.bk, found = lookup(bk, ptr);
  if (found !== "busy") {
    const here = c.site();
    const freed = found === "freed";
    // a block freed and still cached keeps its trailer: its allocation's site is known
    const a = ptr - BK_HDR;
    const junk = freed && ((bk.u32[(a + BK_CHECK) >> 2] ^ a) >>> 0) === K_JUNK;
    const born = junk ? c.siteAt(bk.u32[(a + bk.bsize(a) - TR_SITE) >> 2]) : null;
    c.report(
      new RegionError(
        freed ? "duplicate-free" : "bad-free",
        head(bk, `${what} error`, ptr) + (freed ? "already freed" : "unallocated block") +
          (born !== null ? `:allocated at=${siteText(born)}` : "") +
          `:detected at=${siteText(here)}:`,
        bk.rec,
        ptr,
        `${what} error`,
        born,
        here,
      ),
    );
    return false;
  }
  const b = ptr - BK_HDR, bad = firstBadByte(bk, b);
  if (bad >= 0) {
    c.report(corrupted(c, b, bad, c.site()));
    return false;
  }
  return true;
}

/** The report of a damaged block. */
function corrupted(c: MethodContext, b: number, bad: number, here: Site): RegionError {
  const bk = c.bk, ptr = b + BK_HDR;
  const site = c.siteAt(bk.u32[(b + bk.bsize(b) - TR_SITE) >> 2]);
  return new RegionError(
    "redzone-violation",
    head(bk, "corrupted data", ptr) + `bad byte at=${bad}:allocated at=${siteText(site)}:` +
      `detected at=${siteText(here)}:`,
    bk.rec,
    ptr,
    "corrupted data",
    site,
    here,
  );
}

/**
 * Checks every busy block of the region and the region's structure (vmdbcheck).
 *
 * @param c the method context
 * @returns a report per damaged block and per structural problem
 */
export function checkRegion(c: MethodContext): RegionError[] {
  const bk = c.bk, out: RegionError[] = [], here = c.site();
  const problems = bk.verify();
  for (const p of problems) {
    out.push(
      new RegionError(
        "boundary-tag-corrupted",
        `corrupted region:region=${hex(bk.rec)}:${p}:detected at=${siteText(here)}:`,
        bk.rec,
        0,
        "corrupted region",
        null,
        here,
      ),
    );
  }
  bk.walk((b) => {
    if (((bk.u32[(b + BK_CHECK) >> 2] ^ b) >>> 0) !== K_BUSY) return;
    const bad = firstBadByte(bk, b);
    if (bad >= 0) out.push(corrupted(c, b, bad, here));
  });
  return out;
}

/** Raises an alert when `ptr` is watched. */
function watchAlert(c: MethodContext, ptr: number, size: number, what: string): void {
  const bk = c.bk;
  for (let i = 0; i < WATCH_MAX; i++) {
    if (bk.get(RG_WATCH + 4 * i) === ptr) {
      c.alert(head(bk, "alert", ptr) + `size=${size}:${what}:at=${siteText(c.site())}:`);
      return;
    }
  }
}

/** Whether any address is watched (so the common case skips the loop's site capture). */
function watching(bk: Blocks): boolean {
  for (let i = 0; i < WATCH_MAX; i++) if (bk.get(RG_WATCH + 4 * i) !== 0) return true;
  return false;
}

/**
 * Adds an address to the watch list (vmdbwatch).
 *
 * @param bk the store
 * @param addr the data address to watch
 * @returns false when the list is full
 */
export function watchAddress(bk: Blocks, addr: number): boolean {
  for (let i = 0; i < WATCH_MAX; i++) if (bk.get(RG_WATCH + 4 * i) === addr) return true;
  for (let i = 0; i < WATCH_MAX; i++) {
    if (bk.get(RG_WATCH + 4 * i) === 0) {
      bk.set(RG_WATCH + 4 * i, addr);
      return true;
    }
  }
  return false;
}

/** The Vmdebug method. */
export const debug: Method = {
  code: M_DEBUG,
  name: "Vmdebug",
  alloc(c, size) {
    const bk = c.bk;
    if ((bk.get(RG_FLAGS) & RF_CHECK) !== 0) { for (const e of checkRegion(c)) c.report(e); }
    const b = bestAllocBlock(bk, debugNeed(size));
    if (b === 0) return 0;
    seal(bk, b, size, c.siteIndex());
    if (watching(bk)) watchAlert(c, b + BK_HDR, size, "just allocated");
    return b + BK_HDR;
  },
  free(c, ptr) {
    if (!vet(c, ptr, "free")) return;
    const bk = c.bk, b = ptr - BK_HDR;
    if (watching(bk)) watchAlert(c, ptr, asked(bk, b), "being freed");
    bestFreeBlock(bk, b);
  },
  resize(c, ptr, size, move, copy) {
    if (!vet(c, ptr, "resize")) return 0;
    const bk = c.bk, b = ptr - BK_HDR, n = asked(bk, b);
    if (watching(bk)) watchAlert(c, ptr, n, "being resized");
    const nb = resizeBlock(
      bk,
      b,
      debugNeed(size),
      move,
      copy ? Math.min(n, size) : 0,
      bestAllocBlock,
      bestFreeBlock,
    );
    if (nb === 0) {
      seal(bk, b, n, bk.u32[(b + bk.bsize(b) - TR_SITE) >> 2]); // in-place attempts may have grown it
      return 0;
    }
    seal(bk, nb, size, c.siteIndex());
    if (watching(bk)) watchAlert(c, nb + BK_HDR, size, "just resized");
    return nb + BK_HDR;
  },
  size(c, ptr) {
    if (lookup(c.bk, ptr) !== "busy") {
      c.report(
        new RegionError(
          "bad-free",
          head(c.bk, "size error", ptr) + `unallocated block:detected at=${siteText(c.site())}:`,
          c.bk.rec,
          ptr,
          "size error",
        ),
      );
      return -1;
    }
    return asked(c.bk, ptr - BK_HDR);
  },
};
