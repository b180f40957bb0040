// Benchmark of the copy-on-write store (src/cow) against a plain host file on the same disk.
// It owns one temporary directory (under --dir, default /var/tmp), always removed at exit.

import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { type FileHandle, mkdtemp, open, rm, statfs } from "node:fs/promises";
import { totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type BlockDevice, CowVolume, DEFAULT_CHUNK_SIZE, NodeHostFs } from "../src/cow/index.js";
import { median } from "./bench-common.js";

const REQ = 128 * 1024;
const BLOCK = 4096;
const MB = 1e6;
const SNAPSHOT_RUNS = 20;
const RAM_FS = [0x01021994, 0x858458f6]; // tmpfs, ramfs: statfs magic numbers

type Dev = Pick<BlockDevice, "read" | "write" | "flush">;

/** Bytes from "65536", "64K", "256M", "1G", "1GiB" (binary units). */
function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}": use bytes or e.g. 64K, 256M, 1G`);
  return Number(m[1]) * 1024 ** " KMGT".indexOf(m[2]!.toUpperCase() || " ");
}

const { values: opt } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    size: { type: "string", default: "1G" },
    seconds: { type: "string", default: "20" },
    "chunk-size": { type: "string", default: String(DEFAULT_CHUNK_SIZE) },
    dir: { type: "string", default: "/var/tmp" },
  },
});
const size = parseSize(opt.size);
const seconds = Number(opt.seconds);
const chunkSize = parseSize(opt["chunk-size"]);
if (size % Math.max(REQ, chunkSize) !== 0)
  throw new Error(`--size must be a multiple of 128 KiB and of the chunk size`);
if (!(seconds > 0)) throw new Error(`--seconds must be a positive number`);

// Fill data repeats every 4 KiB, and random writes write that same block: the volume's contents
// stay known, so reads can be checked. Overwrites use other data, so a snapshot differs from live.
const block = randomBytes(BLOCK);
const fill = Buffer.concat(Array.from({ length: REQ / BLOCK }, () => block));
const other = randomBytes(REQ);
const say = (msg: string) => process.stderr.write(`bench-cow: ${msg}\n`);
let work = "";

