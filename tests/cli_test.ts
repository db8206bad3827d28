/**
 * The `umem` command (cli/umem.ts) run as a subprocess, as a user runs it, over a snapshot of a
 * heap with auditing and the transaction log on: three buffers leaked on purpose from a named
 * function, others kept reachable from a root through a chain that includes an interior
 * pointer. Every command, `--help`, bad arguments and damaged files.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { Heap, inspect, readSnapshot, writeSnapshot } from "../mod.ts";
import { crc32, UMS_CRC_OFF, UMS_HCRC_OFF, UMS_HEADER } from "../core/snapshot.ts";
import { HDR_CACHE_LIST, HDR_MAGIC, HDR_META } from "../core/image.ts";
import { main } from "../cli/umem.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(ROOT, "cli", "umem.ts");
const IS_DENO = "Deno" in globalThis;

/** Runs the command in a new process of the runtime running the tests. */
function umem(...args: string[]): { code: number; stdout: string; stderr: string } {
  const argv = IS_DENO
    ? ["run", "--allow-read", "--allow-write", "--allow-env", CLI, ...args]
    : [CLI, ...args];
  const r = spawnSync(process.execPath, argv, {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    timeout: 30_000,
  });
  if (r.error !== undefined) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A clean failure: exit 2, one line on stderr that says what, no stack trace, no stdout. */
function assertUsage(r: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit status (stderr: ${r.stderr})`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0], /^umem: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at |Uncaught|error: /);
}

/**
 * Checks that `text` is well-formed XML 1.0 (one root element, tags nested and matched, quoted
 * and unique attributes, only the five predefined entities or character references); returns
 * the problem, or "" when there is none.
 */
function xmlProblem(text: string): string {
  const name = /^[A-Za-z_:][\w:.-]*/;
  const textOk = (s: string) => {
    if (s.includes("<")) return "'<' in text";
    for (const m of s.matchAll(/&([^;]*);?/g)) {
      if (!/^(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+)$/.test(m[1]) || !m[0].endsWith(";")) {
        return `bad entity reference '${m[0]}'`;
      }
    }
    return "";
  };
  let i = 0, roots = 0;
  const stack: string[] = [];
  if (text.startsWith("<?xml")) {
    const end = text.indexOf("?>");
    if (end < 0) return "unterminated XML declaration";
    i = end + 2;
  }
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    if (stack.length === 0 && chunk.trim() !== "") return `text outside the root: '${chunk}'`;
    const bad = textOk(chunk);
    if (bad !== "") return bad;
    if (lt < 0) break;
    if (text.startsWith("<!--", lt)) {
      const end = text.indexOf("-->", lt + 4);
      if (end < 0) return "unterminated comment";
      i = end + 3;
      continue;
    }
    const gt = text.indexOf(">", lt);
    if (gt < 0) return "unterminated tag";
    let tag = text.slice(lt + 1, gt);
    if (tag.startsWith("/")) {
      const n = tag.slice(1).trim();
      if (stack.pop() !== n) return `</${n}> closes nothing open`;
      i = gt + 1;
      continue;
    }
    const selfClosing = tag.endsWith("/");
    if (selfClosing) tag = tag.slice(0, -1);
    const n = name.exec(tag)?.[0];
    if (n === undefined) return `bad tag '<${tag}>'`;
    let rest = tag.slice(n.length);
    const seen = new Set<string>();
    while (rest.trim() !== "") {
      const m = /^\s+([A-Za-z_:][\w:.-]*)\s*=\s*("([^"<]*)"|'([^'<]*)')/.exec(rest);
      if (m === null) return `bad attribute in <${tag}>`;
      if (seen.has(m[1])) return `duplicate attribute ${m[1]} in <${n}>`;
      seen.add(m[1]);
      const bad = textOk(m[3] ?? m[4]);
      if (bad !== "") return `${bad} in an attribute of <${n}>`;
      rest = rest.slice(m[0].length);
    }
    if (stack.length === 0) roots++;
    if (roots > 1) return "more than one root element";
    if (!selfClosing) stack.push(n);
    i = gt + 1;
  }
  if (stack.length > 0) return `<${stack[stack.length - 1]}> never closed`;
  return roots === 1 ? "" : "no root element";
}

// ---- the heap, the snapshot ----

const heap = Heap.create({ size: 1 << 20, debug: "audit", logging: "transaction" });

/** The bug: three buffers allocated and dropped. */
function leakThreeBuffers(h: Heap): number[] {
  const out: number[] = [];
  for (let i = 0; i < 3; i++) out.push(h.alloc(100));
  return out;
}

const table = heap.zalloc(32);
heap.addRoot(table, 32);
const a = heap.alloc(64), b = heap.alloc(200), c = heap.alloc(24);
heap.i32[table >> 2] = a;
heap.i32[a >> 2] = b + 40; // an interior pointer: b is reachable through it
heap.i32[b >> 2] = c;
const pinned = heap.alloc(500);
heap.pin(pinned);
const leaked = leakThreeBuffers(heap);
const freed = heap.alloc(300);
heap.free(freed, 300);

const dir = mkdtempSync(join(tmpdir(), "umem-cli-"));
const dump = join(dir, "heap.ums");
writeSnapshot(heap, dump);
const snap = readSnapshot(dump);
const heapBytes = snap.mapped;
const freeBuffer = inspect(snap).walk("umem_alloc_112").find((x) => x.state === "free")!.address;
const hex = (n: number) => `0x${n.toString(16)}`;

describe("the fixture", () => {
  it("leaks exactly the three buffers, in process", () => {
    const r = inspect(snap).findleaks();
    assert.equal(r.total_buffers, 3);
    assert.deepEqual(
      inspect(snap).walk("umem_alloc_112").filter((x) => x.state === "allocated").map((x) =>
        x.address
      ).sort(),
      [...leaked].sort(),
    );
  });

  it("the well-formedness check refuses what is not XML", () => {
    assert.equal(xmlProblem(`<a x="1"><b/>t &amp; u</a>`), "");
    assert.notEqual(xmlProblem("<a><b></a>"), "");
    assert.notEqual(xmlProblem("<a x=1/>"), "");
    assert.notEqual(xmlProblem(`<a x="1" x="2"/>`), "");
    assert.notEqual(xmlProblem("<a>R&D</a>"), "");
    assert.notEqual(xmlProblem("<a/><b/>"), "");
    assert.notEqual(xmlProblem("<a>"), "");
  });
});

describe("umem findleaks", () => {
  it("reports the three leaked buffers with the function that leaked them; exit 1", () => {
    const r = umem("--dump", dump, "findleaks");
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stdout,
      /^findleaks: 3 allocated buffers \(300 bytes\) in 1 distinct leak classes/,
    );
    assert.match(r.stdout, /buffers skipped: they sit in magazines/);
    assert.match(r.stdout, /COUNT\s+BYTES\s+SIZE\s+CACHE\s+STACK \(top frame\)/);
    assert.match(r.stdout, /\n\s+3\s+300\s+100 umem_alloc_112\s+leakThreeBuffers /);
    assert.match(
      r.stdout,
      /== class 1: 3 allocs, 300 bytes, cache=umem_alloc_112 \(sample buffer 0x/,
    );
    assert.equal(r.stderr, "");
  });

  it("-f json has libumem's keys", () => {
    const r = umem("--dump", dump, "findleaks", "-f", "json");
    assert.equal(r.code, 1, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j), [
      "version",
      "total_buffers",
      "total_bytes",
      "cached_skipped",
      "classes",
    ]);
    assert.equal(j.total_buffers, 3);
    assert.equal(j.total_bytes, 300);
    assert.equal(j.classes.length, 1);
    assert.equal(j.classes[0].cache, "umem_alloc_112");
    assert.equal(j.classes[0].sample, Math.min(...leaked));
    assert.match(j.classes[0].stack, /^leakThreeBuffers /);
  });
});

describe("umem status, caches, arenas, walk", () => {
  it("status: the settings, then the cache table", () => {
    const r = umem("--dump", dump, "status");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^umem status: UMEM_DEBUG=audit/);
    assert.match(r.stdout, /\nUMEM_LOGGING=transaction\nUMEM_OPTIONS=concurrency=16\n/);
    assert.match(r.stdout, /\ntransaction log: \d+ of \d+ records used/);
    assert.match(r.stdout, new RegExp(`\\nheap size: ${heapBytes} bytes\\n`));
    assert.match(r.stdout, /CACHE\s+BUFSIZE\s+INUSE\s+TOTAL\s+MEMORY\s+ALLOCS\s+FAIL/);
    const j = JSON.parse(umem("--dump", dump, "status", "-f", "json").stdout);
    assert.deepEqual(j.logging, ["transaction"]);
    assert.equal(j.heapSize, heapBytes);
  });

  it("caches: every cache, those never used too", () => {
    const r = umem("--dump", dump, "caches");
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trimEnd().split("\n");
    assert.match(rows[0], /^CACHE\s+BUFSIZE\s+INUSE\s+TOTAL\s+MEMORY\s+ALLOCS\s+FAIL$/);
    const row = rows.find((l) => l.startsWith("umem_alloc_112 "))!.trim().split(/\s+/);
    assert.deepEqual(row.slice(1, 3), ["112", "3"]); // bufsize, in use
    assert.ok(rows.some((l) => l.startsWith("umem_alloc_131072 ")), "an unused cache is listed");
    const j = JSON.parse(umem("--dump", dump, "caches", "-f", "json").stdout);
    assert.equal(j.find((x: { name: string }) => x.name === "umem_alloc_112").inUse, 3);
  });

  it("arenas: the heap's arena and its children", () => {
    const r = umem("--dump", dump, "arenas");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ARENA\s+INUSE\s+IMPORTED\s+TOTAL\s+ALLOCS\s+FAIL/);
    for (const n of ["heap", "umem_meta", "umem_oversize"]) {
      assert.match(r.stdout, new RegExp(`\\n${n}\\s+\\d+`));
    }
    const j = JSON.parse(umem("--dump", dump, "arenas", "-f", "json").stdout);
    assert.ok(j.some((x: { name: string }) => x.name === "heap"));
  });

  it("walk CACHE: a line per buffer, address and state", () => {
    const r = umem("--dump", dump, "walk", "umem_alloc_112");
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    for (const l of lines) assert.match(l, /^0x[0-9a-f]+ {2}(allocated|free|cached)$/);
    const allocated = lines.filter((l) => l.endsWith("allocated")).map((l) => l.split(" ")[0]);
    assert.deepEqual(allocated.sort(), leaked.map(hex).sort());
    assert.ok(lines.includes(`${hex(freeBuffer)}  free`));
    const j = JSON.parse(umem("--dump", dump, "walk", "umem_alloc_112", "-f", "json").stdout);
    assert.equal(j.length, lines.length);
  });
});

describe("umem whatis, bufctl", () => {
  it("whatis an allocated buffer (interior address, hex): cache, state, audit stack", () => {
    const r = umem("--dump", dump, "whatis", hex(leaked[1] + 8));
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], `${hex(leaked[1] + 8)}: umem_alloc_112 (112 bytes, ALLOCATED)`);
    assert.match(lines[1], new RegExp(`buffer=${hex(leaked[1])} offset=0x8 bufctl=0x`));
    assert.match(r.stdout, /alloc of buffer 0x[0-9a-f]+: thr=0 /);
    assert.match(r.stdout, /\tleakThreeBuffers /);
  });

  it("whatis takes decimal too, and says when a buffer is free or cached", () => {
    const r = umem("--dump", dump, "whatis", String(freeBuffer));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${hex(freeBuffer)}: umem_alloc_112 \\(112 bytes, FREE\\)`));
    const cached = umem("--dump", dump, "whatis", hex(freed));
    assert.match(
      cached.stdout,
      new RegExp(`^${hex(freed)}: umem_alloc_320 \\(320 bytes, CACHED\\)`),
    );
  });

  it("whatis metadata, and an address outside the heap", () => {
    const meta = umem("--dump", dump, "whatis", "0x100");
    assert.equal(meta.code, 0, meta.stderr);
    assert.equal(meta.stdout.trim(), "0x100: not in any umem cache (heap header and metadata)");
    const out = umem("--dump", dump, "whatis", "0x7fff0000", "-f", "json");
    assert.equal(out.code, 0, out.stderr);
    const j = JSON.parse(out.stdout);
    assert.equal(j.kind, "none");
    assert.match(j.text, /^0x7fff0000: not in any umem cache \(outside the heap\)$/);
  });

  it("bufctl: the buffer's last free and alloc, newest first, with their stacks", () => {
    const r = umem("--dump", dump, "bufctl", hex(freed));
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(
      lines[0],
      new RegExp(`^bufctl 0x[0-9a-f]+ of buffer ${hex(freed)} \\(umem_alloc_320`),
    );
    assert.match(lines[1], new RegExp(`^free of buffer ${hex(freed)}: thr=0 time=`));
    assert.match(r.stdout, new RegExp(`\\nalloc of buffer ${hex(freed)}: thr=0 time=`));
    assert.match(r.stdout, /cli_test\.ts:\d+:\d+/);
    const j = JSON.parse(umem("--dump", dump, "bufctl", String(leaked[0]), "-f", "json").stdout);
    assert.equal(j.buffer, leaked[0]);
    assert.deepEqual(j.transactions.map((t: { op: string }) => t.op), ["alloc"]);
    assert.match(j.transactions[0].stack, /^leakThreeBuffers /);
  });
});

