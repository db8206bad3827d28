/**
 * The `umem` command: mdb's umem dcmds over a snapshot (`.ums` file), with no live program.
 *
 * ```sh
 * deno task umem --dump demo.ums findleaks
 * deno run --allow-read --allow-write cli/umem.ts --dump demo.ums whatis 0x17d000
 * bun cli/umem.ts --dump demo.ums map -o heap.svg --kib 32
 * ```
 *
 * Exit status: 0 on success, 1 when `findleaks` found leaks or `verify` problems, 2 for bad
 * arguments or a file that
 * cannot be read or is not a sound snapshot (one line on stderr says what was wrong).
 *
 * @module
 */

// The public face first: the core's modules import each other in a cycle that only evaluates
// in the right order when entered through it.
import {
  CorruptImageError,
  inspect,
  type Inspector,
  readSnapshot,
  type Snapshot,
  UmemError,
} from "../mod.ts";
import { writeFileSync } from "node:fs";
import process from "node:process";
import { formatTransaction } from "../core/debug.ts";
import { hex } from "../core/errors.ts";
import { figuresLine, renderMap } from "./map.ts";
import { PROFILE_COMMANDS, PROFILE_USAGE, profileCommand, readFailure } from "../profile/cli.ts";

/** Where `main` writes: the console by default. */
export interface Output {
  /** Writes a line of output. */
  log(text: string): void;
  /** Writes a line of diagnostics. */
  error(text: string): void;
}

/** Raised for a bad command line: exit status 2 with the message. */
class UsageError extends Error {}

interface Command {
  usage: string;
  summary: string;
  help: string;
}

const COMMANDS: Record<string, Command> = {
  findleaks: {
    usage: "findleaks [-f json]",
    summary: "allocated buffers no root reaches, grouped by cache and allocation stack",
    help:
      "Marks every buffer reachable from the heap's roots (registered ranges and pinned addresses)\n" +
      "through any chain of pointers, interior pointers included, and reports the rest as leaks,\n" +
      "grouped into classes by cache and allocation stack (stacks need UMEM_DEBUG=audit).\n" +
      "Buffers in magazines are not allocated: they are counted and skipped.\n" +
      "Exit status 1 when there are leaks, 0 when there are none.",
  },
  verify: {
    usage: "verify [-f json]",
    summary: "every arena, slab and debugged buffer checked, as ::umem_verify",
    help: "Checks the image as heap.verify() does: every arena's segments, every cache's slabs\n" +
      "and state bytes, and in a debugged cache every free buffer's pattern and every allocated\n" +
      "buffer's redzone; a cache per line, clean or how many problems name it, then each problem.\n" +
      "Exit status 1 when there are problems, 0 when the image is sound.",
  },
  status: {
    usage: "status [-f json]",
    summary: "UMEM_DEBUG and UMEM_LOGGING in force, logs, errors, workers, the cache table",
    help: "The heap's settings and health, then the caches that hold or held buffers.",
  },
  caches: {
    usage: "caches [-f json]",
    summary: "every cache: CACHE BUFSIZE INUSE TOTAL MEMORY ALLOCS FAIL",
    help: "A row per cache, those that never allocated included (::umastat).",
  },
  arenas: {
    usage: "arenas [-f json]",
    summary: "every vmem arena: ARENA INUSE IMPORTED TOTAL ALLOCS FAIL",
    help: "A row per vmem arena (::vmem).",
  },
  walk: {
    usage: "walk CACHE [-f json]",
    summary: "every buffer of a cache, with its state",
    help: "A line per buffer of the cache named CACHE, in address order:\n" +
      "ADDRESS  allocated|free|cached (cached: constructed, in a magazine).",
  },
  whatis: {
    usage: "whatis ADDR [-f json]",
    summary: "which cache, buffer and offset an address is in, with its audit record",
    help:
      "What ADDR (hex 0x... or decimal) is: a buffer of a cache (its state, slab, bufctl and\n" +
      "last transactions), slab metadata, heap metadata, an arena segment, or nothing.",
  },
  bufctl: {
    usage: "bufctl ADDR [-f json]",
    summary: "the audit record of the buffer holding an address: last alloc and free",
    help: "The buffer's last transactions, newest first: operation, worker, time and stack.\n" +
      "Needs UMEM_DEBUG=audit on the heap that was snapshotted.",
  },
  log: {
    usage:
      "log [transaction|contents|fail] [--cache NAME] [--buffer ADDR] [--worker N] [--limit N] [-f json]",
    summary: "a log of UMEM_LOGGING (the transaction log by default), newest first, filtered",
    help: "A log of UMEM_LOGGING, newest first:\n" +
      "  transaction    each alloc and free: worker, buffer, size, cache, stack (the default)\n" +
      "  contents       the first bytes of each buffer as it was when freed, in hex and text\n" +
      "  fail           each allocation from a cache or firewalled that failed (no memory, or\n" +
      "                 UMEM_DEBUG=mtbf), with its stack; as libumem's, not those above the caches\n" +
      "  --cache NAME   only records of that cache\n" +
      "  --buffer ADDR  only records of the buffer holding ADDR (not for the fail log)\n" +
      "  --worker N     only records of worker slot N\n" +
      "  --limit N      show at most N records in the text (default 100)",
  },
  map: {
    usage: "map [-o FILE.svg] [--kib N] [-f json]",
    summary: "draw the heap as an SVG: a row per N KiB, allocated thick, free thin",
    help: "Draws the heap as the Vmalloc paper's Figure 6: each row is N KiB of the heap\n" +
      "(default 64), allocated runs thick and coloured by cache or arena, buffers cached in\n" +
      "magazines medium, free runs thin, metadata grey; the title gives the extent, the bytes\n" +
      "busy and free and the largest free run.\n" +
      "  -o FILE    the SVG to write (default heap.svg)\n" +
      "  --kib N    KiB of heap per row (default 64)",
  },
};

