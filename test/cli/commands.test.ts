// Every `shadowfs` command through the real binary, on a store that is mounted and on one that is
// not: what it prints (--json field by field), what it does, and how it refuses bad input.

import { createHash } from "node:crypto";
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { crc } from "../../src/cow/format.js";
import type {
  CheckReport,
  SnapshotRow,
  StorageReport,
  StoreStatus,
} from "../../src/daemon/index.js";
import { gmtName } from "../../src/mount/names.js";
import {
  background,
  lockPid,
  mountsUnder,
  ok,
  type Run,
  scratchEachTest,
  shadowfs,
  until,
} from "../helpers/mounted.js";

const GMT = /^@GMT-\d{4}\.\d\d\.\d\d-\d\d\.\d\d\.\d\d$/;
const MiB = 2 ** 20;
const SIZE = "256M";

interface MountedStatus extends StoreStatus {
  pid: number;
  openFiles: number;
  exposed: Array<{ mountpoint: string; id: number }>;
}

interface Reverted {
  reverted: SnapshotRow;
  saved: SnapshotRow | null;
  discarded: SnapshotRow[];
}

const { fresh, mount, hold } = scratchEachTest({ checkAll: true });

const parse = <T>(text: string): T => JSON.parse(text) as T;
const list = async (target: string) =>
  parse<SnapshotRow[]>(await ok("snapshot", "list", target, "--json"));
const status = async <T = StoreStatus>(target: string) =>
  parse<T>(await ok("status", target, "--json"));

/** What a refused command must look like: one line `shadowfs: …`, a non-zero exit, no output. */
function refused(r: Run, pattern?: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  if (pattern) expect(r.stderr).toMatch(pattern);
  expect(r.stdout).toBe("");
}

/** Every file of a store, by size and contents (large images by size and mtime). */
function fingerprint(store: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name !== "daemon.log") {
        const st = statSync(p);
        const what =
          st.size > MiB
            ? `mtime ${st.mtimeMs}`
            : createHash("sha256").update(readFileSync(p)).digest("hex");
        out.push(`${relative(store, p)} ${st.size} ${what}`);
      }
    }
  };
  walk(store);
  return out.sort();
}

/** What `snapshot list` and `status` say, and for a store that is not mounted its files. */
async function state(target: string, store?: string) {
  return {
    list: await list(target),
    status: await status(target),
    files: store === undefined ? [] : fingerprint(store),
  };
}

function checkRow(row: SnapshotRow, name: string | null): void {
  expect(Object.keys(row).sort()).toEqual([
    "createdAt",
    "diffAreaBytes",
    "exclusiveBytes",
    "gmt",
    "guid",
    "holds",
    "id",
    "name",
    "setId",
    "timeline",
  ]);
  expect(row.id).toBeGreaterThan(0);
  expect(row.gmt).toMatch(GMT);
  expect(row.gmt).toBe(gmtName(Date.parse(row.createdAt)));
  expect(new Date(row.createdAt).toISOString()).toBe(row.createdAt);
  expect(row.name).toBe(name);
  expect(row.diffAreaBytes).toBeGreaterThanOrEqual(0);
}

const read = (path: string) => readFileSync(path, "utf8");

