// A whole snapshot through takeSnapshot with real executable and socket writers and an in-memory
// provider: the order writers hear events in, and that every failure leaves nothing frozen or held.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ProtocolError,
  scanWriters,
  takeSnapshot,
  VolumeParticipant,
  type Writer,
} from "../../src/snapshot/index.js";
import {
  alive,
  execWriter,
  FakeProvider,
  killWriters,
  type Scratch,
  scratch,
  steps,
  until,
  WriterServer,
} from "./fixture.js";

let s: Scratch;
let server: WriterServer;
beforeEach(async () => {
  s = scratch();
  server = await new WriterServer(s).start();
});
afterEach(async () => {
  killWriters(s);
  await server.stop();
  s.cleanup();
});

const VOL = "/srv/store";

/** The participant for VOL: exec writers of the scratch dir plus every registered socket writer. */
function participant(
  provider: FakeProvider,
  volume = VOL,
  dir = s.writersDir,
  more: Writer[] = [],
) {
  const writers = async (): Promise<Writer[]> => [
    ...(await scanWriters(dir)).writers,
    ...server.writers.filter((w) => w.connected),
    ...more,
  ];
  return new VolumeParticipant(volume, "/mnt/data", provider, writers, { callTimeoutMs: 10_000 });
}

const failed = async (p: Promise<unknown>): Promise<ProtocolError> => {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ProtocolError);
  return e as ProtocolError;
};

/** What happened after identify: the log without identify lines. */
const sinceIdentify = () => steps(s).filter((l) => !l.endsWith(" identify"));

