/**
 * Argument checks shared by the profile's entry points: an options bag, a flag, a file path.
 *
 * Theory. Every public function of the module checks what it is given before it reads a file,
 * touches a heap or allocates, and refuses what it cannot use with a `UmemError` of kind
 * `invalid-argument` that names the function and the parameter; a wrong type never surfaces
 * later as a bare `TypeError`, and a number is never taken for a file descriptor. `undefined`
 * always stands for "not given".
 *
 * Invariants: none kept; these functions only read their arguments. Lock order: none.
 *
 * @module
 */

import { UmemError } from "../core/mod.ts";

/** Refuses options that are not an object (`undefined` is "no options"). */
export function checkOptions(fn: string, options: unknown): void {
  if (options !== undefined && (typeof options !== "object" || options === null)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: options must be an object, got ${options === null ? "null" : typeof options}`,
    );
  }
}

/** Refuses a flag that is neither a boolean nor undefined. */
export function checkFlag(fn: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new UmemError(
      "invalid-argument",
      `${fn}: ${name} must be a boolean, got ${typeof value}`,
    );
  }
}

/** Refuses a path that is not a non-empty string (a number would be taken as a descriptor). */
export function checkPath(fn: string, path: unknown): void {
  if (typeof path !== "string" || path.length === 0) {
    throw new UmemError("invalid-argument", `${fn}: path must be a non-empty string`);
  }
}

/** Refuses a function argument that is not a function. */
export function checkFunction(fn: string, name: string, value: unknown): void {
  if (typeof value !== "function") {
    throw new UmemError("invalid-argument", `${fn}: ${name} must be a function`);
  }
}

/** Refuses a value that is not an array (what a formatter of rows or results is given). */
export function checkArray(fn: string, name: string, value: unknown): void {
  if (!Array.isArray(value)) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: ${name} must be an array, got ${value === null ? "null" : typeof value}`,
    );
  }
}

/** Refuses a value that is not an object (a summary, a record). */
export function checkObject(fn: string, name: string, value: unknown): void {
  if (typeof value !== "object" || value === null) {
    throw new UmemError(
      "invalid-argument",
      `${fn}: ${name} must be an object, got ${value === null ? "null" : typeof value}`,
    );
  }
}
