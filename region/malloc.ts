/**
 * The malloc-compatible interface: `malloc`, `free`, `realloc`, `calloc` over a default
 * region whose method is picked at start-up from the environment, as in section 4 of the
 * Vmalloc paper, so a program changes allocator without a change to its code:
 *
 * - `VMETHOD=Vmbest|Vmlast|Vmpool|Vmdebug|Vmprofile` picks the method (default Vmbest);
 * - `VMDEBUG=1[,addr...]` picks Vmdebug and watches the addresses (hex or decimal);
 * - `VMTRACE=file` appends a trace line per call (`old:new:size:region:method:file,line:`);
 * - `VMPROFILE=file` picks Vmprofile and writes its report to the file at exit.
 *
 * Theory. {@linkcode mallocFromEnv} reads such an environment (any lookup function) and opens
 * a {@linkcode Malloc}: a region over a growable buffer of its own (Vmdcsbrk) plus the files.
 * The module-level functions use one made from the process environment on first use.
 *
 * Invariants. Trace lines are buffered and appended to the file in order; `flush()` (also run
 * at exit) writes what is buffered.
 *
 * Lock order: that of the region (region.ts).
 *
 * @module
 */
import { appendFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { UmemError } from "../core/mod.ts";
import { growableDiscipline } from "./discipline.ts";
import { type MethodName, Region, type RegionOptions } from "./region.ts";

/** Trace lines kept before they are appended to the file. */
const TRACE_BATCH = 512;

/** What the environment asked for. */
export interface MallocConfig {
  /** The method. */
  method: MethodName;
  /** Addresses to watch (VMDEBUG). */
  watch: number[];
  /** The trace file (VMTRACE), if any. */
  traceFile?: string;
  /** The profile file (VMPROFILE), if any. */
  profileFile?: string;
}

/**
 * Reads `VMETHOD`, `VMDEBUG`, `VMTRACE` and `VMPROFILE`. Each later one overrides the method
 * of those before it: `VMDEBUG` (on) asks for Vmdebug, `VMPROFILE` for Vmprofile.
 *
 * @param env looks a variable up (default: the process environment)
 * @returns the configuration
 * @throws {UmemError} `invalid-argument` for an unknown method, a bad watch address, or watch
 *   addresses with `VMPROFILE` (only Vmdebug watches)
 *
 * @example
 * ```ts
 * import { mallocConfig } from "@umem/umem/region";
 * const env: Record<string, string> = { VMDEBUG: "1,0x2a0" };
 * console.log(mallocConfig((k) => env[k])); // { method: "debug", watch: [ 672 ] }
 * ```
 */
export function mallocConfig(env: (name: string) => string | undefined = readEnv): MallocConfig {
  if (typeof env !== "function") {
    throw new UmemError(
      "invalid-argument",
      `mallocConfig: env must be a function of a variable's name, got ${
        env === null ? "null" : typeof env
      }`,
    );
  }
  const c: MallocConfig = { method: "best", watch: [] };
  const vm = env("VMETHOD");
  if (vm !== undefined && vm !== "") {
    const names: Record<string, MethodName> = {
      Vmbest: "best",
      Vmlast: "last",
      Vmpool: "pool",
      Vmdebug: "debug",
      Vmprofile: "profile",
    };
    const m = Object.hasOwn(names, vm) ? names[vm] : undefined;
    if (m === undefined) {
      throw new UmemError(
        "invalid-argument",
        `VMETHOD=${vm}: expected Vmbest, Vmlast, Vmpool, Vmdebug or Vmprofile`,
      );
    }
    c.method = m;
  }
  const dbg = env("VMDEBUG");
  if (dbg !== undefined && dbg !== "" && dbg !== "0") {
    c.method = "debug";
    for (const w of dbg.split(",").slice(1)) {
      const a = Number(w.trim());
      if (!Number.isInteger(a) || a <= 0) {
        throw new UmemError("invalid-argument", `VMDEBUG=${dbg}: ${w} is not an address`);
      }
      c.watch.push(a);
    }
  }
  const tr = env("VMTRACE");
  if (tr) c.traceFile = tr;
  const pr = env("VMPROFILE");
  if (pr) {
    if (c.watch.length > 0) {
      throw new UmemError(
        "invalid-argument",
        `VMDEBUG=${dbg}: watching addresses needs Vmdebug, but VMPROFILE=${pr} asks for Vmprofile`,
      );
    }
    c.profileFile = pr;
    c.method = "profile";
  }
  return c;
}

/** The process environment, under Deno or Bun (undefined when not allowed). */
function readEnv(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined;
  }
}

