/**
 * libumem's switches: `UMEM_DEBUG`, `UMEM_LOGGING` and `UMEM_OPTIONS`, parsed into settings.
 *
 * Each variable is a comma-separated list of keywords, some with `=value`, as libumem reads
 * them. `Heap.create({ debug, logging, options })` takes the same strings; where one is not
 * given the heap reads the environment variable (Deno, Bun, Node), and carries on with the
 * defaults, silently, when it may not read the environment. An unknown keyword is an error
 * that names it, and so is a value that is not a size.
 *
 * @module
 */

import { UmemError } from "./errors.ts";
import { MAX_SIZE_CLASSES, UMEM_MAXBUF, UMEM_SIZE_CLASSES } from "./size_class.ts";

/** What `UMEM_DEBUG` turns on. */
export interface DebugSettings {
  /** Keep an audit record (stack, worker, time, previous transaction) per buffer. */
  audit: boolean;
  /** Stack frames an audit record keeps. */
  auditFrames: number;
  /** Audit 1 in this many transactions of each worker (1: all). */
  auditSample: number;
  /** Fill freed buffers with 0xdeadbeef and new ones with 0xbaddcafe, and check them. */
  contents: boolean;
  /** Bytes of each freed buffer the contents log keeps. */
  contentsBytes: number;
  /** Redzone after every buffer: 0xfeedface, 0xbb after the requested size. */
  guards: boolean;
  /** Buffers of at least this many bytes get their own span and a checked redzone (0: off). */
  firewall: number;
  /** Print each report to the console as well. */
  verbose: boolean;
  /**
   * Report by throwing rather than aborting the process (`noabort` or `nosignal`; libumem's
   * default, and umem's, is to print the report and abort).
   */
  noabort: boolean;
  /** Check at most this many bytes of a freed buffer's pattern (0: all). */
  maxverify: number;
  /** Fail about one allocation from a debugged cache in this many (`mtbf=n`; 0: never). */
  mtbf: number;
  /** Report an allocation that fails for want of memory, and abort unless `noabort`. */
  checknull: boolean;
}

/** What `UMEM_LOGGING` turns on: ring sizes in bytes (0: off). */
export interface LoggingSettings {
  /** The transaction log. */
  transaction: number;
  /** The contents log. */
  contents: number;
  /** The failure log. */
  fail: number;
}

/** What `UMEM_OPTIONS` sets. */
export interface UmemOptionSettings {
  /**
   * No magazine layer in the caches the program allocates from (its own and the size classes),
   * as libumem's: every alloc and free goes to the slabs.
   */
  nomagazines: boolean;
  /** Contended depot acquisitions per interval before magazines grow (undefined: default). */
  maxContention?: number;
  /** Worker slots (per-worker caches). */
  concurrency?: number;
  /** Initial heap size (backing size). */
  size?: number;
  /** Largest heap size. */
  maxSize?: number;
  /** Fit policy of the top arena (`allocator=best|first|next|instant`), as `heap.vmem`'s own. */
  allocator?: "instantfit" | "bestfit" | "nextfit" | "firstfit";
  /** Seconds of a cache's update interval for magazine growth (`reap_interval=secs`). */
  reapInterval?: number;
  /** Where the buffer's memory comes from (see `HeapOptions.backend`). */
  backend?: "sbrk" | "mmap";
  /**
   * The size classes of `umem_alloc`, ascending, when `size_clear`, `size_add=n` or
   * `size_remove=n` changed libumem's (undefined: libumem's 49).
   */
  sizes?: readonly number[];
}

/** The default ring size of each log, as libumem's: 64 KiB. */
export const LOG_DEFAULT_BYTES = 64 * 1024;
/** Default audit depth. */
export const AUDIT_DEFAULT_FRAMES = 16;
/** Default bytes saved per freed buffer by `contents`. */
export const CONTENTS_DEFAULT_BYTES = 256;

/** Parses a size: digits with an optional k, m or g suffix. */
function parseSize(variable: string, key: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const m = /^(\d+)([kmg]?)$/i.exec(v.trim());
  if (m === null) {
    throw new UmemError("invalid-argument", `${variable}: ${key}=${v}: not a size`);
  }
  const mult =
    { "": 1, k: 1024, m: 1 << 20, g: 1 << 30 }[m[2].toLowerCase() as "" | "k" | "m" | "g"];
  const n = Number(m[1]) * mult;
  // Every size is kept in a 32-bit word of the image (and none can pass the image's size): a
  // larger one wrapped (firewall=2g firewalled every buffer; a 4 GiB log ring was laid in a few
  // KiB and wrote over the heap's metadata).
  if (n > 0x7fffffff) {
    throw new UmemError(
      "invalid-argument",
      `${variable}: ${key}=${v}: overflowed (at most 2^31 - 1)`,
    );
  }
  return n;
}

