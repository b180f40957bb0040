// The orphan list: a file unlinked (or replaced by a rename) while open keeps its inode and data
// until its last release, on a list in the volume that an open after a crash empties. A snapshot
// taken meanwhile holds the orphan and reads cleanly.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CowVolume, FileBlockDevice, MemoryBlockDevice, NodeHostFs } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check, fsck } from "../../src/fs/fsck.js";
import { quiet } from "../helpers/cow-workload.js";
import { CrashHost, PowerCut } from "../helpers/crash-host.js";

const BS = 4096;
const me = { uid: 1000, gid: 100, groups: [] };
const bytes = (n: number, seed: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => ((i * 31 + seed) % 251) + 1));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fresh() {
  const dev = new MemoryBlockDevice(16 << 20);
  await FileSystem.mkfs(dev, me);
  const fs = await FileSystem.open(dev);
  return { dev, fs, free: fs.context.alloc.freeBlocks };
}

/** A file of `n` bytes in the root. */
async function file(fs: FileSystem, name: string, n: number, seed = 1): Promise<number> {
  const f = await fs.create(ROOT, name, 0o644, me);
  await fs.write(f.ino, 0, bytes(n, seed));
  await fs.setxattr(f.ino, "user.k", Buffer.from(name));
  return f.ino;
}

async function expectClean(fs: FileSystem, orphans: number[] = []) {
  const r = await check(fs);
  expect(r.problems).toEqual([]);
  expect(r.orphans).toBe(orphans.length);
  const noted = r.notes.map((n) => Number(/^inode (\d+) is an orphan/.exec(n)?.[1]));
  expect(noted.sort()).toEqual([...orphans].sort());
  expect((await fs.orphans()).sort()).toEqual([...orphans].sort());
}

