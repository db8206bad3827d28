/**
 * Debugging without recompiling: the checked alloc and free of a debugged cache, the firewall,
 * and libumem's reports.
 *
 * Theory. A cache created on a heap with `UMEM_DEBUG` (or transaction logging) has a tag after
 * each buffer (buftag.ts) and no magazines, so every alloc and free comes here. Alloc takes a
 * buffer from its slab, checks its tag and (with `contents`) that the 0xdeadbeef it was left
 * with is intact, fills it with 0xbaddcafe (or constructs it), fills the slack after the
 * requested size with 0xbb, and records the transaction. Free checks everything before it
 * changes anything: that the address is a buffer of this cache, the tag's check word (a
 * duplicate free, a corrupt tag), the redzone word and the 0xbb bytes (an overrun), the size;
 * then destroys, fills with 0xdeadbeef, records, and gives the buffer back to its slab.
 *
 * A problem raises a {@linkcode HeapCorruptionError} whose message reads like libumem's report,
 * with the stacks of the buffer's last allocation and free when auditing. The heap is left as
 * it was (a corrupt buffer found at alloc is refilled and put back), so `verify()` passes after.
 *
 * The firewall gives each buffer of at least `firewall` bytes its own pages from the oversize
 * arena, the tail of the last page a checked redzone, and keeps freed ones in a quarantine ring
 * (filled with 0xdeadbeef, checked when they leave it) so they are not reused soon.
 *
 * Lock order: a cache's slab lock, then vmem's; the quarantine lock alone.
 *
 * @module
 */

import {
  allocCheck,
  BT_A_SLOT,
  BT_A_STACK,
  BT_A_TIME,
  BT_BXSTAT,
  BT_F_SLOT,
  BT_F_STACK,
  BT_F_TIME,
  BT_REDZONE,
  BT_SIZE,
  DBG_ABORT,
  DBG_AUDIT,
  DBG_CHECKNULL,
  DBG_CONTENTS,
  DBG_CTLOG,
  DBG_FAILLOG,
  DBG_MTBF,
  DBG_TXLOG,
  DBG_VERBOSE,
  decodeSize,
  encodeSize,
  fillPattern,
  findPatternBreak,
  FREE_PATTERN,
  freeCheck,
  REDZONE_BYTE,
  REDZONE_PATTERN,
  UNINIT_PATTERN,
} from "./buftag.ts";
import { hex, isoTime, OutOfMemoryError, UmemError, type UmemErrorKind } from "./errors.ts";
import {
  HDR_AUDIT_FRAMES,
  HDR_AUDIT_SAMPLE,
  HDR_CONTENTS_BYTES,
  HDR_CTLOG,
  HDR_DEBUG,
  HDR_ERRORS,
  HDR_FAILLOG,
  HDR_FLAGS,
  HDR_MAXVERIFY,
  HDR_MTBF,
  HDR_NSLOTS,
  HDR_OVERSIZE,
  HDR_QUARANTINE,
  HDR_STACKS,
  HDR_TXLOG,
  type HeapView,
  HF_NOFAIL,
  PAGE_SIZE,
  roundUp,
} from "./image.ts";
import { lock, unlock } from "./lock.ts";
import {
  CT_BUF,
  CT_CACHE,
  CT_DATA,
  CT_LEN,
  CT_SLOT,
  CT_TIME,
  FL_CACHE,
  FL_SIZE,
  FL_SLOT,
  FL_STACK,
  FL_TIME,
  LG_NREC,
  LG_RECORDS,
  LG_RECSIZE,
  now,
  ringNext,
  SLOT_ID_SHIFT,
  TX_BUF,
  TX_CACHE,
  TX_CACHE_ID,
  TX_OP,
  TX_SIZE,
  TX_STACK,
  TX_TIME,
  TXOP_ALLOC,
  TXOP_FREE,
} from "./log.ts";
import {
  cacheAlloc,
  CC_LOADED,
  CC_PLOADED,
  CC_PROUNDS,
  CC_ROUNDS,
  magazinePush,
  MG_NEXT,
  MG_ROUNDS,
  nofailOrThrow,
  reclaimAll,
  stateAddress,
} from "./magazine.ts";
import {
  BUF_ALLOC,
  BUF_ALLOC_TAGGED,
  BUF_CACHED,
  bufIndex,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_DEBUG,
  CA_DEPOT_FULL,
  CA_DEPOT_LOCK,
  CA_EMPTY,
  CA_FAILS,
  CA_FLAGS,
  CA_ID,
  CA_LOCK,
  CA_MAGROUNDS,
  CA_NCHUNKS,
  CA_TAGOFF,
  cacheName,
  CF_HASCTOR,
  CF_HASDTOR,
  CF_INTERNAL,
  CF_TAGSTATE,
  SB_BASE,
  SB_CACHE,
  SB_NEXT,
  SB_STATE,
  slabOf,
  throwDtorError,
} from "./slab.ts";
import {
  captureStack,
  captureStackDeferred,
  notePendingAt,
  readStack,
  setStackPlaceCheck,
  stackIdValid,
  withPreStack,
} from "./stack.ts";
import { hashFind, vmemAllocAddr, vmemFreeAddr, VS_END, VS_START } from "./vmem.ts";
import { sizeCache, UMEM_MAXBUF } from "./size_class.ts";

/** One transaction of an audit record, as a report prints it. */
export interface AuditTransaction {
  /** "alloc" or "free". */
  op: "alloc" | "free";
  /** The worker slot. */
  slot: number;
  /** Time, ms since the epoch. */
  time: number;
  /** The stack, one frame a line ("" without audit). */
  stack: string;
}

/**
 * A corruption or misuse of the heap found by debugging: which kind, at which buffer, in which
 * cache, and with auditing the buffer's last transactions. Thrown when `UMEM_DEBUG` says
 * `noabort` (or `nosignal`); otherwise the report is printed and the process aborted, as
 * libumem's.
 *
 * @example
 * ```ts
 * import { HeapCorruptionError, Heap } from "@umem/umem";
 * const heap = Heap.create({ size: 1 << 20, debug: "default,noabort" });
 * const p = heap.alloc(50);
 * heap.free(p, 50);
 * try {
 *   heap.free(p, 50);
 * } catch (e) {
 *   console.log(e instanceof HeapCorruptionError && e.kind); // "duplicate-free"
 * }
 * ```
 */
export class HeapCorruptionError extends UmemError {
  /** The cache's name ("" when the address is in none). */
  readonly cache: string;
  /** The address of the buffer's tag, libumem's bufctl (0 when none). */
  readonly bufctl: number;
  /** The buffer's last transactions, newest first (empty without audit). */
  readonly audit: AuditTransaction[];

