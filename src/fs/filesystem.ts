// The POSIX filesystem on a BlockDevice, inode-based and async: what the FUSE adapter calls.
// Every change is one atomic metadata operation; it knows nothing of paths, FUSE or snapshots.

import type { BlockDevice } from "../cow/index.js";
import { CorruptStoreError, eexist, einval, enoent, erofs, FsError } from "../errors.js";
import { Allocator } from "./allocator.js";
import {
  type Attr,
  attrOf,
  dirType,
  isDir,
  isLink,
  isReg,
  now,
  S_DIRMODE,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IMODE,
  S_ISGID,
} from "./attr.js";
import { ensureBlock, mapBlock, mapBlockNow } from "./block-map.js";
import { type Cred, SUPERUSER } from "./cred.js";
import { Directory, type DirectoryBlocks } from "./directory.js";
import { FileData, type Lender, type ReadPlan } from "./file-data.js";
import { FLAG_ORPHAN, INLINE_BYTES, type Inode, type Time } from "./inode.js";
import { InodeTable } from "./inode-table.js";
import { Journal } from "./journal.js";
import { type MetaSeed, MetaStore, type Step } from "./meta-store.js";
import {
  afterChown,
  afterWrite,
  chmodMode,
  mayAccess,
  mayChgrp,
  mayChown,
  mayCreate,
  mayDelete,
  mayHardlink,
  mayMknod,
  mayTouch,
  newOwner,
  permits,
  R_OK,
  S_ISUID,
  W_OK,
  X_OK,
} from "./permission.js";
import { WINDOW } from "./read-ahead.js";
import {
  decodeSuperblock,
  encodeSuperblock,
  newSuperblock,
  type Superblock,
} from "./superblock.js";
import { checkName, decodeXattrs, encodeXattrs, type Xattrs } from "./xattr.js";

export type { Cred } from "./cred.js";
export { SUPERUSER } from "./cred.js";
export type { Lender } from "./file-data.js";
export type { MetaSeed } from "./meta-store.js";

const BS = 4096;
export const ROOT = 1;
/** Most hard links to one inode (and subdirectories of one directory), as ext4. */
export const LINK_MAX = 65000;
export const NAME_MAX = 255;
export const SYMLINK_MAX = 4095;
/**
 * Blocks a part of a long truncation keeps in hand after its last freed block: that block's
 * bitmap and parent pointer, the inode, the orphan list's neighbours and head, the inode bitmap.
 */
const STEP_RESERVE = 12;

export type Name = string | Uint8Array;
const bytes = (n: Name): Buffer =>
  typeof n === "string" ? Buffer.from(n, "utf8") : Buffer.from(n);
const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");
/** "." or "..": names every directory has and none stores. */
const isDot = (name: Buffer) => name.equals(DOT) || name.equals(DOTDOT);
/** Devices, fifos and sockets: writing to one is no write to the filesystem. */
const isSpecial = (mode: number) => !isReg(mode) && !isDir(mode) && !isLink(mode);

export interface Owner {
  uid: number;
  gid: number;
}

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

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_TRUNC = 0o1000;

export interface DirEntry {
  name: Buffer;
  ino: number;
  type: number;
  /** Pass back to `readdir` to continue after this entry. */
  cookie: bigint;
}

export interface OpenOptions {
  /** Bytes of metadata blocks kept in memory. */
  cacheBytes?: number;
  /** Decoded inodes kept in memory (default 65536). */
  cachedInodes?: number;
  /** Where the times of inodes come from (default: the system clock, with nanoseconds). */
  clock?: () => Time;
  /**
   * What a read-write open does with the orphan list: "free" (the default) finishes every
   * orphan, as after a crash; "keep" leaves it for inspection (fsck). Read-only opens keep it.
   */
  orphans?: "free" | "keep";
  /**
   * Metadata to start with instead of reading it: for a snapshot's view, what the filesystem
   * snapshotted had in memory when the snapshot was taken (`FileSystem.snapshotWith`).
   */
  seed?: MetaSeed;
}

/** What an open found and finished. */
export interface Recovery {
  /** Journal transactions replayed. */
  replayed: number;
  /** Orphans freed: inodes unlinked while open, or whose freeing was cut short. */
  freedOrphans: number[];
  /** Truncations finished: inodes whose blocks past their size were still being freed. */
  finishedTruncations: number[];
}

export interface StatFs {
  blockSize: number;
  blocks: number;
  blocksFree: number;
  files: number;
  filesFree: number;
  nameMax: number;
}

