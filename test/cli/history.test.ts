// `shadowfs versions` and `shadowfs restore` through the real binary on real mounts: the versions
// of a path across snapshots (text and --json), restored trees equal to the snapshot under
// `rsync -aHAXc`, --force keeping what it replaces, and bad input refused with nothing changed.

import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type {
  PathVersion,
  RestoreResult,
  SnapshotRow,
  VersionsResult,
} from "../../src/daemon/index.js";
import {
  CLI,
  ok,
  type Run,
  run,
  type Scratch,
  scratchEachTest,
  shadowfs,
} from "../helpers/mounted.js";

const { fresh, mount } = scratchEachTest({ checkAll: true });

const parse = <T>(text: string): T => JSON.parse(text) as T;

async function mounted(): Promise<Scratch> {
  const s = await fresh();
  await ok("init", s.store, "--size", "512M");
  await mount(s.store, s.mnt);
  return s;
}

const snap = async (mnt: string, name: string) =>
  parse<SnapshotRow>(await ok("snapshot", "create", mnt, "--name", name, "--json"));

const list = async (mnt: string) =>
  parse<SnapshotRow[]>(await ok("snapshot", "list", mnt, "--json"));

/** What a refused command must look like: one line `shadowfs: …`, a non-zero exit, no output. */
function refused(r: Run, pattern: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
  expect(r.stdout).toBe("");
}

const NS = 1_000_000_000n;
const iso = (ns: bigint) =>
  `${new Date(Number(ns / NS) * 1000).toISOString().slice(0, 19)}.${String(ns % NS).padStart(9, "0")}Z`;

/** What `versions --json` says of the version at `path` (read through the mount with lstat). */
function version(path: string): Omit<PathVersion, "production" | "snapshots"> {
  const st = lstatSync(path, { bigint: true });
  return {
    deleted: false,
    type: st.isDirectory() ? "directory" : st.isSymbolicLink() ? "symlink" : "file",
    ino: Number(st.ino),
    size: Number(st.size),
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: iso(st.mtimeNs),
    ctime: iso(st.ctimeNs),
  };
}

const held = (...rows: SnapshotRow[]) => rows.map((r) => ({ gmt: r.gmt, alias: r.name }));
const named = (r: SnapshotRow) => `${r.gmt} (${r.name})`;

/** The text table `versions` prints for `rows`: VERSION, TYPE, MTIME, SIZE, padded. */
function textTable(rows: string[][]): string {
  const all = [["VERSION", "TYPE", "MTIME", "SIZE"], ...rows];
  const width = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return `${all
    .map((r) =>
      r
        .map((c, i) => c.padEnd(width[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")}\n`;
}

const textRow = (where: string, v: ReturnType<typeof version>) => [
  where,
  v.type!,
  `${v.mtime!.slice(0, 10)} ${v.mtime!.slice(11, 23)}`,
  String(v.size),
];

/** A tree with what a restore must carry: holes, links, xattrs, odd modes and owners, times. */
function buildTree(root: string): void {
  run(
    [
      "mkdir -p t/a/b t/empty t/odd",
      "echo hello > t/a/hello.txt",
      "head -c 3000000 /dev/urandom > t/a/b/random.bin",
      "truncate -s 20M t/sparse && printf middle | dd of=t/sparse bs=1 seek=9000000 conv=notrunc status=none",
      "printf end >> t/sparse && truncate -s 30M t/sparse",
      "ln t/a/hello.txt t/a/b/hardlink && ln t/a/hello.txt t/hard2",
      "ln -s ../hello.txt t/a/b/symlink && ln -s /nonexistent/target t/dangling",
      "mkfifo t/fifo && mknod t/null c 1 3",
      "setfattr -n user.colour -v blue t/a/hello.txt && setfattr -n user.empty t/a/b/random.bin",
      "setfattr -n trusted.secret -v x t/a && setfattr -n user.dir -v d t/empty",
      "echo odd > t/odd/setuid && chmod 4751 t/odd/setuid && chown 1234:5678 t/odd/setuid",
      "echo mine > t/odd/theirs && chown 4321:8765 t/odd/theirs && chmod 604 t/odd/theirs",
      "chmod 1777 t/empty && chown 99:98 t/empty && chmod 2750 t/odd && chmod 0 t/a/b/random.bin",
      "chown -h 77:66 t/dangling",
      "find t -exec touch -h -d '2005-06-07 08:09:10.111111111' {} +",
      "touch -d '1999-12-31 23:59:59.987654321' t/a/b/random.bin t/empty",
      "touch -a -d '2001-01-01 01:01:01.5' t/a/hello.txt",
    ].join(" && "),
    root,
  );
}

