/**
 * The collector's size classes: which cache an object of a given size comes from.
 *
 * Theory. As in Boehm's collector, objects are grouped by size so that an object's start is
 * found from any pointer into it in constant time. Here each class is an object cache of the
 * core (one per kind and class), and the classes are powers of two and three times powers of
 * two: from any granule of a slab, an object's first granule is at most two granules back,
 * which the marker finds from the slab's state bytes without a division.
 *
 * Invariants. {@linkcode GC_SIZE_CLASSES} is increasing and each size is a multiple of 8; the
 * lookup table maps `(size + 7) >> 3` to the smallest class that holds `size`. The table is a
 * constant derived from the list, the same in every worker, not allocator state.
 *
 * Lock order: none; nothing here locks.
 *
 * @module
 */

/** Object sizes, one cache per kind and size. */
export const GC_SIZE_CLASSES: readonly number[] = [
  8,
  16,
  32,
  48,
  64,
  96,
  128,
  192,
  256,
  384,
  512,
  768,
  1024,
  1536,
  2048,
  3072,
  4096,
  6144,
  8192,
  12288,
  16384,
  24576,
  32768,
  49152,
  65536,
  98304,
  131072,
];
/** Number of classes. */
export const NCLASSES = GC_SIZE_CLASSES.length;
/** The largest object the collector allocates. */
export const GC_MAXSIZE = GC_SIZE_CLASSES[NCLASSES - 1];

/** Class index by `(size + 7) >> 3`. */
export const CLASS_OF: Uint8Array = (() => {
  const t = new Uint8Array((GC_MAXSIZE >> 3) + 1);
  let c = 0;
  for (let q = 0; q < t.length; q++) {
    while (GC_SIZE_CLASSES[c] < q * 8) c++;
    t[q] = c;
  }
  return t;
})();
