// The fast data path keeps every promise of the slow one: decoded inodes are never stale nor
// rolled back, reads outside the lock never see reused blocks, writes go in runs.

import { describe, expect, it } from "vitest";
import { type BlockDevice, MemoryBlockDevice } from "../../src/cow/index.js";
import { FileSystem, ROOT } from "../../src/fs/filesystem.js";
import { fsck } from "../../src/fs/fsck.js";
import { formatLayers, mountLayers } from "../helpers/fs-layers.js";
import { int, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;
const me = { uid: 0, gid: 0, groups: [] };

/** A device that counts writes and can hold back reads of one length until released. */
class WatchedDevice implements BlockDevice {
  writes: Array<{ offset: number; length: number }> = [];
  private held: { length: number; release: Promise<void> } | undefined;
  constructor(private readonly inner: BlockDevice) {}
  get size() {
    return this.inner.size;
  }
  get blockSize() {
    return this.inner.blockSize;
  }
  get readOnly() {
    return this.inner.readOnly;
  }
  /** Reads of `length` bytes resolve (with what the device held when they began) only once the
   *  returned function is called. */
  hold(length: number): () => void {
    let go!: () => void;
    this.held = { length, release: new Promise((r) => (go = r)) };
    return () => {
      this.held = undefined;
      go();
    };
  }
  async read(offset: number, target: Uint8Array): Promise<void> {
    const held = this.held;
    await this.inner.read(offset, target);
    if (held && target.length === held.length) await held.release;
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    this.writes.push({ offset, length: data.length });
    return this.inner.write(offset, data);
  }
  flush() {
    return this.inner.flush();
  }
  close() {
    return this.inner.close();
  }
}

async function fresh(journalBlocks?: number) {
  const dev = new WatchedDevice(new MemoryBlockDevice(256 << 20));
  await FileSystem.mkfs(dev, { journalBlocks });
  return { dev, fs: await FileSystem.open(dev) };
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe("inode cache", () => {
  it("never serves an inode an undone operation wrote", async () => {
    const dev = new MemoryBlockDevice(4096 * BS);
    await formatLayers(dev, 64);
    const { meta, table } = await mountLayers(dev);
    const ino = await meta.run(async () => {
      const i = await table.allocate();
      i.mode = 0o100644;
      i.nlink = 1;
      i.size = 10;
      await table.put(i);
      return i.ino;
    });
    await expect(
      meta.run(async () => {
        const i = await table.get(ino);
        i.size = 999;
        await table.put(i);
        expect((await table.get(ino)).size).toBe(999); // the operation sees its own change
        throw new Error("undone");
      }),
    ).rejects.toThrow("undone");
    expect((await table.get(ino)).size).toBe(10);
    expect(table.peek(ino)?.size ?? 10).toBe(10);
  });

  it("hands out copies: changing one without put changes nothing", async () => {
    const dev = new MemoryBlockDevice(4096 * BS);
    await formatLayers(dev, 64);
    const { meta, table } = await mountLayers(dev);
    const ino = await meta.run(async () => {
      const i = await table.allocate();
      i.mode = 0o100644;
      i.nlink = 1;
      await table.put(i);
      return i.ino;
    });
    const a = await table.get(ino);
    a.size = 12345;
    a.ptrs[0] = 77;
    a.mtime.sec = 42;
    const b = await table.get(ino);
    expect([b.size, b.ptrs[0], b.mtime.sec]).toEqual([0, 0, 0]);
  });

  it("reads the old size and data after a write the journal could not hold was undone", async () => {
    const { fs } = await fresh(16);
    const f = await fs.create(ROOT, "f", 0o644, me);
    const old = Buffer.alloc(2 * BS, 7);
    await fs.write(f.ino, 0, old);
    await fs.fsync();
    expect((await fs.read(f.ino, 0, 4 * BS)).equals(old)).toBe(true); // decoded and cached
    // 64 MiB needs more indirect blocks than one transaction of this journal holds. (Past the
    // old end: bytes written in place over existing blocks would stay, as in any filesystem.)
    await expect(fs.write(f.ino, old.length, Buffer.alloc(64 << 20, 9))).rejects.toMatchObject({
      code: "EFBIG",
    });
    expect((await fs.getattr(f.ino)).size).toBe(old.length);
    expect((await fs.read(f.ino, 0, 4 * BS)).equals(old)).toBe(true);
    await fs.close();
  });
});

describe("reads", () => {
  it("fill a caller's buffer, holes as zeros, stopping at the end of the file", async () => {
    const { fs } = await fresh();
    const f = await fs.create(ROOT, "sparse", 0o644, me);
    await fs.write(f.ino, 3 * BS + 100, Buffer.alloc(50, 5));
    const into = Buffer.alloc(8 * BS, 0xee);
    const got = await fs.read(f.ino, 0, 8 * BS, into);
    expect(got.length).toBe(3 * BS + 150);
    expect(got.buffer).toBe(into.buffer);
    const want = Buffer.alloc(3 * BS + 150);
    want.fill(5, 3 * BS + 100);
    expect(got.equals(want)).toBe(true);
    await expect(fs.read(f.ino, 0, 10, Buffer.alloc(5))).rejects.toMatchObject({
      code: "EINVAL",
    });
  });

  it("hold back the reuse of the blocks they read until they end", async () => {
    const { dev, fs } = await fresh();
    const a = await fs.create(ROOT, "a", 0o644, me);
    const old = Buffer.alloc(3 * BS, 1);
    await fs.write(a.ino, 0, old);
    await fs.fsync();
    await fs.read(a.ino, 0, BS); // the inode is now decoded: the next read takes no lock
    const release = dev.hold(3 * BS);
    const reading = fs.read(a.ino, 0, 3 * BS);
    await fs.setattr(a.ino, { size: 0 });
    let committed = false;
    const commit = fs.fsync().then(() => {
      committed = true;
    });
    await turns(20);
    expect(committed).toBe(false);
    release();
    expect((await reading).equals(old)).toBe(true);
    await commit;
    const b = await fs.create(ROOT, "b", 0o644, me);
    await fs.write(b.ino, 0, Buffer.alloc(3 * BS, 2));
    expect((await fs.read(a.ino, 0, 3 * BS)).length).toBe(0);
    await fs.close();
    expect((await fsck(dev)).problems).toEqual([]);
  });
});

describe("writes", () => {
  it("allocate a run of blocks and write it with one device write", async () => {
    const { dev, fs } = await fresh();
    const f = await fs.create(ROOT, "f", 0o644, me);
    const data = Buffer.alloc(1 << 20, 3);
    dev.writes = [];
    await fs.write(f.ino, 0, data);
    expect(dev.writes).toEqual([{ offset: expect.any(Number), length: 1 << 20 }]);
    expect((await fs.getattr(f.ino)).blocks).toBe((256 + 1) * 8); // data, one indirect block
    // An unaligned write merges its partial blocks with what they hold.
    dev.writes = [];
    await fs.write(f.ino, 100, Buffer.alloc(2 * BS, 4));
    expect(dev.writes.map((w) => w.length)).toEqual([BS, BS, BS]);
    const back = await fs.read(f.ino, 0, 3 * BS);
    const want = Buffer.alloc(3 * BS, 3);
    want.fill(4, 100, 100 + 2 * BS);
    expect(back.equals(want)).toBe(true);
    await fs.close();
    expect((await fsck(dev)).problems).toEqual([]);
  });
});

describe("read-ahead", () => {
  it.each(seeds(4))(
    "in-order reads see every write, truncation and growth made between them: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const { fs } = await fresh();
        const f = await fs.create(ROOT, "f", 0o644, me);
        let model = Buffer.alloc(3 << 20);
        for (let i = 0; i < model.length; i += 4096) model.fill(i / 4096, i, i + 4096);
        await fs.write(f.ino, 0, model);
        const into = Buffer.alloc(1 << 17);
        for (let pass = 0; pass < 3; pass++) {
          const req = [4096, 65536, 131072, 100_000][int(rand, 0, 3)]!;
          for (let off = 0; off < model.length + req; off += req) {
            const got = await fs.read(f.ino, off, req, rand() < 0.5 ? into : undefined);
            const want = model.subarray(Math.min(off, model.length), off + req);
            expect(got.equals(want), `pass ${pass} offset ${off}`).toBe(true);
            const r = rand();
            if (r < 0.08) {
              // Often just ahead of the reader, inside its window.
              const at = Math.max(0, off + int(rand, -50_000, 900_000));
              const bytes = Buffer.alloc(int(rand, 1, 20_000), int(rand, 1, 255));
              await fs.write(f.ino, at, bytes);
              if (model.length < at + bytes.length)
                model = Buffer.concat([model, Buffer.alloc(at + bytes.length - model.length)]);
              bytes.copy(model, at);
            } else if (r < 0.1) {
              const size = Math.max(0, off + int(rand, -100_000, 1_500_000));
              await fs.setattr(f.ino, { size });
              model =
                size <= model.length
                  ? Buffer.from(model.subarray(0, size))
                  : Buffer.concat([model, Buffer.alloc(size - model.length)]);
            }
          }
        }
        await fs.close();
      }),
  );

  it("drops a window whose fill was in flight when the file changed", async () => {
    const { dev, fs } = await fresh();
    const f = await fs.create(ROOT, "f", 0o644, me);
    await fs.write(f.ino, 0, Buffer.alloc(4 << 20, 1));
    await fs.read(f.ino, 0, 1 << 17);
    const release = dev.hold(1 << 20); // the window's fill
    const first = fs.read(f.ino, 1 << 17, 1 << 17);
    const next = fs.read(f.ino, 2 << 17, 1 << 17); // waits for the same window
    await turns(5);
    await fs.write(f.ino, 2 << 17, Buffer.alloc(1 << 17, 2));
    release();
    expect((await first).equals(Buffer.alloc(1 << 17, 1))).toBe(true);
    // It raced the write: either contents, never a mix.
    const raced = await next;
    expect(raced.every((x) => x === 1) || raced.every((x) => x === 2)).toBe(true);
    expect((await fs.read(f.ino, 2 << 17, 1 << 17)).equals(Buffer.alloc(1 << 17, 2))).toBe(true);
    expect((await fs.read(f.ino, 3 << 17, 1 << 17)).equals(Buffer.alloc(1 << 17, 1))).toBe(true);
  });
});
