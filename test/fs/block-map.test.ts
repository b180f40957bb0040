// File block maps: sparse and large files (1 TiB and beyond) cost only the blocks written;
// truncation frees exactly the blocks past the cut and the indirect blocks left empty.

import { describe, expect, it } from "vitest";
import { MemoryBlockDevice } from "../../src/cow/index.js";
import {
  ensureBlock,
  MAX_FILE_BLOCKS,
  mapBlock,
  PTRS,
  truncateBlocks,
} from "../../src/fs/block-map.js";
import {
  DIRECT,
  decodeInode,
  emptyInode,
  encodeInode,
  INODE_SIZE,
  type Inode,
} from "../../src/fs/inode.js";
import { formatLayers, mountLayers } from "../helpers/fs-layers.js";
import { int, pick, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;

async function setup() {
  const dev = new MemoryBlockDevice(16384 * BS);
  await formatLayers(dev, 256);
  const { meta, alloc } = await mountLayers(dev);
  return { ctx: { meta, alloc }, meta, alloc, start: alloc.freeBlocks };
}

/** Indirect blocks a map holding exactly the file blocks `set` needs. */
function indirectFor(set: Iterable<number>): number {
  const nodes = new Set<string>();
  for (const f of set) {
    if (f < DIRECT) continue;
    let rel = f - DIRECT;
    if (rel < PTRS) {
      nodes.add("s");
      continue;
    }
    rel -= PTRS;
    if (rel < PTRS ** 2) {
      nodes.add("d").add(`d${Math.floor(rel / PTRS)}`);
      continue;
    }
    rel -= PTRS ** 2;
    nodes
      .add("t")
      .add(`t${Math.floor(rel / PTRS ** 2)}`)
      .add(`t${Math.floor(rel / PTRS)}/`);
  }
  return nodes.size;
}

const TIB_BLOCK = 2 ** 40 / BS;
const EDGES = [
  0,
  11,
  12,
  12 + PTRS - 1,
  12 + PTRS,
  12 + PTRS + PTRS ** 2 - 1,
  12 + PTRS + PTRS ** 2,
  TIB_BLOCK,
  MAX_FILE_BLOCKS - 1,
];

describe("file block map", () => {
  it("maps blocks at every level up to the largest file, and holes read as 0", async () => {
    const { ctx, meta, alloc, start } = await setup();
    const ino = emptyInode(5);
    const got = new Map<number, number>();
    await meta.run(async () => {
      for (const f of EDGES) got.set(f, (await ensureBlock(ctx, ino, f)).block);
    });
    expect(new Set(got.values()).size).toBe(EDGES.length);
    for (const [f, b] of got) expect(await mapBlock(ctx, ino, f)).toBe(b);
    for (const f of [1, 13, 12 + PTRS + 1, TIB_BLOCK - 1, TIB_BLOCK + 1])
      expect(await mapBlock(ctx, ino, f)).toBe(0);
    expect(ino.blocks).toBe(EDGES.length + indirectFor(EDGES));
    expect(start - alloc.freeBlocks).toBe(ino.blocks);
    await expect(meta.run(() => ensureBlock(ctx, ino, MAX_FILE_BLOCKS))).rejects.toThrow(/EFBIG/);
    const again = await meta.run(() => ensureBlock(ctx, ino, TIB_BLOCK));
    expect(again).toEqual({ block: got.get(TIB_BLOCK), fresh: false });
  });

  it("survives an encode/decode of the inode", async () => {
    const { ctx, meta } = await setup();
    const ino = emptyInode(9);
    ino.mode = 0o100644;
    ino.mtime = { sec: -5, nsec: 999_999_999 };
    await meta.run(() => ensureBlock(ctx, ino, TIB_BLOCK));
    const buf = Buffer.alloc(INODE_SIZE * 2);
    encodeInode(ino, buf, INODE_SIZE);
    const back = decodeInode(9, buf, INODE_SIZE);
    expect(back).toEqual(ino);
    expect(await mapBlock(ctx, back, TIB_BLOCK)).toBe(await mapBlock(ctx, ino, TIB_BLOCK));
    buf[INODE_SIZE + 17]! ^= 1;
    expect(() => decodeInode(9, buf, INODE_SIZE)).toThrow(/inode 9: checksum mismatch/);
  });

  it.each(seeds(8))("truncates exactly: random maps against a model, seed %i", (seed) =>
    withSeed(seed, async (rand) => {
      const { ctx, meta, alloc, start } = await setup();
      const ino: Inode = emptyInode(7);
      const model = new Map<number, number>();
      for (let step = 0; step < 60; step++) {
        if (rand() < 0.7) {
          const center = pick(rand, EDGES);
          const n = int(rand, 1, 40);
          await meta.run(async () => {
            for (let k = 0; k < n; k++) {
              const f = Math.min(MAX_FILE_BLOCKS - 1, Math.max(0, center + int(rand, -2000, 2000)));
              const { block, fresh } = await ensureBlock(ctx, ino, f);
              expect(fresh).toBe(!model.has(f));
              model.set(f, block);
            }
          });
        } else {
          const keys = [...model.keys()];
          const from =
            keys.length > 0 && rand() < 0.8
              ? pick(rand, keys) + int(rand, -3, 3)
              : int(rand, 0, 20);
          await meta.run(() => truncateBlocks(ctx, ino, Math.max(0, from)));
          for (const f of keys) if (f >= from) model.delete(f);
        }
        expect(ino.blocks).toBe(model.size + indirectFor(model.keys()));
        expect(start - alloc.freeBlocks).toBe(ino.blocks);
        for (const [f, b] of model) expect(await mapBlock(ctx, ino, f)).toBe(b);
        if (rand() < 0.3) await meta.commit();
      }
      await meta.run(() => truncateBlocks(ctx, ino, 0));
      expect(ino.ptrs.every((p) => p === 0)).toBe(true);
      expect(alloc.freeBlocks).toBe(start);
    }),
  );
});
