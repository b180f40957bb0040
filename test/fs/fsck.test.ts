// fsck finds each kind of damage by name, and a power cut at any point of a random workload
// leaves a filesystem that fsck finds clean, with everything fsync'd before the cut still there.

import { describe, expect, it } from "vitest";
import { FileBlockDevice, MemoryBlockDevice } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check, fsck } from "../../src/fs/fsck.js";
import { CrashHost, PowerCut } from "../helpers/crash-host.js";
import { int, pick, type Rand, seededBytes, seeds, withSeed } from "../helpers/random.js";

const me = { uid: 0, gid: 0, groups: [] };
const BS = 4096;

async function populated() {
  const dev = new MemoryBlockDevice(32 << 20);
  await FileSystem.mkfs(dev);
  const fs = await FileSystem.open(dev);
  const d = await fs.mkdir(ROOT, "d", 0o755, me);
  const f = await fs.create(d.ino, "f", 0o644, me);
  await fs.write(f.ino, 0, Buffer.alloc(50_000, 3));
  await fs.link(f.ino, ROOT, "f2");
  await fs.symlink(ROOT, "s", "d/f", me);
  await fs.flush();
  return { dev, fs, d, f };
}

describe("fsck", () => {
  it("finds a fresh and a populated filesystem clean", async () => {
    const dev = new MemoryBlockDevice(8 << 20);
    await FileSystem.mkfs(dev);
    expect((await fsck(dev)).problems).toEqual([]);
    const { dev: full } = await populated();
    const r = await fsck(full);
    expect(r.problems).toEqual([]);
    expect(r).toMatchObject({ ok: true, directories: 2, files: 2 });
  });

  it("reports a wrong link count, a leaked block and a block marked free", async () => {
    const { fs, f } = await populated();
    await fs.context.meta.run(async () => {
      const ino = await fs.context.table.get(f.ino);
      ino.nlink = 5;
      await fs.context.table.put(ino);
      await fs.context.alloc.allocate(1, fs.context.sb.totalBlocks - 10);
    });
    const data = (await fs.context.table.get(f.ino)).ptrs[0]!;
    await fs.context.meta.run(() => fs.context.alloc.release([data]));
    const r = await check(fs);
    expect(r.ok).toBe(false);
    expect(r.problems).toContain(`inode ${f.ino}: link count 5, but 2 names`);
    expect(r.problems).toContain(
      `block ${fs.context.sb.totalBlocks - 10} is marked in use but nothing owns it (leaked)`,
    );
    expect(r.problems).toContain(`block ${data} is used by inode ${f.ino} but marked free`);
  });

  it("reports a damaged inode and an unreadable superblock", async () => {
    const { dev, fs, f } = await populated();
    const slotBlock = (await fs.context.table.systemInodes()[0]!.ptrs[0])!;
    const b = Buffer.alloc(BS);
    await dev.read(slotBlock * BS, b);
    b[(f.ino % 16) * 256 + 20]! ^= 0xff;
    await dev.write(slotBlock * BS, b);
    expect((await fsck(dev)).problems.join("\n")).toMatch(
      new RegExp(`inode ${f.ino}.*checksum mismatch`),
    );
    await dev.write(0, Buffer.alloc(BS));
    expect((await fsck(dev)).problems[0]).toMatch(
      /cannot open: .*superblock: not a shadowfs filesystem/,
    );
  });

  it.each(seeds(60))(
    "is clean after a power cut during a random workload, keeping what was fsync'd: seed %i",
    (seed) => withSeed(seed, (rand) => crashRun(rand, seed)),
  );
});

/**
 * Random namespace and data operations, some on files held open (so that unlinking or replacing
 * them leaves orphans); after each fsync, what must survive is recorded.
 */
