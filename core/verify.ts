/**
 * `heap.verify()`: a full consistency check of the image, as `umem_verify` and `::kmem_verify`.
 *
 * It walks every arena (address list, spans, free lists, hash), every cache (slab lists,
 * state bytes, slab free lists, page map) and every depot, and returns one line per problem.
 * Every walk is bounded by the number of records that can exist, so a corrupt image yields a
 * report, never a hang, and every address is checked against the bounds before it is read.
 *
 * It takes no locks: call it when the heap is quiet (or accept that a concurrent change may be
 * reported).
 *
 * @module
 */

import { checkAllocatedBuffer, checkFreeBuffer, checkQuarantined, quarantined } from "./debug.ts";
import { BT_BXSTAT, freeCheck } from "./buftag.ts";
import { hex } from "./errors.ts";
import { LOCK_HOLDER_MASK } from "./lock.ts";
import {
  HDR_ARENA_LIST,
  HDR_ARENA_LOCK,
  HDR_CACHE_LIST,
  HDR_CACHE_LOCK,
  HDR_NSLOTS,
  HDR_ROOT_LOCK,
  HDR_SEG_LOCK,
  HDR_SLOTS,
  type HeapView,
  listRecords,
  PAGE_SHIFT,
  PAGE_SIZE,
  SLOT_LIVE,
  WS_SIZE,
  WS_STATE,
} from "./image.ts";
import {
  bufferStateAt,
  CC_LAST,
  CC_LOADED,
  CC_MAGSIZE,
  CC_PLOADED,
  CC_PROUNDS,
  CC_ROUNDS,
  CC_SIZE,
  MAG_ROUNDS,
  MG_NEXT,
  MG_ROUNDS,
} from "./magazine.ts";
import {
  BUF_ALLOC,
  BUF_ALLOC_DEFER,
  BUF_ALLOC_TAGGED,
  BUF_CACHED,
  BUF_FREE,
  BUF_INTERIOR,
  bufIndex,
  CA_CHUNK,
  CA_CPU,
  CA_DEBUG,
  CA_DEPOT_EMPTY,
  CA_DEPOT_FULL,
  CA_DEPOT_LOCK,
  CA_DEPOT_NEMPTY,
  CA_DEPOT_NFULL,
  CA_EMPTY,
  CA_FLAGS,
  CA_FULL,
  CA_LINKOFF,
  CA_LOCK,
  CA_MAGROUNDS,
  CA_NCHUNKS,
  CA_NEXT,
  CA_NSTATE,
  CA_PARTIAL,
  CA_SHIFT,
  CA_SLABS,
  CA_SLABSIZE,
  CA_TAGOFF,
  cacheName,
  cacheRecordFault,
  CF_NOMAGAZINE,
  CF_TAGSTATE,
  SB_BASE,
  SB_CACHE,
  SB_FREE,
  SB_LIST,
  SB_NEXT,
  SB_REFCNT,
  SB_START,
  SB_STATE,
} from "./slab.ts";
import {
  arenaName,
  freeListIndex,
  hashFind,
  SEG_ALLOC,
  SEG_FREE,
  SEG_SPAN,
  SEG_TYPE_MASK,
  VM_FREELIST,
  VM_FREEMAP,
  VM_HASHCOUNT,
  VM_INUSE,
  VM_LOCK,
  VM_NEXT,
  VM_SENTINEL,
  VS_ANEXT,
  VS_APREV,
  VS_END,
  VS_KNEXT,
  VS_START,
  VS_TYPE,
} from "./vmem.ts";

/** Checks the whole heap; returns one line per problem. */
export function verifyHeap(h: HeapView): string[] {
  // Problems found here are listed, not reported: a heap that aborts on a report does not here.
  h.collecting++;
  try {
    return verifyAll(h);
  } finally {
    h.collecting--;
  }
}