/**
 * A malloc-compatible allocator over one region.
 *
 * @example
 * ```ts
 * import { Malloc } from "@umem/umem/region";
 * const m = new Malloc({ method: "best", watch: [] });
 * const p = m.malloc(10);
 * const q = m.realloc(p, 100);
 * m.free(q);
 * console.log(m.region.stat().busyCount); // 0
 * ```
 */
export class Malloc {
  /** The region. */
  readonly region: Region;
  /** The configuration it was made with. */
  readonly config: MallocConfig;
  /** Trace lines not yet written. */
  private lines: string[] = [];

  /**
   * Opens the region the configuration asks for, over a growable buffer of its own.
   *
   * @param config the configuration (see {@linkcode mallocConfig})
   * @param options the region's `onError` and `onAlert` (by default problems are thrown and
   *   alerts go to `console.error`)
   * @param maxSize the most bytes the region's buffer may grow to (default 1 GiB)
   */
  constructor(
    config: MallocConfig,
    options: Pick<RegionOptions, "onError" | "onAlert"> = {},
    maxSize = 1 << 30,
  ) {
    if (typeof config !== "object" || config === null) {
      throw new UmemError(
        "invalid-argument",
        `Malloc: config must be a MallocConfig (see mallocConfig), got ${
          config === null ? "null" : typeof config
        }`,
      );
    }
    if (config.watch !== undefined && !Array.isArray(config.watch)) {
      throw new UmemError(
        "invalid-argument",
        `Malloc: config.watch must be an array of addresses, got ${
          config.watch === null ? "null" : typeof config.watch
        }`,
      );
    }
    this.config = config;
    const trace = config.traceFile === undefined ? undefined : (line: string) => {
      this.lines.push(line);
      if (this.lines.length >= TRACE_BATCH) this.flush();
    };
    this.region = Region.open(growableDiscipline({ maxSize }), config.method, {
      ...options,
      trace,
    });
    for (const a of config.watch ?? []) this.region.watch(a);
    if (config.traceFile !== undefined) writeFileSync(config.traceFile, "");
  }

  /**
   * Allocates `size` bytes (`malloc`).
   *
   * @param size bytes
   * @returns the address
   * @throws {UmemError} as {@linkcode Region.alloc}
   */
  malloc(size: number): number {
    return this.region.alloc(size);
  }

  /**
   * Frees a block (`free`); `free(0)` does nothing.
   *
   * @param ptr the block
   * @throws {UmemError} as {@linkcode Region.free}
   */
  free(ptr: number): void {
    this.region.free(ptr);
  }

  /**
   * Resizes a block, moving and copying it if need be (`realloc`).
   *
   * @param ptr the block (0: allocate)
   * @param size the new size (0: free)
   * @returns the address now
   * @throws {UmemError} as {@linkcode Region.resize}
   */
  realloc(ptr: number, size: number): number {
    return this.region.resize(ptr, size, { move: true, copy: true });
  }

  /**
   * Allocates `n * size` bytes set to zero (`calloc`).
   *
   * @param n elements
   * @param size bytes each
   * @returns the address
   * @throws {UmemError} as {@linkcode Region.alloc}
   */
  calloc(n: number, size: number): number {
    // NaN is refused by alloc: neither factor may be negative (two negatives multiply to a size).
    const bytes = Number.isInteger(n) && Number.isInteger(size) && n >= 0 && size >= 0
      ? n * size
      : NaN;
    const p = this.region.alloc(bytes);
    if (p !== 0) new Uint8Array(this.region.buffer).fill(0, p, p + bytes);
    return p;
  }

