/**
 * Every module loads when it is the first one a program imports. The core's modules import one
 * another in cycles (slab → vmem → cache → debug → slab): a module whose top level reached into
 * a cycle partner not yet evaluated threw a ReferenceError, but only when that partner was the
 * program's first import (as `deno test --doc FILE` makes it), never through `mod.ts`. Each file
 * is imported first in a subprocess of the runtime running the tests.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";

const IS_DENO = "Deno" in globalThis;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIRS = ["core", "gc", "own", "region", "sbo", "budget", "profile"];

describe("import order", () => {
  it("each module of the library loads as a program's first import", () => {
    const files = DIRS.flatMap((d) =>
      readdirSync(`${ROOT}${d}`).filter((f) => f.endsWith(".ts")).map((f) => `${d}/${f}`)
    );
    // One subprocess imports them one after another, each in a fresh realm of its own: a
    // Worker has its own module map.
    const script = `
      const files = ${JSON.stringify(files)};
      const bad = [];
      for (const f of files) {
        const src = "import(" + JSON.stringify(new URL(f, ${
      JSON.stringify(`file://${ROOT}`)
    }).href) +
          ").then(() => postMessage('ok'), (e) => postMessage(String(e)));";
        const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
        const w = new Worker(url, { type: "module" });
        const said = await new Promise((resolve) => {
          const t = setTimeout(() => resolve("timed out"), 20000);
          w.onmessage = (e) => { clearTimeout(t); resolve(e.data); };
          w.onerror = (e) => { clearTimeout(t); e.preventDefault?.(); resolve(String(e.message)); };
        });
        w.terminate();
        if (said !== "ok") bad.push(f + ": " + said);
      }
      console.log(JSON.stringify({ n: files.length, bad }));
    `;
    const args = IS_DENO ? ["eval", "--ext=js", script] : ["-e", script];
    const r = spawnSync(process.execPath, args, {
      encoding: "utf8",
      cwd: ROOT,
      timeout: 120_000,
      env: { ...process.env, NO_COLOR: "1" },
    });
    if (r.error !== undefined) throw r.error;
    assert.equal(r.status, 0, r.stderr);
    const { n, bad } = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.equal(n, files.length);
    assert.deepEqual(bad, []);
  });
});
