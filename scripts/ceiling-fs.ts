// The binding's ceiling: a minimal in-memory filesystem served through the same patched
// fuse-native binding (libfuse 2, one JS thread) with the mount options shadowfs's production
// volume mounts with, answering every request from Maps and Buffers (ceiling-tree.ts,
// ceiling-data.ts). bench:mount runs it as a
// child process (`node --import tsx scripts/ceiling-fs.ts MNT`) to show what the binding alone
// can do. It keeps no journal, takes no lock, checks no permission (default_permissions has the
// kernel do that), keeps nothing once it exits, and never does I/O on its own mount.
//
// Mount options, as shadowfs's production mount has them: use_ino, big_writes, max_write=131072
// and default_permissions (src/mount/fuse.ts, ALWAYS), entry_timeout=60, negative_timeout=60 and
// attr_timeout=0 (src/daemon/daemon.ts, PRODUCTION_OPTIONS), a 1 MiB read-ahead
// (READ_AHEAD_KB), and its request thread raised as production's (REQUEST_THREAD_BOOST);
// attributes given a 60-second attrTimeout, and the page cache kept across opens, where
// production gives and keeps them (PRODUCTION_ATTR_TIMEOUT, for what View.cacheable and
// View.keepsData in src/mount/view.ts accept: directories and files that have had one name
// only). Like production, each change answers with the attributes it leaves, and no flush is
// implemented. It serves until SIGTERM, SIGINT or SIGHUP (then it
// unmounts), until its mount is gone, or until the process that started it is.

import { constants as fsc } from "node:fs";
import { writeFile } from "node:fs/promises";
import { constants, freemem, totalmem } from "node:os";
import Fuse from "fuse-native";
import { boostRequestThread, READ_AHEAD_KB } from "../src/mount/fuse.js";
import { mountTable } from "../src/mount/mount-table.js";
import { FileData } from "./ceiling-data.js";
import {
  type Cb,
  cacheable,
  change,
  EEXIST,
  EISDIR,
  ENOENT,
  ENOTDIR,
  ENOTEMPTY,
  type Inode,
  isDir,
  make,
  now,
  parentOf,
  remove,
  type Stat,
  stat,
  type Time,
  walk,
} from "./ceiling-tree.js";

const handles = new Map<number, Inode>();
let nextFd = 1;

const OPTIONS = [
  "use_ino",
  "big_writes",
  "max_write=131072",
  "default_permissions",
  "entry_timeout=60",
  "negative_timeout=60",
  "attr_timeout=0",
  "fsname=ceiling",
  "subtype=ceiling",
];
const WATCH_MS = 500;

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, O_TRUNC, O_RDONLY } = fsc;
const O_ACCMODE = 3;
const E = constants.errno;
const EBADF = -E.EBADF;
const EINVAL = -E.EINVAL;
const ENODATA = -E.ENODATA;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const UNCHANGED_ID = 0xffffffff;

const setTime = (t: Time, old: bigint, at: bigint) => (t === "omit" ? old : t === "now" ? at : t);

