/**
 * A real HTTP server whose handler builds everything one request needs in a scoped arena.
 *
 * `POST /orders` takes a body of CSV lines `item,quantity,unit price` and answers with the
 * total quantity and amount per item, largest amount first. The handler copies the body into
 * the request's arena, parses it into an array of order records there (grown in place with
 * `resize`, since it is always the arena's last block), aggregates the orders in an
 * open-addressing hash table in the same arena, and answers from that table. When the handler's
 * promise settles, `withArena` drops the whole arena, also when the body was malformed (400) or
 * too big for the arena's limit (413); its chunks go back to the worker's pool for the next
 * request.
 *
 * Run (it serves on a loopback port, sends itself a few requests and a burst of load, prints
 * the answers and the heap's figures, then stops; `--serve` keeps it serving):
 *
 *     deno run --allow-net examples/request_arena.ts
 *     bun examples/request_arena.ts
 *
 * @module
 */
import { Heap, UmemError } from "../mod.ts";
import { type BumpArena, ChunkPool, withArena } from "../sbo/mod.ts";

/** An order record in the arena: name offset and length (in the body's copy), quantity, price. */
const OR_NAME = 0, OR_NAMELEN = 4, OR_QTY = 8, OR_PRICE = 16, OR_SIZE = 24;
/** A hash-table entry in the arena: name offset and length, total quantity, total amount. */
const HE_NAME = 0, HE_NAMELEN = 4, HE_QTY = 8, HE_AMOUNT = 16, HE_SIZE = 24;

/** The answer to one request. */
export interface OrderSummary {
  /** Order lines parsed. */
  lines: number;
  /** Per item, largest amount first. */
  items: { item: string; quantity: number; amount: number }[];
  /** The request arena's figures when the answer was built. */
  arena: { used: number; chunks: number; reserved: number };
}

/** A malformed body: the server answers 400. */
export class BadRequest extends Error {}

const COMMA = 44, NL = 10, CR = 13;

/** Parses a decimal number in `u8[from, to)`, or throws BadRequest naming the line. */
function number(u8: Uint8Array, from: number, to: number, line: number, what: string): number {
  let v = 0, i = from, scale = 0, digits = 0;
  for (; i < to; i++) {
    const c = u8[i];
    if (c >= 48 && c <= 57) {
      v = v * 10 + (c - 48);
      if (scale > 0) scale *= 10;
      digits++;
    } else if (c === 46 && scale === 0) scale = 1;
    else break;
  }
  if (i !== to || digits === 0) throw new BadRequest(`line ${line}: bad ${what}`);
  return scale > 0 ? v / scale : v;
}

/** FNV-1a of `u8[from, from + len)`. */
function hash(u8: Uint8Array, from: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ u8[from + i], 0x01000193);
  return h >>> 0;
}

function sameBytes(u8: Uint8Array, a: number, b: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (u8[a + i] !== u8[b + i]) return false;
  return true;
}

const decoder = new TextDecoder();

/**
 * Parses `body` into structures built in `arena` and answers from them.
 *
 * @param heap the heap the arena lives in
 * @param arena the request's arena
 * @param body the request body
 * @returns the summary
 * @throws {BadRequest} for a malformed line
 * @throws {UmemError} `budget-exceeded` when the body needs more than the arena's limit
 */