  /**
   * Creates the error.
   *
   * @param kind the kind of corruption
   * @param message the whole report
   * @param address the buffer
   * @param cache the cache's name
   * @param bufctl the tag's address
   * @param audit the buffer's last transactions
   */
  constructor(
    kind: UmemErrorKind,
    message: string,
    address: number,
    cache: string,
    bufctl: number,
    audit: AuditTransaction[],
  ) {
    super(kind, message, address);
    this.name = "HeapCorruptionError";
    this.cache = cache;
    this.bufctl = bufctl;
    this.audit = audit;
  }
}

const w = (h: HeapView, a: number) => h.i32[a >> 2];
const setw = (h: HeapView, a: number, v: number) => {
  h.i32[a >> 2] = v;
};

/** The audit transactions of the buffer whose tag is at `tag`, newest first. */
export function auditOf(h: HeapView, tag: number): AuditTransaction[] {
  const out: AuditTransaction[] = [];
  const at = h.f64[(tag + BT_A_TIME) >> 3], ft = h.f64[(tag + BT_F_TIME) >> 3];
  const a: AuditTransaction | undefined = at > 0
    ? {
      op: "alloc",
      slot: w(h, tag + BT_A_SLOT),
      time: at,
      stack: readStack(h, w(h, tag + BT_A_STACK), tag + BT_A_STACK),
    }
    : undefined;
  const f: AuditTransaction | undefined = ft > 0
    ? {
      op: "free",
      slot: w(h, tag + BT_F_SLOT),
      time: ft,
      stack: readStack(h, w(h, tag + BT_F_STACK), tag + BT_F_STACK),
    }
    : undefined;
  if (a !== undefined && f !== undefined) out.push(...(ft >= at ? [f, a] : [a, f]));
  else if (a !== undefined) out.push(a);
  else if (f !== undefined) out.push(f);
  return out;
}

/** Formats one audit transaction as libumem prints a bufctl_audit. */
export function formatTransaction(buf: number, t: AuditTransaction): string {
  const frames = t.stack === "" ? "\t<no stack; enable UMEM_DEBUG=audit>" : t.stack.split("\n")
    .map((f) => `\t${f}`).join("\n");
  return `${t.op} of buffer ${hex(buf)}: thr=${t.slot} time=${isoTime(t.time)}\n${frames}`;
}

/**
 * Builds the report of a problem with buffer `buf` of cache `cp` and counts it. `category` is
 * libumem's category line; `detail` lines follow it.
 */
export function report(
  h: HeapView,
  kind: UmemErrorKind,
  category: string,
  detail: string[],
  buf: number,
  cp: number,
): HeapCorruptionError {
  const name = cp !== 0 ? cacheName(h, cp) : "";
  // The tag (umem's bufctl) of a debugged cache's buffer; its audit record with `audit`.
  const dbg = cp !== 0 ? w(h, cp + CA_DEBUG) : 0;
  const tag = dbg !== 0 && buf !== 0 ? buf + w(h, cp + CA_TAGOFF) : 0;
  const audit = tag !== 0 && tag < h.mapped && (dbg & DBG_AUDIT) !== 0 ? auditOf(h, tag) : [];
  const lines = [`umem allocator: ${category}`, ...detail];
  // No cache (a firewalled span, an address in none): said, not left blank.
  lines.push(`buffer=${hex(buf)}  bufctl=${hex(tag)}  cache: ${cp !== 0 ? name : "(none)"}`);
  if (audit.length > 0) {
    lines.push(`previous transaction on buffer ${hex(buf)}:`);
    for (const t of audit) lines.push(formatTransaction(buf, t));
  }
  lines.push("umem: heap corruption detected");
  // A walk that lists problems (verify) reports nothing: the count is of reports made.
  if (h.collecting === 0) Atomics.add(h.i32, HDR_ERRORS >> 2, 1);
  const e = new HeapCorruptionError(kind, lines.join("\n"), buf, name, tag, audit);
  const flags = w(h, HDR_DEBUG);
  if ((flags & DBG_ABORT) !== 0 && h.collecting === 0) {
    console.error(e.message);
    abortProcess();
  } else if ((flags & DBG_VERBOSE) !== 0) {
    console.error(e.message);
  }
  return e;
}

/**
 * Aborts the process, as libumem's `umem_panic` does after a report: `process.abort()` (Deno's
 * main thread, Bun, Node), else a SIGABRT to the process itself (a Deno worker, where
 * `process.abort` throws), the worker then blocked until the signal lands, at most
 * {@linkcode ABORT_WAIT_MS}, so that no code of the program's runs after the report. Returns
 * only when neither is possible; the caller then throws.
 */
function abortProcess(): void {
  const g = globalThis as {
    process?: { abort?: () => void };
    Deno?: { pid: number; kill(pid: number, signal: string): void };
  };
  try {
    g.process?.abort?.();
  } catch { /* a Deno worker: signal the process instead */ }
  try {
    if (g.Deno === undefined) return;
    g.Deno.kill(g.Deno.pid, "SIGABRT");
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ABORT_WAIT_MS);
  } catch { /* no way to abort here: the report is thrown */ }
}

/** How long a Deno worker waits for its own SIGABRT before it throws the report instead. */
const ABORT_WAIT_MS = 5000;

/**
 * Transactions from one audited transaction to the next at sample rate `rate` (above 1): drawn
 * from the geometric distribution of mean `rate`, as jemalloc draws its sample intervals, so
 * that a program repeating a pattern of allocations and frees is not sampled at the same point
 * of the pattern every time (a fixed count of 100 would only ever see the same transaction of a
 * pattern of 4).
 *
 * @param rate the mean interval (`audit=frames/rate`)
 * @param u a uniform number in [0, 1) (tests pass their own)
 * @returns the interval, 1 or more
 */
export function sampleInterval(rate: number, u: number = Math.random()): number {
  const k = 1 + Math.floor(Math.log(1 - u) / Math.log(1 - 1 / rate));
  return Math.min(k, 0x3fffffff);
}

/**
 * Records one transaction in the audit record and the transaction log. With a sample rate
 * (`audit=frames/rate`) one transaction in `rate` of each worker is audited, on average and at
 * random intervals (sampleInterval), as jemalloc samples its profile per thread: the audited
 * one gets the stack, the worker and the time. Any other clears its half of the audit record
 * (time 0: no transaction), so that a report never shows an older alloc or free of the buffer
 * as its last one; it reads no clock (`performance.now()` costs about 100 ns in Deno). The
 * count is the slot's `WS_AUDIT_LEFT`, which the debug fast path (debug_quick.ts) counts down
 * too: it serves the transactions that are not audited and leaves the audited one, at 1, to
 * this path.
 */
