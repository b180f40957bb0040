// FUSE operations on extended attributes: get, list, set, remove. `.snapshots` itself has none
// and takes none; they never touch a file's data or its name.

import type { Done, OpsCore } from "./ops-core.js";

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

export const xattrOps = {
  /** An attribute not there is answered ENODATA (see `callIfAny`). */
  getxattr(this: OpsCore, path: string, name: string, _position: number, cb: Done<Buffer>): void {
    const who = this.o.caller();
    this.callIfAny("getxattr", path, cb, "ENODATA", async () => {
      const p = await this.locate(path, who);
      return p.view ? p.view.fs.findxattr(p.ino, name, who) : undefined;
    });
  },

  listxattr(this: OpsCore, path: string, cb: Done<string[]>): void {
    const who = this.o.caller();
    this.call("listxattr", path, cb, async () => {
      const p = await this.locate(path, who);
      return p.view ? p.view.fs.listxattr(p.ino, who) : [];
    });
  },

  setxattr(
    this: OpsCore,
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
      await this.change(() => p.view.fs.setxattr(p.ino, name, copy, how, who));
    });
  },

  removexattr(this: OpsCore, path: string, name: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("removexattr", path, cb, async () => {
      const p = await this.node(path, who);
      await this.change(() => p.view.fs.removexattr(p.ino, name, who));
    });
  },
};
