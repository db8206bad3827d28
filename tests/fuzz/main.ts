/**
 * The fuzzers' command line: `--target heap|debugheap|sbo|budget|region|own|gc|vmem|all`
 * (default all), `--runs N` (per target, default 200), `--seed S` (default from the clock).
 * Prints, per target, the runs and operations made, or the seed, path, error and shrunk command
 * list of a failure; exits 1 when any target failed.
 *
 * Run: `npx deno run --allow-read --allow-env tests/fuzz/main.ts --runs 1000 --seed 7`, or
 * `npx bun tests/fuzz/main.ts --target sbo --runs 500`.
 *
 * @module
 */

import { debugHeapTarget, heapTarget } from "./heap_fuzz.ts";
import { sboTarget } from "./sbo_fuzz.ts";
import { budgetTarget } from "./budget_fuzz.ts";
import { regionTarget } from "./region_fuzz.ts";
import { ownTarget } from "./own_fuzz.ts";
import { gcTarget } from "./gc_fuzz.ts";
import { vmemTarget } from "./vmem_fuzz.ts";
import { exit, parseFlags, printResult, programArgs, runTarget, type Target } from "./runner.ts";

/** Every target, by name. */
// deno-lint-ignore no-explicit-any
export const TARGETS: Record<string, Target<any>> = {
  heap: heapTarget,
  debugheap: debugHeapTarget,
  sbo: sboTarget,
  budget: budgetTarget,
  region: regionTarget,
  own: ownTarget,
  gc: gcTarget,
  vmem: vmemTarget,
};

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  let flags;
  try {
    flags = parseFlags(programArgs());
    if (flags.target !== "all" && !Object.hasOwn(TARGETS, flags.target)) {
      throw new Error(
        `unknown target '${flags.target}' (expected ${Object.keys(TARGETS).join("|")}|all)`,
      );
    }
  } catch (e) {
    console.error(`fuzz: ${(e as Error).message}`);
    exit(2);
  }
  const names = flags.target === "all" ? Object.keys(TARGETS) : [flags.target];
  let ok = true;
  for (const name of names) {
    const r = runTarget(TARGETS[name], { runs: flags.runs, seed: flags.seed });
    ok = printResult(name, r, flags.seed) && ok;
  }
  if (!ok) exit(1);
}
