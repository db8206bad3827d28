/**
 * What the model-based fuzzers share: the fast-check runner that turns a failure into a seed,
 * a replay path and a shrunk command list; the command-line flags (`--runs N --seed S
 * --target T`); and the identity pattern every live block is filled with and checked against.
 *
 * Theory. A fuzzer is a *target*: an arbitrary of command lists and a function that runs one
 * list against a fresh heap and a model, throwing on any disagreement. {@linkcode runTarget}
 * runs it `runs` times from `seed`; fast-check shrinks a failing list to a small one, and the
 * seed and path printed by {@linkcode printResult} replay it (`fc.check(..., { seed, path })`).
 *
 * Invariants. Block `id` holds byte `(id * 151 + i) & 255` at offset `i`: two blocks with
 * different ids differ in their first byte unless `id` is equal modulo 256, so a block written
 * through another block's address, or handed out twice, shows up as a changed byte.
 *
 * Lock order: none (single-threaded tests).
 *
 * @module
 */

import fc from "fast-check";
import { Heap } from "../../mod.ts";

/** A heap, as the pattern helpers need it: its bytes, refreshed after growth by `sync`. */
export interface Bytes {
  /** Refreshes the views after the buffer grew. */
  sync(): void;
  /** The heap's bytes. */
  readonly u8: Uint8Array;
}

/** What {@linkcode runTarget} found. */
export interface FuzzResult<C> {
  /** Runs made. */
  runs: number;
  /** Commands run, over all runs (shrinking included). */
  ops: number;
  /** The shrunk counterexample, when a run failed. */
  failure?: { seed: number; path: string; commands: C[]; error: string };
}

/** A fuzz target: how to draw a command list and how to run one. */
export interface Target<C> {
  /** The name `--target` selects. */
  name: string;
  /** Command lists. */
  commands: fc.Arbitrary<C[]>;
  /** Runs one list on a fresh heap; throws on any disagreement with the model. */
  run(commands: C[]): void;
}

/** Block `id`'s pattern source: offset `(id * 151) & 255` of it, then 256 bytes on. */
const PATTERN = Uint8Array.from({ length: 512 }, (_, i) => i & 255);

/**
 * Fills `size` bytes at `addr` with block `id`'s pattern.
 *
 * @param heap the heap
 * @param id the block's identity
 * @param addr its address
 * @param size its size
 */
export function fillPattern(heap: Bytes, id: number, addr: number, size: number): void {
  heap.sync();
  const off = (id * 151) & 255;
  for (let i = 0; i < size; i += 256) {
    const n = Math.min(256, size - i);
    heap.u8.set(PATTERN.subarray(off, off + n), addr + i);
  }
}

/**
 * Checks the first `size` bytes at `addr` against block `id`'s pattern.
 *
 * @param heap the heap
 * @param id the block's identity
 * @param addr its address
 * @param size bytes to check
 * @param what what the check is for, for the message
 * @throws {Error} naming the block and the first changed offset
 */
export function checkPattern(
  heap: Bytes,
  id: number,
  addr: number,
  size: number,
  what: string,
): void {
  heap.sync();
  const u8 = heap.u8, off = (id * 151) & 255;
  for (let i = 0; i < size; i++) {
    if (u8[addr + i] !== ((off + i) & 255)) {
      throw new Error(
        `${what}: block ${id} at ${addr} (${size} B) changed at +${i}: ${u8[addr + i]}, expected ${
          (off + i) & 255
        }`,
      );
    }
  }
}

/** Throws an Error with `message`: the model and the heap disagree. */
export function fail(message: string): never {
  throw new Error(message);
}

/**
 * Fails unless `blocks` (address, size) are pairwise apart; `[lo, hi)` of the newest is
 * compared with every other.
 *
 * @param what the new block, for the message
 * @param lo its first byte
 * @param hi one past its last byte
 * @param others the live blocks as [first byte, one past the last, name]
 */
