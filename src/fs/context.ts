// What the filesystem's modules share (FsContext) and the inode helpers every family of
// operations uses. It holds no operation of its own and never takes a lock by itself.

import type { BlockDevice } from "../cow/index.js";
import { enoent, erofs, FsError } from "../errors.js";
import type { Allocator } from "./allocator.js";
import { isDir } from "./attr.js";
import { ensureBlock, mapBlock, mapBlockNow } from "./block-map.js";
import { Directory, type DirectoryBlocks } from "./directory.js";
import type { FileData } from "./file-data.js";
import type { Inode, Time } from "./inode.js";
import type { InodeTable } from "./inode-table.js";
import type { MetaStore, Step } from "./meta-store.js";
import type { Superblock } from "./superblock.js";

const BS = 4096;
/** The root directory's inode number. */
export const ROOT = 1;

/*
 * Locking, stated once (as gocryptfs's file.go does): every operation runs under the metadata
 * lock, `meta.run` (one changing operation, atomic) or `meta.view` (a read that sees no operation
 * half-done). The only work outside it is file data: a read's device reads, which `meta.reading`
 * tracks so that a commit waits for them before freed blocks are handed out again, and the
 * read-ahead's copies, which a change to the file kills first. JavaScript runs one step at a
 * time, so state changed in one synchronous step needs no lock; every field below says which.
 */

/** The state of one open filesystem, handed to each module (no FileSystem to reach into). */
export interface FsContext {
  /** The device (a snapshot's is read-only). Data blocks are read and written here directly. */
  readonly dev: BlockDevice;
  /** Geometry, decoded at open and never changed. */
  readonly sb: Superblock;
  /** Metadata blocks, the running transaction and the journal; `run`/`view` are the lock. */
  readonly meta: MetaStore;
  /** The block bitmap. Guarded by meta: allocate and release only inside `meta.run`. */
  readonly alloc: Allocator;
  /**
   * Inodes, their numbers and the orphan list. Guarded by meta: read in a view, change in a run.
   */
  readonly table: InodeTable;
  /**
   * File contents through the block maps. Guarded by meta, but for the reads `meta.reading` tracks.
   */
  readonly data: FileData;
  /** Where inode times come from. */
  readonly now: () => Time;
  /**
   * Open handles per inode: an unlinked file lives on until its last handle is released (and on
   * the orphan list meanwhile). No lock: `open` counts up and `release` down in one synchronous
   * step each; operations read it inside `meta.run`.
   */
  readonly opened: Map<number, number>;
  /**
   * Where the SipHash key of each new directory comes from; none: drawn at random (see
   * `Directory.format`). Tests give one derived from their seed, to repeat a run exactly.
   */
  readonly dirKeys?: () => Buffer;
}

/** Runs a changing operation: EROFS on a read-only filesystem, else one atomic `meta.run`. */
export function change<T>(ctx: FsContext, fn: (step: Step) => Promise<T>): Promise<T> {
  if (ctx.dev.readOnly) return Promise.reject(erofs("filesystem"));
  return ctx.meta.run(fn);
}

/** An inode that exists, to change (a copy), or ENOENT. Inside an operation. */
export async function live(ctx: FsContext, ino: number): Promise<Inode> {
  const inode = await ctx.table.get(ino);
  if (inode.mode === 0) throw enoent(`inode ${ino} does not exist`);
  return inode;
}

/**
 * Inode `ino` as completed operations left it, if it is decoded (or its block is in memory) and
 * no operation is in progress, else undefined. It never waits, so an answer it is enough for is
 * not held behind the metadata lock (a commit, say). To read only, until the caller next waits.
 */
export function decoded(ctx: FsContext, ino: number): Readonly<Inode> | undefined {
  return ctx.meta.settled ? ctx.table.peek(ino) : undefined;
}

/** `live`, to read only and only until the caller next waits (no copy is made). */
export async function seen(ctx: FsContext, ino: number): Promise<Readonly<Inode>> {
  const inode = await ctx.table.read(ino);
  if (inode.mode === 0) throw enoent(`inode ${ino} does not exist`);
  return inode;
}

/** `inode` if it is a directory that still has a name (a removed one, still open, is empty). */
export function checkDir<T extends Readonly<Inode>>(ino: number, inode: T): T {
  if (!isDir(inode.mode)) throw new FsError("ENOTDIR", `inode ${ino} is not a directory`);
  if (inode.nlink === 0) throw enoent(`directory ${ino} has been removed`);
  return inode;
}

/** `live` and `checkDir`: a directory to change. */
export async function dirInode(ctx: FsContext, ino: number): Promise<Inode> {
  return checkDir(ino, await live(ctx, ino));
}

/** The directory stored in `inode` (also what fsck walks). */
export function directoryOf(ctx: FsContext, inode: Inode): Directory {
  return new Directory(new InodeBlocks(ctx, inode), { label: `directory inode ${inode.ino}` });
}

/** Makes an empty directory in a new directory inode. Inside an operation. */
export function formatDirectory(ctx: FsContext, inode: Inode): Promise<void> {
  return Directory.format(new InodeBlocks(ctx, inode), ctx.dirKeys?.());
}

/** The blocks of a directory inode, as the directory structure sees them. */
class InodeBlocks implements DirectoryBlocks {
  constructor(
    private readonly ctx: FsContext,
    readonly inode: Inode,
  ) {}
  get count(): number {
    return this.inode.size / BS;
  }
  read(i: number): Promise<Buffer> {
    // Most directory blocks and their indirect blocks are in memory: no wait for them.
    const { meta } = this.ctx;
    const block = mapBlockNow(this.ctx, this.inode, i);
    const img = block === undefined ? undefined : meta.peek(block);
    if (img) return Promise.resolve(img);
    return mapBlock(this.ctx, this.inode, i).then((b) => meta.read(b));
  }
  async write(i: number): Promise<Buffer> {
    return this.ctx.meta.write(await mapBlock(this.ctx, this.inode, i));
  }
  async append(): Promise<Buffer> {
    const { block } = await ensureBlock(this.ctx, this.inode, this.count);
    this.inode.size += BS;
    return this.ctx.meta.create(block);
  }
}

export interface Owner {
  uid: number;
  gid: number;
}

/** Fills a newly allocated inode: its mode and owner, one link, every time now. */
export function initInode(
  ctx: FsContext,
  inode: Inode,
  { mode, ...owner }: Owner & { mode: number },
): void {
  const t = ctx.now();
  inode.mode = mode;
  inode.uid = owner.uid;
  inode.gid = owner.gid;
  inode.nlink = 1;
  inode.atime = inode.mtime = inode.ctime = inode.birthtime = t;
}
