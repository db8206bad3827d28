/**
 * The small surface the core exports on purpose for the modules above it (sbo, budget, and
 * those to come), beyond its public API: the word locks, the argument check and the address
 * format that every module's errors share. Not part of the package's public face.
 *
 * @module
 */
export { checkSize, hex } from "./errors.ts";
export { lock, unlock } from "./lock.ts";
export { imageSize, MAX_IMAGE } from "./image.ts";
export { claimModuleAnchor, moduleAnchor } from "./anchor.ts";
export {
  HDR_FIREWALL,
  HDR_MAGIC,
  HDR_SAFEPOINT,
  MOD_GC,
  MOD_OWN,
  MOD_PROFILE,
  MOD_REGION,
  MOD_SBO,
} from "./image.ts";
export {
  addSlotReclaimer,
  attachHeapHook,
  type HeapHook,
  HOOK_LIBC,
  type SlotReclaimer,
} from "./hooks.ts";
export { roots as rootRanges } from "./roots.ts";
export { captureStack, layStackTable, readStack } from "./stack.ts";
export { HDR_STACKS } from "./image.ts";
export { bufferOf, bufferState, cacheOf, freeBuffer } from "./pagemap.ts";
export { sizeCache, UMEM_MAXBUF } from "./size_class.ts";
export { HDR_META, HDR_NSLOTS, HDR_SLOTS, PAGE_SHIFT, PAGE_SIZE, SLOT_LIVE } from "./image.ts";
export { WS_SIZE, WS_STATE } from "./image.ts";
export {
  BUF_ALLOC,
  BUF_ALLOC_DEFER,
  BUF_DEFER,
  BUF_INTERIOR,
  CA_BUFSIZE,
  CA_CHUNK,
  CA_ID,
  CA_NCHUNKS,
  CA_NSTATE,
  CA_SHIFT,
  CA_SLABS,
  CA_SLABSIZE,
  SB_BASE,
  SB_CACHE,
  SB_START,
  SB_STATE,
} from "./slab.ts";
export { roots } from "./roots.ts";
export { bufferStateAt, settleAllDeferred } from "./magazine.ts";
