/**
 * A tour of `region`: the Vmalloc paper's Figure 8 program under Vmdebug, the Figure 4
 * fragment pattern under Vmbest, a Vmprofile report, and a region saved to a file and opened
 * again.
 *
 *     deno run --allow-read --allow-write --allow-env examples/region_tour.ts
 *
 * @module
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { bufferDiscipline, growableDiscipline, Malloc, Region } from "../region/mod.ts";

// ---- Figure 8: Vmdebug finds the errors and names the call sites ----
console.log("== Vmdebug (Figure 8) ==");
const m = new Malloc({ method: "debug", watch: [] }, {
  onError: (e) => console.log(e.message), // report and go on, as Vmdebug without VM_DBABORT
  onAlert: (line) => console.log(line),
});
const u8 = () => new Uint8Array(m.region.buffer);
const a = m.malloc(4);
u8().set([0x61, 0x62, 0x63, 0x64, 0], a); // strcpy(a, "abcd"): one byte too many
m.free(a);
m.free(a + 4000);
const b = m.malloc(5);
m.region.watch(b);
m.free(b);
m.free(b);

// ---- Figure 4: a growing block among small ones ----
console.log("\n== Vmbest (Figure 4) ==");
const r = Region.open(growableDiscipline({ maxSize: 1 << 26 }), "best");
let size = 32, big = r.alloc(size);
for (let i = 0; i < 10000; i++) {
  r.alloc(24);
  big = r.resize(big, size += 32);
}
const s = r.stat();
console.log(
  `moves=${s.moves} copied=${(s.copied / 1024).toFixed(0)}K max_busy=${
    (s.maxBusy / 1024).toFixed(0)
  }K extent=${(s.extent / 1024).toFixed(0)}K   (paper, Vmbest: 12 moves, 335K copied)`,
);

// ---- Vmprofile ----
console.log("\n== Vmprofile ==");
const p = Region.open(growableDiscipline(), "profile");
const keep: number[] = [];
for (let i = 0; i < 100; i++) keep.push(p.alloc(64));
for (let i = 0; i < 50; i++) p.free(keep[i]);
p.free(p.resize(p.alloc(10), 1000));
console.log(p.report().trimEnd());

// ---- a region in a buffer, saved to a file and opened again ----
console.log("\n== persistence ==");
const sab = new SharedArrayBuffer(1 << 16);
const saved = Region.open(bufferDiscipline(sab), "best");
const msg = saved.alloc(32);
new TextEncoder().encodeInto("kept across runs", new Uint8Array(sab, msg, 32));
writeFileSync("region.img", new Uint8Array(sab));
const bytes = readFileSync("region.img");
const copy = new SharedArrayBuffer(bytes.length);
new Uint8Array(copy).set(bytes);
const reopened = Region.open(bufferDiscipline(copy), "best");
const text = new TextDecoder().decode(new Uint8Array(copy).slice(msg, msg + 16));
console.log(`reopened: ${reopened.stat().busyCount} block, "${text}"`);
rmSync("region.img");
