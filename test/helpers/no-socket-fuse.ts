// A FUSE filesystem for tests that holds regular files and directories but no sockets, fifos or
// devices (it has no mknod, so `bind` of a Unix socket on it fails, as on some NFS and FUSE
// filesystems). It passes every call through to a host directory. Run as a child process:
// `no-socket-fuse.ts HOSTDIR MNT`; it says "ready" over IPC once mounted, and unmounts on SIGTERM.

import * as fs from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

type Reply = (code: number, ...result: unknown[]) => void;
interface FuseClass {
  new (
    mnt: string,
    ops: object,
    opts: object,
  ): { mount(cb: (e: Error | null) => void): void; unmount(cb: (e: Error | null) => void): void };
}
const Fuse = createRequire(import.meta.url)("fuse-native") as FuseClass;

const [host, mnt] = process.argv.slice(2) as [string, string];
const at = (path: string) => join(host, path);

/** Runs a host call; a thrown error answers with its -errno. */
function pass<T>(cb: Reply, fn: () => T, ok: (v: T) => unknown[] = () => []): void {
  let v: T;
  try {
    v = fn();
  } catch (e) {
    cb((e as NodeJS.ErrnoException).errno ?? -5);
    return;
  }
  cb(0, ...ok(v));
}

const stat = (s: fs.Stats) => ({
  mode: s.mode,
  uid: s.uid,
  gid: s.gid,
  size: s.size,
  nlink: s.nlink,
  ino: s.ino,
  dev: s.dev,
  rdev: s.rdev,
  blksize: s.blksize,
  blocks: s.blocks,
  atime: s.atime,
  mtime: s.mtime,
  ctime: s.ctime,
});

const ops = {
  getattr: (p: string, cb: Reply) =>
    pass(
      cb,
      () => fs.lstatSync(at(p)),
      (s) => [stat(s)],
    ),
  fgetattr: (_p: string, fd: number, cb: Reply) =>
    pass(
      cb,
      () => fs.fstatSync(fd),
      (s) => [stat(s)],
    ),
  access: (p: string, mode: number, cb: Reply) => pass(cb, () => fs.accessSync(at(p), mode)),
  statfs: (p: string, cb: Reply) =>
    pass(
      cb,
      () => fs.statfsSync(at(p)),
      (s) => [
        {
          bsize: s.bsize,
          frsize: s.bsize,
          blocks: s.blocks,
          bfree: s.bfree,
          bavail: s.bavail,
          files: s.files,
          ffree: s.ffree,
          favail: s.ffree,
          fsid: 0,
          flag: 0,
          namemax: 255,
        },
      ],
    ),
  readdir: (p: string, cb: Reply) =>
    pass(
      cb,
      () => fs.readdirSync(at(p)),
      (names) => [names],
    ),
  open: (p: string, flags: number, cb: Reply) =>
    pass(
      cb,
      () => fs.openSync(at(p), flags),
      (fd) => [fd],
    ),
  create: (p: string, mode: number, cb: Reply) =>
    pass(
      cb,
      () => fs.openSync(at(p), fs.constants.O_CREAT | fs.constants.O_RDWR, mode),
      (fd) => [fd],
    ),
  release: (_p: string, fd: number, cb: Reply) => pass(cb, () => fs.closeSync(fd)),
  read: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Reply) => {
    try {
      cb(fs.readSync(fd, buf, 0, len, pos));
    } catch (e) {
      cb((e as NodeJS.ErrnoException).errno ?? -5);
    }
  },
  write: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Reply) => {
    try {
      cb(fs.writeSync(fd, buf, 0, len, pos));
    } catch (e) {
      cb((e as NodeJS.ErrnoException).errno ?? -5);
    }
  },
  truncate: (p: string, size: number, cb: Reply) => pass(cb, () => fs.truncateSync(at(p), size)),
  ftruncate: (_p: string, fd: number, size: number, cb: Reply) =>
    pass(cb, () => fs.ftruncateSync(fd, size)),
  fsync: (_p: string, _d: number, fd: number, cb: Reply) => pass(cb, () => fs.fsyncSync(fd)),
  fsyncdir: (_p: string, _d: number, _fd: number, cb: Reply) => cb(0),
  flush: (_p: string, _fd: number, cb: Reply) => cb(0),
  unlink: (p: string, cb: Reply) => pass(cb, () => fs.unlinkSync(at(p))),
  rename: (p: string, dest: string, cb: Reply) => pass(cb, () => fs.renameSync(at(p), at(dest))),
  mkdir: (p: string, mode: number, cb: Reply) => pass(cb, () => fs.mkdirSync(at(p), { mode })),
  rmdir: (p: string, cb: Reply) => pass(cb, () => fs.rmdirSync(at(p))),
  chmod: (p: string, mode: number, cb: Reply) => pass(cb, () => fs.chmodSync(at(p), mode)),
  utimens: (p: string, _a: unknown, _m: unknown, cb: Reply) =>
    pass(cb, () => fs.utimesSync(at(p), new Date(), new Date())),
};

const fuse = new Fuse(mnt, ops, { force: true });
fuse.mount((err) => {
  if (err) {
    process.send?.({ type: "failed", message: err.message });
    process.exit(1);
  }
  process.send?.({ type: "ready" });
});
process.on("SIGTERM", () => fuse.unmount(() => process.exit(0)));
