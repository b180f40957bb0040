// Conformance of the filesystem API on every device it runs on: memory, a copy-on-write volume,
// and (read side) a snapshot of it, which must read the tree as it was and refuse every change.

import { mkdtempSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  type BlockDevice,
  CowVolume,
  Lease,
  MemoryBlockDevice,
  NodeHostFs,
} from "../../src/cow/index.js";
import { S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from "../../src/fs/attr.js";
import { FileSystem, type Lender, ROOT, type Seed, SUPERUSER } from "../../src/fs/filesystem.js";
import { fsck } from "../../src/fs/fsck.js";
import { quiet } from "../helpers/cow-workload.js";
import { countingReads } from "../helpers/fs-layers.js";

/** A lender whose lease is already released: what it is lent, it has read. */
function released(): Lender {
  const lease = new Lease();
  lease.release();
  return { lease };
}

const SIZE = 64 << 20;
const me = { uid: 1000, gid: 100, groups: [] };
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cowVolume(): Promise<CowVolume> {
  const dir = mkdtempSync(join(tmpdir(), "shadowfs-fs-"));
  const vol = await CowVolume.create(new NodeHostFs(), join(dir, "store"), {
    volumeSize: SIZE,
    logger: quiet,
  });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => vol.close());
  return vol;
}

const devices: Record<string, () => Promise<BlockDevice>> = {
  memory: async () => new MemoryBlockDevice(SIZE),
  "copy-on-write volume": cowVolume,
};

async function fresh(make: () => Promise<BlockDevice>): Promise<FileSystem> {
  const dev = await make();
  await FileSystem.mkfs(dev, me);
  return FileSystem.open(dev);
}

const names = async (fs: FileSystem, ino: number) =>
  (await fs.readdir(ino, 0n, 1000)).map((e) => e.name.toString()).sort();