describe("umem log", () => {
  it("the log, newest first, filtered by cache, buffer and worker", () => {
    const all = umem("--dump", dump, "log");
    assert.equal(all.code, 0, all.stderr);
    const n = Number(/^transaction log: (\d+) records \(showing \d+\)/.exec(all.stdout)?.[1]);
    assert.ok(n >= 9, `records: ${n}`);
    assert.match(
      all.stdout,
      new RegExp(`\\nt=\\S+ thr=0 free ${hex(freed)} size=300 cache=umem_alloc_320\\n`),
    );

    const byCache = umem("--dump", dump, "log", "--cache", "umem_alloc_112");
    assert.match(byCache.stdout, /^transaction log: 3 records \(showing 3\)/);
    const records = byCache.stdout.split("\n").filter((l) => l.startsWith("t="));
    assert.equal(records.length, 3);
    for (const l of records) {
      assert.match(l, / thr=0 alloc 0x[0-9a-f]+ size=100 cache=umem_alloc_112$/);
    }

    const byBuffer = umem("--dump", dump, "log", "--buffer", hex(freed + 4), "-f", "json");
    assert.deepEqual(JSON.parse(byBuffer.stdout).map((e: { op: string }) => e.op), [
      "free",
      "alloc",
    ]);

    const byWorker = JSON.parse(umem("--dump", dump, "log", "--worker", "0", "-f", "json").stdout);
    assert.equal(byWorker.length, n);
    const none = umem("--dump", dump, "log", "--worker", "5", "--limit", "2");
    assert.equal(none.stdout.trim(), "transaction log: 0 records (showing 0)");
  });
});