function record(
  h: HeapView,
  cp: number,
  buf: number,
  size: number,
  op: number,
  above: unknown,
): void {
  const flags = w(h, cp + CA_DEBUG);
  if ((flags & (DBG_AUDIT | DBG_TXLOG)) === 0) return;
  const sample = w(h, HDR_AUDIT_SAMPLE), left = h.auditLeft;
  let take = true;
  if (sample > 1 && left !== 0) {
    take = h.i32[left] <= 1;
    h.i32[left] = take ? sampleInterval(sample) : h.i32[left] - 1;
  }
  const log = w(h, HDR_TXLOG), logging = (flags & DBG_TXLOG) !== 0 && log !== 0;
  const pre = h.preStack;
  h.preStack = 0;
  const stack = !take || w(h, HDR_STACKS) === 0
    ? 0
    : pre !== 0
    ? pre
    : h.entryStack !== 0
    ? h.entryStack
    : captureStackDeferred(h, above);
  const t = take || logging ? now() : 0;
  if ((flags & DBG_AUDIT) !== 0) {
    const tag = buf + w(h, cp + CA_TAGOFF);
    const o = op === TXOP_ALLOC ? 0 : BT_F_STACK - BT_A_STACK;
    setw(h, tag + BT_A_STACK + o, stack);
    if (stack < 0) notePendingAt(h, stack, tag + BT_A_STACK + o);
    setw(h, tag + BT_A_SLOT + o, h.slot);
    h.f64[(tag + BT_A_TIME + o) >> 3] = take ? t : 0;
  }
  if (logging) {
    const r = ringNext(h, log);
    setw(h, r + TX_OP, op | (h.slot << 8));
    setw(h, r + TX_BUF, buf);
    setw(h, r + TX_CACHE, cp);
    setw(h, r + TX_CACHE_ID, w(h, cp + CA_ID));
    setw(h, r + TX_SIZE, size);
    h.f64[(r + TX_TIME) >> 3] = t;
    setw(h, r + TX_STACK, stack);
    if (stack < 0) notePendingAt(h, stack, r + TX_STACK);
  }
}

/**
 * Whether `at` is still a place where `record` writes a stack id: a stack word of the audit
 * record of a buffer of an audited cache, or of a record of the transaction log. stack.ts asks
 * before it gives a noted place a stack's interned id (a buffer's slab may have been given back
 * since, and its memory be anyone's).
 */
function isStackPlace(h: HeapView, at: number): boolean {
  const log = w(h, HDR_TXLOG);
  if (log > 0) {
    const first = log + LG_RECORDS, size = w(h, log + LG_RECSIZE);
    if (at >= first && at < first + w(h, log + LG_NREC) * size) {
      return (at - first) % size === TX_STACK;
    }
  }
  const sb = slabOf(h, at);
  if (sb <= 0 || sb >= h.mapped) return false;
  const cp = w(h, sb + SB_CACHE);
  if (cp <= 0 || cp >= h.mapped || (w(h, cp + CA_DEBUG) & DBG_AUDIT) === 0) return false;
  const tag = startOf(h, cp, sb, at) + w(h, cp + CA_TAGOFF);
  return at === tag + BT_A_STACK || at === tag + BT_F_STACK;
}
setStackPlaceCheck(isStackPlace);

/** Records a failed allocation in the fail log. */
export function logFailure(h: HeapView, cp: number, size: number): void {
  const log = w(h, HDR_FAILLOG);
  if ((w(h, HDR_DEBUG) & DBG_FAILLOG) === 0 || log === 0) return;
  const r = ringNext(h, log);
  setw(h, r + FL_CACHE, cp);
  setw(h, r + FL_SIZE, size);
  h.f64[(r + FL_TIME) >> 3] = now();
  setw(h, r + FL_SLOT, h.slot | (cp !== 0 ? w(h, cp + CA_ID) << SLOT_ID_SHIFT : 0));
  const st = w(h, HDR_STACKS);
  setw(h, r + FL_STACK, st !== 0 ? captureStack(h, st, w(h, HDR_AUDIT_FRAMES)) : 0);
}

/** Bytes of a freed buffer the contents check covers. */
function verifyEnd(h: HeapView, cp: number): number {
  const tagOff = w(h, cp + CA_TAGOFF), max = w(h, HDR_MAXVERIFY);
  return max > 0 ? Math.min(tagOff, roundUp(max, 4)) : tagOff;
}

/** libumem's detail line of a write after free: where, and what replaced the pattern. */
function modified(off: number, expected: number, found: number): string {
  return `modification occurred at offset ${hex(off)} (${hex(expected)} replaced by ${hex(found)})`;
}

/** The report of a tag whose check word is neither state's. */
function tagCorrupted(h: HeapView, bx: number, buf: number, cp: number): HeapCorruptionError {
  return report(
    h,
    "boundary-tag-corrupted",
    "boundary tag corrupted",
    [
      `bxstat ${hex(bx)} is neither the free nor the allocated check word of this buffer`,
    ],
    buf,
    cp,
  );
}

/**
 * The quick form of {@linkcode checkFreeBuffer}: true when the free buffer's check word, redzone
 * word and (with `contents`) pattern are as they should be. It builds nothing and takes no lock,
 * so it may run while the cache's locks are held.
 */
function freeLooksSound(h: HeapView, cp: number, buf: number): boolean {
  const tag = buf + w(h, cp + CA_TAGOFF);
  return w(h, tag + BT_BXSTAT) === freeCheck(cp, buf) &&
    w(h, tag + BT_REDZONE) === REDZONE_PATTERN &&
    ((w(h, cp + CA_DEBUG) & DBG_CONTENTS) === 0 ||
      findPatternBreak(h, buf, buf + verifyEnd(h, cp), FREE_PATTERN) < 0);
}

/**
 * Checks a free buffer's tag and pattern; returns the problem, or undefined. Used when a buffer
 * is handed out, by `verify()` and when a slab is reaped. The verdict is freeLooksSound's; only
 * when it says no are the checks made again, to say which failed.
 */
export function checkFreeBuffer(
  h: HeapView,
  cp: number,
  buf: number,
): HeapCorruptionError | undefined {
  if (freeLooksSound(h, cp, buf)) return undefined;
  // Which check failed, in the order freeLooksSound makes them.
  const tag = buf + w(h, cp + CA_TAGOFF), flags = w(h, cp + CA_DEBUG);
  const bx = w(h, tag + BT_BXSTAT);
  if (bx !== freeCheck(cp, buf)) {
    return tagCorrupted(h, bx, buf, cp);
  }
  if (w(h, tag + BT_REDZONE) !== REDZONE_PATTERN) {
    return report(
      h,
      "modified-after-free",
      "buffer modified after being freed",
      [
        modified(tag - buf, REDZONE_PATTERN, w(h, tag + BT_REDZONE)),
      ],
      buf,
      cp,
    );
  }
  if ((flags & DBG_CONTENTS) !== 0) {
    const off = findPatternBreak(h, buf, buf + verifyEnd(h, cp), FREE_PATTERN);
    if (off >= 0) {
      return report(
        h,
        "modified-after-free",
        "buffer modified after being freed",
        [
          modified(off, FREE_PATTERN, w(h, buf + off)),
        ],
        buf,
        cp,
      );
    }
  }
  return undefined;
}