/** `rsync -aHAXc --dry-run --itemize-changes FROM/ TO/`: empty when TO is FROM exactly. */
const rsyncDiff = (from: string, to: string) =>
  run(`rsync -aHAXc --dry-run --itemize-changes ${from}/ ${to}/`);

const temps = (dir: string) => readdirSync(dir).filter((n) => n.startsWith(".shadowfs-restore-"));

describe("shadowfs versions", () => {
  it("lists each distinct version of a file changed, renamed, deleted and recreated", async () => {
    const { mnt } = await mounted();
    const dir = join(mnt, "dir");
    mkdirSync(dir);
    const f = join(dir, "f");
    const g = join(dir, "g");
    writeFileSync(f, "one");
    const v1 = await snap(mnt, "v1");
    const v2 = await snap(mnt, "v2"); // nothing changed: one version with v1
    writeFileSync(f, "two!"); // changed in place: the same inode
    const v3 = await snap(mnt, "v3");
    renameSync(f, g);
    const v4 = await snap(mnt, "v4");
    writeFileSync(f, "three");
    const v5 = await snap(mnt, "v5");
    writeFileSync(f, "four");

    const at = (s: SnapshotRow, name: string) => join(mnt, ".snapshots", s.gmt, "dir", name);
    const expected: PathVersion[] = [
      { production: true, snapshots: [], ...version(f) },
      { production: false, snapshots: held(v5), ...version(at(v5, "f")) },
      { production: false, snapshots: held(v4), deleted: true },
      { production: false, snapshots: held(v3), ...version(at(v3, "f")) },
      { production: false, snapshots: held(v2, v1), ...version(at(v1, "f")) },
    ];
    const json = parse<PathVersion[]>(await ok("versions", f, "--json"));
    expect(json).toEqual(expected);
    // The recreated file is another inode; the renamed one kept its own.
    expect(json[1]!.ino).not.toBe(json[3]!.ino);
    expect(json[3]!.ino).toBe(json[4]!.ino);
    expect(json.map((v) => v.size)).toEqual([4, 5, undefined, 4, 3]);
    expect(await ok("versions", f)).toBe(
      textTable([
        textRow("production", expected[0]! as ReturnType<typeof version>),
        textRow(named(v5), expected[1]! as ReturnType<typeof version>),
        [named(v4), "-", "-", "deleted"],
        textRow(named(v3), expected[3]! as ReturnType<typeof version>),
        textRow(`${named(v2)}, ${named(v1)}`, expected[4]! as ReturnType<typeof version>),
      ]),
    );

    // The renamed file: production holds what v5 and v4 hold; before the rename it did not exist.
    const renamed = parse<PathVersion[]>(await ok("versions", g, "--json"));
    expect(renamed).toEqual([
      { production: true, snapshots: held(v5, v4), ...version(g) },
      { production: false, snapshots: held(v3, v2, v1), deleted: true },
    ]);
    expect(renamed[0]!.ino).toBe(json[3]!.ino);
    expect(await ok("versions", g)).toBe(
      textTable([
        textRow(`production, ${named(v5)}, ${named(v4)}`, renamed[0] as ReturnType<typeof version>),
        [`${named(v3)}, ${named(v2)}, ${named(v1)}`, "-", "-", "deleted"],
      ]),
    );

    // A path never there, given relative to the working directory: one line, deleted everywhere.
    expect(parse<PathVersion[]>(run(`node ${CLI} versions never --json`, dir))).toEqual([
      { production: true, snapshots: held(v5, v4, v3, v2, v1), deleted: true },
    ]);
    // The directory itself: its own versions (entries added, removed, renamed).
    const dirs = parse<PathVersion[]>(await ok("versions", dir, "--json"));
    // Changed by the rename (v4) and the new f (v5) only: a write to f is no change to it.
    expect(dirs.map((v) => v.snapshots.map((h) => h.alias))).toEqual([
      ["v5"],
      ["v4"],
      ["v3", "v2", "v1"],
    ]);
    expect(dirs[0]).toEqual({ production: true, snapshots: held(v5), ...version(dir) });
    expect(dirs.every((v) => v.type === "directory")).toBe(true);
  });

  it("refuses a path in no mounted volume, in .snapshots, or one that cannot be", async () => {
    const { mnt, dir } = await mounted();
    writeFileSync(join(mnt, "f"), "x");
    await snap(mnt, "v1");
    refused(
      await shadowfs("versions", join(dir, "elsewhere")),
      /is not in a mounted shadowfs volume/,
    );
    refused(await shadowfs("versions", join(mnt, ".snapshots", "v1", "f")), /is in \.snapshots/);
    refused(await shadowfs("versions", "/"), /is not in a mounted shadowfs volume/);
  });
});