describe("umem: the command among options", () => {
  it("an option's value named as a profile command is a value, not the command", () => {
    const out: string[] = [], err: string[] = [];
    const quiet = { log: (t: string) => out.push(t), error: (t: string) => err.push(t) };
    // Before the fix `replay`, the value of --cache, was taken for the command.
    assert.equal(main(["--dump", dump, "--cache", "replay", "log"], quiet), 0, err.join("\n"));
    assert.match(out.join("\n"), /^transaction log: \d+ records/);
  });
});

describe("umem verify", () => {
  it("lists a cache per line, clean or with its problems, and exits 1 when there are any", () => {
    const run = (file: string, ...args: string[]) => {
      const out: string[] = [], err: string[] = [];
      const code = main(["--dump", file, "verify", ...args], {
        log: (t) => out.push(t),
        error: (t) => err.push(t),
      });
      return { code, out: out.join("\n"), err: err.join("\n") };
    };
    const heap = Heap.create({ size: 1 << 20, debug: "guards,contents,noabort" });
    const sound = join(dir, "sound.ums");
    heap.createCache("conn", 40).alloc();
    writeSnapshot(heap, sound);
    const ok = run(sound);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^CACHE +ADDR +INTEGRITY\n/);
    assert.match(ok.out, /\nconn +0x[0-9a-f]+ +clean\n/);
    assert.match(ok.out, /\numem_verify: no problems$/);

    const p = heap.alloc(50);
    heap.u8[p + 50] = 0; // one byte past the end
    const q = heap.alloc(100);
    heap.free(q, 100);
    heap.u8[q + 3] = 7; // written after the free
    const damaged = join(dir, "damaged.ums");
    writeSnapshot(heap, damaged);
    const bad = run(damaged);
    assert.equal(bad.code, 1, bad.err);
    assert.match(bad.out, /\numem_alloc_64 +0x[0-9a-f]+ +1 problem\n/);
    assert.match(bad.out, /\numem_alloc_112 +0x[0-9a-f]+ +1 problem\n/);
    assert.match(bad.out, /\nconn +0x[0-9a-f]+ +clean\n/);
    assert.match(bad.out, /\numem_verify: 2 problems:\n {2}umem allocator: redzone violation/);
    assert.match(bad.out, /\n {2}umem allocator: buffer modified after being freed; modification/);
    const json = JSON.parse(run(damaged, "-f", "json").out);
    assert.deepEqual(json, heap.verify());
    assert.deepEqual(inspect(heap).verify(), heap.verify());
  });
});

