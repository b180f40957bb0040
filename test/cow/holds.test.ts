// Holds and exclusive bytes on a copy-on-write volume: a held snapshot survives delete, revert
// and the shadow storage limit; each snapshot's exclusive bytes are exactly what deleting it frees.

import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CowVolume, NodeHostFs } from "../../src/cow/index.js";
import { quiet } from "../helpers/cow-workload.js";
import { seeded } from "../helpers/random.js";

const CS = 16 * 1024;
const host = new NodeHostFs();
let root: string;
let store: string;
const opened: CowVolume[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "shadowfs-holds-"));
  store = join(root, "store");
});
afterEach(async () => {
  for (const v of opened.splice(0)) await v.close().catch(() => {});
  rmSync(root, { recursive: true, force: true });
});

async function make(
  opts: Partial<Parameters<typeof CowVolume.create>[2]> = {},
  dir = store,
): Promise<CowVolume> {
  const v = await CowVolume.create(host, dir, {
    volumeSize: 64 * CS,
    chunkSize: CS,
    logger: quiet,
    ...opts,
  });
  opened.push(v);
  return v;
}

async function open(dir: string): Promise<CowVolume> {
  const v = await CowVolume.open(host, dir, { logger: quiet });
  opened.push(v);
  return v;
}

const fill = (byte: number, n = CS) => Buffer.alloc(n, byte);

async function chunkOf(dev: { read(o: number, b: Uint8Array): Promise<void> }, c: number) {
  const b = Buffer.alloc(CS);
  await dev.read(c * CS, b);
  return b;
}

describe("holds", () => {
  it("a held snapshot is refused to delete and to a discarding revert, and kept across a reopen", async () => {
    const v = await make();
    const a = await v.createSnapshot();
    const b = await v.createSnapshot();
    await v.hold(b.id, "backup");
    await v.hold(b.id, "legal");
    await expect(v.hold(b.id, "legal")).rejects.toThrow(/EEXIST/);
    await expect(v.deleteSnapshot(b.id)).rejects.toThrow(/EBUSY.*backup, legal/);
    await expect(v.revert(a.id, { discardNewer: true })).rejects.toThrow(/EBUSY.*held/);
    expect(v.snapshots().map((s) => s.id)).toEqual([a.id, b.id]);
    await v.close();
    const w = await open(store);
    expect(w.snapshots().find((s) => s.id === b.id)!.holds).toEqual(["backup", "legal"]);
    await w.release(b.id, "backup");
    await expect(w.release(b.id, "backup")).rejects.toThrow(/ENOENT.*its holds: legal/);
    await expect(w.deleteSnapshot(b.id)).rejects.toThrow(/EBUSY/);
    await w.release(b.id, "legal");
    await w.deleteSnapshot(b.id);
    expect(w.snapshots().map((s) => s.id)).toEqual([a.id]);
  });

  it("the limit evicts the oldest unheld snapshot (merging it) and never a held one", async () => {
    const errors: string[] = [];
    const logger = { ...quiet, error: (_o: object, msg: string) => void errors.push(msg) };
    const v = await make({ shadowStorageLimit: 8 * CS, logger });
    await v.write(0, fill(1, 8 * CS));
    const a = await v.createSnapshot();
    await v.hold(a.id, "keep");
    await v.write(0, fill(2, 2 * CS)); // a's area: chunks 0, 1
    const b = await v.createSnapshot();
    await v.write(0, fill(3, 4 * CS)); // b's area: chunks 0-3 (a reads 2 and 3 through it)
    const c = await v.createSnapshot();
    await v.write(0, fill(4, 2 * CS)); // c's area: chunks 0, 1 — over the limit: b must go
    await v.flush();
    expect(v.snapshots().map((s) => s.id)).toEqual([a.id, c.id]);
    expect(v.evictions().map((e) => e.id)).toEqual([b.id]);
    // a still reads what it held, including the chunks b's area held for it.
    for (let i = 0; i < 8; i++)
      expect((await chunkOf(v.snapshotDevice(a.id), i)).equals(fill(1))).toBe(true);
    expect((await chunkOf(v.snapshotDevice(c.id), 0)).equals(fill(3))).toBe(true);
    // Only held snapshots are left that could make room: the write fails, nothing is lost.
    await v.hold(c.id, "keep");
    await expect(v.write(4 * CS, fill(5, 4 * CS))).rejects.toThrow(/ENOSPC.*only held snapshots/);
    expect(errors).toContain("write refused: only held snapshots could make room");
    expect(v.snapshots().map((s) => s.id)).toEqual([a.id, c.id]);
    expect((await chunkOf(v, 4)).equals(fill(1))).toBe(true);
  });

  it("a lowered limit evicts unheld snapshots at once; a held oldest stays", async () => {
    const v = await make();
    await v.write(0, fill(1, 8 * CS));
    const a = await v.createSnapshot();
    await v.write(0, fill(2, 4 * CS));
    const b = await v.createSnapshot();
    await v.write(0, fill(3, 4 * CS));
    const c = await v.createSnapshot();
    await v.hold(a.id, "keep");
    await v.setShadowStorage({ limit: 5 * CS });
    expect(v.snapshots().map((s) => s.id)).toEqual([a.id, c.id]);
    expect(v.settings.shadowStorageLimit).toBe(5 * CS);
    expect(v.evictions().map((e) => e.id)).toEqual([b.id]);
    await expect(v.setShadowStorage({ limit: -1 })).rejects.toThrow(/EINVAL/);
  });
});

describe("exclusive bytes", () => {
  it("are exactly what deleting each snapshot alone frees", async () => {
    const rand = seeded(20261205);
    const v = await make({}, join(root, "source"));
    for (let s = 0; s < 6; s++) {
      for (let w = 0; w < 12; w++) {
        const c = Math.floor(rand() * 64);
        const n = 1 + Math.floor(rand() * 3);
        const zero = rand() < 0.2;
        await v.write(
          Math.min(c, 64 - n) * CS,
          fill(zero ? 0 : 1 + Math.floor(rand() * 200), n * CS),
        );
      }
      await v.createSnapshot();
    }
    await v.write(0, fill(9, 20 * CS));
    await v.flush();
    const expected = v.snapshots().map((s) => ({ id: s.id, exclusive: v.exclusiveBytes(s.id) }));
    await v.close();
    expect(expected.some((e) => e.exclusive > 0)).toBe(true);
    for (const { id, exclusive } of expected) {
      const copy = join(root, `copy-${id}`);
      cpSync(join(root, "source"), copy, { recursive: true });
      const w = await open(copy);
      const before = w.storageUsed();
      await w.deleteSnapshot(id);
      expect({ id, freed: before - w.storageUsed() }).toEqual({ id, freed: exclusive });
      await w.close();
    }
  });
});