/**
 * The quick form of {@linkcode checkAllocatedBuffer} for the free path: true when the tag and
 * the redzone are as they should be. Only when it says no does the free build a report.
 */
function allocatedLooksSound(h: HeapView, cp: number, buf: number): boolean {
  const i32 = h.i32, tagOff = i32[(cp + CA_TAGOFF) >> 2], tag = buf + tagOff;
  if (
    i32[(tag + BT_BXSTAT) >> 2] !== allocCheck(cp, buf) ||
    i32[(tag + BT_REDZONE) >> 2] !== REDZONE_PATTERN
  ) return false;
  if ((i32[(cp + CA_DEBUG) >> 2] & DBG_AUDIT) !== 0) {
    const slot = i32[(tag + BT_A_SLOT) >> 2];
    if (slot < 0 || slot >= i32[HDR_NSLOTS >> 2]) return false;
  }
  const size = decodeSize(i32[(tag + BT_SIZE) >> 2]);
  if (size < 0 || size > tagOff) return false;
  const u8 = h.u8;
  for (let i = buf + size; i < tag; i++) if (u8[i] !== REDZONE_BYTE) return false;
  return true;
}

/** Checks an allocated buffer's tag and redzone; returns the problem, or undefined. */
export function checkAllocatedBuffer(
  h: HeapView,
  cp: number,
  buf: number,
): HeapCorruptionError | undefined {
  const tagOff = w(h, cp + CA_TAGOFF), tag = buf + tagOff;
  const bx = w(h, tag + BT_BXSTAT);
  if (bx === freeCheck(cp, buf)) {
    return report(h, "duplicate-free", "duplicate free: buffer freed twice", [], buf, cp);
  }
  if (w(h, tag + BT_REDZONE) !== REDZONE_PATTERN) {
    return report(
      h,
      "redzone-violation",
      "redzone violation: write past end of buffer",
      [
        `redzone word at offset ${hex(tagOff)} is ${hex(w(h, tag + BT_REDZONE))}, expected ${
          hex(REDZONE_PATTERN)
        }`,
      ],
      buf,
      cp,
    );
  }
  if (bx !== allocCheck(cp, buf)) {
    return tagCorrupted(h, bx, buf, cp);
  }
  if ((w(h, cp + CA_DEBUG) & DBG_AUDIT) !== 0) {
    const slot = w(h, tag + BT_A_SLOT), stack = w(h, tag + BT_A_STACK);
    if (
      slot < 0 || slot >= w(h, HDR_NSLOTS) || !stackIdValid(h, stack)
    ) {
      return report(
        h,
        "bufctl-corrupted",
        "bufctl corrupted",
        [
          `audit record at ${hex(tag + BT_A_STACK)} names worker ${slot} and stack ${hex(stack)}`,
        ],
        buf,
        cp,
      );
    }
  }
  const size = decodeSize(w(h, tag + BT_SIZE));
  if (size < 0 || size > tagOff) {
    return report(
      h,
      "boundary-tag-corrupted",
      "boundary tag corrupted",
      [
        `size word ${hex(w(h, tag + BT_SIZE))} does not decode to a size`,
      ],
      buf,
      cp,
    );
  }
  for (let i = buf + size; i < tag; i++) {
    if (h.u8[i] !== REDZONE_BYTE) {
      return report(
        h,
        "redzone-violation",
        "redzone violation: write past end of buffer",
        [
          `byte at offset ${hex(i - buf)} is ${hex(h.u8[i])}, expected ${
            hex(REDZONE_BYTE)
          } (buffer of ${size} bytes)`,
        ],
        buf,
        cp,
      );
    }
  }
  return undefined;
}

/**
 * Allocates from a debugged cache: `size` is what was asked (the buffer size for a cache
 * alloc). Takes a buffer through the magazine layer (debugged caches keep their magazines, as
 * libumem's do, but the buffers in them are free, not constructed), checks its tag and its
 * 0xdeadbeef, fills it with 0xbaddcafe or constructs it, lays the redzone, records.
 * @throws {HeapCorruptionError} when the buffer taken was modified after it was freed
 * @throws {OutOfMemoryError} when no memory can be had
 */
export function debugAlloc(h: HeapView, cp: number, size: number, above: unknown): number {
  if ((w(h, HDR_DEBUG) & DBG_MTBF) !== 0) injectFailure(h, cp, size);
  return debugHandOut(h, cp, cacheAlloc(h, cp), size, above);
}

/**
 * `UMEM_DEBUG=mtbf=n`: fails about one allocation in `n`, at random, as libumem's debug layer
 * injects failures (it takes the time modulo `n`): the failure is logged in the fail log and
 * counted in the cache's failures, and the allocation fails as one that found no memory does
 * (`checknull` reports it; a `nofail` heap is never failed, as libumem spares `UMEM_NOFAIL`).
 * Nothing is taken from the cache, so the heap is as it was. `cp` is 0 for a firewalled
 * allocation.
 * @throws {OutOfMemoryError} when the allocation is failed
 */
function injectFailure(h: HeapView, cp: number, size: number): void {
  const n = w(h, HDR_MTBF);
  if ((w(h, HDR_FLAGS) & HF_NOFAIL) !== 0 || Math.random() * n >= 1) return;
  logFailure(h, cp, size);
  if (cp !== 0) h.f64[(cp + CA_FAILS) >> 3]++;
  const fn = cp !== 0 ? `umem_cache_alloc(${cacheName(h, cp)})` : "umem_alloc";
  nofailOrThrow(
    h,
    () =>
      new OutOfMemoryError(
        `${fn}: ${size}-byte allocation failed on purpose (UMEM_DEBUG=mtbf=${n})`,
      ),
  );
}

/**
 * `UMEM_DEBUG=checknull`, before a failed allocation fails (magazine.ts's `nofailOrThrow`, as
 * libumem's `umem_alloc_retry` checks `UMF_CHECKNULL`): libumem's "umem: out of heap space" on
 * stderr, with what failed, then the process aborted; with `noabort`, only printed with
 * `verbose`, and the allocation fails as it would have.
 *
 * @param h the heap handle
 * @param fail what the allocation throws
 */
export function checkNull(h: HeapView, fail: Error): void {
  const flags = w(h, HDR_DEBUG);
  if ((flags & DBG_CHECKNULL) === 0) return;
  if ((flags & (DBG_ABORT | DBG_VERBOSE)) !== 0) {
    console.error(`umem: out of heap space\n${fail.message}`);
  }
  if ((flags & DBG_ABORT) !== 0) abortProcess();
}

