// The binding's ceiling's inodes and names (ceiling-fs.ts): a tree of Maps from the root, paths
// walked on each request, attributes as the binding takes them. Nothing here is durable, checks
// a permission (the kernel does) or knows how requests arrive.

import { constants as fsc } from "node:fs";
import { constants } from "node:os";
import type { FileData } from "./ceiling-data.js";

const { S_IFMT, S_IFDIR } = fsc;
const S_ISGID = 0o2000;
const E = constants.errno;
export const ENOENT = -E.ENOENT;
export const ENOTDIR = -E.ENOTDIR;
export const EISDIR = -E.EISDIR;
export const EEXIST = -E.EEXIST;
export const ENOTEMPTY = -E.ENOTEMPTY;
/** Seconds the kernel may keep attributes that only change through it: shadowfs production's
 * PRODUCTION_ATTR_TIMEOUT (src/daemon/daemon.ts). */
const ATTR_TIMEOUT = 60;

export interface Inode {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  nlink: number;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
  data?: FileData;
  entries?: Map<string, Inode>;
  target?: string;
  xattrs?: Map<string, Buffer>;
  /** Has had more than one name: the kernel may not keep its attributes. */
  linked?: boolean;
}
export type Cb<T = undefined> = (err: number, value?: T) => void;
export type Time = bigint | "now" | "omit";

export const now = () => BigInt(Date.now()) * 1_000_000n;
export const isDir = (n: Inode) => (n.mode & S_IFMT) === S_IFDIR;

let nextIno = 2;
export const root: Inode = {
  ino: 1,
  mode: S_IFDIR | 0o755,
  uid: 0,
  gid: 0,
  rdev: 0,
  nlink: 2,
  atime: now(),
  mtime: now(),
  ctime: now(),
  entries: new Map(),
};

/** The inode at `path`, or a negative errno. */
export function walk(path: string): Inode | number {
  let n = root;
  for (let start = 1; start < path.length; ) {
    const slash = path.indexOf("/", start);
    const end = slash < 0 ? path.length : slash;
    if (!n.entries) return ENOTDIR;
    const next = n.entries.get(path.slice(start, end));
    if (!next) return ENOENT;
    n = next;
    start = end + 1;
  }
  return n;
}

/** The directory holding `path`'s last name, and that name; or a negative errno. */
export function parentOf(
  path: string,
): { dir: Inode; entries: Map<string, Inode>; name: string } | number {
  const cut = path.lastIndexOf("/");
  const dir = cut <= 0 ? root : walk(path.slice(0, cut));
  if (typeof dir === "number") return dir;
  if (!dir.entries) return ENOTDIR;
  return { dir, entries: dir.entries, name: path.slice(cut + 1) };
}

/** What the kernel may keep, as production's View.cacheable: a directory, or a file with one name. */
export function cacheable(n: Inode): boolean {
  return isDir(n) || (n.nlink === 1 && !n.linked);
}

export function stat(n: Inode) {
  const size = n.data ? n.data.size : n.target !== undefined ? Buffer.byteLength(n.target) : 4096;
  return {
    ino: n.ino,
    mode: n.mode,
    nlink: n.nlink,
    uid: n.uid,
    gid: n.gid,
    rdev: n.rdev,
    size,
    blocks: Math.ceil(size / 512),
    blksize: 4096,
    dev: 0,
    atime: n.atime,
    mtime: n.mtime,
    ctime: n.ctime,
    attrTimeout: cacheable(n) ? ATTR_TIMEOUT : undefined,
  };
}
export type Stat = ReturnType<typeof stat>;

/**
 * A new inode of `mode` owned by the caller (the group of a set-group-ID directory), named by
 * `path`; or, having answered `cb` with why not, null.
 */
export function make(
  who: { uid: number; gid: number },
  path: string,
  mode: number,
  cb: Cb<Stat>,
  fill: (n: Inode) => void,
): Inode | null {
  const p = parentOf(path);
  const err = typeof p === "number" ? p : p.entries.has(p.name) ? EEXIST : 0;
  if (typeof p === "number" || err) {
    cb(err);
    return null;
  }
  const t = now();
  const inherit = (p.dir.mode & S_ISGID) !== 0;
  const dir = (mode & S_IFMT) === S_IFDIR;
  const n: Inode = {
    ino: nextIno++,
    mode: inherit && dir ? mode | S_ISGID : mode,
    uid: who.uid,
    gid: inherit ? p.dir.gid : who.gid,
    rdev: 0,
    nlink: 1,
    atime: t,
    mtime: t,
    ctime: t,
  };
  fill(n);
  p.entries.set(p.name, n);
  if (dir) p.dir.nlink++;
  p.dir.mtime = p.dir.ctime = t;
  return n;
}

/** Runs `change` on the inode at `path` and answers with the attributes it leaves. */
export function change(path: string, cb: Cb<Stat>, fn: (n: Inode) => number | undefined) {
  const n = walk(path);
  if (typeof n === "number") return cb(n);
  const err = fn(n);
  if (err) return cb(err);
  n.ctime = now();
  cb(0, stat(n));
}

/** Removes name `path`; `dir` says whether it must be a directory (rmdir) or must not. */
export function remove(path: string, dir: boolean, cb: Cb) {
  const p = parentOf(path);
  if (typeof p === "number") return cb(p);
  const n = p.entries.get(p.name);
  if (!n) return cb(ENOENT);
  if (isDir(n) !== dir) return cb(dir ? ENOTDIR : EISDIR);
  if (n.entries && n.entries.size > 0) return cb(ENOTEMPTY);
  p.entries.delete(p.name);
  const t = now();
  if (dir) p.dir.nlink--;
  n.nlink = dir ? 0 : n.nlink - 1;
  n.ctime = p.dir.mtime = p.dir.ctime = t;
  cb(0);
}
