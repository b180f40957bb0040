// The snapshots a mount shows under `.snapshots`: one directory per snapshot, named by its
// `@GMT-…` creation time (a user-given name resolves too), each served read-only by the
// filesystem code on the snapshot's device, opened on first use and kept in an LRU cache.

import { LRUCache } from "lru-cache";
import type { BlockDevice, SnapshotInfo } from "../cow/index.js";
import { enoent } from "../errors.js";
import { FileSystem, type Seed } from "../fs/filesystem.js";
import { gmtName } from "./names.js";
import { View } from "./view.js";

/** What the views need from the store (a `CowVolume` is one). */
export interface SnapshotSource {
  snapshots(): SnapshotInfo[];
  snapshotDevice(id: number): BlockDevice;
  /** Where snapshot `id` is among them; throws if it is gone. */
  position(id: number): number;
}

export class SnapshotViews {
  private readonly open = new LRUCache<number, Promise<View>>({
    max: 16,
    dispose: (_, id) => this.ready.delete(id),
  });
  /** The views of `open` that have opened: what `opened` answers without waiting. */
  private readonly ready = new Map<number, View>();
  /**
   * The metadata in production's memory that the newest snapshot holds, which its view looks up
   * before it reads the snapshot (until the next snapshot).
   */
  private seed: { id: number; seed: Seed } | undefined;
  /**
   * Every snapshot by directory name (`@GMT-…` and user-given) as of the last time a name was
   * not found: every request below `.snapshots` names one, and making the names of every
   * snapshot each time would cost in proportion to how many there are.
   */
  private byName = new Map<string, SnapshotInfo>();

  constructor(
    private readonly source: SnapshotSource,
    private readonly cacheBytes?: number,
  ) {}

  /** The `@GMT-…` names of every snapshot, oldest first. */
  names(): string[] {
    return this.source.snapshots().map((s) => gmtName(s.createdAt));
  }

  /** The snapshot a directory name (`@GMT-…` or a user-given name) refers to. */
  find(name: string): SnapshotInfo | undefined {
    const known = this.byName.get(name);
    if (known && this.exists(known.id)) return known;
    this.byName = new Map();
    const add = (key: string, s: SnapshotInfo) => this.byName.has(key) || this.byName.set(key, s);
    for (const s of this.source.snapshots()) {
      add(gmtName(s.createdAt), s);
      if (s.name !== undefined) add(s.name, s);
    }
    return this.byName.get(name);
  }

  private exists(id: number): boolean {
    try {
      this.source.position(id);
      return true;
    } catch {
      return false;
    }
  }

  /** The view of the snapshot called `name`, opened read-only on first use. */
  view(name: string): Promise<View> {
    const info = this.find(name);
    return info ? this.viewOf(info) : Promise.reject(enoent(`no snapshot ${name}`));
  }

  /**
   * Snapshot `id` was just taken of a filesystem that has `seed` in memory (`snapshotWith`):
   * its view looks blocks up there before it reads them, sparing a backup that reads the
   * snapshot at once the metadata reads production has already made. Only the newest
   * snapshot's is kept.
   */
  taken(id: number, seed: Seed | undefined): void {
    this.seed?.seed.drop();
    this.seed = seed && { id, seed };
  }

  /** The view of the snapshot called `name` if it is open already; it never waits. */
  opened(name: string): View | undefined {
    const info = this.find(name);
    return info && this.ready.get(info.id);
  }

  viewOf(info: SnapshotInfo): Promise<View> {
    let view = this.open.get(info.id);
    if (!view) {
      const seed = this.seed?.id === info.id ? this.seed.seed : undefined;
      view = FileSystem.open(this.source.snapshotDevice(info.id), {
        cacheBytes: this.cacheBytes,
        seed,
      }).then((fs) => new View(fs, gmtName(info.createdAt)));
      const opening = view;
      view.then(
        (v) => this.open.peek(info.id) === opening && this.ready.set(info.id, v),
        () => this.open.delete(info.id),
      );
      this.open.set(info.id, view);
    }
    return view;
  }

  /**
   * A snapshot was deleted or the volume reverted: views of snapshots that are gone close. After
   * a revert, production's memory is of the filesystem before it: the seed is let go.
   */
  refresh(reverted = false): void {
    const live = new Set(this.source.snapshots().map((s) => s.id));
    for (const id of [...this.open.keys()]) if (!live.has(id)) this.open.delete(id);
    if (this.seed && (reverted || !live.has(this.seed.id))) {
      this.seed.seed.drop();
      this.seed = undefined;
    }
  }
}
