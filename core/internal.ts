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
export { claimModuleAnchor, moduleAnchor } from "./anchor.ts";
export { HDR_SAFEPOINT, MOD_GC, MOD_OWN, MOD_PROFILE, MOD_REGION, MOD_SBO } from "./image.ts";
export { attachHeapHook, type HeapHook } from "./hooks.ts";
