/**
 * `umem map`: the heap drawn as the Vmalloc paper's Figure 6. Each row of the picture is a fixed
 * number of KiB of the heap, left to right in address order; allocated runs are thick bars
 * coloured by the cache (or arena) that owns them, free runs are thin lines, and the
 * allocator's own metadata is grey. The title carries the fragmentation figures: the extent
 * (from the first to the last allocated byte), the bytes busy, the bytes free and the largest
 * free run.
 *
 * Theory. The picture is read from the image alone, as the `Inspector` reads it, with no lock
 * taken and every walk bounded (a snapshot's lock words may still read as held):
 * - `[0, HDR_META)` is the header, the page map and the first segment records: metadata;
 * - the heap's arena is walked segment by segment: a free segment is free; an allocated one is
 *   a slab when the page map names a slab that starts there (its buffers are then allocated,
 *   free or cached by their state bytes, the colour padding and an in-slab record are
 *   overhead), a span imported by another arena (walked in turn: the metadata arena is grey
 *   as a whole, the oversize arena's and other arenas' segments get their own colours), one of
 *   vmem's own records (segment pages, arena records, hash tables, the stack table, the logs,
 *   the quarantine: grey), or else an allocation a program took from the heap's arena itself.
 *
 * @module
 */

// The core's modules import each other in a cycle that evaluates in the right order only when
// entered through its public face: enter there first.
import "../mod.ts";
import {
  HDR_ARENA_LIST,
  HDR_CTLOG,
  HDR_FAILLOG,
  HDR_META,
  HDR_META_ARENA,
  HDR_OVERSIZE,
  HDR_QUARANTINE,
  HDR_ROOT_ARENA,
  HDR_SEG_FREE,
  HDR_STACKS,
  HDR_TXLOG,
  type HeapView,
  PAGE_SHIFT,
} from "../core/image.ts";
import {
  BUF_ALLOC,
  BUF_CACHED,
  BUF_FREE,
  CA_CHUNK,
  CA_FLAGS,
  CA_MAGIC,
  CA_MAGIC_VALUE,
  CA_NCHUNKS,
  CA_SHIFT,
  CA_SLABSIZE,
  cacheName,
  CF_SMALL,
  SB_BASE,
  SB_CACHE,
  SB_START,
  SB_STATE,
} from "../core/slab.ts";
import { bufferStateAt } from "../core/magazine.ts";
import {
  arenaName,
  SEG_ALLOC,
  SEG_FREE,
  SEG_IMPORTED,
  SEG_SPAN,
  SEG_TYPE_MASK,
  VM_HASH,
  VM_HASH0,
  VM_MAGIC,
  VM_MAGIC_VALUE,
  VM_NEXT,
  VM_RECORD_SIZE,
  VM_SENTINEL,
  VM_SOURCE,
  VS_ANEXT,
  VS_END,
  VS_KNEXT,
  VS_SIZE,
  VS_START,
  VS_TYPE,
} from "../core/vmem.ts";

/** What a run of the heap holds. */
export type RunKind = "alloc" | "cached" | "free" | "meta" | "pad";

/** A run of bytes `[start, end)` of one kind, owned by `name` (a cache or an arena). */
export interface Run {
  /** First byte. */
  start: number;
  /** One past the last byte. */
  end: number;
  /** What it holds. */
  kind: RunKind;
  /** The cache or arena for `alloc` and `cached` runs; "" otherwise. */
  name: string;
}

/** The fragmentation figures of a heap, as the map's title prints them. */
export interface MapFigures {
  /** Bytes of the image. */
  heapBytes: number;
  /** Bytes from the first to the last allocated byte (metadata not counted). */
  extent: number;
  /** First allocated byte (0 when nothing is allocated). */
  extentStart: number;
  /** Bytes allocated: buffers handed out, oversize and arena segments. */
  busy: number;
  /** Bytes free: free buffers of slabs and free arena segments. */
  free: number;
  /** The largest run of contiguous free bytes. */
  largestFree: number;
  /** Bytes of metadata: header, page map, vmem records, the metadata arena, slab records. */
  metadata: number;
  /** Bytes of constructed buffers sitting in magazines. */
  cached: number;
  /** Bytes of slab padding (colour offsets and tails too small for a buffer). */
  padding: number;
}