/** {@linkcode verifyHeap}'s walk. */
function verifyAll(h: HeapView): string[] {
  const out: string[] = [];
  const arenas = listOf(h, HDR_ARENA_LIST, VM_NEXT, "vmem_verify: arena list", out);
  const caches = listOf(h, HDR_CACHE_LIST, CA_NEXT, "umem_verify: cache list", out);
  verifyLocks(h, out, arenas, caches);
  for (const a of arenas) verifyArena(h, a, out);
  for (const [p, bytes] of quarantined(h)) {
    const bad = checkQuarantined(h, p, bytes);
    if (bad !== undefined) out.push(bad);
  }
  for (const cp of caches) {
    // A record whose layout cannot be (one bad word) would have the walks below read past it,
    // or count to two billion: it is reported, and its slabs left alone.
    const rounds = w(h, cp + CA_MAGROUNDS);
    const fault = cacheRecordFault(h, cp) ??
      (rounds < 0 || rounds > MAX_ROUNDS ? `has magazines of ${rounds} rounds` : undefined);
    if (fault !== undefined) {
      out.push(`umem_verify(${cacheName(h, cp)}): record ${hex(cp)} ${fault}`);
    } else verifyCache(h, cp, out);
  }
  return out;
}

/** The records of a list (`listRecords`), a link out of bounds or a loop reported in `out`. */
function listOf(h: HeapView, head: number, next: number, what: string, out: string[]): number[] {
  return listRecords(h, head, next, (a, looped) => {
    out.push(
      looped ? `${what} loops back to ${hex(a)}` : `${what} points out of bounds (${hex(a)})`,
    );
  });
}

const w = (h: HeapView, a: number) => h.i32[a >> 2];
/** The most rounds a magazine holds (its largest type's). */
const MAX_ROUNDS = MAG_ROUNDS[MAG_ROUNDS.length - 1];

/**
 * Reports every lock held by a worker slot that is no longer attached (it died, or was
 * reclaimed, while it held the lock): the structure the lock guards may be half-changed.
 */
function verifyLocks(
  h: HeapView,
  out: string[],
  arenas: readonly number[],
  caches: readonly number[],
): void {
  const nslots = w(h, HDR_NSLOTS), table = w(h, HDR_SLOTS);
  const check = (addr: number, what: string) => {
    if (addr <= 0 || addr + 4 > h.mapped) return;
    const holder = (Atomics.load(h.i32, addr >> 2) & LOCK_HOLDER_MASK) - 1;
    if (holder < 0) return;
    const live = holder < nslots && w(h, table + holder * WS_SIZE + WS_STATE) === SLOT_LIVE;
    if (!live) {
      out.push(
        `umem_verify: ${what} (lock at ${
          hex(addr)
        }) is held by worker ${holder}, which is no longer ` +
          `attached: ${what.replace(/ lock$/, "")} may be inconsistent`,
      );
    }
  };
  check(HDR_SEG_LOCK, "the segment-record pool lock");
  check(HDR_ARENA_LOCK, "the arena list lock");
  check(HDR_CACHE_LOCK, "the cache list lock");
  check(HDR_ROOT_LOCK, "the root table lock");
  for (const a of arenas) check(a + VM_LOCK, `arena ${arenaName(h, a)} lock`);
  for (const cp of caches) {
    check(cp + CA_LOCK, `cache ${cacheName(h, cp)} slab lock`);
    check(cp + CA_DEPOT_LOCK, `cache ${cacheName(h, cp)} depot lock`);
  }
}

/** Checks every buffer of a debugged cache: free ones' patterns, allocated ones' redzones. */
function verifyDebugBuffers(h: HeapView, cp: number, out: string[]): void {
  const n = w(h, cp + CA_NCHUNKS), chunk = w(h, cp + CA_CHUNK), shift = w(h, cp + CA_SHIFT);
  // (verifyCache reported a list longer than the slabs the heap could hold)
  const limit = h.mapped / w(h, cp + CA_SLABSIZE);
  for (const list of [CA_FULL, CA_PARTIAL, CA_EMPTY]) {
    let k = 0;
    for (
      let sb = w(h, cp + list);
      sb !== 0 && inBounds(h, sb) && k++ < limit;
      sb = w(h, sb + SB_NEXT)
    ) {
      const base = w(h, sb + SB_BASE);
      for (let i = 0; i < n; i++) {
        const buf = base + i * chunk;
        let st = bufferStateAt(h, cp, sb + SB_STATE + ((i * chunk) >> shift), buf);
        // A trusting heap keeps no state past "out of the slab": its tag's check word says
        // whether the buffer is in a magazine (free) or the user's.
        if (h.trust && st !== BUF_FREE) {
          st = w(h, buf + w(h, cp + CA_TAGOFF) + BT_BXSTAT) === freeCheck(cp, buf)
            ? BUF_CACHED
            : BUF_ALLOC;
        }
        // Buffers in a debugged cache's magazines are free: patterned, not constructed.
        const bad = st === BUF_FREE || st === BUF_CACHED
          ? checkFreeBuffer(h, cp, buf)
          : st === BUF_ALLOC
          ? checkAllocatedBuffer(h, cp, buf)
          : undefined;
        if (bad !== undefined) out.push(bad.message.split("\n").slice(0, 3).join("; "));
      }
    }
  }
}
const inBounds = (h: HeapView, a: number) => a > 0 && a < h.mapped && (a & 3) === 0;

