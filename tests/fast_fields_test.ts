/**
 * The hot classes give every number and boolean field a value where it is declared. A field
 * declared with only a type is first defined as `undefined` (class-field semantics, in Deno and
 * Bun alike), and V8 then keeps it tagged: every load of it on a fast path checks a Smi tag
 * (seen in `--v8-flags=--trace-turbo-graph`'s instruction sequence; core/image.ts's HeapView).
 * This test reads the classes' sources, so a field added without a value fails here, not in a
 * benchmark.
 *
 * Run: `npx deno test --allow-read tests/fast_fields_test.ts` or `npx bun test tests/fast_fields_test.ts`.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The files whose classes sit on an allocation, free, borrow or mark fast path. */
const HOT = [
  "core/image.ts",
  "core/heap.ts",
  "core/cache.ts",
  "core/vmem.ts",
  "budget/context.ts",
  "gc/mark.ts",
  "gc/collector.ts",
  "own/guard.ts",
  "own/ledger.ts",
  "own/context.ts",
];

/** Number and boolean fields declared with a type and no value, in class bodies of `source`. */
function fieldsWithoutValue(source: string): string[] {
  const found: string[] = [];
  let inClass = false;
  for (const line of source.split("\n")) {
    if (/^(export )?(abstract )?class /.test(line)) inClass = true;
    else if (line === "}") inClass = false;
    const m = /^ {2}(?:(?:private|protected|public|readonly) )*(\w+): (?:number|boolean);$/.exec(
      line,
    );
    if (inClass && m !== null) found.push(m[1]);
  }
  return found;
}

describe("fast-path fields", () => {
  it("the scanner finds a typed field without a value, and not one with a value", () => {
    const cls =
      "export class A {\n  private readonly x: number;\n  y: number = 0;\n  z = false;\n}";
    assert.deepEqual(fieldsWithoutValue(cls), ["x"]);
    assert.deepEqual(fieldsWithoutValue("interface I {\n  x: number;\n}"), []);
  });

  for (const file of HOT) {
    it(`${file}: every number and boolean field has a value where it is declared`, () => {
      const url = new URL(`../${file}`, import.meta.url);
      assert.deepEqual(fieldsWithoutValue(readFileSync(fileURLToPath(url), "utf8")), []);
    });
  }
});
