// Directories: names map to entries exactly as in a Map under random operations, listings resume
// by cookie without repeats or losses while the directory changes, and damage is named by block.

import { crc32c } from "@node-rs/crc32";
import { describe, expect, it } from "vitest";
import { type BlockDevice, MemoryBlockDevice } from "../../src/cow/index.js";
import { CorruptStoreError, enospc } from "../../src/errors.js";
import {
  type DirEntry,
  Directory,
  type DirectoryBlocks,
  type DirectoryOptions,
  type ListedEntry,
} from "../../src/fs/directory.js";
import { sipHash24 } from "../../src/fs/siphash.js";
import { formatLayers, mountLayers } from "../helpers/fs-layers.js";
import { int, pick, type Rand, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;
/** An entry without its key, to compare with what was inserted. */
const plain = (e: DirEntry | undefined): DirEntry | undefined => e && { ino: e.ino, type: e.type };
const TYPES = [1, 2, 4, 6, 8, 10, 12];
type Hash = DirectoryOptions["hash"];
const NO_HASH: Hash = () => 0n;
/** Eight hash values: every name collides with an eighth of the others. */
const EIGHT_HASHES: Hash = (name) => BigInt(name[0]! & 7) << 61n;

/** Directory blocks in memory. `copyReads` hands out copies, so a change made to a read image is lost. */
class MemoryBlocks implements DirectoryBlocks {
  readonly images: Buffer[] = [];
  reads = 0;
  writes = 0;

  constructor(private readonly opts: { limit?: number; copyReads?: boolean } = {}) {}

  get count(): number {
    return this.images.length;
  }

  async read(i: number): Promise<Buffer> {
    this.reads++;
    return this.opts.copyReads ? Buffer.from(this.image(i)) : this.image(i);
  }

  async write(i: number): Promise<Buffer> {
    this.writes++;
    return this.image(i);
  }

  async append(): Promise<Buffer> {
    if (this.images.length >= (this.opts.limit ?? Number.POSITIVE_INFINITY)) {
      throw enospc(`test volume of ${this.opts.limit} blocks`);
    }
    const b = Buffer.alloc(BS);
    this.images.push(b);
    return b;
  }

  /** Flips a bit of block i, as a device returning a damaged image would: a new image. */
  damage(i: number, offset: number): void {
    const b = Buffer.from(this.image(i));
    b[offset]! ^= 0x10;
    this.images[i] = b;
  }

  /** The blocks whose image holds `bytes`. */
  holding(bytes: Buffer): number[] {
    return this.images.flatMap((b, i) => (b.includes(bytes) ? [i] : []));
  }

  private image(i: number): Buffer {
    const b = this.images[i];
    if (!b) throw new Error(`block ${i} of ${this.images.length}`);
    return b;
  }
}

async function newDirectory(opts: ConstructorParameters<typeof MemoryBlocks>[0] = {}, hash?: Hash) {
  const blocks = new MemoryBlocks(opts);
  await Directory.format(blocks);
  return { blocks, dir: new Directory(blocks, { hash }) };
}

function randomName(rand: Rand, maxLen: number, minLen = 1): Buffer {
  for (;;) {
    const b = Buffer.alloc(int(rand, minLen, maxLen));
    for (let i = 0; i < b.length; i++)
      b[i] = rand() < 0.7 ? int(rand, 0x61, 0x7a) : int(rand, 1, 255);
    for (let i = 0; i < b.length; i++) if (b[i] === 0x2f) b[i] = 0x2e;
    const s = b.toString("latin1");
    if (s !== "." && s !== "..") return b;
  }
}

const randomEntry = (rand: Rand): DirEntry => ({
  ino: int(rand, 1, 2 ** 40),
  type: pick(rand, TYPES),
});

async function listAll(dir: Directory, batch: number): Promise<ListedEntry[]> {
  const out: ListedEntry[] = [];
  for (let cookie = 0n; ; ) {
    const got = await dir.readdir(cookie, batch);
    if (got.length === 0) return out;
    expect(got.length).toBeLessThanOrEqual(batch);
    out.push(...got);
    cookie = got.at(-1)!.cookie;
  }
}

/** The directory holds exactly `model` (names in hex), lists it once, and checks clean. */
async function expectSame(dir: Directory, model: Map<string, DirEntry>, batch: number) {
  expect(await dir.size()).toBe(model.size);
  expect(await dir.isEmpty()).toBe(model.size === 0);
  const listed = await listAll(dir, batch);
  expect(listed.length).toBe(model.size);
  const cookies = listed.map((e) => e.cookie);
  expect(cookies.every((c, i) => i === 0 || c > cookies[i - 1]!)).toBe(true);
  expect(
    new Map(listed.map((e) => [e.name.toString("hex"), { ino: e.ino, type: e.type }])),
  ).toEqual(model);
  expect(await dir.check()).toEqual([]);
}

/** Random insert/remove/replace/lookup on a pool of names, compared with a Map after every step. */
async function modelRun(rand: Rand, hash?: Hash): Promise<void> {
  const { dir } = await newDirectory({ copyReads: true }, hash);
  const maxLen = pick(rand, [8, 40, 255]);
  const size = hash ? int(rand, 100, 700) : int(rand, 200, 2500);
  const pool = Array.from({ length: size }, () => randomName(rand, maxLen));
  const model = new Map<string, DirEntry>();
  for (let i = 0; i < 3000; i++) {
    const name = pick(rand, pool);
    const key = name.toString("hex");
    const entry = randomEntry(rand);
    const old = model.get(key);
    const r = rand();
    if (r < 0.45) {
      if (old) await expect(dir.insert(name, entry)).rejects.toThrow(/^EEXIST/);
      else await dir.insert(name, entry);
      if (!old) model.set(key, entry);
    } else if (r < 0.7) {
      expect(plain(await dir.remove(name))).toEqual(old);
      model.delete(key);
    } else if (r < 0.8) {
      if (old) expect(plain(await dir.replace(name, entry))).toEqual(old);
      else await expect(dir.replace(name, entry)).rejects.toThrow(/^ENOENT/);
      if (old) model.set(key, entry);
    } else {
      expect(await dir.lookup(name)).toEqual(old);
    }
    if (i % 1000 === 999) await expectSame(dir, model, int(rand, 1, 300));
  }
}

describe("directory", () => {
  it.each(seeds(4))("maps names like a Map under random operations: seed %i", (seed) =>
    withSeed(seed, (rand) => modelRun(rand)),
  );

  it.each(seeds(2))("stores and finds every name when all share one hash: seed %i", (seed) =>
    withSeed(seed, (rand) => modelRun(rand, NO_HASH)),
  );

  it.each(seeds(2))("stores and finds names in large collision groups: seed %i", (seed) =>
    withSeed(seed, (rand) => modelRun(rand, EIGHT_HASHES)),
  );

  it("keeps a collision group spread over many leaves", async () => {
    const { dir } = await newDirectory({}, NO_HASH);
    const names = Array.from({ length: 1000 }, (_, i) => Buffer.from(`colliding name number ${i}`));
    for (const [i, name] of names.entries()) await dir.insert(name, { ino: i + 1, type: 8 });
    expect((await dir.stats()).blocks).toBeGreaterThan(10);
    for (const [i, name] of names.entries())
      expect(await dir.lookup(name)).toEqual({ ino: i + 1, type: 8 });
    await expect(dir.insert(names[567]!, { ino: 1, type: 8 })).rejects.toThrow(/^EEXIST/);
    expect(await dir.lookup(Buffer.from("absent"))).toBeUndefined();
    for (const name of names.filter((_, i) => i % 3 === 0))
      expect(await dir.remove(name)).toBeDefined();
    const left = new Map(
      names.flatMap((n, i) => (i % 3 === 0 ? [] : [[n.toString("hex"), { ino: i + 1, type: 8 }]])),
    );
    await expectSame(dir, left as Map<string, DirEntry>, 77);
  });

  it("hands out a free collision index once the last one has been used", async () => {
    const { dir } = await newDirectory({}, NO_HASH);
    const name = (i: number) => Buffer.from(`n${i}`);
    for (let i = 0; i <= 0xffff; i++) {
      await dir.insert(name(i), { ino: i + 1, type: 8 });
      if (i > 0) await dir.remove(name(i - 1));
    }
    const last = await dir.readdir(0, 10);
    expect(last.map((e) => e.cookie)).toEqual([0x10000n]);
    await dir.insert(Buffer.from("a"), { ino: 1, type: 8 });
    await dir.insert(Buffer.from("b"), { ino: 2, type: 8 });
    const all = await dir.readdir(0, 10);
    expect(all.map((e) => [e.name.toString(), e.cookie])).toEqual([
      ["a", 1n],
      ["b", 2n],
      ["n65535", 0x10000n],
    ]);
    expect(await dir.check()).toEqual([]);
  });

  it.each(seeds(4))(
    "lists every entry present throughout exactly once while the directory changes: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const { dir } = await newDirectory({}, seed % 2 === 0 ? undefined : EIGHT_HASHES);
        const live: Buffer[] = [];
        for (let i = 0; i < 2000; i++) {
          const name = randomName(rand, 40);
          if ((await dir.lookup(name)) === undefined) {
            await dir.insert(name, randomEntry(rand));
            live.push(name);
          }
        }
        const initial = new Set(live.map((n) => n.toString("hex")));
        const everPresent = new Set(initial);
        const touched = new Set<string>();
        const seen = new Set<string>();
        let cookie = 0n;
        for (;;) {
          const batch = await dir.readdir(cookie, int(rand, 1, 64));
          if (batch.length === 0) break;
          for (const e of batch) {
            const k = e.name.toString("hex");
            expect(seen.has(k), `${k} listed twice`).toBe(false);
            expect(everPresent.has(k), `${k} listed but never inserted`).toBe(true);
            expect(e.cookie).toBeGreaterThan(cookie);
            seen.add(k);
          }
          cookie = batch.at(-1)!.cookie;
          // Removing the entries just ahead of the cookie empties and frees the leaf it points into.
          if (rand() < 0.2) {
            for (const e of await dir.readdir(cookie, int(rand, 1, 150))) {
              await dir.remove(e.name);
              touched.add(e.name.toString("hex"));
            }
          }
          for (let j = int(rand, 0, 20); j > 0; j--) {
            const r = rand();
            if (r < 0.5) {
              const name = randomName(rand, 40);
              const k = name.toString("hex");
              if (everPresent.has(k)) continue;
              await dir.insert(name, randomEntry(rand));
              everPresent.add(k);
              live.push(name);
            } else if (live.length > 0) {
              const name = live.splice(int(rand, 0, live.length - 1), 1)[0]!;
              if (r < 0.85) await dir.remove(name);
              else if ((await dir.lookup(name)) !== undefined) {
                await dir.replace(name, randomEntry(rand));
                live.push(name);
              }
              if (r < 0.85) touched.add(name.toString("hex"));
            }
          }
        }
        for (const k of initial) {
          if (!touched.has(k))
            expect(seen.has(k), `${k} present throughout, not listed`).toBe(true);
        }
        expect(await dir.check()).toEqual([]);
      }),
  );

  it("finds a name among 100,000 in at most 4 block reads", () =>
    withSeed(seeds(1)[0]!, async (rand) => {
      const { blocks, dir } = await newDirectory();
      const name = (i: number) => Buffer.from(`file-${i}.${(i * 2654435761) % 9973}.dat`);
      const n = 100_000;
      for (let i = 0; i < n; i++) await dir.insert(name(i), { ino: i + 1, type: 8 });
      expect(await dir.stats()).toMatchObject({ entries: n, depth: 2 });
      let worst = 0;
      const writes = blocks.writes;
      for (let k = 0; k < 3000; k++) {
        const i = int(rand, 0, n + 999);
        const before = blocks.reads;
        expect(await dir.lookup(name(i))).toEqual(i < n ? { ino: i + 1, type: 8 } : undefined);
        worst = Math.max(worst, blocks.reads - before);
      }
      expect(worst).toBeLessThanOrEqual(4);
      expect(blocks.writes).toBe(writes);
      worst = 0;
      for (let i = n; i < n + 1000; i++) {
        const before = blocks.reads;
        await dir.insert(name(i), { ino: i + 1, type: 8 });
        worst = Math.max(worst, blocks.reads - before);
      }
      expect(worst).toBeLessThanOrEqual(8);
      expect(await dir.check()).toEqual([]);
    }));

  it("grows to three levels, shrinks back to one leaf, and reuses the freed blocks", () =>
    withSeed(seeds(1)[0]!, async (rand) => {
      const { blocks, dir } = await newDirectory();
      const names = Array.from({ length: 6000 }, (_, i) =>
        Buffer.concat([Buffer.from(`${i}:`), randomName(rand, 250, 200)]),
      );
      for (const [i, name] of names.entries()) await dir.insert(name, { ino: i + 1, type: 4 });
      expect((await dir.stats()).depth).toBe(2);
      const order = names.map((_, i) => i).sort(() => rand() - 0.5);
      for (const [k, i] of order.entries()) {
        expect(plain(await dir.remove(names[i]!))).toEqual({ ino: i + 1, type: 4 });
        if (k % 1500 === 0) expect(await dir.check()).toEqual([]);
      }
      const used = blocks.count;
      expect(await dir.stats()).toEqual({
        entries: 0,
        depth: 0,
        blocks: used,
        freeBlocks: used - 2,
      });
      expect(await dir.check()).toEqual([]);
      for (const [i, name] of names.slice(0, 3000).entries())
        await dir.insert(name, { ino: i + 1, type: 4 });
      expect(blocks.count).toBe(used);
      expect(await dir.check()).toEqual([]);
    }));

  it("fails with ENOSPC when the volume is full, keeping every entry, and reuses freed blocks", async () => {
    const { dir } = await newDirectory({ limit: 12 });
    const names: Buffer[] = [];
    for (let i = 0; ; i++) {
      const name = Buffer.from(`${"x".repeat(200)}-${i}`);
      try {
        await dir.insert(name, { ino: i + 1, type: 8 });
      } catch (e) {
        expect(String(e)).toMatch(/ENOSPC/);
        break;
      }
      names.push(name);
    }
    expect(await dir.check()).toEqual([]);
    expect(await dir.size()).toBe(names.length);
    for (const [i, name] of names.entries())
      expect(await dir.lookup(name)).toEqual({ ino: i + 1, type: 8 });
    for (const name of names) await dir.remove(name);
    expect(await dir.stats()).toEqual({ entries: 0, depth: 0, blocks: 12, freeBlocks: 10 });
    for (const [i, name] of names.entries()) await dir.insert(name, { ino: i + 1, type: 8 });
    expect(await dir.check()).toEqual([]);
  });

  it("accepts names of 1 to 255 bytes but '/', NUL, '.' and '..'; one entry per name", async () => {
    const { dir } = await newDirectory();
    const e = { ino: 7, type: 8 };
    const long = Buffer.alloc(255, 0x61);
    await dir.insert(long, e);
    expect(await dir.lookup(long)).toEqual(e);
    for (const ok of ["...", ".a", "a", "\u00ff\u00fe"])
      await dir.insert(Buffer.from(ok, "latin1"), e);
    await expect(dir.insert(Buffer.alloc(256, 0x61), e)).rejects.toThrow(/^ENAMETOOLONG/);
    await expect(dir.lookup(Buffer.alloc(256, 0x61))).rejects.toThrow(/^ENAMETOOLONG/);
    for (const bad of ["", "a/b", "/", "a\0b", ".", ".."]) {
      await expect(dir.insert(Buffer.from(bad), e)).rejects.toThrow(/^EINVAL/);
    }
    await expect(dir.insert(long, { ino: 9, type: 4 })).rejects.toThrow(/^EEXIST/);
    expect(await dir.lookup(long)).toEqual(e);
    for (const bad of [
      { ino: 0, type: 8 },
      { ino: 2 ** 53, type: 8 },
      { ino: 1, type: 16 },
    ]) {
      await expect(dir.insert(Buffer.from("z"), bad)).rejects.toThrow(/^EINVAL/);
    }
    await expect(dir.replace(Buffer.from("absent"), e)).rejects.toThrow(/^ENOENT/);
    expect(await dir.remove(Buffer.from("absent"))).toBeUndefined();
    await expect(dir.readdir(-1, 10)).rejects.toThrow(/^EINVAL/);
    expect(await dir.readdir(0, 0)).toEqual([]);
    expect(await dir.readdir(1n << 62n, 10)).toEqual([]);
    expect(await dir.size()).toBe(5);
  });

  it("names the damaged block: check() reports it and a lookup through it throws", async () => {
    const { blocks, dir } = await newDirectory();
    const name = (i: number) => Buffer.from(`entry-${String(i).padStart(5, "0")}`);
    for (let i = 0; i < 3000; i++) await dir.insert(name(i), { ino: i + 1, type: 8 });
    expect(await dir.check()).toEqual([]);
    const [leaf] = blocks.holding(name(1234));
    blocks.damage(leaf!, 100);
    expect(await dir.check()).toContain(`directory block ${leaf}: checksum mismatch`);
    const err = await dir.lookup(name(1234)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptStoreError);
    expect(String(err)).toContain(`directory block ${leaf}: checksum mismatch`);
    const root = blocks.images.findIndex((b) => b.toString("latin1", 0, 8) === "SHDWDIRI");
    blocks.damage(root, 40);
    await expect(dir.lookup(name(1))).rejects.toThrow(`directory block ${root}: checksum mismatch`);
    blocks.damage(0, 20);
    await expect(dir.size()).rejects.toThrow("directory block 0: checksum mismatch");
    expect(await dir.check()).toEqual(["directory block 0: checksum mismatch"]);
  });

  it("check() reports an entry whose name no longer matches its hash", async () => {
    const { blocks, dir } = await newDirectory();
    const name = (i: number) => Buffer.from(`entry-${String(i).padStart(5, "0")}`);
    for (let i = 0; i < 500; i++) await dir.insert(name(i), { ino: i + 1, type: 8 });
    const [leaf] = blocks.holding(name(321));
    const image = Buffer.from(blocks.images[leaf!]!);
    image[image.indexOf(name(321))]! = 0x7e; // "~ntry-00321", resealed: only its hash is wrong
    image.writeUInt32LE(crc32c(image.subarray(0, BS - 4)), BS - 4);
    blocks.images[leaf!] = image;
    expect(await dir.check()).toEqual([
      `directory block ${leaf}: entry "~ntry-00321" filed under another hash`,
    ]);
    expect(await dir.lookup(name(321))).toBeUndefined();
  });

  it("computes SipHash-2-4 as the reference vectors", () => {
    const key = Buffer.from(Array.from({ length: 16 }, (_, i) => i));
    const msg = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i));
    expect(sipHash24(key, msg(0))).toBe(0x726fdb47dd0e0e31n);
    expect(sipHash24(key, msg(1))).toBe(0x74f839c593dc67fdn);
    expect(sipHash24(key, msg(8))).toBe(0x93f5f5799a932462n);
    expect(sipHash24(key, msg(15))).toBe(0xa129ca6149be45e5n);
    expect(sipHash24(key, msg(63))).toBe(0x958a324ceb064572n);
  });

  it("hashes names with the SipHash key given at format, and refuses a key of another size", async () => {
    const key = Buffer.alloc(16, 7);
    const keysOf = async (k?: Buffer) => {
      const blocks = new MemoryBlocks();
      await Directory.format(blocks, k);
      const dir = new Directory(blocks);
      const keys = [];
      for (const n of ["a", "b", "long name"])
        keys.push(await dir.insert(Buffer.from(n), { ino: 2, type: 8 }));
      return keys;
    };
    const once = await keysOf(key);
    expect(await keysOf(Buffer.from(key))).toEqual(once);
    expect(await keysOf()).not.toEqual(once); // a random key: 2^-46 to hash "a" alike
    const blocks = new MemoryBlocks();
    await expect(Directory.format(blocks, Buffer.alloc(15))).rejects.toMatchObject({
      code: "EINVAL",
      message: expect.stringMatching(/SipHash key of 15 bytes \(16 expected\)/),
    });
    expect(blocks.count).toBe(0);
  });
});