  /** Appends the buffered trace lines to the trace file, and writes the profile if asked. */
  flush(): void {
    if (this.config.traceFile !== undefined && this.lines.length > 0) {
      appendFileSync(this.config.traceFile, this.lines.join("\n") + "\n");
      this.lines = [];
    }
    if (this.config.profileFile !== undefined) {
      writeFileSync(this.config.profileFile, this.region.report());
    }
  }
}

/**
 * Opens a {@linkcode Malloc} from an environment.
 *
 * @param env looks a variable up (default: the process environment)
 * @param options the region's `onError` and `onAlert`
 * @returns the allocator
 * @throws {UmemError} `invalid-argument` for a bad environment
 *
 * @example
 * ```ts
 * import { mallocFromEnv } from "@umem/umem/region";
 * const env: Record<string, string> = { VMETHOD: "Vmlast" };
 * console.log(mallocFromEnv((k) => env[k]).region.method); // "last"
 * ```
 */
export function mallocFromEnv(
  env: (name: string) => string | undefined = readEnv,
  options: Pick<RegionOptions, "onError" | "onAlert"> = {},
): Malloc {
  return new Malloc(mallocConfig(env), options);
}

/** The default allocator, made from the process environment on first use. */
let dflt: Malloc | null = null;

/**
 * The default allocator the module-level functions use (made on first use from the process
 * environment; its trace and profile are written at exit). Under `VMDEBUG` (or
 * `VMETHOD=Vmdebug`) each problem is written to stderr and the bad call refused, as Vmdebug
 * does without `VM_DBABORT`; under the other methods problems are thrown.
 *
 * @returns the allocator
 * @throws {UmemError} `invalid-argument` for a bad environment
 *
 * @example
 * ```ts
 * import { defaultMalloc } from "@umem/umem/region";
 * console.log(defaultMalloc() === defaultMalloc()); // true
 * ```
 */
export function defaultMalloc(): Malloc {
  if (dflt === null) {
    const config = mallocConfig();
    // Vmdebug without VM_DBABORT: report each problem on stderr, refuse the bad call, go on.
    const m = new Malloc(
      config,
      config.method === "debug" ? { onError: (e) => console.error(e.message) } : {},
    );
    dflt = m;
    if (m.config.traceFile !== undefined || m.config.profileFile !== undefined) {
      process.on("exit", () => m.flush());
    }
  }
  return dflt;
}

/**
 * `malloc` on the default region.
 *
 * @param size bytes
 * @returns the address (in `defaultMalloc().region.buffer`)
 * @throws {UmemError} as {@linkcode Region.alloc}
 *
 * @example
 * ```ts
 * import { defaultMalloc, free, malloc } from "@umem/umem/region";
 * const p = malloc(32);
 * new Uint8Array(defaultMalloc().region.buffer)[p] = 1;
 * free(p);
 * ```
 */
export function malloc(size: number): number {
  return defaultMalloc().malloc(size);
}

/**
 * `free` on the default region.
 *
 * @param ptr the block
 * @throws {UmemError} as {@linkcode Region.free}
 *
 * @example
 * ```ts
 * import { free, malloc } from "@umem/umem/region";
 * free(malloc(8));
 * ```
 */
export function free(ptr: number): void {
  defaultMalloc().free(ptr);
}

/**
 * `realloc` on the default region.
 *
 * @param ptr the block
 * @param size the new size
 * @returns the address now
 * @throws {UmemError} as {@linkcode Region.resize}
 *
 * @example
 * ```ts
 * import { free, malloc, realloc } from "@umem/umem/region";
 * free(realloc(malloc(8), 800));
 * ```
 */
export function realloc(ptr: number, size: number): number {
  return defaultMalloc().realloc(ptr, size);
}

/**
 * `calloc` on the default region.
 *
 * @param n elements
 * @param size bytes each
 * @returns the address of `n * size` zero bytes
 * @throws {UmemError} as {@linkcode Region.alloc}
 *
 * @example
 * ```ts
 * import { calloc, defaultMalloc } from "@umem/umem/region";
 * const p = calloc(4, 8);
 * console.log(new Uint8Array(defaultMalloc().region.buffer)[p + 31]); // 0
 * ```
 */
export function calloc(n: number, size: number): number {
  return defaultMalloc().calloc(n, size);
}
