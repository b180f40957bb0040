// A tiny in-memory filesystem served with fuse-native, run as a child process by the binding
// tests: it mounts at argv[2] (attr_timeout=0), keeps every utimens call, write size and getattr
// per path, and reports them over IPC. Nanosecond times are bigints; over IPC they travel as
// decimal strings. Files named `keep*` ask the kernel to keep their attributes for a minute;
// creates of files named `given*` give their attributes with the file handle. File `/lent`
// holds LENT_BYTES of `lentByte` then LENT_TAIL zeros; a read of it answers its first half from
// memory and lends the rest (the binding reads it from a host file, `lent.host` beside the
// mountpoint, which holds the pattern only); a read of `/lentbad` lends a descriptor that is
// not open. Every create and mkdir keeps who asked (`Fuse.caller()`); it mounts with allow_other
// so that other users may ask.

import { openSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

type Reply = (code: number, ...result: unknown[]) => void;
type UtimensTime = bigint | "now" | "omit";
interface FuseInstance {
  _fuseOptions(): string;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}
interface FuseClass {
  new (mnt: string, ops: object, opts: object): FuseInstance;
  ENOENT: number;
  caller(): Caller;
}

/** Messages from this process to the test. */
export type TinyFuseMessage =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | {
      type: "calls";
      utimens: UtimensCall[];
      writes: number[];
      /** getattr calls per path. */
      getattrs: Record<string, number>;
      /** Reads that lent a part, and those whose part the binding said it had read. */
      lent: number;
      lentDone: number;
      callers: CallerCall[];
    };
/** One utimens call: each time is nanoseconds since the epoch (decimal), "now" or "omit". */
export interface UtimensCall {
  path: string;
  atime: string;
  mtime: string;
}
/** The caller of a request, as `Fuse.caller()` gave it. */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  groups: readonly number[];
}
/** One create or mkdir and who asked for it. */
export interface CallerCall {
  op: "create" | "mkdir";
  path: string;
  caller: Caller;
}
/** The inode number of the first file created; the root is 1. */
export const FIRST_INO = 4242;
export const LENT_BYTES = (1 << 20) + 4321;
export const LENT_TAIL = 1000;
export const lentByte = (i: number) => (i * 7 + (i >> 12)) & 255;

interface Node {
  ino: number;
  mode: number;
  data: Buffer;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
}

