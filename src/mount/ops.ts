// The FUSE operations: fuse-native's path-based calls mapped onto the filesystem's inode API.
// Paths resolve through the views' entry caches; every error becomes -errno in one place and
// nothing is thrown into the binding. Changes pass the gate, which a snapshot commit closes.
// Every op reads its caller first, synchronously (the binding's `caller` is only valid until the
// op awaits), and acts in the caller's name: the filesystem checks its rights, and paths are
// walked with search permission, so that a mount without default_permissions is as safe.

import { constants } from "node:fs";
import type { Gate } from "../cow/index.js";
import { erofs, FsError } from "../errors.js";
import { type Attr, isDir } from "../fs/attr.js";
import type { Cred } from "../fs/cred.js";
import { type FileSystem, type Lender, ROOT, type SetAttr } from "../fs/filesystem.js";
import type { Time } from "../fs/inode.js";
import { mayAccess, R_OK, X_OK } from "../fs/permission.js";
import { type ErrorLog, toErrno } from "./errno.js";
import type { SnapshotViews } from "./snapshots.js";
import type { View } from "./view.js";

/** The hidden directory of snapshots at the root of the production volume. */
export const SNAPDIR = ".snapshots";
/** Its inode number: above every number the filesystem hands out. */
export const SNAPDIR_INO = 0xffffffff;

/** A time as the binding carries it: nanoseconds since the epoch, or UTIME_NOW / UTIME_OMIT. */
export type FuseTime = bigint | "now" | "omit";

export interface FuseStat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  dev: number;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
  /** Seconds the kernel may keep these attributes; absent: the mount's attr_timeout. */
  attrTimeout?: number;
}

type Done<T> = (err: number, value?: T) => void;
/** The file handle of a new file, and its attributes (so that libfuse need not ask for them). */
type Created = (err: number, fd?: number, stat?: FuseStat) => void;
type Count = (result: number) => void;
/** A read's answer: bytes read, and maybe the part of them the binding reads from a host file. */
type ReadDone = (
  result: number,
  lent?: { fd: number; position: number; at: number; length: number; done: () => void },
) => void;

const NS = 1_000_000_000n;
const toNs = (t: Time) => BigInt(t.sec) * NS + BigInt(t.nsec);