const USAGE = [
  "Usage: umem --dump FILE.ums <command> [args] [-f json]",
  "",
  "Analyses a heap snapshot (a .ums file from writeSnapshot or heap.snapshot()) with no live",
  "program, as mdb's umem dcmds do.",
  "",
  "Commands:",
  ...Object.values(COMMANDS).map((c) => `  ${c.usage}\n      ${c.summary}`),
  "",
  "Commands over a trace (.umt from the profile module, or VMTRACE), with no --dump:",
  ...PROFILE_USAGE,
  "",
  "Options:",
  "  --dump FILE   the snapshot to read (required)",
  "  -f json       print the data as JSON instead of text",
  "  -h, --help    this help; `umem <command> --help` for a command's",
  "",
  "Addresses are accepted in hex (0x...) or decimal and printed in hex.",
  "Exit status: 0 ok, 1 findleaks found leaks or verify found problems, 2 bad arguments or an",
  "unreadable or corrupt file.",
].join("\n");

/** Parses an address: hex with 0x, or decimal. */
function parseAddr(s: string | undefined, what: string): number {
  if (s === undefined) throw new UsageError(`${what}: missing address`);
  const t = s.trim();
  const v = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(v) || v > 0xffffffff) {
    throw new UsageError(`${what}: '${s}' is not an address (hex 0x... or decimal)`);
  }
  return v;
}

/** Parses a whole number in [min, max]. */
function parseCount(s: string | undefined, what: string, min: number, max: number): number {
  if (s === undefined) throw new UsageError(`${what}: missing number`);
  const v = /^\d+$/.test(s.trim()) ? Number(s.trim()) : NaN;
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new UsageError(`${what}: '${s}' is not a whole number in ${min}..${max}`);
  }
  return v;
}

interface Parsed {
  dump?: string;
  json: boolean;
  help: boolean;
  command?: string;
  positional: string[];
  options: Map<string, string>;
}

