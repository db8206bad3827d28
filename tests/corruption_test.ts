/**
 * Corruption on purpose: byte flips in buffers, buffer tags, slab records, magazines and the
 * heap header, each on a fresh heap. With debugging, each flip of a buffer or its tag is
 * reported as the right kind of HeapCorruptionError at the right address. With or without
 * debugging, flips of the allocator's own metadata must never hang the heap nor let anything
 * but a UmemError escape from alloc, free, verify, reap or findleaks.
 *
 * Run: `npx deno test --allow-read --allow-env tests/corruption_test.ts` or
 * `npx bun test tests/corruption_test.ts`.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { corruption } from "./helpers.ts";
import { CorruptImageError, Heap, inspect, UmemError } from "../mod.ts";
import { BT_A_SLOT, BT_BXSTAT, BT_LINK, BT_REDZONE } from "../core/buftag.ts";
import {
  CA_LINKOFF,
  CA_SHIFT,
  CA_TAGOFF,
  SB_BASE,
  SB_CACHE,
  SB_FREE,
  SB_NEXT,
  SB_REFCNT,
  SB_STATE,
  slabOf,
} from "../core/slab.ts";
import { CC_LOADED, CC_ROUNDS, MG_ROUNDS } from "../core/magazine.ts";
import { HDR_MAGIC, HDR_VERSION } from "../core/image.ts";
import { sizeCache } from "../core/size_class.ts";

/**
 * A heap that ignores the environment and reports by throwing (`noabort`); short lock waits,
 * so a lock left held cannot stall.
 */
function mk(debug: string): Heap {
  const d = debug === "" ? "" : `${debug},noabort`;
  return Heap.create({ size: 1 << 20, debug: d, logging: "", options: "", lockTimeout: 50 });
}

/** The address of the buffer tag of sized buffer `p` of `size` bytes. */
function tagOf(heap: Heap, p: number, size: number): number {
  return p + heap.i32[(sizeCache(heap, size) + CA_TAGOFF) >> 2];
}

/** XORs one byte. */
function flip(heap: Heap, addr: number, mask = 0xff): void {
  heap.u8[addr] ^= mask;
}

// ---- 1. debugging reports each flip as its kind, at its buffer ----

interface DebugRow {
  name: string;
  kind: string;
  /** Sets up, flips, and returns the buffer whose report is expected and the failing call. */
  run: (heap: Heap) => { buf: number; call: () => unknown; tag?: number };
}

const SIZE = 50;

const debugRows: DebugRow[] = [
  {
    name: "a byte of a freed buffer, found by the next alloc of its size",
    kind: "modified-after-free",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      heap.free(p, SIZE);
      flip(heap, p + 12);
      return { buf: p, call: () => heap.alloc(SIZE) };
    },
  },
  {
    name: "the last byte of a freed buffer's pattern, found by the next alloc",
    kind: "modified-after-free",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      heap.free(p, SIZE);
      flip(heap, p + 55, 0x01);
      return { buf: p, call: () => heap.alloc(SIZE) };
    },
  },
  {
    name: "the redzone word of a freed buffer, found by the next alloc",
    kind: "modified-after-free",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      heap.free(p, SIZE);
      flip(heap, tagOf(heap, p, SIZE) + BT_REDZONE + 2);
      return { buf: p, call: () => heap.alloc(SIZE) };
    },
  },
  {
    name: "the first redzone byte after the requested size, found at free",
    kind: "redzone-violation",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      flip(heap, p + SIZE);
      return { buf: p, call: () => heap.free(p, SIZE) };
    },
  },
  {
    name: "the last redzone byte before the tag, found at free",
    kind: "redzone-violation",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      flip(heap, tagOf(heap, p, SIZE) - 1, 0x10);
      return { buf: p, call: () => heap.free(p, SIZE) };
    },
  },
  {
    name: "the redzone word of an allocated buffer, found at free",
    kind: "redzone-violation",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      flip(heap, tagOf(heap, p, SIZE) + BT_REDZONE);
      return { buf: p, call: () => heap.free(p, SIZE) };
    },
  },
  {
    name: "the check word BT_BXSTAT of an allocated buffer, found at free",
    kind: "boundary-tag-corrupted",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      const tag = tagOf(heap, p, SIZE);
      flip(heap, tag + BT_BXSTAT + 1);
      return { buf: p, call: () => heap.free(p, SIZE), tag };
    },
  },
  {
    name: "the check word BT_BXSTAT of a freed buffer, found by the next alloc",
    kind: "boundary-tag-corrupted",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      heap.free(p, SIZE);
      const tag = tagOf(heap, p, SIZE);
      flip(heap, tag + BT_BXSTAT + 3);
      return { buf: p, call: () => heap.alloc(SIZE), tag };
    },
  },
  {
    name: "the audit slot word of an allocated buffer, found at free",
    kind: "bufctl-corrupted",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      const tag = tagOf(heap, p, SIZE);
      flip(heap, tag + BT_A_SLOT + 3, 0x80); // a negative worker slot
      return { buf: p, call: () => heap.free(p, SIZE), tag };
    },
  },
  {
    name: "the audit slot word of an allocated buffer, a slot past the last",
    kind: "bufctl-corrupted",
    run: (heap) => {
      const p = heap.alloc(SIZE);
      const tag = tagOf(heap, p, SIZE);
      flip(heap, tag + BT_A_SLOT + 1, 0x01); // slot 256
      return { buf: p, call: () => heap.free(p, SIZE), tag };
    },
  },
];

