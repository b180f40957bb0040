// File I/O on inodes: open and release (open counts keep unlinked files alive), read (read-ahead,
// lent reads) and write. Only data reads run outside the metadata lock; writes never do.

import { einval, FsError } from "../errors.js";
import { type Attr, attrOf, isDir, isReg, S_ISGID } from "./attr.js";
import { change, decoded, type FsContext, live, seen } from "./context.js";
import type { Cred } from "./cred.js";
import type { Lender, ReadPlan } from "./file-data.js";
import type { Inode } from "./inode.js";
import { afterWrite, permits, R_OK, S_ISUID, W_OK } from "./permission.js";
import { WINDOW } from "./read-ahead.js";
import { destroy } from "./reclaim.js";

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_TRUNC = 0o1000;

/** See `FileSystem.open`. */
export function open(ctx: FsContext, ino: number, flags: number, cred: Cred): Promise<Attr> {
  const known = decoded(ctx, ino);
  if (known && known.mode !== 0) return new Promise((ok) => ok(opening(ctx, known, flags, cred)));
  return ctx.meta.view(async () => opening(ctx, await seen(ctx, ino), flags, cred));
}

function opening(ctx: FsContext, inode: Readonly<Inode>, flags: number, cred: Cred): Attr {
  const { ino } = inode;
  const acc = flags & O_ACCMODE;
  const want =
    (acc === O_WRONLY ? W_OK : acc === O_RDWR ? R_OK | W_OK : R_OK) | (flags & O_TRUNC ? W_OK : 0);
  if (want & W_OK && isDir(inode.mode)) throw new FsError("EISDIR", `inode ${ino} is a directory`);
  if (cred.uid !== 0 && !permits(inode, cred, want))
    throw new FsError("EACCES", `opening inode ${ino}: denied`);
  ctx.opened.set(ino, (ctx.opened.get(ino) ?? 0) + 1);
  return attrOf(inode);
}

/** One handle fewer; the last of an inode with no name left frees it. */
export function release(ctx: FsContext, ino: number): Promise<void> {
  const n = (ctx.opened.get(ino) ?? 0) - 1;
  if (n > 0) {
    ctx.opened.set(ino, n);
    return Promise.resolve();
  }
  ctx.opened.delete(ino);
  if (ctx.dev.readOnly) return Promise.resolve();
  // Most files released still have a name: then no operation is needed (an unlink that comes
  // later finds the file closed and frees it).
  const known = decoded(ctx, ino);
  if (known && known.nlink > 0) return Promise.resolve();
  return ctx.meta.run(async (step) => {
    const inode = await ctx.table.get(ino);
    if (inode.mode !== 0 && inode.nlink === 0) await destroy(ctx, inode, step);
  });
}

/** See `FileSystem.read`. */
export function read(
  ctx: FsContext,
  ino: number,
  offset: number,
  length: number,
  into?: Uint8Array,
  lender?: Lender,
): Promise<Buffer> {
  if (into && into.length < length)
    return Promise.reject(einval(`a read of ${length} bytes into ${into.length}`));
  const hit = ctx.data.ahead.serve(ino, offset, length, into);
  if (hit) return hit.then((b) => b ?? readBlocks(ctx, ino, offset, length, into, lender));
  return readBlocks(ctx, ino, offset, length, into, lender);
}

function readBlocks(
  ctx: FsContext,
  ino: number,
  offset: number,
  length: number,
  into?: Uint8Array,
  lender?: Lender,
): Promise<Buffer> {
  const { data, meta } = ctx;
  // An in-order read plans a whole window, and the next requests are copies from it. With a
  // lender, a read plans only itself: what the lender cannot take starts the window.
  const window = data.ahead.wants(ino, offset, length);
  const want = window && !lender ? WINDOW : length;
  if (meta.idle) {
    const inode = ctx.table.peek(ino);
    const plan = inode && isReg(inode.mode) && data.planNow(inode, offset, want);
    if (plan) return begin(ctx, ino, offset, length, plan, into, lender, window);
  }
  return meta
    .view(async () => {
      const inode = await seen(ctx, ino);
      if (isDir(inode.mode)) throw new FsError("EISDIR", `inode ${ino} is a directory`);
      const plan = await data.plan(inode, offset, isReg(inode.mode) ? want : length);
      // Started before the lock is let go, so that a commit waits for it (see `reading`).
      return { done: begin(ctx, ino, offset, length, plan, into, lender, window) };
    })
    .then((r) => r.done);
}

/** Starts the device reads of `plan`, found for a read of `length` bytes at `offset` or more. */
function begin(
  ctx: FsContext,
  ino: number,
  offset: number,
  length: number,
  plan: ReadPlan,
  into?: Uint8Array,
  lender?: Lender,
  window = false,
): Promise<Buffer> {
  const { data, meta } = ctx;
  const { ahead } = data;
  // What the lender can read itself goes to it, in order or not: no window, no copy. It is
  // being read until the lender says so.
  if (lender) {
    const lent = data.lend(plan, length, lender, into);
    if (lent) {
      meta.reading(lender.lease.released);
      ahead.note(ino, offset + lent.length);
      return Promise.resolve(lent);
    }
    if (window) return readBlocks(ctx, ino, offset, length, into); // plans the window
  }
  if (plan.length > length) {
    const fill = (buf: Buffer) => data.fetch(plan, buf);
    const eof = plan.length < WINDOW;
    return meta.reading(ahead.start(ino, offset, plan.length, eof, fill, length, into));
  }
  return meta.reading(data.fetch(plan, into)).then((b) => {
    ahead.note(ino, offset + b.length);
    return b;
  });
}

/** See `FileSystem.write`. */
export function write(
  ctx: FsContext,
  ino: number,
  offset: number,
  bytes: Uint8Array,
  cred: Cred,
): Promise<number> {
  return change(ctx, async () => {
    const inode = await live(ctx, ino);
    if (!isReg(inode.mode))
      throw new FsError(
        isDir(inode.mode) ? "EISDIR" : "EINVAL",
        `inode ${ino} is not a regular file`,
      );
    if (cred.uid !== 0 && inode.mode & (S_ISUID | S_ISGID)) inode.mode = afterWrite(inode, cred);
    await ctx.data.write(inode, offset, bytes);
    inode.mtime = inode.ctime = ctx.now();
    await ctx.table.put(inode);
    return bytes.length;
  });
}

/** A part of a file that holds data: `length` bytes at `offset`, at byte `dev` of the device. */
export interface DataRun {
  offset: number;
  length: number;
  dev: number;
}

/** See `FileSystem.dataRuns`. */
export function dataRuns(
  ctx: FsContext,
  ino: number,
  offset: number,
  length: number,
): Promise<DataRun[]> {
  return ctx.meta.view(async () => {
    const inode = await seen(ctx, ino);
    if (!isReg(inode.mode)) throw einval(`inode ${ino} is not a regular file`);
    return (await ctx.data.plan(inode, offset, length)).runs.map((r) => ({
      offset: offset + r.at,
      length: r.len,
      dev: r.dev,
    }));
  });
}