/** A heap's runs and figures. */
export interface HeapMap {
  /** The runs in address order, adjacent runs of the same kind and owner merged. */
  runs: Run[];
  /** The figures. */
  figures: MapFigures;
  /** Owners of allocated runs, with the colour each is drawn in. */
  legend: { name: string; color: string }[];
}

/** Options of {@linkcode renderMap}. */
export interface MapOptions {
  /** KiB of the heap per row (default 64). */
  kib?: number;
  /** A title's first line (default "umem heap map"). */
  title?: string;
}

/** The name the oversize arena's segments are drawn under. */
const OVERSIZE = "umem_oversize";

/** Reads the image without trusting it: words outside the image read as 0. */
class Reader {
  constructor(readonly h: HeapView) {}
  w(a: number): number {
    return a >= 0 && a + 4 <= this.h.mapped && (a & 3) === 0 ? this.h.i32[a >> 2] : 0;
  }
  inside(a: number, bytes = 4): boolean {
    return a > 0 && a + bytes <= this.h.mapped;
  }
}

/** A segment of an arena, as read from its address-ordered list. */
interface Seg {
  start: number;
  end: number;
  type: number;
  imported: boolean;
}

/**
 * Finds the runs of a heap image: every byte of `[0, mapped)` is in exactly one run.
 *
 * @param h a live heap or a snapshot
 * @returns the runs, the figures and the legend
 */