/** The comma-separated words of a switch string: each its key and value, both trimmed. */
function words(s: string): [string, string | undefined][] {
  return s.split(",").map((w) => w.trim()).filter((w) => w.length > 0).map((w) => {
    const i = w.indexOf("=");
    // (`size_add =24`: libumem trims the whole word, its key as well as its value.)
    return i < 0 ? [w, undefined] : [w.slice(0, i).trimEnd(), w.slice(i + 1).trimStart()];
  });
}

/** `UMEM_DEBUG`'s keywords that are flags: one given a value is an error, as in libumem. */
const FLAG_WORDS = new Set([
  "default",
  "guards",
  "verbose",
  "nosignal",
  "noabort",
  "lite",
  "checknull",
]);

function unknown(variable: string, key: string): UmemError {
  return new UmemError("invalid-argument", `${variable}: '${key}' not recognized`);
}

/**
 * Parses a `UMEM_DEBUG` string. `audit=16/100` keeps 16 frames and audits 1 transaction
 * in 100 of each worker.
 * @throws {UmemError} `invalid-argument` naming an unknown keyword or a bad value
 */
export function parseDebug(s: string): DebugSettings {
  const d: DebugSettings = {
    audit: false,
    auditFrames: AUDIT_DEFAULT_FRAMES,
    auditSample: 1,
    contents: false,
    contentsBytes: CONTENTS_DEFAULT_BYTES,
    guards: false,
    firewall: 0,
    verbose: false,
    noabort: false,
    maxverify: 0,
    mtbf: 0,
    checknull: false,
  };
  const V = "UMEM_DEBUG";
  for (const [k, v] of words(s)) {
    if (v !== undefined && FLAG_WORDS.has(k)) {
      throw new UmemError("invalid-argument", `${V}: ${k}=${v}: ${k} does not take a value`);
    }
    switch (k) {
      case "default":
        d.audit = d.contents = d.guards = true;
        break;
      case "audit": {
        d.audit = true;
        if (v !== undefined) {
          const [frames, rate] = v.split("/");
          d.auditFrames = parseSize(V, k, frames, AUDIT_DEFAULT_FRAMES);
          d.auditSample = Math.max(1, parseSize(V, k, rate, 1));
        }
        break;
      }
      case "contents":
        d.contents = true;
        d.contentsBytes = parseSize(V, k, v, CONTENTS_DEFAULT_BYTES);
        break;
      case "guards":
        d.guards = true;
        break;
      case "firewall":
        d.firewall = parseSize(V, k, v, 0);
        d.guards = true;
        break;
      case "verbose":
        d.verbose = true;
        break;
      case "nosignal":
      case "noabort":
        d.noabort = true;
        break;
      case "maxverify":
        d.maxverify = parseSize(V, k, v, 0);
        break;
      case "lite":
        d.guards = true;
        break;
      case "mtbf":
        if (v === undefined) {
          throw new UmemError("invalid-argument", `${V}: mtbf: required value missing`);
        }
        d.mtbf = parseSize(V, k, v, 0);
        if (d.mtbf > 0x7fffffff) {
          throw new UmemError("invalid-argument", `${V}: mtbf=${v}: overflowed (at most 2^31 - 1)`);
        }
        break;
      case "checknull":
        d.checknull = true;
        break;
      default:
        throw unknown(V, k);
    }
  }
  if (d.auditFrames < 1 || d.auditFrames > 64) {
    throw new UmemError(
      "invalid-argument",
      `UMEM_DEBUG: audit=${d.auditFrames}: frames must be 1..64`,
    );
  }
  // Every debugging feature needs the buffer tag that guards lay; failures are injected where
  // libumem injects them, in the debug layer.
  if (d.audit || d.contents || d.mtbf > 0) d.guards = true;
  return d;
}

/**
 * Parses a `UMEM_LOGGING` string.
 * @throws {UmemError} `invalid-argument` naming an unknown keyword or a bad value
 */
export function parseLogging(s: string): LoggingSettings {
  const l: LoggingSettings = { transaction: 0, contents: 0, fail: 0 };
  for (const [k, v] of words(s)) {
    if (k !== "transaction" && k !== "contents" && k !== "fail") throw unknown("UMEM_LOGGING", k);
    l[k] = parseSize("UMEM_LOGGING", k, v, LOG_DEFAULT_BYTES);
  }
  return l;
}

/**
 * Parses a `UMEM_OPTIONS` string.
 * @throws {UmemError} `invalid-argument` naming an unknown keyword or a bad value
 */
