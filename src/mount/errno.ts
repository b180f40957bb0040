// The one place where errors become the negative errno numbers FUSE replies with.

import { isFsError } from "../errors.js";

export interface ErrorLog {
  error(fields: object, msg: string): void;
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