describe("corruption with UMEM_DEBUG=default: each flip is reported as its kind", () => {
  for (const row of debugRows) {
    it(`${row.name}: ${row.kind}`, () => {
      const heap = mk("default");
      // Neighbours, so the flipped buffer is not alone in its slab.
      const others = Array.from({ length: 5 }, () => heap.alloc(SIZE));
      const { buf, call, tag } = row.run(heap);
      const e = corruption(call);
      assert.equal(e.kind, row.kind, e.message);
      assert.equal(e.address, buf, `address ${e.address}, expected ${buf}`);
      assert.equal(e.cache, "umem_alloc_64");
      assert.equal(e.bufctl, tag ?? tagOf(heap, buf, SIZE));
      assert.ok(e instanceof UmemError);
      for (const p of others) heap.free(p, SIZE);
    });
  }

  it("a byte of a freed buffer never reused: verify() names it, reap() raises it", () => {
    const heap = mk("default");
    const p = heap.alloc(200);
    heap.free(p, 200);
    flip(heap, p + 100);
    const problems = heap.verify();
    assert.equal(problems.length, 1, problems.join("\n"));
    assert.match(problems[0], /buffer modified after being freed/);
    assert.ok(problems[0].includes(`0x${p.toString(16)}`), problems[0]);
    const e = corruption(() => heap.reap());
    assert.equal(e.kind, "modified-after-free");
    assert.equal(e.address, p);
  });
});

// ---- 2. metadata flips: bounded operations, only UmemErrors escape ----

/** A heap in a known state: 64-byte buffers, some live, some freed. */
interface Scene {
  heap: Heap;
  live: number[];
  /** A live buffer in the first slab. */
  victim: number;
}

const N = 40;

function scene(debug: string): Scene {
  const heap = mk(debug);
  const all = Array.from({ length: N }, () => heap.alloc(64));
  const live: number[] = [];
  all.forEach((p, i) => {
    if (i % 3 === 0) heap.free(p, 64);
    else live.push(p);
  });
  return { heap, live, victim: live[0] };
}

/** The slab record of `p`. */
function slab(heap: Heap, p: number): number {
  const sb = slabOf(heap, p);
  assert.notEqual(sb, 0, `no slab for ${p}`);
  return sb;
}

/** The state byte of buffer `p`. */
function stateByte(heap: Heap, p: number): number {
  const sb = slab(heap, p), cp = heap.i32[(sb + SB_CACHE) >> 2];
  return sb + SB_STATE + ((p - heap.i32[(sb + SB_BASE) >> 2]) >> heap.i32[(cp + CA_SHIFT) >> 2]);
}

interface MetaRow {
  name: string;
  /** Flips something; returns false when the row does not apply to this mode. */
  flip: (s: Scene) => boolean;
  /** verify() right after the flip must report at least one problem. */
  verifySees: boolean;
  /** Debug modes the row runs in. */
  modes?: string[];
  /** Skipped: a core bug (see the comment on the row). */
  skip?: string;
}

