// The names an inode lists (format 2): kept exactly by every operation that makes or removes a
// name, more than six names flagged and unflagged, and fsck naming a list that is wrong.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check } from "../../src/fs/fsck.js";
import { FLAG_MORE_NAMES } from "../../src/fs/inode.js";
import { pick, seededBytes, seeds, withSeed } from "../helpers/random.js";

const me = { uid: 0, gid: 0, groups: [] };

async function fresh(dirKeys?: () => Buffer) {
  const dev = new MemoryBlockDevice(16 << 20);
  await FileSystem.mkfs(dev, { dirKeys });
  return FileSystem.open(dev, { dirKeys });
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

  it("unflags a file once a rename or an exchange moves a name it did not list into its list", async () => {
    // Seven names, six listed; one listed goes: six names, five listed, flagged. The unlisted
    // name (f6) then moves, and its new entry takes the room in the list: all six are listed.
    const flagged = async (fs: FileSystem) => {
      const f = await fs.create(ROOT, "f0", 0o644, me);
      for (let i = 1; i < 7; i++) await fs.link(f.ino, ROOT, `f${i}`);
      await fs.unlink(ROOT, "f0");
      expect((await fs.context.table.get(f.ino)).names).toHaveLength(5);
      expect((await listed(fs, f.ino)).more).toBe(true);
      expect((await check(fs)).problems).toEqual([]);
      return f.ino;
    };
    const moves: Array<[string, (fs: FileSystem, other: number) => Promise<void>]> = [
      ["rename to a free name", (fs) => fs.rename(ROOT, "f6", ROOT, "g")],
      ["rename into another directory", (fs, d) => fs.rename(ROOT, "f6", d, "g")],
      ["rename over another file", (fs) => fs.rename(ROOT, "f6", ROOT, "x")],
      ["exchange with another file", (fs) => fs.rename(ROOT, "f6", ROOT, "x", { exchange: true })],
      ["exchange, as its target", (fs) => fs.rename(ROOT, "x", ROOT, "f6", { exchange: true })],
    ];
    const got: Record<string, unknown> = {};
    for (const [how, move] of moves) {
      const fs = await fresh();
      const d = await fs.mkdir(ROOT, "d", 0o755, me);
      await fs.create(ROOT, "x", 0o644, me);
      const f = await flagged(fs);
      await move(fs, d.ino);
      const { names, nlink } = await fs.context.table.get(f);
      const { more } = await listed(fs, f);
      got[how] = { nlink, listed: names.length, more, problems: (await check(fs)).problems };
    }
    const want = { nlink: 6, listed: 6, more: false, problems: [] };
    expect(got).toEqual(Object.fromEntries(moves.map(([how]) => [how, want])));
  });

  it.each(seeds(4))(
    "stay exact as two files' names go above and below six by links, unlinks, renames and exchanges: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const fs = await fresh(seededBytes(seed ^ 0xd1e5, 16));
        const dirs = [ROOT];
        for (const n of ["d1", "d2"]) dirs.push((await fs.mkdir(ROOT, n, 0o755, me)).ino);
        // Named outside NAMES, which the steps use: each file keeps this one name.
        const files = [(await fs.create(dirs[1]!, "A", 0o644, me)).ino];
        files.push((await fs.create(dirs[2]!, "B", 0o644, me)).ino);
        const NAMES = Array.from({ length: 10 }, (_, i) => `n${i}`);
        const log: string[] = [];
        for (let i = 0; i < 300; i++) {
          const r = rand();
          const [d, e, n, m] = [
            pick(rand, dirs),
            pick(rand, dirs),
            pick(rand, NAMES),
            pick(rand, NAMES),
          ];
          const how = rand() < 0.3 ? { exchange: true } : rand() < 0.15 ? { noReplace: true } : {};
          const op =
            r < 0.4
              ? { what: `link ${d}/${n}`, run: () => fs.link(pick(rand, files), d, n) }
              : r < 0.6
                ? { what: `unlink ${d}/${n}`, run: () => fs.unlink(d, n) }
                : r < 0.97
                  ? {
                      what: `rename ${d}/${n} ${e}/${m} ${JSON.stringify(how)}`,
                      run: () => fs.rename(d, n, e, m, how),
                    }
                  : { what: `mkdir ${d}/${n}`, run: () => fs.mkdir(d, n, 0o755, me) };
          const failed = await op.run().then(
            () => "",
            (err: unknown) => {
              if (!isFsError(err)) throw err;
              return ` (${err.code})`;
            },
          );
          log.push(`${i}: ${op.what}${failed}`);
          const { problems } = await check(fs);
          expect(problems, log.slice(-8).join("\n")).toEqual([]);
        }
      }),
  );

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
