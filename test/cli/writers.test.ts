// The snapshot protocol through the real binary and real mounts: executable writers in
// writers.d and socket writers in their own processes, vetoes, failures, time limits, killed
// writers, a daemon stopped mid-run, and snapshot sets across two volumes.

import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { SnapshotRow, WriterListing } from "../../src/daemon/index.js";
import type { History } from "../../src/snapshot/index.js";
import {
  background,
  lockPid,
  mountsUnder,
  ok,
  type Scratch,
  scratchEachTest,
  shadowfs,
  until,
} from "../helpers/mounted.js";

const SIZE = "256M";
const SOCKET_WRITER = join(import.meta.dirname, "..", "helpers", "socket-writer.mjs");

const { fresh, hold } = scratchEachTest({ checkEach: true });

async function volume(): Promise<Scratch> {
  const s = await fresh();
  await ok("init", s.store, "--size", SIZE);
  await ok("mount", s.store, s.mnt);
  return s;
}

/** A second store and mount point in the same scratch directory. */
async function secondVolume(v: Scratch): Promise<{ store: string; mnt: string }> {
  const store = join(v.dir, "store2");
  const mnt = join(v.dir, "mnt2");
  mkdirSync(mnt);
  await ok("init", store, "--size", SIZE);
  await ok("mount", store, mnt);
  return { store, mnt };
}

/**
 * An executable writer in STORE/writers.d that logs "NAME EVENT SNAPSHOT" to `log`, then runs
 * `body` (bash, with the event in $1).
 */
function execWriter(store: string, name: string, log: string, body = ""): void {
  const dir = join(store, "writers.d");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  writeFileSync(
    path,
    `#!/bin/bash\necho "${name} $1 \${SHADOWFS_SNAPSHOT_NAME:--}" >> ${log}\n${body}\nexit 0\n`,
  );
  chmodSync(path, 0o755);
}

/** A socket writer process registered with the daemon of `store`. */
async function socketWriter(store: string, name: string, log: string, ...rules: string[]) {
  const b = hold(
    background(
      `exec node ${SOCKET_WRITER} ${store} ${name} ${log} ${rules.map((r) => JSON.stringify(r)).join(" ")}`,
    ),
  );
  await until(`writer ${name} registered`, () => b.stdout.includes("registered"));
  return b;
}

const lines = (log: string) =>
  existsSync(log) ? readFileSync(log, "utf8").trimEnd().split("\n") : [];
const list = async (target: string) =>
  JSON.parse(await ok("snapshot", "list", target, "--json")) as SnapshotRow[];
const history = async (target: string) =>
  JSON.parse(await ok("snapshot", "history", target, "--json")) as History;

/** The command failed with one line on stderr matching `pattern`. */
function refused(r: { code: number; stderr: string; stdout: string }, pattern: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
}

