// Behaviour of the copy-on-write volume a user relies on: what a snapshot costs, what is copied
// and when, deleting and reverting, the shadow storage limit, read-only access, recovery.

import { existsSync, mkdtempSync, readSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CowVolume,
  checkStore,
  type HostFs,
  Lease,
  NodeHostFs,
  type OpenOptions,
} from "../../src/cow/index.js";
import { quiet } from "../helpers/cow-workload.js";
import { CrashHost } from "../helpers/crash-host.js";

const CS = 16 * 1024;
const host = new NodeHostFs();
let root: string;
let store: string;
const opened: CowVolume[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "shadowfs-vol-"));
  store = join(root, "store");
});
afterEach(async () => {
  for (const v of opened.splice(0)) await v.close().catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

async function make(
  opts: Partial<Parameters<typeof CowVolume.create>[2]> = {},
): Promise<CowVolume> {
  const v = await CowVolume.create(host, store, {
    volumeSize: 64 * CS,
    chunkSize: CS,
    logger: quiet,
    ...opts,
  });
  opened.push(v);
  return v;
}

async function reopen(v: CowVolume, opts: OpenOptions = {}): Promise<CowVolume> {
  await v.close();
  const w = await CowVolume.open(host, store, { logger: quiet, ...opts });
  opened.push(w);
  return w;
}

const fill = (byte: number, n = CS) => Buffer.alloc(n, byte);

async function readAt(
  dev: { read(o: number, b: Uint8Array): Promise<void> },
  offset: number,
  n: number,
): Promise<Buffer> {
  const b = Buffer.alloc(n);
  await dev.read(offset, b);
  return b;
}

describe("write-back batches", () => {
  /** A host whose diff data syncs take 30 ms: the next batch writes while one waits. */
  function slowDataSyncs(): { host: HostFs; overlapped: () => number } {
    let syncing = 0;
    let overlapped = 0;
    const slow: HostFs = Object.create(host);
    slow.open = async (path, opts) => {
      const f = await host.open(path, opts);
      if (!path.endsWith(".data")) return f;
      const sync = f.sync.bind(f);
      const writev = f.writev.bind(f);
      f.writev = (chunks, position) => {
        if (syncing > 0) overlapped++;
        return writev(chunks, position);
      };
      f.sync = async () => {
        syncing++;
        await new Promise((done) => setTimeout(done, 30));
        await sync().finally(() => syncing--);
      };
      return f;
    };
    return { host: slow, overlapped: () => overlapped };
  }

  it("overlap, yet publish in order: every snapshot reads its own after reopening", async () => {
    const { host: slow, overlapped } = slowDataSyncs();
    const opts = { logger: quiet, writeBackBytes: 2 * CS };
    const v = await CowVolume.create(slow, store, { volumeSize: 64 * CS, chunkSize: CS, ...opts });
    opened.push(v);
    for (const [round, byte] of [1, 2, 3].entries()) {
      for (let c = 0; c < 64; c++) await v.write(c * CS, fill(byte + c));
      if (round < 2) await v.createSnapshot();
    }
    expect(overlapped()).toBeGreaterThan(0);
    await v.close();
    expect((await checkStore(host, store)).problems).toEqual([]);
    const w = await CowVolume.open(host, store, { logger: quiet });
    opened.push(w);
    const [first, second] = w.snapshots();
    for (let c = 0; c < 64; c++) {
      expect(await readAt(w.snapshotDevice(first!.id), c * CS, 1)).toEqual(fill(1 + c, 1));
      expect(await readAt(w.snapshotDevice(second!.id), c * CS, 1)).toEqual(fill(2 + c, 1));
      expect(await readAt(w, c * CS, 1)).toEqual(fill(3 + c, 1));
    }
  });
});

describe("snapshots", () => {
  it("taking a snapshot copies no data", async () => {
    const v = await make();
    await v.write(0, fill(7, 64 * CS));
    const s = await v.createSnapshot();
    expect(s.diffAreaBytes).toBe(0);
    expect(statSync(join(store, "diff", `${s.id}.data`)).size).toBe(4096);
  });

  it("copies a chunk once per snapshot interval, and not at all when it was never written", async () => {
    const v = await make();
    await v.write(3 * CS, fill(1));
    const s = await v.createSnapshot();
    await v.write(3 * CS, fill(2));
    await v.flush();
    await v.write(3 * CS + 10, fill(3, 100));
    await v.flush();
    expect(v.snapshots()[0]!.diffAreaBytes).toBe(CS + 2 * 32); // one chunk, one entry, one batch header
    await v.write(9 * CS, fill(4)); // never written before the snapshot
    await v.flush();
    expect(v.snapshots()[0]!.diffAreaBytes).toBe(CS + 4 * 32); // an index entry, no data
    const snap = v.snapshotDevice(s.id);
    expect((await readAt(snap, 3 * CS, CS)).equals(fill(1))).toBe(true);
    expect((await readAt(snap, 9 * CS, CS)).equals(fill(0))).toBe(true);
  });

  it("older snapshots read through newer diff areas", async () => {
    const v = await make();
    await v.write(0, fill(1, 2 * CS));
    const s1 = await v.createSnapshot();
    await v.write(0, fill(2, CS));
    const s2 = await v.createSnapshot();
    await v.write(0, fill(3, 2 * CS));
    expect((await readAt(v.snapshotDevice(s1.id), 0, 2 * CS)).equals(fill(1, 2 * CS))).toBe(true);
    expect(
      (await readAt(v.snapshotDevice(s2.id), 0, 2 * CS)).equals(Buffer.concat([fill(2), fill(1)])),
    ).toBe(true);
    expect((await readAt(v, 0, 2 * CS)).equals(fill(3, 2 * CS))).toBe(true);
  });

  it("deleting the oldest drops its files; deleting a middle one keeps what the older reads", async () => {
    const v = await make();
    await v.write(0, fill(1, 3 * CS));
    const a = await v.createSnapshot();
    await v.write(0, fill(2, CS));
    const b = await v.createSnapshot();
    await v.write(CS, fill(3, CS));
    const c = await v.createSnapshot();
    await v.write(0, fill(4, 3 * CS));
    await v.deleteSnapshot(b.id); // a reads chunk 1 through b's diff area
    expect(existsSync(join(store, "diff", `${b.id}.index`))).toBe(false);
    expect((await readAt(v.snapshotDevice(a.id), 0, 3 * CS)).equals(fill(1, 3 * CS))).toBe(true);
    expect(
      (await readAt(v.snapshotDevice(c.id), 0, 2 * CS)).equals(Buffer.concat([fill(2), fill(3)])),
    ).toBe(true);
    await v.deleteSnapshot(a.id);
    expect(existsSync(join(store, "diff", `${a.id}.data`))).toBe(false);
    await v.deleteSnapshot(c.id);
    expect(v.snapshots()).toEqual([]);
    await expect(v.deleteSnapshot(c.id)).rejects.toThrow(/ENOENT/);
    const w = await reopen(v);
    expect((await readAt(w, 0, 3 * CS)).equals(fill(4, 3 * CS))).toBe(true);
  });

  it("revert keeps newer snapshots by default, so it can be undone; discardNewer drops them", async () => {
    const v = await make();
    await v.write(0, fill(1, 2 * CS));
    const a = await v.createSnapshot({ name: "a" });
    await v.write(0, fill(2, 2 * CS));
    const b = await v.createSnapshot({ name: "b" });
    await v.write(CS, fill(3));
    await v.revert(a.id);
    expect((await readAt(v, 0, 2 * CS)).equals(fill(1, 2 * CS))).toBe(true);
    const ids = v.snapshots().map((s) => s.id);
    expect(ids).toEqual([a.id, b.id]);
    expect((await readAt(v.snapshotDevice(b.id), 0, 2 * CS)).equals(fill(2, 2 * CS))).toBe(true);
    await v.revert(b.id); // undo
    expect((await readAt(v, 0, 2 * CS)).equals(fill(2, 2 * CS))).toBe(true);
    await v.revert(a.id, { discardNewer: true });
    expect(v.snapshots().map((s) => s.id)).toEqual([a.id]);
    const w = await reopen(v);
    expect((await readAt(w, 0, 2 * CS)).equals(fill(1, 2 * CS))).toBe(true);
    expect(w.snapshots().map((s) => s.name)).toEqual(["a"]);
  });
});

describe("shadow storage limit", () => {
  it("deletes the oldest snapshots to make room, and records and logs each deletion", async () => {
    const warnings: string[] = [];
    const logger = { ...quiet, warn: (_o: object, msg: string) => void warnings.push(msg) };
    const v = await make({ shadowStorageLimit: 4 * CS, logger });
    await v.write(0, fill(1, 8 * CS));
    const a = await v.createSnapshot({ name: "first" });
    await v.write(0, fill(2, 3 * CS));
    const b = await v.createSnapshot();
    await v.write(0, fill(3, 3 * CS)); // needs 3 more chunks: the oldest must go
    await v.flush();
    expect(v.snapshots().map((s) => s.id)).toEqual([b.id]);
    const ev = v.evictions();
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ id: a.id, name: "first" });
    expect(ev[0]!.reason).toMatch(/shadow storage limit/);
    expect(ev[0]!.evictedAt).toBeGreaterThanOrEqual(ev[0]!.createdAt);
    expect(warnings).toContain("snapshot deleted to make room");
    expect((await readAt(v.snapshotDevice(b.id), 0, 3 * CS)).equals(fill(2, 3 * CS))).toBe(true);
    const w = await reopen(v);
    expect(w.evictions()).toEqual(ev);
  });

  it("with fail-writes, a write that does not fit fails whole with ENOSPC", async () => {
    const v = await make({ shadowStorageLimit: 2 * CS + 200, onFull: "fail-writes" });
    await v.write(0, fill(1, 8 * CS));
    const s = await v.createSnapshot();
    await v.write(0, fill(2, CS));
    await expect(v.write(CS, fill(3, 2 * CS))).rejects.toThrow(/ENOSPC.*shadow storage limit/);
    expect((await readAt(v, 0, 3 * CS)).equals(Buffer.concat([fill(2), fill(1, 2 * CS)]))).toBe(
      true,
    );
    await v.write(0, fill(4, CS)); // already preserved: no room needed
    expect(v.snapshots().map((x) => x.id)).toEqual([s.id]);
    expect(v.evictions()).toEqual([]);
  });
});