export function mapHeap(h: HeapView): HeapMap {
  const r = new Reader(h);
  const mapped = h.mapped;
  const runs: Run[] = [];
  const add = (start: number, end: number, kind: RunKind, name = "") => {
    const s = Math.max(0, start), e = Math.min(mapped, end);
    if (e <= s) return;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.end === s && last.kind === kind && last.name === name) {
      last.end = e; // the common case: the next buffer of a slab in the same state
    } else runs.push({ start: s, end: e, kind, name });
  };
  const meta = Math.min(r.w(HDR_META), mapped);
  add(0, meta, "meta");

  // The arenas, and each one's segments (bounded walks).
  const arenas: number[] = [];
  const seen = new Set<number>();
  for (
    let a = r.w(HDR_ARENA_LIST);
    r.inside(a, VM_RECORD_SIZE) && !seen.has(a) && r.w(a + VM_MAGIC) === VM_MAGIC_VALUE;
    a = r.w(a + VM_NEXT)
  ) {
    seen.add(a);
    arenas.push(a);
  }
  const root = r.w(HDR_ROOT_ARENA);
  if (!arenas.includes(root) && r.w(root + VM_MAGIC) === VM_MAGIC_VALUE) arenas.push(root);
  const segRecords = new Set<number>(); // pages holding segment records
  const segsOf = new Map<number, Seg[]>();
  for (const a of arenas) {
    const out: Seg[] = [];
    const sentinel = r.w(a + VM_SENTINEL);
    if (r.inside(sentinel, VS_SIZE)) segRecords.add(sentinel >>> PAGE_SHIFT);
    const limit = mapped >> 5;
    for (
      let s = r.w(sentinel + VS_ANEXT), k = 0;
      s !== sentinel && r.inside(s, VS_SIZE) && k < limit;
      s = r.w(s + VS_ANEXT), k++
    ) {
      segRecords.add(s >>> PAGE_SHIFT);
      const t = r.w(s + VS_TYPE);
      out.push({
        start: r.w(s + VS_START),
        end: r.w(s + VS_END),
        type: t & SEG_TYPE_MASK,
        imported: (t & SEG_IMPORTED) !== 0,
      });
    }
    segsOf.set(a, out);
  }
  for (
    let s = r.w(HDR_SEG_FREE), k = 0;
    r.inside(s, VS_SIZE) && k < mapped >> 5;
    s = r.w(s + VS_KNEXT), k++
  ) {
    segRecords.add(s >>> PAGE_SHIFT);
  }
  // Each arena's segments grouped by the span they tile; the spans an arena imported from its
  // source, by "source:start", to the importer.
  const spansOf = new Map<number, Map<number, Seg[]>>();
  const importers = new Map<string, number>();
  for (const a of arenas) {
    const spans = new Map<number, Seg[]>();
    let current: Seg[] | undefined;
    for (const s of segsOf.get(a) ?? []) {
      if (s.type === SEG_SPAN) {
        current = [];
        spans.set(s.start, current);
        if (s.imported) importers.set(`${r.w(a + VM_SOURCE)}:${s.start}`, a);
      } else current?.push(s);
    }
    spansOf.set(a, spans);
  }
  // vmem's own allocations from the heap's arena, by start address.
  const records = new Set<number>();
  for (const a of arenas) {
    records.add(a);
    const t = r.w(a + VM_HASH);
    if (t !== a + VM_HASH0 && t !== 0) records.add(t);
  }
  for (const f of [HDR_STACKS, HDR_TXLOG, HDR_CTLOG, HDR_FAILLOG, HDR_QUARANTINE]) {
    const v = r.w(f);
    if (v !== 0) records.add(v);
  }
  const metaArena = r.w(HDR_META_ARENA), oversize = r.w(HDR_OVERSIZE);

  /** Paints a slab starting at `start`, or returns 0 when no slab starts there. */
  const slab = (start: number, end: number): number => {
    const sb = h.i32[(h.pagemap >> 2) + (start >>> PAGE_SHIFT)];
    if (!r.inside(sb, SB_STATE) || r.w(sb + SB_START) !== start) return 0;
    const cp = r.w(sb + SB_CACHE);
    if (!r.inside(cp, 256) || r.w(cp + CA_MAGIC) !== CA_MAGIC_VALUE) return 0;
    const size = r.w(cp + CA_SLABSIZE), chunk = r.w(cp + CA_CHUNK), n = r.w(cp + CA_NCHUNKS);
    const shift = r.w(cp + CA_SHIFT), base = r.w(sb + SB_BASE);
    if (size <= 0 || start + size > end || chunk <= 0 || n <= 0 || shift < 0 || shift > 30) {
      return 0;
    }
    if (base < start || base + n * chunk > start + size) return 0;
    const name = cacheName(h, cp);
    add(start, base, "pad");
    for (let i = 0; i < n; i++) {
      const b = base + i * chunk;
      const st = r.inside(sb + SB_STATE + ((i * chunk) >> shift), 1)
        ? bufferStateAt(h, cp, sb + SB_STATE + ((i * chunk) >> shift), b)
        : BUF_FREE;
      add(
        b,
        b + chunk,
        st === BUF_ALLOC ? "alloc" : st === BUF_CACHED ? "cached" : "free",
        st === BUF_ALLOC || st === BUF_CACHED ? name : "",
      );
    }
    const tail = base + n * chunk;
    if ((r.w(cp + CA_FLAGS) & CF_SMALL) !== 0 && sb >= tail && sb < start + size) {
      add(tail, sb, "pad");
      add(sb, start + size, "meta");
    } else {
      add(tail, start + size, "pad");
    }
    return size;
  };

  /** Paints the segments of arena `a` that tile its span at `span`, inside `[lo, hi)`. */
  const paintSpan = (a: number, span: number, lo: number, hi: number, depth: number): void => {
    for (const s of spansOf.get(a)?.get(span) ?? []) {
      if (s.end <= lo || s.start >= hi) continue;
      const start = Math.max(s.start, lo), end = Math.min(s.end, hi);
      if (s.type === SEG_FREE) add(start, end, "free");
      else if (s.type === SEG_ALLOC) paintAlloc(a, start, end, depth);
    }
  };

  /** Paints an allocated segment `[start, end)` of arena `a`. */
  const paintAlloc = (a: number, start: number, end: number, depth: number): void => {
    // A span another arena imported: that arena says what is in it.
    const child = importers.get(`${a}:${start}`);
    if (child !== undefined && depth < 8) {
      if (child === metaArena) add(start, end, "meta");
      else paintSpan(child, start, start, end, depth + 1);
      return;
    }
    // Slabs: the page map names their records.
    let p = start;
    for (let k = 0; p < end && k < 1 << 16; k++) {
      const n = slab(p, end);
      if (n === 0) break;
      p += n;
    }
    if (p >= end) return;
    if (a === root && (records.has(p) || segRecords.has(p >>> PAGE_SHIFT))) add(p, end, "meta");
    else if (a === metaArena) add(p, end, "meta");
    else if (a === oversize) add(p, end, "alloc", OVERSIZE);
    else add(p, end, "alloc", `arena ${arenaName(h, a)}`);
  };

  for (const span of spansOf.get(root)?.keys() ?? []) paintSpan(root, span, meta, mapped, 0);

  // In address order, with gaps (bytes no arena describes) counted as free, runs merged.
  runs.sort((x, y) => x.start - y.start || x.end - y.end);
  const merged: Run[] = [];
  let at = 0;
  const push = (run: Run) => {
    const last = merged[merged.length - 1];
    if (last !== undefined && last.end === run.start && last.kind === run.kind) {
      if (last.name === run.name) {
        last.end = run.end;
        return;
      }
    }
    merged.push({ ...run });
  };
  for (const run of runs) {
    if (run.end <= at) continue; // overlapped by an earlier run (a damaged image)
    const start = Math.max(run.start, at);
    if (start > at) push({ start: at, end: start, kind: "free", name: "" });
    push({ start, end: run.end, kind: run.kind, name: run.name });
    at = run.end;
  }
  if (at < mapped) push({ start: at, end: mapped, kind: "free", name: "" });

  const figures: MapFigures = {
    heapBytes: mapped,
    extent: 0,
    extentStart: 0,
    busy: 0,
    free: 0,
    largestFree: 0,
    metadata: 0,
    cached: 0,
    padding: 0,
  };
  let first = -1, last = -1, freeRun = 0;
  for (const run of merged) {
    const n = run.end - run.start;
    if (run.kind === "free") {
      figures.free += n;
      freeRun += n;
      figures.largestFree = Math.max(figures.largestFree, freeRun);
      continue;
    }
    freeRun = 0;
    if (run.kind === "alloc") {
      figures.busy += n;
      if (first < 0) first = run.start;
      last = run.end;
    } else if (run.kind === "meta") figures.metadata += n;
    else if (run.kind === "cached") figures.cached += n;
    else figures.padding += n;
  }
  if (first >= 0) {
    figures.extentStart = first;
    figures.extent = last - first;
  }
  const names = [...new Set(merged.filter((x) => x.name !== "").map((x) => x.name))].sort();
  return { runs: merged, figures, legend: names.map((name) => ({ name, color: colorOf(name) })) };
}