describe.each(Object.entries(devices))("filesystem conformance: %s", (_n, make) => {
  it("starts with an empty root directory", async () => {
    const fs = await fresh(make);
    const root = await fs.getattr(ROOT);
    expect(root.mode & S_IFMT).toBe(S_IFDIR);
    expect(root.nlink).toBe(2);
    expect(await names(fs, ROOT)).toEqual([".", ".."]);
    const s = await fs.statfs();
    expect(s.blocksFree).toBeLessThan(s.blocks);
    expect(s.filesFree).toBeLessThan(s.files);
    expect(s.nameMax).toBe(255);
  });

  it("creates every kind of file and reports what it made", async () => {
    const fs = await fresh(make);
    const f = await fs.create(ROOT, "file", 0o640, me);
    const d = await fs.mkdir(ROOT, "dir", 0o750, me);
    const l = await fs.symlink(ROOT, "link", "dir/../file", me);
    const p = await fs.mknod(ROOT, "pipe", S_IFIFO | 0o600, 0, me);
    const c = await fs.mknod(ROOT, "tty", S_IFCHR | 0o620, (4 << 8) | 1, SUPERUSER); // root only
    expect([f, d, l, p, c].map((a) => a.mode & S_IFMT)).toEqual([
      S_IFREG,
      S_IFDIR,
      S_IFLNK,
      S_IFIFO,
      S_IFCHR,
    ]);
    expect(f).toMatchObject({ mode: S_IFREG | 0o640, uid: 1000, gid: 100, nlink: 1, size: 0 });
    expect(c.rdev).toBe((4 << 8) | 1);
    expect((await fs.readlink(l.ino)).toString()).toBe("dir/../file");
    expect((await fs.getattr(ROOT)).nlink).toBe(3);
    expect((await fs.lookup(ROOT, "dir")).ino).toBe(d.ino);
    expect((await fs.lookup(d.ino, "..")).ino).toBe(ROOT);
    expect(await names(fs, ROOT)).toEqual([".", "..", "dir", "file", "link", "pipe", "tty"]);
    await expect(fs.create(ROOT, "file", 0o600, me)).rejects.toThrow(/EEXIST/);
    await expect(fs.mkdir(f.ino, "x", 0o700, me)).rejects.toThrow(/ENOTDIR/);
    await expect(fs.lookup(ROOT, "nope")).rejects.toThrow(/ENOENT/);
    await expect(fs.create(ROOT, "a".repeat(256), 0o600, me)).rejects.toThrow(/ENAMETOOLONG/);
    expect((await fs.create(ROOT, "b".repeat(255), 0o600, me)).nlink).toBe(1);
    await expect(fs.create(ROOT, "a/b", 0o600, me)).rejects.toThrow(/EINVAL/);
  });

  it("refuses a name that exists with EEXIST, before the caller's rights, and changes nothing", async () => {
    const dev = await make();
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const d = await fs.mkdir(ROOT, "shared", 0o755, SUPERUSER);
    const taken = await fs.create(d.ino, "taken", 0o644, SUPERUSER);
    await fs.flush();
    const before = await fs.statfs();
    await expect(fs.create(d.ino, "taken", 0o600, SUPERUSER)).rejects.toThrow(/EEXIST/);
    await expect(fs.mkdir(d.ino, "taken", 0o700, SUPERUSER)).rejects.toThrow(/EEXIST/);
    const long = "t".repeat(300); // kept in a data block, not in the inode
    await expect(fs.symlink(d.ino, "taken", long, SUPERUSER)).rejects.toThrow(/EEXIST/);
    // Not the caller's directory to write in: a free name is EACCES, a taken one EEXIST.
    await expect(fs.create(d.ino, "taken", 0o600, me)).rejects.toThrow(/EEXIST/);
    await expect(fs.create(d.ino, "free", 0o600, me)).rejects.toThrow(/EACCES/);
    await fs.flush();
    const after = await fs.statfs();
    expect(after.filesFree).toBe(before.filesFree);
    expect(after.blocksFree).toBe(before.blocksFree);
    expect(await names(fs, d.ino)).toEqual([".", "..", "taken"]);
    expect((await fs.lookup(d.ino, "taken")).ino).toBe(taken.ino);
    const next = await fs.symlink(d.ino, "next", long, SUPERUSER);
    expect((await fs.readlink(next.ino)).toString()).toBe(long);
    await fs.flush();
    expect((await fsck(dev)).problems).toEqual([]);
  });

  it("reads and writes contents, sparse and large, and keeps nanosecond times", async () => {
    const fs = await fresh(make);
    const f = await fs.create(ROOT, "f", 0o600, me);
    await fs.write(f.ino, 0, Buffer.from("hello world"));
    await fs.write(f.ino, 2 ** 40, Buffer.from("far away"));
    const a = await fs.getattr(f.ino);
    expect(a.size).toBe(2 ** 40 + 8);
    expect(a.blocks).toBeLessThanOrEqual(8 * 8);
    expect((await fs.read(f.ino, 6, 5)).toString()).toBe("world");
    expect((await fs.read(f.ino, 2 ** 39, 4)).equals(Buffer.alloc(4))).toBe(true);
    expect((await fs.read(f.ino, 2 ** 40, 100)).toString()).toBe("far away");
    await fs.setattr(f.ino, { size: 5 });
    expect((await fs.read(f.ino, 0, 100)).toString()).toBe("hello");
    await fs.setattr(f.ino, { size: 8 });
    expect((await fs.read(f.ino, 0, 100)).equals(Buffer.from("hello\0\0\0"))).toBe(true);
    const t = { sec: 1_234_567_890, nsec: 123_456_789 };
    const after = await fs.setattr(f.ino, { mtime: t, mode: 0o4755 });
    expect(after.mtime).toEqual(t);
    expect(after.mode).toBe(S_IFREG | 0o4755);
    expect(after.ctime.sec).toBeGreaterThan(t.sec);
    const onlyA = await fs.setattr(f.ino, { atime: { sec: 5, nsec: 6 } });
    expect(onlyA.mtime).toEqual(t); // an omitted time is left alone
    await expect(fs.setattr(ROOT, { size: 0 })).rejects.toThrow(/EISDIR/);
  });

  it("keeps no hold on a write's buffer once the write resolves, with or without a snapshot", async () => {
    // The FUSE binding's buffer is freed as soon as the write is answered.
    const dev = await make();
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const f = await fs.create(ROOT, "f", 0o600, me);
    const want = Buffer.alloc(3 << 20);
    const buf = Buffer.allocUnsafe(128 << 10);
    const writeAll = async (seed: number) => {
      for (let at = 0; at < want.length; at += buf.length - 4096 + 1) {
        const n = Math.min(buf.length, want.length - at);
        buf.fill(seed + Math.floor(at / 4096));
        buf.copy(want, at, 0, n);
        await fs.write(f.ino, at, buf.subarray(0, n));
        buf.fill(0xee); // what a freed buffer may hold next
      }
    };
    await writeAll(1);
    if (dev instanceof CowVolume) await dev.createSnapshot(); // later writes are staged
    await writeAll(2);
    await fs.fsync();
    expect((await fs.read(f.ino, 0, want.length)).equals(want)).toBe(true);
  });

  it("keeps hard link counts right and frees a file with its last name", async () => {
    const fs = await fresh(make);
    const free0 = (await fs.statfs()).blocksFree;
    const f = await fs.create(ROOT, "a", 0o600, me);
    await fs.write(f.ino, 0, Buffer.alloc(100_000, 1));
    const d = await fs.mkdir(ROOT, "d", 0o700, me);
    await fs.link(f.ino, d.ino, "b");
    expect((await fs.getattr(f.ino)).nlink).toBe(2);
    expect((await fs.lookup(d.ino, "b")).ino).toBe(f.ino);
    await expect(fs.link(d.ino, ROOT, "dd")).rejects.toThrow(/EPERM/);
    await fs.unlink(ROOT, "a");
    expect((await fs.getattr(f.ino)).nlink).toBe(1);
    await fs.open(f.ino);
    await fs.unlink(d.ino, "b");
    expect((await fs.read(f.ino, 0, 3)).equals(Buffer.alloc(3, 1))).toBe(true); // still open
    await fs.release(f.ino);
    await expect(fs.getattr(f.ino)).rejects.toThrow(/ENOENT/);
    await expect(fs.rmdir(ROOT, "nope")).rejects.toThrow(/ENOENT/);
    await fs.rmdir(ROOT, "d");
    expect((await fs.getattr(ROOT)).nlink).toBe(2);
    await fs.fsync();
    expect((await fs.statfs()).blocksFree).toBe(free0);
  });

  it("renames with POSIX semantics", async () => {
    const fs = await fresh(make);
    const a = await fs.mkdir(ROOT, "a", 0o755, me);
    const b = await fs.mkdir(a.ino, "b", 0o755, me);
    const f = await fs.create(ROOT, "f", 0o644, me);
    const g = await fs.create(ROOT, "g", 0o644, me);
    await expect(fs.rename(ROOT, "a", b.ino, "x")).rejects.toThrow(/EINVAL/); // into itself
    await expect(fs.rename(ROOT, "a", ROOT, "a")).resolves.toBeUndefined();
    await fs.rename(ROOT, "f", ROOT, "g"); // replaces g
    expect((await fs.lookup(ROOT, "g")).ino).toBe(f.ino);
    await expect(fs.getattr(g.ino)).rejects.toThrow(/ENOENT/);
    await expect(fs.rename(ROOT, "g", ROOT, "a")).rejects.toThrow(/EISDIR/);
    await expect(fs.rename(ROOT, "a", ROOT, "g")).rejects.toThrow(/ENOTDIR/);
    const e = await fs.mkdir(ROOT, "e", 0o755, me);
    await expect(fs.rename(ROOT, "e", ROOT, "a")).rejects.toThrow(/ENOTEMPTY/);
    await fs.rename(a.ino, "b", ROOT, "b2"); // a directory moves up
    expect((await fs.lookup(b.ino, "..")).ino).toBe(ROOT);
    expect((await fs.getattr(a.ino)).nlink).toBe(2);
    expect((await fs.getattr(ROOT)).nlink).toBe(5);
    await fs.rename(ROOT, "e", ROOT, "a"); // onto an empty directory
    expect((await fs.lookup(ROOT, "a")).ino).toBe(e.ino);
    expect((await fs.getattr(ROOT)).nlink).toBe(4);
    await expect(fs.rename(ROOT, "g", ROOT, "b2", { noReplace: true })).rejects.toThrow(/EEXIST/);
    await fs.rename(ROOT, "g", ROOT, "a", { exchange: true });
    expect((await fs.lookup(ROOT, "a")).ino).toBe(f.ino);
    expect((await fs.lookup(ROOT, "g")).ino).toBe(e.ino);
    await expect(fs.rename(ROOT, "zz", ROOT, "a")).rejects.toThrow(/ENOENT/);
  });

  it("lists a large directory in pages, each name once", async () => {
    const fs = await fresh(make);
    const d = await fs.mkdir(ROOT, "big", 0o755, me);
    for (let i = 0; i < 3000; i++) await fs.create(d.ino, `file-${i}`, 0o644, me);
    const seen = new Set<string>();
    let cookie = 0n;
    for (;;) {
      const page = await fs.readdir(d.ino, cookie, 100);
      if (page.length === 0) break;
      for (const e of page) {
        expect(seen.has(e.name.toString())).toBe(false);
        seen.add(e.name.toString());
      }
      cookie = page.at(-1)!.cookie;
    }
    expect(seen.size).toBe(3002);
  });

  it("keeps extended attributes with create and replace semantics", async () => {
    const fs = await fresh(make);
    const f = await fs.create(ROOT, "f", 0o644, me);
    const free0 = (await fs.statfs()).blocksFree;
    await fs.setxattr(f.ino, "user.color", Buffer.from("blue"));
    await fs.setxattr(f.ino, "security.selinux", Buffer.from("system_u:object_r:x\0"), {
      create: true,
    });
    expect((await fs.getxattr(f.ino, "user.color")).toString()).toBe("blue");
    expect((await fs.listxattr(f.ino)).sort()).toEqual(["security.selinux", "user.color"]);
    // trusted.* is root's: another user neither sees it listed nor reads it.
    await fs.setxattr(f.ino, "trusted.key", Buffer.from("k"));
    const other = { uid: 4321, gid: 4321, groups: [] };
    expect((await fs.listxattr(f.ino, other)).sort()).toEqual(["security.selinux", "user.color"]);
    await expect(fs.getxattr(f.ino, "trusted.key", other)).rejects.toThrow(/ENODATA/);
    await fs.removexattr(f.ino, "trusted.key");
    await expect(
      fs.setxattr(f.ino, "user.color", Buffer.from("red"), { create: true }),
    ).rejects.toThrow(/EEXIST/);
    await expect(
      fs.setxattr(f.ino, "user.size", Buffer.from("1"), { replace: true }),
    ).rejects.toThrow(/ENODATA/);
    await fs.setxattr(f.ino, "user.color", Buffer.from("red"), { replace: true });
    expect((await fs.getxattr(f.ino, "user.color")).toString()).toBe("red");
    await expect(fs.getxattr(f.ino, "user.none")).rejects.toThrow(/ENODATA/);
    await expect(fs.setxattr(f.ino, "user.big", Buffer.alloc(5000))).rejects.toThrow(/ENOSPC/);
    await expect(fs.setxattr(f.ino, `user.${"n".repeat(260)}`, Buffer.from("x"))).rejects.toThrow(
      /ERANGE/,
    );
    await fs.setxattr(ROOT, "user.on-a-directory", Buffer.alloc(0));
    expect(await fs.listxattr(ROOT)).toEqual(["user.on-a-directory"]);
    await fs.removexattr(f.ino, "user.color");
    await expect(fs.removexattr(f.ino, "user.color")).rejects.toThrow(/ENODATA/);
    await fs.removexattr(f.ino, "security.selinux");
    await fs.removexattr(ROOT, "user.on-a-directory");
    expect(await fs.listxattr(f.ino)).toEqual([]);
    expect((await fs.statfs()).blocksFree).toBe(free0);
  });

  it("survives a reopen", async () => {
    const dev = await make();
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const f = await fs.create(ROOT, "kept", 0o600, me);
    await fs.write(f.ino, 10, Buffer.from("data"));
    await fs.setxattr(f.ino, "user.kept", Buffer.from("yes"));
    await fs.flush();
    const again = await FileSystem.open(dev);
    expect((await again.getxattr(f.ino, "user.kept")).toString()).toBe("yes");
    expect((await fsck(dev)).problems).toEqual([]);
    expect(
      (await again.read((await again.lookup(ROOT, "kept")).ino, 0, 20)).toString("latin1"),
    ).toBe(`${"\0".repeat(10)}data`);
  });
});

