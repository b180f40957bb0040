// One conformance suite for every ChunkStore: the diff areas' files (on real files and on the
// crash host) and the one in memory. Each case says what the volume relies on.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ChunkStore, Original } from "../../src/cow/chunk-store.js";
import { FileChunkStore } from "../../src/cow/file-chunk-store.js";
import type { HostFs } from "../../src/cow/host.js";
import { NodeHostFs } from "../../src/cow/index.js";
import { MemoryChunkStore } from "../../src/cow/memory-chunk-store.js";
import { CrashHost } from "../helpers/crash-host.js";

const CS = 4096;
const CHUNKS = 64;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

interface Subject {
  store: ChunkStore;
  /** For stores kept on a host: the store as an open after a power cut finds it. */
  afterPowerCut?: () => Promise<ChunkStore>;
}

async function fileStore(host: HostFs, dir: string, crash?: CrashHost): Promise<Subject> {
  await host.mkdir(join(dir, "diff"));
  const store = FileChunkStore.empty(host, dir, CS);
  cleanups.push(() => store.close());
  const afterPowerCut = async () => {
    if (!crash) throw new Error("no crash host");
    const back = crash.reboot("drop");
    const areas = store.ids().map((id) => ({ id, committed: 0, exact: false }));
    const opts = { chunkSize: CS, chunkCount: CHUNKS, readOnly: false };
    const reopened = (await FileChunkStore.open(back, dir, opts, areas)).store;
    cleanups.push(() => reopened.close());
    return reopened;
  };
  return crash ? { store, afterPowerCut } : { store };
}

const subjects: Record<string, () => Promise<Subject>> = {
  "file (host files)": async () => {
    const root = mkdtempSync(join(tmpdir(), "shadowfs-store-"));
    cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
    return fileStore(new NodeHostFs(), join(root, "store"));
  },
  "file (crash host)": async () => {
    const host = new CrashHost();
    return fileStore(host, "/store", host);
  },
  memory: async () => ({ store: new MemoryChunkStore(CS) }),
};

const chunk = (byte: number) => Buffer.alloc(CS, byte);
const originals = (pairs: Array<[number, number]>): Original[] =>
  pairs.map(([c, byte]) => ({ chunk: c, data: chunk(byte) }));

async function preserve(store: ChunkStore, id: number, pairs: Array<[number, number]>) {
  await store.publish(await store.write(id, originals(pairs)));
}

async function readChunks(store: ChunkStore, area: number, c: number, count = 1): Promise<Buffer> {
  const release = store.hold(area);
  try {
    const buf = Buffer.alloc(count * CS);
    await store.read({ chunk: c, count, area }, buf);
    return buf;
  } finally {
    release();
  }
}