/** FNV-1a of a string. */
function hash(s: string): number {
  let x = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 0x01000193);
  return x >>> 0;
}

/** The colour a cache or arena is drawn in: a hue from its name's hash, never grey. */
export function colorOf(name: string): string {
  const x = hash(name);
  const hue = x % 360, sat = 0.55 + ((x >>> 9) % 30) / 100, light = 0.38 + ((x >>> 17) % 20) / 100;
  // HSL to RGB.
  const c = (1 - Math.abs(2 * light - 1)) * sat;
  const hp = hue / 60, xx = c * (1 - Math.abs((hp % 2) - 1));
  const [r1, g1, b1] = hp < 1
    ? [c, xx, 0]
    : hp < 2
    ? [xx, c, 0]
    : hp < 3
    ? [0, c, xx]
    : hp < 4
    ? [0, xx, c]
    : hp < 5
    ? [xx, 0, c]
    : [c, 0, xx];
  const m = light - c / 2;
  const to = (v: number) => Math.round((v + m) * 255).toString(16).padStart(2, "0");
  return `#${to(r1)}${to(g1)}${to(b1)}`;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&apos;",
  )
    // Characters XML 1.0 does not allow at all.
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, "?");
}

/** Bytes in a short human form: 1536 → "1.5 KiB". */
export function human(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024, u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[u]}`;
}

/** The title's figures line. */
export function figuresLine(f: MapFigures): string {
  return `extent ${f.extent} bytes (${human(f.extent)}), busy ${f.busy} (${
    human(f.busy)
  }), free ${f.free} (${human(f.free)}), largest free run ${f.largestFree} (${
    human(f.largestFree)
  })`;
}

const PLOT_W = 1024, LEFT = 96, RIGHT = 16, TOP = 64, ROW_H = 12;
const THICK = 9, MEDIUM = 5, THIN = 1.5;
const GREY = "#8c8c8c", PAD = "#d0d0d0", FREE = "#4d4d4d";

/**
 * Draws a heap as an SVG: a row per `kib` KiB, a legend, and the figures in the title.
 *
 * @param h a live heap or a snapshot
 * @param options KiB per row, the title's first line
 * @returns the SVG text and the map it drew
 */
export function renderMap(
  h: HeapView,
  options: MapOptions = {},
): { svg: string; map: HeapMap; rows: number } {
  const kib = options.kib ?? 64;
  const rowBytes = kib * 1024;
  const map = mapHeap(h);
  const f = map.figures;
  const rows = Math.ceil(f.heapBytes / rowBytes);
  const scale = PLOT_W / rowBytes;
  const legendCols = 3, legendItems = map.legend.length + 4;
  const legendRows = Math.ceil(legendItems / legendCols);
  const plotH = rows * ROW_H;
  const width = LEFT + PLOT_W + RIGHT;
  const height = TOP + plotH + 24 + legendRows * 18 + 16;
  const title = options.title ?? "umem heap map";
  const line1 = `${title}: ${f.heapBytes} bytes, ${kib} KiB per row, ${rows} rows`;
  const line2 = figuresLine(f);
  const line3 = `metadata ${f.metadata} (${human(f.metadata)}), cached in magazines ${f.cached} (${
    human(f.cached)
  }), slab padding ${f.padding} (${human(f.padding)})`;
  const out: string[] = [];
  out.push(
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">`,
    `<title>${xmlEscape(`${line1}; ${line2}`)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="18" font-size="13" font-weight="bold">${xmlEscape(line1)}</text>`,
    `<text x="${LEFT}" y="34">${xmlEscape(line2)}</text>`,
    `<text x="${LEFT}" y="50">${xmlEscape(line3)}</text>`,
  );
  // Runs, split at row boundaries, drawn row by row.
  const perRow: string[][] = Array.from({ length: rows }, () => []);
  const fmt = (v: number) => String(Math.round(v * 100) / 100);
  for (const run of map.runs) {
    for (let s = run.start; s < run.end;) {
      const row = Math.floor(s / rowBytes);
      if (row >= rows) break;
      const e = Math.min(run.end, (row + 1) * rowBytes);
      const x = (s - row * rowBytes) * scale, w = (e - s) * scale;
      const [hgt, fill, opacity] = run.kind === "alloc"
        ? [THICK, colorOf(run.name), ""]
        : run.kind === "cached"
        ? [MEDIUM, colorOf(run.name), ` fill-opacity="0.55"`]
        : run.kind === "meta"
        ? [THICK, GREY, ""]
        : run.kind === "pad"
        ? [MEDIUM, PAD, ""]
        : [THIN, FREE, ""];
      const y = (ROW_H - hgt) / 2;
      perRow[row].push(
        `<rect x="${fmt(x)}" y="${fmt(y)}" width="${
          fmt(Math.max(w, 0.05))
        }" height="${hgt}" fill="${fill}"${opacity}/>`,
      );
      s = e;
    }
  }
  for (let i = 0; i < rows; i++) {
    const y = TOP + i * ROW_H;
    out.push(
      `<g class="row" transform="translate(${LEFT},${y})">`,
      `<text x="-6" y="${ROW_H - 3}" text-anchor="end" font-size="9">0x${
        (i * rowBytes).toString(16).padStart(8, "0")
      }</text>`,
      ...perRow[i],
      `</g>`,
    );
  }
  // The legend.
  const ly = TOP + plotH + 24;
  const items: [string, string, number, string][] = [
    ["free (thin)", FREE, THIN, ""],
    ["metadata: header, page map, vmem records, umem_meta, slab records", GREY, THICK, ""],
    ["slab padding", PAD, MEDIUM, ""],
    [
      "cached in a magazine (medium, the cache's colour)",
      "#999999",
      MEDIUM,
      ` fill-opacity="0.55"`,
    ],
    ...map.legend.map((l): [string, string, number, string] => [l.name, l.color, THICK, ""]),
  ];
  out.push(`<g class="legend" transform="translate(${LEFT},${ly})">`);
  const colW = PLOT_W / legendCols;
  items.forEach(([label, color, hgt, extra], i) => {
    const x = (i % legendCols) * colW, y = Math.floor(i / legendCols) * 18;
    out.push(
      `<rect x="${fmt(x)}" y="${
        fmt(y + (12 - hgt) / 2)
      }" width="24" height="${hgt}" fill="${color}"${extra}/>`,
      `<text x="${fmt(x + 30)}" y="${y + 10}">${xmlEscape(label)}</text>`,
    );
  });
  out.push(`</g>`, `</svg>`, "");
  return { svg: out.join("\n"), map, rows };
}
