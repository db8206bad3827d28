/**
 * Bad input to the `umem` command (cli/umem.ts): a table of command lines (unknown commands and
 * options, options without values or given where they do not apply, bad addresses and counts,
 * missing, empty and foreign files, a directory, truncated and damaged snapshots), each row with
 * the exit status and the one line it must print; a few rows again as a real subprocess, to see
 * that no stack trace reaches the terminal; and a sweep of damaged snapshots through every
 * command (tests/fuzz/cli_sweep.ts) run as a subprocess with a timeout, so that a hang fails
 * the test instead of stopping it.
 *
 * Run: `npx deno test --allow-read --allow-write --allow-env --allow-run
 * tests/badinput_cli_test.ts` or `npx bun test tests/badinput_cli_test.ts`.
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
import { fixtureSnapshot, resum } from "./fuzz/cli_sweep.ts";
import { UMS_HEADER } from "../core/snapshot.ts";
import { HDR_MAGIC } from "../core/image.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const IS_DENO = "Deno" in globalThis;
const dir = mkdtempSync(join(tmpdir(), "umem-badcli-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const good = fixtureSnapshot(dir);
const bytes = new Uint8Array(readFileSync(good));
/** Writes `b` as a file of the temporary directory; returns its path. */
function file(name: string, b: Uint8Array | string): string {
  const p = join(dir, name);
  writeFileSync(p, b);
  return p;
}
const flipped = (at: number) => {
  const b = bytes.slice();
  b[at] ^= 0x10;
  return b;
};

const files = {
  missing: join(dir, "missing.ums"),
  empty: file("empty.ums", new Uint8Array(0)),
  text: file("notes.txt", "umem is an allocator\n".repeat(20)),
  half: file("half.ums", bytes.slice(0, bytes.length >> 1)),
  header: file("header.ums", bytes.slice(0, UMS_HEADER)),
  crc: file("crc.ums", flipped(UMS_HEADER + 5000)),
  hcrc: file("hcrc.ums", flipped(9)),
  version: file("version.ums", resum(flipped(8))),
  magic: file("magic.ums", resum(flipped(UMS_HEADER + HDR_MAGIC))),
  longer: file("longer.ums", new Uint8Array([...bytes, 1, 2, 3])),
};

/** A row: the command line, the exit status, and what the one line on stderr must say. */
type Row = [args: string[], code: number, want: RegExp];

const rows: Row[] = [
  // The command line itself.
  [[], 2, /missing command/],
  [["--dump", good], 2, /missing command after the options/],
  [["status"], 2, /--dump FILE\.ums is required/],
  [["--dump", good, "frobnicate"], 2, /unknown command 'frobnicate'/],
  [["--dump", good, "__proto__"], 2, /unknown command '__proto__'/],
  [["--dump", good, "toString"], 2, /unknown command 'toString'/],
  [["--dump", good, "status", "--verbose"], 2, /unknown option '--verbose'/],
  [["--dump", good, "status", "-x"], 2, /unknown option '-x'/],
  [["--dump"], 2, /option --dump needs a value/],
  [["--dump", good, "status", "-f"], 2, /option -f needs a value/],
  [["--dump", good, "status", "-f", "xml"], 2, /unknown format 'xml'/],
  [["--dump", good, "status", "-f="], 2, /unknown option '-f='/],
  [["--dump", good, "status", "--format="], 2, /unknown format ''/],
  [["--dump", good, "status", "-o", "x.svg"], 2, /-o does not apply to status/],
  [["--dump", good, "status", "more"], 2, /unexpected argument 'more'/],
  [["--dump", good, "log", "--limit", "1", "--limit", "2"], 2, /--limit given twice/],
  [["--dump", good, "status", "--help"], 0, /^$/],
  // Addresses and counts.
  [["--dump", good, "whatis"], 2, /whatis: missing address/],
  [["--dump", good, "whatis", "0x"], 2, /'0x' is not an address/],
  [["--dump", good, "whatis", "0xg0"], 2, /'0xg0' is not an address/],
  [["--dump", good, "whatis", "1.5"], 2, /'1\.5' is not an address/],
  [["--dump", good, "whatis", "1e3"], 2, /'1e3' is not an address/],
  [["--dump", good, "whatis", ""], 2, /'' is not an address/],
  [["--dump", good, "whatis", "4294967296"], 2, /'4294967296' is not an address/],
  [["--dump", good, "whatis", "0x100000000"], 2, /is not an address/],
  [["--dump", good, "whatis", "-8"], 2, /unknown option '-8'/],
  [["--dump", good, "whatis", "0xffffffff"], 0, /^$/],
  [["--dump", good, "whatis", "0"], 0, /^$/],
  [["--dump", good, "bufctl", "nope"], 2, /bufctl: 'nope' is not an address/],
  [["--dump", good, "bufctl", "8"], 0, /^$/],
  [["--dump", good, "walk"], 2, /walk: missing CACHE/],
  [["--dump", good, "walk", "no_such_cache"], 2, /no cache named 'no_such_cache'/],
  [["--dump", good, "log", "--limit", "-1"], 2, /--limit: '-1' is not a whole number/],
  [["--dump", good, "log", "--limit", "NaN"], 2, /--limit: 'NaN'/],
  [["--dump", good, "log", "--worker", "64"], 2, /--worker: '64' is not a whole number in 0\.\.63/],
  [["--dump", good, "log", "--buffer", "zz"], 2, /log --buffer: 'zz' is not an address/],
  [["--dump", good, "log", "--cache", "nope"], 0, /^$/],
  [["--dump", good, "log", "contents", "--cache", "nope"], 0, /^$/],
  [["--dump", good, "log", "fail"], 0, /^$/],
  [
    ["--dump", good, "log", "bogus"],
    2,
    /log: unknown log 'bogus' \(expected transaction, contents, fail\)/,
  ],
  [["--dump", good, "log", "Fail"], 2, /log: unknown log 'Fail'/],
  [["--dump", good, "verify", "0x10"], 2, /verify: unexpected argument '0x10'/],
  [["--dump", good, "verify", "--limit", "3"], 2, /option --limit does not apply to verify/],
  [["--dump", good, "log", "fail", "--buffer", "0x10"], 2, /log fail: --buffer does not apply/],
  [["--dump", good, "log", "fail", "contents"], 2, /log: unexpected argument 'contents'/],
  [["--dump", good, "map", "-o", join(dir, "m.svg"), "--kib", "0"], 2, /--kib: '0'/],
  [["--dump", good, "map", "-o", join(dir, "m.svg"), "--kib", "9999999"], 2, /--kib: '9999999'/],
  [["--dump", good, "map", "-o", join(dir, "no", "such", "dir.svg")], 2, /map: cannot write/],
  [["--dump", good, "map", "-o", dir], 2, /map: cannot write/],
  // Files.
  [["--dump", files.missing, "status"], 2, /cannot read .*missing\.ums: no such file/],
  [["--dump", dir, "status"], 2, /cannot read .*: is a directory/],
  [["--dump", "", "status"], 2, /cannot read|no such file/],
  [["--dump", files.empty, "status"], 2, /corrupt snapshot: snapshot: truncated/],
  [["--dump", files.text, "findleaks"], 2, /corrupt snapshot: .*bad magic/],
  [["--dump", files.half, "findleaks"], 2, /corrupt snapshot: snapshot: truncated/],
  [["--dump", files.header, "caches"], 2, /corrupt snapshot/],
  [["--dump", files.crc, "findleaks"], 2, /image checksum mismatch/],
  [["--dump", files.hcrc, "status"], 2, /header checksum mismatch/],
  [["--dump", files.version, "status"], 2, /corrupt snapshot: .*version/],
  [["--dump", files.magic, "arenas"], 2, /corrupt snapshot: Heap\.attach: bad magic/],
  // Bytes after the image: the header gives the image's size, the rest is not read.
  [["--dump", files.longer, "status"], 0, /^$/],
  // The same file twice: the last --dump wins.
  [["--dump", files.missing, "--dump", good, "status"], 0, /^$/],
];