export function summarize(heap: Heap, arena: BumpArena, body: Uint8Array): OrderSummary {
  // The body's bytes, then the order array (the last block, grown in place as lines come).
  const text = arena.alloc(Math.max(body.length, 1), 1);
  heap.u8.set(body, text);
  let cap = 16, n = 0;
  let orders = arena.alloc(cap * OR_SIZE, 8);
  let line = 0;
  for (let at = text, end = text + body.length; at < end;) {
    let eol = heap.u8.indexOf(NL, at);
    if (eol < 0 || eol > end) eol = end;
    const next = eol + 1;
    if (eol > at && heap.u8[eol - 1] === CR) eol--;
    line++;
    if (eol > at) {
      const c1 = heap.u8.indexOf(COMMA, at), c2 = c1 < 0 ? -1 : heap.u8.indexOf(COMMA, c1 + 1);
      if (c1 < 0 || c1 >= eol || c2 < 0 || c2 >= eol || c1 === at) {
        throw new BadRequest(`line ${line}: expected item,quantity,price`);
      }
      if (n === cap) {
        cap *= 2;
        orders = arena.resize(orders, cap * OR_SIZE, 8);
      }
      const o = orders + n * OR_SIZE;
      heap.i32[(o + OR_NAME) >> 2] = at;
      heap.i32[(o + OR_NAMELEN) >> 2] = c1 - at;
      const qty = number(heap.u8, c1 + 1, c2, line, "quantity");
      if (!Number.isInteger(qty) || qty > 1e9) throw new BadRequest(`line ${line}: bad quantity`);
      heap.i32[(o + OR_QTY) >> 2] = qty;
      heap.f64[(o + OR_PRICE) >> 3] = number(heap.u8, c2 + 1, eol, line, "price");
      n++;
    }
    at = next;
  }
  // Aggregate by item in an open-addressing table in the arena.
  let slots = 16;
  while (slots < 2 * n) slots *= 2;
  const table = arena.zalloc(slots * HE_SIZE, 8);
  let distinct = 0;
  for (let i = 0; i < n; i++) {
    const o = orders + i * OR_SIZE;
    const name = heap.i32[(o + OR_NAME) >> 2], len = heap.i32[(o + OR_NAMELEN) >> 2];
    let s = hash(heap.u8, name, len) & (slots - 1);
    for (;;) {
      const e = table + s * HE_SIZE;
      const en = heap.i32[(e + HE_NAME) >> 2];
      if (en === 0) {
        heap.i32[(e + HE_NAME) >> 2] = name;
        heap.i32[(e + HE_NAMELEN) >> 2] = len;
        distinct++;
      } else if (heap.i32[(e + HE_NAMELEN) >> 2] !== len || !sameBytes(heap.u8, en, name, len)) {
        s = (s + 1) & (slots - 1);
        continue;
      }
      const qty = heap.i32[(o + OR_QTY) >> 2];
      heap.f64[(e + HE_QTY) >> 3] += qty;
      heap.f64[(e + HE_AMOUNT) >> 3] += qty * heap.f64[(o + OR_PRICE) >> 3];
      break;
    }
  }
  // Answer from the table.
  const items: OrderSummary["items"] = [];
  for (let s = 0; s < slots && items.length < distinct; s++) {
    const e = table + s * HE_SIZE, name = heap.i32[(e + HE_NAME) >> 2];
    if (name === 0) continue;
    items.push({
      item: decoder.decode(heap.u8.slice(name, name + heap.i32[(e + HE_NAMELEN) >> 2])),
      quantity: heap.f64[(e + HE_QTY) >> 3],
      amount: Math.round(heap.f64[(e + HE_AMOUNT) >> 3] * 100) / 100,
    });
  }
  items.sort((a, b) => b.amount - a.amount || (a.item < b.item ? -1 : 1));
  const { used, chunks, reserved } = arena.stats();
  return { lines: n, items, arena: { used, chunks, reserved } };
}

/** The most bytes one request's arena may use. */
export const REQUEST_LIMIT = 1 << 20;

/**
 * The server's handler: `POST /orders` with CSV lines, answered from a scoped arena.
 *
 * @param heap the heap the request arenas come from
 * @returns the handler, for `Deno.serve`, `Bun.serve` or a direct call
 */
export function ordersHandler(heap: Heap): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method !== "POST" || new URL(req.url).pathname !== "/orders") {
      return new Response("POST /orders with lines item,quantity,price\n", { status: 404 });
    }
    try {
      // The arena lives until this promise settles: through the await of the body too.
      return await withArena(heap, async (arena) => {
        const body = new Uint8Array(await req.arrayBuffer());
        return Response.json(summarize(heap, arena, body));
      }, { limit: REQUEST_LIMIT });
    } catch (e) {
      if (e instanceof BadRequest) return new Response(e.message + "\n", { status: 400 });
      if (e instanceof UmemError && e.kind === "budget-exceeded") {
        return new Response("body too large for the request arena\n", { status: 413 });
      }
      throw e;
    }
  };
}

/** A running server. */
export interface RunningServer {
  /** The loopback port it listens on. */
  port: number;
  /** Stops it and waits until it has. */
  close(): Promise<void>;
}

