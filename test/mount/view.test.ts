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
    const lookup = ro.lookup.bind(ro);
    ro.lookup = (parent, name, cred) => {
      searched.push(String(name));
      return lookup(parent, name, cred);
    };
    const view = new View(ro, "@GMT-2026.12.05-10.00.00");
    for (let i = count - 1; i >= 0; i--) expect(await view.resolve(["d", `f${i}`])).toBe(inos[i]);
    // "d" comes from the root's listing, LIST_ENTRIES entries of d's from its own (two of them
    // "." and ".."); each name past those takes a search.
    expect(searched.length).toBe(count - (LIST_ENTRIES - 2));
    await expect(view.resolve(["d", "missing"])).rejects.toThrow(/ENOENT/);
    await expect(view.resolve(["plain", "x"])).rejects.toThrow(/ENOTDIR/);
    await ro.close();
  });
});