function verifyArena(h: HeapView, a: number, out: string[]): void {
  const name = arenaName(h, a);
  const bad = (msg: string) => out.push(`vmem_verify(${name}): ${msg}`);
  const sentinel = w(h, a + VM_SENTINEL);
  if (!inBounds(h, sentinel)) return void bad(`sentinel ${hex(sentinel)} out of bounds`);
  const limit = h.mapped >> 4;
  let prev = sentinel, spanEnd = -1, prevType = 0, inuse = 0, allocs = 0, frees = 0, steps = 0;
  let cursor = 0;
  for (let s = w(h, sentinel + VS_ANEXT); s !== sentinel; s = w(h, s + VS_ANEXT)) {
    if (!inBounds(h, s) || ++steps > limit) return void bad(`address list broken at ${hex(s)}`);
    if (w(h, s + VS_APREV) !== prev) bad(`segment ${hex(s)}: back link does not match`);
    const t = w(h, s + VS_TYPE) & SEG_TYPE_MASK;
    const start = w(h, s + VS_START), end = w(h, s + VS_END);
    if (end <= start) bad(`segment ${hex(s)} [${hex(start)}, ${hex(end)}) is empty or inverted`);
    if (t === SEG_SPAN) {
      if (spanEnd >= 0 && cursor !== spanEnd) bad(`span ending ${hex(spanEnd)} not tiled`);
      cursor = start;
      spanEnd = end;
    } else {
      if (start !== cursor) {
        bad(`segment ${hex(s)} starts at ${hex(start)}, expected ${hex(cursor)}`);
      }
      cursor = end;
      if (t === SEG_FREE) {
        frees++;
        if (prevType === SEG_FREE) bad(`adjacent free segments at ${hex(start)}`);
      } else if (t === SEG_ALLOC) {
        allocs++;
        inuse += end - start;
        if (hashFind(h, a, start) !== s) bad(`allocated segment ${hex(start)} not in the hash`);
      } else bad(`segment ${hex(s)} has type ${t}`);
    }
    prevType = t;
    prev = s;
  }
  if (spanEnd >= 0 && cursor !== spanEnd) bad(`span ending ${hex(spanEnd)} not tiled`);
  if (w(h, a + VM_HASHCOUNT) !== allocs) {
    bad(`hash holds ${w(h, a + VM_HASHCOUNT)} segments, address list ${allocs} allocated`);
  }
  if (h.f64[(a + VM_INUSE) >> 3] !== inuse) {
    bad(`in use ${h.f64[(a + VM_INUSE) >> 3]} != ${inuse} bytes allocated`);
  }
  let listed = 0;
  const map = w(h, a + VM_FREEMAP);
  for (let i = 0; i < 32; i++) {
    const head = w(h, a + VM_FREELIST + i * 4);
    if ((head !== 0) !== ((map & (1 << i)) !== 0)) bad(`free list ${i} and bitmap disagree`);
    let k = 0;
    for (let s = head; s !== 0; s = w(h, s + VS_KNEXT)) {
      if (!inBounds(h, s) || ++k > limit) {
        bad(`free list ${i} broken at ${hex(s)}`);
        break;
      }
      const size = w(h, s + VS_END) - w(h, s + VS_START);
      if ((w(h, s + VS_TYPE) & SEG_TYPE_MASK) !== SEG_FREE) {
        bad(`free list ${i} holds ${hex(s)}, not free`);
      } else if (freeListIndex(size) !== i) bad(`segment of ${size} bytes on free list ${i}`);
      listed++;
    }
  }
  if (listed !== frees) bad(`${frees} free segments but ${listed} on the free lists`);
}

