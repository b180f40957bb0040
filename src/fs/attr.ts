// File types, attributes as `stat` reports them, and the clock with nanoseconds. Pure helpers;
// nothing here touches a device.

import type { Inode, Time } from "./inode.js";

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
/** Permission bits a user may set: rwx for all three, set-uid, set-gid, sticky. */
export const S_IMODE = 0o7777;
export const S_ISGID = 0o2000;
/** Bits mkdir keeps from the mode it is given (set-uid and set-gid are not taken, as in Linux). */
export const S_DIRMODE = 0o1777;

export const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number) => (mode & S_IFMT) === S_IFREG;
export const isLink = (mode: number) => (mode & S_IFMT) === S_IFLNK;

/** The d_type a directory entry carries for a mode (as in dirent.h). */
export function dirType(mode: number): number {
  return (mode & S_IFMT) >> 12;
}

/** What getattr returns: `stat`'s fields. `blocks` counts 512-byte units, as st_blocks does. */
export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  birthtime: Time;
  generation: number;
}

export function attrOf(ino: Inode): Attr {
  return {
    ino: ino.ino,
    mode: ino.mode,
    nlink: ino.nlink,
    uid: ino.uid,
    gid: ino.gid,
    // A directory keeps its parent's number in the rdev slot: it has no device number.
    rdev: isDir(ino.mode) ? 0 : ino.rdev,
    size: ino.size,
    blocks: ino.blocks * 8,
    blksize: 4096,
    atime: { ...ino.atime },
    mtime: { ...ino.mtime },
    ctime: { ...ino.ctime },
    birthtime: { ...ino.birthtime },
    generation: ino.generation,
  };
}

const epochNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** The time now, with nanoseconds. */
export function now(): Time {
  const ns = process.hrtime.bigint() + epochNs;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