describe("umem map", () => {
  it("writes a well-formed SVG with a row per KiB step and the figures in the title", () => {
    for (const kib of [16, 64]) {
      const svg = join(dir, `heap-${kib}.svg`);
      const r = umem("--dump", dump, "map", "-o", svg, "--kib", String(kib));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^map: wrote .*: \d+ rows of \d+ KiB\nmap: extent \d+ bytes/);
      const text = readFileSync(svg, "utf8");
      assert.equal(xmlProblem(text), "");
      const rows = text.match(/<g class="row"/g)?.length ?? 0;
      assert.equal(rows, Math.ceil(heapBytes / (kib * 1024)));
      const title = /<title>([^<]*)<\/title>/.exec(text)?.[1] ?? "";
      assert.match(title, /extent \d+ bytes .*busy \d+ .*free \d+ .*largest free run \d+/);
      assert.match(text, />umem_alloc_112</, "the legend names the caches");
      assert.match(text, />metadata: header/);
    }
  });

  it("-f json gives the figures, which add up to the heap", () => {
    const svg = join(dir, "heap-json.svg");
    const j = JSON.parse(umem("--dump", dump, "map", "-o", svg, "-f", "json").stdout);
    const f = j.figures;
    assert.equal(j.rows, Math.ceil(heapBytes / 65536));
    assert.equal(f.busy + f.free + f.metadata + f.cached + f.padding, heapBytes);
    assert.ok(f.busy >= 3 * 112 + 64 + 208 + 24 + 512, `busy ${f.busy}`);
    assert.ok(f.largestFree > 0 && f.largestFree <= f.free);
    assert.ok(f.extent >= f.busy);
  });
});