export function parseOptions(s: string): UmemOptionSettings {
  const o: UmemOptionSettings = { nomagazines: false };
  const V = "UMEM_OPTIONS";
  for (const [k, v] of words(s)) {
    switch (k) {
      case "nomagazines":
        if (v !== undefined) {
          // A flag given a value, as UMEM_DEBUG's, is an error (libumem: "does not take a value").
          throw new UmemError("invalid-argument", `${V}: ${k}=${v}: ${k} does not take a value`);
        }
        o.nomagazines = true;
        break;
      case "max_contention":
        o.maxContention = parseSize(V, k, v, 3);
        if (o.maxContention > 1_000_000) {
          throw new UmemError("invalid-argument", `${V}: ${k}=${v}: at most 1000000`);
        }
        break;
      case "concurrency":
        o.concurrency = parseSize(V, k, v, 16);
        break;
      case "size":
      case "backend_size":
        o.size = parseSize(V, k, v, 0);
        break;
      case "reap_interval":
        if (v === undefined) {
          throw new UmemError("invalid-argument", `${V}: ${k}: required value missing`);
        }
        o.reapInterval = parseSize(V, k, v, 0);
        if (o.reapInterval < 1 || o.reapInterval > 86400) {
          throw new UmemError("invalid-argument", `${V}: ${k}=${v}: seconds must be 1..86400`);
        }
        break;
      case "maxsize":
        o.maxSize = parseSize(V, k, v, 0);
        break;
      case "backend":
        if (v !== "sbrk" && v !== "mmap") throw unknown(V, `backend=${v}`);
        o.backend = v;
        break;
      case "allocator": {
        const a = ALLOCATORS.get(v ?? "");
        if (a === undefined) throw unknown(V, `allocator=${v}`);
        o.allocator = a;
        break;
      }
      case "size_clear":
        if (v !== undefined) {
          throw new UmemError("invalid-argument", `${V}: ${k}=${v}: ${k} does not take a value`);
        }
        o.sizes = [UMEM_MAXBUF];
        break;
      case "size_add":
      case "size_remove":
        o.sizes = editSizes(o.sizes ?? UMEM_SIZE_CLASSES, k, v);
        break;
      default:
        throw unknown(V, k);
    }
  }
  return o;
}

/**
 * `UMEM_OPTIONS`'s `size_add=n` and `size_remove=n` applied to the size classes `sizes`, as
 * libumem's `umem_alloc_sizes_add` and `_remove`: a size is rounded up to a multiple of 8, one
 * already there is added once, and the largest class (`UMEM_MAXBUF`, which every size up to it
 * falls back on) stays.
 * @throws {UmemError} `invalid-argument` for a missing or bad size, a size to remove that is not
 * a class, or more than `MAX_SIZE_CLASSES` classes
 */
function editSizes(
  sizes: readonly number[],
  k: "size_add" | "size_remove",
  v: string | undefined,
): number[] {
  const V = "UMEM_OPTIONS";
  if (v === undefined) {
    throw new UmemError("invalid-argument", `${V}: ${k}: required value missing`);
  }
  const n = parseSize(V, k, v, 0);
  if (n < 1 || n > UMEM_MAXBUF) {
    throw new UmemError(
      "invalid-argument",
      `${V}: ${k}=${v}: a size class is 1..${UMEM_MAXBUF} bytes`,
    );
  }
  const size = Math.ceil(n / 8) * 8;
  if (k === "size_add") {
    if (sizes.includes(size)) return [...sizes];
    if (sizes.length >= MAX_SIZE_CLASSES) {
      throw new UmemError(
        "invalid-argument",
        `${V}: ${k}=${v}: no room in the size table (at most ${MAX_SIZE_CLASSES} classes)`,
      );
    }
    return [...sizes, size].sort((a, b) => a - b);
  }
  if (size === UMEM_MAXBUF) {
    throw new UmemError(
      "invalid-argument",
      `${V}: ${k}=${v}: the largest class (${UMEM_MAXBUF}) cannot be removed`,
    );
  }
  if (!sizes.includes(size)) {
    throw new UmemError("invalid-argument", `${V}: ${k}=${v}: ${size} is not a size class`);
  }
  return sizes.filter((c) => c !== size);
}

/** `UMEM_OPTIONS=allocator=`'s words, as libumem's, and the vmem policies they name. */
const ALLOCATORS = new Map<string, NonNullable<UmemOptionSettings["allocator"]>>([
  ["best", "bestfit"],
  ["first", "firstfit"],
  ["next", "nextfit"],
  ["instant", "instantfit"],
]);

/** Reads an environment variable in Deno, Bun or Node; undefined when absent or not allowed. */
export function readEnv(name: string): string | undefined {
  const g = globalThis as unknown as {
    Deno?: {
      env: { get(n: string): string | undefined };
      permissions: { querySync(d: { name: "env"; variable: string }): { state: string } };
    };
    process?: { env: Record<string, string | undefined> };
  };
  try {
    if (g.Deno !== undefined) {
      // Ask first: reading without permission would prompt on a terminal.
      if (g.Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
        return undefined;
      }
      return g.Deno.env.get(name);
    }
    return g.process?.env[name];
  } catch {
    return undefined; // no permission to read the environment: the defaults, silently
  }
}