const ops = {
  init: (cb: Cb) => cb(0),
  getattr(path: string, cb: Cb<Stat>) {
    const n = walk(path);
    return typeof n === "number" ? cb(n) : cb(0, stat(n));
  },
  access: (_path: string, _mode: number, cb: Cb) => cb(0),
  statfs(_path: string, cb: Cb<object>) {
    const blocks = Math.floor(totalmem() / 4096);
    const free = Math.floor(freemem() / 4096);
    const files = 2 ** 31;
    cb(0, {
      ...{ bsize: 4096, frsize: 4096, blocks, bfree: free, bavail: free },
      ...{ files, ffree: files, favail: files, fsid: 0, flag: 0, namemax: 255 },
    });
  },
  chmod(path: string, mode: number, cb: Cb<Stat>) {
    change(path, cb, (n) => {
      n.mode = (n.mode & S_IFMT) | (mode & 0o7777);
      return undefined;
    });
  },
  chown(path: string, uid: number, gid: number, cb: Cb<Stat>) {
    change(path, cb, (n) => {
      if (uid !== UNCHANGED_ID && uid !== -1) n.uid = uid;
      if (gid !== UNCHANGED_ID && gid !== -1) n.gid = gid;
      return undefined;
    });
  },
  utimens(path: string, atime: Time, mtime: Time, cb: Cb<Stat>) {
    change(path, cb, (n) => {
      const t = now();
      n.atime = setTime(atime, n.atime, t);
      n.mtime = setTime(mtime, n.mtime, t);
      return undefined;
    });
  },
  truncate(path: string, size: number, cb: Cb<Stat>) {
    change(path, cb, (n) => {
      if (!n.data) return isDir(n) ? EISDIR : EINVAL;
      n.data.truncate(size);
      n.mtime = now();
      return undefined;
    });
  },
  ftruncate(path: string, _fd: number, size: number, cb: Cb<Stat>) {
    ops.truncate(path, size, cb);
  },

  open(path: string, flags: number, cb: (err: number, fd?: number, keepCache?: boolean) => void) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    if (n.data && flags & O_TRUNC && (flags & O_ACCMODE) !== O_RDONLY) {
      n.data.truncate(0);
      n.mtime = n.ctime = now();
    }
    handles.set(nextFd, n);
    cb(0, nextFd++, cacheable(n));
  },
  create(
    path: string,
    mode: number,
    cb: (err: number, fd?: number, stat?: Stat, keepCache?: boolean) => void,
  ) {
    const n = make(
      Fuse.caller(),
      path,
      S_IFREG | (mode & 0o7777),
      (e) => cb(e),
      (m) => {
        m.data = new FileData();
      },
    );
    if (!n) return;
    handles.set(nextFd, n);
    cb(0, nextFd++, stat(n), cacheable(n));
  },
  release(_path: string, fd: number, cb: Cb) {
    handles.delete(fd);
    cb(0);
  },
  read(_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
    const data = handles.get(fd)?.data;
    cb(data ? data.read(buf, len, pos) : EBADF);
  },
  write(_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
    const n = handles.get(fd);
    if (!n?.data) return cb(EBADF);
    n.data.write(buf, len, pos);
    n.mtime = n.ctime = now();
    cb(len);
  },
  fsync: (_path: string, _datasync: number, _fd: number, cb: Cb) => cb(0),

  mknod(path: string, mode: number, dev: number, cb: Cb<Stat>) {
    const n = make(Fuse.caller(), path, mode, cb, (m) => {
      m.rdev = dev;
      if ((mode & S_IFMT) === S_IFREG) m.data = new FileData();
    });
    if (n) cb(0, stat(n));
  },
  mkdir(path: string, mode: number, cb: Cb<Stat>) {
    const n = make(Fuse.caller(), path, S_IFDIR | (mode & 0o7777), cb, (m) => {
      m.nlink = 2;
      m.entries = new Map();
    });
    if (n) cb(0, stat(n));
  },
  symlink(target: string, path: string, cb: Cb<Stat>) {
    const n = make(Fuse.caller(), path, S_IFLNK | 0o777, cb, (m) => {
      m.target = target;
    });
    if (n) cb(0, stat(n));
  },
  link(src: string, dest: string, cb: Cb<Stat>) {
    const n = walk(src);
    if (typeof n === "number") return cb(n);
    const p = parentOf(dest);
    if (typeof p === "number") return cb(p);
    if (p.entries.has(p.name)) return cb(EEXIST);
    p.entries.set(p.name, n);
    n.nlink++;
    n.linked = true;
    n.ctime = p.dir.mtime = p.dir.ctime = now();
    cb(0, stat(n));
  },
  unlink: (path: string, cb: Cb) => remove(path, false, cb),
  rmdir: (path: string, cb: Cb) => remove(path, true, cb),
  rename(src: string, dest: string, cb: Cb) {
    const from = parentOf(src);
    if (typeof from === "number") return cb(from);
    const to = parentOf(dest);
    if (typeof to === "number") return cb(to);
    const n = from.entries.get(from.name);
    if (!n) return cb(ENOENT);
    const old = to.entries.get(to.name);
    if (old === n) return cb(0);
    const t = now();
    if (old) {
      if (isDir(old) !== isDir(n)) return cb(isDir(old) ? EISDIR : ENOTDIR);
      if (old.entries && old.entries.size > 0) return cb(ENOTEMPTY);
      if (isDir(old)) to.dir.nlink--;
      old.nlink = isDir(old) ? 0 : old.nlink - 1;
      old.ctime = t;
    }
    from.entries.delete(from.name);
    to.entries.set(to.name, n);
    if (isDir(n) && from.dir !== to.dir) {
      from.dir.nlink--;
      to.dir.nlink++;
    }
    n.ctime = from.dir.mtime = from.dir.ctime = to.dir.mtime = to.dir.ctime = t;
    cb(0);
  },
  readlink(path: string, cb: Cb<string>) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    return n.target === undefined ? cb(EINVAL) : cb(0, n.target);
  },
  opendir(path: string, _flags: number, cb: Cb<number>) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    return n.entries ? cb(0, 0) : cb(ENOTDIR);
  },
  releasedir: (_path: string, _fd: number, cb: Cb) => cb(0),
  readdir(path: string, cb: (err: number, names?: string[], stats?: object[]) => void) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    if (!n.entries) return cb(ENOTDIR);
    const up = walk(path.slice(0, path.lastIndexOf("/")) || "/");
    const names = [".", ".."];
    const stats: object[] = [
      { ino: n.ino, mode: S_IFDIR },
      { ino: typeof up === "number" ? n.ino : up.ino, mode: S_IFDIR },
    ];
    for (const [name, e] of n.entries) {
      names.push(name);
      stats.push({ ino: e.ino, mode: e.mode & S_IFMT });
    }
    cb(0, names, stats);
  },
  fsyncdir: (_path: string, _datasync: number, _fd: number, cb: Cb) => cb(0),

  getxattr(path: string, name: string, _position: number, cb: Cb<Buffer>) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    const value = n.xattrs?.get(name);
    return value ? cb(0, value) : cb(ENODATA);
  },
  listxattr(path: string, cb: Cb<string[]>) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    cb(0, n.xattrs ? [...n.xattrs.keys()] : []);
  },
  setxattr(path: string, name: string, value: Buffer, _p: number, flags: number, cb: Cb) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    const had = n.xattrs?.has(name) ?? false;
    if (had && flags & XATTR_CREATE) return cb(EEXIST);
    if (!had && flags & XATTR_REPLACE) return cb(ENODATA);
    n.xattrs ??= new Map();
    n.xattrs.set(name, Buffer.from(value)); // the binding's buffer is gone after the reply
    n.ctime = now();
    cb(0);
  },
  removexattr(path: string, name: string, cb: Cb) {
    const n = walk(path);
    if (typeof n === "number") return cb(n);
    if (!n.xattrs?.delete(name)) return cb(ENODATA);
    n.ctime = now();
    cb(0);
  },
};

class CeilingFuse extends Fuse {
  protected override _fuseOptions(): string {
    return `-o${OPTIONS.join(",")}`;
  }
}

const mnt = process.argv[2];
if (!mnt) {
  process.stderr.write("usage: ceiling-fs MOUNTPOINT\n");
  process.exit(2);
}
const fuse = new CeilingFuse(mnt, ops, { timeout: false });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  fuse.unmount(() => process.exit(0));
};
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(sig, stop);
fuse.mount(async (err) => {
  if (err) {
    process.stderr.write(`ceiling-fs: mounting ${mnt}: ${err.message}\n`);
    process.exit(1);
  }
  const mounted = async () => (await mountTable()).filter((m) => m.mountpoint === fuse.mnt);
  const dev = (await mounted()).at(-1)?.device;
  if (dev)
    await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, `${READ_AHEAD_KB}\n`).catch(() => {});
  boostRequestThread();
  const parent = process.ppid;
  setInterval(async () => {
    if (process.ppid !== parent) stop();
    else if (!stopping && (await mounted()).length === 0) process.exit(0);
  }, WATCH_MS);
});
