// The part of fs-native-extensions's API that shadowfs uses (the package ships no types).

declare module "fs-native-extensions" {
  /**
   * Takes an open file description lock (Linux F_OFD_SETLK) on bytes [offset, offset + length)
   * of `fd` (length 0: to the end); exclusive unless `shared`. False when another open file
   * description holds a conflicting lock; throws on any other error (ENOLCK, EBADF, ...).
   */
  export function tryLock(fd: number, opts?: { shared?: boolean }): boolean;
}
