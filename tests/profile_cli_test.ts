/**
 * `umem profile` and `umem replay` (cli/umem.ts, profile/cli.ts): in process through `main`,
 * and once as a subprocess as a user runs it.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { main } from "../cli/umem.ts";
import { fragmentTrace, record, saveTrace } from "../profile/mod.ts";
import type { Heap } from "../mod.ts";
import { mk } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "cli", "umem.ts");
const IS_DENO = "Deno" in globalThis;
const DIR = mkdtempSync(join(tmpdir(), "umem-profile-cli-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

/** Runs `main` and collects what it wrote. */
function run(...args: string[]): { code: number; stdout: string; stderr: string } {
  const out: string[] = [], err: string[] = [];
  const code = main(args, { log: (t) => out.push(t), error: (t) => err.push(t) });
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

/** A clean failure: exit 2, one line on stderr naming the problem, nothing on stdout. */
function assertUsage(r: { code: number; stdout: string; stderr: string }, re: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 1, r.stderr);
  assert.match(r.stderr, /^umem: /);
  assert.match(r.stderr, re);
}

const FRAG = join(DIR, "frag.umt");
saveTrace(fragmentTrace({ iterations: 500 }), FRAG);

/** A recorded workload: 30 allocations of 48 bytes, 10 freed, from one function. */
const RECORDED = join(DIR, "rec.umt");

/** The recorded function: 30 allocations of 48 bytes, 10 freed. */
function work(heap: Heap): void {
  const ps = Array.from({ length: 30 }, () => heap.alloc(48));
  for (let i = 0; i < 10; i++) heap.free(ps[i], 48);
}
{
  const heap = mk({ size: 1 << 20 });
  const rec = record(heap, { sites: true });
  work(heap);
  rec.save(RECORDED);
}

describe("umem replay", () => {
  it("replays a trace against the allocators named, as JSON", () => {
    const r = run("replay", FRAG, "--alloc", "heap,libc", "-f", "json");
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout);
    assert.equal(data.records, 1001);
    assert.deepEqual(data.results.map((x: { allocator: string }) => x.allocator), ["heap", "libc"]);
    const [heap, libc] = data.results;
    assert.equal(heap.peakBusy, 32 + 500 * 56);
    assert.equal(heap.moves, 500);
    assert.ok(libc.moves < 500 && libc.moves > 0);
    assert.ok(heap.peakExtent >= heap.peakBusy);
  });

  it("prints the table normalised to the heap", () => {
    const r = run("-f", "text", "replay", FRAG, "--alloc=libc,heap,context");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(lines[0], /^replay of .*frag\.umt: 1001 records$/);
    assert.match(lines[1], /^ALLOCATOR\s+TIME_MS\s+NS\/OP\s+TIME×\s+EXTENT\s+BUSY/);
    const heap = lines.find((l) => l.startsWith("heap"))!.trim().split(/\s+/);
    assert.equal(heap[3], "1.00"); // TIME× of the baseline
    assert.equal(heap[7], "1.00"); // SPACE× of the baseline
    assert.equal(heap[8], "500"); // moves
    assert.equal(lines.length, 5);
  });

  it("refuses an unknown allocator, a missing trace, a bad option and a truncated file", () => {
    assertUsage(run("replay", FRAG, "--alloc", "heap,nope"), /unknown allocator 'nope'/);
    assertUsage(run("replay"), /missing TRACE/);
    assertUsage(run("replay", FRAG, "--bogus", "1"), /unknown option '--bogus'/);
    assertUsage(run("replay", join(DIR, "absent.umt")), /cannot read .*absent\.umt: no such file/);
    const cut = join(DIR, "cut.umt");
    writeFileSync(cut, readFileSync(FRAG).subarray(0, 100));
    assertUsage(run("replay", cut), /loadTrace: .*cut\.umt: truncated: /);
  });
});

describe("umem profile", () => {
  it("prints the Vmprofile summary of a recorded trace, per call site, and its phases", () => {
    const r = run("profile", RECORDED);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(
      lines[0],
      "ALLOCATION USAGE SUMMARY: n_alloc=30:n_free=10:s_alloc=1440:s_free=480:max_busy=1440:",
    );
    assert.ok(lines.includes("size=48:n_alloc=30:max_live=30:"), r.stdout);
    const site = lines.find((l) => l.startsWith("file=profile_cli_test.ts:line="));
    assert.match(site ?? "", /:n_alloc=30:n_free=10:s_alloc=1440:s_free=480:max_busy=1440:$/);
    assert.ok(lines.includes("PHASES: 1"));
  });

  it("gives the summary and phases as JSON", () => {
    const r = run("profile", RECORDED, "-f", "json", "--window", "10");
    assert.equal(r.code, 0, r.stderr);
    const data = JSON.parse(r.stdout);
    assert.deepEqual([data.summary.allocs, data.summary.frees, data.summary.maxBusy], [
      30,
      10,
      1440,
    ]);
    assert.equal(data.phases.length, 2);
    assert.equal(data.phases[1].start, 30);
  });

  it("reads a VMTRACE file too, and refuses text with no trace line", () => {
    const vm = join(DIR, "t.trace");
    writeFileSync(vm, "0:0x1000:24:r:Vmbest:t.c,4:\n0x1000:0:24:r:Vmbest:t.c,9:\n");
    const r = run("profile", vm);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ALLOCATION USAGE SUMMARY: n_alloc=1:n_free=1:s_alloc=24:/);
    assert.match(r.stdout, /\nfile=t\.c:line=4:n_alloc=1:n_free=1:/);
    const junk = join(DIR, "junk.txt");
    writeFileSync(junk, "hello\nworld\n");
    assertUsage(run("profile", junk), /neither a \.umt trace nor VMTRACE text/);
    assertUsage(run("profile", FRAG, "--window", "0"), /--window: '0' is not a whole number/);
  });

  it("is listed in umem --help, with its own --help", () => {
    const r = run("--help");
    assert.match(r.stdout, /\n {2}profile TRACE /);
    assert.match(r.stdout, /\n {2}replay TRACE /);
    const h = run("profile", "--help");
    assert.equal(h.code, 0);
    assert.match(h.stdout, /^Usage: umem profile TRACE/);
  });
});

describe("as a subprocess", () => {
  it("umem replay runs as a user runs it and exits 0", () => {
    const argv = IS_DENO
      ? ["run", "--allow-read", "--allow-env", CLI, "replay", FRAG, "--alloc", "libc"]
      : [CLI, "replay", FRAG, "--alloc", "libc"];
    const r = spawnSync(process.execPath, argv, {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1" },
      timeout: 30_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\nlibc\s+[\d.]+\s+\d+\s+1\.00\s/);
  });
});