const metaRows: MetaRow[] = [
  {
    name: "SB_FREE, low byte (free-list head points into a buffer)",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_FREE, 0x04), true),
    verifySees: true,
  },
  {
    name: "SB_FREE, second byte (free-list head points to another page)",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_FREE + 1, 0x10), true),
    verifySees: true,
  },
  {
    name: "SB_FREE, high byte (free-list head far outside the heap)",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_FREE + 3, 0x7f), true),
    verifySees: true,
  },
  {
    name: "SB_REFCNT, low byte",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_REFCNT, 0x01), true),
    verifySees: true,
  },
  {
    name: "SB_REFCNT, high byte (negative count)",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_REFCNT + 3, 0x80), true),
    verifySees: true,
  },
  {
    name: "SB_CACHE, low byte",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_CACHE, 0x40), true),
    verifySees: true,
  },
  {
    name: "SB_CACHE, high byte",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_CACHE + 3, 0x10), true),
    verifySees: true,
  },
  {
    name: "state byte of a live buffer (ALLOC → garbage)",
    flip: ({ heap, victim }) => (flip(heap, stateByte(heap, victim)), true),
    verifySees: true,
  },
  {
    name: "state byte of a live buffer (ALLOC → FREE)",
    flip: ({ heap, victim }) => (flip(heap, stateByte(heap, victim), 0x01), true),
    verifySees: true,
  },
  {
    name: "state byte of an interior granule",
    flip: ({ heap, victim }) => (flip(heap, stateByte(heap, victim) + 1, 0x02), true),
    verifySees: true,
  },
  {
    name: "a magazine round (the next alloc's buffer), low byte",
    // Debugged caches have no magazines: the row applies without debugging only.
    modes: [""],
    flip: (s) => flipRound(s, 0, 0x08),
    verifySees: false,
  },
  {
    name: "a magazine round, high byte (far outside the heap)",
    modes: [""],
    flip: (s) => flipRound(s, 3, 0x7f),
    verifySees: false,
  },
  {
    name: "SB_NEXT, second byte (the slab list link)",
    flip: ({ heap, victim }) => (flip(heap, slab(heap, victim) + SB_NEXT + 1, 0x10), true),
    verifySees: true,
  },
  {
    name: "SB_NEXT pointing at its own slab (a cycle in the slab list)",
    flip: ({ heap, victim }) => {
      const sb = slab(heap, victim);
      heap.i32[(sb + SB_NEXT) >> 2] = sb;
      return true;
    },
    verifySees: true,
  },
  {
    name: "a free buffer's free-list link pointing at itself (a cycle in the free list)",
    // Without debugging: a debugged slab's free list was empty in this scene.
    modes: [""],
    flip: ({ heap, victim }) => {
      const sb = slab(heap, victim), cp = heap.i32[(sb + SB_CACHE) >> 2];
      const head = heap.i32[(sb + SB_FREE) >> 2];
      assert.notEqual(head, 0, "the slab has a free buffer");
      const link = head + heap.i32[(cp + CA_LINKOFF) >> 2];
      heap.i32[link >> 2] = head;
      return true;
    },
    verifySees: true,
  },
  {
    name: "HDR_VERSION of the heap header",
    flip: ({ heap }) => (flip(heap, HDR_VERSION, 0x02), true),
    verifySees: false,
  },
];

/** Frees a few live buffers into this slot's loaded magazine and flips a byte of its top round. */
function flipRound(s: Scene, byte: number, mask: number): boolean {
  const { heap, live } = s;
  for (const p of live.splice(live.length - 4)) heap.free(p, 64);
  const cc = sizeCache(heap, 64) + heap.ccOff;
  const rounds = heap.i32[(cc + CC_ROUNDS) >> 2], mag = heap.i32[(cc + CC_LOADED) >> 2];
  assert.ok(rounds > 0 && mag !== 0, "the loaded magazine holds rounds");
  flip(heap, mag + MG_ROUNDS + (rounds - 1) * 4 + byte, mask);
  return true;
}

/**
 * A bounded sequence of operations after a flip. Returns every escaped error that is not a
 * UmemError, as "operation: error".
 */
