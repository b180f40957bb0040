// Damaged stores: a corrupted or truncated catalog, index or data file is reported by the checker
// and refused at open (or at the read) with an error naming the file, never read as zeros.

import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  CATALOG_HEADER_SIZE,
  DATA_HEADER_SIZE,
  INDEX_HEADER_SIZE,
  RECORD_SIZE,
} from "../../src/cow/format.js";
import { CowVolume, checkStore, NodeHostFs } from "../../src/cow/index.js";
import { quiet } from "../helpers/cow-workload.js";

const CS = 4096;
const host = new NodeHostFs();
let root: string;
let store: string;

/** A store with two snapshots; snapshot 1's diff area holds chunks 0..3, snapshot 2's chunk 0. */
beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), "shadowfs-bad-"));
  store = join(root, "store");
  const v = await CowVolume.create(host, store, {
    volumeSize: 32 * CS,
    chunkSize: CS,
    logger: quiet,
  });
  await v.write(0, Buffer.alloc(8 * CS, 1));
  await v.createSnapshot();
  await v.write(0, Buffer.alloc(4 * CS, 2));
  await v.createSnapshot();
  await v.write(0, Buffer.alloc(CS, 3));
  await v.close();
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const flip = (file: string, at: number) => {
  const b = readFileSync(file);
  b[at]! ^= 0x5a;
  writeFileSync(file, b);
};
const open = () => CowVolume.open(host, store, { logger: quiet });

async function expectRefused(file: string, message: RegExp): Promise<void> {
  await expect(open()).rejects.toThrow(message);
  const report = await checkStore(host, store);
  expect(report.ok).toBe(false);
  expect(report.problems.map((p) => `${p.file}: ${p.message}`).join("\n")).toMatch(
    new RegExp(`${file}: .*${message.source}`),
  );
}

describe("a damaged store is refused and reported", () => {
  it("is clean before any damage", async () => {
    const report = await checkStore(host, store);
    expect(report).toMatchObject({ ok: true, problems: [], notes: [], snapshots: 2 });
    expect(report.chunksChecked).toBe(5);
  });

  it("catalog: a flipped byte in its body", async () => {
    flip(join(store, "catalog"), CATALOG_HEADER_SIZE + 10);
    await expectRefused("catalog", /body checksum mismatch/);
  });

  it("catalog: truncated", async () => {
    truncateSync(join(store, "catalog"), CATALOG_HEADER_SIZE + 7);
    await expectRefused("catalog", /truncated/);
  });

  it("catalog: written by a newer format version", async () => {
    const file = join(store, "catalog");
    const b = readFileSync(file);
    b.writeUInt32LE(99, 8);
    const { crc } = await import("../../src/cow/format.js");
    b.writeUInt32LE(crc(b.subarray(0, 20)), 20);
    writeFileSync(file, b);
    await expectRefused("catalog", /newer than this shadowfs supports/);
  });

  it("index: a damaged record of a frozen diff area", async () => {
    flip(join(store, "diff", "1.index"), INDEX_HEADER_SIZE + 2 * RECORD_SIZE + 9);
    await expectRefused("diff/1.index", /committed but only 0 are valid/);
  });

  it("index: a frozen diff area cut short", async () => {
    truncateSync(join(store, "diff", "1.index"), INDEX_HEADER_SIZE + 3 * RECORD_SIZE);
    await expectRefused("diff/1.index", /committed but only/);
  });

  it("index: a damaged record followed by valid ones of later batches", async () => {
    // The newest area after a crash may end in a torn batch, but damage before later batches is not a tear.
    const v = await open();
    await v.write(CS, Buffer.alloc(CS, 4));
    await v.flush();
    await v.write(2 * CS, Buffer.alloc(CS, 4));
    await v.close();
    flip(join(store, "diff", "2.index"), INDEX_HEADER_SIZE + 1 * RECORD_SIZE + 9);
    await expectRefused("diff/2.index", /valid record of batch/);
  });

  it("index: a damaged header", async () => {
    flip(join(store, "diff", "2.index"), 3);
    await expectRefused("diff/2.index", /bad magic/);
  });

  it("data: a preserved chunk that no longer matches its checksum fails the read with EIO", async () => {
    flip(join(store, "diff", "1.data"), DATA_HEADER_SIZE + CS + 100);
    const report = await checkStore(host, store);
    expect(report.problems).toEqual([
      { file: "diff/1.data", message: "slot 1 (chunk 1): checksum mismatch" },
    ]);
    const v = await open(); // the index is intact: only the damaged chunk is unreadable
    const snap = v.snapshotDevice(1);
    await expect(snap.read(CS, Buffer.alloc(CS))).rejects.toThrow(
      /EIO.*diff\/1\.data.*checksum mismatch/,
    );
    const ok = Buffer.alloc(CS);
    await snap.read(2 * CS, ok);
    expect(ok.equals(Buffer.alloc(CS, 1))).toBe(true);
    await v.close();
  });

  it("data: a missing diff-area file", async () => {
    rmSync(join(store, "diff", "2.data"));
    await expectRefused("diff/2.data", /missing \(snapshot 2\)/);
  });

  it("a directory that is not a store", async () => {
    await expect(CowVolume.open(host, root)).rejects.toThrow(/is not a shadowfs store/);
    expect((await checkStore(host, root)).problems[0]).toMatchObject({ file: "catalog" });
  });
});