const formatDevice = (dev: BlockDevice) => formatLayers(dev);
const mount = mountLayers;

/** A directory's blocks as the filesystem keeps them: metadata blocks taken from the allocator. */
class MetaBlocks implements DirectoryBlocks {
  constructor(
    private readonly m: Awaited<ReturnType<typeof mount>>,
    /** Device block of each directory block (what the directory inode's block map holds). */
    readonly map: number[] = [],
  ) {}

  get count(): number {
    return this.map.length;
  }

  read(i: number): Promise<Buffer> {
    return this.m.meta.read(this.map[i]!);
  }

  write(i: number): Promise<Buffer> {
    return this.m.meta.write(this.map[i]!);
  }

  async append(): Promise<Buffer> {
    const [b] = await this.m.alloc.allocate(1, this.map.at(-1));
    const image = await this.m.meta.write(b!);
    image.fill(0);
    this.map.push(b!);
    return image;
  }

  /** One metadata operation; a failed one also forgets the blocks it appended. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const n = this.map.length;
    try {
      return await this.m.meta.run(fn);
    } catch (e) {
      this.map.length = n;
      throw e;
    }
  }
}

describe("directory in metadata blocks", () => {
  it("survives commits, a failed operation and a remount, and reports a damaged device block", () =>
    withSeed(seeds(1)[0]!, async (rand) => {
      const dev = new MemoryBlockDevice(4096 * BS);
      await formatDevice(dev);
      const m = await mount(dev);
      const blocks = new MetaBlocks(m);
      await blocks.run(() => Directory.format(blocks));
      const label = "directory inode 2";
      const dir = new Directory(blocks, { label });
      const name = (i: number) => Buffer.from(`file-${String(i).padStart(5, "0")}`);
      const model = new Map<string, DirEntry>();
      for (let i = 0; i < 3000; i += 25) {
        await blocks.run(async () => {
          for (let j = i; j < i + 25; j++) await dir.insert(name(j), { ino: j + 1, type: 8 });
        });
        for (let j = i; j < i + 25; j++)
          model.set(name(j).toString("hex"), { ino: j + 1, type: 8 });
        if (rand() < 0.2) await m.meta.commit();
      }
      const failed = blocks.run(async () => {
        for (let j = 3000; j < 3300; j++) await dir.insert(name(j), { ino: j + 1, type: 8 });
        await dir.remove(name(5));
        await dir.insert(name(7), { ino: 1, type: 8 });
      });
      await expect(failed).rejects.toThrow(/^EEXIST/);
      await blocks.run(async () => {
        for (let j = 0; j < 3000; j += 3) await dir.remove(name(j));
        await dir.replace(name(1), { ino: 99, type: 4 });
      });
      for (let j = 0; j < 3000; j += 3) model.delete(name(j).toString("hex"));
      model.set(name(1).toString("hex"), { ino: 99, type: 4 });
      await expectSame(dir, model, 100);

      await m.meta.checkpoint();
      const again = new MetaBlocks(await mount(dev, 2 * BS), [...blocks.map]);
      const reopened = new Directory(again, { label });
      await expectSame(reopened, model, 1000);
      for (const [k, e] of model) expect(await reopened.lookup(Buffer.from(k, "hex"))).toEqual(e);

      const target = name(1234);
      let leaf = -1;
      for (let i = 1; i < again.count; i++) if ((await again.read(i)).includes(target)) leaf = i;
      const image = Buffer.alloc(BS);
      await dev.read(again.map[leaf]! * BS, image);
      image[200]! ^= 1;
      await dev.write(again.map[leaf]! * BS, image);
      const damaged = new Directory(new MetaBlocks(await mount(dev), [...blocks.map]), { label });
      await expect(damaged.lookup(target)).rejects.toThrow(
        `${label} block ${leaf}: checksum mismatch`,
      );
      expect(await damaged.check()).toContain(`${label} block ${leaf}: checksum mismatch`);
    }));
});
