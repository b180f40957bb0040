// The inode table: numbers from 1 up, a table that grows as inodes are taken, generations that
// advance on reuse, and everything read back after a remount.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { formatLayers, mountLayers } from "../helpers/fs-layers.js";

const BS = 4096;

const mount = mountLayers;

async function fresh(blocks = 8192) {
  const dev = new MemoryBlockDevice(blocks * BS);
  await formatLayers(dev, 512);
  return { dev, ...(await mount(dev)) };
}

describe("inode table", () => {
  it("hands out numbers from 1, grows, keeps what is written, and reuses freed numbers with a new generation", async () => {
    const { dev, meta, table } = await fresh();
    const inos: number[] = [];
    await meta.run(async () => {
      for (let i = 0; i < 40; i++) {
        const ino = await table.allocate();
        ino.mode = 0o100600;
        ino.size = i * 1000;
        ino.mtime = { sec: 1_700_000_000 + i, nsec: i };
        await table.put(ino);
        inos.push(ino.ino);
      }
    });
    expect(inos).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(table.capacity).toBe(48);
    await meta.run(() => table.free(7));
    await expect(meta.run(() => table.free(7))).rejects.toThrow(/inode 7: freed twice/);
    const again = await meta.run(() => table.allocate());
    expect(again.ino).toBe(7);
    expect(again.generation).toBe(2);
    expect(again.mode).toBe(0);
    await meta.checkpoint();
    const back = await mount(dev);
    const got = await back.table.get(12);
    expect(got).toMatchObject({
      ino: 12,
      mode: 0o100600,
      size: 11000,
      mtime: { sec: 1_700_000_011, nsec: 11 },
    });
    expect(await back.table.inUse(7)).toBe(true);
    expect((await back.table.get(7)).mode).toBe(0); // taken but not yet written
    expect((await back.table.get(1000)).mode).toBe(0); // past the table
    expect(await back.table.inUse(1000)).toBe(false);
    await expect(back.table.get(0)).rejects.toThrow(/EINVAL/);
  });

  it("answers peek without waiting once the inode's block is in memory, as get reads it", async () => {
    const { dev, meta, table } = await fresh();
    await meta.run(async () => {
      for (let i = 0; i < 20; i++) {
        const ino = await table.allocate();
        ino.mode = 0o100644;
        ino.size = 100 + i;
        await table.put(ino);
      }
    });
    await meta.checkpoint();
    const back = await mount(dev);
    expect(back.table.peek(3)).toBeUndefined(); // its block not read yet
    await back.table.get(2); // reads the block that holds inodes 0 to 15
    expect(back.table.peek(3)?.size).toBe(102);
    expect(back.table.peek(3)).toEqual(await back.table.get(3));
    expect(back.table.peek(18)).toBeUndefined(); // in the next block, not read yet
    await back.table.get(17);
    expect(back.table.peek(18)?.size).toBe(117);
    expect(back.table.peek(25)?.mode).toBe(0); // in that block, never taken
    expect(back.table.peek(0)).toBeUndefined();
  });

  it("grows its bitmap past 32768 inodes", async () => {
    const { meta, table, alloc } = await fresh(16384);
    const before = alloc.freeBlocks;
    let last = 0;
    for (let round = 0; round < 70; round++) {
      await meta.run(async () => {
        for (let i = 0; i < 500; i++) last = (await table.allocate()).ino;
      });
      await meta.commit();
    }
    expect(last).toBe(35000);
    expect(await table.inUse(34999)).toBe(true);
    // 35000 slots need 2188 table blocks, plus two bitmap blocks and the indirect blocks.
    expect(before - alloc.freeBlocks).toBeGreaterThanOrEqual(2188 + 2);
    expect(before - alloc.freeBlocks).toBeLessThan(2188 + 2 + 8);
  });
});
