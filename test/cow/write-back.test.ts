// WriteBack, the copy-on-write policy, on a chain in memory: what is preserved and when, batching,
// the order of base writes, snapshot reads through the chain, and a space policy that says no.

import { afterEach, describe, expect, it } from "vitest";
import type { ChunkStore, Original } from "../../src/cow/chunk-store.js";
import { ReadHolds } from "../../src/cow/gate.js";
import type { HostFile } from "../../src/cow/host.js";
import { MemoryChunkStore } from "../../src/cow/memory-chunk-store.js";
import { SnapshotRead } from "../../src/cow/snapshot-read.js";
import { WriteBack } from "../../src/cow/write-back.js";
import { enospc } from "../../src/errors.js";
import { CrashHost } from "../helpers/crash-host.js";
import { int, seeds, withSeed } from "../helpers/random.js";

const CS = 4096;
const SIZE = 32 * CS;
const fill = (byte: number, n = CS) => Buffer.alloc(n, byte);

interface Rig {
  store: MemoryChunkStore;
  base: HostFile;
  wb: WriteBack;
  snap: SnapshotRead;
  /** Every batch written to the store: its area and chunks. */
  batches: Array<{ area: number; chunks: number[] }>;
  /** Bytes the space policy was asked for, in order. */
  asked: number[];
  stopped: Error[];
  live(offset?: number, n?: number): Promise<Buffer>;
  snapshot(id: number, offset?: number, n?: number): Promise<Buffer>;
  baseBytes(offset?: number, n?: number): Promise<Buffer>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.wb.commit().catch(() => {});
});

async function rig(
  opts: {
    batchBytes?: number;
    makeRoom?: (store: ChunkStore, bytes: number, what: string) => Promise<boolean>;
  } = {},
): Promise<Rig> {
  const store = new MemoryChunkStore(CS);
  const host = new CrashHost();
  const base = await host.open("/base.img", { create: true });
  await base.truncate(SIZE);
  const batches: Rig["batches"] = [];
  const write = store.write.bind(store);
  store.write = (area: number, list: ReadonlyArray<Original>) => {
    batches.push({ area, chunks: list.map((o) => o.chunk) });
    return write(area, list);
  };
  const asked: number[] = [];
  const stopped: Error[] = [];
  const baseReads = new ReadHolds();
  const wb = new WriteBack({
    store,
    base,
    baseReads,
    batchBytes: opts.batchBytes ?? 4 * CS,
    makeRoom: async (bytes, what) => {
      asked.push(bytes);
      return opts.makeRoom ? opts.makeRoom(store, bytes, what) : store.newest() !== undefined;
    },
    stop: (e) => stopped.push(e),
  });
  const snap = new SnapshotRead(store, base, baseReads);
  const read = async (fn: (b: Buffer) => Promise<unknown>, n: number) => {
    const b = Buffer.alloc(n);
    await fn(b);
    return b;
  };
  const r: Rig = {
    store,
    base,
    wb,
    snap,
    batches,
    asked,
    stopped,
    live: (o = 0, n = SIZE) => read((b) => wb.readLive(o, b), n),
    snapshot: (id, o = 0, n = SIZE) => read((b) => snap.read(id, o, b), n),
    baseBytes: (o = 0, n = SIZE) => read((b) => base.read(b, o), n),
  };
  rigs.push(r);
  return r;
}

