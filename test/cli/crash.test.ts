// The daemon killed while processes write into the mount: the next mount recovers, snapshots
// read exactly as they did, fsync'd data survives and fsck is clean. Also a clean stop on
// SIGTERM, and snapshots taken under a running writer.

import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { CheckReport, SnapshotRow } from "../../src/daemon/index.js";
import {
  type Background,
  background,
  exists,
  lockPid,
  mountsUnder,
  ok,
  run,
  running,
  scratchEachTest,
  sh,
  shadowfs,
  until,
} from "../helpers/mounted.js";
import { int, seeds, withSeed } from "../helpers/random.js";

const SIZE = "256M";
const KILLS = 3;

const { fresh, mount, hold } = scratchEachTest({ checkAll: true });

const q = (path: string) => `'${path.replace(/'/g, "'\\''")}'`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Writes files into `mnt/w` until it fails: each is copied from a source in `src`, fsync'd
 * together with its directory, then announced as `done N`; between files it overwrites part of
 * a file in `mnt/base` (not synced), so that snapshots have originals to preserve.
 */
function writer(mnt: string, src: string, first: number, seed: number): Background {
  return background(`
    set -e
    RANDOM=${seed % 32768}
    mkdir -p ${q(join(mnt, "w"))}
    i=${first}
    while :; do
      i=$((i + 1))
      head -c $(( (RANDOM % 8 + 1) * 16384 + RANDOM % 4096 )) /dev/urandom > ${q(src)}/w$i
      dd if=${q(src)}/w$i of=${q(join(mnt, "w"))}/w$i bs=64K conv=fsync status=none
      sync ${q(join(mnt, "w"))}
      echo "done $i"
      dd if=/dev/urandom of=${q(join(mnt, "base"))}/f$((RANDOM % 8)) bs=4K count=3 \\
        seek=$((RANDOM % 32)) conv=notrunc status=none
    done`);
}

const doneFiles = (out: string) =>
  out
    .split("\n")
    .filter((l) => l.startsWith("done "))
    .map((l) => Number(l.slice(5)));

describe("the daemon killed with SIGKILL", () => {
  for (const seed of seeds(1)) {
    it(`recovers on the next mount; snapshots and fsync'd data survive (seed ${seed})`, () =>
      withSeed(seed, async (rand) => {
        const { store, mnt, dir } = await fresh();
        const src = join(dir, "src");
        mkdirSync(src);
        await ok("init", store, "--size", SIZE, "--chunk-size", "16K");
        await mount(store, mnt);
        mkdirSync(join(mnt, "base"));
        for (let i = 0; i < 8; i++)
          run(
            `head -c ${int(rand, 1, 200) * 1024} /dev/urandom > ${q(join(mnt, "base", `f${i}`))}`,
          );

        const taken: Array<{ gmt: string; ref: string }> = [];
        const synced: number[] = [];
        for (let round = 0; round < KILLS; round++) {
          // A snapshot, and a copy of production made at the same time to compare it with.
          const ref = join(dir, `ref${round}`);
          run(`cp -a ${q(mnt)}/. ${q(ref)}`);
          const gmt = (await ok("snapshot", "create", mnt)).trim();
          taken.push({ gmt, ref });

          const w = hold(writer(mnt, src, round * 1000, int(rand, 0, 2 ** 30)));
          const files = int(rand, 1, 4);
          await until(`${files} files are written`, () => doneFiles(w.stdout).length >= files);
          await sleep(int(rand, 0, 150));
          const pid = lockPid(store)!;
          process.kill(pid, "SIGKILL");
          await w.exited;
          synced.push(...doneFiles(w.stdout));

          // The mount is left behind, dead; the next mount detaches it and recovers.
          expect(await mountsUnder(dir)).toEqual([mnt]);
          expect(() => readdirSync(mnt)).toThrow(/ENOTCONN/);
          await until(`daemon ${pid} is gone`, () => !exists(pid));
          const out = (await mount(store, mnt)).trimEnd().split("\n");
          expect(out).toHaveLength(3);
          expect(out[0]).toBe(`detached the stale mount of ${store} on ${mnt}`);
          expect(out[1]).toMatch(/^recovered after an unclean shutdown\b/);
          expect(out[2]).toBe(`mounted ${store} on ${mnt} (daemon ${lockPid(store)})`);
          expect(await mountsUnder(dir)).toEqual([mnt]);

          for (const i of synced) {
            const file = join(mnt, "w", `w${i}`);
            expect(readFileSync(file).equals(readFileSync(join(src, `w${i}`))), file).toBe(true);
          }
          for (const t of taken) {
            const d = sh(`diff -r ${q(t.ref)} ${q(join(mnt, ".snapshots", t.gmt))}`);
            expect(d.stdout + d.stderr, `snapshot ${t.gmt}`).toBe("");
            expect(d.code).toBe(0);
          }
        }
        expect((await ok("snapshot", "list", mnt)).includes(taken.at(-1)!.gmt)).toBe(true);

        expect(await ok("unmount", mnt)).toBe(`unmounted ${mnt}\n`);
        expect(await mountsUnder(dir)).toEqual([]);
        const check = JSON.parse(await ok("fsck", store, "--json")) as CheckReport;
        expect(check.store?.problems).toEqual([]);
        expect(check.fs.problems).toEqual([]);
        expect(check.ok).toBe(true);
        for (const t of taken) {
          const r = await shadowfs("fsck", store, "--snapshot", t.gmt);
          expect(r.stdout, r.stderr).toMatch(new RegExp(`^${t.gmt}: clean \\(`, "m"));
          expect(r.code).toBe(0);
        }
      }));
  }

  it("commands work as soon as the daemon is dead, before it is reaped", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    const pid = lockPid(store)!;
    process.kill(pid, "SIGKILL");
    await until(`daemon ${pid} is dead`, () => !running(pid));
    const st = await shadowfs("status", store, "--json");
    expect(st.stderr).toBe("");
    expect(JSON.parse(st.stdout).mountpoint).toBeNull();
    const m = await shadowfs("mount", store, mnt);
    expect(m.stderr).toBe("");
    expect(m.stdout).toMatch(/recovered after an unclean shutdown/);
  });
});