/** Options each command takes, with a value. */
const VALUE_OPTIONS: Record<string, string[]> = {
  log: ["--cache", "--buffer", "--worker", "--limit"],
  map: ["-o", "--kib"],
};
/** Optional positional arguments each command takes after its own, with their values. */
const OPTIONAL_ARGS: Record<string, [string, string[]]> = {
  log: ["log", ["transaction", "contents", "fail"]],
};
/** Positional arguments each command takes. */
const COMMAND_ARGS: Record<string, string[]> = {
  findleaks: [],
  verify: [],
  status: [],
  caches: [],
  arenas: [],
  walk: ["CACHE (see umem caches)"],
  whatis: ["address"],
  bufctl: ["address"],
  log: [],
  map: [],
};
const ALL_VALUE_OPTIONS = new Set(Object.values(VALUE_OPTIONS).flat());

function parseArgs(args: string[]): Parsed {
  const p: Parsed = { json: false, help: false, positional: [], options: new Map() };
  for (let i = 0; i < args.length; i++) {
    let a = args[i];
    let inline: string | undefined;
    if (a.startsWith("--") && a.includes("=")) {
      inline = a.slice(a.indexOf("=") + 1);
      a = a.slice(0, a.indexOf("="));
    }
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = args[++i];
      if (v === undefined) throw new UsageError(`option ${a} needs a value`);
      return v;
    };
    if (a === "-h" || a === "--help") p.help = true;
    else if (a === "--dump" || a === "-d") p.dump = value();
    else if (a === "-f" || a === "--format") {
      const f = value();
      if (f !== "json" && f !== "text") {
        throw new UsageError(`-f: unknown format '${f}' (expected json or text)`);
      }
      p.json = f === "json";
    } else if (a.startsWith("-") && a.length > 1) {
      if (!ALL_VALUE_OPTIONS.has(a)) {
        throw new UsageError(`unknown option '${a}' (try umem --help)`);
      }
      if (p.options.has(a)) throw new UsageError(`option ${a} given twice`);
      p.options.set(a, value());
    } else if (p.command === undefined) {
      if (!Object.hasOwn(COMMANDS, a)) {
        throw new UsageError(`unknown command '${a}' (try umem --help)`);
      }
      p.command = a;
    } else p.positional.push(a);
  }
  for (const o of p.options.keys()) {
    if (p.command !== undefined && !(VALUE_OPTIONS[p.command] ?? []).includes(o)) {
      throw new UsageError(`option ${o} does not apply to ${p.command}`);
    }
  }
  return p;
}

function open(path: string): Snapshot {
  try {
    return readSnapshot(path);
  } catch (e) {
    if (e instanceof CorruptImageError) throw e;
    throw new UsageError(`cannot read ${path}: ${readFailure(e)}`);
  }
}

/** An action on a snapshot, its arguments already checked; returns the exit status. */
type Action = (ins: Inspector, snap: Snapshot, out: Output) => number;

