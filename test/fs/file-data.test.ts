// File contents against a model: random writes, truncations and reads at any offset, holes as
// zeros, a 1 TiB sparse file that owns only what was written, and EFBIG past the largest file.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import { FileData, MAX_FILE_SIZE } from "../../src/fs/file-data.js";
import { emptyInode } from "../../src/fs/inode.js";
import { formatLayers, mountLayers } from "../helpers/fs-layers.js";
import { int, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;

async function setup() {
  const dev = new MemoryBlockDevice(8192 * BS);
  await formatLayers(dev, 256);
  const { meta, alloc } = await mountLayers(dev);
  return { meta, alloc, data: new FileData({ dev, meta, alloc }) };
}

describe("file data", () => {
  it.each(seeds(6))(
    "reads back what a model holds after random writes and truncations: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const { meta, alloc, data } = await setup();
        const start = alloc.freeBlocks;
        const ino = emptyInode(2);
        let model = Buffer.alloc(0);
        for (let step = 0; step < 150; step++) {
          const r = rand();
          if (r < 0.6) {
            const off = int(rand, 0, 300_000);
            const bytes = Buffer.alloc(int(rand, 1, 40_000), int(rand, 1, 255));
            await meta.run(() => data.write(ino, off, bytes));
            if (model.length < off + bytes.length)
              model = Buffer.concat([model, Buffer.alloc(off + bytes.length - model.length)]);
            bytes.copy(model, off);
          } else if (r < 0.75) {
            const size = int(rand, 0, 320_000);
            await meta.run(() => data.truncate(ino, size));
            model =
              size <= model.length
                ? Buffer.from(model.subarray(0, size))
                : Buffer.concat([model, Buffer.alloc(size - model.length)]);
          } else {
            const off = int(rand, 0, 330_000);
            const got = await data.read(ino, off, int(rand, 0, 70_000));
            const want = model.subarray(
              Math.min(off, model.length),
              Math.min(model.length, off + got.length),
            );
            expect(got.equals(want), `read at ${off}`).toBe(true);
          }
          expect(ino.size).toBe(model.length);
          if (rand() < 0.2) await meta.commit();
        }
        const all = await data.read(ino, 0, model.length + 10);
        expect(all.equals(model)).toBe(true);
        await meta.run(() => data.truncate(ino, 0));
        expect(alloc.freeBlocks).toBe(start);
      }),
  );

  it("keeps a 1 TiB sparse file in a handful of blocks", async () => {
    const { meta, alloc, data } = await setup();
    const start = alloc.freeBlocks;
    const ino = emptyInode(3);
    const tib = 2 ** 40;
    await meta.run(() => data.write(ino, tib - 10, Buffer.from("the end of a terabyte")));
    expect(ino.size).toBe(tib + 11);
    expect(start - alloc.freeBlocks).toBeLessThanOrEqual(2 + 4); // two data blocks and their indirect path
    expect((await data.read(ino, tib - 12, 100)).toString("latin1")).toBe(
      "\0\0the end of a terabyte",
    );
    expect((await data.read(ino, 5 * 2 ** 30, 8)).equals(Buffer.alloc(8))).toBe(true);
    await expect(meta.run(() => data.write(ino, MAX_FILE_SIZE, Buffer.from("x")))).rejects.toThrow(
      /EFBIG/,
    );
    await expect(meta.run(() => data.truncate(ino, MAX_FILE_SIZE + 1))).rejects.toThrow(/EFBIG/);
  });
});