describe("filesystem: freed metadata blocks and the journal", () => {
  it("keeps fsync'd data in a block that was an indirect block when the journal is replayed", async () => {
    // A small volume, so that the allocator comes back to the freed block soon.
    const dev = new MemoryBlockDevice(256 * 4096);
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const a = await fs.create(ROOT, "a", 0o644, me);
    await fs.write(a.ino, 12 * 4096, Buffer.from("under the single indirect block"));
    await fs.fsync(); // the indirect block's image is in the log
    await fs.setattr(a.ino, { size: 0 }); // and freed
    await fs.fsync();
    const b = await fs.create(ROOT, "b", 0o644, me);
    const data = Buffer.alloc((await fs.statfs()).blocksFree * 4096 - 8192, 9); // all but 2 blocks
    await fs.write(b.ino, 0, data);
    await fs.fsync();
    // Reopened without a checkpoint: the log is replayed. b's data must not be overwritten.
    const again = await FileSystem.open(dev);
    expect(again.recovery.replayed).toBeGreaterThan(0);
    expect((await again.read(b.ino, 0, data.length)).equals(data)).toBe(true);
    expect((await fsck(dev)).problems).toEqual([]);
  });
});

describe("filesystem: space freed and not yet committed", () => {
  it("a file removed makes room at once for the next write, with no sync between", async () => {
    const dev = new MemoryBlockDevice(1024 * 4096);
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const room = (await fs.statfs()).blocksFree * 4096;
    const a = await fs.create(ROOT, "a", 0o644, me);
    await fs.write(a.ino, 0, Buffer.alloc(room - 64 * 4096, 1)); // most of the volume
    await fs.fsync();
    await fs.unlink(ROOT, "a", me); // freed, not committed
    const b = await fs.create(ROOT, "b", 0o644, me);
    const data = Buffer.alloc(room - 64 * 4096, 2);
    await fs.write(b.ino, 0, data);
    expect((await fs.read(b.ino, 0, data.length)).equals(data)).toBe(true);
    await fs.fsync();
    expect((await fsck(dev)).problems).toEqual([]);
  });
});

