/**
 * The bad-input tables' shared runner (issue 14): every `tests/badinput_*_test.ts` writes its
 * rows as `[label, expect, run, prep?, changes?]` and this runs each row as a test of its own on
 * a fresh fixture: `expect` is "ok" (the call is valid), "fs:CODE" (the runtime's own file
 * error, such as `fs:ENOENT`) or the `UmemError` kind the call must raise; a refused call must
 * leave the fixture's figures as they were (unless the row says it `changes` them, when the
 * table's own `changed` check runs instead), and the table's `check` (every `verify()`) runs after
 * every row.
 *
 * @module
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { throwsKind } from "./helpers.ts";
import { UmemError } from "../mod.ts";

/** The seven bad numbers of the issue: 0, -1, NaN, 1.5, 2**32, Infinity and a string. */
export const NUMBERS: [string, unknown][] = [
  ["0", 0],
  ["-1", -1],
  ["NaN", NaN],
  ["1.5", 1.5],
  ["2**32", 2 ** 32],
  ["Infinity", Infinity],
  ['"8" (a string)', "8"],
];

/**
 * A row: what it passes, what must happen ("ok", "fs:CODE" or a kind), the call, what to do
 * first (before the figures a refusal must leave alone are taken), and whether a refusal may
 * change those figures.
 */
export type TableRow<F> = [
  label: string,
  expect: string,
  run: (f: F) => unknown,
  prep?: (f: F) => void,
  changes?: boolean,
];

/** How a table makes its fixture, what a refusal must not change, and what it checks after. */
export interface TableSpec<F> {
  /** A fresh fixture for each row. */
  fixture(): F;
  /** The figures a refused call must leave as they were. */
  figures(f: F): unknown;
  /** What those figures describe, for the failure message ("the heap", "the arena"). */
  what: string;
  /** Run after every row: every `verify()` of the fixture must be empty. */
  check(f: F): void;
  /** Run after a refusal of a row that `changes` the figures, instead of comparing them. */
  changed?(f: F): void;
  /**
   * The figures to compare with, when a row takes them itself (after its own setup, inside
   * `run`); by default they are taken after `prep`, before `run`.
   */
  before?(f: F): unknown;
}

/** Asserts that `fn` throws the runtime's own file error `code`, not a UmemError. */
function throwsFsError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, "expected the file system's error");
  assert.ok(!(caught instanceof UmemError), `got ${String(caught)}`);
  assert.equal((caught as { code?: string }).code, code);
}

/**
 * A table runner for one module's fixture.
 *
 * @param spec the fixture, figures and checks
 * @returns `table(entry, rows)`, which describes `entry` with a test per row
 */
export function badInputTable<F>(
  spec: TableSpec<F>,
): (entry: string, rows: readonly TableRow<F>[]) => void {
  return (entry, rows) => {
    describe(entry, () => {
      for (const [label, expect, run, prep, changes] of rows) {
        it(`${label} → ${expect}`, () => {
          const f = spec.fixture();
          prep?.(f);
          const taken = spec.figures(f);
          if (expect === "ok") run(f);
          else if (expect.startsWith("fs:")) throwsFsError(() => run(f), expect.slice(3));
          else {
            throwsKind(() => run(f), expect);
            if (changes) spec.changed?.(f);
            else {
              const before = spec.before ? spec.before(f) : taken;
              assert.deepEqual(spec.figures(f), before, `a refused call changed ${spec.what}`);
            }
          }
          spec.check(f);
        });
      }
    });
  };
}