describe.each([
  { mounted: false, how: "not mounted" },
  { mounted: true, how: "mounted" },
])("commands on a store that is $how", ({ mounted }) => {
  it("init, status, snapshot create / list / delete, storage and fsck", async () => {
    const { store, mnt } = await fresh();
    const created = await ok(
      "init",
      store,
      "--size",
      SIZE,
      "--chunk-size",
      "16K",
      "--shadow-storage-limit",
      "8M",
      "--on-full",
      "fail-writes",
    );
    expect(created).toBe(`created ${store} (256M)\n`);
    const target = mounted ? mnt : store;
    if (mounted) {
      const out = await mount(store, mnt);
      expect(out).toBe(`mounted ${store} on ${mnt} (daemon ${lockPid(store)})\n`);
      writeFileSync(join(mnt, "a.txt"), "one\n");
    }

    const st = await status<MountedStatus>(target);
    expect(st.store).toBe(store);
    expect(st.volumeBytes).toBe(256 * MiB);
    expect(st.chunkBytes).toBe(16 * 1024);
    expect(st.blockBytes).toBeGreaterThan(0);
    expect(st.volumeBytes % st.blockBytes).toBe(0);
    expect(st.usedBytes).toBeGreaterThan(0);
    expect(st.usedBytes + st.freeBytes).toBe(st.volumeBytes);
    expect(st.files).toBe(mounted ? 2 : 1);
    expect(st.snapshots).toBe(0);
    expect(st.shadowStorageUsedBytes).toBe(0);
    expect(st.shadowStorageLimitBytes).toBe(8 * MiB);
    expect(st.onFull).toBe("fail-writes");
    if (mounted) {
      expect(st.mountpoint).toBe(mnt);
      expect(st.pid).toBe(lockPid(store));
      expect(st.openFiles).toBe(0);
      expect(st.exposed).toEqual([]);
      // The store directory names the same volume as its mount point.
      expect(await status(store)).toEqual(st);
    } else {
      expect(st.mountpoint).toBeNull();
      expect(Object.keys(st)).not.toContain("pid");
    }
    const text = (await ok("status", target)).split("\n");
    expect(text[0]).toBe(`store:        ${store}`);
    expect(text[1]).toBe(`mounted on:   ${mounted ? mnt : "not mounted"}`);
    expect(text[2]).toMatch(
      new RegExp(`^volume: +256M \\(.+ used, .+ free, ${mounted ? 2 : 1} files\\)$`),
    );
    expect(text[3]).toBe("snapshots:    0");
    expect(text[4]).toBe("shadow space: 0B used of 8M (fail-writes when full)");

    const first = parse<SnapshotRow>(
      await ok("snapshot", "create", target, "--name", "first", "--json"),
    );
    checkRow(first, "first");
    expect(first.diffAreaBytes).toBe(0);
    if (mounted) {
      expect(read(join(mnt, ".snapshots", first.gmt, "a.txt"))).toBe("one\n");
      expect(read(join(mnt, ".snapshots", "first", "a.txt"))).toBe("one\n");
      writeFileSync(join(mnt, "a.txt"), "two\n");
      expect(read(join(mnt, ".snapshots", first.gmt, "a.txt"))).toBe("one\n");
    }
    const plain = await ok("snapshot", "create", target);
    expect(plain).toMatch(/^@GMT-[0-9.-]+\n$/);
    const second = plain.trim();
    expect(second).toMatch(GMT);
    expect(second).not.toBe(first.gmt);
    if (mounted) expect(read(join(mnt, ".snapshots", second, "a.txt"))).toBe("two\n");

    const rows = await list(target);
    expect(rows).toHaveLength(2);
    checkRow(rows[0]!, "first");
    checkRow(rows[1]!, null);
    expect(rows[0]).toMatchObject({ id: first.id, gmt: first.gmt, createdAt: first.createdAt });
    expect(rows[1]!.gmt).toBe(second);
    expect(rows[1]!.id).toBeGreaterThan(first.id);
    const table = (await ok("snapshot", "list", target)).trimEnd().split("\n");
    expect(table).toHaveLength(3);
    expect(table[0]).toMatch(/^NAME +ALIAS +CREATED +BY +DIFF AREA +EXCLUSIVE +HOLDS +SET$/);
    expect(table[1]).toMatch(
      new RegExp(
        `^${first.gmt} +first +${first.createdAt} +hand +\\S+ +\\S+ +- +${first.setId?.slice(0, 8)}$`,
      ),
    );
    expect(table[2]).toMatch(
      new RegExp(
        `^${second} +- +${rows[1]!.createdAt} +hand +\\S+ +\\S+ +- +${rows[1]!.setId?.slice(0, 8)}$`,
      ),
    );

    const storage = parse<StorageReport>(await ok("storage", target, "--json"));
    expect(storage.limitBytes).toBe(8 * MiB);
    expect(storage.onFull).toBe("fail-writes");
    expect(storage.snapshots).toEqual(
      rows.map(({ gmt, name, diffAreaBytes, exclusiveBytes, holds, timeline }) => ({
        gmt,
        name,
        diffAreaBytes,
        exclusiveBytes,
        holds,
        timeline,
      })),
    );
    expect(storage.usedBytes).toBe(rows.reduce((n, r) => n + r.diffAreaBytes, 0));
    expect(storage.evictions).toEqual([]);
    const storageText = (await ok("storage", target)).trimEnd().split("\n");
    expect(storageText[0]).toMatch(/^used \S+ of 8M; when full: fail-writes$/);
    expect(storageText[1]).toMatch(/^SNAPSHOT +ALIAS +DIFF AREA +EXCLUSIVE +HOLDS$/);
    expect(storageText.slice(2).map((l) => l.split(/ +/).slice(0, 2))).toEqual([
      [first.gmt, "first"],
      [second, "-"],
    ]);
    const after = await status(target);
    expect(after.snapshots).toBe(2);
    expect(after.shadowStorageUsedBytes).toBe(storage.usedBytes);

    const check = parse<CheckReport>(await ok("fsck", target, "--json"));
    expect(check.ok).toBe(true);
    expect(check.checked).toBe("production");
    expect(check.store?.ok).toBe(true);
    expect(check.store?.problems).toEqual([]);
    expect(check.fs.ok).toBe(true);
    expect(check.fs.problems).toEqual([]);
    expect(check.fs.directories).toBe(1);
    expect(check.fs.files).toBe(mounted ? 1 : 0);
    expect((await ok("fsck", target)).trimEnd().split("\n").at(-1)).toBe(
      `production: clean (1 directories, ${mounted ? 1 : 0} files)`,
    );
    for (const ref of ["first", first.gmt, String(first.id)]) {
      const snap = parse<CheckReport>(await ok("fsck", target, "--snapshot", ref, "--json"));
      expect(snap).toMatchObject({ ok: true, store: null, checked: first.gmt });
      expect(snap.fs).toMatchObject({ ok: true, problems: [], directories: 1 });
      expect(snap.fs.files).toBe(mounted ? 1 : 0);
    }

    expect(await ok("snapshot", "delete", target, "first")).toBe(`deleted ${first.gmt} (first)\n`);
    expect((await list(target)).map((r) => r.gmt)).toEqual([second]);
    expect(await ok("snapshot", "delete", target, String(rows[1]!.id))).toBe(`deleted ${second}\n`);
    expect(await list(target)).toEqual([]);
    expect(await ok("snapshot", "list", target)).toBe("no snapshots\n");
    expect((await status(target)).snapshots).toBe(0);
    if (mounted) {
      expect(readdirSync(join(mnt, ".snapshots"))).toEqual([]);
      expect(existsSync(join(mnt, ".snapshots", first.gmt))).toBe(false);
      expect(existsSync(join(mnt, ".snapshots", "first"))).toBe(false);
      expect(read(join(mnt, "a.txt"))).toBe("two\n");
    }
  });

  it("snapshot revert: keeps production as a snapshot, or discards newer ones", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    writeFileSync(join(mnt, "a.txt"), "v1\n");
    writeFileSync(join(mnt, "b.txt"), "b\n");
    const one = parse<SnapshotRow>(await ok("snapshot", "create", mnt, "--name", "one", "--json"));
    writeFileSync(join(mnt, "a.txt"), "v2 longer\n");
    rmSync(join(mnt, "b.txt"));
    writeFileSync(join(mnt, "c.txt"), "c\n");
    const target = mounted ? mnt : store;
    if (!mounted) await ok("unmount", mnt);

    const r = parse<Reverted>(await ok("snapshot", "revert", target, "one", "--json"));
    expect(Object.keys(r).sort()).toEqual(["discarded", "reverted", "saved"]);
    expect(r.reverted).toMatchObject({ id: one.id, gmt: one.gmt, name: "one" });
    expect(r.saved).not.toBeNull();
    checkRow(r.saved!, r.saved!.name);
    expect(r.saved!.name).toMatch(/^before-revert-/);
    expect(r.saved!.id).toBeGreaterThan(one.id);
    expect(r.saved!.gmt).not.toBe(one.gmt);
    expect(r.discarded).toEqual([]);
    expect((await list(target)).map((x) => x.gmt)).toEqual([one.gmt, r.saved!.gmt]);

    if (!mounted) await mount(store, mnt);
    expect(read(join(mnt, "a.txt"))).toBe("v1\n");
    expect(read(join(mnt, "b.txt"))).toBe("b\n");
    expect(existsSync(join(mnt, "c.txt"))).toBe(false);
    const saved = join(mnt, ".snapshots", r.saved!.gmt);
    expect(readdirSync(saved).sort()).toEqual(["a.txt", "c.txt"]);
    expect(read(join(saved, "a.txt"))).toBe("v2 longer\n");
    expect(read(join(mnt, ".snapshots", r.saved!.name!, "c.txt"))).toBe("c\n");
    expect(read(join(mnt, ".snapshots", "one", "a.txt"))).toBe("v1\n");

    writeFileSync(join(mnt, "a.txt"), "v3\n");
    if (!mounted) await ok("unmount", mnt);
    const text = await ok("snapshot", "revert", target, one.gmt, "--discard-newer");
    expect(text).toBe(`production is now ${one.gmt}\ndeleted newer snapshot ${r.saved!.gmt}\n`);
    expect((await list(target)).map((x) => x.gmt)).toEqual([one.gmt]);
    if (!mounted) await mount(store, mnt);
    expect(read(join(mnt, "a.txt"))).toBe("v1\n");
    expect(readdirSync(join(mnt, ".snapshots"))).toEqual([one.gmt]);
    expect(parse<CheckReport>(await ok("fsck", mnt, "--json")).ok).toBe(true);
  });

  it("a snapshot that does not exist is refused by every command that takes one", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    if (mounted) await mount(store, mnt);
    const target = mounted ? mnt : store;
    await ok("snapshot", "create", target, "--name", "real");
    // Commands that change the store open it for writing: list and status must not change.
    const before = await state(target);
    const ex = join(dir, "ex");
    mkdirSync(ex);
    const missing = /no snapshot "(nosuch|@GMT-2000\.01\.01-00\.00\.00|99)"/;
    refused(await shadowfs("snapshot", "delete", target, "nosuch"), missing);
    refused(await shadowfs("snapshot", "delete", target, "99"), missing);
    refused(await shadowfs("snapshot", "revert", target, "@GMT-2000.01.01-00.00.00"), missing);
    refused(await shadowfs("snapshot", "revert", target, "nosuch", "--force"), missing);
    refused(await shadowfs("fsck", target, "--snapshot", "99"), missing);
    if (mounted) refused(await shadowfs("snapshot", "expose", target, "nosuch", ex), missing);
    // A name that is taken, or that could be mistaken for a @GMT name or an id.
    refused(await shadowfs("snapshot", "create", target, "--name", "real"), /"real" exists/);
    refused(await shadowfs("snapshot", "create", target, "--name", "@GMT-x"), /@GMT/);
    refused(await shadowfs("snapshot", "create", target, "--name", "12"), /number/);
    refused(await shadowfs("snapshot", "create", target, "--name", "a/b"), /\//);
    expect(await state(target)).toEqual(before);
    expect(await mountsUnder(ex)).toEqual([]);
  });
});

