// The one error type of shadowfs: a POSIX code plus a message, made by small factories.
// Only the FUSE adapter turns it into -errno; every layer below throws it.

import { constants } from "node:os";

export type ErrnoCode = keyof typeof constants.errno;

export class FsError extends Error {
  readonly code: ErrnoCode;
  readonly errno: number;

  /**
   * Carries no stack: it is an answer (ENOENT to a lookup, ENODATA to the getxattr the kernel
   * sends before every write), made often on busy paths, and capturing a stack cost a few % of
   * the daemon's time. Errors that are not FsError keep theirs, and are logged with it.
   */
  constructor(code: ErrnoCode, message: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`${code}: ${message}`);
    Error.stackTraceLimit = limit;
    this.name = "FsError";
    this.code = code;
    this.errno = constants.errno[code];
  }
}

export const isFsError = (e: unknown, code?: ErrnoCode): e is FsError =>
  e instanceof FsError && (code === undefined || e.code === code);

export const erofs = (what: string) => new FsError("EROFS", `${what}: read-only`);
export const enospc = (what: string) => new FsError("ENOSPC", what);
export const eio = (what: string) => new FsError("EIO", what);
export const einval = (what: string) => new FsError("EINVAL", what);
export const enoent = (what: string) => new FsError("ENOENT", what);
export const eexist = (what: string) => new FsError("EEXIST", what);
export const ebusy = (what: string) => new FsError("EBUSY", what);

/** A store whose files are damaged or of an unknown format: refused, never guessed at. */
export class CorruptStoreError extends FsError {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super("EIO", `${file}: ${detail}`);
    this.name = "CorruptStoreError";
  }
}
