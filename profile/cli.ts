/**
 * The `umem profile` and `umem replay` commands, which read a trace rather than a snapshot.
 *
 * ```sh
 * umem profile TRACE [--window N] [-f json]
 * umem replay TRACE [--alloc heap,libc,cache,bump,context,best,pool,last] [--sample N] [-f json]
 * ```
 *
 * Theory. `profile` prints the Vmprofile summary of a trace and its phases; `replay` runs the
 * simulator against each allocator named and prints the table normalised to the heap's
 * allocator (or the first named). TRACE is a `.umt` file, or a Vmalloc `VMTRACE` text file
 * (told apart by the `.umt` magic). Exit status 0 on success, 2 for bad arguments or a file
 * that cannot be read or is not a sound trace, with one line on stderr that says what.
 *
 * Invariants. Arguments are all checked before the trace is read. Lock order: none.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { UmemError } from "../core/mod.ts";
import { allocatorNames } from "./allocators.ts";
import { checkPath } from "./arguments.ts";
import { phases } from "./phases.ts";
import { replay } from "./replay.ts";
import { formatSummary, summary } from "./summary.ts";
import { formatReplayTable } from "./table.ts";
import type { Trace } from "./trace.ts";
import { decodeTrace } from "./trace_format.ts";
import { UMT_MAGIC } from "./layout.ts";
import { parseVmtrace } from "./vmtrace.ts";

/** Where the commands write. */
export interface ProfileOutput {
  /** A line of output. */
  log(text: string): void;
  /** A line of diagnostics. */
  error(text: string): void;
}

/** The commands this file runs.
 *
 * @example
 * ```ts
 * import { PROFILE_COMMANDS } from "@umem/umem/profile";
 * console.log(PROFILE_COMMANDS.includes("replay")); // true
 * ```
 */
export const PROFILE_COMMANDS: readonly string[] = ["profile", "replay"];

/** Usage lines, for `umem --help`.
 *
 * @example
 * ```ts
 * import { PROFILE_USAGE } from "@umem/umem/profile";
 * console.log(PROFILE_USAGE[0].trim().split(" ")[0]); // profile
 * ```
 */
export const PROFILE_USAGE: readonly string[] = [
  "  profile TRACE [--window N] [-f json]",
  "      the Vmprofile summary of a trace (.umt or VMTRACE) per call site, cache and size, and its phases",
  "  replay TRACE [--alloc heap,libc,cache,bump,context,best,pool,last] [--sample N] [-f json]",
  "      replay a trace against allocators: time, peak extent and busy, moves, bytes copied",
];

/** A bad command line. */
class ProfileUsageError extends Error {}

/**
 * Reads a trace file: a `.umt` file, or VMTRACE text.
 *
 * @param path the file
 * @returns the trace
 * @throws {UmemError} `corrupt-trace` for a damaged `.umt` file or text with no trace line,
 *   `invalid-argument` for a path that is not a non-empty string or a file that cannot be read
 *
 * @example
 * ```ts
 * import { writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { openTrace } from "@umem/umem/profile";
 * const path = join(tmpdir(), "open.trace");
 * writeFileSync(path, "0:0x1000:24:r:Vmbest:t.c,4:\n");
 * console.log(openTrace(path).at(0).size); // 24
 * ```
 */
export function openTrace(path: string): Trace {
  // (A number would be taken for a file descriptor: 0 read standard input, and waited.)
  checkPath("openTrace", path);
  let bytes: Uint8Array;
  try {
    const b = readFileSync(path);
    bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new UmemError("invalid-argument", `openTrace: cannot read ${path}: ${readFailure(e)}`);
  }
  const magic = bytes.length >= 4
    ? new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true)
    : 0;
  if (magic === UMT_MAGIC) return decodeTrace(bytes, path);
  const text = new TextDecoder().decode(bytes);
  const { trace, skipped } = parseVmtrace(text, {}, path);
  if (trace.count === 0) {
    throw new UmemError(
      "corrupt-trace",
      `loadTrace: ${path}: neither a .umt trace nor VMTRACE text (${skipped} lines, none a trace line)`,
    );
  }
  return trace;
}

/** Parses `--name VALUE` / `--name=VALUE` options and `-f json`. */
function parse(
  args: readonly string[],
  allowed: readonly string[],
): { json: boolean; positional: string[]; options: Map<string, string> } {
  const out = { json: false, positional: [] as string[], options: new Map<string, string>() };
  for (let i = 0; i < args.length; i++) {
    let a = args[i], inline: string | undefined;
    if (a.startsWith("--") && a.includes("=")) {
      inline = a.slice(a.indexOf("=") + 1);
      a = a.slice(0, a.indexOf("="));
    }
    const value = () => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new ProfileUsageError(`option ${a} needs a value`);
      return v;
    };
    if (a === "-f" || a === "--format") {
      const f = value();
      if (f !== "json" && f !== "text") {
        throw new ProfileUsageError(`-f: unknown format '${f}' (expected json or text)`);
      }
      out.json = f === "json";
    } else if (a.startsWith("-") && a.length > 1) {
      if (!allowed.includes(a)) throw new ProfileUsageError(`unknown option '${a}'`);
      if (out.options.has(a)) throw new ProfileUsageError(`option ${a} given twice`);
      out.options.set(a, value());
    } else out.positional.push(a);
  }
  return out;
}

