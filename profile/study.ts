/**
 * The simulator study: each synthetic trace replayed against each allocator, as the Vmalloc
 * paper's Figure 5 (time and space, normalised) and Table 2 (moves and bytes copied).
 *
 * ```sh
 * deno run --allow-read --allow-env profile/study.ts              # gawk's 700,000 allocations
 * deno run --allow-read --allow-env profile/study.ts --scale 0.1  # a tenth of every trace
 * deno run --allow-read --allow-env profile/study.ts --alloc heap,libc --rounds 1 -f json
 * ```
 *
 * Theory. The traces come from the deterministic generators (generators.ts), so two runs
 * replay the same operations; each allocator gets a fresh heap per trace and per measurement
 * (replay.ts), the timed runs have no sampling in them and the fastest of three is kept, and
 * the table is normalised to the heap's sized allocator. Times vary from run to run (more on
 * a busy machine); the space figures, moves and copies do not vary at all.
 *
 * Invariants. The study changes no state but its own heaps. Lock order: none.
 *
 * @module
 */
import process from "node:process";
import { allocatorNames } from "./allocators.ts";
import { checkArray, checkFunction, checkOptions } from "./arguments.ts";
import { dbTrace, fragmentTrace, gawkTrace, parserTrace } from "./generators.ts";
import { replay, type ReplayResult } from "./replay.ts";
import { formatReplayTable } from "./table.ts";
import type { Trace } from "./trace.ts";
import { UmemError } from "../core/mod.ts";

/** Options of {@linkcode study}. */
export interface StudyOptions {
  /**
   * A factor on the sizes of gawk, db and parser (default 1: gawk's 700,000 allocations);
   * fragment is the paper's Figure 4 as it stands.
   */
  scale?: number;
  /** The allocators (default every known one). */
  allocators?: readonly string[];
  /** The traces (default gawk, db, parser, fragment; another name is an error). */
  traces?: readonly string[];
  /** Timed runs per replay, the fastest kept (default 3). */
  rounds?: number;
  /** Called as each replay finishes (progress). */
  onResult?: (trace: string, result: ReplayResult) => void;
}

/** One trace's replays. */
export interface StudyRow {
  /** The trace's name. */
  trace: string;
  /** Its records. */
  records: number;
  /** The replays, one per allocator. */
  results: ReplayResult[];
}

/** The traces of the study, by name. */
const TRACES: Record<string, (scale: number) => Trace> = {
  gawk: (scale) => gawkTrace({ scale }),
  db: (scale) => dbTrace({ scale }),
  parser: (scale) => parserTrace({ scale }),
  fragment: () => fragmentTrace(),
};

/**
 * Replays each generated trace against each allocator.
 *
 * @param options scale, allocators, traces, progress
 * @returns a row per trace
 * @throws {UmemError} `invalid-argument` naming a trace that is not one of the four
 *
 * @example
 * ```ts
 * import { formatStudy, study } from "@umem/umem/profile";
 * const rows = study({ scale: 0.002, allocators: ["heap", "libc"], traces: ["fragment"] });
 * console.log(rows[0].results.map((r) => r.allocator).join(",")); // heap,libc
 * console.log(formatStudy(rows).startsWith("fragment")); // true
 * ```
 */
export function study(options: StudyOptions = {}): StudyRow[] {
  checkOptions("study", options);
  if (options.onResult !== undefined) checkFunction("study", "onResult", options.onResult);
  const scale = options.scale ?? 1;
  const names = options.allocators ?? allocatorNames();
  const traces = options.traces ?? Object.keys(TRACES);
  for (const name of traces) {
    if (typeof name !== "string" || !Object.hasOwn(TRACES, name)) {
      throw new UmemError(
        "invalid-argument",
        `study: no trace '${String(name)}' (expected ${Object.keys(TRACES).join(", ")})`,
      );
    }
  }
  const rows: StudyRow[] = [];
  // Warm the JIT on every allocator's code first, so that the first table's first row does
  // not pay for it.
  const warm = gawkTrace({ scale: 0.005 });
  for (const a of names) replay(warm, a, { space: false });
  for (const name of traces) {
    const trace = TRACES[name](scale);
    const results = names.map((a) => {
      const r = replay(trace, a, { rounds: options.rounds ?? 3 });
      options.onResult?.(name, r);
      return r;
    });
    rows.push({ trace: name, records: trace.count, results });
  }
  return rows;
}

/**
 * Formats the study: a table per trace, normalised to the heap's allocator.
 *
 * @param rows what {@linkcode study} returned
 * @returns the text
 *
 * @example
 * ```ts
 * import { formatStudy, study } from "@umem/umem/profile";
 * console.log(formatStudy(study({ allocators: ["heap"], traces: ["fragment"] })).split("\n")[0]);
 * // fragment: 20001 records
 * ```
 */
export function formatStudy(rows: readonly StudyRow[]): string {
  checkArray("formatStudy", "rows", rows);
  return rows.map((r) => `${r.trace}: ${r.records} records\n${formatReplayTable(r.results)}`)
    .join("\n\n");
}

/** The study's command line: `--scale N`, `--rounds N`, `--alloc a,b`, `-f json|text`. */
const STUDY_OPTIONS = ["--scale", "--rounds", "--alloc", "-f"];

if (import.meta.main) {
  const args = process.argv.slice(2);
  const given = new Map<string, string>();
  let rows: StudyRow[] = [];
  let json = false, scale = 1;
  const t0 = performance.now();
  try {
    // Every word an option with a value: an unknown one, or one without its value, is an error
    // (they were ignored, and a bad number ended in a stack trace).
    for (let i = 0; i < args.length; i += 2) {
      if (!STUDY_OPTIONS.includes(args[i]) || args[i + 1] === undefined) {
        throw new UmemError(
          "invalid-argument",
          `study: '${args[i]}' is not one of ${STUDY_OPTIONS.join(", ")} with a value`,
        );
      }
      given.set(args[i], args[i + 1]);
    }
    const format = given.get("-f") ?? "text";
    if (format !== "json" && format !== "text") {
      throw new UmemError("invalid-argument", `study: -f ${format} (expected json or text)`);
    }
    json = format === "json";
    scale = Number(given.get("--scale") ?? "1");
    rows = study({
      scale,
      rounds: Number(given.get("--rounds") ?? "3"),
      ...(given.has("--alloc") ? { allocators: given.get("--alloc")!.split(",") } : {}),
      onResult: json ? undefined : (t, r) => process.stderr.write(`${t}/${r.allocator} `),
    });
  } catch (e) {
    if (!(e instanceof UmemError)) throw e;
    console.error(`umem study: ${e.message}`);
    process.exit(2);
  }
  if (json) console.log(JSON.stringify(rows, null, 2));
  else {
    process.stderr.write("\n");
    console.log(
      `umem replay study, scale ${scale} (gawk ${Math.round(700000 * scale)} allocations)`,
    );
    console.log(formatStudy(rows));
    console.log(`\n(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
}
