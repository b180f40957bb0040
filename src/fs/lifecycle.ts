// A filesystem's life: mkfs, open (journal replay, finishing orphans), statfs, and making it
// durable (fsync, flush, snapshotWith, close). No file or name operation lives here.

import type { BlockDevice } from "../cow/index.js";
import { CorruptStoreError, erofs } from "../errors.js";
import { Allocator } from "./allocator.js";
import { now, S_IFDIR, S_IMODE } from "./attr.js";
import { type FsContext, formatDirectory, initInode, type Owner, ROOT } from "./context.js";
import { NAME_MAX } from "./directory.js";
import { FileData } from "./file-data.js";
import { FLAG_ORPHAN, type Time } from "./inode.js";
import { InodeTable } from "./inode-table.js";
import { Journal } from "./journal.js";
import { MetaStore, type Seed } from "./meta-store.js";
import { destroy, STEP_RESERVE, shrink } from "./reclaim.js";
import { decodeSuperblock, encodeSuperblock, newSuperblock } from "./superblock.js";

const BS = 4096;

export interface MkfsOptions extends Partial<Owner> {
  journalBlocks?: number;
  /** The root directory's permission bits (default 0o755). */
  mode?: number;
  clock?: () => Time;
  /** See `OpenOptions.dirKeys`: the root directory's key. */
  dirKeys?: () => Buffer;
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
   * Metadata in memory to look up before reading it: for a snapshot's view, what the filesystem
   * snapshotted has in memory of what the snapshot holds (`FileSystem.snapshotWith`).
   */
  seed?: Seed;
  /**
   * Where the SipHash keys of new directories come from (default: drawn at random, so that
   * names cannot be chosen from outside to collide). For tests that repeat a seeded run.
   */
  dirKeys?: () => Buffer;
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

/** Formats `dev`: superblock, journal, bitmap, inode table and an empty root directory. */
export async function mkfs(dev: BlockDevice, opts: MkfsOptions = {}): Promise<void> {
  if (dev.readOnly) throw erofs("device");
  const sb = newSuperblock(Math.floor(dev.size / BS), opts.journalBlocks);
  await Allocator.format(dev, sb);
  await Journal.format(dev, sb.journal);
  await dev.write(sb.systemBlock * BS, Buffer.alloc(BS));
  await dev.write(0, encodeSuperblock(sb));
  await dev.flush();
  const { ctx } = await open(dev, { clock: opts.clock, dirKeys: opts.dirKeys });
  await ctx.meta.run(async () => {
    const root = await ctx.table.allocate();
    if (root.ino !== ROOT) throw new Error(`the root directory got inode ${root.ino}`);
    initInode(ctx, root, {
      mode: S_IFDIR | ((opts.mode ?? 0o755) & S_IMODE),
      uid: opts.uid ?? 0,
      gid: opts.gid ?? 0,
    });
    root.nlink = 2;
    root.rdev = ROOT;
    await formatDirectory(ctx, root);
    await ctx.table.put(root);
  });
  await flush(ctx);
}

/**
 * Opens the filesystem on `dev`, read-only when the device is. Recovers what a crash left:
 * replays the journal, and (read-write) finishes every orphan; `recovery` says what it did.
 */
export async function open(
  dev: BlockDevice,
  opts: OpenOptions = {},
): Promise<{ ctx: FsContext; recovery: Recovery }> {
  const head = Buffer.alloc(BS);
  await dev.read(0, head);
  const sb = decodeSuperblock(head, Math.floor(dev.size / BS));
  const { journal, replayed } = await Journal.open(dev, sb.journal);
  const meta = new MetaStore(dev, journal, opts);
  const alloc = await Allocator.load(meta, sb);
  const table = await InodeTable.load(meta, alloc, sb, opts);
  const data = new FileData({ dev, meta, alloc });
  const ctx: FsContext = {
    dev,
    sb,
    meta,
    alloc,
    table,
    data,
    now: opts.clock ?? now,
    opened: new Map(),
    dirKeys: opts.dirKeys,
  };
  const recovery: Recovery = { replayed, freedOrphans: [], finishedTruncations: [] };
  if (!dev.readOnly && (opts.orphans ?? "free") === "free" && table.orphans.head !== 0)
    await finishOrphans(ctx, recovery);
  return { ctx, recovery };
}

/** Frees every orphan with no name left and finishes every cut-short truncation. */
async function finishOrphans(ctx: FsContext, recovery: Recovery): Promise<void> {
  const { table } = ctx;
  await ctx.meta.run(async (step) => {
    for (let n = 0; table.orphans.head !== 0; n++) {
      const ino = table.orphans.head;
      const inode = await table.get(ino);
      if (inode.mode === 0 || !(inode.flags & FLAG_ORPHAN) || n > table.capacity)
        throw new CorruptStoreError("orphan list", `inode ${ino} is not a valid orphan`);
      if (inode.nlink === 0) {
        await destroy(ctx, inode, step);
        recovery.freedOrphans.push(ino);
      } else {
        await shrink(ctx, inode, step);
        await table.removeOrphan(inode);
        recovery.finishedTruncations.push(ino);
      }
      await step(STEP_RESERVE);
    }
  });
  await ctx.meta.commit();
}

/** Inode numbers on the orphan list, head first. */
export function orphans(ctx: FsContext): Promise<number[]> {
  return ctx.meta.view(async () => {
    const out: number[] = [];
    const { head, count } = ctx.table.orphans;
    for (let ino = head; ino !== 0; ino = (await ctx.table.get(ino)).orphanNext) {
      if (out.length >= count) throw new CorruptStoreError("orphan list", "longer than its count");
      out.push(ino);
    }
    return out;
  });
}

export function statfs(ctx: FsContext): Promise<StatFs> {
  return ctx.meta.view(async () => {
    const used = await ctx.table.used();
    const files = Math.min(2 ** 32 - 1, used + ctx.alloc.freeBlocks * (BS / 256));
    return {
      blockSize: BS,
      blocks: ctx.sb.totalBlocks,
      blocksFree: ctx.alloc.freeBlocks,
      files,
      filesFree: files - used,
      nameMax: NAME_MAX,
    };
  });
}

/** One journal commit: everything done so far is durable. */
export async function fsync(ctx: FsContext): Promise<void> {
  if (!ctx.dev.readOnly) await ctx.meta.commit();
}

/** Commits and checkpoints: the device then reads cleanly with no replay. */
export async function flush(ctx: FsContext): Promise<void> {
  if (!ctx.dev.readOnly) await ctx.meta.checkpoint();
}

/** See `FileSystem.snapshotWith`. */
export async function snapshotWith<T>(
  ctx: FsContext,
  take: () => Promise<T>,
): Promise<{ taken: T; seed?: Seed }> {
  const before = ctx.meta.changes;
  const seed = ctx.dev.readOnly ? undefined : ctx.meta.seed();
  const taken = await take();
  if (ctx.meta.changes === before) return { taken, seed };
  seed?.drop();
  return { taken };
}
