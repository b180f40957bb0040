// What every FUSE operation shares: paths resolved to a view's inode, open file handles, the gate
// changes pass, and the one way results and errors reach the binding. It holds no operation.
//
// The rules every op in ops-*.ts follows, stated once:
// - It reads its caller first, synchronously (`this.o.caller()`: the binding's caller is valid
//   only until the op awaits), and acts in the caller's name: the filesystem checks its rights,
//   and paths are walked with search permission, so a mount without default_permissions is as
//   safe as one with it.
// - It answers through `call` or `count` (or its own `.then` with `toErrno` for a callback with
//   several values): every error becomes -errno in one place; nothing is thrown into the binding.
// - Every change passes `change` (the gate, which a snapshot commit closes); reads never do.
// - It is a function with `this: OpsCore`, bound once by `FuseOps.operations()`: no closure or
//   lookup is added per request between the binding and the op.

import { constants } from "node:fs";
import type { Gate } from "../cow/index.js";
import { type ErrnoCode, enoent, erofs, FsError } from "../errors.js";
import type { Attr } from "../fs/attr.js";
import type { Cred } from "../fs/cred.js";
import { type FileSystem, ROOT, type SetAttr } from "../fs/filesystem.js";
import type { Time } from "../fs/inode.js";
import { mayAccess, X_OK } from "../fs/permission.js";
import { type ErrorLog, negErrno, toErrno } from "./errno.js";
import { type FuseStat, toStat } from "./fuse-stat.js";
import type { SnapshotViews } from "./snapshots.js";
import type { View } from "./view.js";

/** The hidden directory of snapshots at the root of the production volume. */
export const SNAPDIR = ".snapshots";
/** Its inode number: above every number the filesystem hands out. */
export const SNAPDIR_INO = 0xffffffff;

export type Done<T> = (err: number, value?: T) => void;
/**
 * The file handle of a new file, its attributes (so that libfuse need not ask for them), and
 * whether the kernel keeps its cached data (`View.keepsData`).
 */
export type Created = (err: number, fd?: number, stat?: FuseStat, keepCache?: boolean) => void;
export type Count = (result: number) => void;
/** A read's answer: bytes read, and maybe the part of them the binding reads from a host file. */
export type ReadDone = (
  result: number,
  lent?: { fd: number; position: number; at: number; length: number; done: () => void },
) => void;

const split = (path: string) => (path === "/" ? [] : path.slice(1).split("/"));

/** A path resolved: the `.snapshots` directory itself, or an inode of one view. */
export type Place = { view: View; ino: number } | { view: undefined; ino: typeof SNAPDIR_INO };

/** An open file: the view it was opened in and its inode. */
export interface Handle {
  view: View;
  ino: number;
}

export interface OpsOptions {
  /** The filesystem at the root of the mount. */
  root: View;
  /** Shown under `/.snapshots` when given. */
  snapshots?: SnapshotViews;
  /** Changes enter it shared; a snapshot commit takes it exclusive. */
  gate: Gate;
  log: ErrorLog;
  /**
   * Who made the request being served (`requestCaller` of the binding): read synchronously at
   * the start of every op. New files belong to it, and its rights are checked.
   */
  caller: () => Cred;
  /** The time `.snapshots` shows (the newest snapshot's creation, say). */
  snapdirTime?: () => Time;
  /**
   * Seconds the kernel may keep attributes that cannot change behind its back (see
   * `View.cacheable`); the others keep the mount's attr_timeout. Absent: all keep that.
   */
  attrTimeout?: number;
}

export class OpsCore {
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;

  constructor(readonly o: OpsOptions) {}

  /** Open files, per view: a revert refuses while production has any. */
  openCount(view: View): number {
    let n = 0;
    for (const h of this.handles.values()) if (h.view === view) n++;
    return n;
  }

  // ------------------------------------------------------------------ resolution

  private isSnapPath(parts: readonly string[]): boolean {
    return this.o.snapshots !== undefined && parts[0] === SNAPDIR;
  }

