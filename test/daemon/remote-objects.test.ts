// Snapshots stored as packs and manifests, over the object-storage seam held in memory (the same
// code runs against a real Ceph gateway in test/cli/remote.test.ts): streams stored and made
// again are the snapshots, byte for byte; chunks already stored are not stored again; verify names
// a damaged object and a receive refuses it; prune keeps what kept snapshots need.

import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CowVolume,
  collectingSink,
  NodeHostFs,
  SnapshotDevice,
  StreamReader,
  snapshotStream,
} from "../../src/cow/index.js";
import { MemoryObjectStore } from "../../src/cow/object-store.js";
import { decodeManifest, type Manifest } from "../../src/cow/remote-format.js";
import { listRemote, pruneRemote, verifyRemote } from "../../src/daemon/remote/admin.js";
import { manifestStream } from "../../src/daemon/remote/download.js";
import { ChunkCache, RemoteSource } from "../../src/daemon/remote/lazy.js";
import { PACKS, Remote } from "../../src/daemon/remote/repository.js";
import { uploadSnapshot } from "../../src/daemon/remote/upload.js";
import { isFsError } from "../../src/errors.js";

const CS = 64 * 1024;
const CHUNKS = 640; // 40 MiB: three packs when whole
const host = new NodeHostFs();
const quiet = { warn: () => undefined, info: () => undefined, error: () => undefined };

