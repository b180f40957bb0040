// FUSE operations on names and directories: mknod, mkdir, symlink, link, unlink, rmdir, rename,
// readlink, and listing a directory. They never read or write a file's data.

import { constants } from "node:fs";
import { FsError } from "../errors.js";
import { isDir } from "../fs/attr.js";
import { mayAccess, R_OK } from "../fs/permission.js";
import type { FuseStat } from "./fuse-stat.js";
import { type Done, type OpsCore, SNAPDIR_INO } from "./ops-core.js";

export const namespaceOps = {
  mknod(this: OpsCore, path: string, mode: number, dev: number, cb: Done<FuseStat>): void {
    this.make("mknod", path, cb, (fs, dir, name, who) => fs.mknod(dir, name, mode, dev, who));
  },

  mkdir(this: OpsCore, path: string, mode: number, cb: Done<FuseStat>): void {
    this.make("mkdir", path, cb, (fs, dir, name, who) => fs.mkdir(dir, name, mode, who));
  },

  symlink(this: OpsCore, target: string, path: string, cb: Done<FuseStat>): void {
    this.make("symlink", path, cb, (fs, dir, name, who) => fs.symlink(dir, name, target, who));
  },

  link(this: OpsCore, src: string, dest: string, cb: Done<FuseStat>): void {
    const who = this.o.caller();
    this.call("link", dest, cb, async () => {
      const from = await this.node(src, who);
      const to = await this.parentOf(dest, who);
      if (from.view !== to.view) throw new FsError("EXDEV", `${src} and ${dest}`);
      to.view.linking(from.ino);
      const made = await this.change(async () => {
        const a = await to.view.fs.link(from.ino, to.dir, to.name, who);
        to.view.named(to.dir, to.name, a.ino);
        return a;
      });
      return this.stat(to.view, made);
    });
  },

  unlink(this: OpsCore, path: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("unlink", path, cb, async () => {
      const { view, dir, name } = await this.parentOf(path, who);
      await this.change(async () => {
        await view.fs.unlink(dir, name, who);
        view.forget(dir, name);
      });
    });
  },

  rmdir(this: OpsCore, path: string, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("rmdir", path, cb, async () => {
      const { view, dir, name } = await this.parentOf(path, who);
      await this.change(async () => {
        await view.fs.rmdir(dir, name, who);
        view.forget(dir, name);
      });
    });
  },

  rename(this: OpsCore, src: string, dest: string, cb: Done<void>): void {
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
  },

  readlink(this: OpsCore, path: string, cb: Done<string>): void {
    const who = this.o.caller();
    this.call("readlink", path, cb, async () => {
      const p = await this.node(path, who);
      return (await p.view.fs.readlink(p.ino)).toString();
    });
  },

  opendir(this: OpsCore, path: string, _flags: number, cb: Done<number>): void {
    const who = this.o.caller();
    this.call("opendir", path, cb, async () => {
      const p = await this.locate(path, who);
      if (!p.view) return 0;
      const a = await p.view.fs.getattr(p.ino);
      if (!isDir(a.mode)) throw new FsError("ENOTDIR", path);
      if (who.uid !== 0) mayAccess(a, who, R_OK, `reading directory ${path}`);
      return 0;
    });
  },

  releasedir(this: OpsCore, _path: string, _fd: number, cb: Done<void>): void {
    cb(0);
  },

  readdir(
    this: OpsCore,
    path: string,
    cb: (err: number, names?: string[], stats?: object[]) => void,
  ): void {
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
      (e) => cb(this.errno(e, "readdir", path)),
    );
  },

  fsyncdir(this: OpsCore, path: string, _datasync: number, _fd: number, cb: Done<void>): void {
    const who = this.o.caller();
    this.call("fsyncdir", path, cb, async () => {
      const p = await this.locate(path, who);
      if (p.view && !p.view.readOnly) await this.change(() => p.view!.fs.fsync());
    });
  },
};