function verifyCache(h: HeapView, cp: number, out: string[]): void {
  const name = cacheName(h, cp);
  const bad = (msg: string) => out.push(`umem_verify(${name}): ${msg}`);
  const nchunks = w(h, cp + CA_NCHUNKS), slabsize = w(h, cp + CA_SLABSIZE);
  const chunk = w(h, cp + CA_CHUNK), shift = w(h, cp + CA_SHIFT), nstate = w(h, cp + CA_NSTATE);
  const pm = h.pagemap >> 2;
  // A debugged size class's buffers out of their slabs are tagged (its tags say which are
  // allocated), every other cache's never; a trusting heap keeps no state past "out".
  const tagged = (w(h, cp + CA_FLAGS) & CF_TAGSTATE) !== 0 && !h.trust;
  const limit = h.mapped / PAGE_SIZE;
  let slabs = 0;
  const cachedBufs = new Set<number>();
  for (const list of [CA_FULL, CA_PARTIAL, CA_EMPTY]) {
    let k = 0;
    for (let sb = w(h, cp + list); sb !== 0; sb = w(h, sb + SB_NEXT)) {
      if (!inBounds(h, sb) || ++k > limit) {
        bad(`slab list broken at ${hex(sb)}`);
        break;
      }
      slabs++;
      if (w(h, sb + SB_CACHE) !== cp) {
        bad(`slab ${hex(sb)} names cache ${hex(w(h, sb + SB_CACHE))}`);
      }
      if (w(h, sb + SB_LIST) !== list) bad(`slab ${hex(sb)} is on the wrong list`);
      const start = w(h, sb + SB_START);
      for (let p = start >>> PAGE_SHIFT; p < (start + slabsize) >>> PAGE_SHIFT; p++) {
        if (h.i32[pm + p] !== sb) {
          bad(`page ${hex(p << PAGE_SHIFT)} of slab ${hex(sb)} not mapped to it`);
        }
      }
      let used = 0, next = 0;
      for (let g = 0; g < nstate; g++) {
        const st = h.u8[sb + SB_STATE + g];
        const start = next < nchunks && ((next * chunk) >> shift) === g;
        if (start) {
          next++;
          const out = tagged
            ? st === BUF_ALLOC_TAGGED
            : st === BUF_ALLOC || st === BUF_CACHED || st === BUF_ALLOC_DEFER;
          if (out) used++;
          else if (st !== BUF_FREE) bad(`slab ${hex(sb)} buffer ${next - 1} has state ${st}`);
        } else if (st !== BUF_INTERIOR) {
          bad(`slab ${hex(sb)} granule ${g} has state ${st}, no buffer starts there`);
        }
      }
      const ref = w(h, sb + SB_REFCNT);
      if (ref !== used) bad(`slab ${hex(sb)} refcnt ${ref} but ${used} buffers out`);
      const want = ref === 0 ? CA_EMPTY : ref === nchunks ? CA_FULL : CA_PARTIAL;
      if (want !== list) bad(`slab ${hex(sb)} with ${ref} of ${nchunks} out is on the wrong list`);
      let free = 0;
      const link = w(h, cp + CA_LINKOFF);
      for (let b = w(h, sb + SB_FREE); b !== 0; b = inBounds(h, b) ? w(h, b + link) : 0) {
        const idx = inBounds(h, b) ? bufIndex(h, cp, sb, b) : -1;
        if (idx < 0 || ++free > nchunks) {
          bad(`slab ${hex(sb)} free list broken at ${hex(b)}`);
          break;
        }
        if (h.u8[sb + SB_STATE + idx] !== BUF_FREE) bad(`free buffer ${hex(b)} not in state free`);
      }
      if (free + ref !== nchunks && free <= nchunks) {
        bad(`slab ${hex(sb)}: ${free} free + ${ref} out != ${nchunks} buffers`);
      }
      if (w(h, sb + SB_BASE) < start || w(h, sb + SB_BASE) >= start + slabsize) {
        bad(`slab ${hex(sb)} base outside its memory`);
      }
    }
  }
  if (w(h, cp + CA_DEBUG) !== 0) verifyDebugBuffers(h, cp, out);
  if (h.f64[(cp + CA_SLABS) >> 3] !== slabs) {
    bad(`${slabs} slabs listed, ${h.f64[(cp + CA_SLABS) >> 3]} counted`);
  }
  if ((w(h, cp + CA_FLAGS) & CF_NOMAGAZINE) !== 0) return;
  // Magazines: every round a cached buffer of this cache, none twice.
  const checkRound = (buf: number, where: string) => {
    const sb = inBounds(h, buf) ? h.i32[pm + (buf >>> PAGE_SHIFT)] : 0;
    const idx = sb !== 0 && w(h, sb + SB_CACHE) === cp ? bufIndex(h, cp, sb, buf) : -1;
    if (idx < 0) return void bad(`${where} holds ${hex(buf)}, not a buffer of this cache`);
    if (!h.trust && bufferStateAt(h, cp, sb + SB_STATE + idx, buf) !== BUF_CACHED) {
      bad(`${where} holds ${hex(buf)}, not in state cached`);
    }
    if (cachedBufs.has(buf)) bad(`${hex(buf)} is in two magazines`);
    cachedBufs.add(buf);
  };
  const rounds = w(h, cp + CA_MAGROUNDS);
  for (
    const [head, count, full] of [[CA_DEPOT_FULL, CA_DEPOT_NFULL, true], [
      CA_DEPOT_EMPTY,
      CA_DEPOT_NEMPTY,
      false,
    ]] as const
  ) {
    let k = 0;
    for (let m = w(h, cp + head); m !== 0; m = w(h, m + MG_NEXT)) {
      if (!inBounds(h, m) || m + MG_ROUNDS + rounds * 4 > h.mapped || ++k > limit * 64) {
        bad(`depot list broken at ${hex(m)}`);
        break;
      }
      if (full) {
        for (let i = 0; i < rounds; i++) {
          checkRound(w(h, m + MG_ROUNDS + i * 4), `depot magazine ${hex(m)}`);
        }
      }
    }
    if (k !== w(h, cp + count)) {
      bad(`depot ${full ? "full" : "empty"} count ${w(h, cp + count)} != ${k} listed`);
    }
  }
  const nslots = w(h, HDR_NSLOTS);
  for (let s = 0; s < nslots; s++) {
    const cc = cp + CA_CPU + s * CC_SIZE;
    verifyDeferred(h, cp, cc, s, bad);
    for (const [mf, rf] of [[CC_LOADED, CC_ROUNDS], [CC_PLOADED, CC_PROUNDS]]) {
      const m = w(h, cc + mf), r = w(h, cc + rf);
      if (m === 0) continue;
      if (!inBounds(h, m) || r < 0 || r > MAX_ROUNDS || m + MG_ROUNDS + r * 4 > h.mapped) {
        bad(`slot ${s} magazine ${hex(m)} with ${r} rounds is out of bounds`);
        continue;
      }
      for (let i = 0; i < r; i++) {
        checkRound(w(h, m + MG_ROUNDS + i * 4), `slot ${s} magazine ${hex(m)}`);
      }
    }
  }
}