describe("orphan list", () => {
  it("keeps a file unlinked while open until its last release, then frees it", async () => {
    const { fs, free } = await fresh();
    const ino = await file(fs, "f", 100_000);
    await fs.open(ino);
    await fs.open(ino);
    await fs.unlink(ROOT, "f");
    expect(await fs.orphans()).toEqual([ino]);
    expect((await fs.getattr(ino)).nlink).toBe(0);
    expect((await fs.read(ino, 0, 100_000)).equals(bytes(100_000, 1))).toBe(true);
    await fs.write(ino, 100_000, Buffer.from("more")); // still a file
    await expectClean(fs, [ino]);
    await expect(fs.link(ino, ROOT, "back")).rejects.toThrow(/ENOENT/);
    await fs.release(ino);
    expect(await fs.orphans()).toEqual([ino]);
    await fs.release(ino);
    await expect(fs.getattr(ino)).rejects.toThrow(/ENOENT/);
    await fs.fsync();
    expect(fs.context.alloc.freeBlocks).toBe(free);
    await expectClean(fs);
  });

  it("keeps several orphans, takes any one off the list, and frees files not open at once", async () => {
    const { fs, free } = await fresh();
    const inos = [];
    for (let i = 0; i < 4; i++) inos.push(await file(fs, `f${i}`, 5000 * (i + 1), i));
    for (const ino of inos.slice(0, 3)) await fs.open(ino);
    for (let i = 0; i < 4; i++) await fs.unlink(ROOT, `f${i}`);
    await expect(fs.getattr(inos[3]!)).rejects.toThrow(/ENOENT/); // not open: gone at once
    await expectClean(fs, inos.slice(0, 3));
    await fs.release(inos[1]!); // the middle of the list
    await expectClean(fs, [inos[0]!, inos[2]!]);
    await fs.release(inos[2]!); // its head
    await expectClean(fs, [inos[0]!]);
    await fs.release(inos[0]!);
    await expectClean(fs);
    await fs.fsync();
    expect(fs.context.alloc.freeBlocks).toBe(free);
  });

  it("makes an orphan of a file replaced by a rename, and of a directory removed while open", async () => {
    const { fs } = await fresh();
    const old = await file(fs, "config", 9000, 1);
    const next = await file(fs, "config.new", 7000, 2);
    await fs.open(old);
    await fs.rename(ROOT, "config.new", ROOT, "config");
    expect((await fs.lookup(ROOT, "config")).ino).toBe(next);
    expect((await fs.read(old, 0, 9000)).equals(bytes(9000, 1))).toBe(true);
    const d = await fs.mkdir(ROOT, "d", 0o755, me);
    await fs.open(d.ino);
    await fs.rmdir(ROOT, "d");
    expect((await fs.getattr(ROOT)).nlink).toBe(2);
    await expect(fs.create(d.ino, "x", 0o644, me)).rejects.toThrow(/ENOENT/);
    await expect(fs.readdir(d.ino, 0n, 10)).rejects.toThrow(/ENOENT/);
    await expectClean(fs, [d.ino, old]);
    await fs.release(d.ino);
    await fs.release(old);
    await expectClean(fs);
  });

  it("frees every orphan at the next read-write open after a power cut", async () => {
    let host = new CrashHost();
    const dev = await FileBlockDevice.create(host, "/dev", 2048 * BS);
    await FileSystem.mkfs(dev, me);
    const fs = await FileSystem.open(dev);
    const a = await file(fs, "a", 50_000, 1);
    const b = await file(fs, "b", 20, 2);
    const kept = await file(fs, "kept", 30_000, 3);
    await fs.flush();
    const free = fs.context.alloc.freeBlocks;
    const ownedA = (await fs.getattr(a)).blocks / 8;
    const ownedB = (await fs.getattr(b)).blocks / 8;
    await fs.open(a);
    await fs.open(b);
    await fs.unlink(ROOT, "a");
    await fs.rename(ROOT, "kept", ROOT, "b"); // b replaced while open
    await fs.fsync();
    host = host.reboot("drop");
    const back = await FileBlockDevice.open(host, "/dev");

    const seen = await fsck(back); // leaves the list as it is
    expect(seen.problems).toEqual([]);
    expect(seen.orphans).toBe(2);
    const after = await FileSystem.open(back);
    expect(after.recovery.freedOrphans.sort()).toEqual([a, b].sort());
    await expect(after.getattr(a)).rejects.toThrow(/ENOENT/);
    await expect(after.getattr(b)).rejects.toThrow(/ENOENT/);
    expect(after.context.alloc.freeBlocks).toBe(free + ownedA + ownedB);
    expect(
      (await after.read((await after.lookup(ROOT, "b")).ino, 0, 30_000)).equals(bytes(30_000, 3)),
    ).toBe(true);
    expect((await after.lookup(ROOT, "b")).ino).toBe(kept);
    await expectClean(after);
    const again = await FileSystem.open(back);
    expect(again.recovery.freedOrphans).toEqual([]);
  });

  it("leaves a clean filesystem, the file either there or freed, at any power cut of an unlink while open", async () => {
    let cut = 1;
    for (let done = false; !done; cut++) {
      let host = new CrashHost();
      const dev = await FileBlockDevice.create(host, "/dev", 1024 * BS);
      await FileSystem.mkfs(dev, me);
      const fs = await FileSystem.open(dev);
      const ino = await file(fs, "f", 40_000);
      await fs.flush();
      const free = fs.context.alloc.freeBlocks;
      await fs.open(ino);
      host.arm({ cutAfter: cut });
      try {
        await fs.unlink(ROOT, "f");
        await fs.fsync();
        await fs.release(ino);
        await fs.fsync();
        done = true; // no cut: every point has been tried
      } catch (e) {
        if (!(e instanceof PowerCut) && !isFsError(e, "EIO")) throw e;
      }
      host = host.reboot(cut % 2 ? "drop" : "random");
      const back = await FileBlockDevice.open(host, "/dev");
      expect((await fsck(back)).problems, `cut at ${cut}`).toEqual([]);
      const after = await FileSystem.open(back);
      await expectClean(after);
      const named = await after.lookup(ROOT, "f").then(
        () => true,
        () => false,
      );
      if (named) expect((await after.read(ino, 0, 40_000)).equals(bytes(40_000, 1))).toBe(true);
      else await expect(after.getattr(ino)).rejects.toThrow(/ENOENT/);
      expect(after.context.alloc.freeBlocks).toBe(named ? free : free + 11);
    }
    expect(cut).toBeGreaterThan(5);
  });

  it("holds the orphan in a snapshot taken while the file was unlinked but open", async () => {
    const dir = mkdtempSync(join(tmpdir(), "shadowfs-orphans-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const vol = await CowVolume.create(new NodeHostFs(), join(dir, "store"), {
      volumeSize: 16 << 20,
      logger: quiet,
    });
    cleanups.push(() => vol.close());
    await FileSystem.mkfs(vol, me);
    const fs = await FileSystem.open(vol);
    const ino = await file(fs, "log", 30_000, 7);
    await fs.open(ino);
    await fs.unlink(ROOT, "log");
    await fs.flush();
    const snap = await vol.createSnapshot();
    await fs.release(ino);
    await fs.flush();
    await expectClean(fs);

    const report = await fsck(vol.snapshotDevice(snap.id));
    expect(report).toMatchObject({ ok: true, problems: [], orphans: 1 });
    const old = await FileSystem.open(vol.snapshotDevice(snap.id));
    expect(old.recovery.freedOrphans).toEqual([]); // read-only: kept
    expect(await old.orphans()).toEqual([ino]);
    expect((await old.read(ino, 0, 30_000)).equals(bytes(30_000, 7))).toBe(true);
    await expect(old.lookup(ROOT, "log")).rejects.toThrow(/ENOENT/);
    await old.release(ino);
    expect(await old.orphans()).toEqual([ino]);
  });
});
