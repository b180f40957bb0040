// One conformance suite for every BlockDevice: memory, host file, copy-on-write volume (with and
// without snapshots) and snapshot views (read side). Plus snapshot reads racing live writes.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type BlockDevice,
  CowVolume,
  FileBlockDevice,
  MemoryBlockDevice,
  NodeHostFs,
  readBlock,
  writeBlock,
} from "../../src/cow/index.js";
import { quiet } from "../helpers/cow-workload.js";
import { int, seeded, seeds, withSeed } from "../helpers/random.js";

const SIZE = 1 << 20;
const host = new NodeHostFs();
let root: string;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "shadowfs-dev-"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

async function volume(chunkSize = 16384): Promise<CowVolume> {
  const v = await CowVolume.create(host, join(root, "store"), {
    volumeSize: SIZE,
    chunkSize,
    logger: quiet,
    writeBackBytes: 4 * chunkSize,
  });
  cleanups.push(() => v.close());
  return v;
}

/** Each factory returns a device and the bytes it holds now. */
const writable: Record<string, () => Promise<BlockDevice>> = {
  memory: async () => new MemoryBlockDevice(SIZE),
  file: async () => {
    const d = await FileBlockDevice.create(host, join(root, "dev.img"), SIZE);
    cleanups.push(() => d.close());
    return d;
  },
  "copy-on-write volume": () => volume(),
  "copy-on-write volume under 3 snapshots": async () => {
    const v = await volume();
    for (let i = 0; i < 3; i++) {
      await v.write(i * 50000, Buffer.alloc(70000, 9));
      await v.createSnapshot();
    }
    await v.write(0, Buffer.alloc(SIZE)); // back to zeros, so the suite starts from a blank device
    return v;
  },
};

describe.each(Object.entries(writable))("BlockDevice conformance: %s", (_name, make) => {
  it("reads zeros where nothing was written and reports its geometry", async () => {
    const d = await make();
    expect(d.size).toBe(SIZE);
    expect(d.blockSize).toBe(4096);
    expect(d.readOnly).toBe(false);
    const b = Buffer.alloc(9000, 1);
    await d.read(SIZE - 9000, b);
    expect(b.equals(Buffer.alloc(9000))).toBe(true);
  });

  it("reads back unaligned writes that cross block and chunk boundaries", async () => {
    const d = await make();
    const rand = seeded(42);
    const model = Buffer.alloc(SIZE);
    for (let i = 0; i < 200; i++) {
      const len = int(rand, 1, 40000);
      const off = int(rand, 0, SIZE - len);
      const data = Buffer.alloc(len, int(rand, 0, 255));
      await d.write(off, data);
      data.copy(model, off);
      if (i % 50 === 0) await d.flush();
    }
    const all = Buffer.alloc(SIZE);
    await d.read(0, all);
    expect(all.equals(model)).toBe(true);
  });

  it("reads and writes whole blocks", async () => {
    const d = await make();
    await writeBlock(d, 5, Buffer.alloc(4096, 0xab));
    expect((await readBlock(d, 5)).equals(Buffer.alloc(4096, 0xab))).toBe(true);
    await expect(writeBlock(d, 1, Buffer.alloc(100))).rejects.toThrow(/EINVAL/);
  });

  it("rejects ranges outside the device with EINVAL", async () => {
    const d = await make();
    await expect(d.read(SIZE - 10, Buffer.alloc(11))).rejects.toThrow(/EINVAL/);
    await expect(d.write(-1, Buffer.alloc(1))).rejects.toThrow(/EINVAL/);
    await expect(d.write(SIZE, Buffer.alloc(1))).rejects.toThrow(/EINVAL/);
  });
});

describe("BlockDevice conformance: snapshot view (read side)", () => {
  it("reads the contents of the moment it was taken, in any range, and refuses every change", async () => {
    const v = await volume();
    const image = Buffer.alloc(SIZE);
    const rand = seeded(7);
    for (let i = 0; i < 50; i++) {
      const len = int(rand, 1, 60000);
      const off = int(rand, 0, SIZE - len);
      const data = Buffer.alloc(len, int(rand, 1, 255));
      await v.write(off, data);
      data.copy(image, off);
    }
    const s = await v.createSnapshot();
    await v.write(0, Buffer.alloc(SIZE, 0xee));
    const d = v.snapshotDevice(s.id);
    expect([d.size, d.blockSize, d.readOnly]).toEqual([SIZE, 4096, true]);
    for (let i = 0; i < 100; i++) {
      const len = int(rand, 1, 70000);
      const off = int(rand, 0, SIZE - len);
      const b = Buffer.alloc(len);
      await d.read(off, b);
      expect(b.equals(image.subarray(off, off + len))).toBe(true);
    }
    await expect(d.write(0, Buffer.alloc(1))).rejects.toThrow(/EROFS/);
    await expect(d.read(SIZE, Buffer.alloc(1))).rejects.toThrow(/EINVAL/);
    await v.deleteSnapshot(s.id);
    await expect(d.read(0, Buffer.alloc(1))).rejects.toThrow(/ENOENT/);
  });
});