describe("snapshots through the mount", () => {
  it("creates in quick succession get distinct @GMT names; aliases resolve under .snapshots", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    mkdirSync(join(mnt, "d"));
    writeFileSync(join(mnt, "d", "f"), "first\n");
    const a = (await ok("snapshot", "create", mnt, "--name", "alpha")).trim();
    const b = (await ok("snapshot", "create", mnt)).trim();
    writeFileSync(join(mnt, "d", "f"), "second\n");
    const c = (await ok("snapshot", "create", mnt, "--name", "gamma")).trim();
    expect(new Set([a, b, c]).size).toBe(3);
    for (const g of [a, b, c]) expect(g).toMatch(GMT);

    expect(readdirSync(mnt)).toEqual(["d"]);
    expect(readdirSync(join(mnt, ".snapshots"))).toEqual([a, b, c]);
    const rows = await list(mnt);
    expect(rows.map((r) => r.gmt)).toEqual([a, b, c]);
    expect(rows.map((r) => r.name)).toEqual(["alpha", null, "gamma"]);
    for (const r of rows.filter((x) => x.name !== null)) {
      const byName = join(mnt, ".snapshots", r.name!);
      const byGmt = join(mnt, ".snapshots", r.gmt);
      expect(readdirSync(byName)).toEqual(readdirSync(byGmt));
      expect(read(join(byName, "d", "f"))).toBe(read(join(byGmt, "d", "f")));
      expect(statSync(join(byName, "d", "f")).ino).toBe(statSync(join(byGmt, "d", "f")).ino);
    }
    expect(read(join(mnt, ".snapshots", "alpha", "d", "f"))).toBe("first\n");
    expect(read(join(mnt, ".snapshots", "gamma", "d", "f"))).toBe("second\n");
    expect(() => writeFileSync(join(mnt, ".snapshots", "alpha", "d", "f"), "x")).toThrow(/EROFS/);
    expect(existsSync(join(mnt, ".snapshots", "nosuch"))).toBe(false);
  });

  it("concurrent creates get distinct @GMT names, and a name is taken only once", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    const made = await Promise.all([1, 2, 3].map(() => shadowfs("snapshot", "create", mnt)));
    for (const r of made) expect(r.code, r.stderr).toBe(0);
    const names = made.map((r) => r.stdout.trim());
    expect(new Set(names).size).toBe(3);
    expect(new Set(readdirSync(join(mnt, ".snapshots"))).size).toBe(3);
    const dup = await Promise.all(
      [1, 2].map(() => shadowfs("snapshot", "create", mnt, "--name", "dup")),
    );
    expect(dup.map((r) => r.code).sort()).toEqual([0, 1]);
    expect((await list(mnt)).filter((r) => r.name === "dup")).toHaveLength(1);
  });

  it("expose and unexpose; an exposed snapshot cannot be deleted", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    writeFileSync(join(mnt, "f"), "then\n");
    const gmt = (await ok("snapshot", "create", mnt, "--name", "e")).trim();
    writeFileSync(join(mnt, "f"), "now\n");
    const ex = join(dir, "ex");
    mkdirSync(ex);

    expect(await ok("snapshot", "expose", mnt, "e", ex)).toBe(`exposed ${gmt} on ${ex}\n`);
    expect(read(join(ex, "f"))).toBe("then\n");
    expect(readdirSync(ex)).toEqual(["f"]);
    const line = read("/proc/mounts")
      .split("\n")
      .find((l) => l.split(" ")[1] === ex);
    expect(line?.split(" ").slice(0, 3)).toEqual([`${store}@${gmt}`, ex, "fuse.shadowfs"]);
    expect(line?.split(" ")[3]?.split(",")).toContain("ro");
    expect(() => writeFileSync(join(ex, "f"), "x")).toThrow(/EROFS/);
    const st = await status<MountedStatus>(mnt);
    const id = (await list(mnt))[0]!.id;
    expect(st.exposed).toEqual([{ mountpoint: ex, id }]);
    // The exposed mount point names the store too.
    expect((await status(ex)).store).toBe(store);

    const before = await state(mnt);
    refused(await shadowfs("snapshot", "delete", mnt, "e"), new RegExp(`exposed at ${ex}`));
    refused(await shadowfs("snapshot", "delete", mnt, gmt), /exposed/);
    refused(await shadowfs("unmount", ex), /unexpose/);
    refused(await shadowfs("snapshot", "expose", mnt, "e", ex), /already a mount point/);
    refused(await shadowfs("snapshot", "revert", mnt, "e", "--force"), /exposed/);
    refused(await shadowfs("snapshot", "unexpose", mnt), /not an exposed snapshot/);
    refused(await shadowfs("snapshot", "unexpose", dir), /neither a shadowfs store/);
    expect(await state(mnt)).toEqual(before);
    expect(read(join(ex, "f"))).toBe("then\n");
    expect(read(join(mnt, "f"))).toBe("now\n");

    expect(await ok("snapshot", "unexpose", ex)).toBe(`unexposed ${ex}\n`);
    expect(await mountsUnder(ex)).toEqual([]);
    expect((await status<MountedStatus>(mnt)).exposed).toEqual([]);
    refused(await shadowfs("snapshot", "unexpose", ex), /neither a shadowfs store/);
    expect(await ok("snapshot", "delete", mnt, "e")).toBe(`deleted ${gmt} (e)\n`);
  });

  it("revert is refused while a file is open in production, and allowed with --force", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    writeFileSync(join(mnt, "f"), "old\n");
    const gmt = (await ok("snapshot", "create", mnt, "--name", "r")).trim();
    writeFileSync(join(mnt, "f"), "new\n");
    const holder = hold(background(`exec 3<'${join(mnt, "f")}'; echo open; exec sleep 60`));
    await until("the file is held open", () => holder.stdout.includes("open"));
    expect((await status<MountedStatus>(mnt)).openFiles).toBe(1);

    const before = await state(mnt);
    refused(await shadowfs("snapshot", "revert", mnt, "r"), /open in production.*--force/);
    refused(await shadowfs("snapshot", "revert", store, "r", "--discard-newer"), /--force/);
    expect(await state(mnt)).toEqual(before);
    expect(read(join(mnt, "f"))).toBe("new\n");

    const r = parse<Reverted>(await ok("snapshot", "revert", mnt, "r", "--force", "--json"));
    expect(r.reverted.gmt).toBe(gmt);
    expect(read(join(mnt, "f"))).toBe("old\n");
    expect(read(join(mnt, ".snapshots", r.saved!.gmt, "f"))).toBe("new\n");
    await holder.stop();
    await until("the open file is released", async () => {
      return (await status<MountedStatus>(mnt)).openFiles === 0;
    });
  });
});