/** Checks the command's arguments, before the snapshot is read, and returns what to do. */
function plan(p: Parsed, dump: string): Action {
  const json = (out: Output, v: unknown) => out.log(JSON.stringify(v, null, 2));
  const command = p.command!;
  const positional = COMMAND_ARGS[command];
  if (p.positional.length < positional.length) {
    throw new UsageError(
      `${command}: missing ${positional[p.positional.length]} (usage: umem --dump FILE ${
        COMMANDS[command].usage
      })`,
    );
  }
  const optional = OPTIONAL_ARGS[command];
  const most = positional.length + (optional !== undefined ? 1 : 0);
  if (p.positional.length > most) {
    throw new UsageError(
      `${command}: unexpected argument '${p.positional[most]}' (usage: umem --dump FILE ${
        COMMANDS[command].usage
      })`,
    );
  }
  const extra = p.positional[positional.length];
  if (optional !== undefined && extra !== undefined && !optional[1].includes(extra)) {
    throw new UsageError(
      `${command}: unknown ${optional[0]} '${extra}' (expected ${optional[1].join(", ")})`,
    );
  }
  switch (command) {
    case "findleaks":
      return (ins, _snap, out) => {
        const report = ins.findleaks();
        if (p.json) json(out, report);
        else out.log(ins.formatFindleaks(report));
        return report.total_buffers > 0 ? 1 : 0;
      };
    case "verify":
      return (ins, _snap, out) => {
        const problems = ins.verify();
        if (p.json) json(out, problems);
        else out.log(ins.formatVerify(problems));
        return problems.length > 0 ? 1 : 0;
      };
    case "status":
      return (ins, snap, out) => {
        if (p.json) {
          json(out, { ...ins.status(), snapshot: { time: snap.time, runtime: snap.runtime } });
        } else out.log(ins.formatStatus());
        return 0;
      };
    case "caches":
      return (ins, _snap, out) => {
        if (p.json) json(out, ins.caches());
        else out.log(ins.formatCaches(true));
        return 0;
      };
    case "arenas":
      return (ins, _snap, out) => {
        if (p.json) json(out, ins.arenas());
        else out.log(ins.formatArenas());
        return 0;
      };
    case "walk": {
      const name = p.positional[0];
      return (ins, _snap, out) => {
        const entries = ins.walk(name);
        if (p.json) json(out, entries);
        else out.log(entries.map((b) => `${hex(b.address)}  ${b.state}`).join("\n"));
        return 0;
      };
    }
    case "whatis": {
      const addr = parseAddr(p.positional[0], "whatis");
      return (ins, _snap, out) => {
        const w = ins.whatis(addr);
        if (p.json) json(out, w);
        else out.log(w.text);
        return 0;
      };
    }
    case "bufctl": {
      const addr = parseAddr(p.positional[0], "bufctl");
      return (ins, _snap, out) => bufctl(ins, addr, p.json, out);
    }
    case "log": {
      const o = p.options;
      const cache = o.get("--cache");
      const buffer = o.has("--buffer") ? parseAddr(o.get("--buffer"), "log --buffer") : undefined;
      const worker = o.has("--worker")
        ? parseCount(o.get("--worker"), "log --worker", 0, 63)
        : undefined;
      const limit = o.has("--limit")
        ? parseCount(o.get("--limit"), "log --limit", 0, 1 << 30)
        : 100;
      const which = p.positional[0] ?? "transaction";
      if (which === "fail" && buffer !== undefined) {
        throw new UsageError("log fail: --buffer does not apply (a failed allocation has none)");
      }
      return (ins, _snap, out) => {
        const filter: { cache?: string; buffer?: number; worker?: number } = {};
        if (cache !== undefined) filter.cache = cache;
        if (worker !== undefined) filter.worker = worker;
        if (buffer !== undefined) {
          // Any address in a buffer stands for the buffer.
          const w = ins.whatis(buffer);
          filter.buffer = w.kind === "buffer" && w.buffer !== undefined ? w.buffer : buffer;
        }
        if (which === "fail") {
          const entries = ins.failLog(filter);
          if (p.json) json(out, entries);
          else out.log(ins.formatFailLog(entries, limit));
        } else if (which === "contents") {
          const entries = ins.contentsLog(filter);
          if (p.json) json(out, entries);
          else out.log(ins.formatContentsLog(entries, limit));
        } else {
          const entries = ins.log(filter);
          if (p.json) json(out, entries);
          else out.log(ins.formatLog(entries, limit));
        }
        return 0;
      };
    }
    case "map": {
      const file = p.options.get("-o") ?? "heap.svg";
      const kib = p.options.has("--kib")
        ? parseCount(p.options.get("--kib"), "map --kib", 1, 1 << 21)
        : 64;
      return (_ins, snap, out) => {
        const { svg, map, rows } = renderMap(snap, { kib, title: `umem heap map of ${dump}` });
        try {
          writeFileSync(file, svg);
        } catch (e) {
          const err = e as { code?: string; message?: string };
          throw new UsageError(`map: cannot write ${file}: ${err.code ?? err.message ?? e}`);
        }
        if (p.json) json(out, { file, kib, rows, figures: map.figures, legend: map.legend });
        else {
          out.log(`map: wrote ${file}: ${rows} rows of ${kib} KiB`);
          out.log(`map: ${figuresLine(map.figures)}`);
        }
        return 0;
      };
    }
  }
  throw new UsageError(`unknown command '${command}' (try umem --help)`);
}