describe("writers around snapshot create", () => {
  it("calls executable and socket writers in name order, and back in reverse", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-first", log, 'if [ "$1" = identify ]; then echo path=/data/first; fi');
    await socketWriter(v.store, "20-middle", log);
    execWriter(v.store, "30-last", log);

    const gmt = (await ok("snapshot", "create", v.mnt)).trim();
    // Identify goes to every writer at once (a socket writer answers it from its registration).
    const [first, second, ...rest] = lines(log);
    expect([first, second].sort()).toEqual(["10-first identify -", "30-last identify -"]);
    const expected = [
      ...["prepare", "freeze"].flatMap((e) =>
        ["10-first", "20-middle", "30-last"].map((w) => `${w} ${e} -`),
      ),
      ...["thaw", "post-snapshot"].flatMap((e) =>
        ["30-last", "20-middle", "10-first"].map((w) => `${w} ${e} ${gmt}`),
      ),
    ];
    expect(rest).toEqual(expected);

    const [row] = await list(v.mnt);
    expect(row?.gmt).toBe(gmt);
    const h = await history(v.mnt);
    expect(h.records).toHaveLength(1);
    const rec = h.records[0]!;
    expect(rec).toMatchObject({ result: "ok", snapshot: { gmt }, setId: row?.setId });
    expect(rec.holdMs).toBeGreaterThanOrEqual(0);
    expect(rec.writers.map((w) => [w.name, w.kind])).toEqual([
      ["10-first", "exec"],
      ["20-middle", "socket"],
      ["30-last", "exec"],
    ]);
    expect(rec.writers[0]?.paths).toEqual(["/data/first"]);
    expect(rec.events.filter((e) => e.event === "freeze").every((e) => e.ok)).toBe(true);

    const listed = JSON.parse(await ok("writers", "list", v.mnt, "--json")) as WriterListing;
    expect(listed.writers.map((w) => [w.name, w.last?.event, w.last?.ok])).toEqual([
      ["10-first", "post-snapshot", true],
      ["20-middle", "post-snapshot", true],
      ["30-last", "post-snapshot", true],
    ]);
    // Unmounted, the history still tells each executable writer's last answer.
    await ok("unmount", v.mnt);
    const offline = JSON.parse(await ok("writers", "list", v.store, "--json")) as WriterListing;
    expect(offline.writers.map((w) => [w.name, w.last?.event, w.last?.ok])).toEqual([
      ["10-first", "post-snapshot", true],
      ["30-last", "post-snapshot", true],
    ]);
  });

  it("a veto in prepare aborts: no snapshot, the writer and its reason named", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-ok", log);
    execWriter(
      v.store,
      "20-db",
      log,
      'if [ "$1" = prepare ]; then echo "noise" >&2; echo "database busy" >&2; exit 3; fi',
    );
    writeFileSync(join(v.store, "writers.d", "30-broken"), "#!/bin/bash\n"); // not executable
    refused(
      await shadowfs("snapshot", "create", v.mnt),
      /writer "20-db" on .* vetoed prepare: database busy/,
    );
    expect(await list(v.mnt)).toEqual([]);
    expect(lines(log).filter((l) => /freeze|thaw/.test(l))).toEqual([]);
    const h = await history(v.mnt);
    expect(h.records.map((r) => [r.result, r.snapshot])).toEqual([["failed", null]]);
    expect(h.records[0]?.reason).toMatch(/database busy/);
    const listed = JSON.parse(await ok("writers", "list", v.mnt, "--json")) as WriterListing;
    expect(listed.problems).toEqual([{ entry: "30-broken", problem: expect.any(String) }]);
  });

  it("a failure in post-snapshot deletes the snapshot", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-ok", log);
    const app = await socketWriter(
      v.store,
      "20-app",
      log,
      "post-snapshot=fail:writes were not held",
    );
    refused(
      await shadowfs("snapshot", "create", v.mnt, "--name", "n"),
      /writer "20-app" .*post-snapshot: writes were not held/,
    );
    expect(await list(v.mnt)).toEqual([]);
    const [rec] = (await history(v.mnt)).records;
    // Thawed and asked after the commit (every writer is), then the snapshot was deleted again.
    expect(lines(log).slice(-4)).toEqual([
      `20-app thaw ${rec?.discarded?.gmt}`,
      `10-ok thaw ${rec?.discarded?.gmt}`,
      `20-app post-snapshot ${rec?.discarded?.gmt}`,
      `10-ok post-snapshot ${rec?.discarded?.gmt}`,
    ]);
    expect(rec?.discarded?.gmt).toMatch(/^@GMT-/);
    // The name was not taken by the deleted snapshot.
    await app.stop();
    expect((await ok("snapshot", "create", v.mnt, "--name", "n")).trim()).toMatch(/^@GMT-/);
  });

  it("a writer that sleeps past the freeze limit is named; every writer is thawed", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-ok", log);
    execWriter(v.store, "20-slow", log, 'if [ "$1" = freeze ]; then sleep 60; fi');
    refused(
      await shadowfs("snapshot", "create", v.mnt, "--freeze-limit", "1.5"),
      /20-slow.*freeze.*1500 ms/,
    );
    expect(await list(v.mnt)).toEqual([]);
    const thawed = lines(log).filter((l) => l.includes(" thaw "));
    expect(thawed).toEqual(["20-slow thaw -", "10-ok thaw -"]);
    // Production takes changes again, and the next snapshot works.
    writeFileSync(join(v.mnt, "after"), "x");
    execWriter(v.store, "20-slow", log);
    expect((await ok("snapshot", "create", v.mnt)).trim()).toMatch(/^@GMT-/);
  });

  it("a socket writer killed with SIGKILL mid-freeze fails the snapshot; the rest thaw", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-ok", log);
    const w = await socketWriter(v.store, "20-app", log, "freeze=hang");
    const create = shadowfs("snapshot", "create", v.mnt);
    await until("the writer is frozen", () => lines(log).includes("20-app freeze -"));
    await w.stop("SIGKILL");
    refused(await create, /writer "20-app" .*freeze: connection dropped/);
    expect(await list(v.mnt)).toEqual([]);
    expect(lines(log)).toContain("10-ok thaw -");
    writeFileSync(join(v.mnt, "after"), "x");
    // The dead writer is no longer registered.
    expect((await ok("snapshot", "create", v.mnt)).trim()).toMatch(/^@GMT-/);
  });

  it("the daemon stopped with SIGTERM mid-freeze thaws its writers and keeps no snapshot", async () => {
    const v = await volume();
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-ok", log);
    execWriter(v.store, "20-slow", log, 'if [ "$1" = freeze ]; then sleep 60; fi');
    const create = shadowfs("snapshot", "create", v.mnt);
    await until("the slow writer is freezing", () => lines(log).includes("20-slow freeze -"));
    const pid = lockPid(v.store)!;
    process.kill(pid, "SIGTERM");
    refused(await create, /writer "20-slow" .*freeze: .*\(the daemon is stopping\)/);
    await until("the daemon has stopped", async () => (await mountsUnder(v.mnt)).length === 0);
    expect(lines(log).filter((l) => l.includes(" thaw "))).toEqual([
      "20-slow thaw -",
      "10-ok thaw -",
    ]);
    expect(await list(v.store)).toEqual([]);
    const [rec] = (await history(v.store)).records;
    expect(rec?.result).toBe("failed");
  });
});