/** The blocks of a directory inode, as the directory structure sees them. */
class InodeBlocks implements DirectoryBlocks {
  constructor(
    private readonly fs: FileSystem,
    readonly inode: Inode,
  ) {}
  get count(): number {
    return this.inode.size / BS;
  }
  read(i: number): Promise<Buffer> {
    // Most directory blocks and their indirect blocks are in memory: no wait for them.
    const block = mapBlockNow(this.fs.meta, this.inode, i);
    const img = block === undefined ? undefined : this.fs.meta.peek(block);
    if (img) return Promise.resolve(img);
    return mapBlock(this.fs.meta, this.inode, i).then((b) => this.fs.meta.read(b));
  }
  async write(i: number): Promise<Buffer> {
    return this.fs.meta.write(await mapBlock(this.fs.meta, this.inode, i));
  }
  async append(): Promise<Buffer> {
    const { block } = await ensureBlock(this.fs.meta, this.fs.alloc, this.inode, this.count);
    this.inode.size += BS;
    return this.fs.meta.create(block);
  }
}

export class FileSystem {
  private readonly data: FileData;
  /**
   * Open handles per inode: an unlinked file lives on until its last handle is released (and
   * on the orphan list meanwhile, so that an open after a crash frees it).
   */
  private readonly opened = new Map<number, number>();
  private readonly now: () => Time;
  readonly recovery: Recovery;

  private constructor(
    readonly dev: BlockDevice,
    readonly sb: Superblock,
    readonly meta: MetaStore,
    readonly alloc: Allocator,
    readonly table: InodeTable,
    opts: OpenOptions,
    replayed: number,
  ) {
    this.data = new FileData(dev, meta, alloc);
    this.now = opts.clock ?? now;
    this.recovery = { replayed, freedOrphans: [], finishedTruncations: [] };
  }

  get readOnly(): boolean {
    return this.dev.readOnly;
  }

  /** Formats `dev`: superblock, journal, bitmap, inode table and an empty root directory. */
  static async mkfs(
    dev: BlockDevice,
    opts: Partial<Owner> & { journalBlocks?: number; mode?: number; clock?: () => Time } = {},
  ): Promise<void> {
    if (dev.readOnly) throw erofs("device");
    const sb = newSuperblock(Math.floor(dev.size / BS), opts.journalBlocks);
    await Allocator.format(dev, sb);
    await Journal.format(dev, sb.journal);
    await dev.write(sb.systemBlock * BS, Buffer.alloc(BS));
    await dev.write(0, encodeSuperblock(sb));
    await dev.flush();
    const fs = await FileSystem.open(dev, { clock: opts.clock });
    await fs.meta.run(async () => {
      const root = await fs.table.allocate();
      if (root.ino !== ROOT) throw new Error(`the root directory got inode ${root.ino}`);
      fs.init(root, {
        mode: S_IFDIR | ((opts.mode ?? 0o755) & S_IMODE),
        uid: opts.uid ?? 0,
        gid: opts.gid ?? 0,
      });
      root.nlink = 2;
      root.rdev = ROOT;
      await Directory.format(new InodeBlocks(fs, root));
      await fs.table.put(root);
    });
    await fs.flush();
  }

  /**
   * Opens the filesystem on `dev`, read-only when the device is. Recovers what a crash left:
   * replays the journal, and (read-write) finishes every orphan; `recovery` says what it did.
   */
  static async open(dev: BlockDevice, opts: OpenOptions = {}): Promise<FileSystem> {
    const head = Buffer.alloc(BS);
    await dev.read(0, head);
    const sb = decodeSuperblock(head, Math.floor(dev.size / BS));
    const { journal, replayed } = await Journal.open(dev, sb.journal);
    const meta = new MetaStore(dev, journal, opts);
    const alloc = await Allocator.load(meta, sb);
    const table = await InodeTable.load(meta, alloc, sb, opts);
    const fs = new FileSystem(dev, sb, meta, alloc, table, opts, replayed);
    if (!dev.readOnly && (opts.orphans ?? "free") === "free" && table.orphans.head !== 0) {
      await fs.finishOrphans();
    }
    return fs;
  }

  /** Inode numbers on the orphan list, head first. */
  orphans(): Promise<number[]> {
    return this.meta.view(async () => {
      const out: number[] = [];
      const { head, count } = this.table.orphans;
      for (let ino = head; ino !== 0; ino = (await this.table.get(ino)).orphanNext) {
        if (out.length >= count)
          throw new CorruptStoreError("orphan list", "longer than its count");
        out.push(ino);
      }
      return out;
    });
  }