describe("takeSnapshot", () => {
  it("calls writers in name order, and in reverse for thaw and post-snapshot", async () => {
    execWriter(s, "10-a");
    execWriter(s, "30-c");
    await server.register("20-b");
    await server.register("40-d");
    const provider = new FakeProvider(s);

    const run = await takeSnapshot([participant(provider)], { name: "nightly", setId: "set-42" });

    // Identify asks every writer at once: the executables may log it in either order.
    expect(
      steps(s)
        .filter((l) => l.endsWith(" identify"))
        .sort(),
    ).toEqual(["10-a identify", "30-c identify"]);
    expect(sinceIdentify()).toEqual([
      ...["10-a", "20-b", "30-c", "40-d"].map((w) => `${w} prepare`),
      ...["10-a", "20-b", "30-c", "40-d"].map((w) => `${w} freeze`),
      "provider hold",
      "provider commit",
      "provider release",
      ...["40-d", "30-c", "20-b", "10-a"].map((w) => `${w} thaw`),
      ...["40-d", "30-c", "20-b", "10-a"].map((w) => `${w} post-snapshot`),
    ]);
    // Before the commit writers hear of no snapshot; afterwards, of the new one.
    const ids = readFileSync(s.log, "utf8")
      .split("\n")
      .filter((l) => /^\d\d-/.test(l));
    expect(ids.filter((l) => / (prepare|freeze) $/.test(l))).toHaveLength(8);
    expect(ids.filter((l) => / (thaw|post-snapshot) 1$/.test(l))).toHaveLength(8);

    expect(run.result).toBe("ok");
    expect(run.setId).toBe("set-42");
    expect(run.snapshots).toEqual([{ volume: VOL, id: 1, gmt: "@GMT-2025.01.01-00.00.01" }]);
    expect([...provider.snapshots]).toEqual([[1, "nightly"]]);
    expect(run.holdMs).toBeGreaterThanOrEqual(0);
    expect(run.writers.map((w) => `${w.kind} ${w.name}`)).toEqual([
      "exec 10-a",
      "socket 20-b",
      "exec 30-c",
      "socket 40-d",
    ]);
    expect(run.events).toHaveLength(4 * 5);
    expect(run.events.every((e) => e.ok && e.volume === VOL && e.ms >= 0)).toBe(true);
  });

  it("stops at a veto in prepare: no freeze, no hold, no snapshot, and says who and why", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-db", { prepare: "echo 'database busy' >&2; exit 1" });
    execWriter(s, "30-c");
    const provider = new FakeProvider(s);

    const e = await failed(takeSnapshot([participant(provider)]));
    expect(e.reason).toBe(`writer "20-db" on ${VOL} vetoed prepare: database busy`);
    expect(e.code).toBe("ECANCELED");
    expect(sinceIdentify()).toEqual(["10-a prepare", "20-db prepare"]);
    expect(provider.calls).toEqual([]);
    expect(e.record.snapshots).toEqual([]);
    expect(e.record.result).toBe("failed");
  });

  it("deletes the snapshot when a writer fails post-snapshot, after asking every writer", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-b", { "post-snapshot": "echo 'writes were not held' >&2; exit 1" });
    execWriter(s, "30-c");
    const provider = new FakeProvider(s);

    const e = await failed(takeSnapshot([participant(provider)]));
    expect(e.reason).toBe(`writer "20-b" on ${VOL} failed post-snapshot: writes were not held`);
    expect(sinceIdentify().slice(-4)).toEqual([
      "30-c post-snapshot",
      "20-b post-snapshot",
      "10-a post-snapshot",
      "provider discard",
    ]);
    expect(provider.snapshots.size).toBe(0);
    expect(e.record.snapshots).toEqual([]);
    expect(e.record.discarded).toEqual([{ volume: VOL, id: 1, gmt: "@GMT-2025.01.01-00.00.01" }]);
  });

  it("names a writer that sleeps past the freeze limit, kills it and thaws everyone", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-slow", { freeze: `sleep 60 & echo $! > '${s.dir}/child'; wait` });
    execWriter(s, "30-c");
    const provider = new FakeProvider(s);

    const e = await failed(takeSnapshot([participant(provider)], { freezeLimitMs: 1500 }));
    expect(e.code).toBe("ETIMEDOUT");
    expect(e.reason).toMatch(
      new RegExp(`^writer "20-slow" on ${VOL} failed freeze: did not answer freeze within \\d+ ms`),
    );
    expect(e.reason).toContain("freeze limit 1500 ms");
    expect(sinceIdentify()).toEqual([
      "10-a prepare",
      "20-slow prepare",
      "30-c prepare",
      "10-a freeze",
      "20-slow freeze",
      "20-slow thaw",
      "10-a thaw",
    ]);
    expect(provider.calls).toEqual([]);
    const child = Number(readFileSync(join(s.dir, "child"), "utf8"));
    await until("the slow writer's child is killed", () => !alive(child));
  });

  it("abandons a snapshot whose writers are thawed only after the freeze limit", async () => {
    execWriter(s, "10-a", { thaw: "sleep 2" });
    execWriter(s, "20-b");
    const provider = new FakeProvider(s);

    const e = await failed(takeSnapshot([participant(provider)], { freezeLimitMs: 1000 }));
    expect(e.code).toBe("ETIMEDOUT");
    expect(e.reason).toMatch(
      new RegExp(
        `^writer "10-a" on ${VOL} answered thaw \\d+ ms after the first freeze, past the freeze limit of 1000 ms$`,
      ),
    );
    expect(sinceIdentify().slice(-3)).toEqual(["20-b thaw", "10-a thaw", "provider discard"]);
    expect(provider.snapshots.size).toBe(0);
  });

  it("counts a socket writer whose connection drops mid-freeze as failed and thaws the rest", async () => {
    execWriter(s, "10-a");
    await server.register("20-app", {
      freeze: (c) => {
        void c.close();
        return new Promise(() => undefined);
      },
    });
    execWriter(s, "30-c");
    const provider = new FakeProvider(s);

    const e = await failed(takeSnapshot([participant(provider)]));
    expect(e.reason).toBe(`writer "20-app" on ${VOL} failed freeze: connection dropped`);
    expect(sinceIdentify().slice(3)).toEqual(["10-a freeze", "20-app freeze", "10-a thaw"]);
    expect(provider.calls).toEqual([]);
    // The dropped writer is sent thaw too, and fails it.
    const thaw = e.record.events.filter((r) => r.event === "thaw");
    expect(thaw.map((r) => [r.writer, r.ok])).toEqual([
      ["20-app", false],
      ["10-a", true],
    ]);
  });

  it("abandons the snapshot and releases I/O when the volume cannot hold in time", async () => {
    execWriter(s, "10-a");
    execWriter(s, "20-b");
    const provider = new FakeProvider(s);
    provider.stuck = true;

    const e = await failed(takeSnapshot([participant(provider)], { holdLimitMs: 500 }));
    expect(e.code).toBe("ETIMEDOUT");
    expect(e.reason).toBe(`volume ${VOL} did not hold and commit within the hold limit of 500 ms`);
    expect(sinceIdentify().slice(4)).toEqual([
      "provider hold",
      "provider release",
      "20-b thaw",
      "10-a thaw",
    ]);
    expect(provider.snapshots.size).toBe(0);
    expect(e.record.holdMs).toBeGreaterThanOrEqual(500);
    // Given up long before the participant's own 10 s hold limit or the 60 s freeze limit.
  }, 8000);

  it("releases and thaws when the provider fails to commit", async () => {
    execWriter(s, "10-a");
    const provider = new FakeProvider(s);
    provider.commitError = new Error("ENOSPC: no room for the snapshot");

    const e = await failed(takeSnapshot([participant(provider)]));
    expect(e.reason).toBe(`${VOL} failed hold and commit: ENOSPC: no room for the snapshot`);
    expect(sinceIdentify().slice(2)).toEqual(["provider hold", "provider release", "10-a thaw"]);
  });
});

