/**
 * A sweep of damaged snapshots through the `umem` command (cli/umem.ts), in process: a snapshot
 * of a heap with caches, arenas, an sbo arena, memory contexts, auditing and the transaction
 * log is truncated at many lengths, has bytes flipped (the file's checks must catch those),
 * and has words of its image overwritten with plausible values with both checksums rewritten
 * (what only the image's own checks and the analysers' bounds can catch). Every command runs
 * on every variant. Each run must end with exit status 0, 1 or 2, and a failure must be one
 * line on stderr starting `umem: `, with nothing that looks like a stack trace.
 *
 * A hang cannot be caught in process, so tests/badinput_cli_test.ts runs this file as a
 * subprocess with a timeout; the line `case N` printed before each variant names the one that
 * hung. Prints `sweep: V variants, R runs, exits {...}` at the end and exits 1 if any run broke
 * the rules (each reported on a line `BAD ...`).
 *
 * Run: `npx deno run --allow-read --allow-write --allow-env tests/fuzz/cli_sweep.ts DIR SEED N`.
 *
 * @module
 */

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Heap, writeSnapshot } from "../../mod.ts";
import { scope } from "../../sbo/mod.ts";
import { topContext } from "../../budget/mod.ts";
import { crc32, UMS_CRC_OFF, UMS_HCRC_OFF, UMS_HEADER } from "../../core/snapshot.ts";
import { main } from "../../cli/umem.ts";
import { exit, programArgs } from "./runner.ts";

/** Writes the fixture's snapshot into `dir`; returns its path. */
export function fixtureSnapshot(dir: string): string {
  const heap = Heap.create({
    size: 2 << 20,
    maxSize: 2 << 20,
    debug: "audit",
    logging: "transaction,contents=8k,fail=4k",
    options: "",
  });
  const table = heap.zalloc(64);
  heap.addRoot(table, 64);
  for (let i = 0; i < 8; i++) heap.i32[(table >> 2) + i] = heap.alloc(24 + 40 * i);
  for (let i = 0; i < 3; i++) heap.alloc(100); // leaked
  const c = heap.createCache("conn", 200);
  const kept = [c.alloc(), c.alloc()];
  c.free(kept[0]);
  heap.libc.free(heap.libc.malloc(3000));
  const arena = scope(heap);
  arena.alloc(500);
  const ctx = topContext(heap).create("job", { budget: 1 << 18 });
  for (let i = 0; i < 20; i++) ctx.alloc(50);
  const big: number[] = []; // into the fail log: the heap cannot grow
  try {
    for (;;) big.push(heap.alloc(65536));
  } catch {
    big.forEach((p) => heap.free(p, 65536));
  }
  const path = join(dir, "sweep.ums");
  writeSnapshot(heap, path);
  return path;
}

/** Rewrites both checksums of a `.ums` image, so that only the image's own checks can tell. */
export function resum(b: Uint8Array): Uint8Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length >= UMS_HEADER) {
    dv.setUint32(UMS_CRC_OFF, crc32(b.subarray(UMS_HEADER)), true);
    dv.setUint32(UMS_HCRC_OFF, crc32(b.subarray(0, UMS_HCRC_OFF)), true);
  }
  return b;
}

