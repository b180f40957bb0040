// Properties, holds, cleanup and the timeline through the real binary: on a mounted volume (the
// daemon answers) and on a store opened directly, with bad input refused in one line.

import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { PropertyValue } from "../../src/daemon/properties.js";
import type { SnapshotRow, StorageReport } from "../../src/daemon/reports.js";
import type { CleanupReport } from "../../src/daemon/retention-admin.js";
import { ok, run, type Scratch, scratchEachTest, shadowfs, until } from "../helpers/mounted.js";

const { fresh } = scratchEachTest({ checkEach: true });

async function volume(mount = true): Promise<Scratch> {
  const s = await fresh();
  await ok("init", s.store, "--size", "256M");
  if (mount) await ok("mount", s.store, s.mnt);
  return s;
}

const list = async (target: string): Promise<SnapshotRow[]> =>
  JSON.parse(await ok("snapshot", "list", target, "--json"));

describe("get and set", () => {
  it("shows every property with its source, sets them live, and refuses bad ones whole", async () => {
    const s = await volume();
    const all: PropertyValue[] = JSON.parse(await ok("get", s.mnt, "--json"));
    expect(all.map((p) => p.property)).toEqual([
      "shadow-storage-limit",
      "on-full",
      "timeline",
      "timeline-interval",
      "keep-hourly",
      "keep-daily",
      "keep-weekly",
      "keep-monthly",
      "keep-yearly",
      "keep-empty",
      "cleanup-free",
    ]);
    expect(all.find((p) => p.property === "timeline")).toEqual({
      property: "timeline",
      value: "off",
      source: "default",
    });
    expect(await ok("set", s.mnt, "shadow-storage-limit=64M", "keep-daily=3")).toBe(
      "shadow-storage-limit=64M\nkeep-daily=3\n",
    );
    const bad = await shadowfs("set", s.mnt, "keep-hourly=5", "colour=blue");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/unknown property "colour"/);
    expect((await shadowfs("set", s.mnt, "on-full=panic")).stderr).toMatch(/fail-writes/);
    expect((await shadowfs("get", s.mnt, "nope")).code).not.toBe(0);
    // Nothing of the refused assignments was applied.
    expect(await ok("get", s.mnt, "keep-hourly", "keep-daily", "shadow-storage-limit")).toMatch(
      /keep-hourly\s+10\s+default\nkeep-daily\s+3\s+local\nshadow-storage-limit\s+64M\s+local/,
    );
    const st: StorageReport = JSON.parse(await ok("storage", s.mnt, "--json"));
    expect(st.limitBytes).toBe(64 * 2 ** 20);
    // Kept in the store: the same after an unmount, read with the store opened directly.
    await ok("unmount", s.mnt);
    expect(await ok("get", s.store, "keep-daily")).toMatch(/keep-daily\s+3\s+local/);
    await ok("set", s.store, "timeline-interval=30m");
    expect(await ok("get", s.store, "timeline-interval")).toMatch(/30m\s+local/);
  });
});

