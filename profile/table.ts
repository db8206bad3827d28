/**
 * The replay table: replays of one trace side by side, normalised to one of them.
 *
 * Theory. The Vmalloc paper's Figure 5 shows each allocator's time and space on each trace
 * relative to one allocator, and its Table 2 the moves and bytes copied by resizes. The table
 * here puts the same in one row per allocator: time (ms, ns per operation, and the ratio to
 * the baseline's), space (peak extent, peak busy, their ratio, and the extent's ratio to the
 * baseline's), then moves and bytes copied. The baseline is the heap's allocator when it was
 * replayed, else the first row.
 *
 * Invariants. The baseline row reads 1.00 in both ratio columns. Lock order: none.
 *
 * @module
 */
import { checkArray } from "./arguments.ts";
import type { ReplayResult } from "./replay.ts";
import { UmemError } from "../core/mod.ts";

/** Right-aligns `s` in `n` columns. */
const pad = (s: string, n: number) => s.padStart(n);

/** Bytes in KiB with one decimal, or the bytes under 10 KiB. */
function kib(n: number): string {
  if (!Number.isFinite(n)) return "-";
  return n < 10240 ? `${n}` : `${(n / 1024).toFixed(0)}K`;
}

/** A ratio with two decimals. */
const ratio = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");

/**
 * Formats replays of one trace as a table normalised to a baseline.
 *
 * @param results the replays, one per allocator
 * @param baseline the allocator to normalise to (default "heap" when present, else the first)
 * @returns the table's lines, joined by newlines
 * @throws {UmemError} `invalid-argument` for a `baseline` none of the results is of
 *
 * @example
 * ```ts
 * import { formatReplayTable, fragmentTrace, replay } from "@umem/umem/profile";
 * const t = fragmentTrace({ iterations: 100 });
 * const table = formatReplayTable([replay(t, "heap"), replay(t, "libc")]);
 * console.log(table.split("\n")[0].trim().split(/\s+/).slice(0, 3).join(" "));
 * // ALLOCATOR TIME_MS NS/OP
 * ```
 */
export function formatReplayTable(results: readonly ReplayResult[], baseline?: string): string {
  checkArray("formatReplayTable", "results", results);
  const named = results.find((r) => r.allocator === (baseline ?? "heap"));
  if (baseline !== undefined && named === undefined) {
    throw new UmemError(
      "invalid-argument",
      `formatReplayTable: no replay of '${baseline}' to normalise to (have ${
        results.map((r) => r.allocator).join(", ")
      })`,
    );
  }
  const base = named ?? results[0];
  const head = [
    "ALLOCATOR".padEnd(10),
    pad("TIME_MS", 9),
    pad("NS/OP", 7),
    pad("TIME×", 6),
    pad("EXTENT", 9),
    pad("BUSY", 9),
    pad("EXT/BUSY", 8),
    pad("SPACE×", 6),
    pad("MOVES", 7),
    pad("COPIED", 9),
  ].join(" ");
  const rows = results.map((r) =>
    [
      r.allocator.padEnd(10),
      pad(Number.isFinite(r.timeMs) ? r.timeMs.toFixed(1) : "-", 9),
      pad(Number.isFinite(r.nsPerOp) ? r.nsPerOp.toFixed(0) : "-", 7),
      pad(ratio(base === undefined ? NaN : r.nsPerOp / base.nsPerOp), 6),
      pad(kib(r.peakExtent), 9),
      pad(kib(r.peakBusy), 9),
      pad(ratio(r.ratio), 8),
      pad(ratio(base === undefined ? NaN : r.peakExtent / base.peakExtent), 6),
      pad(String(r.moves), 7),
      pad(kib(r.bytesCopied), 9),
      ...(r.failed !== undefined ? [`(${r.failed})`] : []),
    ].join(" ")
  );
  return [head, ...rows].join("\n");
}
