// One volume's participant driven step by step, as a daemon does for a remote requester: abort at
// any point undoes exactly once, and a participant left alone frees itself within its limits.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isFsError } from "../../src/errors.js";
import { scanWriters, VolumeParticipant } from "../../src/snapshot/index.js";
import {
  execWriter,
  FakeProvider,
  killWriters,
  type Scratch,
  scratch,
  steps,
  until,
} from "./fixture.js";

let s: Scratch;
beforeEach(() => {
  s = scratch();
});
afterEach(() => {
  killWriters(s);
  s.cleanup();
});

const VOL = "/srv/store";
const make = (
  provider: FakeProvider,
  limits: { freezeLimitMs?: number; holdLimitMs?: number } = {},
) =>
  new VolumeParticipant(
    VOL,
    null,
    provider,
    async () => (await scanWriters(s.writersDir)).writers,
    { callTimeoutMs: 10_000, ...limits },
  );

describe("VolumeParticipant", () => {
  it("aborts once, however often and whenever it is asked: thaw, release, discard", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-b");
    const provider = new FakeProvider(s);
    const p = make(provider);
    const setId = "set-1";
    await p.identify(setId);
    await p.event("prepare", { setId });
    await p.event("freeze", { setId });
    await p.hold();
    const made = await p.commit({ setId });
    expect(provider.snapshots.has(made.id)).toBe(true);

    const [first, second] = await Promise.all([p.abort("requester gone"), p.abort("SIGTERM")]);
    const third = await p.abort("again");
    expect(second).toBe(first);
    expect(third).toBe(first);
    expect(first.thawed.map((r) => `${r.writer} ${r.event} ${r.ok}`)).toEqual([
      "20-b thaw true",
      "10-a thaw true",
    ]);
    expect(first.released).toBe(true);
    expect(first.discarded).toEqual(made);
    expect(provider.snapshots.size).toBe(0);
    expect(steps(s).slice(6)).toEqual([
      "provider hold",
      "provider commit",
      "provider release",
      "20-b thaw",
      "10-a thaw",
      "provider discard",
    ]);

    // The run is over: the coordinator's late calls are refused, a new run may start.
    await expect(p.event("thaw", { setId })).rejects.toSatisfy((e) => isFsError(e, "ECANCELED"));
    await expect(p.identify("set-2")).resolves.toBeDefined();
    await p.abort("done testing");
  });

  it("has nothing to undo when idle, and keeps a finished snapshot", async () => {
    execWriter(s, "10-a");
    const provider = new FakeProvider(s);
    const p = make(provider);
    expect(await p.abort("nothing")).toEqual({
      thawed: [],
      released: false,
      discarded: null,
      problems: [],
    });
    const setId = "set-1";
    await p.identify(setId);
    await p.event("prepare", { setId });
    await p.event("freeze", { setId });
    await p.hold();
    await p.commit({ setId });
    await p.release();
    await p.event("thaw", { setId });
    await p.event("post-snapshot", { setId });
    await p.finish();
    expect((await p.abort("late")).discarded).toBeNull();
    expect(provider.snapshots.size).toBe(1);
  });

  it("aborts a prepare-only run without sending thaw to writers never frozen", async () => {
    execWriter(s, "10-a");
    const p = make(new FakeProvider(s));
    await p.identify("set-1");
    await p.event("prepare", { setId: "set-1" });
    expect((await p.abort("requester gone")).thawed).toEqual([]);
    expect(steps(s)).toEqual(["10-a identify", "10-a prepare"]);
  });

  it("refuses a second run while one is under way", async () => {
    const p = make(new FakeProvider(s));
    await p.identify("set-1");
    await expect(p.identify("set-2")).rejects.toThrow(/EBUSY.*set-1 is under way/);
    await expect(p.event("prepare", { setId: "set-2" })).rejects.toThrow(/EBUSY/);
    await p.abort("done");
  });

  it("thaws its writers by itself when nobody thaws them within its freeze limit", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-b");
    const provider = new FakeProvider(s);
    const p = make(provider, { freezeLimitMs: 600 });
    await p.identify("set-1");
    await p.event("freeze", { setId: "set-1" });
    await until("the participant thaws its writers", () => steps(s).includes("10-a thaw"));
    expect(steps(s).slice(2)).toEqual(["10-a freeze", "20-b freeze", "20-b thaw", "10-a thaw"]);
    await expect(p.hold()).rejects.toThrow(/abandoned the snapshot: freeze limit of 600 ms passed/);
    expect(provider.calls).toEqual([]);
  });

  it("releases the volume and deletes the snapshot by itself past its hold limit", async () => {
    execWriter(s, "10-a");
    const provider = new FakeProvider(s);
    const p = make(provider, { holdLimitMs: 400 });
    await p.identify("set-1");
    await p.event("freeze", { setId: "set-1" });
    await p.hold();
    await p.commit({ setId: "set-1" });
    await until("the participant releases the volume", () => !provider.held);
    await until("the participant thaws", () => steps(s).includes("10-a thaw"));
    await until("the snapshot is gone", () => provider.snapshots.size === 0);
    await expect(p.release()).resolves.toBeUndefined();
  });

  it("releases a hold that only completes after an abort", async () => {
    const provider = new FakeProvider(s);
    let done!: () => void;
    provider.hold = () => {
      provider.calls.push("hold");
      return new Promise<void>((ok) => {
        done = () => {
          provider.held = true;
          ok();
        };
      });
    };
    const p = make(provider);
    await p.identify("set-1");
    const holding = p.hold();
    const report = await p.abort("requester gone");
    expect(report.released).toBe(true);
    done();
    await expect(holding).rejects.toThrow(/ECANCELED/);
    expect(provider.held).toBe(false);
  });
});