describe("bad input", () => {
  it("a path that is not a store", async () => {
    const { dir } = await fresh();
    const empty = join(dir, "empty");
    mkdirSync(empty);
    const file = join(dir, "file");
    writeFileSync(file, "x");
    const cases: string[][] = [
      ["status", join(dir, "missing")],
      ["snapshot", "list", join(dir, "missing"), "--json"],
      ["snapshot", "create", join(dir, "missing")],
      ["fsck", join(dir, "missing")],
      ["status", empty, "--json"],
      ["storage", empty],
      ["snapshot", "delete", empty, "x"],
      ["status", file],
      ["snapshot", "revert", file, "x"],
    ];
    for (const args of cases)
      refused(await shadowfs(...args), /neither a shadowfs store nor a shadowfs mount point/);
    expect(readdirSync(empty)).toEqual([]);
    expect(existsSync(join(dir, "missing"))).toBe(false);
    expect(read(file)).toBe("x");
  });

  it("bad sizes, chunk sizes and policies for init create no store", async () => {
    const { dir } = await fresh();
    const cases: Array<[string[], RegExp]> = [
      [["--size", "12Q"], /--size "12Q"/],
      [["--size", "-1G"], /--size/],
      [["--size", "0"], /size/],
      [["--chunk-size", "3K"], /chunk size/],
      [["--shadow-storage-limit", "lots"], /--shadow-storage-limit "lots"/],
    ];
    for (const [i, [args, pattern]] of cases.entries()) {
      const store = join(dir, `s${i}`);
      refused(await shadowfs("init", store, "--size", "256M", ...args), pattern);
      expect(existsSync(join(store, "volume"))).toBe(false);
    }
    const r = await shadowfs("init", join(dir, "p"), "--on-full", "bogus");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/bogus/);
    expect(existsSync(join(dir, "p"))).toBe(false);
  });

  it("a refused init leaves no directory behind", async () => {
    const { dir } = await fresh();
    for (const args of [
      ["--size", "12Q"],
      ["--size", "0"],
      ["--chunk-size", "3K"],
    ]) {
      const store = join(dir, "s");
      expect((await shadowfs("init", store, ...args)).code).not.toBe(0);
      expect(existsSync(store)).toBe(false);
    }
  });

  it("usage errors are one line too", async () => {
    const { dir } = await fresh();
    refused(await shadowfs("init", join(dir, "p"), "--on-full", "bogus"), /bogus/);
    refused(await shadowfs("status"), /target/);
    refused(await shadowfs("no-such-command"), /no-such-command/);
  });

  it("init on an existing store changes nothing", async () => {
    const { store } = await fresh();
    await ok("init", store, "--size", SIZE, "--shadow-storage-limit", "4M");
    await ok("snapshot", "create", store, "--name", "keep");
    const before = await state(store, store);
    refused(await shadowfs("init", store), /already holds a shadowfs store/);
    refused(await shadowfs("init", store, "--size", "1G"), /already holds a shadowfs store/);
    expect(await state(store, store)).toEqual(before);
    expect(before.status.shadowStorageLimitBytes).toBe(4 * MiB);
  });

  it("a second mount of a mounted store is refused, naming the process", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    await mount(store, mnt);
    writeFileSync(join(mnt, "f"), "still here\n");
    const pid = lockPid(store)!;
    const other = join(dir, "other");
    mkdirSync(other);
    const before = await state(mnt);
    for (const where of [mnt, other]) {
      const r = await shadowfs("mount", store, where);
      refused(r, new RegExp(`in use by process ${pid}\\b`));
    }
    expect(await mountsUnder(dir)).toEqual([mnt]);
    expect(lockPid(store)).toBe(pid);
    expect(await state(mnt)).toEqual(before);
    expect(read(join(mnt, "f"))).toBe("still here\n");
    writeFileSync(join(mnt, "g"), "more\n");
    expect(readdirSync(mnt).sort()).toEqual(["f", "g"]);
  });

  it("mount points that are missing, not directories or already mounted are refused", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    const second = join(dir, "second");
    await ok("init", second, "--size", SIZE);
    await mount(second, mnt);
    writeFileSync(join(dir, "file"), "x");
    const before = fingerprint(store);
    const cases: Array<[string, RegExp]> = [
      [join(dir, "missing"), /mount point .*missing does not exist/],
      [join(dir, "file"), /mount point .*file is not a directory/],
      [mnt, new RegExp(`${mnt} is already a mount point`)],
    ];
    for (const [where, pattern] of cases) {
      refused(await shadowfs("mount", store, where), pattern);
      expect(await mountsUnder(dir)).toEqual([mnt]);
      expect(existsSync(join(store, "lock"))).toBe(false);
    }
    expect(fingerprint(store)).toEqual(before);
    expect(existsSync(join(dir, "missing"))).toBe(false);
    expect((await status(mnt)).store).toBe(second);
  });

  it("an unknown -o option is refused before anything is mounted", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    const before = fingerprint(store);
    for (const [i, o] of [
      "bogus",
      "allow_other,foo=1",
      "entry_timeout=soon",
      "max_read",
    ].entries()) {
      // In the background (the default) and in the foreground (-f) alike.
      const fg = i % 2 === 1 ? ["-f"] : [];
      refused(await shadowfs("mount", store, mnt, ...fg, "-o", o), /mount option/);
      expect(await mountsUnder(dir)).toEqual([]);
      expect(existsSync(join(store, "lock"))).toBe(false);
    }
    expect(fingerprint(store)).toEqual(before);
    // A known option mounts.
    await mount(store, mnt, "-o", "noatime,entry_timeout=2");
    expect(await mountsUnder(dir)).toEqual([mnt]);
  });

  it("unmount and unexpose of paths that are not such mounts", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    refused(await shadowfs("unmount", mnt), /neither a shadowfs store/);
    refused(await shadowfs("unmount", store), /not a mount point/);
    refused(await shadowfs("snapshot", "unexpose", mnt), /neither a shadowfs store/);
    refused(await shadowfs("snapshot", "unexpose", store), /not an exposed snapshot/);
    await mount(store, mnt);
    const before = await state(mnt);
    // The store directory of a mounted store is not its mount point.
    refused(await shadowfs("unmount", store), /not a mount point/);
    refused(await shadowfs("unmount", dir), /neither a shadowfs store/);
    expect(await state(mnt)).toEqual(before);
    expect(await mountsUnder(dir)).toEqual([mnt]);

    expect(await ok("unmount", mnt)).toBe(`unmounted ${mnt}\n`);
    expect(await mountsUnder(dir)).toEqual([]);
    expect(existsSync(join(store, "lock"))).toBe(false);
    expect((await status(store)).mountpoint).toBeNull();
    refused(await shadowfs("unmount", mnt), /neither a shadowfs store/);
  });

  it("expose is refused when the store is not mounted", async () => {
    const { store, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    const gmt = (await ok("snapshot", "create", store, "--name", "x")).trim();
    const ex = join(dir, "ex");
    mkdirSync(ex);
    const before = await state(store, store);
    for (const ref of ["x", gmt])
      refused(await shadowfs("snapshot", "expose", store, ref, ex), /is not mounted/);
    expect(await mountsUnder(dir)).toEqual([]);
    expect(await state(store, store)).toEqual(before);
  });

  it("a store of a newer format version is refused with one clear line", async () => {
    const { store, mnt, dir } = await fresh();
    await ok("init", store, "--size", SIZE);
    await ok("snapshot", "create", store, "--name", "old");
    const newer = join(dir, "newer");
    cpSync(store, newer, { recursive: true });
    const catalog = join(newer, "volume", "catalog");
    copyFileSync(catalog, join(dir, "catalog.orig"));
    const bytes = readFileSync(catalog);
    // Header: magic (8 bytes), format version (u32 at 8), …, header checksum (u32 at 20).
    bytes.writeUInt32LE(bytes.readUInt32LE(8) + 1, 8);
    bytes.writeUInt32LE(crc(bytes.subarray(0, 20)), 20);
    writeFileSync(catalog, bytes);
    const before = fingerprint(newer);
    const version = /format version 2 is newer than this shadowfs supports/;
    for (const args of [
      ["status", newer],
      ["snapshot", "list", newer, "--json"],
      ["snapshot", "create", newer],
      ["snapshot", "revert", newer, "old"],
      ["fsck", newer],
      ["fsck", newer, "--snapshot", "old"],
      ["mount", newer, mnt],
    ])
      refused(await shadowfs(...args), version);
    expect(await mountsUnder(dir)).toEqual([]);
    expect(existsSync(join(newer, "lock"))).toBe(false);
    expect(fingerprint(newer)).toEqual(before);
    // The original store is untouched by all this and still opens.
    expect((await list(store)).map((r) => r.name)).toEqual(["old"]);
  });

  it("mount of something that is not a store changes nothing and says so in one line", async () => {
    const { dir, mnt } = await fresh();
    const empty = join(dir, "empty");
    mkdirSync(empty);
    refused(await shadowfs("mount", empty, mnt), /not a shadowfs store/);
    expect(readdirSync(empty)).toEqual([]);
    refused(await shadowfs("mount", join(dir, "missing"), mnt), /missing/);
    expect(existsSync(join(dir, "missing"))).toBe(false);
    expect(await mountsUnder(dir)).toEqual([]);
  });

  it("a refusal reads the same whether the store is mounted or not", async () => {
    const { store, mnt } = await fresh();
    await ok("init", store, "--size", SIZE);
    const direct = await shadowfs("snapshot", "delete", store, "nosuch");
    await mount(store, mnt);
    const served = await shadowfs("snapshot", "delete", store, "nosuch");
    refused(direct, /^shadowfs: no snapshot "nosuch"/);
    expect(served.stderr).toBe(direct.stderr);
  });
});
