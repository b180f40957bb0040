// What production's kernel cache is told when the daemon changes production behind the FUSE
// operations' back (a restore, a revert, a snapshot taken or deleted). It never waits inside the gate.
//
// The kernel keeps production's names, attributes and file data for long (see daemon.ts): all
// that changes through the kernel, it keeps right itself. What the daemon changes on its own,
// through the filesystem, is dropped from the kernel by an invalidation (the binding sends it
// to every kernel node of that inode or directory, from a thread of its own). Invalidations are
// only queued here; `invalidated` resolves once the kernel has them, and must never be awaited
// inside the gate: a FUSE request waiting at the gate may hold the directory lock an
// invalidation needs.

import type { SnapshotInfo } from "../cow/index.js";
import { ROOT } from "../fs/context.js";
import type { FileSystem, Name } from "../fs/filesystem.js";
import { type FuseMount, gmtName, SNAPDIR, SNAPDIR_INO, type View } from "../mount/index.js";
import { entries } from "./tree-copy.js";

/** The part of production's mount that drops what the kernel keeps. */
type KernelMount = Pick<
  FuseMount,
  "invalidateInode" | "invalidateEntry" | "invalidateAll" | "invalidated"
>;

/** The names a snapshot has under `.snapshots`. */
const namesOf = (s: SnapshotInfo) => [gmtName(s.createdAt), ...(s.name ? [s.name] : [])];

export class KernelCache {
  /** The names `.snapshots` showed when the kernel was last told of them. */
  private shown: Set<string>;

  constructor(
    /** Production's mount; undefined before it is mounted (nothing is cached then). */
    private readonly mount: () => KernelMount | undefined,
    private readonly root: View,
    private readonly snapshots: () => SnapshotInfo[],
  ) {
    this.shown = this.names();
  }

  private names(): Set<string> {
    return new Set(this.snapshots().flatMap(namesOf));
  }

  /** Inode `ino` of production changed: its attributes, data or link count. */
  changed(ino: number): void {
    this.mount()?.invalidateInode(ino);
  }

  /** Name `name` of directory `dir` was made, removed or replaced. */
  named(dir: number, name: Name): void {
    this.root.forget(dir, typeof name === "string" ? name : Buffer.from(name).toString());
    this.mount()?.invalidateEntry(dir, name);
  }

  /** A snapshot was taken or deleted: `.snapshots` gains or loses names, and its times change. */
  snapshotsChanged(): void {
    const now = this.names();
    const m = this.mount();
    for (const n of now) if (!this.shown.has(n)) m?.invalidateEntry(SNAPDIR_INO, n);
    for (const n of this.shown) if (!now.has(n)) m?.invalidateEntry(SNAPDIR_INO, n);
    m?.invalidateInode(SNAPDIR_INO);
    this.shown = now;
  }

  /**
   * Production was reverted to `next`: every name and inode the kernel holds may be wrong. The
   * kernel drops all it holds; names it knows as absent are kept by it, and are dropped only
   * where they may now exist: below directories it holds, which go with their own names, and
   * in the root, whose every name in `next` is dropped.
   */
  async reverted(next: FileSystem): Promise<void> {
    const m = this.mount();
    if (!m) return;
    m.invalidateAll();
    m.invalidateEntry(ROOT, SNAPDIR);
    for await (const e of entries(next, ROOT)) m.invalidateEntry(ROOT, e.name);
    this.snapshotsChanged();
  }

  /** Resolves once the kernel has every invalidation queued before. Never inside the gate. */
  invalidated(): Promise<void> {
    return this.mount()?.invalidated() ?? Promise.resolve();
  }
}
