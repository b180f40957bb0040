// Metadata operations and block allocation: each operation is all-or-nothing (also when it
// throws), commits group them, and after a power cut the bitmap is exactly some committed state.

import { describe, expect, it } from "vitest";
import { type BlockDevice, FileBlockDevice, MemoryBlockDevice } from "../../src/cow/index.js";
import { CrashHost, PowerCut } from "../helpers/crash-host.js";
import { countingReads, formatLayers, mountLayers } from "../helpers/fs-layers.js";
import { int, type Rand, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;

const format = (dev: BlockDevice) => formatLayers(dev);
const mount = mountLayers;

/** Every block the bitmap marks in use, read through the store. */
async function allocated(m: Awaited<ReturnType<typeof mount>>): Promise<Set<number>> {
  const used = new Set<number>();
  for (let b = m.sb.dataStart; b < m.sb.totalBlocks; b++) if (await m.alloc.inUse(b)) used.add(b);
  return used;
}

describe("metadata operations", () => {
  it("undoes every change of an operation that throws", async () => {
    const dev = new MemoryBlockDevice(2048 * BS);
    await format(dev);
    const m = await mount(dev);
    const free = m.alloc.freeBlocks;
    const kept = await m.meta.run(() => m.alloc.allocate(3));
    await expect(
      m.meta.run(async () => {
        await m.alloc.allocate(10);
        await m.alloc.release(kept);
        (await m.meta.write(m.sb.dataStart + 500)).fill(9);
        throw new Error("midway");
      }),
    ).rejects.toThrow("midway");
    expect(m.alloc.freeBlocks).toBe(free - 3);
    expect([...(await allocated(m))]).toEqual(kept);
    expect((await m.meta.read(m.sb.dataStart + 500)).equals(Buffer.alloc(BS))).toBe(true);
  });

  it("hands out every data block once, then ENOSPC changing nothing; never a metadata block", async () => {
    const dev = new MemoryBlockDevice(1024 * BS);
    await format(dev);
    const m = await mount(dev);
    const n = m.alloc.freeBlocks;
    expect(n).toBe(m.sb.totalBlocks - m.sb.dataStart);
    const got = await m.meta.run(() => m.alloc.allocate(n - 5, m.sb.dataStart + 100));
    const more = await m.meta.run(() => m.alloc.allocate(5));
    const all = new Set([...got, ...more]);
    expect(all.size).toBe(n);
    expect(Math.min(...all)).toBe(m.sb.dataStart);
    await expect(m.meta.run(() => m.alloc.allocate(1))).rejects.toThrow(/ENOSPC/);
    await expect(m.meta.run(() => m.alloc.release([got[0]!, got[0]!]))).rejects.toThrow(
      /freed twice/,
    );
    expect(m.alloc.freeBlocks).toBe(0);
    await expect(m.meta.run(() => m.alloc.release([3]))).rejects.toThrow(/not a data block/);
  });

  it("a read-only device sees committed operations through the journal and refuses changes", async () => {
    const host = new CrashHost();
    const dev = await FileBlockDevice.create(host, "/d", 1024 * BS);
    await format(dev);
    const m = await mount(dev);
    const got = await m.meta.run(() => m.alloc.allocate(7));
    await m.meta.commit(); // committed, not checkpointed: only the journal has it for sure
    const ro = await FileBlockDevice.open(host.reboot("drop"), "/d", { readOnly: true });
    const r = await mount(ro);
    expect([...(await allocated(r))]).toEqual(got);
    await expect(r.meta.run(() => r.alloc.allocate(1))).rejects.toThrow(/EROFS/);
  });

  it("runs a long operation in parts: each part stays, a throw undoes only the part it is in", async () => {
    const dev = new MemoryBlockDevice(1024 * BS);
    await format(dev);
    const m = await mount(dev);
    const free = m.alloc.freeBlocks;
    const stamp = async (block: number, v: number) =>
      (await m.meta.write(m.sb.dataStart + block)).writeUInt32LE(v, 0);
    const read = async (block: number) =>
      (await m.meta.read(m.sb.dataStart + block)).readUInt32LE(0);
    await expect(
      m.meta.run(async (step) => {
        await stamp(1, 11);
        await m.alloc.allocate(2);
        await step();
        await stamp(2, 22);
        await step(Number.POSITIVE_INFINITY); // commits first, whatever the room
        expect(m.meta.dirtyBlocks).toBe(0);
        await stamp(3, 33);
        await m.alloc.allocate(5);
        throw new Error("in the third part");
      }),
    ).rejects.toThrow("in the third part");
    expect([await read(1), await read(2), await read(3)]).toEqual([11, 22, 0]);
    expect(m.alloc.freeBlocks).toBe(free - 2);
    expect(m.meta.dirtyBlocks).toBe(0); // the throw undid the third part; the rest is committed
  });

  it("keeps a freed block the journal would replay over until a checkpoint, checkpointing when only such blocks are left", async () => {
    const dev = new MemoryBlockDevice(1024 * BS);
    await format(dev);
    const m = await mount(dev);
    // A metadata block, committed: its image is in the log.
    const [x] = await m.meta.run(async () => {
      const got = await m.alloc.allocate(1);
      m.meta.create(got[0]!).fill(0xee);
      return got;
    });
    await m.meta.commit();
    await m.meta.run(() => m.alloc.release([x!]));
    await m.meta.commit();
    const others = await m.meta.run(() => m.alloc.allocate(m.alloc.freeBlocks - 1, x!));
    expect(others).not.toContain(x);
    // Only x is left: the allocation checkpoints (the log no longer holds x) and runs again.
    expect(await m.meta.run(() => m.alloc.allocate(1))).toEqual([x]);
    await expect(m.meta.run(() => m.alloc.allocate(1))).rejects.toThrow(/ENOSPC/);
    // A data block freed (never in the log) is reused after the next commit, no checkpoint needed.
    await m.meta.run(() => m.alloc.release([others[0]!]));
    await m.meta.commit();
    expect(await m.meta.run(() => m.alloc.allocate(1))).toEqual([others[0]]);
  });

  it.each(seeds(100))("leaves exactly a committed state after a power cut: seed %i", (seed) =>
    withSeed(seed, (rand) => crashRun(rand)),
  );
});

async function crashRun(rand: Rand): Promise<void> {
  let host = new CrashHost();
  const dev = await FileBlockDevice.create(host, "/d", 3000 * BS);
  await format(dev);
  const m = await mount(dev, rand() < 0.5 ? 2 * BS : undefined);
  const model = new Set<number>();
  // Each operation also stamps its number on two of eight scratch blocks, so that transactions
  // span several blocks; a state is the allocated set plus the scratch stamps.
  const scratch = (k: number) => back0 + k;
  const back0 = 2900;
  const stamps = new Array<number>(8).fill(0);
  const states: Array<{ used: Set<number>; stamps: number[] }> = [
    { used: new Set(), stamps: [...stamps] },
  ];
  let durable = 0; // index in `states` known committed
  host.arm({ cutAfter: int(rand, 1, 300) });
  try {
    for (let i = 0; i < 80; i++) {
      const r = rand();
      if (r < 0.15) {
        await (rand() < 0.5 ? m.meta.commit() : m.meta.checkpoint());
        durable = states.length - 1;
        continue;
      }
      const release = [...model].filter(() => rand() < 0.3);
      const marks = [int(rand, 0, 7), int(rand, 0, 7)];
      const got = await m.meta.run(async () => {
        await m.alloc.release(release);
        for (const k of marks) (await m.meta.write(scratch(k))).writeUInt32LE(i + 1, 0);
        return m.alloc.allocate(int(rand, 1, 40), int(rand, 0, 2800));
      });
      for (const k of marks) stamps[k] = i + 1;
      for (const b of release) model.delete(b);
      for (const b of got) {
        if (model.has(b)) throw new Error(`block ${b} handed out twice`);
        model.add(b);
      }
      states.push({ used: new Set(model), stamps: [...stamps] });
    }
  } catch (e) {
    if (!(e instanceof PowerCut)) throw e;
  }
  host = host.reboot(rand() < 0.5 ? "drop" : "random", rand);
  const back = await mount(await FileBlockDevice.open(host, "/d"));
  const seen = await allocated(back);
  const seenStamps: number[] = [];
  for (let k = 0; k < 8; k++) seenStamps.push((await back.meta.read(scratch(k))).readUInt32LE(0));
  const equal = states.map(
    (s) =>
      s.used.size === seen.size &&
      [...s.used].every((b) => seen.has(b)) &&
      s.stamps.every((v, k) => v === seenStamps[k]),
  );
  expect(equal.includes(true), "the bitmap after the cut is no state any operation left").toBe(
    true,
  );
  expect(equal.lastIndexOf(true), "a committed operation was lost").toBeGreaterThanOrEqual(durable);
  expect(back.alloc.freeBlocks).toBe(back.sb.totalBlocks - back.sb.dataStart - seen.size);
}

describe("metadata reads on a read-only device (a snapshot)", () => {
  it("bring in the blocks around a cold one in one device read, with the same images", async () => {
    const dev = new MemoryBlockDevice(2048 * BS);
    await format(dev);
    const rw = await mount(dev);
    const first = Math.ceil((rw.sb.dataStart + 16) / 16) * 16; // the start of a run of 16
    await rw.meta.run(async () => {
      for (let b = first; b < first + 40; b++) (await rw.meta.write(b)).fill(b % 251);
    });
    await rw.meta.checkpoint();
    const counted = countingReads(dev);
    const ro = await mount(counted.dev);
    counted.reads = 0;
    for (let b = first; b < first + 40; b++)
      expect((await ro.meta.read(b)).equals(Buffer.alloc(BS, b % 251))).toBe(true);
    // 40 blocks from an aligned start span three runs of 16.
    expect(counted.reads).toBe(3);
  });
});