describe("WriteBack on a chain in memory", () => {
  it("with no snapshot, writes go straight to the base and nothing is preserved", async () => {
    const r = await rig();
    await r.wb.write(CS + 10, fill(1, 100));
    expect(await r.baseBytes(CS + 10, 100)).toEqual(fill(1, 100));
    await r.wb.commit();
    expect([r.batches, r.asked]).toEqual([[], []]);
  });

  it("the first write to a chunk after a snapshot preserves its original, once per interval", async () => {
    const r = await rig();
    await r.wb.write(0, fill(1, 8 * CS));
    await r.store.add(1);
    await r.wb.write(3 * CS + 100, fill(2, 50));
    expect(r.asked).toEqual([r.store.chunkCost]);
    // Staged: live reads see the write; the base and the store do not yet.
    expect((await r.live(3 * CS + 100, 50)).equals(fill(2, 50))).toBe(true);
    expect(await r.baseBytes(3 * CS, CS)).toEqual(fill(1));
    expect(r.wb.reservedBytes).toBe(r.store.chunkCost);
    await r.wb.commit();
    expect(r.batches).toEqual([{ area: 1, chunks: [3] }]);
    expect(r.wb.reservedBytes).toBe(0);
    expect(r.store.holds(1, 3)).toBe(true);
    // Preserved in this interval: later writes go to the base at once, with no room asked.
    await r.wb.write(3 * CS, fill(3, 10));
    expect(await r.baseBytes(3 * CS, 10)).toEqual(fill(3, 10));
    await r.wb.commit();
    expect([r.batches.length, r.asked.length]).toEqual([1, 1]);
    // A new snapshot, a new interval: the chunk is copied again, into the newest area.
    await r.store.add(2);
    await r.wb.write(3 * CS, fill(4, 10));
    await r.wb.commit();
    expect(r.batches.at(-1)).toEqual({ area: 2, chunks: [3] });
    expect((await r.snapshot(1, 0, 8 * CS)).equals(fill(1, 8 * CS))).toBe(true);
    const chunk3 = Buffer.concat([fill(3, 10), fill(1, 90), fill(2, 50), fill(1, CS - 150)]);
    expect(await r.snapshot(2, 3 * CS, CS)).toEqual(chunk3);
  });

  it("stages chunks until a batch's worth, then preserves them in one batch", async () => {
    const r = await rig({ batchBytes: 4 * CS });
    await r.store.add(1);
    for (let c = 0; c < 3; c++) await r.wb.write(c * CS, fill(c + 1));
    expect(r.batches).toEqual([]);
    await r.wb.write(3 * CS, fill(4));
    await r.wb.write(9 * CS, fill(9, 2 * CS)); // the next batch's
    await r.wb.commit();
    expect(r.batches).toEqual([
      { area: 1, chunks: [0, 1, 2, 3] },
      { area: 1, chunks: [9, 10] },
    ]);
    expect(await r.baseBytes(0, 4 * CS)).toEqual(
      Buffer.concat([fill(1), fill(2), fill(3), fill(4)]),
    );
  });

  it.each(seeds(3))(
    "overwrites no base chunk before its original is published, whatever the interleaving: seed %i",
    (seed) =>
      withSeed(seed, async (rand) => {
        const r = await rig({ batchBytes: int(rand, 1, 6) * CS });
        let early = 0;
        const check = (offset: number, length: number) => {
          const newest = r.store.newest();
          for (let c = Math.floor(offset / CS); c * CS < offset + length; c++)
            if (newest !== undefined && !r.store.holds(newest, c)) early++;
        };
        const write = r.base.write.bind(r.base);
        const writev = r.base.writev.bind(r.base);
        r.base.write = (data, position) => {
          check(position, data.length);
          return write(data, position);
        };
        r.base.writev = (chunks, position) => {
          check(
            position,
            chunks.reduce((n, b) => n + b.length, 0),
          );
          return writev(chunks, position);
        };
        const images = new Map<number, Buffer>();
        const live = Buffer.alloc(SIZE);
        for (let round = 1; round <= 3; round++) {
          await r.wb.commit(); // administration waits for the write-back, as the volume's does
          await r.store.add(round);
          images.set(round, Buffer.from(live));
          // Writers own disjoint chunks, so the final image is known; each write lands whole.
          await Promise.all(
            [0, 1, 2].map(async (w) => {
              for (let i = 0; i < 40; i++) {
                const c = int(rand, 0, SIZE / CS / 3 - 1) * 3 + w;
                const at = c * CS + int(rand, 0, CS - 1);
                const data = fill(int(rand, 1, 255), int(rand, 1, c * CS + CS - at));
                await r.wb.write(at, data);
                data.copy(live, at);
              }
            }),
          );
          for (const [id, image] of images)
            expect((await r.snapshot(id)).equals(image), `snapshot ${id}`).toBe(true);
        }
        await r.wb.commit();
        expect(early).toBe(0);
        expect((await r.live()).equals(live)).toBe(true);
        expect((await r.baseBytes()).equals(live)).toBe(true);
        expect(r.stopped).toEqual([]);
      }),
  );

  it("reads a snapshot through newer areas, in ranges of any alignment", async () => {
    const r = await rig({ batchBytes: CS });
    await r.wb.write(0, fill(1, 8 * CS));
    await r.store.add(1);
    await r.wb.write(2 * CS, fill(2, 2 * CS)); // chunks 2, 3 into area 1
    await r.wb.commit(); // as the volume does before it takes a snapshot
    await r.store.add(2);
    await r.wb.write(CS, fill(3, 3 * CS)); // chunk 1 into area 2: snapshot 1 reads it there
    await r.wb.commit();
    expect(r.store.locate(1, 0, 4).map((x) => x.area)).toEqual([undefined, 2, 1, undefined]);
    expect((await r.snapshot(1, 100, 5 * CS)).equals(fill(1, 5 * CS))).toBe(true);
    const s2 = Buffer.concat([fill(1, 2 * CS), fill(2, 2 * CS), fill(1, 4 * CS)]);
    expect((await r.snapshot(2, 0, 8 * CS)).equals(s2)).toBe(true);
    expect((await r.snapshot(2, CS + 5, 2 * CS)).equals(s2.subarray(CS + 5, 3 * CS + 5))).toBe(
      true,
    );
    expect(r.snap.inBase(1, 4 * CS, 4 * CS)).toBe(true);
    expect(r.snap.inBase(1, 3 * CS, 2 * CS)).toBe(false);
  });

  it("when the space policy refuses, the write fails whole (ENOSPC) and nothing of it is applied", async () => {
    let allowed = 1;
    const r = await rig({
      makeRoom: async (store, bytes) => {
        if (allowed-- <= 0) throw enospc(`write: shadow storage limit reached (${bytes} more)`);
        return store.newest() !== undefined;
      },
    });
    await r.wb.write(0, fill(1, 4 * CS));
    await r.store.add(1);
    await r.wb.write(0, fill(2)); // chunk 0: room found
    const before = await r.live();
    // Chunk 0 needs no room, chunks 1 and 2 do: the whole write is refused.
    await expect(r.wb.write(100, fill(3, 2 * CS))).rejects.toThrow(/ENOSPC/);
    expect((await r.live()).equals(before)).toBe(true);
    expect(r.wb.reservedBytes).toBe(r.store.chunkCost); // chunk 0's only
    await r.wb.commit();
    expect((await r.baseBytes()).equals(before)).toBe(true);
    expect(r.store.chunks(1)).toEqual([0]);
    expect(r.wb.reservedBytes).toBe(0);
    await r.wb.write(10, fill(4, 10)); // already preserved: no room needed
    expect(r.stopped).toEqual([]);
  });

  it("when the policy leaves no snapshot (evicted the only one), the write goes to the base", async () => {
    const r = await rig({
      makeRoom: async (store) => {
        for (const id of store.ids()) store.detach(id);
        return false;
      },
    });
    await r.store.add(1);
    await r.wb.write(CS, fill(5, 2 * CS));
    expect(await r.baseBytes(CS, 2 * CS)).toEqual(fill(5, 2 * CS));
    await r.wb.commit();
    expect(r.batches).toEqual([]);
  });
});