describe("filesystem: answers that need no operation of their own", () => {
  it("getattr, open, release and xattr reads of a named file go on while the metadata lock is held", async () => {
    const fs = await fresh(devices.memory!);
    const f = await fs.create(ROOT, "f", 0o600, me);
    const g = await fs.create(ROOT, "g", 0o600, me);
    await fs.setxattr(g.ino, "user.a", Buffer.from("1"), {}, me);
    const order: string[] = [];
    let letGo!: () => void;
    // A commit, say: it holds the lock while it writes the journal and flushes the device.
    const held = fs.context.meta.view(() => new Promise<void>((go) => (letGo = go)));
    const answered = (async () => {
      expect((await fs.getattr(f.ino)).ino).toBe(f.ino);
      await fs.open(f.ino, 0, me);
      await fs.release(f.ino);
      expect(await fs.findxattr(f.ino, "security.capability", me)).toBeUndefined();
      expect(await fs.listxattr(f.ino, me)).toEqual([]);
      expect(await fs.findxattr(g.ino, "user.a", me)).toEqual(Buffer.from("1"));
      expect(await fs.listxattr(g.ino, me)).toEqual(["user.a"]);
      order.push("answered");
    })();
    setImmediate(() => {
      order.push("lock let go");
      letGo();
    });
    await Promise.all([held, answered]);
    expect(order).toEqual(["answered", "lock let go"]);
  });
});

