// Restores a file or a tree from a snapshot into production: built under a hidden temporary name
// in the destination's directory, then renamed into place in one step; what it replaces is first
// kept in a snapshot. It never leaves a half-restored destination, and never loses a version.

import { randomUUID } from "node:crypto";
import { eexist, einval, enoent, erofs, FsError, isFsError } from "../errors.js";
import { type Attr, isDir, isReg } from "../fs/attr.js";
import { type FileKind, fileKind } from "../fs/diff.js";
import type { FileSystem, RenameFlags } from "../fs/filesystem.js";
import { clearLeftovers, leftoverCopies, PendingRestores } from "./restore-pending.js";
import type { Service } from "./service.js";
import {
  type CopyCounts,
  entries,
  measure,
  removeTree,
  type Target,
  TreeCopy,
} from "./tree-copy.js";
import {
  holder,
  lookupPath,
  pathParts,
  sameData,
  sameVersion,
  snapshotFs,
  type VersionHolder,
} from "./versions.js";

export interface RestoreRequest {
  /** Below the volume's root, in the snapshot. */
  path: string;
  /** The snapshot: `@GMT` name, user-given name or id. */
  from: string;
  /** Below the volume's root, in production; `path` when absent. */
  to?: string;
  /** Replace a destination that exists and differs (kept in a snapshot first). */
  force: boolean;
}

export interface RestoreResult extends CopyCounts {
  from: VersionHolder;
  path: string;
  to: string;
  type: FileKind;
  /** The destination already held this version (the whole tree): nothing was changed. */
  unchanged: boolean;
  /** The snapshot that keeps what the restore replaced; null when it replaced nothing. */
  keptIn: VersionHolder | null;
}

export type Progress = (done: number, total: number) => void;

/** The hidden name a restore is built under, in the destination's directory. */
export const TEMP_PREFIX = ".shadowfs-restore-";
/** At most one progress notification this often. */
const PROGRESS_MS = 200;

/** Production's filesystem as a copy's target: each change through the service's gate. */
function production(s: Service): Target {
  const fs = s.fs;
  const check = () => {
    if (s.fs !== fs) throw new FsError("EBUSY", "production was reverted during the restore");
  };
  return {
    fs,
    change: (fn) =>
      s.gate.withShared(async () => {
        check();
        return fn(fs);
      }),
    forget: (dir, name) => s.mount?.forget(dir, name),
    changed: (ino) => s.mount?.changed(ino),
  };
}

/**
 * Whether the tree at `y` in production is the tree at `x` in snapshot `id`: the same version
 * (see versions.ts) of everything in it, under the same names.
 */
async function sameTree(
  s: Service,
  id: number,
  snap: FileSystem,
  x: Attr,
  prod: FileSystem,
  y: Attr,
): Promise<boolean> {
  if (!sameVersion(x, y)) return false;
  if (isReg(x.mode)) {
    const pair = { older: { fs: snap, id }, newer: { fs: prod, id: undefined } };
    return (await sameData(s, [pair], x.ino, x.size))[0]!;
  }
  if (!isDir(x.mode)) return true;
  const names = new Map<string, number>();
  for await (const e of entries(prod, y.ino)) names.set(e.name.toString("latin1"), e.ino);
  let n = 0;
  for await (const e of entries(snap, x.ino)) {
    const other = names.get(e.name.toString("latin1"));
    if (other === undefined) return false;
    n++;
    const [a, b] = await Promise.all([snap.getattr(e.ino), prod.getattr(other)]);
    if (!(await sameTree(s, id, snap, a, prod, b))) return false;
  }
  return n === names.size;
}

const show = (parts: readonly string[]) => `/${parts.join("/")}`;

const pendingOf = new WeakMap<Service, PendingRestores>();
function pendingFor(s: Service): PendingRestores {
  const p = pendingOf.get(s) ?? new PendingRestores(s.store);
  pendingOf.set(s, p);
  return p;
}

/**
 * Removes the temporary copies that restores cut short by a crash left in production (each was
 * recorded before it was made); returns how many there were. Run before production is mounted.
 */
export async function removeRestoreLeftovers(s: Service): Promise<number> {
  const left = await leftoverCopies(s.store);
  const to = production(s);
  let removed = 0;
  for (const { dir, temp } of left) {
    if (!temp.startsWith(TEMP_PREFIX)) continue;
    try {
      await removeTree(to, dir, temp);
      removed++;
    } catch (e) {
      // Never made, or its directory is gone: nothing to remove.
      if (!isFsError(e, "ENOENT") && !isFsError(e, "ENOTDIR")) throw e;
    }
  }
  if (left.length > 0) await to.change((fs) => fs.fsync());
  await clearLeftovers(s.store);
  return removed;
}

/**
 * Restores `req.path` of snapshot `req.from` to `req.to` in production. A destination that exists
 * and differs is refused (EEXIST) unless `req.force`; then it is kept in a new snapshot
 * (`before-restore-…`, taken as `revert` takes its own) and swapped out in the same hold.
 */