describe("access and recovery", () => {
  it("a read-only open and every snapshot refuse changes with EROFS", async () => {
    const v = await make();
    await v.write(0, fill(5));
    const s = await v.createSnapshot();
    await expect(v.snapshotDevice(s.id).write(0, fill(1))).rejects.toThrow(/EROFS/);
    const r = await reopen(v, { readOnly: true });
    await expect(r.write(0, fill(1))).rejects.toThrow(/EROFS/);
    await expect(r.createSnapshot()).rejects.toThrow(/EROFS/);
    await expect(r.deleteSnapshot(s.id)).rejects.toThrow(/EROFS/);
    expect((await readAt(r, 0, CS)).equals(fill(5))).toBe(true);
  });

  it("refuses bad settings and an existing store", async () => {
    await expect(
      CowVolume.create(host, store, { volumeSize: 3 * CS + 1, chunkSize: CS }),
    ).rejects.toThrow(/EINVAL/);
    await expect(
      CowVolume.create(host, store, { volumeSize: CS, chunkSize: 3000 }),
    ).rejects.toThrow(/EINVAL/);
    await make();
    await expect(CowVolume.create(host, store, { volumeSize: CS, chunkSize: CS })).rejects.toThrow(
      /EEXIST/,
    );
    await expect(CowVolume.open(host, root)).rejects.toThrow(/not a shadowfs store/);
  });

  it("reports an unclean shutdown and keeps every snapshot after a power cut", async () => {
    let mem = new CrashHost();
    const v = await CowVolume.create(mem, "/s", {
      volumeSize: 16 * CS,
      chunkSize: CS,
      logger: quiet,
    });
    await v.write(0, fill(1, 4 * CS));
    const s = await v.createSnapshot();
    await v.write(0, fill(2, 4 * CS));
    await v.flush();
    await v.write(0, fill(3, 4 * CS)); // not flushed
    mem = mem.reboot("drop");
    const w = await CowVolume.open(mem, "/s", { logger: quiet });
    expect(w.recovery.uncleanShutdown).toBe(true);
    expect((await readAt(w.snapshotDevice(s.id), 0, 4 * CS)).equals(fill(1, 4 * CS))).toBe(true);
    expect((await readAt(w, 0, 4 * CS)).equals(fill(2, 4 * CS))).toBe(true);
    await w.close();
    const x = await CowVolume.open(mem, "/s", { logger: quiet });
    expect(x.recovery.uncleanShutdown).toBe(false);
    await x.close();
  });
});