describe("snapshot reads racing live writes", () => {
  // Contract: a snapshot read returns the snapshot's contents whatever writes run at the same time.
  it.each(seeds(3))("every concurrent snapshot read sees the snapshot: seed %i", (seed) =>
    withSeed(seed, async (rand) => {
      const v = await volume(4096);
      const image = Buffer.alloc(SIZE);
      for (let off = 0; off < SIZE; off += 65536) {
        const data = Buffer.alloc(65536, int(rand, 1, 255));
        await v.write(off, data);
        data.copy(image, off);
      }
      const s = await v.createSnapshot();
      const snap = v.snapshotDevice(s.id);
      const live = Buffer.from(image);
      // Four writers, each owning the chunks congruent to its number, so the final state is known.
      const writers = [0, 1, 2, 3].map(async (w) => {
        for (let i = 0; i < 150; i++) {
          const chunk = int(rand, 0, SIZE / 4096 / 4 - 1) * 4 + w;
          const data = Buffer.alloc(4096, int(rand, 1, 255));
          await v.write(chunk * 4096, data);
          data.copy(live, chunk * 4096);
        }
      });
      let mismatches = 0;
      const readers = [0, 1, 2].map(async () => {
        for (let i = 0; i < 150; i++) {
          const len = int(rand, 1, 40000);
          const off = int(rand, 0, SIZE - len);
          const b = Buffer.alloc(len);
          await snap.read(off, b);
          if (!b.equals(image.subarray(off, off + len))) mismatches++;
        }
      });
      await Promise.all([...writers, ...readers]);
      expect(mismatches).toBe(0);
      const all = Buffer.alloc(SIZE);
      await v.read(0, all);
      expect(all.equals(live)).toBe(true);
      await snap.read(0, all);
      expect(all.equals(image)).toBe(true);
    }),
  );
});

describe("read-ahead of in-order snapshot reads", () => {
  const BIG = 4 << 20;

  /** A 4 MiB volume of distinct bytes, its snapshot, and a count of the reads the volume served. */
  async function streamed(seed: number) {
    const v = await CowVolume.create(host, join(root, "big"), {
      volumeSize: BIG,
      chunkSize: 4096,
      logger: quiet,
      writeBackBytes: 4 * 4096,
    });
    cleanups.push(() => v.close());
    const rand = seeded(seed);
    const image = Buffer.from(Array.from({ length: BIG }, () => int(rand, 0, 255)));
    await v.write(0, image);
    const s = await v.createSnapshot();
    const served = { reads: 0 };
    const readSnapshot = v.readSnapshot.bind(v);
    v.readSnapshot = (id, offset, target) => {
      served.reads++;
      return readSnapshot(id, offset, target);
    };
    return { v, s, image, rand, served };
  }

  it.each(seeds(3))(
    "readers going in order see only the snapshot while it is overwritten: seed %i",
    (seed) =>
      withSeed(seed, async () => {
        const { v, s, image, rand, served } = await streamed(seed);
        const writers = [0, 1].map(async () => {
          for (let i = 0; i < 200; i++) {
            const len = int(rand, 1, 20000);
            await v.write(int(rand, 0, BIG - len), Buffer.alloc(len, int(rand, 0, 255)));
          }
        });
        let reads = 0;
        let mismatches = 0;
        const readers = [0, 1, 2].map(async () => {
          const dev = v.snapshotDevice(s.id);
          let off = int(rand, 0, BIG - 1);
          for (let i = 0; i < 300; i++, reads++) {
            const len = Math.min(int(rand, 1, 70000), BIG - off);
            const b = Buffer.alloc(len);
            await dev.read(off, b);
            if (!b.equals(image.subarray(off, off + len))) mismatches++;
            off = off + len === BIG ? 0 : off + len;
          }
        });
        await Promise.all([...writers, ...readers]);
        expect(mismatches).toBe(0);
        // Most reads were copies from windows read ahead, not reads of the volume.
        expect(served.reads).toBeLessThan(reads / 2);
      }),
  );

  it("a window read before the snapshot was deleted is not served after", async () => {
    const { v, s } = await streamed(1);
    const dev = v.snapshotDevice(s.id);
    const b = Buffer.alloc(4096);
    await dev.read(0, b);
    await dev.read(4096, b); // in order: the next window is being read
    await v.deleteSnapshot(s.id);
    await expect(dev.read(8192, b)).rejects.toThrow(/ENOENT/);
  });

  it("a window whose read failed serves nothing: the reader reads for itself", async () => {
    const { v, s, image } = await streamed(2);
    const dev = v.snapshotDevice(s.id);
    const readSnapshot = v.readSnapshot.bind(v);
    let failed = 0;
    v.readSnapshot = (id, offset, target) => {
      if (target.length > 65536 && failed++ === 0)
        return Promise.reject(new Error("EIO: injected"));
      return readSnapshot(id, offset, target);
    };
    const b = Buffer.alloc(65536);
    for (let off = 0; off < BIG; off += b.length) {
      await dev.read(off, b);
      expect(b.equals(image.subarray(off, off + b.length))).toBe(true);
    }
    expect(failed).toBeGreaterThan(1);
  });
});