export async function restore(
  s: Service,
  req: RestoreRequest,
  progress?: Progress,
): Promise<RestoreResult> {
  const parts = pathParts(req.path);
  const toParts = pathParts(req.to ?? req.path);
  if (parts.length === 0)
    throw einval("restoring the volume's root is a revert: use `shadowfs snapshot revert`");
  if (toParts.length === 0) throw einval("the destination cannot be the volume's root");
  if (s.volume.readOnly) throw erofs(s.store);
  const info = s.find(req.from);
  const from = holder(info);
  const label = `${from.gmt}${from.alias ? ` (${from.alias})` : ""}`;
  const srcFs = await snapshotFs(s, info);
  const src = await lookupPath(srcFs, parts);
  if (!src) throw enoent(`${show(parts)} does not exist in snapshot ${label}`);
  const to = production(s);
  const name = toParts.at(-1)!;
  const dir = await lookupPath(to.fs, toParts.slice(0, -1));
  if (!dir || !isDir(dir.mode))
    throw enoent(`${show(toParts.slice(0, -1))} is not a directory in production`);
  const result = (counts: CopyCounts, unchanged: boolean, keptIn: VersionHolder | null) => ({
    from,
    path: show(parts),
    to: show(toParts),
    type: fileKind(src.mode),
    unchanged,
    keptIn,
    ...counts,
  });
  const existing = await lookupPath(to.fs, toParts);
  if (existing) {
    if (await sameTree(s, info.id, srcFs, src, to.fs, existing))
      return result(new TreeCopy(srcFs, to).counts, true, null);
    if (!req.force)
      throw eexist(
        `${show(toParts)} exists and differs from its version in ${label}: ` +
          "--force replaces it, keeping it in a snapshot first",
      );
  }

  const total = !progress ? 0 : isDir(src.mode) ? (await measure(srcFs, src)).bytes : src.size;
  let shown = 0;
  const tick = (done: number) => {
    if (!progress || Date.now() - shown < PROGRESS_MS) return;
    shown = Date.now();
    progress(done, total);
  };
  const temp = `${TEMP_PREFIX}${randomUUID().slice(0, 8)}`;
  const copy = new TreeCopy(srcFs, to, tick);
  const pending = pendingFor(s);
  // Recorded before it is made: a crash from here on leaves a copy the next mount removes.
  await pending.add({ dir: dir.ino, temp });
  let placed: Placed;
  try {
    await copy.copy(src, dir.ino, temp);
    placed = await place(s, to, { dir: dir.ino, temp, name, toParts }, req.force);
  } catch (e) {
    const removed = await removeTree(to, dir.ino, temp).then(
      () => true,
      () => false,
    );
    // Blocks freed are handed out again only after a commit.
    await to.change((fs) => fs.fsync()).catch(() => undefined);
    if (removed) await pending.done(temp).catch(() => undefined);
    throw e;
  }
  if (placed.swapped) {
    // The replaced version, now under the temporary name, is kept in the snapshot.
    await removeTree(to, dir.ino, temp).catch((e: unknown) => {
      const why = e instanceof Error ? e.message : String(e);
      throw new FsError(
        "EIO",
        `restored ${show(toParts)}, but the version it replaced (kept in ${placed.keptIn?.gmt}) ` +
          `is left under ${show([...toParts.slice(0, -1), temp])}: ${why}`,
      );
    });
  }
  // Durable when the answer comes, as a snapshot is (and blocks freed are free again).
  await to.change((fs) => fs.fsync());
  await pending.done(temp);
  // The kernel has dropped what it kept of every name and inode changed before the answer.
  await s.mount?.invalidated();
  progress?.(total, total);
  return result(copy.counts, false, placed.keptIn);
}

interface Placed {
  keptIn: VersionHolder | null;
  /** The replaced version is now under the temporary name. */
  swapped: boolean;
}

/**
 * Renames the restored `temp` to `name`. If `name` exists (and `force` allows it), a snapshot is
 * taken first, and the two are swapped while that snapshot's hold keeps every other change out:
 * nothing can change the replaced version between the snapshot and the swap.
 */
async function place(
  s: Service,
  to: Target,
  at: { dir: number; temp: string; name: string; toParts: string[] },
  force: boolean,
): Promise<Placed> {
  const { dir, temp, name } = at;
  // In the same step as the rename: no FUSE operation may find either name as it was.
  const renamed = async (fs: FileSystem, flags: RenameFlags) => {
    await fs.rename(dir, temp, dir, name, flags);
    to.forget(dir, name);
    to.forget(dir, temp);
  };
  try {
    await to.change((fs) => renamed(fs, { noReplace: true }));
    return { keptIn: null, swapped: false };
  } catch (e) {
    if (!isFsError(e, "EEXIST")) throw e;
    if (!force)
      throw eexist(
        `${show(at.toParts)} exists: --force replaces it, keeping it in a snapshot first`,
      );
  }
  const provider = s.provider();
  try {
    await provider.hold();
    const made = await provider.commit({
      name: `before-restore-${new Date().toISOString()}`,
      setId: randomUUID(),
    });
    const keptIn = holder(s.find(String(made.id)));
    if (s.fs !== to.fs) throw new FsError("EBUSY", "production was reverted during the restore");
    try {
      await renamed(to.fs, { exchange: true });
      return { keptIn, swapped: true };
    } catch (e) {
      // Gone since: nothing is replaced after all.
      if (!isFsError(e, "ENOENT")) throw e;
      await renamed(to.fs, { noReplace: true });
      return { keptIn, swapped: false };
    }
  } finally {
    provider.release();
  }
}