describe("filesystem on a snapshot (read side)", () => {
  it("reads the tree as it was at the snapshot and refuses every change with EROFS", async () => {
    const vol = await cowVolume();
    await FileSystem.mkfs(vol, me);
    const fs = await FileSystem.open(vol);
    const d = await fs.mkdir(ROOT, "docs", 0o755, me);
    const f = await fs.create(d.ino, "report", 0o644, me);
    await fs.write(f.ino, 0, Buffer.from("version 1"));
    await fs.flush();
    const snap = await vol.createSnapshot();
    await fs.write(f.ino, 0, Buffer.from("version 2"));
    await fs.unlink(d.ino, "report");
    await fs.create(ROOT, "new", 0o644, me);
    await fs.flush();
    const old = await FileSystem.open(vol.snapshotDevice(snap.id));
    expect(old.readOnly).toBe(true);
    const r = await old.lookup(d.ino, "report");
    expect(r.ino).toBe(f.ino); // the same inode number as in production
    expect((await old.read(r.ino, 0, 100)).toString()).toBe("version 1");
    expect(await names(old, ROOT)).toEqual([".", "..", "docs"]);
    await expect(old.create(ROOT, "x", 0o644, me)).rejects.toThrow(/EROFS/);
    await expect(old.write(r.ino, 0, Buffer.from("x"))).rejects.toThrow(/EROFS/);
    await expect(old.unlink(d.ino, "report")).rejects.toThrow(/EROFS/);
    await expect(old.setattr(r.ino, { mode: 0o600 })).rejects.toThrow(/EROFS/);
    await expect(old.rename(d.ino, "report", ROOT, "r")).rejects.toThrow(/EROFS/);
    await expect(old.mkdir(ROOT, "m", 0o755, me)).rejects.toThrow(/EROFS/);
  });

  it("looks up production's metadata when taken with nothing changed, and reads the same", async () => {
    const vol = await cowVolume();
    await FileSystem.mkfs(vol, me);
    const fs = await FileSystem.open(vol);
    const d = await fs.mkdir(ROOT, "docs", 0o755, me);
    for (let i = 0; i < 300; i++) {
      const f = await fs.create(d.ino, `f${i}`, 0o644, me);
      await fs.write(f.ino, 0, Buffer.from(`file ${i}`.repeat(i)));
    }
    // Not flushed, or changed while the snapshot is taken: no metadata to look up.
    expect((await fs.snapshotWith(() => vol.createSnapshot())).seed).toBeUndefined();
    await fs.flush();
    const late = fs.snapshotWith(async () => {
      const taken = await vol.createSnapshot();
      await fs.create(ROOT, "late", 0o644, me);
      return taken;
    });
    expect((await late).seed).toBeUndefined();
    await fs.flush();
    const { taken: snap, seed } = await fs.snapshotWith(() => vol.createSnapshot());
    expect(seed).toBeDefined();
    // Production moves on before the view opens: changes written home, and changes not yet
    // committed.
    await fs.unlink(d.ino, "f0");
    await fs.write((await fs.lookup(d.ino, "f1")).ino, 0, Buffer.from("changed"));
    await fs.create(d.ino, "after", 0o644, me);
    await fs.flush();
    await fs.rename(d.ino, "f2", ROOT, "moved");
    await fs.write((await fs.lookup(d.ino, "f3")).ino, 0, Buffer.from("later"));

    let round = 0;
    const opened = async (seeded: boolean, cacheBytes?: number) => {
      const counted = countingReads(vol.snapshotDevice(snap.id));
      const view = await FileSystem.open(counted.dev, seeded ? { seed, cacheBytes } : {});
      const files: string[] = [];
      for (const name of await names(view, d.ino)) {
        if (name.startsWith(".")) continue;
        // And while the view reads.
        if (files.length === 150) {
          await fs.unlink(d.ino, `f${200 + round}`);
          await fs.write((await fs.lookup(d.ino, `f${210 + round}`)).ino, 0, Buffer.from("x"));
          if (round++ % 2 === 0) await fs.flush();
        }
        const ino = (await view.lookup(d.ino, name)).ino;
        files.push(`${name}=${(await view.read(ino, 0, 10_000)).toString()}`);
      }
      return { files, reads: counted.reads };
    };
    const seeded = await opened(true);
    const plain = await opened(false);
    expect(seeded.files).toEqual(plain.files);
    expect(seeded.files).toHaveLength(300);
    expect(seeded.files).toContain("f1=file 1");
    expect(seeded.files).toContain(`f210=${"file 210".repeat(210)}`);
    expect(seeded.reads).toBeLessThan(plain.reads);
    // However small its own cache, a view reads no more from the device.
    const small = await opened(true, 8 * 4096);
    expect(small.files).toEqual(seeded.files);
    expect(small.reads).toBe(seeded.reads);
  });

  it("gives up the metadata for a snapshot's view once production changed more than it caches", async () => {
    const vol = await cowVolume();
    await FileSystem.mkfs(vol, me);
    const fs = await FileSystem.open(vol, { cacheBytes: 16 * 4096 });
    await fs.mkdir(ROOT, "d", 0o755, me);
    await fs.flush();
    const known = (seed: Seed | undefined) => [...Array(4096).keys()].filter((b) => seed?.get(b));
    const few = (await fs.snapshotWith(() => vol.createSnapshot())).seed;
    await fs.create(ROOT, "one", 0o644, me);
    expect(known(few).length).toBeGreaterThan(0);
    await fs.flush();
    const many = (await fs.snapshotWith(() => vol.createSnapshot())).seed;
    const dropped = (await fs.snapshotWith(() => vol.createSnapshot())).seed;
    expect(known(dropped).length).toBeGreaterThan(0);
    dropped?.drop();
    expect(known(dropped)).toEqual([]);
    expect(known(many).length).toBeGreaterThan(0);
    for (let i = 0; i < 40; i++) await fs.mkdir(ROOT, `m${i}`, 0o755, me);
    expect(many).toBeDefined();
    expect(known(many)).toEqual([]);
  });
});