/** A whole number in [min, max] from an option. */
function count(s: string, what: string, min: number, max: number): number {
  const v = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new ProfileUsageError(`${what}: '${s}' is not a whole number in ${min}..${max}`);
  }
  return v;
}

/**
 * Runs `umem profile ...` or `umem replay ...`.
 *
 * @param args the command line after the program's name, the command first
 * @param out where to write
 * @returns the exit status: 0, or 2 for bad arguments or a bad trace
 *
 * @example
 * ```ts
 * import { profileCommand } from "@umem/umem/profile";
 * const lines: string[] = [];
 * const code = profileCommand(["replay", "x.umt", "--alloc", "nope"], {
 *   log: (t) => lines.push(t),
 *   error: (t) => lines.push(t),
 * });
 * console.log(code, lines[0].startsWith("umem: replay: unknown allocator 'nope'")); // 2 true
 * ```
 */
export function profileCommand(args: readonly string[], out: ProfileOutput = console): number {
  const [command, ...rest] = args;
  if (rest.includes("-h") || rest.includes("--help")) {
    const i = PROFILE_COMMANDS.indexOf(command);
    if (i >= 0) {
      out.log(`Usage: umem${PROFILE_USAGE[2 * i].slice(1)}\n\n${PROFILE_USAGE[2 * i + 1].trim()}.`);
      return 0;
    }
  }
  try {
    if (command === "profile") return profileTrace(rest, out);
    if (command === "replay") return replayTrace(rest, out);
    throw new ProfileUsageError(`unknown command '${command}'`);
  } catch (e) {
    if (e instanceof ProfileUsageError || e instanceof UmemError) {
      out.error(`umem: ${e instanceof ProfileUsageError ? `${command}: ` : ""}${e.message}`);
    } else {
      out.error(`umem: ${command}: ${e instanceof Error ? e.message : String(e)}`.split("\n")[0]);
    }
    return 2;
  }
}

/** `umem profile TRACE`. */
function profileTrace(args: readonly string[], out: ProfileOutput): number {
  const p = parse(args, ["--window", "--temporary"]);
  if (p.positional.length !== 1) {
    throw new ProfileUsageError(
      p.positional.length === 0
        ? "missing TRACE (usage: umem profile TRACE [--window N] [-f json])"
        : `unexpected argument '${p.positional[1]}'`,
    );
  }
  const window = p.options.has("--window")
    ? count(p.options.get("--window")!, "--window", 1, 1 << 30)
    : undefined;
  const temporary = p.options.has("--temporary")
    ? count(p.options.get("--temporary")!, "--temporary", 0, 1 << 30)
    : undefined;
  const trace = openTrace(p.positional[0]);
  const s = summary(trace, temporary === undefined ? {} : { temporaryWindow: temporary });
  const ph = phases(trace, window === undefined ? {} : { window });
  if (p.json) out.log(JSON.stringify({ summary: s, phases: ph }, null, 2));
  else {
    out.log(formatSummary(s));
    out.log(`PHASES: ${ph.length}`);
    for (const x of ph) {
      out.log(
        `phase records=${x.start}..${x.end}:time_us=${Math.round(x.startTime)}..${
          Math.round(x.endTime)
        }:busy=${x.busyBefore}..${x.busyAfter}:${x.character}`,
      );
    }
  }
  return 0;
}

/** `umem replay TRACE --alloc ...`. */
function replayTrace(args: readonly string[], out: ProfileOutput): number {
  const p = parse(args, ["--alloc", "--sample"]);
  if (p.positional.length !== 1) {
    throw new ProfileUsageError(
      p.positional.length === 0
        ? "missing TRACE (usage: umem replay TRACE [--alloc heap,libc,...] [-f json])"
        : `unexpected argument '${p.positional[1]}'`,
    );
  }
  const known = allocatorNames();
  const names = (p.options.get("--alloc") ?? known.join(",")).split(",").map((s) => s.trim())
    .filter((s) => s !== "");
  if (names.length === 0) throw new ProfileUsageError("--alloc: no allocator named");
  for (const n of names) {
    if (!known.includes(n)) {
      throw new ProfileUsageError(`unknown allocator '${n}' (expected ${known.join(", ")})`);
    }
  }
  const sample = p.options.has("--sample")
    ? count(p.options.get("--sample")!, "--sample", 1, 1 << 30)
    : 8;
  const trace = openTrace(p.positional[0]);
  const results = names.map((n) => replay(trace, n, { sampleEvery: sample }));
  if (p.json) out.log(JSON.stringify({ records: trace.count, results }, null, 2));
  else {
    out.log(`replay of ${p.positional[0]}: ${trace.count} records`);
    out.log(formatReplayTable(results));
  }
  return 0;
}

/**
 * Why reading a file failed, in a few words for a command line's one-line error: the common
 * `code`s named, else the first line of the message.
 *
 * @param e what the read threw
 * @returns "no such file", "is a directory", "permission denied" or the message's first line
 */
export function readFailure(e: unknown): string {
  const err = e as { code?: string; message?: string };
  return err.code === "ENOENT"
    ? "no such file"
    : err.code === "EISDIR"
    ? "is a directory"
    : err.code === "EACCES" || err.code === "EPERM"
    ? "permission denied"
    : String(err.message ?? e).split("\n")[0];
}