describe("umem: bad command lines and files (in process)", () => {
  for (const [args, code, want] of rows) {
    it(`umem ${args.map((a) => a.replace(dir, "$TMP")).join(" ") || "(nothing)"} → ${code}`, () => {
      const out: string[] = [], err: string[] = [];
      const status = main(args, { log: (t) => out.push(t), error: (t) => err.push(t) });
      assert.equal(status, code, `exit status; stderr: ${err.join("\n")}`);
      if (code === 2) {
        assert.equal(err.length, 1, `one line on stderr, got ${JSON.stringify(err)}`);
        assert.equal(out.length, 0, "nothing on stdout");
        assert.match(err[0], /^umem: /);
        assert.doesNotMatch(err[0], /\n/);
        assert.doesNotMatch(
          err[0],
          /cannot analyse the snapshot/,
          "an error the CLI did not expect",
        );
      } else assert.deepEqual(err, []);
      assert.match(err.join(""), want);
    });
  }
});

/** Runs the command in a new process of the runtime running the tests. */
function run(args: string[], timeout = 30_000) {
  const cli = join(ROOT, "cli", "umem.ts");
  const argv = IS_DENO ? ["run", "--allow-read", "--allow-write", "--allow-env", cli, ...args] : [
    cli,
    ...args,
  ];
  const r = spawnSync(process.execPath, argv, {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
    timeout,
  });
  if (r.error !== undefined) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

describe("umem: as a process, no stack trace reaches the terminal", () => {
  const cases: [string[], RegExp][] = [
    [["--dump", files.missing, "findleaks"], /no such file/],
    [["--dump", files.magic, "findleaks"], /bad magic/],
    [["--dump", good, "walk", "--kib"], /option --kib needs a value/],
  ];
  for (const [args, want] of cases) {
    it(`umem ${args.map((a) => a.replace(dir, "$TMP")).join(" ")}`, () => {
      const r = run(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, want);
      assert.doesNotMatch(r.stderr, /\n\s+at |Uncaught|error: /);
    });
  }
});

describe("umem: damaged snapshots through every command", () => {
  // About 4 s (the subprocess's own timeout is 60 s), near `bun test`'s default limit of 5 s on a
  // loaded machine, where Bun killed it in one CI run.
  it("a sweep of 48 variants x 14 commands ends in 0, 1 or 2, one line, no hang", {
    timeout: 120_000,
  }, () => {
    const sweep = join(ROOT, "tests", "fuzz", "cli_sweep.ts");
    const own = mkdtempSync(join(dir, "sweep-"));
    const argv = IS_DENO
      ? ["run", "--allow-read", "--allow-write", "--allow-env", sweep, own, "7", "35"]
      : [sweep, own, "7", "35"];
    const r = spawnSync(process.execPath, argv, {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1" },
      timeout: 60_000,
    });
    const lines = (r.stdout ?? "").trimEnd().split("\n");
    assert.equal(r.signal, null, `the sweep hung or was killed; last: ${lines.at(-1)}`);
    assert.equal(
      r.status,
      0,
      `${lines.filter((l) => l.startsWith("BAD")).join("\n")}\n${r.stderr}`,
    );
    assert.match(lines.at(-1)!, /^sweep: 48 variants, 672 runs, .* 0 bad$/);
  });
});