  /**
   * Where path components `parts` lead, walked by `who` (search permission on every directory
   * passed), or undefined if a name on the way does not exist.
   */
  private async walk(parts: readonly string[], who: Cred): Promise<Place | undefined> {
    if (this.isSnapPath(parts)) {
      if (who.uid !== 0) mayAccess(await this.o.root.fs.getattr(ROOT), who, X_OK, "search in /");
      if (parts.length === 1) return { view: undefined, ino: SNAPDIR_INO };
      const views = this.o.snapshots!;
      const view = views.opened(parts[1]!) ?? (await views.view(parts[1]!));
      const ino = await view.resolve(parts.slice(2), who);
      return ino === undefined ? undefined : { view, ino };
    }
    const ino = await this.o.root.resolve(parts, who);
    return ino === undefined ? undefined : { view: this.o.root, ino };
  }

  /**
   * `walk` from the views' caches alone, for root (anyone else's walk checks search rights on
   * the way): undefined if nothing is there, null when that takes a search or a view to open.
   */
  private cached(parts: readonly string[], who: Cred): Place | undefined | null {
    if (who.uid !== 0) return null;
    if (!this.isSnapPath(parts)) {
      const ino = this.o.root.resolveNow(parts);
      return typeof ino === "number" ? { view: this.o.root, ino } : ino;
    }
    if (parts.length === 1) return { view: undefined, ino: SNAPDIR_INO };
    const view = this.o.snapshots!.opened(parts[1]!);
    const ino = view ? view.resolveNow(parts.slice(2)) : null;
    return typeof ino === "number" ? { view: view!, ino } : ino;
  }

  /** Where `parts` lead: from the caches when they know (`cached`), else walked (`walk`). */
  private place(parts: readonly string[], who: Cred): Promise<Place | undefined> {
    const known = this.cached(parts, who);
    return known === null ? this.walk(parts, who) : Promise.resolve(known);
  }

  /** Where `path` leads, or undefined if nothing is there (see `place`). */
  find(path: string, who: Cred): Promise<Place | undefined> {
    return this.place(split(path), who);
  }

  /** Where `path` leads (see `place`); ENOENT if nothing is there. */
  async locate(path: string, who: Cred): Promise<Place> {
    const p = await this.find(path, who);
    if (!p) throw enoent(path);
    return p;
  }

  /** Like `locate`, for an op that needs an inode: `.snapshots` itself is EROFS. */
  node(path: string, who: Cred): Promise<{ view: View; ino: number }> {
    return this.nodeAt(split(path), path, who);
  }

  private async nodeAt(
    parts: readonly string[],
    path: string,
    who: Cred,
  ): Promise<{ view: View; ino: number }> {
    const p = await this.place(parts, who);
    if (!p) throw enoent(path);
    if (!p.view) throw erofs(SNAPDIR);
    return p;
  }

  /** The directory a new or removed name lives in; `.snapshots` and its entries are EROFS. */
  async parentOf(path: string, who: Cred): Promise<{ view: View; dir: number; name: string }> {
    const parts = split(path);
    const name = parts.pop();
    if (name === undefined) throw new FsError("EBUSY", "the root cannot change its name");
    if (this.isSnapPath(parts) && parts.length < 2) throw erofs(SNAPDIR);
    if (this.isSnapPath([name]) && parts.length === 0) throw erofs(SNAPDIR);
    const p = await this.nodeAt(parts, path, who);
    return { view: p.view, dir: p.ino, name };
  }

  // ------------------------------------------------------------------ open files

  handle(fd: number): Handle {
    const h = this.handles.get(fd);
    if (!h) throw new FsError("EBADF", `no open file ${fd}`);
    return h;
  }

  /** A new handle for `ino` opened in `view`. */
  opened(view: View, ino: number): number {
    const fd = this.nextHandle++;
    this.handles.set(fd, { view, ino });
    return fd;
  }

  /** Handle `fd` is released: it is gone, and what it was is returned. */
  closed(fd: number): Handle {
    const h = this.handle(fd);
    this.handles.delete(fd);
    return h;
  }

  // ------------------------------------------------------------------ answers

  /** Runs `fn` as a change: past the gate, which a snapshot commit closes. */
  change<T>(fn: () => Promise<T>): Promise<T> {
    return this.o.gate.withShared(fn);
  }

  /** Answers `cb` with what `fn` resolves to, or with -errno. */
  call<T>(op: string, path: string, cb: Done<T>, fn: () => Promise<T>): void {
    fn().then(
      (v) => cb(0, v),
      (e) => cb(toErrno(e, op, path, this.o.log)),
    );
  }