let root: string;
let vol: CowVolume;
let objects: MemoryObjectStore;
let remote: Remote;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), "shadowfs-remote-"));
  vol = await CowVolume.create(host, join(root, "store"), {
    volumeSize: CHUNKS * CS,
    chunkSize: CS,
    logger: quiet,
  });
  objects = new MemoryObjectStore();
  remote = new Remote(objects);
});
afterEach(async () => {
  await vol.close();
  rmSync(root, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 0, 1);
const snap = (n: number) => vol.createSnapshot({ createdAt: T0 + n * 1000 }).then((s) => s.id);

async function* pieces(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 100_000) yield bytes.subarray(at, at + 100_000);
}

/** Snapshot `id` stored in the remote, from `base` (a manifest there) when given. */
async function upload(id: number, base?: Manifest) {
  const sink = collectingSink();
  await snapshotStream(vol, id, base ? { base: base.snapshot.id } : {}).write(sink);
  const places = await remote.chunkPlaces();
  const like = (await remote.manifests()).at(-1);
  return uploadSnapshot(remote, places, base, like, pieces(sink.bytes()));
}

/** The volume a stream made from manifest `m` gives (from `image`, the base's, when given). */
async function image(m: Manifest, base?: { m: Manifest; image: Buffer }): Promise<Buffer> {
  const out = base ? Buffer.from(base.image) : Buffer.alloc(CHUNKS * CS);
  for await (const c of new StreamReader(manifestStream(remote, m, base?.m)).chunks()) {
    if (c.data) c.data.copy(out, c.chunk * CS);
    else out.fill(0, c.chunk * CS, (c.chunk + c.count) * CS);
  }
  return out;
}

async function snapshotBytes(id: number): Promise<Buffer> {
  const b = Buffer.alloc(CHUNKS * CS);
  await vol.readSnapshot(id, 0, b);
  return b;
}

describe("snapshots in object storage", () => {
  it("are stored as packs and manifests and made again byte for byte, whole or incrementally", async () => {
    await vol.write(0, randomBytes(500 * CS));
    const s1 = await snap(1);
    // Snapshot 2: 10 chunks changed, 5 zeroed, and 3 holding content snapshot 1 already had.
    await vol.write(100 * CS, randomBytes(10 * CS));
    await vol.write(200 * CS, Buffer.alloc(5 * CS));
    const copy = Buffer.alloc(3 * CS);
    await vol.read(0, copy);
    await vol.write(550 * CS, copy);
    const s2 = await snap(2);

    const u1 = await upload(s1);
    expect(u1).toMatchObject({ newChunks: 500, reusedChunks: 0, packs: 2, bytes: 500 * CS });
    const u2 = await upload(s2, u1.manifest);
    expect(u2).toMatchObject({ newChunks: 10, reusedChunks: 3, packs: 1, bytes: 10 * CS });
    expect(u2.manifest.entries).toHaveLength(500 - 5 + 3);

    const all = await remote.manifests();
    expect(all.map((m) => m.snapshot.id)).toEqual([s1, s2]);
    const i1 = await image(all[0]!);
    expect(i1.equals(await snapshotBytes(s1))).toBe(true);
    expect((await image(all[1]!)).equals(await snapshotBytes(s2))).toBe(true);
    const i2 = await image(all[1]!, { m: all[0]!, image: i1 });
    expect(i2.equals(await snapshotBytes(s2))).toBe(true);

    const rows = await listRemote(remote);
    expect(rows.map((r) => [r.bytes, r.exclusiveBytes])).toEqual([
      [500 * CS, 15 * CS],
      [498 * CS, 10 * CS],
    ]);
    expect((await verifyRemote(remote)).problems).toEqual([]);
  });

  it("a snapshot stored again stores nothing new", async () => {
    await vol.write(0, randomBytes(20 * CS));
    const s1 = await snap(1);
    await upload(s1);
    const before = objects.objects.size;
    const again = await upload(s1);
    expect(again).toMatchObject({ newChunks: 0, reusedChunks: 20, packs: 0 });
    expect(objects.objects.size).toBe(before);
  });

  it("a damaged pack is named by verify and refused by a receive", async () => {
    await vol.write(0, randomBytes(20 * CS));
    const s1 = await snap(1);
    const { manifest } = await upload(s1);
    const key = `${PACKS}${manifest.entries[7]!.pack}`;
    objects.objects.get(key)![7 * CS + 3]! ^= 1;
    const report = await verifyRemote(remote);
    expect(report.problems).toEqual([
      { object: `memory:/${key}`, problem: "damaged pack: slot 7 does not match its hash" },
    ]);
    const err = await image(manifest).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isFsError(err, "EBADMSG"), String(err)).toBe(true);
    expect(String(err)).toMatch(/slot 7 \(chunk 7 .*does not match its hash/);
  });

  it("a manifest damaged or a pack missing is reported", async () => {
    await vol.write(0, randomBytes(4 * CS));
    const { manifest } = await upload(await snap(1));
    await vol.write(0, randomBytes(4 * CS));
    await upload(await snap(2), manifest);
    const [k1, k2] = [...objects.objects.keys()].filter((k) => k.startsWith("snapshots/"));
    objects.objects.get(k1!)![30]! ^= 1;
    expect(() => decodeManifest(objects.objects.get(k1!)!, k1!)).toThrow(/checksum mismatch/);
    const pack = decodeManifest(objects.objects.get(k2!)!, k2!).entries[0]!.pack;
    objects.objects.delete(`${PACKS}${pack}`);
    const problems = (await verifyRemote(remote)).problems.map((p) => `${p.object}: ${p.problem}`);
    expect(problems).toEqual([
      expect.stringMatching(new RegExp(`${k1}: damaged manifest: .*checksum mismatch`)),
      expect.stringMatching(new RegExp(`${k2}: pack packs/${pack} is missing`)),
    ]);
  });

  it("prune keeps every chunk a kept snapshot needs and deletes the rest", async () => {
    await vol.write(0, randomBytes(300 * CS));
    const s1 = await snap(1);
    await vol.write(0, randomBytes(300 * CS));
    const s2 = await snap(2);
    await vol.write(0, randomBytes(10 * CS));
    const s3 = await snap(3);
    const u1 = await upload(s1);
    const u2 = await upload(s2, u1.manifest);
    await upload(s3, u2.manifest);
    const dry = await pruneRemote(remote, 1, true);
    expect(dry).toMatchObject({ pruned: expect.any(Array), packsDeleted: 2, dryRun: true });
    expect((await remote.manifests()).length).toBe(3);
    const report = await pruneRemote(remote, 1);
    expect(report.pruned).toHaveLength(2);
    // Snapshot 1's two packs go; snapshot 2's, which snapshot 3 still reads, stay.
    expect(report.packsDeleted).toBe(2);
    const [m3] = await remote.manifests();
    expect((await image(m3!)).equals(await snapshotBytes(s3))).toBe(true);
    expect((await verifyRemote(remote)).problems).toEqual([]);
    await expect(pruneRemote(remote, 0)).rejects.toThrow(/keep at least/);
  });

  it("a snapshot read where it lies fetches each chunk once, checked, and keeps the cache bounded", async () => {
    await vol.write(0, randomBytes(64 * CS));
    await vol.write(100 * CS, randomBytes(8 * CS));
    const id = await snap(1);
    const { manifest } = await upload(id);
    const want = await snapshotBytes(id);
    const cacheDir = join(root, "cache");
    const source = new RemoteSource(remote, manifest, await ChunkCache.open(cacheDir, 1 << 30));
    const dev = new SnapshotDevice(source, id);
    // Ranges across chunk edges, in order (read ahead) and not, and over chunks of zeros.
    for (const [offset, length] of [
      [0, 4096],
      [4096, 1 << 20],
      [CS - 10, 20],
      [99 * CS + 5, 3 * CS],
      [200 * CS, CS],
    ] as const) {
      const got = Buffer.alloc(length);
      await dev.read(offset, got);
      expect(got.equals(want.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
    }
    const fetched = source.traffic.fetchedBytes;
    expect(fetched % CS).toBe(0);
    expect(fetched).toBeLessThanOrEqual(72 * CS);
    // A second source on the same cache fetches nothing it has.
    const again = new RemoteSource(remote, manifest, await ChunkCache.open(cacheDir, 1 << 30));
    const got = Buffer.alloc(2 * CS);
    await again.read(id, 0, got);
    expect(got.equals(want.subarray(0, 2 * CS))).toBe(true);
    expect(again.traffic.fetchedBytes).toBe(0);
    // A damaged cache file is fetched again; a cache bounded at 4 chunks keeps at most 4.
    const [name] = readdirSync(cacheDir);
    writeFileSync(join(cacheDir, name!), "bad");
    const small = await ChunkCache.open(cacheDir, 4 * CS);
    expect(small.usedBytes).toBeLessThanOrEqual(4 * CS);
    const third = new RemoteSource(remote, manifest, small);
    const all = Buffer.alloc(64 * CS);
    await third.read(id, 0, all);
    expect(all.equals(want.subarray(0, 64 * CS))).toBe(true);
    expect(readdirSync(cacheDir).length).toBeLessThanOrEqual(4);
    // A damaged pack is an I/O error to a reader, never its bytes.
    const key = `${PACKS}${manifest.entries[0]!.pack}`;
    objects.objects.get(key)![5]! ^= 1;
    const fresh = new RemoteSource(
      remote,
      manifest,
      await ChunkCache.open(join(root, "c2"), 1 << 30),
    );
    const err = await fresh.read(id, 0, Buffer.alloc(CS)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isFsError(err, "EIO"), String(err)).toBe(true);
    expect(String(err)).toMatch(/does not match its hash/);
  });
});
