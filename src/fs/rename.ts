// rename(2) and renameat2's RENAME_NOREPLACE and RENAME_EXCHANGE, as one atomic operation with
// Linux's rights and the sticky rule. It never lets a directory move below itself.

import { CorruptStoreError, eexist, einval, enoent, FsError } from "../errors.js";
import { dirType, isDir } from "./attr.js";
import { change, directoryOf, dirInode, type FsContext, live, ROOT, seen } from "./context.js";
import type { Cred } from "./cred.js";
import type { Key } from "./directory.js";
import type { Inode } from "./inode.js";
import { addName, dropName } from "./name-refs.js";
import { entry, isDot, maySearch } from "./namespace.js";
import { mayAccess, mayCreate, mayDelete, W_OK } from "./permission.js";
import { dropLink, settle } from "./reclaim.js";

export interface RenameFlags {
  /** RENAME_NOREPLACE: EEXIST if the new name exists. */
  noReplace?: boolean;
  /** RENAME_EXCHANGE: swap two existing names. */
  exchange?: boolean;
}

/** See `FileSystem.rename`. */
export function rename(
  ctx: FsContext,
  fromDir: number,
  a: Buffer,
  toDir: number,
  b: Buffer,
  flags: RenameFlags,
  cred: Cred,
): Promise<void> {
  return change(ctx, async (step) => {
    const src = await dirInode(ctx, fromDir);
    const dst = toDir === fromDir ? src : await dirInode(ctx, toDir);
    maySearch(src, cred);
    maySearch(dst, cred);
    for (const n of [a, b]) {
      if (isDot(n)) throw einval(`cannot rename ${n.toString()}`);
    }
    const moving = await live(ctx, await entry(ctx, fromDir, a));
    const existing = await directoryOf(ctx, dst).lookup(b);
    if (existing && flags.noReplace) throw eexist(`${b.toString()} exists`);
    if (!existing && flags.exchange) throw enoent(`${b.toString()} does not exist`);
    if (existing?.ino === moving.ino) return; // two names of one file: nothing to do (POSIX)
    if (isDir(moving.mode)) await notBelow(ctx, moving.ino, dst.ino);
    const target = existing ? await live(ctx, existing.ino) : undefined;
    if (flags.exchange && target && isDir(target.mode)) await notBelow(ctx, target.ino, src.ino);
    if (cred.uid !== 0) {
      mayDelete(src, moving, cred);
      if (target) mayDelete(dst, target, cred);
      else mayCreate(dst, cred);
    }
    if (!flags.exchange && target) {
      if (isDir(moving.mode) && !isDir(target.mode))
        throw new FsError("ENOTDIR", `${b.toString()} is not a directory`);
      if (!isDir(moving.mode) && isDir(target.mode))
        throw new FsError("EISDIR", `${b.toString()} is a directory`);
    }
    if (cred.uid !== 0 && src !== dst) {
      if (isDir(moving.mode)) mayAccess(moving, cred, W_OK, `moving directory ${moving.ino}`);
      if (flags.exchange && target && isDir(target.mode))
        mayAccess(target, cred, W_OK, `moving directory ${target.ino}`);
    }
    const t = ctx.now();
    const entryOf = (inode: Inode) => ({ ino: inode.ino, type: dirType(inode.mode) });
    if (flags.exchange && target) {
      const ka = (await directoryOf(ctx, src).replace(a, entryOf(target))).key;
      const kb = (await directoryOf(ctx, dst).replace(b, entryOf(moving))).key;
      reparent(target, src, dst);
      reparent(moving, dst, src);
      moveName(target, dst.ino, kb, src.ino, ka);
      moveName(moving, src.ino, ka, dst.ino, kb);
      target.ctime = t;
      await ctx.table.put(target);
    } else {
      if (target && isDir(target.mode) && !(await directoryOf(ctx, target).isEmpty()))
        throw new FsError("ENOTEMPTY", `${b.toString()} is not empty`);
      const ka = (await directoryOf(ctx, src).remove(a))!.key;
      const kb = target
        ? (await directoryOf(ctx, dst).replace(b, entryOf(moving))).key
        : await directoryOf(ctx, dst).insert(b, entryOf(moving));
      if (target) {
        dropLink(target, dst, t);
        dropName(target, dst.ino, kb);
      }
      reparent(moving, dst, src);
      moveName(moving, src.ino, ka, dst.ino, kb);
    }
    moving.ctime = t;
    src.mtime = src.ctime = dst.mtime = dst.ctime = t;
    await ctx.table.put(moving);
    await ctx.table.put(src);
    if (dst !== src) await ctx.table.put(dst);
    // Last: freeing a replaced file may take further transactions.
    if (target && !flags.exchange) await settle(ctx, target, step);
  });
}

/** One name of `inode` moved: entry `ka` of directory `a` is now entry `kb` of `b`. */
function moveName(inode: Inode, a: number, ka: Key, b: number, kb: Key): void {
  dropName(inode, a, ka);
  addName(inode, b, kb);
}

/** A directory moved from `from` to `to`: its ".." and both parents' link counts follow. */
function reparent(inode: Inode, to: Inode, from: Inode): void {
  if (!isDir(inode.mode) || to === from) return;
  inode.rdev = to.ino;
  to.nlink++;
  from.nlink--;
}

/** EINVAL if `dir` is `ino` or lies below it: a directory cannot move into itself. */
async function notBelow(ctx: FsContext, ino: number, dir: number): Promise<void> {
  for (let d = dir, hops = 0; ; hops++) {
    if (d === ino) throw einval(`cannot move directory ${ino} into itself`);
    if (d === ROOT) return;
    if (hops > 1 << 20) throw new CorruptStoreError(`directory ${dir}`, "its parents form a loop");
    d = (await seen(ctx, d)).rdev;
  }
}