interface BunServer {
  port: number;
  stop(closeActive?: boolean): Promise<void> | void;
}
interface BunLike {
  serve(o: {
    hostname: string;
    port: number;
    fetch: (req: Request) => Promise<Response>;
  }): BunServer;
}

/**
 * Serves `handler` on 127.0.0.1 (`Bun.serve` under Bun, `Deno.serve` under Deno).
 *
 * @param handler the request handler
 * @param port the port (0: any free one)
 * @returns the port and a way to stop
 */
export async function serveLoopback(
  handler: (req: Request) => Promise<Response>,
  port = 0,
): Promise<RunningServer> {
  const bun = (globalThis as unknown as { Bun?: BunLike }).Bun;
  if (bun !== undefined) {
    const server = bun.serve({ hostname: "127.0.0.1", port, fetch: handler });
    return {
      port: server.port,
      close: async () => {
        await server.stop(true);
      },
    };
  }
  let listening!: (port: number) => void;
  const ready = new Promise<number>((resolve) => listening = resolve);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, onListen: ({ port }) => listening(port) },
    handler,
  );
  return {
    port: await ready,
    close: async () => {
      await server.shutdown();
    },
  };
}

/** Bytes the heap's arena has handed out, once this worker's magazines are emptied. */
export function heapInUse(heap: Heap): number {
  heap.reap();
  return heap.vmem.stats().inUse;
}

/** A body of `n` order lines over a few items. */
export function sampleBody(n: number, seed = 1): string {
  const items = ["apple", "bread", "coffee", "dates", "eggs", "flour", "grapes"];
  let s = seed >>> 0, out = "";
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const item = items[s % items.length];
    out += `${item},${1 + (s >>> 8) % 9},${((s >>> 4) % 500) / 100 + 0.5}\n`;
  }
  return out;
}

/** The command's arguments, under Deno or Bun. */
function commandArgs(): string[] {
  if (typeof Deno !== "undefined") return Deno.args;
  const proc = (globalThis as unknown as { process?: { argv: string[] } }).process;
  return proc?.argv.slice(2) ?? [];
}

async function main(): Promise<void> {
  const heap = Heap.create({ size: 8 << 20, maxSize: 64 << 20 });
  const start = heapInUse(heap);
  const server = await serveLoopback(ordersHandler(heap));
  const url = `http://127.0.0.1:${server.port}/orders`;
  console.log(`serving POST ${url}`);
  const post = async (body: string) => {
    const res = await fetch(url, { method: "POST", body });
    return `${res.status} ${(await res.text()).trimEnd()}`;
  };
  try {
    console.log(
      `> apple,3,0.5 / bread,1,2.25 / apple,2,0.5\n< ${await post(
        "apple,3,0.5\nbread,1,2.25\napple,2,0.5\n",
      )}`,
    );
    console.log(`> apple,x,1\n< ${await post("apple,x,1\n")}`);
    const big = sampleBody(100_000);
    console.log(`> (${big.length} bytes of lines)\n< ${await post(big)}`);
    if (commandArgs().includes("--serve")) {
      console.log("serving until interrupted");
      await new Promise(() => {});
    }
    const n = 2000, body = sampleBody(50), t0 = performance.now();
    let ok = 0;
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = w; i < n; i += 8) if ((await post(body)).startsWith("200 ")) ok++;
    }));
    const ms = performance.now() - t0;
    console.log(`${ok}/${n} requests of 50 lines answered 200 in ${ms.toFixed(0)} ms`);
  } finally {
    await server.close();
  }
  const pool = ChunkPool.of(heap).stats();
  console.log(
    `chunk pool: ${pool.hits} chunks reused, ${pool.misses} taken from the heap, ${pool.chunks} kept (${pool.pooledBytes} bytes)`,
  );
  const kept = heapInUse(heap) - start;
  ChunkPool.of(heap).release();
  console.log(
    `heap in use: ${kept} bytes more than at start while the pool is kept, ${
      heapInUse(heap) - start
    } after releasing it`,
  );
  console.log(`heap.verify(): ${heap.verify().length === 0 ? "no problems" : heap.verify()}`);
}

if (import.meta.main) await main();