describe.each(Object.entries(subjects))("ChunkStore conformance: %s", (_name, make) => {
  it("starts empty and keeps its areas oldest first", async () => {
    const { store } = await make();
    expect([store.ids(), store.newest(), store.has(1)]).toEqual([[], undefined, false]);
    await store.add(1);
    await store.add(3);
    expect([store.ids(), store.newest(), store.has(1), store.has(2)]).toEqual([
      [1, 3],
      3,
      true,
      false,
    ]);
    await expect(store.add(2)).rejects.toThrow(); // not newer than the newest
    expect([store.bytesUsed(1), store.chunkCount(1), store.chunks(3)]).toEqual([0, 0, []]);
  });

  it("a batch is visible only once published, and reads back what was written", async () => {
    const { store } = await make();
    await store.add(1);
    const data = chunk(7);
    const w = await store.write(1, [{ chunk: 5, data }]);
    data.fill(9); // the store keeps no reference to the caller's buffer
    expect(store.holds(1, 5)).toBe(false);
    expect(store.locate(1, 5, 5)).toEqual([{ chunk: 5, count: 1, area: undefined }]);
    expect(store.bytesUsed(1)).toBe(0);
    await store.publish(w);
    expect(store.holds(1, 5)).toBe(true);
    expect(store.locate(1, 4, 6)).toEqual([
      { chunk: 4, count: 1, area: undefined },
      { chunk: 5, count: 1, area: 1 },
      { chunk: 6, count: 1, area: undefined },
    ]);
    expect(await readChunks(store, 1, 5)).toEqual(chunk(7));
  });

  it("usage grows by publishing only, at most chunkCost a chunk and batchCost a batch", async () => {
    const { store } = await make();
    await store.add(1);
    const before = store.checkpoint(1);
    await preserve(store, 1, [
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    const used = store.bytesUsed(1);
    expect(used).toBeGreaterThanOrEqual(3 * CS);
    expect(used).toBeLessThanOrEqual(3 * store.chunkCost + store.batchCost);
    expect(store.checkpoint(1)).toBeGreaterThan(before);
    // Zeros cost less than data, and read back as zeros.
    await store.publish(
      await store.write(1, [
        { chunk: 8, data: null },
        { chunk: 9, data: Buffer.alloc(CS) },
      ]),
    );
    expect(store.bytesUsed(1) - used).toBeLessThan(2 * CS);
    expect(await readChunks(store, 1, 8, 2)).toEqual(Buffer.alloc(2 * CS));
    expect([store.chunks(1), store.chunkCount(1)]).toEqual([[1, 2, 3, 8, 9], 5]);
    // Only chunks with data stored hold data.
    expect([1, 8, 9, 10].map((c) => store.holdsData(1, c))).toEqual([true, false, false, false]);
  });

  it("reads a run of many chunks in one call, each as preserved", async () => {
    const { store } = await make();
    await store.add(1);
    // Two batches, so that consecutive chunks lie in slots that are not consecutive.
    await preserve(store, 1, [
      [10, 10],
      [12, 12],
    ]);
    await preserve(store, 1, [
      [11, 11],
      [13, 13],
    ]);
    const all = await readChunks(store, 1, 10, 4);
    for (let i = 0; i < 4; i++) expect(all.subarray(i * CS, (i + 1) * CS)).toEqual(chunk(10 + i));
  });

  it("a snapshot reads each chunk from the first area from its own on, else the base", async () => {
    const { store } = await make();
    for (const id of [1, 2, 3]) await store.add(id);
    await preserve(store, 1, [[0, 1]]);
    await preserve(store, 2, [
      [0, 2],
      [1, 2],
    ]);
    await preserve(store, 3, [
      [1, 3],
      [2, 3],
    ]);
    expect(store.locate(1, 0, 4)).toEqual([
      { chunk: 0, count: 1, area: 1 },
      { chunk: 1, count: 1, area: 2 },
      { chunk: 2, count: 1, area: 3 },
      { chunk: 3, count: 2, area: undefined },
    ]);
    expect(store.locate(2, 0, 2)).toEqual([
      { chunk: 0, count: 2, area: 2 },
      { chunk: 2, count: 1, area: 3 },
    ]);
    expect(store.locate(3, 0, 2)).toEqual([
      { chunk: 0, count: 1, area: undefined },
      { chunk: 1, count: 2, area: 3 },
    ]);
    expect(() => store.locate(4, 0, 0)).toThrow(/ENOENT/);
  });

  it("batches of one area publish in write order; the next is written while one publishes", async () => {
    const { store } = await make();
    await store.add(1);
    const first = await store.write(1, originals([[1, 1]]));
    const second = await store.write(1, originals([[2, 2]]));
    const publishing = store.publish(first);
    const third = await store.write(1, originals([[3, 3]]));
    await publishing;
    await store.publish(second);
    await store.publish(third);
    for (const c of [1, 2, 3]) expect(await readChunks(store, 1, c)).toEqual(chunk(c));
    expect(store.bytesUsed(1)).toBeLessThanOrEqual(3 * (store.chunkCost + store.batchCost));
  });

  it("a detached area leaves the chain at once, stays readable while held, and drop waits", async () => {
    const { store } = await make();
    for (const id of [1, 2]) await store.add(id);
    await preserve(store, 2, [[4, 4]]);
    const release = store.hold(2);
    store.detach(2);
    expect([store.ids(), store.has(2), store.newest()]).toEqual([[1], false, 1]);
    expect(store.locate(1, 4, 4)).toEqual([{ chunk: 4, count: 1, area: undefined }]);
    expect(store.holds(2, 4)).toBe(true); // reachable by name until dropped
    let dropped = false;
    const drop = store.drop(2).then(() => (dropped = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(dropped).toBe(false);
    const buf = Buffer.alloc(CS);
    await store.read({ chunk: 4, count: 1, area: 2 }, buf);
    expect(buf).toEqual(chunk(4));
    release();
    await drop;
    expect(store.holds(2, 4)).toBe(false);
    await expect(store.drop(1)).rejects.toThrow(); // still in the chain
  });

  it("what publish resolved survives a power cut; what was only written does not", async () => {
    const { store, afterPowerCut } = await make();
    if (!afterPowerCut) return; // nothing to survive in memory
    await store.add(1);
    await preserve(store, 1, [
      [2, 2],
      [3, 3],
    ]);
    await store.write(1, originals([[4, 4]]));
    const back = await afterPowerCut();
    expect(back.ids()).toEqual([1]);
    expect([back.holds(1, 2), back.holds(1, 3), back.holds(1, 4)]).toEqual([true, true, false]);
    expect(await readChunks(back, 1, 2, 2)).toEqual(Buffer.concat([chunk(2), chunk(3)]));
    await preserve(back, 1, [[4, 5]]); // the unreferenced slot is reused
    expect(await readChunks(back, 1, 4)).toEqual(chunk(5));
  });
});
