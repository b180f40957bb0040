// A filesystem as the adapter sees it: paths resolved to inode numbers through a cache of
// directory entries. The production volume is one view; every open snapshot is another.

import { LRUCache } from "lru-cache";
import { type FileSystem, ROOT } from "../fs/filesystem.js";

const key = (parent: number, name: string) => `${parent}/${name}`;

export class View {
  private readonly dentries = new LRUCache<string, number>({ max: 1 << 16 });

  constructor(
    public fs: FileSystem,
    /** Where this view is shown, for logs: "production" or the snapshot's name. */
    readonly label: string,
  ) {}

  get readOnly(): boolean {
    return this.fs.readOnly;
  }

  async lookup(parent: number, name: string): Promise<number> {
    const k = key(parent, name);
    const hit = this.dentries.get(k);
    if (hit !== undefined) return hit;
    const { ino } = await this.fs.lookup(parent, name);
    this.dentries.set(k, ino);
    return ino;
  }

  /** The inode at `parts` (path components below the view's root). */
  async resolve(parts: readonly string[]): Promise<number> {
    let ino = ROOT;
    for (const p of parts) ino = await this.lookup(ino, p);
    return ino;
  }

  /** A name changed: it may no longer point where the cache says. */
  forget(parent: number, name: string): void {
    this.dentries.delete(key(parent, name));
  }

  /** The volume was reverted: a new filesystem, and every cached name may be wrong. */
  replace(fs: FileSystem): void {
    this.fs = fs;
    this.dentries.clear();
  }
}