export function fromNs(ns: bigint): Time {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

const fromFuseTime = (t: FuseTime): Time | "now" | undefined =>
  t === "omit" ? undefined : t === "now" ? "now" : fromNs(t);

export function toStat(a: Attr): FuseStat {
  return {
    ino: a.ino,
    mode: a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    rdev: a.rdev,
    size: a.size,
    blocks: a.blocks,
    blksize: a.blksize,
    dev: 0,
    atime: toNs(a.atime),
    mtime: toNs(a.mtime),
    ctime: toNs(a.ctime),
  };
}

const split = (path: string) => (path === "/" ? [] : path.slice(1).split("/"));

/** A path resolved: the `.snapshots` directory itself, or an inode of one view. */
type Place = { view: View; ino: number } | { view: undefined; ino: typeof SNAPDIR_INO };

interface Handle {
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

const UNCHANGED_ID = 0xffffffff;
const O_ACCMODE = 3;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

export class FuseOps {
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;

  constructor(private readonly o: OpsOptions) {}

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

  /** Where `path` leads, walked by `who` (search permission on every directory passed). */
  private async locate(path: string, who: Cred): Promise<Place> {
    const parts = split(path);
    if (this.isSnapPath(parts)) {
      if (who.uid !== 0) mayAccess(await this.o.root.fs.getattr(ROOT), who, X_OK, "search in /");
      if (parts.length === 1) return { view: undefined, ino: SNAPDIR_INO };
      const view = await this.o.snapshots!.view(parts[1]!);
      return { view, ino: await view.resolve(parts.slice(2), who) };
    }
    return { view: this.o.root, ino: await this.o.root.resolve(parts, who) };
  }

  private async node(path: string, who: Cred): Promise<{ view: View; ino: number }> {
    const p = await this.locate(path, who);
    if (!p.view) throw erofs(SNAPDIR);
    return p;
  }

  /** The directory a new or removed name lives in; `.snapshots` and its entries are EROFS. */
  private async parentOf(
    path: string,
    who: Cred,
  ): Promise<{ view: View; dir: number; name: string }> {
    const parts = split(path);
    const name = parts.pop();
    if (name === undefined) throw new FsError("EBUSY", "the root cannot change its name");
    if (this.isSnapPath(parts) && parts.length < 2) throw erofs(SNAPDIR);
    if (this.isSnapPath([name]) && parts.length === 0) throw erofs(SNAPDIR);
    const p = await this.node(`/${parts.join("/")}`, who);
    return { view: p.view, dir: p.ino, name };
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd);
    if (!h) throw new FsError("EBADF", `no open file ${fd}`);
    return h;
  }

  private change<T>(fn: () => Promise<T>): Promise<T> {
    return this.o.gate.withShared(fn);
  }

  private call<T>(op: string, path: string, cb: Done<T>, fn: () => Promise<T>): void {
    fn().then(
      (v) => cb(0, v),
      (e) => cb(toErrno(e, op, path, this.o.log)),
    );
  }

  private count(op: string, path: string, cb: Count, fn: () => Promise<number>): void {
    fn().then(cb, (e) => cb(toErrno(e, op, path, this.o.log)));
  }

  /**
   * `.snapshots`, kept by the kernel as long as any directory: with default_permissions the
   * kernel checks it on every path it walks below, and an uncached one cost a round trip per
   * system call in a snapshot (two getattrs for each `stat` there instead of one). Its times
   * (the newest snapshot's) may then lag a new snapshot by that long.
   */
  private snapdirStat(): FuseStat {
    const t = toNs(this.o.snapdirTime?.() ?? { sec: 0, nsec: 0 });
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
  private stat(view: View, a: Attr): FuseStat {
    const stat = toStat(a);
    if (this.o.attrTimeout !== undefined && view.cacheable(a))
      stat.attrTimeout = this.o.attrTimeout;
    return stat;
  }

  // Changes answer with the attributes they leave: libfuse asks for them right after.

  private setattr(path: string, cb: Done<FuseStat>, set: SetAttr, fd?: number): void {
    const who = this.o.caller();
    this.call("setattr", path, cb, async () => {
      const p = fd === undefined ? await this.node(path, who) : this.handle(fd);
      return this.stat(p.view, await this.change(() => p.view.fs.setattr(p.ino, set, who)));
    });
  }

  /** Makes a new name in the directory of `path`, in the name of `who`. */
  private make(
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

  // ------------------------------------------------------------------ the operations

  /** The object handed to fuse-native. */
  operations(): Record<string, unknown> {
    const ops: Record<string, unknown> = {};
    for (const name of Object.getOwnPropertyNames(FuseOps.prototype)) {
      const fn = (this as unknown as Record<string, unknown>)[name];
      if (name.startsWith("op_") && typeof fn === "function") ops[name.slice(3)] = fn.bind(this);
    }
    return ops;
  }

  op_init(cb: Done<void>): void {
    cb(0);
  }

  op_getattr(path: string, cb: Done<FuseStat>): void {
    const who = this.o.caller();
    this.call("getattr", path, cb, async () => {
      const p = await this.locate(path, who);
      return p.view ? this.stat(p.view, await p.view.fs.getattr(p.ino)) : this.snapdirStat();
    });
  }

  /** Sent only without default_permissions: the caller's rights as access(2) asks. */
  op_access(path: string, mode: number, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("access", path, cb, async () => {
      const p = await this.locate(path, who);
      if (!p.view) {
        if (mode & constants.W_OK) throw erofs(path);
        return;
      }
      await p.view.fs.access(p.ino, mode, who);
    });
  }

  op_statfs(path: string, cb: Done<object>): void {
    const who = this.o.caller();
    this.call("statfs", path, cb, async () => {
      const p = await this.locate(path, who);
      const s = await (p.view ?? this.o.root).fs.statfs();
      return {
        bsize: s.blockSize,
        frsize: s.blockSize,
        blocks: s.blocks,
        bfree: s.blocksFree,
        bavail: s.blocksFree,
        files: s.files,
        ffree: s.filesFree,
        favail: s.filesFree,
        fsid: 0,
        flag: 0,
        namemax: s.nameMax,
      };
    });
  }

  op_opendir(path: string, _flags: number, cb: Done<number>): void {
    const who = this.o.caller();
    this.call("opendir", path, cb, async () => {
      const p = await this.locate(path, who);
      if (!p.view) return 0;
      const a = await p.view.fs.getattr(p.ino);
      if (!isDir(a.mode)) throw new FsError("ENOTDIR", path);
      if (who.uid !== 0) mayAccess(a, who, R_OK, `reading directory ${path}`);
      return 0;
    });
  }

  op_releasedir(_path: string, _fd: number, cb: Done<void>): void {
    cb(0);
  }

  op_readdir(path: string, cb: (err: number, names?: string[], stats?: object[]) => void): void {
    const who = this.o.caller();
    const list = async (): Promise<[string[], object[]]> => {
      const p = await this.locate(path, who);
      if (!p.view) {
        const names = this.o.snapshots!.names();
        const dir = { ino: SNAPDIR_INO, mode: constants.S_IFDIR };
        return [
          [".", "..", ...names],
          [
            dir,
            { ino: 1, mode: constants.S_IFDIR },
            ...names.map(() => ({ ino: 1, mode: dir.mode })),
          ],
        ];
      }
      const names: string[] = [];
      const stats: object[] = [];
      for (let cookie = 0n; ; ) {
        const page = await p.view.fs.readdir(p.ino, cookie, 1024);
        if (page.length === 0) break;
        for (const e of page) {
          names.push(e.name.toString());
          stats.push({ ino: e.ino, mode: e.type << 12 });
        }
        cookie = page[page.length - 1]!.cookie;
      }
      return [names, stats];
    };
    list().then(
      ([names, stats]) => cb(0, names, stats),
      (e) => cb(toErrno(e, "readdir", path, this.o.log)),
    );
  }

  op_open(path: string, flags: number, cb: Done<number>): void {
    const who = this.o.caller();
    this.call("open", path, cb, async () => {
      const p = await this.node(path, who);
      if (
        p.view.readOnly &&
        ((flags & O_ACCMODE) !== constants.O_RDONLY || flags & constants.O_TRUNC)
      )
        throw erofs(path);
      await p.view.fs.open(p.ino, flags, who);
      const fd = this.nextHandle++;
      this.handles.set(fd, { view: p.view, ino: p.ino });
      return fd;
    });
  }

  op_create(path: string, mode: number, cb: Created): void {
    const who = this.o.caller();
    const create = async (): Promise<[number, FuseStat]> => {
      const { view, dir, name } = await this.parentOf(path, who);
      const a = await this.change(async () => {
        const made = await view.fs.create(dir, name, mode, who);
        view.named(dir, name, made.ino);
        await view.fs.open(made.ino);
        return made;
      });
      const fd = this.nextHandle++;
      this.handles.set(fd, { view, ino: a.ino });
      return [fd, this.stat(view, a)];
    };
    create().then(
      ([fd, stat]) => cb(0, fd, stat),
      (e) => cb(toErrno(e, "create", path, this.o.log)),
    );
  }

  op_release(path: string, fd: number, cb: Done<void>): void {
    this.call("release", path, cb, async () => {
      const h = this.handle(fd);
      this.handles.delete(fd);
      await (h.view.readOnly
        ? h.view.fs.release(h.ino)
        : this.change(() => h.view.fs.release(h.ino)));
    });
  }

  op_read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: ReadDone): void {
    // Straight into the binding's buffer: no allocation, no copy. A part that lies as it is in
    // a host file is read by the binding's thread that replies (`_op_read` in the binding's
    // patch), which saves a trip through the thread pool and back to this thread.
    let done = () => {};
    const lender: Lender = { until: new Promise<void>((resolve) => (done = resolve)) };
    const reply = (n: number) => {
      const lent = lender.lent;
      if (n < 0 || !lent) {
        done();
        cb(n);
      } else cb(n, { ...lent, done });
    };
    this.count("read", path, reply, async () => {
      const h = this.handle(fd);
      return (await h.view.fs.read(h.ino, pos, len, buf.subarray(0, len), lender)).length;
    });
  }

  op_write(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Count): void {
    const who = this.o.caller();
    this.count("write", path, cb, async () => {
      const h = this.handle(fd);
      // The binding's buffer lives until the reply, which waits for the write: the filesystem
      // and the store below keep no reference to what they were given once a write resolves.
      // Not copying it spares the garbage collector 128 KiB per request.
      return this.change(() => h.view.fs.write(h.ino, pos, buf.subarray(0, len), who));
    });
  }

  // No flush: closing needs nothing here, and without one the kernel, told ENOSYS once by
  // libfuse, stops sending a FLUSH request on every close.

  op_fsync(path: string, _datasync: number, fd: number, cb: Done<void>): void {
    this.call("fsync", path, cb, async () => {
      const h = this.handle(fd);
      if (!h.view.readOnly) await this.change(() => h.view.fs.fsync());
    });
  }

  op_fsyncdir(path: string, _datasync: number, _fd: number, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("fsyncdir", path, cb, async () => {
      const p = await this.locate(path, who);
      if (p.view && !p.view.readOnly) await this.change(() => p.view!.fs.fsync());
    });
  }

  op_truncate(path: string, size: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { size });
  }

  op_ftruncate(path: string, fd: number, size: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { size, opened: true }, fd);
  }

  /**
   * A chmod, or the kernel clearing set-ID bits after a write or truncation by someone other
   * than the owner (it sends that as a chmod in the writer's name): `clearsSetId` lets a caller
   * with write access do only that.
   */
  op_chmod(path: string, mode: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { mode, clearsSetId: true });
  }

  op_chown(path: string, uid: number, gid: number, cb: Done<FuseStat>): void {
    const id = (n: number) => (n === UNCHANGED_ID || n === -1 ? undefined : n);
    this.setattr(path, cb, { uid: id(uid), gid: id(gid) });
  }

  op_utimens(path: string, atime: FuseTime, mtime: FuseTime, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { atime: fromFuseTime(atime), mtime: fromFuseTime(mtime) });
  }

  op_readlink(path: string, cb: Done<string>): void {
    const who = this.o.caller();
    this.call("readlink", path, cb, async () => {
      const p = await this.node(path, who);
      return (await p.view.fs.readlink(p.ino)).toString();
    });
  }

  op_mknod(path: string, mode: number, dev: number, cb: Done<FuseStat>): void {
    this.make("mknod", path, cb, (fs, dir, name, who) => fs.mknod(dir, name, mode, dev, who));
  }

  op_mkdir(path: string, mode: number, cb: Done<FuseStat>): void {
    this.make("mkdir", path, cb, (fs, dir, name, who) => fs.mkdir(dir, name, mode, who));
  }

  op_symlink(target: string, path: string, cb: Done<FuseStat>): void {
    this.make("symlink", path, cb, (fs, dir, name, who) => fs.symlink(dir, name, target, who));
  }

  op_link(src: string, dest: string, cb: Done<FuseStat>): void {
    const who = this.o.caller();
    this.call("link", dest, cb, async () => {
      const from = await this.node(src, who);
      const to = await this.parentOf(dest, who);
      if (from.view !== to.view) throw new FsError("EXDEV", `${src} and ${dest}`);
      to.view.linking(from.ino);
      return this.stat(
        to.view,
        await this.change(() => to.view.fs.link(from.ino, to.dir, to.name, who)),
      );
    });
  }

  op_unlink(path: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("unlink", path, cb, async () => {
      const { view, dir, name } = await this.parentOf(path, who);
      await this.change(async () => {
        await view.fs.unlink(dir, name, who);
        view.forget(dir, name);
      });
    });
  }

  op_rmdir(path: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("rmdir", path, cb, async () => {
      const { view, dir, name } = await this.parentOf(path, who);
      await this.change(async () => {
        await view.fs.rmdir(dir, name, who);
        view.forget(dir, name);
      });
    });
  }

  op_rename(src: string, dest: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("rename", src, cb, async () => {
      const from = await this.parentOf(src, who);
      const to = await this.parentOf(dest, who);
      if (from.view !== to.view) throw new FsError("EXDEV", `${src} and ${dest}`);
      await this.change(async () => {
        try {
          await to.view.fs.rename(from.dir, from.name, to.dir, to.name, {}, who);
        } finally {
          from.view.forget(from.dir, from.name);
          to.view.forget(to.dir, to.name);
        }
      });
    });
  }

  op_getxattr(path: string, name: string, _position: number, cb: Done<Buffer>): void {
    const who = this.o.caller();
    this.call("getxattr", path, cb, async () => {
      const p = await this.locate(path, who);
      if (!p.view) throw new FsError("ENODATA", `${path} has no attribute ${name}`);
      return p.view.fs.getxattr(p.ino, name);
    });
  }

  op_listxattr(path: string, cb: Done<string[]>): void {
    const who = this.o.caller();
    this.call("listxattr", path, cb, async () => {
      const p = await this.locate(path, who);
      return p.view ? p.view.fs.listxattr(p.ino) : [];
    });
  }

  op_setxattr(
    path: string,
    name: string,
    value: Buffer,
    _position: number,
    flags: number,
    cb: Done<void>,
  ): void {
    const who = this.o.caller();
    this.call("setxattr", path, cb, async () => {
      const p = await this.node(path, who);
      const copy = Buffer.from(value);
      const how = { create: (flags & XATTR_CREATE) !== 0, replace: (flags & XATTR_REPLACE) !== 0 };
      await this.change(() => p.view.fs.setxattr(p.ino, name, copy, how));
    });
  }

  op_removexattr(path: string, name: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("removexattr", path, cb, async () => {
      const p = await this.node(path, who);
      await this.change(() => p.view.fs.removexattr(p.ino, name));
    });
  }
}