/**
 * Checks the free buffer `buf` that an alloc took from cache `cp`, then hands it out: fills it
 * with 0xbaddcafe or constructs it, lays the redzone, records. A buffer found modified is made
 * free and whole again and given back (so the heap stays consistent), then reported. The fast
 * path (debug_quick.ts) comes here on any doubt, so that the report is made in one place.
 * @throws {HeapCorruptionError} what was wrong with the buffer
 */
export function debugHandOut(
  h: HeapView,
  cp: number,
  buf: number,
  size: number,
  above: unknown,
): number {
  const bad = checkFreeBuffer(h, cp, buf);
  if (bad !== undefined) {
    giveBack(h, cp, buf);
    throw bad;
  }
  const flags = w(h, cp + CA_DEBUG), tag = buf + w(h, cp + CA_TAGOFF);
  const ctor = (w(h, cp + CA_FLAGS) & CF_HASCTOR) !== 0
    ? h.callbacks[w(h, cp + CA_ID)]?.ctor
    : undefined;
  if ((flags & DBG_CONTENTS) !== 0 && ctor === undefined) fillWords(h, buf, tag, UNINIT_PATTERN);
  setw(h, tag + BT_SIZE, encodeSize(size));
  for (let i = buf + size; i < tag; i++) h.u8[i] = REDZONE_BYTE;
  setw(h, tag + BT_BXSTAT, allocCheck(cp, buf));
  // (The magazine layer set the state byte to allocated; a size class's says tagged.)
  if (!h.trust && isTagState(h, cp)) h.u8[stateAddress(h, cp, buf)] = BUF_ALLOC_TAGGED;
  // (The constructor's own transactions capture their own stacks: withPreStack's 0.)
  let ok: boolean | void = true;
  try {
    if (ctor !== undefined) ok = withPreStack(h, 0, () => ctor(h, buf));
  } catch (e) {
    giveBack(h, cp, buf); // a constructor that throws allocates nothing, as one that refuses
    throw e;
  }
  if (ok === false) {
    giveBack(h, cp, buf);
    throw new UmemError(
      "out-of-memory",
      `umem_cache_alloc(${
        cacheName(h, cp)
      }): constructor refused the buffer; nothing was allocated`,
    );
  }
  if ((flags & (DBG_AUDIT | DBG_TXLOG)) !== 0) record(h, cp, buf, size, TXOP_ALLOC, above);
  return buf;
}

/** Fills `[from, to)` with a 32-bit pattern: a plain loop, cheaper than `fill` for a buffer. */
function fillWords(h: HeapView, from: number, to: number, pattern: number): void {
  const i32 = h.i32;
  for (let i = from >> 2, e = to >> 2; i < e; i++) i32[i] = pattern;
}

/** Whether debugged cache `cp` is a size class, whose state bytes say only "out" (slab.ts). */
function isTagState(h: HeapView, cp: number): boolean {
  return (w(h, cp + CA_FLAGS) & CF_TAGSTATE) !== 0;
}

/** The state byte of a buffer of debugged cache `cp` that goes to a magazine. */
function cachedState(h: HeapView, cp: number): number {
  return isTagState(h, cp) ? BUF_ALLOC_TAGGED : BUF_CACHED;
}

/**
 * Gives a buffer just taken from the magazine layer back to it, untouched by the caller: its tag
 * and pattern back to the free state, its state byte to cached, and a push (never a deferred
 * free: a debugged cache does not defer, magazine.ts).
 */
function giveBack(h: HeapView, cp: number, buf: number): void {
  const tag = buf + w(h, cp + CA_TAGOFF);
  if ((w(h, cp + CA_DEBUG) & DBG_CONTENTS) !== 0) fillWords(h, buf, tag, FREE_PATTERN);
  setw(h, tag + BT_REDZONE, REDZONE_PATTERN);
  setw(h, tag + BT_BXSTAT, freeCheck(cp, buf));
  if (!h.trust) h.u8[stateAddress(h, cp, buf)] = cachedState(h, cp);
  magazinePush(h, cp, buf);
}

/**
 * Frees to a debugged cache. `size` is the size given back (-1 for a cache free). Everything is
 * checked before anything changes; then the buffer is destroyed, logged, filled with 0xdeadbeef,
 * recorded, and goes to the magazine layer.
 * @throws {HeapCorruptionError} naming the kind of misuse or corruption
 */
export function debugFree(
  h: HeapView,
  cp: number,
  buf: number,
  size: number,
  fn: string,
  above: unknown,
): void {
  // Another worker may have grown the heap since this one last looked: the buffer, or only its
  // tag (the fast path saw the buffer below its views and its tag past them), may lie past the
  // views, and a word read there is undefined.
  h.sync();
  if ((buf | 0) !== buf || buf <= 0 || buf >= h.mapped) {
    throw report(
      h,
      "bad-free",
      "invalid free: buffer not in cache",
      [
        `${fn}(${cacheName(h, cp)}): ${String(buf)} is not an address in the heap`,
      ],
      typeof buf === "number" && Number.isInteger(buf) ? buf : 0,
      0,
    );
  }
  const sb = slabOf(h, buf);
  if (sb === 0) {
    // A firewalled or oversize buffer freed with a size of the size classes: a wrong size.
    const span = size > 0 ? spanAt(h, buf) : undefined;
    if (span !== undefined) throw wrongSizeSpan(h, buf, size, span);
    throw report(
      h,
      "bad-free",
      "invalid free: buffer not in cache",
      [
        `${fn}(${cacheName(h, cp)}): ${hex(buf)} is not in any slab`,
      ],
      buf,
      0,
    );
  }
  const owner = w(h, sb + SB_CACHE);
  if (owner !== cp && bufIndex(h, owner, sb, buf) < 0) {
    throw report(
      h,
      "bad-free",
      "invalid free: buffer not in cache",
      [
        `${fn}(${cacheName(h, cp)}): ${hex(buf)} is not the start of a buffer of ${
          cacheName(h, owner)
        }`,
      ],
      buf,
      0,
    );
  }
  if (owner !== cp) throw wrongOwner(h, cp, owner, sb, buf, size);
  const idx = bufIndex(h, cp, sb, buf);
  if (idx < 0) {
    throw report(
      h,
      "bad-free",
      `bad free: free address (${hex(buf)}) != alloc address (${hex(startOf(h, cp, sb, buf))})`,
      [],
      startOf(h, cp, sb, buf),
      cp,
    );
  }
  if (!allocatedLooksSound(h, cp, buf)) {
    throw checkAllocatedBuffer(h, cp, buf) ??
      report(h, "boundary-tag-corrupted", "boundary tag corrupted", [], buf, cp);
  }
  const st = h.u8[sb + SB_STATE + idx];
  if (st !== BUF_ALLOC && st !== BUF_ALLOC_TAGGED) {
    throw report(h, "duplicate-free", "duplicate free: buffer freed twice", [], buf, cp);
  }
  const tag = buf + w(h, cp + CA_TAGOFF);
  const asked = decodeSize(w(h, tag + BT_SIZE));
  if (size >= 0 && asked !== size) {
    throw report(
      h,
      "wrong-size",
      `bad free: free size (${size}) != alloc size (${asked})`,
      [],
      buf,
      cp,
    );
  }
  // Sound: destroy, log the contents, record, fill, and give it to the magazine layer.
  const flags = w(h, cp + CA_DEBUG);
  const dtor = (w(h, cp + CA_FLAGS) & CF_HASDTOR) !== 0
    ? h.callbacks[w(h, cp + CA_ID)]?.dtor
    : undefined;
  if (dtor !== undefined) {
    // A destructor that throws stops nothing (slab.ts's destructAndFree): the free goes on and
    // the error comes once it is done.
    try {
      withPreStack(h, 0, () => dtor(h, buf));
    } catch (e) {
      if (!h.dtorFailed) {
        h.dtorFailed = true;
        h.dtorError = e;
      }
    }
  }
  if ((flags & DBG_CTLOG) !== 0) logContents(h, cp, buf, asked);
  if ((flags & (DBG_AUDIT | DBG_TXLOG)) !== 0) record(h, cp, buf, asked, TXOP_FREE, above);
  if ((flags & DBG_CONTENTS) !== 0) fillWords(h, buf, tag, FREE_PATTERN);
  setw(h, tag + BT_BXSTAT, freeCheck(cp, buf));
  if (!h.trust) h.u8[sb + SB_STATE + idx] = cachedState(h, cp);
  magazinePush(h, cp, buf);
  throwDtorError(h);
}