/** The damaged variants: [name, bytes]. */
export function* variants(
  bytes: Uint8Array,
  seed: number,
  n: number,
): Generator<[string, Uint8Array]> {
  let s = seed >>> 0 || 1;
  const rand = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const image = bytes.length - UMS_HEADER;
  for (const len of [0, 1, 8, 63, 64, 65, UMS_HEADER + 4096, bytes.length - 1]) {
    yield [`truncated to ${len}`, bytes.slice(0, len)];
  }
  yield ["one byte more", new Uint8Array([...bytes, 0])];
  for (let k = 0; k < 4; k++) {
    const b = bytes.slice(), at = Math.floor(rand() * bytes.length);
    b[at] ^= 1 << (k % 8);
    yield [`bit flipped at ${at}`, b];
  }
  const plausible = () => {
    const r = rand();
    return r < 0.3
      ? Math.floor(rand() * image) & ~7
      : r < 0.5
      ? 0
      : r < 0.6
      ? 0xffffffff
      : r < 0.7
      ? Math.floor(rand() * 64)
      : Math.floor(rand() * 2 ** 32);
  };
  for (let k = 0; k < n; k++) {
    const b = bytes.slice();
    const dv = new DataView(b.buffer);
    // Mostly the header page and the metadata after it, where the structures are.
    const words = 1 + Math.floor(rand() * 4);
    const where: number[] = [];
    for (let j = 0; j < words; j++) {
      const r = rand();
      const off = r < 0.5
        ? Math.floor(rand() * 4096)
        : Math.floor(rand() * Math.min(image, 1 << 18));
      const at = UMS_HEADER + (off & ~3);
      dv.setUint32(at, plausible(), true);
      where.push(off & ~3);
    }
    yield [`image words at ${where.join(",")} overwritten, checksums rewritten`, resum(b)];
  }
}

/** The commands every variant goes through. */
function commands(dir: string): string[][] {
  return [
    ["findleaks"],
    ["verify"],
    ["status"],
    ["caches"],
    ["arenas"],
    ["walk", "conn"],
    ["walk", "umem_alloc_112"],
    ["whatis", "0x10000"],
    ["bufctl", "0x10000"],
    ["log", "--limit", "5"],
    ["log", "contents", "--limit", "5"],
    ["log", "fail", "-f", "json"],
    ["map", "-o", join(dir, "sweep.svg"), "--kib", "16"],
    ["findleaks", "-f", "json"],
  ];
}

/** Runs the sweep; returns the number of runs that broke the rules. */
export function sweep(
  dir: string,
  seed: number,
  n: number,
  log: (s: string) => void = console.log,
): number {
  const path = fixtureSnapshot(dir);
  const bytes = new Uint8Array(readFileSync(path));
  const file = join(dir, "variant.ums");
  const exits: Record<number, number> = {};
  let runs = 0, bad = 0, count = 0, internal = 0;
  for (const [name, b] of variants(bytes, seed, n)) {
    log(`case ${count++}: ${name}`);
    writeFileSync(file, b);
    for (const cmd of commands(dir)) {
      const err: string[] = [];
      let code: number;
      try {
        code = main(["--dump", file, ...cmd], { log: () => {}, error: (t) => err.push(t) });
      } catch (e) {
        bad++;
        log(`BAD ${name}: umem ${cmd.join(" ")} threw ${String(e)}`);
        continue;
      }
      runs++;
      exits[code] = (exits[code] ?? 0) + 1;
      const text = err.join("\n");
      // The command's last resort: an error that is not a UmemError, caught and reported.
      if (text.includes("cannot analyse the snapshot")) {
        internal++;
        log(`internal error caught: ${name}: umem ${cmd.join(" ")}: ${text}`);
      }
      const broke = ![0, 1, 2].includes(code) ||
        (code === 2 && (err.length !== 1 || !text.startsWith("umem: "))) ||
        /\n\s+at |Uncaught/.test(text) || text.includes("\n");
      if (broke) {
        bad++;
        log(`BAD ${name}: umem ${cmd.join(" ")} exit ${code}: ${JSON.stringify(text)}`);
      }
    }
  }
  log(
    `sweep: ${count} variants, ${runs} runs, exits ${
      JSON.stringify(exits)
    }, ${internal} caught by the last resort, ${bad} bad`,
  );
  return bad;
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  const [dir, seed, n] = programArgs();
  if (dir === undefined) {
    console.error("usage: cli_sweep.ts DIR [SEED] [N]");
    exit(2);
  }
  exit(sweep(dir, Number(seed ?? 1), Number(n ?? 40)) === 0 ? 0 : 1);
}