describe("shadowfs restore", () => {
  it("restores a tree equal to the snapshot: holes, links, xattrs, modes, owners, times", async () => {
    const { mnt } = await mounted();
    buildTree(mnt);
    const s1 = await snap(mnt, "s1");
    const snapTree = join(mnt, ".snapshots", s1.gmt, "t");
    run("rm -rf t && mkdir t && echo other > t/x", mnt);
    // Another place first: nothing is there, so nothing is replaced and no --force is needed.
    const r = parse<RestoreResult>(
      await ok("restore", join(mnt, "t"), "--from", "s1", "--to", join(mnt, "copy"), "--json"),
    );
    expect(r).toMatchObject({
      from: { gmt: s1.gmt, alias: "s1" },
      path: "/t",
      to: "/copy",
      type: "directory",
      unchanged: false,
      keptIn: null,
      files: 5,
      directories: 5,
      symlinks: 2,
      specials: 2,
      hardLinks: 2,
    });
    // Data only, each inode once: the holes of the sparse file (two blocks of data) are skipped.
    expect(r.bytes).toBe(3_000_000 + 6 + 4 + 5 + 2 * 4096);
    expect(rsyncDiff(snapTree, join(mnt, "copy"))).toBe("");
    const sparse = lstatSync(join(mnt, "copy", "sparse"));
    expect(sparse.size).toBe(30 * 2 ** 20);
    expect(sparse.blocks).toBe(lstatSync(join(snapTree, "sparse")).blocks);
    expect(sparse.blocks * 512).toBeLessThan(64 * 1024);
    expect(lstatSync(join(mnt, "copy", "a", "hello.txt")).atimeMs).toBe(
      lstatSync(join(snapTree, "a", "hello.txt")).atimeMs,
    );
    expect(temps(mnt)).toEqual([]);

    // On a terminal, the bytes gone through (holes too) of all there is.
    const tty = run(
      `script -qec "node ${CLI} restore ${join(mnt, "t")} --from s1 --to ${join(mnt, "copy2")}" /dev/null`,
    );
    expect(tty).toMatch(/restoring: 32\.9M of 32\.9M/);
    expect(tty).toMatch(/restored \/t of .* to \/copy2: 5 files/);
    expect(rsyncDiff(snapTree, join(mnt, "copy2"))).toBe("");

    // Its own path, which now holds another tree: refused without --force, nothing changed.
    const before = await list(mnt);
    refused(
      await shadowfs("restore", join(mnt, "t"), "--from", s1.gmt),
      /\/t exists and differs from its version in .*--force/,
    );
    expect(readdirSync(join(mnt, "t"))).toEqual(["x"]);
    expect(await list(mnt)).toEqual(before);
    expect(temps(mnt)).toEqual([]);

    const forced = await ok("restore", join(mnt, "t"), "--from", s1.gmt, "--force");
    const after = await list(mnt);
    expect(after).toHaveLength(before.length + 1);
    const kept = after.at(-1)!;
    expect(kept.name).toMatch(/^before-restore-/);
    expect(forced).toBe(
      `restored /t of ${named(s1)} to /t: 5 files, 5 directories, 2 symlinks, 2 special files, 2 hard links, ${(r.bytes / 2 ** 20).toFixed(1)}M\n` +
        `what /t was is kept in snapshot ${named(kept)}\n`,
    );
    expect(rsyncDiff(snapTree, join(mnt, "t"))).toBe("");
    expect(readFileSync(join(mnt, ".snapshots", kept.gmt, "t", "x"), "utf8")).toBe("other\n");
    expect(temps(mnt)).toEqual([]);

    // A restored tree is made of new inodes: another version than the snapshot's (see versions.ts),
    // so restoring it once more needs --force again.
    refused(await shadowfs("restore", join(mnt, "t"), "--from", "s1"), /--force/);
  });

  it("replaces a changed file only with --force, keeping the replaced version in a snapshot", async () => {
    const { mnt } = await mounted();
    const f = join(mnt, "f");
    writeFileSync(f, "old version\n");
    const v1 = await snap(mnt, "v1");
    // Unchanged since the snapshot: nothing to do.
    expect(await ok("restore", f, "--from", "v1")).toBe(
      `/f already is /f of ${named(v1)}: nothing to restore\n`,
    );
    writeFileSync(f, "new version\n");
    const before = await list(mnt);
    refused(await shadowfs("restore", f, "--from", "v1"), /\/f exists and differs .*--force/);
    expect(readFileSync(f, "utf8")).toBe("new version\n");
    expect(await list(mnt)).toEqual(before);
    expect(temps(mnt)).toEqual([]);

    const r = parse<RestoreResult>(await ok("restore", f, "--from", "v1", "--force", "--json"));
    expect(r.keptIn?.alias).toMatch(/^before-restore-/);
    expect(r).toMatchObject({ files: 1, directories: 0, bytes: 12, unchanged: false, to: "/f" });
    expect(readFileSync(f, "utf8")).toBe("old version\n");
    expect(readFileSync(join(mnt, ".snapshots", r.keptIn!.gmt, "f"), "utf8")).toBe("new version\n");
    expect((await list(mnt)).map((x) => x.gmt)).toEqual([
      ...before.map((x) => x.gmt),
      r.keptIn!.gmt,
    ]);
    expect(temps(mnt)).toEqual([]);
    // The file's history now shows all three.
    const v = parse<VersionsResult["versions"]>(await ok("versions", f, "--json"));
    expect(v.map((x) => x.snapshots.map((h) => h.gmt))).toEqual([[], [r.keptIn!.gmt], [v1.gmt]]);

    // A directory where the file was: swapped out whole, and kept with all it holds.
    run("rm f && mkdir -p f/sub && echo deep > f/sub/x", mnt);
    const again = parse<RestoreResult>(await ok("restore", f, "--from", "v1", "--force", "--json"));
    expect(readFileSync(f, "utf8")).toBe("old version\n");
    const keptDir = join(mnt, ".snapshots", again.keptIn!.gmt, "f");
    expect(readFileSync(join(keptDir, "sub", "x"), "utf8")).toBe("deep\n");
    expect(temps(mnt)).toEqual([]);
  });

  it("refuses bad input with one line, changing nothing", async () => {
    const { mnt, dir } = await mounted();
    mkdirSync(join(mnt, "d"));
    writeFileSync(join(mnt, "d", "f"), "x");
    await snap(mnt, "v1");
    writeFileSync(join(mnt, "d", "new"), "y");
    const state = () => run("find . -printf '%p %i %s %T@\\n' | sort", mnt);
    const before = { files: state(), snapshots: await list(mnt) };
    const f = join(mnt, "d", "f");
    const cases: Array<[string[], RegExp]> = [
      [[f, "--from", "nosuch"], /no snapshot "nosuch"/],
      [[join(dir, "outside"), "--from", "v1"], /is not in a mounted shadowfs volume/],
      [[join(mnt, "d", "new"), "--from", "v1"], /\/d\/new does not exist in snapshot .* \(v1\)/],
      [[f, "--from", "v1", "--to", join(dir, "outside")], /outside is not in a mounted shadowfs/],
      [
        [f, "--from", "v1", "--to", join(mnt, "nodir", "f")],
        /\/nodir is not a directory in production/,
      ],
      [[f, "--from", "v1", "--to", join(mnt, ".snapshots", "x")], /is in \.snapshots/],
      [[mnt, "--from", "v1"], /restoring the volume's root is a revert/],
      [[f], /--from/],
    ];
    for (const [args, pattern] of cases) refused(await shadowfs("restore", ...args), pattern);
    expect({ files: state(), snapshots: await list(mnt) }).toEqual(before);
  });
});
