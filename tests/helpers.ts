/**
 * Helpers the test files share.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Heap, HeapCorruptionError, type HeapOptions, UmemError } from "../mod.ts";

/**
 * A heap that ignores UMEM_DEBUG, UMEM_LOGGING and UMEM_OPTIONS in the environment, so that a
 * test's figures (constructor counts, magazines, sizes) do not depend on the shell it runs in.
 * Its backend is `sbrk` unless the test names one: under Bun a heap of the default `mmap`
 * backend costs 15–19 ms to create and collect (a buffer of the heap's largest size, 256 MiB),
 * and the fuzzers create hundreds. backend_test and workers_test cover `mmap` under both runtimes.
 */
export function mk(options: HeapOptions = {}): Heap {
  return Heap.create({ debug: "", logging: "", options: "", backend: "sbrk", ...options });
}

/**
 * Asserts that `fn` throws a UmemError whose kind is `kind` (or one of `kind`), and whose
 * message matches `re` when given; returns the error.
 */
export function throwsKind(
  fn: () => unknown,
  kind: string | readonly string[],
  re?: RegExp,
): UmemError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  const kinds = typeof kind === "string" ? [kind] : kind;
  assert.ok(caught instanceof UmemError, `expected a UmemError ${kinds}, got ${String(caught)}`);
  assert.ok(
    kinds.includes(caught.kind),
    `kind ${caught.kind} (${caught.message}), expected ${kinds}`,
  );
  if (re !== undefined) assert.match(caught.message, re);
  return caught;
}

/**
 * Runs `body` with `n` Workers of the module at `url`, always terminating them, and fails when
 * they have not finished in `timeoutMs`.
 */
export async function withWorkers<T>(
  url: string,
  n: number,
  timeoutMs: number,
  body: (ws: Worker[]) => Promise<T>,
): Promise<T> {
  const ws = Array.from({ length: n }, () => new Worker(url, { type: "module" }));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`workers did not finish in ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([body(ws), timeout]);
  } finally {
    clearTimeout(timer);
    for (const w of ws) w.terminate();
  }
}

/** Runs `f`, expects a HeapCorruptionError, and returns it. */
export function corruption(f: () => unknown): HeapCorruptionError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof HeapCorruptionError, `expected a HeapCorruptionError, got ${e}`);
    return e;
  }
  assert.fail("no error was raised");
}
