// Giving back what inodes own: an inode with no name left, the blocks past a shrunk size (in
// parts, through the orphan list), and the link counts a lost name changes. Inside `meta.run` only.

import { isDir } from "./attr.js";
import type { FsContext } from "./context.js";
import type { Inode, Time } from "./inode.js";
import type { Step } from "./meta-store.js";

const BS = 4096;
/**
 * Blocks a part of a long truncation keeps in hand after its last freed block: that block's
 * bitmap and parent pointer, the inode, the orphan list's neighbours and head, the inode bitmap.
 */
export const STEP_RESERVE = 12;

/** One name of `inode` in `dir` is gone: fewer links (in memory; see `settle`). */
export function dropLink(inode: Inode, dir: Inode, t: Time): void {
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
export async function settle(ctx: FsContext, inode: Inode, step: Step): Promise<void> {
  if (inode.nlink > 0) await ctx.table.put(inode);
  else if (ctx.opened.has(inode.ino)) await ctx.table.addOrphan(inode);
  else await destroy(ctx, inode, step);
}

/** Frees an inode with no name left and everything it owns. */
export async function destroy(ctx: FsContext, inode: Inode, step: Step): Promise<void> {
  if (!inode.inline) await shrink(ctx, inode, step, 0);
  if (inode.xattrBlock) {
    await ctx.alloc.release([inode.xattrBlock]);
    inode.xattrBlock = 0;
    inode.blocks--;
  }
  await ctx.table.removeOrphan(inode);
  await ctx.table.free(inode.ino);
}

/**
 * Frees the blocks of `inode` from file block `from` on (by default, those past its size).
 * When that is more than the running transaction has room for, it goes in parts: the inode is
 * put on the orphan list in the first part, and each part is committed whole, so that a crash
 * leaves a consistent filesystem whose next open finishes the job. The caller then takes the
 * inode off the list (or frees it) and writes it.
 */
export async function shrink(
  ctx: FsContext,
  inode: Inode,
  step: Step,
  from = Math.ceil(inode.size / BS),
): Promise<void> {
  const { meta } = ctx;
  // A fresh part always frees one block, so that every part makes progress.
  const mayFree = () => meta.dirtyBlocks === 0 || meta.room >= STEP_RESERVE;
  while (!(await ctx.data.free(inode, from, mayFree))) {
    await ctx.table.addOrphan(inode);
    await step(STEP_RESERVE);
  }
}
