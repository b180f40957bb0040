// Paths resolved through a view's cache of names: in a read-only view the first lookup in a
// directory lists it into the cache, and every name still resolves to what the filesystem says.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem, ROOT, SUPERUSER } from "../../src/fs/filesystem.js";
import { LIST_ENTRIES, View } from "../../src/mount/view.js";
import { countingReads } from "../helpers/fs-layers.js";

describe("a read-only view", () => {
  it("resolves every name of a directory larger than one listing, searching only for the rest", async () => {
    const dev = new MemoryBlockDevice(256 << 20);
    await FileSystem.mkfs(dev, {});
    const fs = await FileSystem.open(dev);
    const d = await fs.mkdir(ROOT, "d", 0o755, SUPERUSER);
    const count = LIST_ENTRIES + 300;
    const inos: number[] = [];
    for (let i = 0; i < count; i++)
      inos.push((await fs.create(d.ino, `f${i}`, 0o644, SUPERUSER)).ino);
    await fs.create(ROOT, "plain", 0o644, SUPERUSER);
    await fs.close();

    const ro = await FileSystem.open(countingReads(dev).dev);
    const searched: string[] = [];
    const find = ro.find.bind(ro);
    ro.find = (parent, name, cred) => {
      searched.push(String(name));
      return find(parent, name, cred);
    };
    const view = new View(ro, "@GMT-2026.12.05-10.00.00");
    for (let i = count - 1; i >= 0; i--) expect(await view.resolve(["d", `f${i}`])).toBe(inos[i]);
    // "d" comes from the root's listing, LIST_ENTRIES entries of d's from its own (two of them
    // "." and ".."); each name past those takes a search.
    expect(searched.length).toBe(count - (LIST_ENTRIES - 2));
    expect(await view.resolve(["d", "missing"])).toBeUndefined();
    expect(await view.resolve(["d", "missing", "below"])).toBeUndefined();
    await expect(view.resolve(["plain", "x"])).rejects.toThrow(/ENOTDIR/);
    await ro.close();
  });
});

describe("production's view", () => {
  async function production() {
    const dev = new MemoryBlockDevice(64 << 20);
    await FileSystem.mkfs(dev, {});
    const fs = await FileSystem.open(dev);
    const searched: string[] = [];
    const find = fs.find.bind(fs);
    fs.find = (parent, name, cred) => {
      searched.push(String(name));
      return find(parent, name, cred);
    };
    return { fs, view: new View(fs, "production"), searched };
  }

  it("keeps a name found absent until it is told the name changed", async () => {
    const { fs, view, searched } = await production();
    expect(await view.resolve(["x"])).toBeUndefined();
    expect(await view.resolve(["x"])).toBeUndefined();
    expect(searched).toEqual(["x"]);
    // Made behind the view's back: it answers what it kept until told.
    const x = await fs.create(ROOT, "x", 0o644, SUPERUSER);
    expect(await view.resolve(["x"])).toBeUndefined();
    view.forget(ROOT, "x");
    expect(await view.resolve(["x"])).toBe(x.ino);
    await fs.unlink(ROOT, "x");
    view.forget(ROOT, "x");
    expect(await view.resolve(["x"])).toBeUndefined();
    const y = await fs.create(ROOT, "x", 0o644, SUPERUSER);
    view.named(ROOT, "x", y.ino);
    expect(await view.resolve(["x"])).toBe(y.ino);
  });

  it("keeps nothing a lookup found while a name changed", async () => {
    const { fs, view } = await production();
    // The search is under way when the name is made and the view told: what it found (absent)
    // may be older than the change, so it is not kept.
    const searching = view.resolve(["x"]);
    const made = fs.create(ROOT, "x", 0o644, SUPERUSER);
    view.forget(ROOT, "x");
    expect(await searching).toBeUndefined();
    const x = await made;
    expect(await view.resolve(["x"])).toBe(x.ino);
  });
});
