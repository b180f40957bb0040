// `snapshot diff`: what changed between two views of one volume (an older snapshot and a newer one
// or production), found from the device blocks that changed between them. It never walks the tree.

import { CorruptStoreError } from "../errors.js";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFSOCK } from "./attr.js";
import { mapRange } from "./block-map.js";
import type { FsContext } from "./context.js";
import { lifeOf, type Named, Names } from "./diff-names.js";
import type { FileSystem } from "./filesystem.js";
import { FLAG_MORE_NAMES, FLAG_ORPHAN, INODE_SIZE, type Inode, type Time } from "./inode.js";

/*
 * The design (docs/format.md, "Changes between two points"):
 *
 * 1. The store says which chunks any snapshot area between the two points preserved: only those
 *    can differ. They become device blocks (plus the blocks a read-only view took from its
 *    journal's replay), and those blocks the inode-table blocks among them, through the maps of
 *    the table's file in both views (a table block elsewhere or in one view only counts too: a
 *    revert can leave the newer table the smaller one).
 * 2. Every inode of such a block is compared, record against record. Any change to an inode's
 *    contents, attributes, xattrs or names changes its record: writes set mtime and ctime, every
 *    other change ctime, making and removing a name changes the inode's link count and the names
 *    it lists. Only atime and the orphan list's links are not changes. Another life of the number
 *    (freed and taken again: another generation, or after a revert another birth time) is a
 *    removal and an addition.
 * 3. Names come from the names each inode lists (format 2): for the changed inodes only, in both
 *    views. A name is its directory (number and life) and the bytes of the name: a name kept
 *    by a changed inode is "M", lost and gained names pair up as renames ("R", in path order), the
 *    rest are "-" and "+". A renamed directory is one "R": what lies below it kept its names.
 *
 * The cost is the changed chunks, the inodes of the changed table blocks, and per reported name
 * one directory descent (and one per directory above it, cached); plus one pass over the map of
 * the inode table's file (one pointer per 16 inodes).
 */

export type FileKind =
  | "file"
  | "directory"
  | "symlink"
  | "fifo"
  | "socket"
  | "char-device"
  | "block-device";

export type ChangeKind = "added" | "removed" | "modified" | "renamed";

export interface Change {
  change: ChangeKind;
  /** The path in the newer view (in the older one for "removed"). */
  path: string;
  /** "renamed": the path in the older view. */
  from?: string;
  type: FileKind;
  inode: number;
  /** Size in the older view (not for "added"). */
  sizeBefore?: number;
  /** Size in the newer view (not for "removed"). */
  sizeAfter?: number;
}

const BS = 4096;
const PER_BLOCK = BS / INODE_SIZE;
/** Flags that say nothing about the file: where the orphan list is, how many names are listed. */
const NOT_CHANGES = FLAG_ORPHAN | FLAG_MORE_NAMES;

const KINDS = new Map<number, FileKind>([
  [S_IFDIR, "directory"],
  [S_IFLNK, "symlink"],
  [S_IFIFO, "fifo"],
  [S_IFSOCK, "socket"],
  [S_IFCHR, "char-device"],
  [S_IFBLK, "block-device"],
]);
export const fileKind = (mode: number): FileKind => KINDS.get(mode & S_IFMT) ?? "file";

/**
 * The changes from `older` to `newer`, two views of one volume, given every device block whose
 * contents may differ between them (`changed`). Sorted by path. Neither view may change meanwhile
 * (a snapshot's never does; production's caller holds its changes and has flushed it).
 */
export async function diffViews(
  older: FileSystem,
  newer: FileSystem,
  changed: Iterable<number>,
): Promise<Change[]> {
  const a = older.context;
  const b = newer.context;
  if (a.sb.uuid !== b.sb.uuid)
    throw new CorruptStoreError("snapshot diff", "the two views hold different filesystems");
  const blocks = new Set(changed);
  for (const block of a.meta.replayedBlocks()) blocks.add(block);
  for (const block of b.meta.replayedBlocks()) blocks.add(block);
  return b.meta.view(() =>
    a.meta.view(async () => {
      const out: Change[] = [];
      const olderNames = new Names(a);
      const newerNames = new Names(b);
      for (const ino of await changedSlots(a, b, blocks)) {
        const was = await a.table.get(ino);
        const is = await b.table.get(ino);
        if (was.mode === 0 && is.mode === 0) continue;
        const names = { was: await olderNames.of(was), is: await newerNames.of(is) };
        report(was, is, names, out);
      }
      return out.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : order(x, y)));
    }),
  );
}

