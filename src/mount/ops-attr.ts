// FUSE operations on attributes, and the mount's lifecycle: init, getattr, access, statfs,
// chmod, chown, utimens. They never create, remove or rename a name, nor touch file data.

import { constants } from "node:fs";
import { erofs } from "../errors.js";
import { type FuseStat, type FuseTime, fromFuseTime } from "./fuse-stat.js";
import type { Done, OpsCore } from "./ops-core.js";

/** A uid or gid chown leaves as it is. */
const UNCHANGED_ID = 0xffffffff;

export const attrOps = {
  init(this: OpsCore, cb: Done<void>): void {
    cb(0);
  },

  /**
   * Also libfuse 2's lookup: a name not there is answered ENOENT (see `callIfAny`). What the
   * caches hold is answered at once, with no promise made.
   */
  getattr(this: OpsCore, path: string, cb: Done<FuseStat>): void {
    const who = this.o.caller();
    const now = this.statNow(path, who);
    if (typeof now === "number") cb(now);
    else if (now) cb(0, now);
    else
      this.callIfAny("getattr", path, cb, "ENOENT", async () => {
        const p = await this.find(path, who);
        if (!p) return undefined;
        return p.view ? this.stat(p.view, await p.view.fs.getattr(p.ino)) : this.snapdirStat();
      });
  },

  /** Sent only without default_permissions: the caller's rights as access(2) asks. */
  access(this: OpsCore, path: string, mode: number, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("access", path, cb, async () => {
      const p = await this.locate(path, who);
      if (!p.view) {
        if (mode & constants.W_OK) throw erofs(path);
        return;
      }
      await p.view.fs.access(p.ino, mode, who);
    });
  },

  statfs(this: OpsCore, path: string, cb: Done<object>): void {
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
  },

  /**
   * A chmod, or the kernel clearing set-ID bits after a write or truncation by someone other
   * than the owner (it sends that as a chmod in the writer's name): `clearsSetId` lets a caller
   * with write access do only that.
   */
  chmod(this: OpsCore, path: string, mode: number, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { mode, clearsSetId: true });
  },

  chown(this: OpsCore, path: string, uid: number, gid: number, cb: Done<FuseStat>): void {
    const id = (n: number) => (n === UNCHANGED_ID || n === -1 ? undefined : n);
    this.setattr(path, cb, { uid: id(uid), gid: id(gid) });
  },

  utimens(this: OpsCore, path: string, atime: FuseTime, mtime: FuseTime, cb: Done<FuseStat>): void {
    this.setattr(path, cb, { atime: fromFuseTime(atime), mtime: fromFuseTime(mtime) });
  },
};
