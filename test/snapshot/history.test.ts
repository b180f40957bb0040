// The per-volume history of protocol runs: what a record keeps of a real run, and how a history
// cut short by a crash reads and goes on.

import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CorruptStoreError } from "../../src/errors.js";
import {
  appendHistory,
  historyRecord,
  ProtocolError,
  readHistory,
  type SnapshotRun,
  scanWriters,
  takeSnapshot,
  VolumeParticipant,
} from "../../src/snapshot/index.js";
import { execWriter, FakeProvider, killWriters, type Scratch, scratch } from "./fixture.js";

let s: Scratch;
let path: string;
beforeEach(() => {
  s = scratch();
  path = join(s.dir, "history.jsonl");
});
afterEach(() => {
  killWriters(s);
  s.cleanup();
});

const VOL = "/srv/store";
const participant = (provider: FakeProvider) =>
  new VolumeParticipant(
    VOL,
    null,
    provider,
    async () => (await scanWriters(s.writersDir)).writers,
    {
      callTimeoutMs: 10_000,
    },
  );

async function failedRun(p: Promise<SnapshotRun>): Promise<SnapshotRun> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(ProtocolError);
  return (e as ProtocolError).record;
}

describe("history", () => {
  it("keeps one record per run with every writer's answers, the hold time and the outcome", async () => {
    execWriter(s, "10-db", { identify: "echo path=/srv/store/db; echo restore=db" });
    const provider = new FakeProvider(s);
    const ok = await takeSnapshot([participant(provider)], { name: "first" });
    await appendHistory(path, historyRecord(ok, VOL));
    execWriter(s, "20-busy", { prepare: "echo busy >&2; exit 1" });
    const bad = await failedRun(takeSnapshot([participant(provider)]));
    await appendHistory(path, historyRecord(bad, VOL));

    const { records, torn } = await readHistory(path);
    expect(torn).toBeNull();
    expect(records).toHaveLength(2);
    const [r1, r2] = records;
    expect(r1).toMatchObject({
      setId: ok.setId,
      name: "first",
      volume: VOL,
      result: "ok",
      reason: null,
      writers: [{ name: "10-db", kind: "exec", paths: ["/srv/store/db"], restore: "db" }],
      snapshot: { id: 1, gmt: "@GMT-2025.01.01-00.00.01" },
      discarded: null,
    });
    expect(Date.parse(r1!.startedAt)).not.toBeNaN();
    expect(r1!.holdMs).toBeGreaterThanOrEqual(0);
    expect(r1!.events.map((e) => `${e.writer} ${e.event} ${e.ok}`)).toEqual([
      "10-db identify true",
      "10-db prepare true",
      "10-db freeze true",
      "10-db thaw true",
      "10-db post-snapshot true",
    ]);
    expect(r1!.events.every((e) => typeof e.ms === "number" && e.ms >= 0)).toBe(true);
    expect(r2).toMatchObject({
      setId: bad.setId,
      result: "failed",
      reason: `writer "20-busy" on ${VOL} vetoed prepare: busy`,
      holdMs: null,
      snapshot: null,
    });
    expect(r2!.events.at(-1)).toMatchObject({
      writer: "20-busy",
      event: "prepare",
      ok: false,
      reason: "busy",
    });
  });

  it("skips and reports a torn last line, and appends after cutting it off", async () => {
    const record = historyRecord(
      {
        setId: "a",
        name: null,
        startedAt: new Date(0).toISOString(),
        writers: [],
        snapshots: [],
        discarded: [],
        holdMs: 1,
        events: [],
        result: "ok",
      },
      VOL,
    );
    await appendHistory(path, record);
    appendFileSync(path, '{"startedAt":"1970-01-01T00:00:00.000Z","setId":"b","na');
    const read = await readHistory(path);
    expect(read.records.map((r) => r.setId)).toEqual(["a"]);
    expect(read.torn).toEqual({
      line: 2,
      text: '{"startedAt":"1970-01-01T00:00:00.000Z","setId":"b","na',
    });

    await appendHistory(path, { ...record, setId: "c" });
    expect(await readHistory(path)).toEqual({
      records: [record, { ...record, setId: "c" }],
      torn: null,
    });
    expect(readFileSync(path, "utf8").split("\n")).toHaveLength(3);
  });

  it("refuses a history damaged before its last line, and reads a missing one as empty", async () => {
    expect(await readHistory(path)).toEqual({ records: [], torn: null });
    writeFileSync(path, 'garbage\n{"setId":"x","startedAt":"t","result":"ok"}\n');
    await expect(readHistory(path)).rejects.toBeInstanceOf(CorruptStoreError);
  });
});