describe("ranges lent to a reader with its own thread", () => {
  const pread = (fd: number, position: number, n: number) => {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, position);
    return b;
  };
  /** Every `until` made is settled after the test, so that the volume can close. */
  const settle: Lease[] = [];
  /** A lease to lend under, released after the test if it has not been. */
  const until = () => {
    const p = new Lease();
    settle.push(p);
    return { p, done: () => p.release() };
  };
  const later = () => new Promise((resolve) => setTimeout(resolve, 50));
  afterEach(() => {
    for (const lease of settle.splice(0)) lease.release();
  });

  it("the live volume lends what the base image holds, never what is still in memory", async () => {
    const v = await make();
    await v.write(0, fill(1, 4 * CS));
    await v.flush();
    const u = until();
    const r = v.lend(CS + 100, 5000, u.p)!;
    expect(pread(r.fd, r.position, 5000)).toEqual(fill(1, 5000));
    u.done(); // else the snapshot would wait for it
    await v.createSnapshot();
    await v.write(2 * CS + 10, fill(2, 10)); // staged with its chunk's original
    expect(v.lend(2 * CS, 100, until().p)).toBeUndefined();
    expect(v.lend(CS, 100, until().p)).toBeDefined();
  });

  it("a snapshot's range in the base image stays there until the reader is done", async () => {
    const v = await make();
    await v.write(0, fill(1, 4 * CS));
    const s = await v.createSnapshot();
    const dev = v.snapshotDevice(s.id);
    const u = until();
    const r = dev.lend!(CS, CS, u.p)!;
    await v.write(CS, fill(9, CS));
    let flushed = false;
    const flush = v.flush().then(() => (flushed = true));
    await later();
    expect(flushed).toBe(false);
    expect(pread(r.fd, r.position, CS)).toEqual(fill(1, CS));
    u.done();
    await flush;
    expect(pread(r.fd, r.position, CS)).toEqual(fill(9, CS));
    expect(await readAt(dev, CS, CS)).toEqual(fill(1, CS)); // from its diff area now
    expect(dev.lend!(CS + 1, CS, until().p)).toBeUndefined();
  });

  it("snapshot administration waits for lent ranges, and none is lent while it waits", async () => {
    const v = await make();
    await v.write(0, fill(1, 4 * CS));
    const s = await v.createSnapshot();
    const dev = v.snapshotDevice(s.id);
    const u = until();
    expect(dev.lend!(0, CS, u.p)).toBeDefined();
    let deleted = false;
    const del = v.deleteSnapshot(s.id).then(() => (deleted = true));
    await later();
    expect(deleted).toBe(false);
    expect(v.lend(0, CS, until().p)).toBeUndefined();
    u.done();
    await del;
    expect(dev.lend!(2 * CS, CS, until().p)).toBeUndefined();
    const last = until();
    expect(v.lend(0, CS, last.p)).toBeDefined();
    last.done();
    await v.close();
    expect(v.lend(0, CS, until().p)).toBeUndefined();
  });
});