/** The report for a free to `cp` of a buffer that cache `owner` holds. */
function wrongOwner(
  h: HeapView,
  cp: number,
  owner: number,
  sb: number,
  buf: number,
  size: number,
): HeapCorruptionError {
  const internal = (w(h, owner + CA_FLAGS) & w(h, cp + CA_FLAGS) & CF_INTERNAL) !== 0;
  if (internal && size >= 0) {
    const start = startOf(h, owner, sb, buf);
    const tagged = w(h, owner + CA_DEBUG) !== 0 && start === buf;
    const asked = tagged ? decodeSize(w(h, buf + w(h, owner + CA_TAGOFF) + BT_SIZE)) : -1;
    return report(
      h,
      "wrong-size",
      `bad free: free size (${size}) != alloc size (${
        asked < 0 ? w(h, owner + CA_BUFSIZE) : asked
      })`,
      [],
      buf,
      owner,
    );
  }
  return report(
    h,
    "wrong-cache",
    "buffer freed to wrong cache",
    [
      `buffer was allocated from ${cacheName(h, owner)},`,
      `caller attempting free to ${cacheName(h, cp)}.`,
    ],
    buf,
    owner,
  );
}

/** Saves the first bytes of a buffer being freed in the contents log. */
function logContents(h: HeapView, cp: number, buf: number, size: number): void {
  const clog = w(h, HDR_CTLOG);
  if (clog === 0) return;
  const r = ringNext(h, clog);
  const n = Math.min(size, w(h, HDR_CONTENTS_BYTES));
  setw(h, r + CT_BUF, buf);
  setw(h, r + CT_CACHE, cp);
  h.f64[(r + CT_TIME) >> 3] = now();
  setw(h, r + CT_SLOT, h.slot | (w(h, cp + CA_ID) << SLOT_ID_SHIFT));
  setw(h, r + CT_LEN, n);
  h.u8.copyWithin(r + CT_DATA, buf, buf + n);
}

/** The start of the buffer of slab `sb` that contains `addr`. */
function startOf(h: HeapView, cp: number, sb: number, addr: number): number {
  const base = w(h, sb + SB_BASE), chunk = w(h, cp + CA_CHUNK);
  return addr < base ? base : base + Math.floor((addr - base) / chunk) * chunk;
}

// ---- the firewall ----

/** Quarantine ring: lock, next slot, entries. */
export const QR_LOCK = 0;
/** Next entry to replace. */
export const QR_NEXT = 4;
/** Entries (address, bytes). */
export const QR_ENTRIES = 8;
/** Entries in the quarantine. */
export const QR_N = 64;
/** Bytes of the quarantine ring. */
export const QR_BYTES = QR_ENTRIES + QR_N * 8;
/** Check word at the end of a firewalled span: the address XORed with this. */
const FW_MAGIC = 0x0f12ea11;

/** Bytes of the span a firewalled buffer of `size` bytes takes: its pages and one more. */
export function firewallBytes(size: number): number {
  return roundUp(size, PAGE_SIZE) + PAGE_SIZE;
}

/**
 * Allocates `size` bytes behind a firewall: own pages from the oversize arena, the rest of
 * the span a redzone of 0xbb ending with the size and a check word.
 */
export function firewallAlloc(h: HeapView, size: number): number {
  if ((w(h, HDR_DEBUG) & DBG_MTBF) !== 0) injectFailure(h, 0, size);
  const bytes = firewallBytes(size), over = w(h, HDR_OVERSIZE);
  let p = vmemAllocAddr(h, over, bytes);
  while (p === 0) {
    reclaimAll(h);
    flushQuarantine(h);
    p = vmemAllocAddr(h, over, bytes);
    if (p === 0) {
      logFailure(h, 0, size);
      nofailOrThrow(
        h,
        () =>
          new UmemError(
            "out-of-memory",
            `umem_alloc: no memory for a firewalled ${size}-byte buffer`,
          ),
      );
    }
  }
  // The span may lie past this handle's views (another worker grew the heap, or the arena just
  // did): a write there through the old views would be dropped without a word.
  h.sync();
  fillPattern(h, p, roundUp(p + size, 4) & ~3, UNINIT_PATTERN);
  h.u8.fill(REDZONE_BYTE, p + size, p + bytes - 8);
  setw(h, p + bytes - 8, encodeSize(size));
  setw(h, p + bytes - 4, p ^ FW_MAGIC);
  return p;
}

/** What the oversize arena holds at an address: a firewalled buffer's size, or a span's bytes. */
interface SpanAt {
  /** The size a firewalled buffer was asked with, or the bytes of an oversize span. */
  size: number;
  /** Whether it is a firewalled buffer. */
  firewalled: boolean;
  /** Whether it is a firewalled buffer already freed (in quarantine). */
  freed: boolean;
}

/**
 * What starts at `p` in the oversize arena (a free whose size sent it the wrong way looks here):
 * a firewalled buffer (its check word at its span's end), an oversize span, or nothing.
 */
