// The one place where errors become the negative errno numbers FUSE replies with.

import { constants } from "node:os";
import { type ErrnoCode, isFsError } from "../errors.js";

export interface ErrorLog {
  error(fields: object, msg: string): void;
}

/** `-errno` for `code`: the answer to a request that failed with no error thrown. */
export function negErrno(code: ErrnoCode): number {
  return -constants.errno[code];
}

/** `-errno` for an `FsError`; anything else is a bug or an I/O failure: logged, and EIO. */
export function toErrno(e: unknown, op: string, path: string, log: ErrorLog): number {
  if (isFsError(e)) {
    if (e.code === "EIO") log.error({ op, path, err: e.message }, "I/O error");
    return -e.errno;
  }
  log.error({ op, path, err: e instanceof Error ? (e.stack ?? e.message) : String(e) }, "failed");
  return -5;
}
