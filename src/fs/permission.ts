// Linux's permission rules for one caller on one inode, as the kernel applies them to ext4 files
// without ACLs. Pure functions of a Cred and attributes: they never read or change an inode.

import { FsError } from "../errors.js";
import { isDir, isReg, S_IFMT, S_IFREG, S_ISGID } from "./attr.js";
import type { Cred } from "./cred.js";

export const R_OK = 4;
export const W_OK = 2;
export const X_OK = 1;
export const S_ISUID = 0o4000;
export const S_ISVTX = 0o1000;
export const S_IXGRP = 0o010;
const S_IXUGO = 0o111;

/** What the rules read of an inode. */
export interface Owned {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

export const eacces = (what: string) => new FsError("EACCES", what);
export const eperm = (what: string) => new FsError("EPERM", what);

/** Is `cred` in group `gid` (primary or supplementary)? (`in_group_p`) */
export function inGroup(cred: Cred, gid: number): boolean {
  return cred.gid === gid || cred.groups.includes(gid);
}

/** In the group, or root (`in_group_or_capable` with CAP_FSETID). */
const inGroupOrRoot = (cred: Cred, gid: number) => cred.uid === 0 || inGroup(cred, gid);

/** The owner, or root (`inode_owner_or_capable` with CAP_FOWNER). */
export const ownerOrRoot = (node: Owned, cred: Cred) => cred.uid === 0 || cred.uid === node.uid;

/**
 * May `cred` have every right in `want` (R_OK | W_OK | X_OK) on `node`? The owner's bits for the
 * owner, the group's for a member, the others' for the rest; root has every right except
 * executing a non-directory with no x bit at all (`generic_permission`).
 */
export function permits(node: Owned, cred: Cred, want: number): boolean {
  if (cred.uid === 0) return !(want & X_OK) || isDir(node.mode) || (node.mode & S_IXUGO) !== 0;
  const bits =
    cred.uid === node.uid ? node.mode >> 6 : inGroup(cred, node.gid) ? node.mode >> 3 : node.mode;
  return (want & ~bits & 7) === 0;
}

/** EACCES unless `permits`. */
export function mayAccess(node: Owned, cred: Cred, want: number, what = "permission"): void {
  if (!permits(node, cred, want)) throw eacces(`${what}: denied`);
}

/** Making a name in `dir` (after the name is known to be free): write and search (`may_create`). */
export function mayCreate(dir: Owned, cred: Cred): void {
  mayAccess(dir, cred, W_OK | X_OK, "a new name in the directory");
}

/**
 * Removing (or renaming over) `victim`'s name in `dir` (`may_delete`): write and search on the
 * directory, and in a sticky directory only the victim's owner, the directory's owner or root.
 */
export function mayDelete(dir: Owned, victim: Owned, cred: Cred): void {
  mayAccess(dir, cred, W_OK | X_OK, "removing a name from the directory");
  if (dir.mode & S_ISVTX && cred.uid !== 0 && cred.uid !== victim.uid && cred.uid !== dir.uid)
    throw eperm("the directory is sticky and neither it nor the file is the caller's");
}

/**
 * A hard link to a file of someone else (`may_linkat`, fs.protected_hardlinks = 1, the default
 * of systemd and Debian): only to a regular file that is not set-ID and that the caller may read
 * and write; otherwise EPERM.
 */
export function mayHardlink(node: Owned, cred: Cred): void {
  if (ownerOrRoot(node, cred)) return;
  const setId = node.mode & S_ISUID || (node.mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP);
  if (!isReg(node.mode) || setId || !permits(node, cred, R_OK | W_OK))
    throw eperm(
      "a hard link to another user's file that is not safe to link (protected_hardlinks)",
    );
}

/**
 * The owner and mode of a new inode made by `cred` in `dir` with `mode` (`inode_init_owner`
 * and `mode_strip_sgid`): a set-group-ID directory gives its group, and its set-group-ID bit to
 * subdirectories; a group-executable set-group-ID file made there by someone outside that group
 * loses the bit.
 */
export function newOwner(
  dir: Owned,
  mode: number,
  cred: Cred,
): { uid: number; gid: number; mode: number } {
  if (!(dir.mode & S_ISGID)) return { uid: cred.uid, gid: cred.gid, mode };
  if (isDir(mode)) return { uid: cred.uid, gid: dir.gid, mode: mode | S_ISGID };
  const strip =
    (mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP) && !inGroupOrRoot(cred, dir.gid);
  return { uid: cred.uid, gid: dir.gid, mode: strip ? mode & ~S_ISGID : mode };
}

/**
 * The mode of `node` once `cred` has written to or truncated it (`should_remove_suid`): a caller
 * other than root clears set-user-ID, and set-group-ID when group-executable or when not in the
 * file's group. Regular files only.
 */
export function afterWrite(node: Owned, cred: Cred): number {
  if (cred.uid === 0 || (node.mode & S_IFMT) !== S_IFREG) return node.mode;
  let mode = node.mode & ~S_ISUID;
  if (mode & S_ISGID && (mode & S_IXGRP || !inGroup(cred, node.gid))) mode &= ~S_ISGID;
  return mode;
}

/**
 * The mode of `node` after a change of owner or group (`chown_common`): a non-directory loses
 * set-user-ID, and set-group-ID when group-executable or (the caller not root) when the caller
 * is not in the file's group (`setattr_should_drop_sgid`), even when root changes it.
 */
export function afterChown(node: Owned, cred: Cred): number {
  if (isDir(node.mode)) return node.mode;
  let mode = node.mode & ~S_ISUID;
  if (mode & S_ISGID && (mode & S_IXGRP || !inGroupOrRoot(cred, node.gid))) mode &= ~S_ISGID;
  return mode;
}

/** A change of owner (`chown_ok`): root, or the owner keeping it. */
export function mayChown(node: Owned, uid: number, cred: Cred): void {
  if (cred.uid !== 0 && !(cred.uid === node.uid && uid === node.uid))
    throw eperm("only root changes the owner of a file");
}

/** A change of group (`chgrp_ok`): root, or the owner to a group it is in (or the same). */
export function mayChgrp(node: Owned, gid: number, cred: Cred): void {
  if (cred.uid === 0) return;
  if (cred.uid !== node.uid || (gid !== node.gid && !inGroup(cred, gid)))
    throw eperm("only the owner changes the group, and only to one of its groups");
}

/**
 * The mode a chmod to `mode` leaves (`setattr_prepare`): only the owner or root may; a caller
 * that is not root and not in the group the file will have loses set-group-ID.
 */
export function chmodMode(node: Owned, mode: number, gid: number, cred: Cred): number {
  if (!ownerOrRoot(node, cred)) throw eperm("only the owner changes the mode of a file");
  return inGroupOrRoot(cred, gid) ? mode : mode & ~S_ISGID;
}

/**
 * Setting times (`setattr_prepare`, `notify_change`): both "now" (utimes(NULL)) needs the owner,
 * root or write access (EACCES); any explicit time, or "now" for one only, needs the owner or
 * root (EPERM).
 */
export function mayTouch(node: Owned, cred: Cred, bothNow: boolean): void {
  if (ownerOrRoot(node, cred)) return;
  if (!bothNow) throw eperm("only the owner sets explicit times");
  mayAccess(node, cred, W_OK, "setting the times to now");
}

/** Device nodes are made by root only (`vfs_mknod`, CAP_MKNOD). */
export function mayMknod(type: number, cred: Cred): void {
  if (cred.uid !== 0 && (type === 0o020000 || type === 0o060000))
    throw eperm("only root makes device nodes");
}

/**
 * Reading (`want` R_OK) or changing (W_OK) extended attribute `name` of `node`
 * (`xattr_permission`): security.* and system.* are left to the kernel's security modules;
 * trusted.* is root's alone (to others it is absent: ENODATA to read, EPERM to change); user.*
 * lives on regular files and directories only, and on a sticky directory only its owner changes
 * it; then the file's own bits decide. Root is not checked: through a mount the kernel applied
 * these rules to root before asking, and the filesystem's own tools act as root.
 */
export function mayXattr(node: Owned, name: string, cred: Cred, want: number): void {
  if (cred.uid === 0) return;
  const absent = () =>
    want & W_OK
      ? eperm(`${name}: not for this caller or this kind of file`)
      : new FsError("ENODATA", `no attribute ${name}`);
  if (name.startsWith("security.") || name.startsWith("system.")) return;
  if (name.startsWith("trusted.")) throw absent();
  if (name.startsWith("user.")) {
    if (!isReg(node.mode) && !isDir(node.mode)) throw absent();
    if (isDir(node.mode) && node.mode & S_ISVTX && want & W_OK && cred.uid !== node.uid)
      throw eperm(`${name}: the directory is sticky and not the caller's`);
  }
  mayAccess(node, cred, want, `attribute ${name}`);
}

/** Whether `cred` sees attribute `name` in a listing: trusted.* only root does (as ext4 lists). */
export const listsXattr = (name: string, cred: Cred): boolean =>
  cred.uid === 0 || !name.startsWith("trusted.");