describe("the daemon stopped with SIGTERM", () => {
  it("unmounts cleanly: no mount left, lock released, no recovery on the next mount", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    writeFileSync(join(mnt, "kept"), "written before the signal\n");
    const gmt = (await ok("snapshot", "create", mnt)).trim();
    writeFileSync(join(mnt, "later"), "after the snapshot\n");
    const pid = lockPid(store)!;
    process.kill(pid, "SIGTERM");
    await until(`daemon ${pid} has stopped`, () => !running(pid));
    expect(await mountsUnder(dir)).toEqual([]);
    expect(readdirSync(store)).not.toContain("lock");
    expect(readdirSync(store)).not.toContain("control.sock");

    const check = JSON.parse(await ok("fsck", store, "--json")) as CheckReport;
    expect(check.ok).toBe(true);
    expect(check.store?.notes).toEqual([]);

    expect(await mount(store, mnt)).toBe(`mounted ${store} on ${mnt} (daemon ${lockPid(store)})\n`);
    expect(readFileSync(join(mnt, "kept"), "utf8")).toBe("written before the signal\n");
    expect(readFileSync(join(mnt, "later"), "utf8")).toBe("after the snapshot\n");
    expect(readdirSync(join(mnt, ".snapshots", gmt))).toEqual(["kept"]);
  });
});

describe("a snapshot under a running writer", () => {
  const LINE = 32;

  it("holds a prefix of the file that ends at a line boundary", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    const file = join(mnt, "log");
    // One write per fixed-length line, appended, until it is killed.
    const script =
      `const fs = require("fs"); const fd = fs.openSync(process.argv[1], "a");` +
      `process.stdout.write("ready\\n");` +
      `for (let i = 0; ; i++) fs.writeSync(fd, String(i).padStart(${LINE - 1}, "0") + "\\n");`;
    const w = hold(background(`exec ${q(process.execPath)} -e ${q(script)} ${q(file)}`));
    await until(
      "the writer is writing",
      () => existsSync(file) && statSync(file).size >= 10 * LINE,
    );

    const snaps: Array<{ row: SnapshotRow; low: number; high: number }> = [];
    for (let i = 0; i < 2; i++) {
      const low = statSync(file).size;
      const row = JSON.parse(await ok("snapshot", "create", mnt, "--json")) as SnapshotRow;
      const high = statSync(file).size;
      snaps.push({ row, low, high });
    }
    expect(running(w.pid)).toBe(true);
    await w.stop();
    const final = readFileSync(file);
    expect(final.length % LINE).toBe(0);
    const lines = final.toString("latin1").split("\n").slice(0, -1);
    expect(lines.every((l, i) => Number(l) === i)).toBe(true);

    let previous = 0;
    for (const { row, low, high } of snaps) {
      const copy = readFileSync(join(mnt, ".snapshots", row.gmt, "log"));
      expect(copy.length % LINE).toBe(0);
      // Every write finished before the snapshot was asked for is in it; none begun after.
      expect(copy.length).toBeGreaterThanOrEqual(low);
      expect(copy.length).toBeLessThanOrEqual(high);
      expect(copy.length).toBeGreaterThanOrEqual(previous);
      expect(final.subarray(0, copy.length).equals(copy)).toBe(true);
      previous = copy.length;
    }
  });
});
