// Freeing more blocks than one journal transaction can hold: a sparse file spread over a 1 TiB
// range and over the whole (sparse) device is truncated and deleted in parts, each one crash-safe,
// and a power cut in the middle leaves a consistent filesystem whose next open finishes the job.

import { describe, expect, it } from "vitest";
import { blocksOf } from "../../src/fs/block-map.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { check, fsck } from "../../src/fs/fsck.js";
import { PowerCut } from "../helpers/crash-host.js";
import { seeded } from "../helpers/random.js";
import { SparseCrashDevice } from "./sparse-crash-device.js";

const BS = 4096;
const BITS = BS * 8;
const me = { uid: 0, gid: 0, groups: [] };
/** 32 bitmap blocks: a file spread over all of them needs more than this journal holds at once. */
const DEVICE = 4 * 2 ** 30;
const JOURNAL = 32;
const TIB = 2 ** 40;
const GROUPS = DEVICE / BS / BITS;

/** What a byte of the file holds: it depends on the offset only. */
const fill = (offset: number, length: number) =>
  Buffer.from(Array.from({ length }, (_, i) => ((offset + i) % 253) + 1));

/**
 * A file whose blocks lie 1 TiB / GROUPS apart in the file (under the single, double and triple
 * indirect pointers) and in every bitmap block of the device: to free them all at once, a
 * transaction would need every bitmap block, more than the journal holds. Built once; each test
 * opens a copy of the flushed device.
 */
const built = (async () => {
  const dev = new SparseCrashDevice(DEVICE);
  await FileSystem.mkfs(dev, { journalBlocks: JOURNAL });
  const fs = await FileSystem.open(dev);
  const f = await fs.create(ROOT, "huge", 0o644, me);
  const keep = await fs.create(ROOT, "neighbour", 0o644, me);
  await fs.write(keep.ino, 0, fill(0, 3 * BS));
  const writes: Array<{ offset: number; bytes: Buffer }> = [];
  for (let g = 0; g < GROUPS; g++) {
    // The allocator searches on from where it last took a block: move that into group g.
    await fs.context.meta.run(async () => {
      const [b] = await fs.context.alloc.allocate(1, g * BITS + 100);
      await fs.context.alloc.release([b!]);
    });
    const offset = g === 0 ? 5 * BS : g * (TIB / GROUPS) + (g % 5) * 777;
    const bytes = fill(offset, BS + 300);
    await fs.write(f.ino, offset, bytes);
    writes.push({ offset, bytes });
  }
  await fs.flush();
  const { data, indirect } = await blocksOf(fs.context, await fs.context.table.get(f.ino));
  const blocks = [...data.map(([, b]) => b), ...indirect];
  return {
    dev,
    ino: f.ino,
    writes,
    size: writes.at(-1)!.offset + BS + 300,
    groups: new Set(blocks.map((b) => Math.floor(b / BITS))).size,
    owned: blocks.length,
  };
})();

async function scattered() {
  const b = await built;
  const dev = b.dev.copy();
  const fs = await FileSystem.open(dev);
  return { ...b, dev, fs, free: fs.context.alloc.freeBlocks };
}

async function expectClean(fs: FileSystem) {
  const report = await check(fs);
  expect(report.problems).toEqual([]);
  expect(report.notes).toEqual([]);
  expect(await fs.orphans()).toEqual([]);
  expect(report.blocksUsed).toBe(
    fs.context.sb.totalBlocks - fs.context.sb.dataStart - fs.context.alloc.freeBlocks,
  );
  expect(
    (await fs.read((await fs.lookup(ROOT, "neighbour")).ino, 0, 4 * BS)).equals(fill(0, 3 * BS)),
  ).toBe(true);
}

/** Truncates the file to nothing, or deletes it. */
async function run(fs: FileSystem, op: "truncate" | "unlink", ino: number): Promise<void> {
  if (op === "truncate") await fs.setattr(ino, { size: 0 });
  else await fs.unlink(ROOT, "huge");
}