async function crashRun(rand: Rand, seed: number): Promise<void> {
  let host = new CrashHost();
  const dev = await FileBlockDevice.create(host, "/dev", 4096 * BS);
  // The root's hash key from the seed (the run makes no other directory): a run repeats exactly.
  await FileSystem.mkfs(dev, { journalBlocks: 128, dirKeys: seededBytes(seed ^ 0xd1e5, 16) });
  const fs = await FileSystem.open(dev);
  const files = new Map<string, Buffer>(); // name in the root → contents now
  const inoOf = new Map<string, number>();
  let durable = new Map<string, Buffer>();
  const touched = new Set<string>();
  const open: number[] = []; // inode numbers, one per handle
  const write = (name: string, off: number, data: Buffer) => {
    const old = files.get(name)!;
    const next = Buffer.alloc(Math.max(old.length, off + data.length));
    old.copy(next);
    data.copy(next, off);
    files.set(name, next);
  };
  host.arm({ cutAfter: int(rand, 1, 600) });
  try {
    for (let i = 0; i < 150; i++) {
      const names = [...files.keys()];
      const r = names.length === 0 ? 0 : rand();
      const name = r < 0.28 ? `f${int(rand, 0, 30)}` : pick(rand, names);
      touched.add(name);
      if (r < 0.28) {
        if (files.has(name)) continue;
        inoOf.set(name, (await fs.create(ROOT, name, 0o644, me)).ino);
        files.set(name, Buffer.alloc(0));
      } else if (r < 0.53) {
        const off = int(rand, 0, 20_000);
        const data = Buffer.alloc(int(rand, 1, 9000), int(rand, 1, 255));
        await fs.write((await fs.lookup(ROOT, name)).ino, off, data);
        write(name, off, data);
      } else if (r < 0.62) {
        const size = int(rand, 0, 10_000);
        await fs.setattr((await fs.lookup(ROOT, name)).ino, { size });
        const old = files.get(name)!;
        const next = Buffer.alloc(size);
        old.copy(next, 0, 0, Math.min(size, old.length));
        files.set(name, next);
      } else if (r < 0.71) {
        await fs.unlink(ROOT, name);
        files.delete(name);
        inoOf.delete(name);
      } else if (r < 0.8) {
        const to = `f${int(rand, 0, 30)}`;
        touched.add(to);
        if (to === name) continue;
        await fs.rename(ROOT, name, ROOT, to);
        files.set(to, files.get(name)!);
        inoOf.set(to, inoOf.get(name)!);
        files.delete(name);
        inoOf.delete(name);
      } else if (r < 0.9) {
        // Open a file; write through a handle (its file may have no name left); release one.
        const q = rand();
        if (q < 0.4 || open.length === 0) {
          const ino = inoOf.get(name)!;
          await fs.open(ino);
          open.push(ino);
        } else if (q < 0.6) {
          const ino = pick(rand, open);
          const off = int(rand, 0, 20_000);
          const data = Buffer.alloc(int(rand, 1, 5000), int(rand, 1, 255));
          await fs.write(ino, off, data);
          for (const [n, i] of inoOf) {
            if (i !== ino) continue;
            touched.add(n);
            write(n, off, data);
          }
        } else await fs.release(open.splice(int(rand, 0, open.length - 1), 1)[0]!);
      } else {
        await (rand() < 0.5 ? fs.fsync() : fs.flush());
        durable = new Map([...files].map(([k, v]) => [k, Buffer.from(v)]));
        touched.clear();
      }
    }
  } catch (e) {
    if (!(e instanceof PowerCut) && !isFsError(e, "EIO")) throw e;
  }
  host = host.reboot(rand() < 0.5 ? "drop" : "random", rand);
  const back = await FileBlockDevice.open(host, "/dev");
  const report = await fsck(back);
  expect(report.problems).toEqual([]);
  const after = await FileSystem.open(back);
  // Orphans (files unlinked while open) are freed by the open: none is left, nothing leaks.
  expect(after.recovery.freedOrphans.length).toBe(report.orphans);
  const again = await check(after);
  expect(again.problems).toEqual([]);
  expect(again).toMatchObject({ notes: [], orphans: 0 });
  for (const [name, content] of durable) {
    if (touched.has(name)) continue;
    const got = await after.read((await after.lookup(ROOT, name)).ino, 0, content.length + 10);
    expect(got.equals(content), `${name} lost what was fsync'd`).toBe(true);
  }
}