export function checkApart(
  what: string,
  lo: number,
  hi: number,
  others: Iterable<readonly [number, number, string]>,
): void {
  for (const [a, b, name] of others) {
    if (lo < b && a < hi) fail(`${what} [${lo}, ${hi}) overlaps ${name} [${a}, ${b})`);
  }
}

/** Bytes filled and checked at each end of a block of the other slot. */
const OTHER_EDGE = 4096;

/**
 * A second worker slot (a handle attached in this thread) whose big blocks grow the heap past
 * the first handle's views: a module's arenas, contexts or collections on the first handle must
 * then sync before they touch memory the heap hands them, and never keep a view of their own.
 * It keeps at most `keep` blocks, each filled with its identity's pattern at both ends (a
 * whole block of megabytes costs a fuzz run more than the rest of its commands), and gives the
 * oldest back through either handle.
 */
export class OtherSlot {
  /** The live blocks, oldest first. */
  readonly blocks: { id: number; addr: number; size: number }[] = [];
  #other: Heap | undefined;

  /**
   * @param heap the first handle
   * @param keep the most blocks held at once
   */
  constructor(readonly heap: Heap, readonly keep: number) {}

  /**
   * Allocates a block of `size` bytes with identity `id`, apart from every range `live()` gives
   * (this slot's blocks among them), asked once the oldest block is back.
   */
  grow(id: number, size: number, live: () => Iterable<readonly [number, number, string]>): void {
    const other = this.#other ??= Heap.attach(this.heap.buffer);
    if (this.blocks.length >= this.keep) {
      const b = this.blocks.shift()!;
      this.check(b, "the other slot's block");
      (b.id % 2 === 0 ? this.heap : other).free(b.addr, b.size); // (the first may be stale)
    }
    const addr = other.alloc(size);
    checkApart("the other slot's block", addr, addr + size, live());
    const b = { id, addr, size };
    const edge = Math.min(OTHER_EDGE, size);
    fillPattern(other, id, addr, edge);
    fillPattern(other, id, addr + size - edge, edge);
    this.blocks.push(b);
  }

  /** The live blocks as checkApart wants them. */
  *ranges(): Iterable<readonly [number, number, string]> {
    for (const b of this.blocks) yield [b.addr, b.addr + b.size, `other slot's block ${b.id}`];
  }

  /** Checks and frees every block, then detaches the slot (its magazines go to the depot). */
  finish(): void {
    for (const b of this.blocks.splice(0)) {
      this.check(b, "the other slot's block at the end");
      this.#other!.free(b.addr, b.size);
    }
    this.#other?.detach();
  }