  /**
   * As `call`, but `fn` resolving to undefined answers `absent` (ENOENT, ENODATA): a name or
   * an attribute that is not there is a common answer, and no error is thrown for it.
   */
  callIfAny<T>(
    op: string,
    path: string,
    cb: Done<T>,
    absent: ErrnoCode,
    fn: () => Promise<T | undefined>,
  ): void {
    fn().then(
      (v) => (v === undefined ? cb(negErrno(absent)) : cb(0, v)),
      (e) => cb(toErrno(e, op, path, this.o.log)),
    );
  }

  /** Answers `cb` with the count `fn` resolves to (bytes), or with -errno. */
  count(op: string, path: string, cb: Count, fn: () => Promise<number>): void {
    fn().then(cb, (e) => cb(toErrno(e, op, path, this.o.log)));
  }

  /** -errno for `e`, logged as `toErrno` does: for an op that answers on its own. */
  errno(e: unknown, op: string, path: string): number {
    return toErrno(e, op, path, this.o.log);
  }

  // ------------------------------------------------------------------ attributes

  /**
   * `.snapshots`, kept by the kernel as long as any directory: with default_permissions the
   * kernel checks it on every path it walks below, and an uncached one cost a round trip per
   * system call in a snapshot (two getattrs for each `stat` there instead of one). Its times
   * (the newest snapshot's) may then lag a new snapshot by that long.
   */
  snapdirStat(): FuseStat {
    const t = this.o.snapdirTime?.() ?? { sec: 0, nsec: 0 };
    return {
      attrTimeout: this.o.attrTimeout,
      ino: SNAPDIR_INO,
      mode: constants.S_IFDIR | 0o555,
      nlink: 2,
      uid: 0,
      gid: 0,
      rdev: 0,
      size: 0,
      blocks: 0,
      blksize: 4096,
      dev: 0,
      atime: t,
      mtime: t,
      ctime: t,
    };
  }

  /**
   * `a` for the binding, with how long the kernel may keep it (see `View.cacheable`). The root
   * is kept too: with default_permissions the kernel checks it on every path it walks, so an
   * uncached root cost one more round trip per system call (at queue depth 1, stat of 5,000
   * files took 0.88-1.06 s instead of 0.65-0.77). Once the daemon is gone, a `stat` of the mount
   * point alone may still answer from the cache until the timeout; everything else fails with
   * ENOTCONN at once.
   */
  stat(view: View, a: Attr): FuseStat {
    const stat = toStat(a);
    if (this.o.attrTimeout !== undefined && view.cacheable(a))
      stat.attrTimeout = this.o.attrTimeout;
    return stat;
  }

  /**
   * A getattr's answer for `path` when the caches hold it (`cached`, `FileSystem.attrNow`): its
   * stat, or -ENOENT; undefined when it takes a wait, or throws (the answer that waits says why).
   */
  statNow(path: string, who: Cred): FuseStat | number | undefined {
    try {
      const p = this.cached(split(path), who);
      if (p === null) return undefined;
      if (p === undefined) return negErrno("ENOENT");
      if (!p.view) return this.snapdirStat();
      const a = p.view.fs.attrNow(p.ino);
      return a && this.stat(p.view, a);
    } catch {
      return undefined;
    }
  }

  // Changes answer with the attributes they leave: libfuse asks for them right after.

  /** A setattr of `path` (or of open file `fd`), answered with the attributes it leaves. */
  setattr(path: string, cb: Done<FuseStat>, set: SetAttr, fd?: number): void {
    const who = this.o.caller();
    this.call("setattr", path, cb, async () => {
      const p = fd === undefined ? await this.node(path, who) : this.handle(fd);
      return this.stat(p.view, await this.change(() => p.view.fs.setattr(p.ino, set, who)));
    });
  }

  /** Makes a new name in the directory of `path`, in the name of `who`. */
  make(
    op: string,
    path: string,
    cb: Done<FuseStat>,
    make: (fs: FileSystem, dir: number, name: string, who: Cred) => Promise<Attr>,
  ): void {
    const who = this.o.caller();
    this.call(op, path, cb, async () => {
      const { view, dir, name } = await this.parentOf(path, who);
      const made = await this.change(async () => {
        const a = await make(view.fs, dir, name, who);
        view.named(dir, name, a.ino);
        return a;
      });
      return this.stat(view, made);
    });
  }
}
