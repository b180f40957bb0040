// The journal under power cuts: transactions of random block sets, cut at a random host call;
// after replay every block reads as of the last committed transaction or the one in flight, never a mix.

import { describe, expect, it } from "vitest";
import { FileBlockDevice } from "../../src/cow/index.js";
import { Journal, type JournalRegion, PER_DESCRIPTOR } from "../../src/fs/journal.js";
import { CrashHost, PowerCut } from "../helpers/crash-host.js";
import { int, type Rand, seeds, withSeed } from "../helpers/random.js";

const BS = 4096;
const REGION: JournalRegion = { start: 2, blocks: 48 };
const HOMES = [64, 200] as const; // home blocks used by the test: [64, 200)
const DEV_SIZE = 256 * BS;

const image = (home: number, v: number) => {
  const b = Buffer.alloc(BS, v);
  b.writeUInt32LE(home, 0);
  return b;
};

type State = Map<number, number>;

async function readState(dev: FileBlockDevice, overlay: Map<number, Buffer>): Promise<State> {
  const s: State = new Map();
  const b = Buffer.alloc(BS);
  for (let h = HOMES[0]; h < HOMES[1]; h++) {
    let img = overlay.get(h);
    if (!img) {
      await dev.read(h * BS, b);
      img = b;
    }
    const home = img.readUInt32LE(0);
    if (home !== 0 && home !== h) throw new Error(`block ${h} holds the image of block ${home}`);
    if (!img.subarray(4).equals(Buffer.alloc(BS - 4, img[4])))
      throw new Error(`block ${h} is torn`);
    s.set(h, home === 0 ? 0 : img[4]!);
  }
  return s;
}

const same = (a: State, b: State) => [...a].every(([k, v]) => b.get(k) === v);

async function crashRun(rand: Rand, mode: "drop" | "random"): Promise<void> {
  let host = new CrashHost();
  const dev = await FileBlockDevice.create(host, "/dev.img", DEV_SIZE);
  await Journal.format(dev, REGION);
  await dev.flush();
  const { journal } = await Journal.open(dev, REGION);
  let committed: State = new Map();
  for (let h = HOMES[0]; h < HOMES[1]; h++) committed.set(h, 0);
  let inFlight: State | undefined;
  host.arm({ cutAfter: int(rand, 1, 400) });
  try {
    for (let i = 0; i < 60; i++) {
      if (rand() < 0.1) {
        await journal.checkpoint();
        continue;
      }
      const tx = new Map<number, Buffer>();
      const next = new Map(committed);
      const n = int(rand, 1, Math.min(journal.capacity, 30));
      for (let k = 0; k < n; k++) {
        const h = int(rand, HOMES[0], HOMES[1] - 1);
        const v = int(rand, 1, 255);
        tx.set(h, image(h, v));
        next.set(h, v);
      }
      inFlight = next;
      await journal.commit(tx);
      committed = next;
      inFlight = undefined;
    }
  } catch (e) {
    if (!(e instanceof PowerCut)) throw e;
  }
  host = host.reboot(mode, rand);

  // Read-only: replayed in memory, nothing written.
  const ro = await FileBlockDevice.open(host, "/dev.img", { readOnly: true });
  const r = await Journal.open(ro, REGION);
  const seenRo = await readState(ro, r.journal.overlay);
  await ro.close();
  const okRo = same(seenRo, committed) || (inFlight !== undefined && same(seenRo, inFlight));
  expect(okRo, "read-only replay shows a state that was never committed").toBe(true);

  // Read/write: replayed onto the device; the same state, with an empty log after.
  const rw = await FileBlockDevice.open(host, "/dev.img");
  const w = await Journal.open(rw, REGION);
  expect(w.journal.empty).toBe(true);
  const seen = await readState(rw, new Map());
  expect(same(seen, seenRo), "replay onto the device differs from the read-only replay").toBe(true);
  // A second open finds nothing more to replay and the same blocks.
  const again = await Journal.open(rw, REGION);
  expect(again.replayed).toBe(0);
  expect(same(await readState(rw, new Map()), seen)).toBe(true);
  await rw.close();
}

describe("journal", () => {
  it("replays nothing on a fresh journal and refuses a damaged header", async () => {
    const host = new CrashHost();
    const dev = await FileBlockDevice.create(host, "/d", DEV_SIZE);
    await Journal.format(dev, REGION);
    const { journal, replayed } = await Journal.open(dev, REGION);
    expect(replayed).toBe(0);
    expect(journal.capacity).toBe(REGION.blocks - 1 - 2);
    await expect(Journal.open(dev, { start: 2, blocks: 47 })).rejects.toThrow(/does not match/);
    host.corrupt("/d", 2 * BS + 30);
    await expect(Journal.open(dev, REGION)).rejects.toThrow(/journal header: checksum mismatch/);
  });

  it("commits transactions larger than one descriptor block", async () => {
    const host = new CrashHost();
    const dev = await FileBlockDevice.create(host, "/d", 2048 * BS);
    const region = { start: 1, blocks: 1200 };
    await Journal.format(dev, region);
    const { journal } = await Journal.open(dev, region);
    const tx = new Map<number, Buffer>();
    for (let h = 1300; h < 1300 + PER_DESCRIPTOR + 100; h++) tx.set(h, image(h, 7));
    await journal.commit(tx);
    const back = host.reboot("drop");
    const ro = await FileBlockDevice.open(back, "/d", { readOnly: true });
    const r = await Journal.open(ro, region);
    expect(r.replayed).toBe(1);
    expect(
      r.journal.overlay
        .get(1300 + PER_DESCRIPTOR + 50)
        ?.equals(image(1300 + PER_DESCRIPTOR + 50, 7)),
    ).toBe(true);
  });

  it.each(seeds(120))(
    "is all-or-nothing under a power cut dropping unsynced writes: seed %i",
    (seed) => withSeed(seed, (r) => crashRun(r, "drop")),
  );
  it.each(seeds(120))("is all-or-nothing under a power cut keeping torn writes: seed %i", (seed) =>
    withSeed(seed, (r) => crashRun(r, "random")),
  );
});