function spanAt(h: HeapView, p: number): SpanAt | undefined {
  if ((p | 0) !== p || p <= 0 || p >= h.mapped) return undefined;
  const seg = hashFind(h, w(h, HDR_OVERSIZE), p);
  if (seg === 0) return undefined;
  const bytes = w(h, seg + VS_END) - w(h, seg + VS_START);
  const check = bytes >= 8 && p + bytes <= h.mapped ? w(h, p + bytes - 4) : 0;
  if (check === (p ^ FW_MAGIC) || check === (p ^ FW_MAGIC ^ -1)) {
    const freed = check !== (p ^ FW_MAGIC);
    return { size: decodeSize(w(h, p + bytes - 8)), firewalled: true, freed };
  }
  return { size: bytes, firewalled: false, freed: false };
}

/**
 * The size asked for of the allocated firewalled buffer whose span is `[p, p + bytes)`, or -1
 * when the span is not one (an oversize allocation, or a firewalled buffer in quarantine):
 * `findleaks` scans and counts those bytes, not the span's redzone, size and check words.
 *
 * @param h the heap
 * @param p the span's first byte
 * @param bytes the span's length
 * @returns the size, or -1
 */
export function firewalledSize(h: HeapView, p: number, bytes: number): number {
  if (bytes < 8 || p + bytes > h.mapped || w(h, p + bytes - 4) !== (p ^ FW_MAGIC)) return -1;
  const size = decodeSize(w(h, p + bytes - 8));
  return size >= 0 && size <= bytes - 8 ? size : -1;
}

/**
 * Whether a block past the size classes starting at `p` is live: a span of umem_oversize
 * allocated there, and, when firewalled, not in quarantine (`libc`'s realloc and usableSize ask,
 * for the header of a freed block may outlive its free).
 *
 * @param h the heap
 * @param p the block's first byte
 * @returns whether it is a live allocation
 */
export function bigBlockLive(h: HeapView, p: number): boolean {
  const span = spanAt(h, p);
  return span !== undefined && !span.freed;
}

/**
 * The report of a free of `size` bytes at `p`, where `span` says what was allocated there: a
 * duplicate free when it is a firewalled buffer already freed, else a wrong size.
 */
function wrongSizeSpan(h: HeapView, p: number, size: number, span: SpanAt): HeapCorruptionError {
  if (span.freed) {
    return report(
      h,
      "duplicate-free",
      "duplicate free: buffer freed twice",
      [`firewalled buffer of ${span.size} bytes at ${hex(p)}, in quarantine (freed with ${size})`],
      p,
      0,
    );
  }
  return report(
    h,
    "wrong-size",
    `bad free: free size (${size}) != alloc size (${span.size})`,
    span.firewalled ? [] : [
      `${hex(p)} is a span of ${span.size} bytes of umem_oversize (an allocation past the ` +
      `size classes, in whole pages)`,
    ],
    p,
    0,
  );
}

/**
 * A debugged heap's free of `size` bytes past the size classes: a buffer of the size classes or
 * a firewalled one freed with that size is a wrong size, told as such; else `free` (the
 * oversize arena's), whose refusal is reported as every other mistake (it aborts but with
 * `noabort`).
 * @throws {HeapCorruptionError} naming the mistake
 */
export function oversizeFreeDebug(h: HeapView, p: number, size: number, free: () => void): void {
  h.sync();
  if (slabOf(h, p) !== 0) {
    return debugFree(h, sizeCache(h, UMEM_MAXBUF), p, size, "umem_free", oversizeFreeDebug);
  }
  const span = spanAt(h, p);
  if (span?.firewalled === true) throw wrongSizeSpan(h, p, size, span);
  try {
    free();
  } catch (e) {
    if (!(e instanceof UmemError) || e instanceof HeapCorruptionError) throw e;
    if (e.kind === "wrong-size" && span !== undefined) throw wrongSizeSpan(h, p, size, span);
    throw report(
      h,
      e.kind,
      e.kind === "duplicate-free"
        ? "duplicate free: buffer freed twice"
        : "invalid free: buffer not in cache",
      [e.message],
      p,
      0,
    );
  }
}

/**
 * Frees a firewalled buffer: checks its redzone, fills it with 0xdeadbeef and puts it in
 * quarantine; the buffer it pushes out is checked and given back to the arena.
 * @throws {HeapCorruptionError} for a redzone violation, a wrong size or a duplicate free
 */
export function firewallFree(h: HeapView, p: number, size: number): void {
  // A buffer of a slab freed with a size at or past the firewall's: debugFree, as a free to the
  // size class of that size, tells a wrong size (a size class's buffer) or a wrong cache.
  if (slabOf(h, p) !== 0) {
    return debugFree(
      h,
      sizeCache(h, Math.min(size, UMEM_MAXBUF)),
      p,
      size,
      "umem_free",
      firewallFree,
    );
  }
  const bytes = firewallBytes(size);
  if ((p | 0) !== p || p <= 0 || p + bytes > h.mapped || w(h, p + bytes - 4) !== (p ^ FW_MAGIC)) {
    const was = p > 0 && p + bytes <= h.mapped && w(h, p + bytes - 4) === (p ^ FW_MAGIC ^ -1);
    const span = was ? undefined : spanAt(h, p);
    if (span !== undefined) throw wrongSizeSpan(h, p, size, span);
    throw report(
      h,
      was ? "duplicate-free" : "bad-free",
      was ? "duplicate free: buffer freed twice" : "invalid free: buffer not in cache",
      [`firewalled buffer of ${size} bytes at ${hex(p)} not found (wrong address or size?)`],
      p,
      0,
    );
  }
  const asked = decodeSize(w(h, p + bytes - 8));
  if (asked !== size) {
    throw report(
      h,
      "wrong-size",
      `bad free: free size (${size}) != alloc size (${asked})`,
      [],
      p,
      0,
    );
  }
  for (let i = p + size; i < p + bytes - 8; i++) {
    if (h.u8[i] !== REDZONE_BYTE) {
      throw report(
        h,
        "redzone-violation",
        "redzone violation: write past end of buffer",
        [
          `byte at offset ${hex(i - p)} is ${hex(h.u8[i])}, expected ${
            hex(REDZONE_BYTE)
          } (firewalled buffer of ${size} bytes)`,
        ],
        p,
        0,
      );
    }
  }
  fillPattern(h, p, roundUp(p + size, 4), FREE_PATTERN);
  setw(h, p + bytes - 4, p ^ FW_MAGIC ^ -1);
  const q = w(h, HDR_QUARANTINE);
  let out = 0, outBytes = 0;
  lock(h, q + QR_LOCK);
  try {
    const i = w(h, q + QR_NEXT);
    out = w(h, q + QR_ENTRIES + i * 8);
    outBytes = w(h, q + QR_ENTRIES + i * 8 + 4);
    setw(h, q + QR_ENTRIES + i * 8, p);
    setw(h, q + QR_ENTRIES + i * 8 + 4, bytes);
    setw(h, q + QR_NEXT, (i + 1) % QR_N);
  } finally {
    unlock(h, q + QR_LOCK);
  }
  if (out !== 0) releaseQuarantined(h, out, outBytes);
}

