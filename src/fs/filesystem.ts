// The POSIX filesystem on a BlockDevice, inode-based and async: what the FUSE adapter calls.
// Every change is one atomic metadata operation; it knows nothing of paths, FUSE or snapshots.

import type { BlockDevice } from "../cow/index.js";
import type { Attr } from "./attr.js";
import { S_IFREG, S_IMODE } from "./attr.js";
import * as attrOps from "./attr-ops.js";
import type { FsContext } from "./context.js";
import { type Cred, SUPERUSER } from "./cred.js";
import type { Lender } from "./file-data.js";
import * as io from "./file-io.js";
import * as life from "./lifecycle.js";
import type { Seed } from "./meta-store.js";
import * as names from "./namespace.js";
import type { RenameFlags } from "./rename.js";
import * as renames from "./rename.js";
import * as xattrs from "./xattr-ops.js";

// The families of operations live in modules of their own, which all receive the FsContext:
// namespace.ts and rename.ts (names), file-io.ts (contents), attr-ops.ts (attributes),
// xattr-ops.ts (extended attributes), lifecycle.ts (mkfs, open, recovery, durability).
// Locking is stated once, in context.ts.

export type { SetAttr } from "./attr-ops.js";
export type { FsContext, Owner } from "./context.js";
export { ROOT } from "./context.js";
export type { Cred } from "./cred.js";
export { SUPERUSER } from "./cred.js";
export { NAME_MAX } from "./directory.js";
export type { Lender } from "./file-data.js";
export type { MkfsOptions, OpenOptions, Recovery, StatFs } from "./lifecycle.js";
export type { Seed } from "./meta-store.js";
export { type DirEntry, LINK_MAX, SYMLINK_MAX } from "./namespace.js";
export type { RenameFlags } from "./rename.js";

export type Name = string | Uint8Array;
const bytes = (n: Name): Buffer =>
  typeof n === "string" ? Buffer.from(n, "utf8") : Buffer.from(n);

export class FileSystem {
  /**
   * What the modules of this layer share: for fsck and the tests of src/fs. Callers above this
   * layer use the methods. Its fields name the lock that guards them.
   */
  readonly context: FsContext;
  /**
   * What the open found and finished. Written only while opening, before the filesystem is handed
   * out.
   */
  readonly recovery: life.Recovery;

  private constructor(ctx: FsContext, recovery: life.Recovery) {
    this.context = ctx;
    this.recovery = recovery;
  }

  get readOnly(): boolean {
    return this.context.dev.readOnly;
  }

  /** Formats `dev`: superblock, journal, bitmap, inode table and an empty root directory. */
  static mkfs(dev: BlockDevice, opts: life.MkfsOptions = {}): Promise<void> {
    return life.mkfs(dev, opts);
  }

  /**
   * Opens the filesystem on `dev`, read-only when the device is. Recovers what a crash left:
   * replays the journal, and (read-write) finishes every orphan; `recovery` says what it did.
   */
  static async open(dev: BlockDevice, opts: life.OpenOptions = {}): Promise<FileSystem> {
    const { ctx, recovery } = await life.open(dev, opts);
    return new FileSystem(ctx, recovery);
  }

  /** Inode numbers on the orphan list, head first. */
  orphans(): Promise<number[]> {
    return life.orphans(this.context);
  }

  // ------------------------------------------------------------------ attributes

  getattr(ino: number): Promise<Attr> {
    return attrOps.getattr(this.context, ino);
  }

  /**
   * `getattr`'s answer when it needs no wait (the inode is decoded, and no operation is half
   * done); else undefined. It may throw (a corrupt inode).
   */
  attrNow(ino: number): Attr | undefined {
    return attrOps.attrNow(this.context, ino);
  }