describe("snapshot sets", () => {
  it("takes one snapshot of each volume with one run; the set id is in both lists", async () => {
    const v = await volume();
    const w = await secondVolume(v);
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-a", log);
    execWriter(w.store, "10-b", log);
    writeFileSync(join(v.mnt, "f"), "one");
    writeFileSync(join(w.mnt, "f"), "two");
    const out = JSON.parse(
      await ok("snapshot", "create", "--set", v.mnt, w.mnt, "--name", "both", "--json"),
    ) as { setId: string; snapshots: Array<SnapshotRow & { volume: string }> };
    expect(out.snapshots.map((r) => [r.volume, r.name, r.setId])).toEqual([
      [v.store, "both", out.setId],
      [w.store, "both", out.setId],
    ]);
    expect((await list(v.mnt))[0]?.setId).toBe(out.setId);
    expect((await list(w.mnt))[0]?.setId).toBe(out.setId);
    // Both writers froze before either volume was held, and thawed after.
    const events = lines(log).map((l) => l.split(" ").slice(0, 2).join(" "));
    const last = (e: string) => Math.max(events.indexOf(`10-a ${e}`), events.indexOf(`10-b ${e}`));
    const first = (e: string) => Math.min(events.indexOf(`10-a ${e}`), events.indexOf(`10-b ${e}`));
    expect(last("freeze")).toBeLessThan(first("thaw"));
    expect(readFileSync(join(w.mnt, ".snapshots", "both", "f"), "utf8")).toBe("two");
  });

  it("a veto on one volume leaves neither with a snapshot", async () => {
    const v = await volume();
    const w = await secondVolume(v);
    const log = join(v.dir, "events.log");
    execWriter(v.store, "10-a", log);
    execWriter(w.store, "10-b", log, 'if [ "$1" = prepare ]; then echo "not now" >&2; exit 1; fi');
    refused(await shadowfs("snapshot", "create", "--set", v.mnt, w.mnt), /10-b.*not now/);
    expect(await list(v.mnt)).toEqual([]);
    expect(await list(w.mnt)).toEqual([]);
    expect((await history(v.mnt)).records[0]?.result).toBe("failed");
    expect((await history(w.mnt)).records[0]?.result).toBe("failed");
    refused(await shadowfs("snapshot", "create", v.mnt, w.mnt), /--set/);
  });
});
