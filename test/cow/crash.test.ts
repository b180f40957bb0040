// Crash tests of the copy-on-write volume: the host loses power (unsynced writes dropped, or a
// random torn part of them kept) or starts failing with EIO at a random call during a random
// workload; after reboot every snapshot reads as before and every flushed write is there.

import { describe, expect, it } from "vitest";
import { CowVolume, checkStore } from "../../src/cow/index.js";
import { isFsError } from "../../src/errors.js";
import { apply, compare, drawOp, Model, quiet, type Subject } from "../helpers/cow-workload.js";
import { CrashHost, PowerCut } from "../helpers/crash-host.js";
import { int, type Rand, seeds, withSeed } from "../helpers/random.js";

const CHUNK = 4096;
const SIZE = 32 * CHUNK;
const DIR = "/store";

/** What the workload knows about durability at the moment the host failed. */
interface Expect {
  /** Live image at the last completed flush. */
  flushed: Buffer;
  /** Writes since then (including one in flight): each may or may not have survived. */
  since: Array<{ offset: number; data: Buffer }>;
  /** Image of a snapshot whose creation was in flight (it may exist, under an unknown id). */
  creating?: Buffer;
  /** Target image of a revert in flight (the next open completes it if it had started). */
  revertTo?: Buffer;
  /** Snapshots an operation in flight may have removed. */
  mayVanish: Set<number>;
}

type Failure = "cut-drop" | "cut-random" | "eio";

async function crashRun(rand: Rand, failure: Failure): Promise<void> {
  let host = new CrashHost();
  const limit = rand() < 0.3 ? 12 * CHUNK : 0;
  const opts = { logger: quiet, writeBackBytes: CHUNK * int(rand, 1, 6) };
  const vol = await CowVolume.create(host, DIR, {
    volumeSize: SIZE,
    chunkSize: CHUNK,
    shadowStorageLimit: limit,
    ...opts,
  });
  const s: Subject = { vol, host, dir: DIR, opts };
  const m = new Model(SIZE);
  const exp: Expect = { flushed: Buffer.alloc(SIZE), since: [], mayVanish: new Set() };
  const log: string[] = [];
  const warmup = int(rand, 0, 25);
  let failed = false;
  for (let i = 0; i < warmup + 60 && !failed; i++) {
    if (i === warmup)
      host.arm(
        failure === "eio" ? { failAfter: int(rand, 0, 40) } : { cutAfter: int(rand, 0, 40) },
      );
    const op = drawOp(rand, SIZE, CHUNK);
    const liveBefore = Buffer.from(m.live);
    s.removing = undefined;
    s.reverting = undefined;
    try {
      const did = await apply(s, m, op, rand);
      log.push(did);
      for (const id of [...m.snaps.keys()])
        if (!s.vol.snapshots().some((x) => x.id === id)) m.snaps.delete(id); // evicted
      if (op.op === "write") exp.since.push({ offset: op.offset, data: op.data });
      else if (!did.endsWith(": none") && !did.endsWith("ENOSPC")) {
        exp.flushed = Buffer.from(m.live);
        exp.since = [];
      }
    } catch (e) {
      if (
        // The host's own failure, or the volume refusing work after a background batch met it.
        !(e instanceof PowerCut) &&
        !isFsError(e, "EIO") &&
        !(failure === "eio" && (e as { code?: string }).code === "EIO")
      )
        throw e;
      failed = true;
      log.push(`${op.op}: failed (${(e as Error).message})`);
      if (op.op === "write") exp.since.push({ offset: op.offset, data: op.data });
      if (op.op === "snapshot") exp.creating = liveBefore;
      if (s.reverting !== undefined) exp.revertTo = m.snaps.get(s.reverting);
      for (const id of s.removing ?? []) exp.mayVanish.add(id);
    }
  }
  if (failure === "eio" && failed) {
    // A volume that met an I/O error refuses everything until it is reopened.
    await expect(s.vol.write(0, Buffer.alloc(1))).rejects.toThrow(/EIO|power cut/);
  }
  host = host.reboot(failure === "cut-random" ? "random" : "drop", rand);
  const where = `after: ${log.slice(-6).join("; ")}`;

  const before = await checkStore(host, DIR);
  expect(before.problems, where).toEqual([]);
  const back = await CowVolume.open(host, DIR, { logger: quiet });
  try {
    const present = back.snapshots().map((x) => x.id);
    const evicted = new Set(back.evictions().map((e) => e.id));
    for (const id of m.snaps.keys()) {
      if (!present.includes(id) && !exp.mayVanish.has(id) && !evicted.has(id)) {
        throw new Error(`snapshot ${id} is gone; ${where}`);
      }
    }
    const buf = Buffer.alloc(SIZE);
    for (const id of present) {
      const img = m.snaps.get(id) ?? exp.creating;
      if (!img) throw new Error(`snapshot ${id} appeared from nowhere; ${where}`);
      await back.snapshotDevice(id).read(0, buf);
      expect(buf.equals(img), `snapshot ${id} changed; ${where}`).toBe(true);
      m.snaps.set(id, img);
    }
    for (const id of [...m.snaps.keys()]) if (!present.includes(id)) m.snaps.delete(id);
    await back.read(0, buf);
    const reverted = exp.revertTo !== undefined && buf.equals(exp.revertTo);
    if (!reverted) {
      const bad = firstLost(buf, exp);
      if (bad >= 0)
        throw new Error(
          `live byte ${bad} is ${buf[bad]}: neither flushed nor written since; ${where}`,
        );
    }
    // The recovered store keeps working: a few more steps against the model, then a clean check.
    m.live = Buffer.from(buf);
    const t: Subject = { vol: back, host, dir: DIR, opts: { logger: quiet } };
    for (let i = 0; i < 10; i++) {
      await apply(t, m, drawOp(rand, SIZE, CHUNK), rand);
      for (const id of [...m.snaps.keys()])
        if (!t.vol.snapshots().some((x) => x.id === id)) m.snaps.delete(id);
    }
    expect(await compare(t.vol, m), where).toBeUndefined();
    await t.vol.close();
    expect((await checkStore(host, DIR)).problems, where).toEqual([]);
  } finally {
    await back.close().catch(() => {});
  }
}

/** First byte that is neither its flushed value nor a value some later write put there, or -1. */
function firstLost(live: Buffer, exp: Expect): number {
  for (let b = 0; b < live.length; b++) {
    if (live[b] === exp.flushed[b]) continue;
    const ok = exp.since.some(
      (w) => b >= w.offset && b < w.offset + w.data.length && w.data[b - w.offset] === live[b],
    );
    if (!ok) return b;
  }
  return -1;
}

describe("crash safety of the copy-on-write volume", () => {
  it.each(seeds(150))("power cut dropping unsynced writes: seed %i", (seed) =>
    withSeed(seed, (r) => crashRun(r, "cut-drop")),
  );
  it.each(seeds(150))("power cut keeping torn unsynced writes: seed %i", (seed) =>
    withSeed(seed, (r) => crashRun(r, "cut-random")),
  );
  it.each(seeds(80))("host failing with EIO: seed %i", (seed) =>
    withSeed(seed, (r) => crashRun(r, "eio")),
  );
});
