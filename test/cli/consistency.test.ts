// Application-consistent snapshots under load: a workload keeps a cross-file invariant (and a
// SQLite database) under a lock, and a writer takes that lock from freeze to thaw; every
// snapshot taken meanwhile holds the invariant.

import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type Background,
  background,
  ok,
  run,
  type Scratch,
  scratchEachTest,
  until,
} from "../helpers/mounted.js";

const TOTAL = 1_000_000;

const { fresh, hold } = scratchEachTest({
  // A writer still holding the lock lets go once told to.
  // A writer still holding the lock lets go once told to.
  beforeCleanup: (done) => {
    if (existsSync(join(done.dir, "state"))) writeFileSync(join(done.dir, "state", "release"), "");
  },
  checkEach: true,
});

/**
 * A mounted volume with a writer that, at freeze, holds `lock` (after running `atFreeze` under
 * it) until thaw: the workload's updates, each made under the same lock, cannot straddle a commit.
 */
async function volumeWithLockWriter(atFreeze = ""): Promise<Scratch & { lock: string }> {
  const s = await fresh();
  await ok("init", s.store, "--size", "512M");
  await ok("mount", s.store, s.mnt);
  const state = join(s.dir, "state");
  mkdirSync(state);
  const lock = join(s.dir, "lock");
  mkdirSync(join(s.store, "writers.d"));
  const writer = join(s.store, "writers.d", "50-lock");
  writeFileSync(
    writer,
    `#!/bin/bash
D=${state}
case "$1" in
freeze)
  rm -f $D/held $D/release
  ( exec 9>${lock}; flock 9; ${atFreeze}
    touch $D/held
    until [ -e $D/release ]; do sleep 0.005; done ) </dev/null >/dev/null 2>&1 &
  echo $! > $D/holder
  until [ -e $D/held ]; do sleep 0.005; done ;;
thaw)
  touch $D/release
  [ -e $D/holder ] && while kill -0 $(cat $D/holder) 2>/dev/null; do sleep 0.005; done
  rm -f $D/holder ;;
esac
exit 0
`,
  );
  chmodSync(writer, 0o755);
  return { ...s, lock };
}

function workload(script: string): Background {
  return hold(background(script));
}

/** Takes `n` snapshots one after another; returns their @GMT names. */
async function snapshots(mnt: string, n: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < n; i++) names.push((await ok("snapshot", "create", mnt)).trim());
  return names;
}

describe("snapshots under load", () => {
  it("50 snapshots of two files updated together all keep their sum", async () => {
    const v = await volumeWithLockWriter();
    const a = join(v.mnt, "a");
    const b = join(v.mnt, "b");
    const w = workload(
      `i=0; while :; do i=$((i+1)); flock ${v.lock} bash -c ` +
        `'echo ${"$"}1 | dd of=${a} conv=fsync status=none; ` +
        `echo $((${TOTAL} - ${"$"}1)) | dd of=${b} conv=fsync status=none' _ $i; done`,
    );
    await until("the workload has started", () => existsSync(b));
    const names = await snapshots(v.mnt, 50);
    await w.stop();
    const counters = names.map((g) => {
      const dir = join(v.mnt, ".snapshots", g);
      const x = Number(readFileSync(join(dir, "a"), "utf8"));
      const y = Number(readFileSync(join(dir, "b"), "utf8"));
      expect(x + y, `${g}: a=${x} b=${y}`).toBe(TOTAL);
      return x;
    });
    // The workload really ran between snapshots.
    expect(new Set(counters).size).toBeGreaterThan(10);
  }, 300_000);

  it("a SQLite database in every snapshot passes integrity_check with both tables equal", async () => {
    // The writer checkpoints the write-ahead log into the database file under the lock, so
    // the file alone (as a backup copies it) holds every committed transaction.
    const db = "db.sqlite";
    const v = await volumeWithLockWriter(
      `sqlite3 "$SHADOWFS_MOUNTPOINT/${db}" "PRAGMA wal_checkpoint(TRUNCATE);"`,
    );
    const file = join(v.mnt, db);
    run(
      `sqlite3 ${file} "PRAGMA journal_mode=WAL; CREATE TABLE a(n); CREATE TABLE b(n);" >/dev/null`,
    );
    const w = workload(
      `while :; do flock ${v.lock} sqlite3 ${file} ` +
        `"BEGIN; INSERT INTO a VALUES(1); INSERT INTO b VALUES(1); COMMIT;"; done`,
    );
    await until("rows are being written", () => {
      try {
        return Number(run(`sqlite3 ${file} "SELECT count(*) FROM a"`)) > 0;
      } catch {
        return false;
      }
    });
    const names = await snapshots(v.mnt, 10);
    await w.stop();
    const counts = names.map((g) => {
      // A backup's copy of the database file, opened as the application would open it.
      const copy = join(v.dir, `copy-${g}`);
      mkdirSync(copy);
      copyFileSync(join(v.mnt, ".snapshots", g, db), join(copy, db));
      expect(readdirSync(join(v.mnt, ".snapshots", g))).toContain(db);
      const out = run(
        `sqlite3 ${join(copy, db)} "PRAGMA integrity_check; ` +
          `SELECT (SELECT count(*) FROM a) || ' ' || (SELECT count(*) FROM b);"`,
      ).split("\n");
      expect(out[0], g).toBe("ok");
      const [x, y] = (out[1] ?? "").split(" ").map(Number);
      expect(x, `${g}: a=${x} b=${y}`).toBe(y);
      return x;
    });
    expect(counts.at(-1)).toBeGreaterThan(counts[0]!);
  }, 300_000);
});