function hammer(s: Scene): string[] {
  const { heap, live } = s;
  const bad: string[] = [];
  let opsDone = 0;
  const op = (what: string, f: () => unknown): unknown => {
    opsDone++;
    try {
      return f();
    } catch (e) {
      if (!(e instanceof UmemError)) {
        bad.push(`${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      }
      return undefined;
    }
  };
  const got: number[] = [];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 30; i++) {
      const p = op("alloc(64)", () => heap.alloc(64));
      if (typeof p === "number" && p > 0) got.push(p);
    }
    for (const size of [8, 200, 3000]) {
      const p = op(`alloc(${size})`, () => heap.alloc(size));
      if (typeof p === "number" && p > 0) op(`free(${size})`, () => heap.free(p, size));
    }
    for (const p of live.splice(0, 10)) op("free(64)", () => heap.free(p, 64));
    for (const p of got.splice(0, 20)) op("free(64)", () => heap.free(p, 64));
    op("libc.malloc", () => {
      const p = heap.libc.malloc(100);
      heap.libc.free(p);
    });
    op("verify", () => heap.verify());
    op("inspect.findleaks", () => inspect(heap).findleaks());
    op("reap", () => heap.reap());
  }
  for (const p of [...live, ...got]) op("free(64)", () => heap.free(p, 64));
  op("verify", () => heap.verify());
  op("reap", () => heap.reap());
  op("inspect.findleaks", () => inspect(heap).findleaks());
  assert.ok(opsDone > 100);
  return [...new Set(bad)];
}

for (const mode of ["", "default"]) {
  describe(`metadata flips, ${mode === "" ? "no debugging" : `UMEM_DEBUG=${mode}`}`, () => {
    for (const row of metaRows) {
      if (row.modes !== undefined && !row.modes.includes(mode)) continue;
      const test = row.skip !== undefined ? it.skip : it;
      test(`${row.name}: only UmemErrors escape, nothing hangs`, () => {
        const s = scene(mode);
        assert.deepEqual(s.heap.verify(), [], "sound before the flip");
        assert.ok(row.flip(s));
        if (row.verifySees) {
          let problems: string[] = [];
          try {
            problems = s.heap.verify();
          } catch (e) {
            assert.ok(e instanceof UmemError, `verify() threw ${e}`);
            problems = [String(e)];
          }
          assert.ok(problems.length > 0, "verify() reports the flip");
        }
        const bad = hammer(s);
        assert.deepEqual(bad, [], `non-UmemErrors escaped:\n${bad.join("\n")}`);
      });
    }

    it("HDR_MAGIC: Heap.attach throws CorruptImageError; nothing else escapes", () => {
      const s = scene(mode);
      flip(s.heap, HDR_MAGIC + 1);
      assert.throws(() => Heap.attach(s.heap.buffer), CorruptImageError);
      const bad = hammer(s);
      assert.deepEqual(bad, [], `non-UmemErrors escaped:\n${bad.join("\n")}`);
      flip(s.heap, HDR_MAGIC + 1);
      const w = Heap.attach(s.heap.buffer);
      w.detach();
    });
  });
}

describe("a broken slab free list (the link a free buffer, or its tag, holds)", () => {
  /** Allocates `n` 64-byte buffers until one is refused; what each call gave. */
  function allocs(heap: Heap, n: number): (number | UmemError)[] {
    const out: (number | UmemError)[] = [];
    for (let i = 0; i < n; i++) {
      try {
        out.push(heap.alloc(64));
      } catch (e) {
        if (!(e instanceof UmemError)) throw e;
        out.push(e);
      }
    }
    return out;
  }

  /** Checks the calls: one "bufctl corrupted" report, every address a 64-byte buffer, distinct. */
  function checkAfter(heap: Heap, got: (number | UmemError)[], size: number): void {
    const errors = got.filter((g) => g instanceof UmemError) as UmemError[];
    assert.equal(errors.length, 1, "one report");
    assert.equal(errors[0].kind, "bufctl-corrupted");
    assert.match(errors[0].message, /bufctl corrupted[\s\S]*free list leads to 0x/);
    const ptrs = got.filter((g) => typeof g === "number") as number[];
    assert.equal(new Set(ptrs).size, ptrs.length, "no buffer handed out twice");
    for (const p of ptrs) {
      assert.equal(inspect(heap).whatis(p).name, "umem_alloc_64", `${p} is a 64-byte buffer`);
    }
    assert.equal(heap.size, size, "the header is intact");
    assert.deepEqual(heap.verify(), [], "the list was made again");
  }

  for (const options of ["", "nomagazines"]) {
    it(`no debugging${options && `, ${options}`}: 8 bytes written past a buffer into its free neighbour`, () => {
      const heap = Heap.create({ size: 1 << 20, debug: "", options });
      const a = heap.alloc(64), b = heap.alloc(64);
      heap.alloc(64);
      heap.free(b, 64);
      heap.reap(); // b back on its slab, the head of its free list
      heap.i32[(a + 64) >> 2] = 0x12345670; // before the fix: handed out as a buffer
      checkAfter(heap, allocs(heap, 6), 1 << 20);
    });
  }

  for (const debug of ["guards,noabort", "default,noabort"]) {
    it(`${debug}: a stray word in the link of free buffers' tags`, () => {
      const heap = Heap.create({ size: 1 << 20, debug });
      const ps = Array.from({ length: 20 }, () => heap.alloc(64));
      for (const p of ps) heap.free(p, 64);
      heap.reap();
      const keep = heap.alloc(64), tagOff = 64;
      for (const p of ps) if (p !== keep) heap.i32[(p + tagOff + BT_LINK) >> 2] = 0x7654320;
      // Before the fix: the wild address was reported as a tag and pushed on the magazine, and
      // with nomagazines freed to no slab, writing over the heap's header.
      checkAfter(heap, allocs(heap, 40), heap.size);
    });
  }
});