  /** Frees every orphan with no name left and finishes every cut-short truncation. */
  private async finishOrphans(): Promise<void> {
    await this.meta.run(async (step) => {
      for (let n = 0; this.table.orphans.head !== 0; n++) {
        const ino = this.table.orphans.head;
        const inode = await this.table.get(ino);
        if (inode.mode === 0 || !(inode.flags & FLAG_ORPHAN) || n > this.table.capacity)
          throw new CorruptStoreError("orphan list", `inode ${ino} is not a valid orphan`);
        if (inode.nlink === 0) {
          await this.destroy(inode, step);
          this.recovery.freedOrphans.push(ino);
        } else {
          await this.shrink(inode, step);
          await this.table.removeOrphan(inode);
          this.recovery.finishedTruncations.push(ino);
        }
        await step(STEP_RESERVE);
      }
    });
    await this.meta.commit();
  }

  // ------------------------------------------------------------------ attributes

  getattr(ino: number): Promise<Attr> {
    return this.meta.view(async () => attrOf(await this.seen(ino)));
  }

  /** The inode named `name` in `parent`; `cred` needs search permission on `parent`. */
  lookup(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<Attr> {
    return this.meta.view(async () =>
      attrOf(await this.seen(await this.entry(parent, bytes(name), cred))),
    );
  }

  /**
   * Whether `cred` has every right of `mask` (R_OK 4, W_OK 2, X_OK 1; 0 asks only that the inode
   * exists) on inode `ino`, as access(2): EACCES if not, EROFS for W_OK on a read-only filesystem.
   */
  access(ino: number, mask: number, cred: Cred): Promise<void> {
    return this.meta.view(async () => {
      const inode = await this.seen(ino);
      if (mask & W_OK && this.readOnly && !isSpecial(inode.mode)) throw erofs(`inode ${ino}`);
      mayAccess(inode, cred, mask & (R_OK | W_OK | X_OK), `access to inode ${ino}`);
    });
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
  setattr(ino: number, set: SetAttr, cred: Cred = SUPERUSER): Promise<Attr> {
    return this.change(async (step) => {
      const inode = await this.live(ino);
      const t = this.now();
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
        await this.data.resize(inode, set.size);
        inode.mtime = t;
      }
      if (mode !== undefined) inode.mode = mode;
      if (set.uid !== undefined) inode.uid = set.uid;
      if (set.gid !== undefined) inode.gid = set.gid;
      if (set.atime !== undefined) inode.atime = set.atime === "now" ? t : { ...set.atime };
      if (set.mtime !== undefined) inode.mtime = set.mtime === "now" ? t : { ...set.mtime };
      inode.ctime = t;
      if (shrinks) {
        await this.shrink(inode, step);
        // Named, it was on the list only for the truncation; unnamed, it stays till its release.
        if (inode.nlink > 0) await this.table.removeOrphan(inode);
      }
      await this.table.put(inode);
      return attrOf(inode);
    });
  }

  statfs(): Promise<StatFs> {
    return this.meta.view(async () => {
      const used = await this.table.used();
      const files = Math.min(2 ** 32 - 1, used + this.alloc.freeBlocks * (BS / 256));
      return {
        blockSize: BS,
        blocks: this.sb.totalBlocks,
        blocksFree: this.alloc.freeBlocks,
        files,
        filesFree: files - used,
        nameMax: NAME_MAX,
      };
    });
  }

  // ------------------------------------------------------------------ making and removing names

  // Names are made by `cred`, who owns what it makes: it needs search and write permission on
  // the directory; the mode is taken as given (the kernel has applied the umask).

  create(parent: number, name: Name, mode: number, cred: Cred): Promise<Attr> {
    return this.mknod(parent, name, S_IFREG | (mode & S_IMODE), 0, cred);
  }

  /** Makes a regular file, fifo, socket or device node (`mode` carries the type). */
  mknod(parent: number, name: Name, mode: number, rdev: number, cred: Cred): Promise<Attr> {
    const type = mode & S_IFMT || S_IFREG;
    if (type === S_IFDIR || type === S_IFLNK)
      return Promise.reject(einval("mknod makes no directories or symlinks"));
    return this.make(parent, bytes(name), type | (mode & S_IMODE), cred, async (inode) => {
      inode.rdev = rdev;
    });
  }

  mkdir(parent: number, name: Name, mode: number, cred: Cred): Promise<Attr> {
    return this.make(
      parent,
      bytes(name),
      S_IFDIR | (mode & S_DIRMODE),
      cred,
      async (inode, dir) => {
        if (dir.nlink >= LINK_MAX)
          throw new FsError("EMLINK", `directory ${dir.ino} has ${dir.nlink} links`);
        inode.nlink = 2;
        inode.rdev = dir.ino;
        await Directory.format(new InodeBlocks(this, inode));
        dir.nlink++;
      },
    );
  }

  symlink(parent: number, name: Name, target: Name, cred: Cred): Promise<Attr> {
    const to = bytes(target);
    if (to.length === 0 || to.length > SYMLINK_MAX) {
      return Promise.reject(
        new FsError(
          to.length === 0 ? "ENOENT" : "ENAMETOOLONG",
          `symlink target of ${to.length} bytes`,
        ),
      );
    }
    return this.make(parent, bytes(name), S_IFLNK | 0o777, cred, async (inode) => {
      if (to.length < INLINE_BYTES) inode.inline = to;
      else await this.data.write(inode, 0, to);
      inode.size = to.length;
    });
  }

  readlink(ino: number): Promise<Buffer> {
    return this.meta.view(async () => {
      const inode = await this.seen(ino);
      if (!isLink(inode.mode)) throw einval(`inode ${ino} is not a symlink`);
      return inode.inline ? Buffer.from(inode.inline) : this.data.read(inode, 0, inode.size);
    });
  }

  /**
   * A new name for `ino`. Besides write and search permission on the directory, `cred` needs to
   * own the file or be allowed to link it (fs.protected_hardlinks, see `mayHardlink`).
   */
  link(ino: number, parent: number, name: Name, cred: Cred = SUPERUSER): Promise<Attr> {
    return this.change(async () => {
      const inode = await this.live(ino);
      if (inode.nlink === 0) throw enoent(`inode ${ino} has been unlinked`);
      const dir = await this.dirInode(parent);
      const n = bytes(name);
      if (cred.uid !== 0) mayAccess(dir, cred, X_OK, `lookup in directory ${parent}`);
      if (isDot(n)) throw eexist(`${n.toString()} exists`);
      if (cred.uid !== 0) {
        if (await this.dir(dir).lookup(n)) throw eexist(`${n.toString()} exists`);
        mayHardlink(inode, cred);
        mayCreate(dir, cred);
      }
      if (isDir(inode.mode))
        throw new FsError("EPERM", "hard links to directories are not allowed");
      if (inode.nlink >= LINK_MAX)
        throw new FsError("EMLINK", `inode ${ino} has ${inode.nlink} links`);
      await this.dir(dir).insert(n, { ino, type: dirType(inode.mode) });
      const t = this.now();
      inode.nlink++;
      inode.ctime = t;
      dir.mtime = dir.ctime = t;
      await this.table.put(inode);
      await this.table.put(dir);
      return attrOf(inode);
    });
  }

  /** Removes a name: `cred` needs search and write permission, and the sticky rule holds. */
  unlink(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<void> {
    return this.change((step) => this.removeName(parent, bytes(name), false, step, cred));
  }

  rmdir(parent: number, name: Name, cred: Cred = SUPERUSER): Promise<void> {
    return this.change((step) => this.removeName(parent, bytes(name), true, step, cred));
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
    flags: { noReplace?: boolean; exchange?: boolean } = {},
    cred: Cred = SUPERUSER,
  ): Promise<void> {
    return this.change(async (step) => {
      const a = bytes(from);
      const b = bytes(to);
      const src = await this.dirInode(fromDir);
      const dst = toDir === fromDir ? src : await this.dirInode(toDir);
      if (cred.uid !== 0) {
        mayAccess(src, cred, X_OK, `lookup in directory ${fromDir}`);
        mayAccess(dst, cred, X_OK, `lookup in directory ${toDir}`);
      }
      for (const n of [a, b]) {
        if (isDot(n)) throw einval(`cannot rename ${n.toString()}`);
      }
      const moving = await this.live(await this.entry(fromDir, a));
      const existing = await this.dir(dst).lookup(b);
      if (existing && flags.noReplace) throw eexist(`${b.toString()} exists`);
      if (!existing && flags.exchange) throw enoent(`${b.toString()} does not exist`);
      if (existing?.ino === moving.ino) return; // two names of one file: nothing to do (POSIX)
      if (isDir(moving.mode)) await this.notBelow(moving.ino, dst.ino);
      const target = existing ? await this.live(existing.ino) : undefined;
      if (flags.exchange && target && isDir(target.mode)) await this.notBelow(target.ino, src.ino);
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
      const t = this.now();
      if (flags.exchange && target) {
        await this.dir(src).replace(a, { ino: target.ino, type: dirType(target.mode) });
        await this.dir(dst).replace(b, { ino: moving.ino, type: dirType(moving.mode) });
        this.reparent(target, src, dst);
        this.reparent(moving, dst, src);
        target.ctime = t;
        await this.table.put(target);
      } else {
        if (target) {
          if (isDir(moving.mode) && !isDir(target.mode))
            throw new FsError("ENOTDIR", `${b.toString()} is not a directory`);
          if (!isDir(moving.mode) && isDir(target.mode))
            throw new FsError("EISDIR", `${b.toString()} is a directory`);
          if (isDir(target.mode) && !(await this.dir(target).isEmpty()))
            throw new FsError("ENOTEMPTY", `${b.toString()} is not empty`);
        }
        await this.dir(src).remove(a);
        if (target) await this.dir(dst).replace(b, { ino: moving.ino, type: dirType(moving.mode) });
        else await this.dir(dst).insert(b, { ino: moving.ino, type: dirType(moving.mode) });
        if (target) this.dropLink(target, dst, t);
        this.reparent(moving, dst, src);
      }
      moving.ctime = t;
      src.mtime = src.ctime = dst.mtime = dst.ctime = t;
      await this.table.put(moving);
      await this.table.put(src);
      if (dst !== src) await this.table.put(dst);
      // Last: freeing a replaced file may take further transactions.
      if (target && !flags.exchange) await this.settle(target, step);
    });
  }

  readdir(ino: number, cookie: bigint, max: number): Promise<DirEntry[]> {
    return this.meta.view(async () => {
      const dir = this.checkDir(ino, await this.seen(ino));
      const out: DirEntry[] = [];
      if (cookie === 0n)
        out.push({ name: Buffer.from(DOT), ino, type: dirType(S_IFDIR), cookie: 1n });
      if (cookie <= 1n)
        out.push({ name: Buffer.from(DOTDOT), ino: dir.rdev, type: dirType(S_IFDIR), cookie: 2n });
      const rest = await this.dir(dir).readdir(cookie <= 2n ? 0n : cookie - 2n, max - out.length);
      for (const e of rest)
        out.push({ name: e.name, ino: e.ino, type: e.type, cookie: BigInt(e.cookie) + 2n });
      return out;
    });
  }

  // ------------------------------------------------------------------ extended attributes

  getxattr(ino: number, name: string): Promise<Buffer> {
    return this.meta.view(async () => {
      const value = (await this.xattrs(await this.seen(ino))).get(name);
      if (!value) throw new FsError("ENODATA", `inode ${ino} has no attribute ${name}`);
      return Buffer.from(value);
    });
  }

  listxattr(ino: number): Promise<string[]> {
    return this.meta.view(async () => [...(await this.xattrs(await this.seen(ino))).keys()]);
  }

  /** Sets an attribute; `create` fails with EEXIST if it exists, `replace` with ENODATA if not. */
  setxattr(
    ino: number,
    name: string,
    value: Uint8Array,
    flags: { create?: boolean; replace?: boolean } = {},
  ): Promise<void> {
    return this.change(async () => {
      checkName(name);
      const inode = await this.live(ino);
      const attrs = await this.xattrs(inode);
      if (flags.create && attrs.has(name)) throw eexist(`attribute ${name} exists`);
      if (flags.replace && !attrs.has(name))
        throw new FsError("ENODATA", `inode ${ino} has no attribute ${name}`);
      attrs.set(name, Buffer.from(value));
      await this.saveXattrs(inode, attrs);
    });
  }

  removexattr(ino: number, name: string): Promise<void> {
    return this.change(async () => {
      const inode = await this.live(ino);
      const attrs = await this.xattrs(inode);
      if (!attrs.delete(name))
        throw new FsError("ENODATA", `inode ${ino} has no attribute ${name}`);
      await this.saveXattrs(inode, attrs);
    });
  }

  private async xattrs(inode: Readonly<Inode>): Promise<Xattrs> {
    return inode.xattrBlock
      ? decodeXattrs(await this.meta.read(inode.xattrBlock), inode.ino)
      : new Map();
  }

  /** Writes the attribute block (allocated on first use, freed when empty) and the inode. */
  private async saveXattrs(inode: Inode, attrs: Xattrs): Promise<void> {
    const image = attrs.size > 0 ? encodeXattrs(attrs) : undefined;
    if (image && !inode.xattrBlock) {
      [inode.xattrBlock] = (await this.alloc.allocate(1, this.sb.dataStart)) as [number];
      inode.blocks++;
      this.meta.create(inode.xattrBlock).set(image);
    } else if (image) (await this.meta.write(inode.xattrBlock)).set(image);
    else if (inode.xattrBlock) {
      await this.alloc.release([inode.xattrBlock]);
      inode.xattrBlock = 0;
      inode.blocks--;
    }
    inode.ctime = this.now();
    await this.table.put(inode);
  }

  // ------------------------------------------------------------------ file contents

  /**
   * Marks an inode open: an unlinked file keeps its blocks until `release`. `flags` are open(2)'s:
   * `cred` needs read permission for O_RDONLY, write for O_WRONLY, both for O_RDWR, and write for
   * O_TRUNC; a directory opens for reading only (EISDIR).
   */
  open(ino: number, flags = 0, cred: Cred = SUPERUSER): Promise<Attr> {
    return this.meta.view(async () => {
      const inode = await this.seen(ino);
      const acc = flags & O_ACCMODE;
      const want =
        (acc === O_WRONLY ? W_OK : acc === O_RDWR ? R_OK | W_OK : R_OK) |
        (flags & O_TRUNC ? W_OK : 0);
      if (want & W_OK && isDir(inode.mode))
        throw new FsError("EISDIR", `inode ${ino} is a directory`);
      if (cred.uid !== 0 && !permits(inode, cred, want))
        throw new FsError("EACCES", `opening inode ${ino}: denied`);
      this.opened.set(ino, (this.opened.get(ino) ?? 0) + 1);
      return attrOf(inode);
    });
  }

  release(ino: number): Promise<void> {
    const n = (this.opened.get(ino) ?? 0) - 1;
    if (n > 0) {
      this.opened.set(ino, n);
      return Promise.resolve();
    }
    this.opened.delete(ino);
    if (this.readOnly) return Promise.resolve();
    return this.meta.run(async (step) => {
      const inode = await this.table.get(ino);
      if (inode.mode !== 0 && inode.nlink === 0) await this.destroy(inode, step);
    });
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
    if (into && into.length < length)
      return Promise.reject(einval(`a read of ${length} bytes into ${into.length}`));
    const hit = this.data.ahead.serve(ino, offset, length, into);
    if (hit) return hit.then((b) => b ?? this.readBlocks(ino, offset, length, into, lender));
    return this.readBlocks(ino, offset, length, into, lender);
  }

  private readBlocks(
    ino: number,
    offset: number,
    length: number,
    into?: Uint8Array,
    lender?: Lender,
  ) {
    // An in-order read plans a whole window, and the next requests are copies from it. With a
    // lender, a read plans only itself: what the lender cannot take starts the window.
    const window = this.data.ahead.wants(ino, offset, length);
    const want = window && !lender ? WINDOW : length;
    if (this.meta.idle) {
      const inode = this.table.peek(ino);
      const plan = inode && isReg(inode.mode) && this.data.planNow(inode, offset, want);
      if (plan) return this.begin(ino, offset, length, plan, into, lender, window);
    }
    return this.meta
      .view(async () => {
        const inode = await this.seen(ino);
        if (isDir(inode.mode)) throw new FsError("EISDIR", `inode ${ino} is a directory`);
        const plan = await this.data.plan(inode, offset, isReg(inode.mode) ? want : length);
        // Started before the lock is let go, so that a commit waits for it (see `reading`).
        return { done: this.begin(ino, offset, length, plan, into, lender, window) };
      })
      .then((r) => r.done);
  }

  /** Starts the device reads of `plan`, found for a read of `length` bytes at `offset` or more. */
  private begin(
    ino: number,
    offset: number,
    length: number,
    plan: ReadPlan,
    into?: Uint8Array,
    lender?: Lender,
    window = false,
  ): Promise<Buffer> {
    const { ahead } = this.data;
    // What the lender can read itself goes to it, in order or not: no window, no copy. It is
    // being read until the lender says so.
    if (lender) {
      const lent = this.data.lend(plan, length, lender, into);
      if (lent) {
        this.meta.reading(lender.until);
        ahead.note(ino, offset + lent.length);
        return Promise.resolve(lent);
      }
      if (window) return this.readBlocks(ino, offset, length, into); // plans the window
    }
    if (plan.length > length) {
      const fill = (buf: Buffer) => this.data.fetch(plan, buf);
      const eof = plan.length < WINDOW;
      return this.meta.reading(ahead.start(ino, offset, plan.length, eof, fill, length, into));
    }
    return this.meta.reading(this.data.fetch(plan, into)).then((b) => {
      ahead.note(ino, offset + b.length);
      return b;
    });
  }

  /**
   * Writes `data` at `offset` (the right to was checked when the file was opened). A write by
   * anyone but root clears set-user-ID and set-group-ID as Linux does (`afterWrite`).
   */
  write(ino: number, offset: number, data: Uint8Array, cred: Cred = SUPERUSER): Promise<number> {
    return this.change(async () => {
      const inode = await this.live(ino);
      if (!isReg(inode.mode))
        throw new FsError(
          isDir(inode.mode) ? "EISDIR" : "EINVAL",
          `inode ${ino} is not a regular file`,
        );
      if (cred.uid !== 0 && inode.mode & (S_ISUID | S_ISGID)) inode.mode = afterWrite(inode, cred);
      await this.data.write(inode, offset, data);
      const t = this.now();
      inode.mtime = inode.ctime = t;
      await this.table.put(inode);
      return data.length;
    });
  }

  /** Makes everything done so far durable (data and metadata of every file: one journal commit). */
  async fsync(): Promise<void> {
    if (!this.readOnly) await this.meta.commit();
  }

  /** Commits and checkpoints: the device then reads cleanly with no replay (for a snapshot). */
  async flush(): Promise<void> {
    if (!this.readOnly) await this.meta.checkpoint();
  }

  /**
   * Takes a snapshot of the device with `take` and returns, with its result, the metadata in
   * memory for the snapshot's view (`seed` of `open`): only if the device held exactly that
   * metadata all along, as after `flush` with changes held.
   */
  async snapshotWith<T>(take: () => Promise<T>): Promise<{ taken: T; seed?: MetaSeed }> {
    const before = this.meta.changes;
    const seed = this.readOnly ? undefined : this.meta.images();
    const taken = await take();
    return this.meta.changes === before ? { taken, seed } : { taken };
  }

  async close(): Promise<void> {
    await this.flush();
  }

  // ------------------------------------------------------------------ helpers

  private change<T>(fn: (step: Step) => Promise<T>): Promise<T> {
    if (this.readOnly) return Promise.reject(erofs("filesystem"));
    return this.meta.run(fn);
  }

  /** An inode that exists, or ENOENT. */
  private async live(ino: number): Promise<Inode> {
    const inode = await this.table.get(ino);
    if (inode.mode === 0) throw enoent(`inode ${ino} does not exist`);
    return inode;
  }

  /** `live`, to read only and only until the caller next waits (no copy is made). */
  private async seen(ino: number): Promise<Readonly<Inode>> {
    const inode = await this.table.read(ino);
    if (inode.mode === 0) throw enoent(`inode ${ino} does not exist`);
    return inode;
  }

  /** A directory that still has a name (a removed one, still open, is empty for good). */
  private async dirInode(ino: number): Promise<Inode> {
    return this.checkDir(ino, await this.live(ino));
  }

  private checkDir<T extends Readonly<Inode>>(ino: number, inode: T): T {
    if (!isDir(inode.mode)) throw new FsError("ENOTDIR", `inode ${ino} is not a directory`);
    if (inode.nlink === 0) throw enoent(`directory ${ino} has been removed`);
    return inode;
  }

  /** The directory stored in `inode` (also what fsck walks). */
  dir(inode: Inode): Directory {
    return new Directory(new InodeBlocks(this, inode), { label: `directory inode ${inode.ino}` });
  }

  /** The inode `name` names in `parent`, looked up by `cred` (search permission). */
  private async entry(parent: number, name: Buffer, cred: Cred = SUPERUSER): Promise<number> {
    const dir = this.checkDir(parent, await this.seen(parent));
    if (cred.uid !== 0) mayAccess(dir, cred, X_OK, `lookup in directory ${parent}`);
    if (name.equals(DOT)) return dir.ino;
    if (name.equals(DOTDOT)) return dir.rdev;
    const e = await this.dir(dir).lookup(name);
    if (!e) throw enoent(`no entry ${name.toString()} in directory ${parent}`);
    return e.ino;
  }

  private init(inode: Inode, { mode, ...owner }: Owner & { mode: number }): void {
    const t = this.now();
    inode.mode = mode;
    inode.uid = owner.uid;
    inode.gid = owner.gid;
    inode.nlink = 1;
    inode.atime = inode.mtime = inode.ctime = inode.birthtime = t;
  }

  /**
   * Creates an inode and its name in one operation, owned by `cred` (or given the group of a
   * set-group-ID directory: see `newOwner`).
   */
  private make(
    parent: number,
    name: Buffer,
    mode: number,
    cred: Cred,
    fill: (inode: Inode, dir: Inode) => Promise<void>,
  ): Promise<Attr> {
    return this.change(async () => {
      const dir = await this.dirInode(parent);
      if (cred.uid !== 0) mayAccess(dir, cred, X_OK, `lookup in directory ${parent}`);
      if (isDot(name)) throw eexist(`${name.toString()} exists`);
      const directory = this.dir(dir);
      if (await directory.lookup(name)) throw eexist(`${name.toString()} exists`);
      if (cred.uid !== 0) {
        mayCreate(dir, cred);
        mayMknod(mode & S_IFMT, cred);
      }
      const inode = await this.table.allocate();
      this.init(inode, newOwner(dir, mode, cred));
      await fill(inode, dir);
      await directory.insert(name, { ino: inode.ino, type: dirType(mode) });
      dir.mtime = dir.ctime = inode.ctime;
      await this.table.put(inode);
      await this.table.put(dir);
      return attrOf(inode);
    });
  }

  private async removeName(
    parent: number,
    name: Buffer,
    wantDir: boolean,
    step: Step,
    cred: Cred,
  ): Promise<void> {
    const dir = await this.dirInode(parent);
    if (cred.uid !== 0) mayAccess(dir, cred, X_OK, `lookup in directory ${parent}`);
    if (isDot(name)) {
      throw new FsError(
        wantDir ? (name.length === 1 ? "EINVAL" : "ENOTEMPTY") : "EISDIR",
        `cannot remove ${name.toString()}`,
      );
    }
    const directory = this.dir(dir);
    const e = await directory.lookup(name);
    if (!e) throw enoent(`no entry ${name.toString()} in directory ${parent}`);
    const inode = await this.live(e.ino);
    if (cred.uid !== 0) mayDelete(dir, inode, cred);
    if (wantDir && !isDir(inode.mode))
      throw new FsError("ENOTDIR", `${name.toString()} is not a directory`);
    if (!wantDir && isDir(inode.mode))
      throw new FsError("EISDIR", `${name.toString()} is a directory`);
    if (wantDir && !(await this.dir(inode).isEmpty()))
      throw new FsError("ENOTEMPTY", `${name.toString()} is not empty`);
    await directory.remove(name);
    const t = this.now();
    dir.mtime = dir.ctime = t;
    this.dropLink(inode, dir, t);
    await this.table.put(dir);
    await this.settle(inode, step);
  }

  /** One name of `inode` in `dir` is gone: fewer links (in memory; see `settle`). */
  private dropLink(inode: Inode, dir: Inode, t: Time): void {
    if (isDir(inode.mode)) {
      inode.nlink = 0;
      dir.nlink--;
    } else inode.nlink--;
    inode.ctime = t;
  }

  /**
   * Writes an inode that lost a name, last in its operation: with names left it is written;
   * with none, freed, or, while open, put on the orphan list until its last release.
   */
  private async settle(inode: Inode, step: Step): Promise<void> {
    if (inode.nlink > 0) await this.table.put(inode);
    else if (this.opened.has(inode.ino)) await this.table.addOrphan(inode);
    else await this.destroy(inode, step);
  }

  /** Frees an inode with no name left and everything it owns. */
  private async destroy(inode: Inode, step: Step): Promise<void> {
    if (!inode.inline) await this.shrink(inode, step, 0);
    if (inode.xattrBlock) {
      await this.alloc.release([inode.xattrBlock]);
      inode.xattrBlock = 0;
      inode.blocks--;
    }
    await this.table.removeOrphan(inode);
    await this.table.free(inode.ino);
  }

  /**
   * Frees the blocks of `inode` from file block `from` on (by default, those past its size).
   * When that is more than the running transaction has room for, it goes in parts: the inode is
   * put on the orphan list in the first part, and each part is committed whole, so that a crash
   * leaves a consistent filesystem whose next open finishes the job. The caller then takes the
   * inode off the list (or frees it) and writes it.
   */
  private async shrink(inode: Inode, step: Step, from = Math.ceil(inode.size / BS)): Promise<void> {
    // A fresh part always frees one block, so that every part makes progress.
    const mayFree = () => this.meta.dirtyBlocks === 0 || this.meta.room >= STEP_RESERVE;
    while (!(await this.data.free(inode, from, mayFree))) {
      await this.table.addOrphan(inode);
      await step(STEP_RESERVE);
    }
  }

  /** A directory moved from `from` to `to`: its ".." and both parents' link counts follow. */
  private reparent(inode: Inode, to: Inode, from: Inode): void {
    if (!isDir(inode.mode) || to === from) return;
    inode.rdev = to.ino;
    to.nlink++;
    from.nlink--;
  }

  /** EINVAL if `dir` is `ino` or lies below it: a directory cannot move into itself. */
  private async notBelow(ino: number, dir: number): Promise<void> {
    for (let d = dir, hops = 0; ; hops++) {
      if (d === ino) throw einval(`cannot move directory ${ino} into itself`);
      if (d === ROOT) return;
      if (hops > 1 << 20)
        throw new CorruptStoreError(`directory ${dir}`, "its parents form a loop");
      d = (await this.seen(d)).rdev;
    }
  }
}
