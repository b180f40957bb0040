// A filesystem as the adapter sees it: paths resolved to inode numbers through a cache of
// directory entries. The production volume is one view; every open snapshot is another.

import { LRUCache } from "lru-cache";
import { type Attr, isDir } from "../fs/attr.js";
import { type Cred, type FileSystem, ROOT, SUPERUSER } from "../fs/filesystem.js";
import { mayAccess, X_OK } from "../fs/permission.js";

const key = (parent: number, name: string) => `${parent}/${name}`;

/**
 * Entries of one directory of a read-only view that its first lookup there brings into the cache
 * (see `View.find`): well within the cache, so that listing one huge directory does not push
 * out every other.
 */
export const LIST_ENTRIES = 16384;

/** What `dentries` holds for a name known to be absent: no inode has number 0. */
const ABSENT = 0;
/** The inode a cached entry names, or undefined for ABSENT. */
const inodeOf = (cached: number) => (cached === ABSENT ? undefined : cached);

export class View {
  /**
   * Names looked up, to their inode or to ABSENT. A name is asked for again right after it was
   * found absent: the kernel looks a name up once more before it makes it with O_EXCL or renames
   * onto it, whatever it keeps.
   */
  private readonly dentries = new LRUCache<string, number>({ max: 1 << 16 });
  /**
   * Counts the changes of names (`named`, `forget`, `replace`): a lookup keeps what it found
   * only if none came while it searched, or it could keep a name as it was before the change.
   */
  private changes = 0;
  /**
   * Inodes that have had more than one name while mounted. libfuse 2 keeps one node per name,
   * so the kernel holds one inode per name of a hard-linked file; a change through one name
   * leaves what the others cached stale, so their attributes are never cached.
   */
  private readonly linked = new Set<number>();
  /** Directories of a read-only view listed into `dentries`, or being listed (see `find`). */
  private readonly listed = new LRUCache<number, Promise<void>>({ max: 4096 });

  constructor(
    public fs: FileSystem,
    /** Where this view is shown, for logs: "production" or the snapshot's name. */
    readonly label: string,
  ) {}

  get readOnly(): boolean {
    return this.fs.readOnly;
  }

  /**
   * The inode `name` names in directory `parent`, or undefined if none. In a read-only view
   * (nothing there ever changes) the first lookup in a directory lists it into the cache, as a
   * backup or a `find` goes on to look up its other names: each of them is then found without a
   * search of the directory's blocks. `stat` of 5,000 files of one directory in a snapshot just
   * taken, 16 at a time: 7,000-7,700 a second without, 7,400-8,600 with (two runs and four).
   */
  find(parent: number, name: string): Promise<number | undefined> {
    const k = key(parent, name);
    const hit = this.dentries.get(k);
    return hit === undefined ? this.search(parent, name, k) : Promise.resolve(inodeOf(hit));
  }

  /** `find` for a name `k` that the cache does not hold. */
  private async search(parent: number, name: string, k: string): Promise<number | undefined> {
    if (this.readOnly) {
      await this.list(parent);
      const listed = this.dentries.get(k);
      if (listed !== undefined) return inodeOf(listed);
    }
    const before = this.changes;
    const ino = (await this.fs.find(parent, name))?.ino;
    if (this.changes === before) this.dentries.set(k, ino ?? ABSENT);
    return ino;
  }

  /** Lists directory `dir` of a read-only view into the cache, once (see `find`). */
  private list(dir: number): Promise<void> {
    let listing = this.listed.get(dir);
    if (!listing) {
      // A listing that fails (not a directory, say) leaves the lookup to fail on its own.
      listing = this.listDirectory(dir).catch(() => undefined);
      this.listed.set(dir, listing);
    }
    return listing;
  }