/** The one timing helper: seconds that `fn` takes. */
async function timeSec(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** mulberry32: every random phase writes the same sequence of offsets. */
function prng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

async function seqWrite(dev: Dev, data: Buffer): Promise<number> {
  const s = await timeSec(async () => {
    for (let off = 0; off < size; off += REQ) await dev.write(off, data);
    await dev.flush();
  });
  return size / MB / s;
}

/** Reads the whole device; the last buffer must hold `expect`. */
async function seqRead(dev: Pick<BlockDevice, "read">, expect: Buffer): Promise<number> {
  const buf = Buffer.alloc(REQ);
  const s = await timeSec(async () => {
    for (let off = 0; off < size; off += REQ) await dev.read(off, buf);
  });
  if (!buf.equals(expect)) throw new Error("sequential read returned wrong data");
  return size / MB / s;
}

/** Random aligned 4 KiB writes for --seconds: IOPS and the number of writes. */
async function randWrite(dev: Dev): Promise<{ iops: number; ops: number }> {
  const next = prng(1);
  let ops = 0;
  const s = await timeSec(async () => {
    const end = performance.now() + seconds * 1000;
    for (; performance.now() < end; ops++)
      await dev.write(Math.floor(next() * (size / BLOCK)) * BLOCK, block);
    await dev.flush();
  });
  return { iops: ops / s, ops };
}

/** Random writes right after a snapshot: IOPS, and the % of writes that had to copy a chunk. */
async function randWriteCow(vol: CowVolume): Promise<[number, number]> {
  const { iops, ops } = await randWrite(vol);
  const newest = vol.snapshots().at(-1)!.id;
  return [iops, (100 * vol.preservedChunks(newest)) / ops];
}

function rawDevice(fh: FileHandle): Dev {
  return {
    async write(offset, data) {
      const { bytesWritten } = await fh.write(data, 0, data.length, offset);
      if (bytesWritten !== data.length) throw new Error(`short write at ${offset}`);
    },
    async read(offset, target) {
      const { bytesRead } = await fh.read(target, 0, target.length, offset);
      if (bytesRead !== target.length) throw new Error(`short read at ${offset}`);
    },
    flush: () => fh.datasync(),
  };
}

async function withVolume<T>(
  name: string,
  volumeSize: number,
  fn: (vol: CowVolume) => Promise<T>,
): Promise<T> {
  const dir = join(work, name);
  const vol = await CowVolume.create(new NodeHostFs(), dir, { volumeSize, chunkSize });
  try {
    return await fn(vol);
  } finally {
    await vol.close().catch((e: unknown) => say(`closing ${name}: ${String(e)}`));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Median createSnapshot time over SNAPSHOT_RUNS, each after a 4 KiB write to flush. */
function snapshotCreateMs(volumeSize: number): Promise<number> {
  return withVolume(`snap-${volumeSize}`, volumeSize, async (vol) => {
    const next = prng(2);
    const ms: number[] = [];
    for (let i = 0; i < SNAPSHOT_RUNS; i++) {
      await vol.write(Math.floor(next() * (volumeSize / BLOCK)) * BLOCK, block);
      ms.push((await timeSec(() => vol.createSnapshot())) * 1000);
    }
    return median(ms);
  });
}

async function withRawFile<T>(fn: (dev: Dev) => Promise<T>): Promise<T> {
  const path = join(work, "raw.img");
  const fh = await open(path, "w+");
  try {
    await fh.truncate(size); // sized up front, as CowVolume.create sizes base.img
    return await fn(rawDevice(fh));
  } finally {
    await fh.close();
    await rm(path, { force: true });
  }
}

async function run() {
  // The first write of `size` bytes in a process runs far slower (fresh memory for the page
  // cache); an untimed pass keeps that cost out of whichever phase would come first.
  say("warm-up: one untimed sequential write");
  await withRawFile((dev) => seqWrite(dev, other));
  const raw = await withRawFile(async (dev) => {
    say("raw file: sequential write, random write, sequential read");
    const seqWriteRawMBps = await seqWrite(dev, fill);
    const randWriteRawIops = (await randWrite(dev)).iops;
    return { seqWriteRawMBps, randWriteRawIops, seqReadRawMBps: await seqRead(dev, fill) };
  });
  const cow = await withVolume("vol", size, async (vol) => {
    say("volume, no snapshot: sequential write (the fill), random write");
    const seqWriteNoSnapMBps = await seqWrite(vol, fill);
    const randWriteNoSnapIops = (await randWrite(vol)).iops;
    say("one snapshot: read it from the base, overwrite everything, read it from the diff area");
    const first = await vol.createSnapshot();
    const seqReadSnapshotBaseMBps = await seqRead(vol.snapshotDevice(first.id), fill);
    const seqWriteFirstCowMBps = await seqWrite(vol, other);
    const seqReadSnapshotMBps = await seqRead(vol.snapshotDevice(first.id), fill);
    await vol.deleteSnapshot(first.id);
    const second = await vol.createSnapshot();
    const [randWriteFirstCowIops, randWriteFirstCowCopiedPct] = await randWriteCow(vol);
    await vol.deleteSnapshot(second.id);
    say("8 snapshots (2 MiB written between each): sequential overwrite, random write");
    for (let i = 0; i < 8; i++) {
      for (let j = 0; i > 0 && j < 16; j++) await vol.write(((i * 16 + j) * REQ) % size, other);
      await vol.createSnapshot();
    }
    const seqWrite8SnapMBps = await seqWrite(vol, fill);
    await vol.deleteSnapshot(vol.snapshots()[0]!.id); // keep 8, the newest with an empty diff area
    await vol.createSnapshot();
    const [randWrite8SnapIops, randWrite8SnapCopiedPct] = await randWriteCow(vol);
    const seq = { seqWriteNoSnapMBps, seqWriteFirstCowMBps, seqWrite8SnapMBps };
    const read = { seqReadSnapshotMBps, seqReadSnapshotBaseMBps };
    const rand = { randWriteNoSnapIops, randWriteFirstCowIops, randWrite8SnapIops };
    return { ...seq, ...read, ...rand, randWriteFirstCowCopiedPct, randWrite8SnapCopiedPct };
  });
  say(`snapshot creation on 1 GiB and 64 GiB sparse volumes (${SNAPSHOT_RUNS} each)`);
  const snapshotCreateMs1G = await snapshotCreateMs(2 ** 30);
  const snapshotCreateMs64G = await snapshotCreateMs(2 ** 36);
  return { ...raw, ...cow, snapshotCreateMs1G, snapshotCreateMs64G };
}

type Results = Awaited<ReturnType<typeof run>>;
type Key = keyof Results;
interface Row {
  key: Key;
  label: string;
  /** The raw-file metric this one is compared with, and the lowest ratio that meets the target. */
  raw?: Key;
  min?: number;
  /** Snapshot creation: the highest median that meets the target. */
  maxMs?: number;
}

const ROWS: Row[] = [
  { key: "seqWriteRawMBps", label: "seq write, raw file" },
  { key: "seqWriteNoSnapMBps", label: "seq write, no snapshot", raw: "seqWriteRawMBps", min: 0.9 },
  { key: "seqWriteFirstCowMBps", label: "seq write, first COW", raw: "seqWriteRawMBps", min: 0.45 },
  { key: "seqWrite8SnapMBps", label: "seq write, 8 snapshots", raw: "seqWriteRawMBps" },
  { key: "randWriteRawIops", label: "random write, raw file" },
  { key: "randWriteNoSnapIops", label: "random write, no snapshot", raw: "randWriteRawIops" },
  { key: "randWriteFirstCowIops", label: "random write, first COW", raw: "randWriteRawIops" },
  { key: "randWriteFirstCowCopiedPct", label: "  writes that copied a chunk" },
  { key: "randWrite8SnapIops", label: "random write, 8 snapshots", raw: "randWriteRawIops" },
  { key: "randWrite8SnapCopiedPct", label: "  writes that copied a chunk" },
  { key: "seqReadRawMBps", label: "seq read, raw file" },
  { key: "seqReadSnapshotMBps", label: "seq read, snapshot/diff", raw: "seqReadRawMBps", min: 0.7 },
  { key: "seqReadSnapshotBaseMBps", label: "seq read, snapshot/base", raw: "seqReadRawMBps" },
  { key: "snapshotCreateMs1G", label: "snapshot create, 1 GiB", maxMs: 50 },
  { key: "snapshotCreateMs64G", label: "snapshot create, 64 GiB", maxMs: 50 },
];

/** Size independence: the 64 GiB median within 5 ms or 25% of the 1 GiB one. */
const sizeIndependent = (r: Results) =>
  Math.abs(r.snapshotCreateMs64G - r.snapshotCreateMs1G) <=
  Math.max(5, 0.25 * r.snapshotCreateMs1G);
const ratio = (r: Results, row: Row) => (row.raw ? r[row.key] / r[row.raw] : Number.NaN);
const targetText = (row: Row) =>
  row.min !== undefined
    ? `>= ${row.min.toFixed(2)}`
    : row.maxMs !== undefined
      ? `< ${row.maxMs} ms, size-independent`
      : "";
function met(r: Results, row: Row): boolean | undefined {
  if (row.min !== undefined) return ratio(r, row) >= row.min;
  if (row.maxMs !== undefined) return r[row.key] < row.maxMs && sizeIndependent(r);
  return undefined;
}

const UNITS = { MBps: "MB/s", Iops: "IOPS", Pct: "%", Ms: "ms" } as const;
const unit = (k: Key) => Object.entries(UNITS).find(([suffix]) => k.includes(suffix))![1];
const round = (x: number, digits: number) => Number(x.toFixed(digits));
const ratioKey = (k: Key) => k.replace(/(MBps|Iops)$/, "VsRaw");

function report(r: Results): void {
  const notes = [
    `page cache not dropped between phases (RAM ${(totalmem() / 2 ** 30).toFixed(0)} GiB): reads may come from memory`,
    "queue depth 1; each write phase ends with datasync (raw) or volume.flush(), inside its timing",
    `snapshot create: median of ${SNAPSHOT_RUNS} on sparse volumes, each after a 4 KiB write`,
  ];
  if (opt.json) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) out[k] = round(v, k.includes("Ms") ? 2 : 1);
    for (const row of ROWS) if (row.raw) out[ratioKey(row.key)] = round(ratio(r, row), 3);
    out.snapshotCreate64GVs1G = round(r.snapshotCreateMs64G / r.snapshotCreateMs1G, 3);
    out.targetsMet = Object.fromEntries(ROWS.filter(targetText).map((w) => [w.key, met(r, w)]));
    Object.assign(out, { chunkSize, sizeBytes: size, seconds, dir: opt.dir, notes });
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const head = `size ${size / 2 ** 20} MiB, chunk ${chunkSize / 1024} KiB, ${seconds} s random phases`;
  const lines = [
    `${head}, in ${opt.dir}`,
    "",
    `${"metric".padEnd(28)}${"value".padStart(15)}  vs raw  target`,
  ];
  for (const row of ROWS) {
    const value = `${r[row.key].toFixed(unit(row.key) === "ms" ? 2 : 1)} ${unit(row.key)}`;
    const ok = met(r, row);
    const verdict = ok === undefined ? "" : ok ? "  ok" : "  MISSED";
    const vsRaw = (row.raw ? ratio(r, row).toFixed(2) : "").padStart(6);
    lines.push(
      `${row.label.padEnd(28)}${value.padStart(15)}  ${vsRaw}  ${targetText(row)}${verdict}`,
    );
  }
  process.stdout.write(`${[...lines, "", ...notes.map((n) => `note: ${n}`)].join("\n")}\n`);
}

async function main(): Promise<void> {
  const fs = await statfs(opt.dir);
  if (RAM_FS.includes(fs.type))
    throw new Error(`${opt.dir} is tmpfs/ramfs: benchmark a real disk (--dir)`);
  if (fs.bavail * fs.bsize < 2.5 * size + 2 ** 28)
    throw new Error(`${opt.dir}: not enough free space for --size ${opt.size}`);
  work = await mkdtemp(join(opt.dir, "bench-cow-"));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  }
  let results: Results;
  try {
    results = await run();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  report(results);
}

main().catch((e: unknown) => {
  say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exitCode = 1;
});