describe("huge truncations", () => {
  it("truncates in parts a file spread wider than the journal holds, then deletes it", async () => {
    const { dev, fs, ino, writes, groups, owned, size, free } = await scattered();
    expect(groups).toBe(GROUPS);
    expect(groups).toBeGreaterThan(fs.context.meta.room); // more bitmap blocks than one transaction takes
    expect(dev.blocksStored).toBeLessThan(1000);
    expect((await fs.getattr(ino)).size).toBe(size);

    // Down to the first half of the file: what is kept still reads as written.
    const half = writes[GROUPS / 2]!.offset + 10;
    await fs.setattr(ino, { size: half });
    expect((await fs.getattr(ino)).size).toBe(half);
    for (const w of writes.slice(0, GROUPS / 2))
      expect((await fs.read(ino, w.offset, w.bytes.length)).equals(w.bytes)).toBe(true);
    const cut = writes[GROUPS / 2]!.bytes.subarray(0, 10);
    expect((await fs.read(ino, half - 10, 100)).equals(cut)).toBe(true);
    await expectClean(fs);

    await fs.setattr(ino, { size: 0 });
    expect((await fs.getattr(ino)).blocks).toBe(0);
    expect(fs.context.alloc.freeBlocks).toBe(free + owned);
    await expectClean(fs);
    await fs.unlink(ROOT, "huge");
    await expect(fs.getattr(ino)).rejects.toThrow(/ENOENT/);
    await fs.flush();
    await expectClean(await FileSystem.open(dev));
  });

  it("deletes such a file in parts, and frees it at the last release when it was open", async () => {
    const a = await scattered();
    await a.fs.unlink(ROOT, "huge");
    await expect(a.fs.getattr(a.ino)).rejects.toThrow(/ENOENT/);
    expect(a.fs.context.alloc.freeBlocks).toBe(a.free + a.owned);
    await expectClean(a.fs);

    const b = await scattered();
    await b.fs.open(b.ino);
    await b.fs.rename(ROOT, "neighbour", ROOT, "huge"); // replaces it: an orphan now
    await b.fs.rename(ROOT, "huge", ROOT, "neighbour");
    expect(await b.fs.orphans()).toEqual([b.ino]);
    expect(
      (await b.fs.read(b.ino, b.writes[3]!.offset, 10)).equals(b.writes[3]!.bytes.subarray(0, 10)),
    ).toBe(true);
    expect((await check(b.fs)).ok).toBe(true);
    await b.fs.release(b.ino);
    expect(b.fs.context.alloc.freeBlocks).toBe(b.free + b.owned);
    await expectClean(b.fs);
  });

  it.each(["truncate", "unlink"] as const)(
    "finishes a %s cut short by a power cut at the next open",
    async (op) => {
      // How many device writes and flushes the whole operation takes.
      const probe = await scattered();
      const start = probe.dev.ops;
      await run(probe.fs, op, probe.ino);
      const total = probe.dev.ops - start;
      // Cut points spread over them, in both crash modes.
      const cuts = [
        ...new Set(Array.from({ length: 10 }, (_, i) => 1 + Math.floor((i * total) / 10))),
      ];
      const rand = seeded(total);
      let finished = 0;
      for (const cut of cuts) {
        for (const mode of ["drop", "random"] as const) {
          const { dev, fs, ino, owned, size, free } = await scattered();
          dev.arm(cut);
          await expect(run(fs, op, ino)).rejects.toThrow(PowerCut);
          const back = dev.reboot(mode, rand);
          const seen = await fsck(back);
          expect(seen.problems, `cut ${cut} of ${total}, ${mode}`).toEqual([]);
          const after = await FileSystem.open(back);
          const { freedOrphans, finishedTruncations } = after.recovery;
          if (seen.orphans > 0) {
            finished++;
            expect(op === "truncate" ? finishedTruncations : freedOrphans).toEqual([ino]);
          }
          await expectClean(after);
          // Either the operation happened, whole, or not at all.
          const now =
            op === "unlink"
              ? await after.getattr(ino).then(
                  (a) => a.size,
                  () => 0,
                )
              : (await after.getattr(ino)).size;
          expect([0, size]).toContain(now);
          expect(after.context.alloc.freeBlocks).toBe(now === 0 ? free + owned : free);
        }
      }
      // Some cuts fell between the parts: the open finished an operation left half done.
      expect(finished).toBeGreaterThan(0);
    },
  );
});