/**
 * Checks slot record `cc`'s `CC_LAST` (magazine.ts): 0 in a debugged cache, which never defers;
 * a deferred free is the state byte of the loaded magazine's top round, a popped round that of
 * the round just past the top, each saying allocated (flagged).
 */
function verifyDeferred(
  h: HeapView,
  cp: number,
  cc: number,
  slot: number,
  bad: (msg: string) => void,
): void {
  const last = w(h, cc + CC_LAST);
  if (last === 0 || h.trust) return;
  if (w(h, cp + CA_DEBUG) !== 0) {
    bad(`slot ${slot}: CC_LAST ${last} in a debugged cache, which never defers`);
    return;
  }
  // The round the record names: the top (deferred) or the one past it (popped).
  const m = w(h, cc + CC_LOADED), i = w(h, cc + CC_ROUNDS) - (last > 0 ? 1 : 0);
  const buf = m !== 0 && i >= 0 && i < w(h, cc + CC_MAGSIZE) && inBounds(h, m)
    ? w(h, m + MG_ROUNDS + i * 4)
    : 0;
  const sb = buf > 0 && inBounds(h, buf) ? h.i32[(h.pagemap >> 2) + (buf >>> PAGE_SHIFT)] : 0;
  const idx = sb !== 0 && w(h, sb + SB_CACHE) === cp ? bufIndex(h, cp, sb, buf) : -1;
  const at = last > 0 ? last : ~last, what = last > 0 ? "deferred free" : "popped round";
  if (idx < 0 || sb + SB_STATE + idx !== at) {
    bad(`slot ${slot}: ${what} ${hex(at)} is not the state of its round ${hex(buf)}`);
  } else if (h.u8[at] !== BUF_ALLOC_DEFER) {
    bad(`slot ${slot}: ${what} ${hex(buf)} is not flagged allocated (state ${h.u8[at]})`);
  }
}
