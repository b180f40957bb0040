// Attributes and times as fuse-native carries them, converted from and to the filesystem's own.
// Pure conversions: no filesystem calls, no state, nothing that can fail.

import type { Attr } from "../fs/attr.js";
import type { Time } from "../fs/inode.js";

/** A time as the binding carries it: nanoseconds since the epoch, or UTIME_NOW / UTIME_OMIT. */
export type FuseTime = bigint | "now" | "omit";

export interface FuseStat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  dev: number;
  /** Handed to the binding as they are: no bigint is made for a stat. */
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Seconds the kernel may keep these attributes; absent: the mount's attr_timeout. */
  attrTimeout?: number;
}

const NS = 1_000_000_000n;

export function fromNs(ns: bigint): Time {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

export const fromFuseTime = (t: FuseTime): Time | "now" | undefined =>
  t === "omit" ? undefined : t === "now" ? "now" : fromNs(t);

export function toStat(a: Attr): FuseStat {
  return {
    ino: a.ino,
    mode: a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    rdev: a.rdev,
    size: a.size,
    blocks: a.blocks,
    blksize: a.blksize,
    dev: 0,
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
  };
}
