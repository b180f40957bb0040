// A tiny in-memory filesystem served with fuse-native, run as a child process by the binding's
// cache tests: it mounts at argv[2] with names, absent names and attributes kept for a minute,
// and answers opens of files named `keep*` with keepCache. Over IPC the test changes files behind
// the kernel's back ("set", "add", "remove", "link"), asks the binding to invalidate ("inode",
// "entry", "all"; each answered once the kernel has it), and counts the reads per path ("reads").

import { createRequire } from "node:module";

type Reply = (code: number, ...result: unknown[]) => void;
interface FuseInstance {
  _fuseOptions(): string;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  invalidateInode(ino: number): void;
  invalidateEntry(dir: number, name: string): void;
  invalidateAll(): void;
  invalidated(cb: () => void): void;
}
interface FuseClass {
  new (mnt: string, ops: object, opts: object): FuseInstance;
  ENOENT: number;
}

/** Messages from the test. */
export type CacheFuseRequest =
  | { type: "set"; path: string; text: string }
  | { type: "add"; path: string; text: string }
  | { type: "remove"; path: string }
  | { type: "link"; path: string; to: string }
  | { type: "inode"; path: string }
  | { type: "entry"; name: string }
  | { type: "all" }
  | { type: "reads" };

/** Messages to the test: "done" answers every request but "reads". */
export type CacheFuseMessage =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "done" }
  | { type: "reads"; reads: Record<string, number> };

interface File {
  ino: number;
  data: Buffer;
  mtime: bigint;
}

function serve(mnt: string): void {
  const Fuse = createRequire(import.meta.url)("fuse-native") as FuseClass;
  const send = (m: CacheFuseMessage) => process.send?.(m);
  const files = new Map<string, File>();
  let nextIno = 100;
  let clock = 1_000_000_000_000_000_000n;
  /** A time one second after the last one given. */
  const tick = () => {
    clock += 1_000_000_000n;
    return clock;
  };
  const make = (text: string): File => ({ ino: nextIno++, data: Buffer.from(text), mtime: tick() });
  files.set("/keep", make("kept-1"));
  files.set("/drop", make("drop-1"));
  const reads: Record<string, number> = {};
  const nlink = (f: File) => [...files.values()].filter((g) => g === f).length;
  const statOf = (f: File) => ({
    mode: 0o100644,
    uid: 0,
    gid: 0,
    size: f.data.length,
    nlink: nlink(f),
    ino: f.ino,
    blksize: 4096,
    blocks: 1,
    atime: f.mtime,
    mtime: f.mtime,
    ctime: f.mtime,
    attrTimeout: 60,
  });
  const root = {
    mode: 0o40755,
    uid: 0,
    gid: 0,
    size: 0,
    nlink: 2,
    ino: 1,
    blksize: 4096,
    blocks: 0,
    atime: 0n,
    mtime: 0n,
    ctime: 0n,
    attrTimeout: 60,
  };

  const ops = {
    getattr(path: string, cb: Reply) {
      if (path === "/") return cb(0, root);
      const f = files.get(path);
      if (!f) return cb(Fuse.ENOENT);
      cb(0, statOf(f));
    },
    readdir(path: string, cb: Reply) {
      if (path !== "/") return cb(Fuse.ENOENT);
      cb(
        0,
        [...files.keys()].map((p) => p.slice(1)),
      );
    },
    open(path: string, _flags: number, cb: Reply) {
      if (!files.has(path)) return cb(Fuse.ENOENT);
      cb(0, 1, path.startsWith("/keep"));
    },
    read(path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: Reply) {
      reads[path] = (reads[path] ?? 0) + 1;
      const f = files.get(path);
      if (!f) return cb(Fuse.ENOENT);
      const part = f.data.subarray(pos, pos + len);
      part.copy(buf);
      cb(part.length);
    },
    release(_path: string, _fd: number, cb: Reply) {
      cb(0);
    },
  };
  class Mounted extends (Fuse as unknown as new (m: string, o: object, p: object) => FuseInstance) {
    override _fuseOptions(): string {
      return `${super._fuseOptions()},use_ino,entry_timeout=60,negative_timeout=60,attr_timeout=60`;
    }
  }
  const fuse = new Mounted(mnt, ops, { allowOther: true });
  fuse.mount((err) => send(err ? { type: "failed", message: err.message } : { type: "ready" }));
  const done = () => fuse.invalidated(() => send({ type: "done" }));
  process.on("message", (m: CacheFuseRequest) => {
    switch (m.type) {
      case "set": {
        const f = files.get(m.path)!;
        f.data = Buffer.from(m.text);
        f.mtime = tick();
        return send({ type: "done" });
      }
      case "add":
        files.set(m.path, make(m.text));
        return send({ type: "done" });
      case "remove":
        files.delete(m.path);
        return send({ type: "done" });
      case "link":
        files.set(m.to, files.get(m.path)!);
        return send({ type: "done" });
      case "inode":
        fuse.invalidateInode(files.get(m.path)!.ino);
        return done();
      case "entry":
        fuse.invalidateEntry(1, m.name);
        return done();
      case "all":
        fuse.invalidateAll();
        return done();
      case "reads":
        return send({ type: "reads", reads });
    }
  });
  process.on("disconnect", () => fuse.unmount(() => process.exit(0)));
}

if (process.argv[2]) serve(process.argv[2]);