function releaseQuarantined(h: HeapView, p: number, bytes: number): void {
  const fault = quarantineFault(h, p, bytes);
  vmemFreeAddr(h, w(h, HDR_OVERSIZE), p, bytes);
  if (fault !== undefined) {
    const [kind, headline, detail] = fault;
    throw report(
      h,
      kind,
      headline,
      [
        detail,
        `(firewalled buffer of ${
          decodeSize(w(h, p + bytes - 8))
        } bytes, found as it left quarantine)`,
      ],
      p,
      0,
    );
  }
}

/**
 * What is wrong with quarantined firewalled buffer `p`, its span `bytes` long, or undefined
 * when it is as its free left it: the encoded size and the check word at the span's end
 * (boundary tag corrupted), 0xdeadbeef over the buffer (modified after being freed), and the
 * 0xbb bytes from there to the size word (a write past the end while it waited). The kind,
 * the report's headline and its detail.
 */
function quarantineFault(
  h: HeapView,
  p: number,
  bytes: number,
): [UmemErrorKind, string, string] | undefined {
  const size = decodeSize(w(h, p + bytes - 8)), check = w(h, p + bytes - 4);
  if (size < 0 || size > bytes - 8 || check !== (p ^ FW_MAGIC ^ -1)) {
    return [
      "boundary-tag-corrupted",
      "boundary tag corrupted",
      `size word ${hex(w(h, p + bytes - 8))}, check word ${hex(check)} of firewalled buffer ${
        hex(p)
      } in quarantine (expected ${hex(p ^ FW_MAGIC ^ -1)})`,
    ];
  }
  const end = roundUp(p + size, 4), off = findPatternBreak(h, p, end, FREE_PATTERN);
  if (off >= 0) {
    return [
      "modified-after-free",
      "buffer modified after being freed",
      modified(off, FREE_PATTERN, w(h, p + off)),
    ];
  }
  for (let i = end; i < p + bytes - 8; i++) {
    if (h.u8[i] !== REDZONE_BYTE) {
      return [
        "redzone-violation",
        "redzone violation: write past end of buffer",
        `byte at offset ${hex(i - p)} is ${hex(h.u8[i])}, expected ${
          hex(REDZONE_BYTE)
        } (firewalled buffer in quarantine)`,
      ];
    }
  }
  return undefined;
}

/** Gives every quarantined buffer back (under memory pressure, and at reap). */
export function flushQuarantine(h: HeapView): void {
  const q = w(h, HDR_QUARANTINE);
  if (q === 0) return;
  const out: [number, number][] = [];
  lock(h, q + QR_LOCK);
  try {
    for (let i = 0; i < QR_N; i++) {
      const p = w(h, q + QR_ENTRIES + i * 8);
      if (p !== 0) out.push([p, w(h, q + QR_ENTRIES + i * 8 + 4)]);
      setw(h, q + QR_ENTRIES + i * 8, 0);
    }
  } finally {
    unlock(h, q + QR_LOCK);
  }
  let first: unknown;
  for (const [p, bytes] of out) {
    try {
      releaseQuarantined(h, p, bytes);
    } catch (e) {
      first ??= e;
    }
  }
  if (first !== undefined) throw first;
}

/**
 * Checks the free buffers a reap is about to give back (this worker's magazines, the depot's,
 * and cache `cp`'s empty slabs):
 * the first problem's report, or undefined. libumem only notices a write after free when the
 * buffer is handed out again; this catches it when the buffer never is.
 */
export function checkEmptySlabs(h: HeapView, cp: number): HeapCorruptionError | undefined {
  if ((w(h, cp + CA_DEBUG) & DBG_CONTENTS) === 0) return undefined;
  // The rounds a reap is about to purge: this slot's magazines (its own: no lock)...
  const cc = cp + h.ccOff;
  for (const [mf, rf] of [[CC_LOADED, CC_ROUNDS], [CC_PLOADED, CC_PROUNDS]]) {
    const m = w(h, cc + mf);
    for (let i = 0; m !== 0 && i < w(h, cc + rf); i++) {
      const bad = checkFreeBuffer(h, cp, w(h, m + MG_ROUNDS + i * 4));
      if (bad !== undefined) return bad;
    }
  }
  // ...the depot's full ones and the empty slabs, which other workers change (a reap of theirs
  // destroys slabs): walked under the depot lock and the slab lock, in that order, with the
  // quick test, which takes no lock; the report is made once both are let go.
  let bad = 0;
  lock(h, cp + CA_DEPOT_LOCK);
  try {
    for (let m = w(h, cp + CA_DEPOT_FULL); m !== 0 && bad === 0; m = w(h, m + MG_NEXT)) {
      for (let i = 0; i < w(h, cp + CA_MAGROUNDS) && bad === 0; i++) {
        const buf = w(h, m + MG_ROUNDS + i * 4);
        if (!freeLooksSound(h, cp, buf)) bad = buf;
      }
    }
    lock(h, cp + CA_LOCK);
    try {
      const n = w(h, cp + CA_NCHUNKS), chunk = w(h, cp + CA_CHUNK);
      for (let sb = w(h, cp + CA_EMPTY); sb !== 0 && bad === 0; sb = w(h, sb + SB_NEXT)) {
        const base = w(h, sb + SB_BASE);
        for (let i = 0; i < n && bad === 0; i++) {
          if (!freeLooksSound(h, cp, base + i * chunk)) bad = base + i * chunk;
        }
      }
    } finally {
      unlock(h, cp + CA_LOCK);
    }
  } finally {
    unlock(h, cp + CA_DEPOT_LOCK);
  }
  return bad === 0 ? undefined : checkFreeBuffer(h, cp, bad);
}

/** The quarantined firewall buffers (for verify): address and span bytes. */
export function quarantined(h: HeapView): [number, number][] {
  const q = w(h, HDR_QUARANTINE), out: [number, number][] = [];
  if (q === 0) return out;
  for (let i = 0; i < QR_N; i++) {
    const p = w(h, q + QR_ENTRIES + i * 8);
    if (p !== 0) out.push([p, w(h, q + QR_ENTRIES + i * 8 + 4)]);
  }
  return out;
}

/**
 * Checks a quarantined buffer (for verify): its pattern, its 0xbb bytes and the words at its
 * span's end; the problem's report, or undefined.
 */
export function checkQuarantined(h: HeapView, p: number, bytes: number): string | undefined {
  const fault = quarantineFault(h, p, bytes);
  return fault === undefined
    ? undefined
    : `umem allocator: ${fault[1]}: firewalled buffer ${hex(p)}: ${fault[2]}`;
}
