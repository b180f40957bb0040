// The golden store of format version 1, made once by scripts/make-golden-store.ts: today's code
// must read it byte for byte. It works on copies only; the fixture itself is never opened for writing.

import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32c } from "@node-rs/crc32";
import { afterEach, describe, expect, it } from "vitest";
import { type BlockDevice, CowVolume, checkStore, NodeHostFs } from "../../src/cow/index.js";
import { GOLDEN_DIR, GOLDEN_SETTINGS, goldenModel } from "../helpers/golden-pattern.js";

// The v1 layout, written out here on purpose rather than imported from src/cow/format.ts.
const CATALOG_HEADER = 24;
const DATA_HEADER = 4096;
const INDEX_HEADER = 64;
const RECORD = 32;
const ZERO_SLOT = 2 ** 53 - 1;

const fixture = join(fileURLToPath(new URL("../..", import.meta.url)), GOLDEN_DIR);
const model = goldenModel();
const host = new NodeHostFs();
const copies: string[] = [];

afterEach(() => {
  for (const dir of copies.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A private copy of the fixture in a temporary directory. */
function copyFixture(): string {
  const dir = join(mkdtempSync(join(tmpdir(), "shadowfs-golden-")), "store");
  copies.push(join(dir, ".."));
  cpSync(fixture, dir, { recursive: true });
  return dir;
}

/** A digest of every file of a store, by relative path. */
function storeFiles(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()) {
    const path = join(dir, name);
    if (statSync(path).isFile()) {
      files[name] = createHash("sha256").update(readFileSync(path)).digest("hex");
    }
  }
  return files;
}

async function readAll(dev: BlockDevice): Promise<Buffer> {
  const buf = Buffer.alloc(dev.size);
  await dev.read(0, buf);
  return buf;
}

/** Asserts that the volume, every snapshot and the settings are exactly as generated. */
async function expectGolden(vol: CowVolume): Promise<void> {
  expect(vol.size).toBe(GOLDEN_SETTINGS.volumeSize);
  expect(vol.chunkSize).toBe(GOLDEN_SETTINGS.chunkSize);
  expect(vol.settings.shadowStorageLimit).toBe(GOLDEN_SETTINGS.shadowStorageLimit);
  expect(vol.settings.onFull).toBe(GOLDEN_SETTINGS.onFull);
  const snaps = vol.snapshots();
  expect(snaps.map((s) => [s.id, s.name, s.createdAt])).toEqual(
    model.snapshots.map((s, i) => [i + 1, s.name, s.createdAt]),
  );
  for (const [i, s] of model.snapshots.entries()) {
    const got = await readAll(vol.snapshotDevice(i + 1));
    expect(got.equals(s.image), `snapshot ${s.name} reads as generated`).toBe(true);
  }
  expect((await readAll(vol)).equals(model.live), "live volume reads as generated").toBe(true);
  // A read that straddles chunks from different places: base, diff areas, zero slots.
  const part = Buffer.alloc(3 * GOLDEN_SETTINGS.chunkSize + 100);
  await vol.snapshotDevice(1).read(19 * 4096 + 7, part);
  expect(
    part.equals(model.snapshots[0]!.image.subarray(19 * 4096 + 7, 19 * 4096 + 7 + part.length)),
  ).toBe(true);
}

describe("golden store v1", () => {
  it("has the v1 catalog: header, checksums and the generated settings", () => {
    const buf = readFileSync(join(fixture, "catalog"));
    expect(buf.toString("latin1", 0, 8)).toBe("SHDWCTLG");
    expect(buf.readUInt32LE(8)).toBe(1);
    expect(buf.readUInt32LE(12)).toBe(buf.length - CATALOG_HEADER);
    expect(buf.readUInt32LE(16)).toBe(crc32c(buf.subarray(CATALOG_HEADER)));
    expect(buf.readUInt32LE(20)).toBe(crc32c(buf.subarray(0, 20)));
    const cat = JSON.parse(buf.subarray(CATALOG_HEADER).toString("utf8"));
    expect(cat).toMatchObject({
      volumeSize: GOLDEN_SETTINGS.volumeSize,
      chunkSize: GOLDEN_SETTINGS.chunkSize,
      shadowStorageLimit: GOLDEN_SETTINGS.shadowStorageLimit,
      onFull: GOLDEN_SETTINGS.onFull,
      nextId: 4,
      clean: true,
      evictions: [],
    });
    expect(cat.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(cat.revert).toBeUndefined();
    expect(cat.snapshots).toEqual(
      model.snapshots.map((s, i) => ({
        id: i + 1,
        name: s.name,
        createdAt: s.createdAt,
        records: 1 + s.preserved.length,
      })),
    );
    expect(readFileSync(join(fixture, "base.img")).length).toBe(GOLDEN_SETTINGS.volumeSize);
  });

  it("has the v1 diff areas: headers, one batch of checksummed records, data slots", () => {
    const cs = GOLDEN_SETTINGS.chunkSize;
    for (const [i, s] of model.snapshots.entries()) {
      const id = i + 1;
      const idx = readFileSync(join(fixture, "diff", `${id}.index`));
      const data = readFileSync(join(fixture, "diff", `${id}.data`));
      for (const [buf, magic] of [
        [idx, "SHDWINDX"],
        [data, "SHDWDATA"],
      ] as const) {
        expect(buf.toString("latin1", 0, 8)).toBe(magic);
        expect(buf.readUInt32LE(8)).toBe(1);
        expect(buf.readUInt32LE(12)).toBe(cs);
        expect(buf.readUInt32LE(16)).toBe(id);
        expect(buf.subarray(20, 60).every((b) => b === 0)).toBe(true);
        expect(buf.readUInt32LE(60)).toBe(crc32c(buf.subarray(0, 60)));
      }
      expect(data.subarray(64, DATA_HEADER).every((b) => b === 0)).toBe(true);

      const u64 = (at: number) => idx.readUInt32LE(at) + idx.readUInt32LE(at + 4) * 2 ** 32;
      const rec = (n: number) => INDEX_HEADER + n * RECORD;
      expect(idx.length).toBe(rec(1 + s.preserved.length));
      for (let n = 0; n <= s.preserved.length; n++) {
        expect(idx.readUInt32LE(rec(n) + 28)).toBe(crc32c(idx.subarray(rec(n), rec(n) + 28)));
        expect(idx.readUInt32LE(rec(n) + 4), "batch number").toBe(1);
      }
      expect(idx.readUInt32LE(rec(0)), "batch header kind").toBe(1);
      expect(u64(rec(0) + 8), "entries in the batch").toBe(s.preserved.length);
      expect(idx.subarray(rec(0) + 16, rec(0) + 28).every((b) => b === 0)).toBe(true);

      let slot = 0;
      let zeroEntries = 0;
      for (const [n, chunk] of s.preserved.entries()) {
        const at = rec(n + 1);
        const original = s.image.subarray(chunk * cs, (chunk + 1) * cs);
        expect(idx.readUInt32LE(at), "entry kind").toBe(2);
        expect(u64(at + 8), "entry chunk").toBe(chunk);
        if (original.every((b) => b === 0)) {
          zeroEntries++;
          expect(u64(at + 16), `chunk ${chunk}: zero slot`).toBe(ZERO_SLOT);
          expect(idx.readUInt32LE(at + 24)).toBe(0);
        } else {
          expect(u64(at + 16), `chunk ${chunk}: slot`).toBe(slot);
          expect(idx.readUInt32LE(at + 24)).toBe(crc32c(original));
          const stored = data.subarray(DATA_HEADER + slot * cs, DATA_HEADER + (slot + 1) * cs);
          expect(stored.equals(original), `chunk ${chunk}: preserved bytes`).toBe(true);
          slot++;
        }
      }
      expect(zeroEntries, `snapshot ${s.name} has a ZERO_SLOT entry`).toBeGreaterThan(0);
      expect(data.length).toBe(DATA_HEADER + slot * cs);
    }
    expect(readdirSync(join(fixture, "diff")).sort()).toEqual(
      model.snapshots.flatMap((_, i) => [`${i + 1}.data`, `${i + 1}.index`]).sort(),
    );
  });

  it("opens read-only, reads every snapshot and the live volume as generated, changes nothing", async () => {
    const dir = copyFixture();
    const before = storeFiles(dir);
    const vol = await CowVolume.open(host, dir, { readOnly: true });
    try {
      expect(vol.readOnly).toBe(true);
      expect(vol.recovery).toEqual({
        uncleanShutdown: false,
        droppedRecords: 0,
        removedFiles: [],
        resumedRevert: undefined,
      });
      await expectGolden(vol);
    } finally {
      await vol.close();
    }
    expect(storeFiles(dir)).toEqual(before);
  });

  it("opens read-write without recovering anything, reads as generated, and closes clean", async () => {
    const dir = copyFixture();
    const before = storeFiles(dir);
    const vol = await CowVolume.open(host, dir);
    try {
      expect(vol.recovery).toEqual({
        uncleanShutdown: false,
        droppedRecords: 0,
        removedFiles: [],
        resumedRevert: undefined,
      });
      await expectGolden(vol);
    } finally {
      await vol.close();
    }
    const reopened = await CowVolume.open(host, dir, { readOnly: true });
    try {
      await expectGolden(reopened);
    } finally {
      await reopened.close();
    }
    // Opening and closing rewrote the catalog (two generations later) and nothing else.
    const { catalog: _, ...dataBefore } = before;
    const { catalog: rewritten, ...dataAfter } = storeFiles(dir);
    expect(dataAfter).toEqual(dataBefore);
    expect(rewritten).not.toBe(before.catalog);
    const body = (path: string) =>
      JSON.parse(readFileSync(path).subarray(CATALOG_HEADER).toString("utf8"));
    const old = body(join(fixture, "catalog"));
    expect(body(join(dir, "catalog"))).toEqual({ ...old, generation: old.generation + 2 });
    expect((await checkStore(host, dir)).ok).toBe(true);
  });

  it("checks clean with checkStore", async () => {
    const report = await checkStore(host, copyFixture());
    expect(report.problems).toEqual([]);
    expect(report.notes).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.snapshots).toBe(3);
    const dataChunks = model.snapshots.reduce(
      (n, s) =>
        n +
        s.preserved.filter((c) => s.image.subarray(c * 4096, (c + 1) * 4096).some((b) => b !== 0))
          .length,
      0,
    );
    expect(report.chunksChecked).toBe(dataChunks);
  });
});
