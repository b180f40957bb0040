// FUSE operations on a file's data through an open handle: open, create, read, write, fsync,
// release, truncate. They never rename or remove a name, nor read a directory.

import { constants } from "node:fs";
import { Lease } from "../cow/index.js";
import { erofs } from "../errors.js";
import type { Lender } from "../fs/filesystem.js";
import type { FuseStat } from "./fuse-stat.js";
import type { Count, Created, Done, OpsCore, ReadDone } from "./ops-core.js";

const O_ACCMODE = 3;

/** An open's answer: the file handle, and whether the kernel keeps the file's cached data. */
type Opened = (err: number, fd?: number, keepCache?: boolean) => void;

export const fileOps = {
  open(this: OpsCore, path: string, flags: number, cb: Opened): void {
    const who = this.o.caller();
    const open = async (): Promise<[number, boolean]> => {
      const p = await this.node(path, who);
      if (
        p.view.readOnly &&
        ((flags & O_ACCMODE) !== constants.O_RDONLY || flags & constants.O_TRUNC)
      )
        throw erofs(path);
      const a = await p.view.fs.open(p.ino, flags, who);
      return [this.opened(p.view, p.ino), p.view.keepsData(a)];
    };
    open().then(
      ([fd, keep]) => cb(0, fd, keep),
      (e) => cb(this.errno(e, "open", path)),
    );
  },

  create(this: OpsCore, path: string, mode: number, cb: Created): void {
    const who = this.o.caller();
    const create = async (): Promise<[number, FuseStat, boolean]> => {
      const { view, dir, name } = await this.parentOf(path, who);
      const a = await this.change(async () => {
        const made = await view.fs.create(dir, name, mode, who);
        view.named(dir, name, made.ino);
        await view.fs.open(made.ino);
        return made;
      });
      return [this.opened(view, a.ino), this.stat(view, a), view.keepsData(a)];
    };
    create().then(
      ([fd, stat, keep]) => cb(0, fd, stat, keep),
      (e) => cb(this.errno(e, "create", path)),
    );
  },

  release(this: OpsCore, path: string, fd: number, cb: Done<void>): void {
    this.call("release", path, cb, async () => {
      const h = this.closed(fd);
      await (h.view.readOnly
        ? h.view.fs.release(h.ino)
        : this.change(() => h.view.fs.release(h.ino)));
    });
  },

  read(
    this: OpsCore,
    path: string,
    fd: number,
    buf: Buffer,
    len: number,
    pos: number,
    cb: ReadDone,
  ): void {
    // Straight into the binding's buffer: no allocation, no copy. A part that lies as it is in
    // a host file is read by the binding's thread that replies (`_op_read` in the binding's
    // patch), which saves a trip through the thread pool and back to this thread.
    const lender: Lender = { lease: new Lease() };
    const reply = (n: number) => {
      const lent = lender.lent;
      if (n < 0 || !lent) {
        lender.lease.release();
        cb(n);
      } else cb(n, { ...lent, done: () => lender.lease.release() });
    };
    this.count("read", path, reply, async () => {
      const h = this.handle(fd);
      return (await h.view.fs.read(h.ino, pos, len, buf.subarray(0, len), lender)).length;
    });
  },

  write(
    this: OpsCore,
    path: string,
    fd: number,
    buf: Buffer,
    len: number,
    pos: number,
    cb: Count,
  ): void {
    const who = this.o.caller();
    this.count("write", path, cb, async () => {
      const h = this.handle(fd);
      // The binding's buffer lives until the reply, which waits for the write: the filesystem
      // and the store below keep no reference to what they were given once a write resolves.
      // Not copying it spares the garbage collector 128 KiB per request.
      return this.change(() => h.view.fs.write(h.ino, pos, buf.subarray(0, len), who));
    });
  },

  // No flush: closing needs nothing here, and without one the kernel, told ENOSYS once by
  // libfuse, stops sending a FLUSH request on every close.

  fsync(this: OpsCore, path: string, _datasync: number, fd: number, cb: Done<void>): void {
    this.call("fsync", path, cb, async () => {
      const h = this.handle(fd);
      if (!h.view.readOnly) await this.change(() => h.view.fs.fsync());
    });
  },

  truncate(this: OpsCore, path: string, size: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { size });
  },

  ftruncate(this: OpsCore, path: string, fd: number, size: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { size, opened: true }, fd);
  },
};