function serve(mnt: string): void {
  const Fuse = createRequire(import.meta.url)("fuse-native") as FuseClass;
  const now = () => BigInt(Date.now()) * 1_000_000n;
  const nodes = new Map<string, Node>([
    ["/", { ino: 1, mode: 0o40755, data: Buffer.alloc(0), atime: 0n, mtime: 0n, ctime: 0n }],
  ]);
  let nextIno = FIRST_INO;
  let nextFd = 10;
  const utimens: UtimensCall[] = [];
  const writes: number[] = [];
  const getattrs: Record<string, number> = {};
  const callers: CallerCall[] = [];
  const pattern = Buffer.alloc(LENT_BYTES);
  for (let i = 0; i < LENT_BYTES; i++) pattern[i] = lentByte(i);
  const hostPath = join(dirname(mnt), "lent.host");
  writeFileSync(hostPath, pattern);
  const hostFd = openSync(hostPath, "r");
  const lentData = Buffer.concat([pattern, Buffer.alloc(LENT_TAIL)]);
  for (const [ino, path] of ["/lent", "/lentbad"].entries())
    nodes.set(path, {
      ino: 100 + ino,
      mode: 0o100644,
      data: lentData,
      atime: 0n,
      mtime: 0n,
      ctime: 0n,
    });
  let lent = 0;
  let lentDone = 0;
  const statOf = (path: string, n: Node) => {
    const size = n.data.length;
    const nlink = n.mode & 0o40000 ? 2 : 1;
    const blocks = Math.ceil(size / 512);
    const { mode, ino, atime, mtime, ctime } = n;
    const attrTimeout = path.startsWith("/keep") ? 60 : undefined;
    const stat = { mode, uid: 0, gid: 0, size, nlink, ino, blksize: 4096, blocks, attrTimeout };
    return { ...stat, atime, mtime, ctime };
  };

  const ops = {
    getattr(path: string, cb: Reply) {
      getattrs[path] = (getattrs[path] ?? 0) + 1;
      const n = nodes.get(path);
      if (!n) return cb(Fuse.ENOENT);
      cb(0, statOf(path, n));
    },
    readdir(path: string, cb: Reply) {
      if (path !== "/") return cb(Fuse.ENOENT);
      const names = [...nodes.keys()].filter((p) => p !== "/").map((p) => p.slice(1));
      cb(0, names);
    },
    create(path: string, mode: number, cb: Reply) {
      callers.push({ op: "create", path, caller: Fuse.caller() });
      const t = now();
      const data = Buffer.alloc(0);
      const n = { ino: nextIno++, mode, data, atime: t, mtime: t, ctime: t };
      nodes.set(path, n);
      // A file named `given*` comes with its attributes: libfuse asks for none after the create.
      cb(0, nextFd++, path.startsWith("/given") ? statOf(path, n) : undefined);
    },
    mkdir(path: string, mode: number, cb: Reply) {
      callers.push({ op: "mkdir", path, caller: Fuse.caller() });
      const t = now();
      nodes.set(path, {
        ino: nextIno++,
        mode: 0o40000 | mode,
        data: Buffer.alloc(0),
        atime: t,
        mtime: t,
        ctime: t,
      });
      cb(0);
    },
    open(path: string, _flags: number, cb: Reply) {
      if (!nodes.has(path)) return cb(Fuse.ENOENT);
      cb(0, nextFd++);
    },
    release(_path: string, _fd: number, cb: Reply) {
      cb(0);
    },
    read(path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: Reply) {
      const n = nodes.get(path);
      if (!n) return cb(Fuse.ENOENT);
      const end = Math.min(pos + len, n.data.length);
      if (!path.startsWith("/lent") || end <= pos + 1) return cb(n.data.copy(buf, 0, pos, end));
      const half = Math.floor((end - pos) / 2);
      n.data.copy(buf, 0, pos, pos + half);
      lent++;
      const fd = path === "/lentbad" ? -1 : hostFd;
      const done = () => lentDone++;
      cb(end - pos, { fd, position: pos + half, at: half, length: end - pos - half, done });
    },
    write(path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: Reply) {
      const n = nodes.get(path);
      if (!n) return cb(Fuse.ENOENT);
      writes.push(len);
      if (pos + len > n.data.length) {
        n.data = Buffer.concat([n.data, Buffer.alloc(pos + len - n.data.length)]);
      }
      buf.copy(n.data, pos, 0, len);
      n.mtime = n.ctime = now();
      cb(len);
    },
    truncate(path: string, size: number, cb: Reply) {
      const n = nodes.get(path);
      if (!n) return cb(Fuse.ENOENT);
      const data = Buffer.alloc(size);
      n.data.copy(data, 0, 0, size);
      n.data = data;
      n.mtime = n.ctime = now();
      cb(0);
    },
    ftruncate(path: string, _fd: number, size: number, cb: Reply) {
      ops.truncate(path, size, cb);
    },
    utimens(path: string, atime: UtimensTime, mtime: UtimensTime, cb: Reply) {
      utimens.push({ path, atime: String(atime), mtime: String(mtime) });
      const n = nodes.get(path);
      if (!n) return cb(Fuse.ENOENT);
      const t = now();
      if (atime !== "omit") n.atime = atime === "now" ? t : atime;
      if (mtime !== "omit") n.mtime = mtime === "now" ? t : mtime;
      n.ctime = t;
      cb(0);
    },
  };

  const send = (m: TinyFuseMessage) => process.send?.(m);
  // Attributes are cached only where getattr says so (libfuse's default keeps them a second).
  class TinyFuse extends Fuse {
    override _fuseOptions(): string {
      return `${super._fuseOptions()},attr_timeout=0`;
    }
  }
  const opts = { useIno: true, bigWrites: true, maxWrite: 131072, allowOther: true };
  const fuse = new TinyFuse(mnt, ops, opts);
  fuse.mount((err) => send(err ? { type: "failed", message: err.message } : { type: "ready" }));
  process.on("message", (m: { type?: string }) => {
    if (m.type === "calls")
      send({ type: "calls", utimens, writes, getattrs, lent, lentDone, callers });
  });
  // Without the test on the other end, unmount and leave.
  process.on("disconnect", () => fuse.unmount(() => process.exit(0)));
}

// Serves only when run as a program (the tests import its types and constants).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  serve(process.argv[2] ?? "");
}