/** Ties on one path: a removal before an addition or rename to it. */
const order = (x: Change, y: Change) =>
  (x.change === "removed" ? 0 : 1) - (y.change === "removed" ? 0 : 1) ||
  (x.from ?? "").localeCompare(y.from ?? "");

/**
 * Inode numbers in inode-table blocks that may differ between the views, ascending: a table block
 * at another place in each view, or in one only (a revert can leave the newer table the smaller),
 * or in a changed block.
 */
async function changedSlots(a: FsContext, b: FsContext, blocks: Set<number>): Promise<number[]> {
  const tableOf = async (ctx: FsContext) => {
    const table = ctx.table.systemInodes()[0]!;
    return mapRange(ctx, table, 0, Math.ceil(table.size / BS));
  };
  const [older, newer] = await Promise.all([tableOf(a), tableOf(b)]);
  const out: number[] = [];
  for (let f = 0; f < Math.max(older.length, newer.length); f++) {
    const block = newer[f] ?? 0;
    if (block !== 0 && !blocks.has(block) && older[f] === block) continue;
    if (block === 0 && (older[f] ?? 0) === 0) continue;
    for (let k = 0; k < PER_BLOCK; k++) if (f * PER_BLOCK + k > 0) out.push(f * PER_BLOCK + k);
  }
  return out;
}

/** The lines of one inode that may have changed (see the design above). */
function report(was: Inode, is: Inode, names: { was: Named[]; is: Named[] }, out: Change[]): void {
  const sameLife =
    was.mode !== 0 &&
    is.mode !== 0 &&
    lifeOf(was) === lifeOf(is) &&
    (was.mode & S_IFMT) === (is.mode & S_IFMT);
  const line = (change: ChangeKind, path: string, from?: string): Change => {
    const c: Change = {
      change,
      path,
      type: fileKind((is.mode || was.mode) & S_IFMT),
      inode: is.ino,
    };
    if (from !== undefined) c.from = from;
    if (change !== "added") c.sizeBefore = was.size;
    if (change !== "removed") c.sizeAfter = is.size;
    return c;
  };
  if (!sameLife) {
    if (was.mode !== 0) {
      for (const n of names.was) out.push({ ...line("removed", n.path), type: fileKind(was.mode) });
    }
    if (is.mode !== 0) for (const n of names.is) out.push(line("added", n.path));
    return;
  }
  const id = (n: Named) => `${n.parent}.${n.parentLife}/${n.name.toString("hex")}`;
  const before = new Set(names.was.map(id));
  const after = new Set(names.is.map(id));
  const byPath = (x: Named, y: Named) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);
  const lost = names.was.filter((n) => !after.has(id(n))).sort(byPath);
  const gained = names.is.filter((n) => !before.has(id(n))).sort(byPath);
  const pairs = Math.min(lost.length, gained.length);
  for (let i = 0; i < pairs; i++) out.push(line("renamed", gained[i]!.path, lost[i]!.path));
  for (const n of lost.slice(pairs)) out.push(line("removed", n.path));
  for (const n of gained.slice(pairs)) out.push(line("added", n.path));
  if (modified(was, is))
    for (const n of names.is) if (before.has(id(n))) out.push(line("modified", n.path));
}

const sameTime = (x: Time, y: Time) => x.sec === y.sec && x.nsec === y.nsec;

/** True when the inode's contents or attributes differ (atime and the names aside). */
function modified(x: Inode, y: Inode): boolean {
  return (
    x.mode !== y.mode ||
    x.uid !== y.uid ||
    x.gid !== y.gid ||
    x.nlink !== y.nlink ||
    x.size !== y.size ||
    x.blocks !== y.blocks ||
    !sameTime(x.mtime, y.mtime) ||
    !sameTime(x.ctime, y.ctime) ||
    !sameTime(x.birthtime, y.birthtime) ||
    (x.flags & ~NOT_CHANGES) !== (y.flags & ~NOT_CHANGES) ||
    x.rdev !== y.rdev ||
    x.xattrBlock !== y.xattrBlock ||
    x.ptrs.some((p, i) => p !== y.ptrs[i]) ||
    !(x.inline && y.inline ? x.inline.equals(y.inline) : x.inline === y.inline)
  );
}