  private async listDirectory(dir: number): Promise<void> {
    for (let cookie = 0n, n = 0; n < LIST_ENTRIES; ) {
      const page = await this.fs.readdir(dir, cookie, 1024);
      if (page.length === 0) return;
      for (const e of page) this.dentries.set(key(dir, e.name.toString()), e.ino);
      n += page.length;
      cookie = page[page.length - 1]!.cookie;
    }
  }

  /**
   * The inode at `parts` (path components below the view's root), found by `cred`, or undefined
   * if a name on the way does not exist: anyone but root needs search permission on every
   * directory it passes (EACCES), as the kernel's path walk checks with default_permissions;
   * root pays nothing for it.
   */
  async resolve(parts: readonly string[], cred: Cred = SUPERUSER): Promise<number | undefined> {
    let ino: number | undefined = ROOT;
    if (cred.uid === 0) {
      for (let i = 0; i < parts.length && ino !== undefined; i++) {
        const k = key(ino, parts[i]!);
        const hit = this.dentries.get(k);
        ino = hit === undefined ? await this.search(ino, parts[i]!, k) : inodeOf(hit);
      }
      return ino;
    }
    for (let i = 0; i < parts.length && ino !== undefined; i++) {
      const dir = await this.fs.getattr(ino);
      if (isDir(dir.mode)) mayAccess(dir, cred, X_OK, `search in ${parts[i]}'s directory`);
      ino = await this.find(ino, parts[i]!);
    }
    return ino;
  }

  /**
   * `resolve` for root from the cache alone: the inode, undefined when a name on the way is
   * known to be absent, or null when a name is not in the cache (`resolve` searches for it).
   */
  resolveNow(parts: readonly string[]): number | undefined | null {
    let ino = ROOT;
    for (const part of parts) {
      const hit = this.dentries.get(key(ino, part));
      if (hit === undefined) return null;
      if (hit === ABSENT) return undefined;
      ino = hit;
    }
    return ino;
  }

  /**
   * True when the kernel may keep the attributes `a` for a while: every change to them then
   * comes through the one kernel inode that caches them, and the kernel drops them itself on
   * each change it sends (a write, setattr, link, or a name made or removed in a directory).
   * That holds for everything in a snapshot (nothing there changes), for directories (one name
   * each), and for other files that have had only one name while mounted.
   */
  cacheable(a: Attr): boolean {
    if (this.readOnly || isDir(a.mode)) return true;
    if (a.nlink !== 1) this.linked.add(a.ino);
    return a.nlink === 1 && !this.linked.has(a.ino);
  }

  /**
   * True when the kernel may keep the file's cached data at an open (FOPEN_KEEP_CACHE) instead
   * of dropping it. Its pages stay right as long as every change to the data reaches the one
   * kernel inode that caches them: writes and truncations through the kernel update them (there
   * is no writeback cache), and what the daemon changes on its own (a restore, a revert) it
   * drops from the kernel at once, as the binding does for a node whose name came to stand for
   * another inode. That leaves hard links: libfuse 2 gives each name a kernel inode of its own,
   * so a write through one name leaves the pages of the others stale. Hence the rule is the one
   * for attributes: everything in a snapshot, and files that have had one name while mounted.
   */
  keepsData(a: Attr): boolean {
    return this.cacheable(a);
  }

  /** Inode `ino` is getting another name (see `cacheable`). */
  linking(ino: number): void {
    this.linked.add(ino);
  }

  /** A name was just made for `ino`. */
  named(parent: number, name: string, ino: number): void {
    this.changes++;
    this.dentries.set(key(parent, name), ino);
  }

  /** A name changed: it may no longer point where the cache says, or exist now. */
  forget(parent: number, name: string): void {
    this.changes++;
    this.dentries.delete(key(parent, name));
  }

  /** The volume was reverted: a new filesystem, and every cached name may be wrong. */
  replace(fs: FileSystem): void {
    this.changes++;
    this.fs = fs;
    this.dentries.clear();
    this.listed.clear();
  }
}