describe("holds", () => {
  it("a held snapshot cannot be deleted; list and storage show holds and exclusive bytes", async () => {
    const s = await volume();
    run(`head -c 4M /dev/urandom > ${s.mnt}/a`);
    await ok("snapshot", "create", s.mnt, "--name", "one");
    run(`head -c 2M /dev/urandom | dd of=${s.mnt}/a conv=notrunc status=none`);
    await ok("snapshot", "create", s.mnt, "--name", "two");
    run(`sync ${s.mnt}/a`);
    expect(await ok("snapshot", "hold", s.mnt, "one", "--tag", "backup")).toMatch(
      /held \(backup\)/,
    );
    await ok("snapshot", "hold", s.mnt, "one");
    const del = await shadowfs("snapshot", "delete", s.mnt, "one");
    expect(del.code).not.toBe(0);
    expect(del.stderr).toMatch(/held \(backup, hold\)/);
    const rows = await list(s.mnt);
    expect(rows.map((r) => [r.name, r.holds, r.timeline])).toEqual([
      ["one", ["backup", "hold"], false],
      ["two", [], false],
    ]);
    // The oldest snapshot's diff area is all its own.
    expect(rows[0]!.exclusiveBytes).toBe(rows[0]!.diffAreaBytes);
    expect(rows[0]!.exclusiveBytes).toBeGreaterThanOrEqual(2 * 2 ** 20);
    expect(await ok("snapshot", "list", s.mnt)).toMatch(/EXCLUSIVE\s+HOLDS/);
    const st: StorageReport = JSON.parse(await ok("storage", s.mnt, "--json"));
    expect(st.snapshots[0]!.holds).toEqual(["backup", "hold"]);
    expect((await shadowfs("snapshot", "release", s.mnt, "one", "--tag", "nope")).stderr).toMatch(
      /no hold tagged nope/,
    );
    expect((await shadowfs("snapshot", "hold", s.mnt, "one", "--tag", "a b")).code).not.toBe(0);
    await ok("snapshot", "release", s.mnt, "one", "--tag", "backup");
    expect(await ok("snapshot", "release", s.mnt, "one")).toMatch(/not held/);
    await ok("snapshot", "delete", s.mnt, "one");
    expect((await list(s.mnt)).map((r) => r.name)).toEqual(["two"]);
  });
});

describe("the timeline", () => {
  it("takes snapshots through the writers at each interval and cleans up; cleanup --dry-run deletes nothing", async () => {
    const s = await volume(false);
    const log = join(s.dir, "writer.log");
    mkdirSync(join(s.store, "writers.d"), { recursive: true });
    const writer = join(s.store, "writers.d", "10-log");
    writeFileSync(writer, `#!/bin/bash\necho "$1 $SHADOWFS_SNAPSHOT_NAME" >> ${log}\nexit 0\n`);
    chmodSync(writer, 0o755);
    await ok("snapshot", "create", s.store, "--name", "by-hand");
    await ok(
      "set",
      s.store,
      "timeline=on",
      "timeline-interval=1s",
      "keep-hourly=0",
      "keep-daily=0",
      "keep-monthly=0",
      "keep-yearly=0",
    );
    await ok("mount", s.store, s.mnt);
    // Each tick snapshots, then cleanup keeps only the newest timeline snapshot.
    await until("three timeline snapshots were taken", () => {
      const freezes = readFileSync(log, "utf8").match(/^freeze/gm) ?? [];
      return freezes.length >= 4; // the hand-made one and three ticks
    });
    await ok("set", s.mnt, "timeline=off");
    const rows = await list(s.mnt);
    expect(rows[0]!.name).toBe("by-hand");
    expect(rows[0]!.timeline).toBe(false);
    const timeline = rows.filter((r) => r.timeline);
    expect(timeline.length).toBeGreaterThanOrEqual(1);
    expect(timeline.length).toBeLessThanOrEqual(2); // one, or two while a tick's cleanup runs
    // Every run is in the volume's history, as a hand-made one is.
    const history = JSON.parse(await ok("snapshot", "history", s.mnt, "--json"));
    expect(
      history.records.filter((r: { result: string }) => r.result === "ok").length,
    ).toBeGreaterThanOrEqual(4);

    // By hand: the dry run says what cleanup would delete, and deletes nothing.
    const before = await list(s.mnt);
    const dry: CleanupReport = JSON.parse(
      await ok("snapshot", "cleanup", s.mnt, "--dry-run", "--json"),
    );
    expect(dry.dryRun).toBe(true);
    expect((await list(s.mnt)).map((r) => r.id)).toEqual(before.map((r) => r.id));
    const done: CleanupReport = JSON.parse(await ok("snapshot", "cleanup", s.mnt, "--json"));
    expect(done.deleted.map((d) => d.id)).toEqual(dry.deleted.map((d) => d.id));
    expect(await ok("snapshot", "cleanup", s.mnt)).toBe("nothing to delete\n");
  });
});