describe("a snapshot set", () => {
  const second = () => {
    const dir = join(s.dir, "second.d");
    return { dir, provider: new FakeProvider(s, "provider2") };
  };

  it("takes one snapshot per volume under one set id", async () => {
    execWriter(s, "10-a", { freeze: `echo "$SHADOWFS_SET_ID" >> '${s.dir}/sets'` });
    const p1 = new FakeProvider(s);
    const two = second();
    const run = await takeSnapshot([
      participant(p1),
      participant(two.provider, "/srv/other", two.dir),
    ]);
    expect(run.snapshots.map((x) => x.volume)).toEqual([VOL, "/srv/other"]);
    expect(p1.snapshots.size).toBe(1);
    expect(two.provider.snapshots.size).toBe(1);
    expect(readFileSync(join(s.dir, "sets"), "utf8").trim()).toBe(run.setId);
  });

  it("keeps no snapshot anywhere when one volume's writer vetoes", async () => {
    execWriter(s, "10-a");
    const p1 = new FakeProvider(s);
    const two = second();
    const veto: Writer = {
      name: "05-veto",
      kind: "exec",
      call: async (event) => {
        if (event === "prepare") throw new Error("not now");
        return {};
      },
    };
    const vetoing = participant(two.provider, "/srv/other", two.dir, [veto]);

    const e = await failed(takeSnapshot([participant(p1), vetoing]));
    expect(e.reason).toBe('writer "05-veto" on /srv/other vetoed prepare: not now');
    expect(p1.calls).toEqual([]);
    expect(two.provider.calls).toEqual([]);
  });

  it("deletes every volume's snapshot when one volume's post-snapshot fails", async () => {
    execWriter(s, "10-a", {
      "post-snapshot": `[ "$SHADOWFS_VOLUME" = /srv/other ] && { echo lost writes >&2; exit 1; }; true`,
    });
    const p1 = new FakeProvider(s);
    const p2 = new FakeProvider(s, "provider2");
    const e = await failed(takeSnapshot([participant(p1), participant(p2, "/srv/other")]));
    expect(e.reason).toBe('writer "10-a" on /srv/other failed post-snapshot: lost writes');
    expect(p1.calls).toEqual(["hold", "commit 1", "release", "discard 1"]);
    expect(p2.calls).toEqual(["hold", "commit 1", "release", "discard 1"]);
    expect(e.record.discarded.map((d) => d.volume).sort()).toEqual(["/srv/other", VOL]);
  });
});