describe("umem --help", () => {
  it("the overall help names every command; exit 0", () => {
    const r = umem("--help");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: umem --dump FILE\.ums <command> \[args\] \[-f json\]/);
    for (
      const c of ["findleaks", "status", "caches", "arenas", "walk", "whatis", "bufctl", "log"]
    ) {
      assert.match(r.stdout, new RegExp(`\\n  ${c}\\b`));
    }
    assert.match(r.stdout, /\n {2}map \[-o FILE\.svg\] \[--kib N\]/);
  });

  it("a command's help", () => {
    for (
      const [c, want] of [["findleaks", /Exit status 1 when there are leaks/], [
        "log",
        /--worker N/,
      ]] as const
    ) {
      const r = umem(c, "--help");
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: umem --dump FILE\\.ums ${c}`));
      assert.match(r.stdout, want);
    }
  });
});

describe("bad arguments: exit 2 and one clear line", () => {
  const cases: [string[], RegExp][] = [
    [[], /missing command/],
    [["--dump", "x.ums"], /missing command/],
    [["findleaks"], /--dump FILE\.ums is required/],
    [["--dump", "x.ums", "frobnicate"], /unknown command 'frobnicate'/],
    [["--dump", "x.ums", "constructor"], /unknown command 'constructor'/],
    [["--dump"], /option --dump needs a value/],
    [["--dump", "x.ums", "whatis"], /whatis: missing address/],
    [["--dump", "x.ums", "whatis", "0xzz"], /'0xzz' is not an address/],
    [["--dump", "x.ums", "status", "extra"], /unexpected argument 'extra'/],
    [["--dump", "x.ums", "status", "-f", "yaml"], /unknown format 'yaml'/],
    [["--dump", "x.ums", "status", "--bogus"], /unknown option '--bogus'/],
    [["--dump", "x.ums", "status", "--kib", "3"], /--kib does not apply to status/],
  ];
  for (const [args, want] of cases) {
    it(`umem ${args.join(" ") || "(nothing)"}`, () => assertUsage(umem(...args), want));
  }
  it("arguments that need the snapshot to judge", () => {
    assertUsage(umem("--dump", dump, "walk", "no_such_cache"), /no cache named 'no_such_cache'/);
    assertUsage(umem("--dump", dump, "map", "-o", join(dir, "x.svg"), "--kib", "0"), /--kib: '0'/);
    assertUsage(umem("--dump", dump, "log", "--worker", "x"), /--worker: 'x'/);
    assertUsage(umem("--dump", join(dir, "missing.ums"), "status"), /cannot read .*: no such file/);
  });
});

describe("damaged snapshots: exit 2, the CorruptImageError's message, no stack trace", () => {
  const bytes = new Uint8Array(readFileSync(dump));
  const damaged = (name: string, f: (b: Uint8Array) => Uint8Array) => {
    const path = join(dir, name);
    writeFileSync(path, f(bytes.slice()));
    return path;
  };
  const flip = (at: number) => (b: Uint8Array) => {
    b[at] ^= 0x40;
    return b;
  };
  /** Rewrites both checksums, so that only the image's own checks can tell. */
  const resum = (b: Uint8Array) => {
    const dv = new DataView(b.buffer);
    dv.setUint32(UMS_CRC_OFF, crc32(b.subarray(UMS_HEADER)), true);
    dv.setUint32(UMS_HCRC_OFF, crc32(b.subarray(0, UMS_HCRC_OFF)), true);
    return b;
  };

  it("truncated", () => {
    const half = damaged("half.ums", (b) => b.slice(0, b.length >> 1));
    assertUsage(umem("--dump", half, "findleaks"), /corrupt snapshot: snapshot: truncated/);
    const tiny = damaged("tiny.ums", (b) => b.slice(0, 10));
    assertUsage(umem("--dump", tiny, "status"), /corrupt snapshot: snapshot: truncated/);
  });

  it("one byte flipped in the .ums header", () => {
    const p = damaged("header.ums", flip(9));
    assertUsage(umem("--dump", p, "findleaks"), /header checksum mismatch/);
    const m = damaged("magic.ums", flip(0));
    assertUsage(umem("--dump", m, "caches"), /bad magic/);
  });

  it("one byte flipped in the image's metadata", () => {
    const p = damaged("image.ums", flip(UMS_HEADER + HDR_META + 1));
    assertUsage(umem("--dump", p, "findleaks"), /image checksum mismatch: the image was altered/);
    assertUsage(umem("--dump", p, "map", "-o", join(dir, "no.svg")), /image checksum mismatch/);
  });

  it("an image whose own header is bad, checksums rewritten", () => {
    const p = damaged("magic2.ums", (b) => resum(flip(UMS_HEADER + HDR_MAGIC)(b)));
    assertUsage(umem("--dump", p, "status"), /corrupt snapshot: Heap\.attach: bad magic/);
  });

  it("garbage past the header checks gives an answer or exit 2, never a crash (in process)", () => {
    // Words of the header page and the first cache record overwritten with plausible garbage,
    // checksums rewritten: what the file's checks cannot catch.
    const cacheList = new DataView(bytes.buffer).getUint32(UMS_HEADER + HDR_CACHE_LIST, true);
    let seed = 12345;
    const rand = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const quiet = { log: () => {}, error: () => {} };
    for (let k = 0; k < 24; k++) {
      const b = bytes.slice();
      const dv = new DataView(b.buffer);
      const at = k % 2 === 0 ? 256 + (rand() % 1792) : cacheList + (rand() % 256);
      dv.setUint32(UMS_HEADER + (at & ~3), rand() % (heapBytes + 8192), true);
      const p = join(dir, "fuzz.ums");
      writeFileSync(p, resum(b));
      for (const cmd of [["findleaks"], ["caches"], ["map", "-o", join(dir, "fuzz.svg")]]) {
        const code = main(["--dump", p, ...cmd], quiet);
        assert.ok([0, 1, 2].includes(code), `exit ${code}`);
      }
    }
  });

  it("cleans up", () => {
    rmSync(dir, { recursive: true, force: true });
  });
});