describe("reads lent to a reader with its own thread", () => {
  it("read ahead in windows what the device cannot lend", async () => {
    const mem = new MemoryBlockDevice(SIZE);
    await FileSystem.mkfs(mem, me);
    const rw = await FileSystem.open(mem);
    const f = await rw.create(ROOT, "f", 0o600, me);
    await rw.write(f.ino, 0, Buffer.alloc(3 << 20, 5));
    await rw.flush();
    const counted = countingReads(mem);
    const fs = await FileSystem.open(counted.dev);
    await fs.getattr(f.ino);
    counted.reads = 0;
    for (let at = 0; at < 3 << 20; at += 128 << 10) {
      const lender: Lender = released();
      const got = await fs.read(f.ino, at, 128 << 10, undefined, lender);
      expect(got.equals(Buffer.alloc(128 << 10, 5))).toBe(true);
      expect(lender.lent).toBeUndefined();
    }
    // 24 requests: the first, then 1 MiB windows (and the block map they need).
    expect(counted.reads).toBeLessThan(12);
  });

  it("lend a single run, and its blocks go to no other file until the reader is done", async () => {
    const vol = await cowVolume();
    await FileSystem.mkfs(vol, me);
    const fs = await FileSystem.open(vol);
    const f = await fs.create(ROOT, "f", 0o600, me);
    await fs.write(f.ino, 0, Buffer.alloc(64 << 10, 7));
    await fs.write(f.ino, 1 << 20, Buffer.alloc(4096, 8)); // a hole before it
    await fs.fsync();
    const lender: Lender = { lease: new Lease() };
    const done = () => lender.lease.release();
    cleanups.push(done); // before the volume closes, which waits for it
    const into = Buffer.alloc(10_000, 0xaa);
    expect((await fs.read(f.ino, 5000, 10_000, into, lender)).length).toBe(10_000);
    const lent = lender.lent!;
    expect(lent).toMatchObject({ at: 0, length: 10_000 });
    const host = Buffer.alloc(10_000);
    readSync(lent.fd, host, 0, 10_000, lent.position);
    expect(host.equals(Buffer.alloc(10_000, 7))).toBe(true);

    // Reads in order are lent too, each where it lies, with no window read ahead.
    for (let at = 15_000; at < 60_000; at += 15_000) {
      const next: Lender = released();
      expect((await fs.read(f.ino, at, 15_000, Buffer.alloc(15_000), next)).length).toBe(15_000);
      expect(next.lent).toMatchObject({ position: lent.position - 5000 + at, length: 15_000 });
    }
    // Up to a hole: the part before it is lent, the rest is zeros.
    const edge: Lender = released();
    const edged = await fs.read(f.ino, 60_000, 10_000, Buffer.alloc(10_000, 0xaa), edge);
    expect(edge.lent).toMatchObject({ at: 0, length: 65_536 - 60_000 });
    expect(edged.subarray(65_536 - 60_000).equals(Buffer.alloc(10_000 - 5536))).toBe(true);

    // Data, hole, data: more than one run, read here.
    const across: Lender = released();
    const want = Buffer.alloc((1 << 20) + 4096 - 60_000);
    want.fill(7, 0, 65536 - 60_000).fill(8, (1 << 20) - 60_000);
    expect((await fs.read(f.ino, 60_000, want.length, undefined, across)).equals(want)).toBe(true);
    expect(across.lent).toBeUndefined();

    // The file's blocks are freed; the commit that frees them waits for the lent read.
    await fs.unlink(ROOT, "f");
    let committed = false;
    const commit = fs.fsync().then(() => (committed = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(committed).toBe(false);
    done();
    await commit;
  });
});