/** `bufctl`: the audit record of the buffer holding `addr`. */
function bufctl(ins: Inspector, addr: number, asJson: boolean, out: Output): number {
  const w = ins.whatis(addr);
  if (w.kind !== "buffer" || w.buffer === undefined) {
    if (asJson) {
      out.log(
        JSON.stringify({ address: addr, buffer: null, bufctl: null, transactions: [] }, null, 2),
      );
    } else out.log(`${w.text}\n${hex(addr)}: not a buffer of a umem cache: no bufctl`);
    return 0;
  }
  const buf = w.buffer;
  const txs = ins.bufctl(addr);
  if (asJson) {
    const data = {
      address: addr,
      buffer: buf,
      bufctl: w.bufctl ?? 0,
      cache: w.name,
      state: w.state,
      size: w.size,
      transactions: txs,
    };
    out.log(JSON.stringify(data, null, 2));
    return 0;
  }
  const lines = [
    `bufctl ${hex(w.bufctl ?? 0)} of buffer ${hex(buf)} (${w.name}, ${w.size} bytes, ${
      (w.state ?? "").toUpperCase()
    })`,
  ];
  if (txs.length === 0) {
    lines.push(
      w.bufctl
        ? "no transactions recorded (enable UMEM_DEBUG=audit)"
        : "no audit record: the cache does not debug (enable UMEM_DEBUG=audit)",
    );
  } else lines.push(...txs.map((t) => formatTransaction(buf, t)));
  out.log(lines.join("\n"));
  return 0;
}

/**
 * Runs the `umem` command.
 *
 * @param args the command line, without the program's name
 * @param out where to write (the console by default)
 * @returns the exit status: 0 ok, 1 leaks or problems found, 2 bad arguments or a bad file
 */
export function main(args: string[], out: Output = console): number {
  // `profile` and `replay` read a trace, not a snapshot: profile/cli.ts runs them. The command
  // is the first word that is neither an option nor an option's value (every option but -h
  // takes one: `--cache replay log` is the command log).
  let at = -1;
  for (let i = 0; i < args.length && at < 0; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") continue;
    if (a.startsWith("-") && a.length > 1) {
      if (!(a.startsWith("--") && a.includes("="))) i++;
      continue;
    }
    at = i;
  }
  if (at >= 0 && PROFILE_COMMANDS.includes(args[at])) {
    return profileCommand([args[at], ...args.slice(0, at), ...args.slice(at + 1)], out);
  }
  let p: Parsed;
  try {
    p = parseArgs(args);
  } catch (e) {
    out.error(`umem: ${(e as Error).message}`);
    return 2;
  }
  if (p.help) {
    if (p.command === undefined) out.log(USAGE);
    else {
      const c = COMMANDS[p.command];
      out.log(`Usage: umem --dump FILE.ums ${c.usage}\n\n${c.summary}.\n\n${c.help}`);
    }
    return 0;
  }
  if (p.command === undefined) {
    out.error(
      args.length === 0
        ? "umem: missing command (try umem --help)"
        : "umem: missing command after the options (try umem --help)",
    );
    return 2;
  }
  if (p.dump === undefined) {
    out.error(`umem: ${p.command}: --dump FILE.ums is required (try umem --help)`);
    return 2;
  }
  const dump = p.dump;
  try {
    const action = plan(p, dump);
    const snap = open(dump);
    return action(inspect(snap), snap, out);
  } catch (e) {
    if (e instanceof CorruptImageError) {
      out.error(`umem: ${dump}: corrupt snapshot: ${e.message.split("\n")[0]}`);
    } else if (e instanceof UsageError) {
      out.error(`umem: ${e.message}`);
    } else if (e instanceof UmemError) {
      out.error(`umem: ${e.message.split("\n")[0]}`);
    } else {
      // A damaged image that got past the checksums and the header checks.
      const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      out.error(`umem: ${dump}: cannot analyse the snapshot (${msg.split("\n")[0]})`);
    }
    return 2;
  }
}

if (import.meta.main) {
  process.exitCode = main(process.argv.slice(2));
}
