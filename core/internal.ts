/**
 * The small surface the core exports on purpose for the modules above it (sbo, budget, and
 * those to come), beyond its public API: the word locks, the argument check and the address
 * format that every module's errors share. Not part of the package's public face.
 *
 * @module
 */
export { checkSize, hex } from "./errors.ts";
export { lock, unlock } from "./lock.ts";
export { MAX_IMAGE } from "./image.ts";
