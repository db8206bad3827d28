/**
 * What the JSDoc examples print is what their comments say. `deno test --doc` runs every
 * example but reads none of its output, so a comment such as `console.log(heap.size); // 1048576`
 * can go stale unseen (two had, found in the twelfth session). This test takes every ```ts block
 * under an `@example` of the published modules, runs each as a module of its own in this process
 * (its imports pointed at the files here, its `console.log` calls captured with their line), and
 * compares each printed value with the comment on its line, or on the comment lines right below
 * it. A comment may explain after the value (`// true: grown in place`, `// 0 (none yet)`).
 *
 * Deno only: the comments are Deno's `console.log` formatting (Bun prints arrays and objects
 * otherwise), and the examples are run by `deno test --doc`.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const IS_DENO = "Deno" in globalThis;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The published modules: their `@umem/umem` names and folders. */
const MODULES = ["core", "sbo", "budget", "region", "gc", "own", "profile"];

/** One `console.log` of an example, with the value its comment states (if any). */
interface Expected {
  /** The source line, as `file:line`. */
  where: string;
  /** The comment's text, or undefined when the line has none. */
  comment: string | undefined;
}

/** An example: the module's code, and what its logs should print. */
interface Example {
  where: string;
  code: string;
  expected: Map<number, Expected>;
}

/** Every example of the published modules, rewritten to run from a temporary directory. */
function examples(): Example[] {
  const files = ["mod.ts"];
  for (const m of MODULES) {
    for (const f of readdirSync(join(ROOT, m)).sort()) {
      if (f.endsWith(".ts")) files.push(`${m}/${f}`);
    }
  }
  const target = (name: string) => {
    const sub = name.slice("@umem/umem".length).replace(/^\//, "");
    if (sub !== "" && !MODULES.includes(sub)) throw new Error(`unknown import ${name}`);
    return pathToFileURL(join(ROOT, sub, "mod.ts")).href;
  };
  const out: Example[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      if (!/^\s*\*\s*```ts\s*$/.test(lines[i])) continue;
      const body: { text: string; line: number }[] = [];
      for (let j = i + 1; j < lines.length && !/^\s*\*\s*```\s*$/.test(lines[j]); j++) {
        body.push({ text: lines[j].replace(/^\s*\* ?/, ""), line: j + 1 });
      }
      const expected = new Map<number, Expected>();
      const code = body.map(({ text, line }, b) => {
        let t = text.replace(/(from\s+|import\s+)"(@umem\/umem(?:\/\w+)?)"/g, (_, k, n) => {
          return `${k}"${target(n)}"`;
        });
        if (t.includes("console.log(")) {
          t = t.replaceAll("console.log(", `__docLog(${line}, `);
          let comment = /\)\s*;?\s*\/\/ ?(.*)$/.exec(text)?.[1];
          if (comment === undefined) {
            const next: string[] = [];
            for (let c = b + 1; c < body.length && /^\s*\/\//.test(body[c].text); c++) {
              next.push(body[c].text.replace(/^\s*\/\/ ?/, ""));
            }
            if (next.length > 0) comment = next.join("\n");
          }
          expected.set(line, { where: `${file}:${line}`, comment });
        }
        return t;
      });
      out.push({ where: `${file}:${i + 1}`, code: code.join("\n"), expected });
    }
  }
  return out;
}

/** Spacing and quotes aside, as a reader compares a printed value with a comment. */
const normal = (s: string) =>
  s.replace(/["']/g, "").replace(/\s+/g, " ").replace(/([[{]) /g, "$1").replace(/ ([\]}])/g, "$1")
    .replace(/, /g, ",").trim();

/** True when `printed` is what `comment` states: the same, or the same then an explanation. */
function agrees(printed: string, comment: string): boolean {
  const p = normal(printed), c = normal(comment);
  return c === p || c.startsWith(`${p}:`) || c.startsWith(`${p} (`) || c.startsWith(`${p};`);
}

describe("JSDoc examples", () => {
  const dir = mkdtempSync(join(tmpdir(), "umem-doc-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("print what their comments say", async () => {
    if (!IS_DENO) return;
    const inspectValue = (globalThis as unknown as {
      Deno: { inspect(v: unknown, o: { colors: boolean }): string };
    }).Deno.inspect;
    const all = examples();
    assert.ok(all.length > 250, `${all.length} examples found`);
    const g = globalThis as unknown as { __docLog: (line: number, ...a: unknown[]) => void };
    const printed = new Map<number, string[]>();
    g.__docLog = (line, ...a) => {
      const text = a.map((v) => typeof v === "string" ? v : inspectValue(v, { colors: false }));
      printed.set(line, [...(printed.get(line) ?? []), text.join(" ")]);
    };
    const wrong: string[] = [];
    const cwd = process.cwd();
    process.chdir(dir); // an example that writes a file writes it here
    try {
      for (const [k, ex] of all.entries()) {
        printed.clear();
        const path = join(dir, `ex${k}.ts`);
        writeFileSync(path, `${ex.code}\nexport {};\n`);
        try {
          await import(pathToFileURL(path).href);
        } catch (e) {
          wrong.push(`${ex.where}: threw ${(e as Error).message.split("\n")[0]}`);
          continue;
        }
        for (const [line, want] of ex.expected) {
          const got = (printed.get(line) ?? []).join("\n");
          if (want.comment !== undefined && !agrees(got, want.comment)) {
            wrong.push(
              `${want.where}: printed ${JSON.stringify(got)}, its comment says ${
                JSON.stringify(want.comment)
              }`,
            );
          }
        }
      }
    } finally {
      process.chdir(cwd);
    }
    assert.deepEqual(wrong, []);
  });
});