  /** The inode named `name` in `parent`; `cred` needs search permission on `parent`. */
  lookup(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<Attr> {
    return names.lookup(this.context, parent, bytes(name), cred);
  }

  /** As `lookup`, with undefined instead of ENOENT when `parent` has no such name. */
  find(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<Attr | undefined> {
    return names.find(this.context, parent, bytes(name), cred);
  }

  /**
   * Whether `cred` has every right of `mask` (R_OK 4, W_OK 2, X_OK 1; 0 asks only that the inode
   * exists) on inode `ino`, as access(2): EACCES if not, EROFS for W_OK on a read-only filesystem.
   */
  access(ino: number, mask: number, cred: Cred): Promise<void> {
    return attrOps.access(this.context, ino, mask, cred);
  }

  /**
   * Changes attributes, with the rights of `cred` (as chmod, chown, truncate and utimensat check
   * them): the owner or root changes the mode and sets explicit times; only root changes the
   * owner, the owner the group to one of its own; a truncation needs write access; "now" for both
   * times needs the owner or write access. A truncation by anyone but root, and a change of owner
   * or group, clear set-user-ID and set-group-ID as Linux does (see permission.ts).
   *
   * A truncation that frees more blocks than one transaction holds sets the size and everything
   * else at once, then frees the blocks past it over several transactions, the inode on the
   * orphan list meanwhile (an open after a crash finishes the job).
   */
  setattr(ino: number, set: attrOps.SetAttr, cred: Cred = SUPERUSER): Promise<Attr> {
    return attrOps.setattr(this.context, ino, set, cred);
  }

  statfs(): Promise<life.StatFs> {
    return life.statfs(this.context);
  }

  // ------------------------------------------------------------------ making and removing names

  // Names are made by `cred`, who owns what it makes: it needs search and write permission on
  // the directory; the mode is taken as given (the kernel has applied the umask).

  create(parent: number, name: Name, mode: number, cred: Cred): Promise<Attr> {
    return this.mknod(parent, name, S_IFREG | (mode & S_IMODE), 0, cred);
  }

  /** Makes a regular file, fifo, socket or device node (`mode` carries the type). */
  mknod(parent: number, name: Name, mode: number, rdev: number, cred: Cred): Promise<Attr> {
    return names.mknod(this.context, parent, bytes(name), mode, rdev, cred);
  }

  mkdir(parent: number, name: Name, mode: number, cred: Cred): Promise<Attr> {
    return names.mkdir(this.context, parent, bytes(name), mode, cred);
  }

  symlink(parent: number, name: Name, target: Name, cred: Cred): Promise<Attr> {
    return names.symlink(this.context, parent, bytes(name), bytes(target), cred);
  }

  readlink(ino: number): Promise<Buffer> {
    return names.readlink(this.context, ino);
  }

  /**
   * A new name for `ino`. Besides write and search permission on the directory, `cred` needs to
   * own the file or be allowed to link it (fs.protected_hardlinks, see `mayHardlink`).
   */
  link(ino: number, parent: number, name: Name, cred: Cred = SUPERUSER): Promise<Attr> {
    return names.link(this.context, ino, parent, bytes(name), cred);
  }

  /** Removes a name: `cred` needs search and write permission, and the sticky rule holds. */
  unlink(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<void> {
    return names.remove(this.context, parent, bytes(name), false, cred);
  }

  rmdir(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<void> {
    return names.remove(this.context, parent, bytes(name), true, cred);
  }

  /**
   * Renames atomically. Replaces an existing file, or an empty directory with a directory,
   * unless `noReplace`; `exchange` swaps two existing names. A directory cannot move into itself.
   * `cred` needs search and write permission on both directories, the sticky rule for the name
   * it moves and the one it replaces, and write permission on a directory it moves to another
   * parent (its ".." changes), as Linux's `vfs_rename`.
   */
  rename(
    fromDir: number,
    from: Name,
    toDir: number,
    to: Name,
    flags: RenameFlags = {},
    cred: Cred = SUPERUSER,
  ): Promise<void> {
    return renames.rename(this.context, fromDir, bytes(from), toDir, bytes(to), flags, cred);
  }

  readdir(ino: number, cookie: bigint, max: number): Promise<names.DirEntry[]> {
    return names.readdir(this.context, ino, cookie, max);
  }

  // ------------------------------------------------------------------ extended attributes

  getxattr(ino: number, name: string, cred: Cred = SUPERUSER): Promise<Buffer> {
    return xattrs.getxattr(this.context, ino, name, cred);
  }

  /** As `getxattr`, with undefined instead of ENODATA when the inode has no such attribute. */
  findxattr(ino: number, name: string, cred: Cred = SUPERUSER): Promise<Buffer | undefined> {
    return xattrs.findxattr(this.context, ino, name, cred);
  }

  /** The attributes' names `cred` may see (trusted.* only root). */
  listxattr(ino: number, cred: Cred = SUPERUSER): Promise<string[]> {
    return xattrs.listxattr(this.context, ino, cred);
  }

  /** Sets an attribute; `create` fails with EEXIST if it exists, `replace` with ENODATA if not. */
  setxattr(
    ino: number,
    name: string,
    value: Uint8Array,
    flags: { create?: boolean; replace?: boolean } = {},
    cred: Cred = SUPERUSER,
  ): Promise<void> {
    return xattrs.setxattr(this.context, ino, name, value, flags, cred);
  }

  removexattr(ino: number, name: string, cred: Cred = SUPERUSER): Promise<void> {
    return xattrs.removexattr(this.context, ino, name, cred);
  }

  // ------------------------------------------------------------------ file contents

  /**
   * Marks an inode open: an unlinked file keeps its blocks until `release`. `flags` are open(2)'s:
   * `cred` needs read permission for O_RDONLY, write for O_WRONLY, both for O_RDWR, and write for
   * O_TRUNC; a directory opens for reading only (EISDIR).
   */
  open(ino: number, flags = 0, cred: Cred = SUPERUSER): Promise<Attr> {
    return io.open(this.context, ino, flags, cred);
  }

  release(ino: number): Promise<void> {
    return io.release(this.context, ino);
  }

  /**
   * Reads up to `length` bytes at `offset`, stopping at the end of the file: into `into` when
   * given (it must hold `length` bytes; the result is its start), else into a new buffer. The
   * blocks are found under the metadata lock, or without it when no operation is running and
   * all the metadata needed is in memory; the data is read outside it. With `lender`, part of
   * the result may be left to it (see `Lender`).
   */
  read(
    ino: number,
    offset: number,
    length: number,
    into?: Uint8Array,
    lender?: Lender,
  ): Promise<Buffer> {
    return io.read(this.context, ino, offset, length, into, lender);
  }

  /**
   * Writes `data` at `offset` (the right to was checked when the file was opened). A write by
   * anyone but root clears set-user-ID and set-group-ID as Linux does (`afterWrite`).
   */
  write(ino: number, offset: number, data: Uint8Array, cred: Cred = SUPERUSER): Promise<number> {
    return io.write(this.context, ino, offset, data, cred);
  }

  /**
   * The parts of bytes [offset, offset + length) of regular file `ino` that hold data, in order,
   * each contiguous in the file and on the device (as SEEK_DATA and SEEK_HOLE find them, with
   * where they lie): the rest are holes, which read as zeros. Block-aligned, but for the end of
   * the file.
   */
  dataRuns(ino: number, offset: number, length: number): Promise<io.DataRun[]> {
    return io.dataRuns(this.context, ino, offset, length);
  }

  // ------------------------------------------------------------------ durability

  /** Makes everything done so far durable (data and metadata of every file: one journal commit). */
  fsync(): Promise<void> {
    return life.fsync(this.context);
  }

  /** Commits and checkpoints: the device then reads cleanly with no replay (for a snapshot). */
  flush(): Promise<void> {
    return life.flush(this.context);
  }

  /**
   * Takes a snapshot of the device with `take` and returns, with its result, the metadata in
   * memory for the snapshot's view to look up (`seed` of `open`): only if the device held
   * exactly that metadata all along, as after `flush` with changes held.
   */
  snapshotWith<T>(take: () => Promise<T>): Promise<{ taken: T; seed?: Seed }> {
    return life.snapshotWith(this.context, take);
  }

  close(): Promise<void> {
    return this.flush();
  }
}
