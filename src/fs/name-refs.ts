// The names an inode lists (format 2): which directory holds each of its names, under which key,
// kept by the operations that make and remove names. It never reads a directory or a device.

import { isDir } from "./attr.js";
import type { Key } from "./directory.js";
import { FLAG_MORE_NAMES, type Inode, NAME_REFS, type NameRef } from "./inode.js";

/** The first filesystem format whose inodes list their names. */
export const NAMES_SINCE = 2;

/*
 * Why: `snapshot diff` finds what changed from the inode records that changed, and needs every
 * name of such an inode without walking the tree (a file written in place changes no directory).
 * A directory entry's key (hash and collision index) is fixed for the entry's life, so
 * (directory, key) names an entry for good: the directory turns it into the name with one node
 * a level (`Directory.atKey`). An inode lists up to NAME_REFS of its names; one with more (hard
 * links only) sets FLAG_MORE_NAMES, and whoever needs all its names looks for the rest (the diff
 * walks the tree for those alone). The flag says exactly that the list lacks a name: it goes
 * once the list holds every name again, be it by a removal or by a rename of an unlisted name.
 */

/** How many names `inode` has: a directory one (none once removed), anything else its links. */
export function nameCount(inode: Readonly<Inode>): number {
  return isDir(inode.mode) ? (inode.nlink > 0 ? 1 : 0) : inode.nlink;
}

/** True when `inode` lists every one of its names. */
export const listsAllNames = (inode: Readonly<Inode>): boolean =>
  (inode.flags & FLAG_MORE_NAMES) === 0;

/**
 * `inode` got a name, entry `key` of directory `parent` (call after its link count is up; a
 * rename drops the name's old entry first, its link count unchanged).
 */
export function addName(inode: Inode, parent: number, key: Key): void {
  if (inode.names.length < NAME_REFS) inode.names.push({ parent, h: key.h, m: key.m });
  flagUnlisted(inode);
}

/** `inode` lost its name `key` in directory `parent` (call after its link count is down). */
export function dropName(inode: Inode, parent: number, key: Key): void {
  const i = inode.names.findIndex((r) => r.parent === parent && r.h === key.h && r.m === key.m);
  if (i >= 0) inode.names.splice(i, 1);
  flagUnlisted(inode);
}

/**
 * FLAG_MORE_NAMES set exactly when `inode` has names its list lacks: a name added to a full list
 * sets it; a name removed, or one that was not listed moved by a rename into room the list has,
 * may clear it.
 */
function flagUnlisted(inode: Inode): void {
  if (inode.names.length < nameCount(inode)) inode.flags |= FLAG_MORE_NAMES;
  else inode.flags &= ~FLAG_MORE_NAMES;
}

/** fsck: what is wrong with the names `inode` lists, given the names the tree has for it. */
export function nameRefProblem(
  inode: Readonly<Inode>,
  found: readonly NameRef[],
): string | undefined {
  const same = (a: NameRef, b: NameRef) => a.parent === b.parent && a.h === b.h && a.m === b.m;
  const show = (r: NameRef) => `(directory ${r.parent}, key ${r.h}:${r.m})`;
  const stray = inode.names.find((r) => !found.some((f) => same(f, r)));
  if (stray) return `lists name ${show(stray)}, which is not one of its names`;
  if (inode.names.some((r, i) => inode.names.findIndex((o) => same(o, r)) !== i))
    return "lists a name twice";
  const more = !listsAllNames(inode);
  if (!more && inode.names.length !== found.length) {
    const missing = found.find((f) => !inode.names.some((r) => same(f, r)));
    return `does not list its name ${missing ? show(missing) : "?"}`;
  }
  if (more && found.length <= inode.names.length)
    return `is marked as having more names than it lists (${inode.names.length} listed, ${found.length} in all)`;
  return undefined;
}
