// Attributes of an inode: stat, access(2), and setattr (chmod, chown, utimensat, truncate) with
// Linux's rights and set-ID rules. Names, xattrs and file contents are not its business.

import { einval, erofs, FsError } from "../errors.js";
import { type Attr, attrOf, isDir, isLink, isReg, S_IFMT, S_IMODE, S_ISGID } from "./attr.js";
import { change, decoded, type FsContext, live, seen } from "./context.js";
import type { Cred } from "./cred.js";
import type { Time } from "./inode.js";
import {
  afterChown,
  afterWrite,
  chmodMode,
  mayAccess,
  mayChgrp,
  mayChown,
  mayTouch,
  R_OK,
  S_ISUID,
  W_OK,
  X_OK,
} from "./permission.js";
import { shrink } from "./reclaim.js";

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** A time, or "now" (UTIME_NOW); absent leaves it (UTIME_OMIT). */
  atime?: Time | "now";
  mtime?: Time | "now";
  /** A size change through a file opened for writing: the right was checked at the open. */
  opened?: boolean;
  /**
   * The mode change only clears set-user-ID or set-group-ID after a write or truncation: the
   * kernel sends it so, in the writer's name, when the filesystem is mounted with FUSE. Allowed
   * to a caller with write access who is not the owner.
   */
  clearsSetId?: boolean;
}

/** Devices, fifos and sockets: writing to one is no write to the filesystem. */
const isSpecial = (mode: number) => !isReg(mode) && !isDir(mode) && !isLink(mode);

export function getattr(ctx: FsContext, ino: number): Promise<Attr> {
  const now = attrNow(ctx, ino);
  if (now) return Promise.resolve(now);
  return ctx.meta.view(async () => attrOf(await seen(ctx, ino)));
}

/** See `FileSystem.attrNow`. */
export function attrNow(ctx: FsContext, ino: number): Attr | undefined {
  const known = decoded(ctx, ino);
  return known && known.mode !== 0 ? attrOf(known) : undefined;
}

/** See `FileSystem.access`. */
export function access(ctx: FsContext, ino: number, mask: number, cred: Cred): Promise<void> {
  return ctx.meta.view(async () => {
    const inode = await seen(ctx, ino);
    if (mask & W_OK && ctx.dev.readOnly && !isSpecial(inode.mode)) throw erofs(`inode ${ino}`);
    mayAccess(inode, cred, mask & (R_OK | W_OK | X_OK), `access to inode ${ino}`);
  });
}

/** See `FileSystem.setattr`. */
export function setattr(ctx: FsContext, ino: number, set: SetAttr, cred: Cred): Promise<Attr> {
  return change(ctx, async (step) => {
    const inode = await live(ctx, ino);
    const t = ctx.now();
    let shrinks = false;
    const chown = set.uid !== undefined || set.gid !== undefined;
    let mode = set.mode === undefined ? undefined : (inode.mode & S_IFMT) | (set.mode & S_IMODE);
    if (set.size !== undefined) {
      if (isDir(inode.mode)) throw new FsError("EISDIR", `inode ${ino} is a directory`);
      if (!isReg(inode.mode)) throw einval(`inode ${ino} is not a regular file`);
      if (cred.uid !== 0 && !set.opened) mayAccess(inode, cred, W_OK, `truncating inode ${ino}`);
    }
    if (cred.uid !== 0 || chown) {
      if (set.uid !== undefined) mayChown(inode, set.uid, cred);
      if (set.gid !== undefined) mayChgrp(inode, set.gid, cred);
      if (mode !== undefined) {
        const clears = inode.mode & ~mode & (S_ISUID | S_ISGID);
        if (set.clearsSetId && (inode.mode & ~clears) === mode && cred.uid !== inode.uid)
          mayAccess(inode, cred, W_OK, `clearing set-ID bits of inode ${ino}`);
        else mode = chmodMode(inode, mode, set.gid ?? inode.gid, cred);
      }
      if (set.atime !== undefined || set.mtime !== undefined)
        mayTouch(inode, cred, set.atime === "now" && set.mtime === "now");
      // A chmod given with a change of owner is what the mode becomes (Linux never does both).
      if (chown && mode === undefined) mode = afterChown(inode, cred);
      if (set.size !== undefined && cred.uid !== 0)
        mode = afterWrite({ ...inode, mode: mode ?? inode.mode }, cred);
    }
    if (set.size !== undefined && set.size !== inode.size) {
      shrinks = set.size < inode.size;
      await ctx.data.resize(inode, set.size);
      inode.mtime = t;
    }
    if (mode !== undefined) inode.mode = mode;
    if (set.uid !== undefined) inode.uid = set.uid;
    if (set.gid !== undefined) inode.gid = set.gid;
    if (set.atime !== undefined) inode.atime = set.atime === "now" ? t : { ...set.atime };
    if (set.mtime !== undefined) inode.mtime = set.mtime === "now" ? t : { ...set.mtime };
    inode.ctime = t;
    if (shrinks) {
      await shrink(ctx, inode, step);
      // Named, it was on the list only for the truncation; unnamed, it stays till its release.
      if (inode.nlink > 0) await ctx.table.removeOrphan(inode);
    }
    await ctx.table.put(inode);
    return attrOf(inode);
  });
}
