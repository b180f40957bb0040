// The names an inode lists (format 2): kept exactly by every operation that makes or removes a
// name, more than six names flagged and unflagged, and fsck naming a list that is wrong.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check } from "../../src/fs/fsck.js";
import { FLAG_MORE_NAMES } from "../../src/fs/inode.js";

const me = { uid: 0, gid: 0, groups: [] };

async function fresh() {
  const dev = new MemoryBlockDevice(16 << 20);
  await FileSystem.mkfs(dev);
  return FileSystem.open(dev);
}

/** The directories an inode lists names in, sorted, and whether it says it has more. */
async function listed(fs: FileSystem, ino: number) {
  const inode = await fs.context.table.get(ino);
  return {
    parents: inode.names.map((r) => r.parent).sort((a, b) => a - b),
    more: (inode.flags & FLAG_MORE_NAMES) !== 0,
  };
}

describe("names an inode lists", () => {
  it("follow create, link, rename, exchange, unlink and rmdir, and check clean", async () => {
    const fs = await fresh();
    const a = await fs.mkdir(ROOT, "a", 0o755, me);
    const b = await fs.mkdir(ROOT, "b", 0o755, me);
    const f = await fs.create(a.ino, "f", 0o644, me);
    expect(await listed(fs, f.ino)).toEqual({ parents: [a.ino], more: false });
    expect(await listed(fs, a.ino)).toEqual({ parents: [ROOT], more: false });
    expect(await listed(fs, ROOT)).toEqual({ parents: [], more: false });
    await fs.link(f.ino, b.ino, "g");
    expect(await listed(fs, f.ino)).toEqual({ parents: [a.ino, b.ino], more: false });
    await fs.rename(a.ino, "f", ROOT, "top");
    expect(await listed(fs, f.ino)).toEqual({ parents: [ROOT, b.ino], more: false });
    await fs.rename(ROOT, "a", b.ino, "a2");
    expect(await listed(fs, a.ino)).toEqual({ parents: [b.ino], more: false });
    const x = await fs.create(a.ino, "x", 0o644, me);
    await fs.rename(ROOT, "top", a.ino, "x", { exchange: true });
    expect(await listed(fs, x.ino)).toEqual({ parents: [ROOT], more: false });
    expect(await listed(fs, f.ino)).toEqual({ parents: [a.ino, b.ino], more: false });
    await fs.rename(ROOT, "top", b.ino, "g"); // replaces one name of f
    expect(await listed(fs, f.ino)).toEqual({ parents: [a.ino], more: false });
    expect(await listed(fs, x.ino)).toEqual({ parents: [b.ino], more: false });
    await fs.unlink(a.ino, "x");
    expect((await check(fs)).problems).toEqual([]);
    await fs.rmdir(b.ino, "a2");
    expect((await fs.context.table.get(a.ino)).mode).toBe(0);
    expect((await check(fs)).problems).toEqual([]);
  });

  it("flags a file with more than six names until the list holds them all again", async () => {
    const fs = await fresh();
    const f = await fs.create(ROOT, "f0", 0o644, me);
    for (let i = 1; i < 8; i++) await fs.link(f.ino, ROOT, `f${i}`);
    expect((await fs.context.table.get(f.ino)).names).toHaveLength(6);
    expect((await listed(fs, f.ino)).more).toBe(true);
    expect((await check(fs)).problems).toEqual([]);
    await fs.unlink(ROOT, "f7"); // not listed: seven names, six listed
    expect((await listed(fs, f.ino)).more).toBe(true);
    await fs.unlink(ROOT, "f0"); // listed: six names, five listed
    expect((await listed(fs, f.ino)).more).toBe(true);
    await fs.unlink(ROOT, "f1"); // five names, four listed, the rest one
    expect((await check(fs)).problems).toEqual([]);
    await fs.unlink(ROOT, "f6");
    expect(await listed(fs, f.ino)).toMatchObject({ more: false });
    expect((await fs.context.table.get(f.ino)).names).toHaveLength(4);
    expect((await check(fs)).problems).toEqual([]);
  });

  it("fsck names a list that misses a name or lists one that is not", async () => {
    const fs = await fresh();
    const f = await fs.create(ROOT, "f", 0o644, me);
    await fs.link(f.ino, ROOT, "g");
    await fs.context.meta.run(async () => {
      const inode = await fs.context.table.get(f.ino);
      inode.names.pop();
      await fs.context.table.put(inode);
    });
    expect((await check(fs)).problems).toEqual([
      expect.stringMatching(new RegExp(`^inode ${f.ino} does not list its name \\(directory 1,`)),
    ]);
    await fs.context.meta.run(async () => {
      const inode = await fs.context.table.get(f.ino);
      inode.names.push({ parent: ROOT, h: 12345, m: 0 }, { parent: ROOT, h: 1, m: 1 });
      await fs.context.table.put(inode);
    });
    expect((await check(fs)).problems).toEqual([
      `inode ${f.ino} lists name (directory 1, key 12345:0), which is not one of its names`,
    ]);
  });
});