  private check(b: { id: number; addr: number; size: number }, what: string): void {
    const edge = Math.min(OTHER_EDGE, b.size);
    checkPattern(this.#other!, b.id, b.addr, edge, what);
    checkPattern(this.#other!, b.id, b.addr + b.size - edge, edge, what);
  }
}

/**
 * Fails when `problems` (from `heap.verify()` or `ctx.check()`) is not empty.
 *
 * @param what where the check ran
 * @param problems the lines found
 */
export function expectClean(what: string, problems: readonly string[]): void {
  if (problems.length > 0) fail(`${what}: ${problems.join("; ")}`);
}

/**
 * Runs `fn`, which must throw a `UmemError` (any object with a string `kind`) whose kind is one
 * of `kinds`; anything else (no error, a bare `TypeError`) fails.
 *
 * @param what the operation, for the message
 * @param kinds the kinds allowed
 * @param fn the operation
 * @returns the kind thrown
 */
export function expectKind(what: string, kinds: readonly string[], fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const kind = (e as { kind?: unknown }).kind;
    if (typeof kind === "string" && kinds.includes(kind)) return kind;
    fail(`${what}: expected a UmemError ${kinds.join("|")}, got ${String(e)}`);
  }
  return fail(`${what}: expected a UmemError ${kinds.join("|")}, but it succeeded`);
}

/**
 * The kind of a `UmemError` thrown by `fn` when it is one of `kinds`, or null when `fn`
 * returned (its value in `out.value`); anything else thrown is rethrown.
 *
 * @param kinds the kinds a refusal may have
 * @param fn the operation
 * @returns the refusal's kind, or null on success
 */
export function attempt<T>(
  kinds: readonly string[],
  fn: () => T,
  out: { value?: T } = {},
): string | null {
  try {
    out.value = fn();
    return null;
  } catch (e) {
    const kind = (e as { kind?: unknown }).kind;
    if (typeof kind === "string" && kinds.includes(kind)) return kind;
    throw e;
  }
}

/**
 * Runs `runs` random command lists of `target` from `seed`.
 *
 * @param target the fuzzer
 * @param options runs and seed
 * @returns runs and operations made, and the shrunk counterexample when one failed
 */
export function runTarget<C>(
  target: Target<C>,
  { runs, seed }: { runs: number; seed: number },
): FuzzResult<C> {
  let ops = 0;
  const out = fc.check(
    fc.property(target.commands, (cmds) => {
      ops += cmds.length;
      target.run(cmds);
    }),
    { seed, numRuns: runs },
  );
  const result: FuzzResult<C> = { runs: out.numRuns, ops };
  if (out.failed && out.counterexample !== null) {
    const err = out.errorInstance;
    result.failure = {
      seed: out.seed,
      path: out.counterexamplePath ?? "",
      commands: out.counterexample[0],
      error: err instanceof Error ? err.message : String(err),
    };
  }
  return result;
}

/** The command line of the fuzzers. */
export interface Flags {
  /** Runs per target (default 200). */
  runs: number;
  /** The seed (default: from the clock, printed). */
  seed: number;
  /** The target (default "all"). */
  target: string;
}

/**
 * Reads `--runs N`, `--seed S` and `--target T` (also as `--runs=N`).
 *
 * @param args the arguments
 * @returns the flags, defaults filled in
 * @throws {Error} for an unknown flag or a value that is not a whole number
 */
export function parseFlags(args: readonly string[]): Flags {
  const flags: Flags = { runs: 200, seed: Date.now() & 0x7fffffff, target: "all" };
  for (let i = 0; i < args.length; i++) {
    let a = args[i], v: string | undefined;
    if (a === "--") continue;
    if (a.includes("=")) [a, v] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    if (a !== "--runs" && a !== "--seed" && a !== "--target") {
      throw new Error(`unknown argument '${a}' (expected --runs N, --seed S, --target T)`);
    }
    v ??= args[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === "--target") flags.target = v;
    else {
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || (a === "--runs" && n < 1)) {
        throw new Error(`${a} wants a whole number${a === "--runs" ? " ≥ 1" : ""}, got '${v}'`);
      }
      if (a === "--runs") flags.runs = n;
      else flags.seed = n;
    }
  }
  return flags;
}

/**
 * Prints one target's outcome: a line when it passed; the seed, the path, the error and the
 * shrunk command list when it failed.
 *
 * @param name the target
 * @param r its result
 * @param seed the seed it ran from
 * @param log where lines go
 * @returns whether it passed
 */
export function printResult<C>(
  name: string,
  r: FuzzResult<C>,
  seed: number,
  log: (line: string) => void = console.log,
): boolean {
  if (r.failure === undefined) {
    log(`fuzz ${name}: ${r.runs} runs, ${r.ops} operations, seed ${seed}: ok`);
    return true;
  }
  log(`fuzz ${name}: FAILED after ${r.runs} runs, ${r.ops} operations`);
  log(`seed: ${r.failure.seed}`);
  log(`path: ${r.failure.path}`);
  log(`error: ${r.failure.error}`);
  log(`commands (shrunk): ${JSON.stringify(r.failure.commands)}`);
  return false;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;

/** The program's arguments, under Deno or Bun/Node. */
export function programArgs(): string[] {
  return g.Deno?.args ?? g.process?.argv.slice(2) ?? [];
}

/** Ends the program with `code`, under Deno or Bun/Node. */
export function exit(code: number): never {
  if (g.Deno !== undefined) g.Deno.exit(code);
  g.process.exit(code);
  throw new Error("unreachable");
}
