// The timeline on a real store with an injected clock: a snapshot through the writers' protocol
// at each tick, tagged as the timeline's, then cleanup; holds survive it, an idle volume with
// keep-empty=off gets no snapshot, and ticks fall on multiples of the interval.

import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { initStore, openStore, Service, VolumeProtocol } from "../../src/daemon/index.js";
import { Retention } from "../../src/daemon/retention-admin.js";
import { type Clock, Timeline } from "../../src/daemon/timeline.js";
import { ROOT, SUPERUSER } from "../../src/fs/filesystem.js";
import { quiet } from "../helpers/cow-workload.js";

const MiB = 2 ** 20;
const HOUR = 36e5;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A clock that moves only when told; timers are recorded, not run. */
class FakeClock implements Clock {
  timers: Array<{ at: number; fn: () => void }> = [];
  constructor(public t: number) {}
  now = () => this.t;
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
}

async function timelineStore(start: number) {
  const dir = await mkdtemp(join(tmpdir(), "shadowfs-timeline-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const store = join(dir, "store");
  await initStore(store, { size: 64 * MiB });
  // A writer that logs each event it is sent.
  const log = join(dir, "writer.log");
  await mkdir(join(store, "writers.d"), { recursive: true });
  const writer = join(store, "writers.d", "10-log");
  await writeFile(writer, `#!/bin/bash\necho "$1" >> ${log}\nexit 0\n`);
  await chmod(writer, 0o755);
  const { volume, fs } = await openStore(store);
  const clock = new FakeClock(start);
  const service = new Service(store, volume, fs, clock.now);
  const protocol = new VolumeProtocol(service, null);
  const retention = new Retention(service);
  const timeline = new Timeline(service, protocol, retention, quiet, clock);
  cleanups.push(async () => {
    await timeline.stop();
    await service.fs.close();
    await volume.close();
  });
  const file = await fs.create(ROOT, "data", 0o644, SUPERUSER);
  const change = (byte: number) => service.fs.write(file.ino, 0, Buffer.alloc(4096, byte));
  return { service, retention, timeline, clock, change, log };
}

describe("timeline", () => {
  it("snapshots through the writers at each tick and cleans up by the limits, sparing holds", async () => {
    const start = Date.UTC(2026, 0, 5, 9);
    const { service, retention, timeline, clock, change, log } = await timelineStore(start);
    await retention.set([
      "timeline=on",
      "keep-hourly=3",
      "keep-daily=0",
      "keep-monthly=0",
      "keep-yearly=0",
    ]);
    const byHand = await service.create({ name: "by-hand" });
    for (let h = 0; h < 6; h++) {
      clock.t = start + (h + 1) * HOUR;
      await change(h + 1);
      await timeline.tick();
      if (h === 1) await retention.hold(service.list().at(-1)!.gmt, "audit");
    }
    const rows = service.list();
    const hours = (r: { createdAt: string }) => (Date.parse(r.createdAt) - start) / HOUR;
    // Hand-made: kept. Timeline: the held one (hour 2) and the newest three hours (4, 5, 6).
    expect(rows.map((r) => [hours(r), r.timeline, r.holds])).toEqual([
      [hours(byHand), false, []],
      [2, true, ["audit"]],
      [4, true, []],
      [5, true, []],
      [6, true, []],
    ]);
    const events = (await readFile(log, "utf8")).trim().split("\n");
    // Each of the six ticks ran the whole protocol.
    for (const e of ["identify", "prepare", "freeze", "thaw", "post-snapshot"])
      expect(events.filter((x) => x === e)).toHaveLength(6);
    const runs = (await service.volume.snapshots()).filter((s) => s.timeline);
    expect(runs).toHaveLength(4);
  });

  it("with keep-empty=off takes no snapshot of an idle volume", async () => {
    const start = Date.UTC(2026, 0, 5, 9);
    const { service, retention, timeline, clock, change } = await timelineStore(start);
    await retention.set(["timeline=on", "keep-empty=off"]);
    clock.t += HOUR;
    await change(1);
    await timeline.tick(); // changed since nothing: a snapshot
    clock.t += HOUR;
    await timeline.tick(); // idle: none
    clock.t += HOUR;
    await timeline.tick(); // still idle: none
    expect(service.list()).toHaveLength(1);
    await change(2);
    clock.t += HOUR;
    await timeline.tick();
    expect(service.list()).toHaveLength(2);
    await retention.set(["keep-empty=on"]);
    clock.t += HOUR;
    await timeline.tick();
    expect(service.list()).toHaveLength(3);
  });

  it("ticks on multiples of the interval, only while the timeline is on", async () => {
    const start = Date.UTC(2026, 0, 5, 9, 17, 30);
    const { retention, timeline, clock } = await timelineStore(start);
    timeline.start();
    expect(clock.timers).toHaveLength(0);
    await retention.set(["timeline=on", "timeline-interval=15m"]);
    expect(clock.timers.map((t) => t.at)).toEqual([Date.UTC(2026, 0, 5, 9, 30)]);
    await retention.set(["timeline-interval=1h"]);
    expect(clock.timers.map((t) => t.at)).toEqual([Date.UTC(2026, 0, 5, 10)]);
    await retention.set(["timeline=off"]);
    expect(clock.timers).toHaveLength(0);
  });
});
