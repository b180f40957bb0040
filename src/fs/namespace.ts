// Names in directories: lookup, making inodes with a name (create, mknod, mkdir, symlink), hard
// links, unlink, rmdir, readlink and readdir. Renames are in rename.ts; it never touches file data.

import { eexist, einval, enoent, FsError } from "../errors.js";
import {
  type Attr,
  attrOf,
  dirType,
  isDir,
  isLink,
  S_DIRMODE,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IMODE,
} from "./attr.js";
import {
  change,
  checkDir,
  directoryOf,
  dirInode,
  type FsContext,
  formatDirectory,
  initInode,
  live,
  seen,
} from "./context.js";
import type { Cred } from "./cred.js";
import { INLINE_BYTES, type Inode } from "./inode.js";
import type { Step } from "./meta-store.js";
import { addName, dropName } from "./name-refs.js";
import {
  mayAccess,
  mayCreate,
  mayDelete,
  mayHardlink,
  mayMknod,
  newOwner,
  X_OK,
} from "./permission.js";
import { dropLink, settle } from "./reclaim.js";

/** Most hard links to one inode (and subdirectories of one directory), as ext4. */
export const LINK_MAX = 65000;
export const SYMLINK_MAX = 4095;

export interface DirEntry {
  name: Buffer;
  ino: number;
  type: number;
  /** Pass back to `readdir` to continue after this entry. */
  cookie: bigint;
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
/** "." or "..": names every directory has and none stores. */
export const isDot = (name: Buffer) => name.equals(DOT) || name.equals(DOTDOT);

/** EACCES unless `cred` may search `dir` (root always may). */
export function maySearch(dir: Readonly<Inode>, cred: Cred): void {
  if (cred.uid !== 0) mayAccess(dir, cred, X_OK, `lookup in directory ${dir.ino}`);
}

/**
 * The inode `name` names in `parent`, if any, looked up by `cred` (search permission), if given.
 * A name that is not there is an answer, not an error: a lookup of a name about to be made is
 * the commonest there is (every create), and a throw through the callers cost more than the
 * search.
 */
async function entryIfAny(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  cred?: Cred,
): Promise<number | undefined> {
  const dir = checkDir(parent, await seen(ctx, parent));
  if (cred) maySearch(dir, cred);
  if (name.equals(DOT)) return dir.ino;
  if (name.equals(DOTDOT)) return dir.rdev;
  return (await directoryOf(ctx, dir).lookup(name))?.ino;
}

const noEntry = (parent: number, name: Buffer) =>
  enoent(`no entry ${name.toString()} in directory ${parent}`);

/** The inode `name` names in `parent`, looked up by `cred` (search permission), if given. */
export async function entry(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  cred?: Cred,
): Promise<number> {
  const ino = await entryIfAny(ctx, parent, name, cred);
  if (ino === undefined) throw noEntry(parent, name);
  return ino;
}

/** The attributes of what `name` names in `parent`, or undefined if it names nothing. */
export function find(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  cred: Cred,
): Promise<Attr | undefined> {
  return ctx.meta.view(async () => {
    const ino = await entryIfAny(ctx, parent, name, cred);
    return ino === undefined ? undefined : attrOf(await seen(ctx, ino));
  });
}

export async function lookup(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  cred: Cred,
): Promise<Attr> {
  const a = await find(ctx, parent, name, cred);
  if (!a) throw noEntry(parent, name);
  return a;
}

/**
 * Creates an inode and its name in one operation, owned by `cred` (or given the group of a
 * set-group-ID directory: see `newOwner`); `fill` completes it before the name is written.
 */
function make(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  mode: number,
  cred: Cred,
  fill: (inode: Inode, dir: Inode) => Promise<void>,
): Promise<Attr> {
  return change(ctx, async () => {
    const dir = await dirInode(ctx, parent);
    maySearch(dir, cred);
    if (isDot(name)) throw eexist(`${name.toString()} exists`);
    const directory = directoryOf(ctx, dir);
    if (await directory.lookup(name)) throw eexist(`${name.toString()} exists`);
    if (cred.uid !== 0) {
      mayCreate(dir, cred);
      mayMknod(mode & S_IFMT, cred);
    }
    const inode = await ctx.table.allocate();
    initInode(ctx, inode, newOwner(dir, mode, cred));
    await fill(inode, dir);
    addName(inode, dir.ino, await directory.insert(name, { ino: inode.ino, type: dirType(mode) }));
    dir.mtime = dir.ctime = inode.ctime;
    await ctx.table.put(inode);
    await ctx.table.put(dir);
    return attrOf(inode);
  });
}

/** A regular file, fifo, socket or device node (`mode` carries the type). */
export function mknod(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  mode: number,
  rdev: number,
  cred: Cred,
): Promise<Attr> {
  const type = mode & S_IFMT || S_IFREG;
  if (type === S_IFDIR || type === S_IFLNK)
    return Promise.reject(einval("mknod makes no directories or symlinks"));
  return make(ctx, parent, name, type | (mode & S_IMODE), cred, async (inode) => {
    inode.rdev = rdev;
  });
}

export function mkdir(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  mode: number,
  cred: Cred,
): Promise<Attr> {
  return make(ctx, parent, name, S_IFDIR | (mode & S_DIRMODE), cred, async (inode, dir) => {
    if (dir.nlink >= LINK_MAX)
      throw new FsError("EMLINK", `directory ${dir.ino} has ${dir.nlink} links`);
    inode.nlink = 2;
    inode.rdev = dir.ino;
    await formatDirectory(ctx, inode);
    dir.nlink++;
  });
}

export function symlink(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  to: Buffer,
  cred: Cred,
): Promise<Attr> {
  if (to.length === 0 || to.length > SYMLINK_MAX) {
    return Promise.reject(
      new FsError(
        to.length === 0 ? "ENOENT" : "ENAMETOOLONG",
        `symlink target of ${to.length} bytes`,
      ),
    );
  }
  return make(ctx, parent, name, S_IFLNK | 0o777, cred, async (inode) => {
    if (to.length < INLINE_BYTES) inode.inline = to;
    else await ctx.data.write(inode, 0, to);
    inode.size = to.length;
  });
}

export function readlink(ctx: FsContext, ino: number): Promise<Buffer> {
  return ctx.meta.view(async () => {
    const inode = await seen(ctx, ino);
    if (!isLink(inode.mode)) throw einval(`inode ${ino} is not a symlink`);
    return inode.inline ? Buffer.from(inode.inline) : ctx.data.read(inode, 0, inode.size);
  });
}

/** See `FileSystem.link`. */
export function link(
  ctx: FsContext,
  ino: number,
  parent: number,
  n: Buffer,
  cred: Cred,
): Promise<Attr> {
  return change(ctx, async () => {
    const inode = await live(ctx, ino);
    if (inode.nlink === 0) throw enoent(`inode ${ino} has been unlinked`);
    const dir = await dirInode(ctx, parent);
    maySearch(dir, cred);
    if (isDot(n)) throw eexist(`${n.toString()} exists`);
    if (cred.uid !== 0) {
      if (await directoryOf(ctx, dir).lookup(n)) throw eexist(`${n.toString()} exists`);
      mayHardlink(inode, cred);
      mayCreate(dir, cred);
    }
    if (isDir(inode.mode)) throw new FsError("EPERM", "hard links to directories are not allowed");
    if (inode.nlink >= LINK_MAX)
      throw new FsError("EMLINK", `inode ${ino} has ${inode.nlink} links`);
    const key = await directoryOf(ctx, dir).insert(n, { ino, type: dirType(inode.mode) });
    const t = ctx.now();
    inode.nlink++;
    addName(inode, dir.ino, key);
    inode.ctime = t;
    dir.mtime = dir.ctime = t;
    await ctx.table.put(inode);
    await ctx.table.put(dir);
    return attrOf(inode);
  });
}

/** unlink (`wantDir` false) or rmdir (true), as one operation. */
export function remove(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  wantDir: boolean,
  cred: Cred,
): Promise<void> {
  return change(ctx, (step) => removeName(ctx, parent, name, wantDir, step, cred));
}

async function removeName(
  ctx: FsContext,
  parent: number,
  name: Buffer,
  wantDir: boolean,
  step: Step,
  cred: Cred,
): Promise<void> {
  const dir = await dirInode(ctx, parent);
  maySearch(dir, cred);
  if (isDot(name)) {
    throw new FsError(
      wantDir ? (name.length === 1 ? "EINVAL" : "ENOTEMPTY") : "EISDIR",
      `cannot remove ${name.toString()}`,
    );
  }
  const directory = directoryOf(ctx, dir);
  const e = await directory.lookup(name);
  if (!e) throw enoent(`no entry ${name.toString()} in directory ${parent}`);
  const inode = await live(ctx, e.ino);
  if (cred.uid !== 0) mayDelete(dir, inode, cred);
  if (wantDir && !isDir(inode.mode))
    throw new FsError("ENOTDIR", `${name.toString()} is not a directory`);
  if (!wantDir && isDir(inode.mode))
    throw new FsError("EISDIR", `${name.toString()} is a directory`);
  if (wantDir && !(await directoryOf(ctx, inode).isEmpty()))
    throw new FsError("ENOTEMPTY", `${name.toString()} is not empty`);
  const { key } = (await directory.remove(name))!;
  const t = ctx.now();
  dir.mtime = dir.ctime = t;
  dropLink(inode, dir, t);
  dropName(inode, dir.ino, key);
  await ctx.table.put(dir);
  await settle(ctx, inode, step);
}

export function readdir(
  ctx: FsContext,
  ino: number,
  cookie: bigint,
  max: number,
): Promise<DirEntry[]> {
  return ctx.meta.view(async () => {
    const dir = checkDir(ino, await seen(ctx, ino));
    const out: DirEntry[] = [];
    if (cookie === 0n)
      out.push({ name: Buffer.from(DOT), ino, type: dirType(S_IFDIR), cookie: 1n });
    if (cookie <= 1n)
      out.push({ name: Buffer.from(DOTDOT), ino: dir.rdev, type: dirType(S_IFDIR), cookie: 2n });
    const from = cookie <= 2n ? 0n : cookie - 2n;
    const rest = await directoryOf(ctx, dir).readdir(from, max - out.length);
    for (const e of rest)
      out.push({ name: e.name, ino: e.ino, type: e.type, cookie: BigInt(e.cookie) + 2n });
    return out;
  });
}
