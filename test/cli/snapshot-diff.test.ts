// `shadowfs snapshot diff` through the real binary: changes made through a mount (a file written,
// renamed away from one of its hard links, a directory moved, a symlink removed, new files), the
// text and --json output, mounted and unmounted, and how bad input is refused.

import {
  appendFileSync,
  linkSync,
  mkdirSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { DiffChange, SnapshotRow } from "../../src/daemon/index.js";
import { ok, type Run, run, scratchEachTest, shadowfs } from "../helpers/mounted.js";

const { fresh, mount } = scratchEachTest({ checkAll: true });

function refused(r: Run, pattern: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
  expect(r.stdout).toBe("");
}

const lines = (text: string) => text.split("\n").filter((l) => l !== "");

describe("shadowfs snapshot diff", () => {
  it("reports additions, removals, changes and renames, mounted and not, as text and JSON", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "256M");
    await mount(s.store, s.mnt);
    const at = (p: string) => join(s.mnt, p);
    mkdirSync(at("a"));
    mkdirSync(at("b"));
    writeFileSync(at("a/f1"), "hello");
    writeFileSync(at("a/f2"), "two");
    linkSync(at("a/f2"), at("b/link"));
    symlinkSync("a/f1", at("s"));
    writeFileSync(at("keep"), "same");
    await ok("snapshot", "create", s.mnt, "--name", "one");

    mkdirSync(at("c"));
    writeFileSync(at("c/new"), "x");
    appendFileSync(at("a/f1"), " world");
    renameSync(at("a/f2"), at("b/f2"));
    renameSync(at("a"), at("c/a2"));
    unlinkSync(at("s"));
    await ok("snapshot", "create", s.mnt, "--name", "two");
    writeFileSync(at("c/new"), "changed");

    const expected = [
      "M /b",
      "R /a/f2 -> /b/f2",
      "M /b/link",
      "+ /c",
      "R /a -> /c/a2",
      "M /c/a2/f1",
      "+ /c/new",
      "- /s",
    ];
    expect(lines(await ok("snapshot", "diff", s.mnt, "one", "two"))).toEqual(expected);
    const rows = JSON.parse(await ok("snapshot", "list", s.mnt, "--json")) as SnapshotRow[];
    const gmt = (name: string) => rows.find((r) => r.name === name)!.gmt;
    expect(lines(await ok("snapshot", "diff", s.mnt, gmt("one"), gmt("two")))).toEqual(expected);
    expect(lines(await ok("snapshot", "diff", s.mnt, "two"))).toEqual(["M /c/new"]);
    expect(lines(await ok("snapshot", "diff", s.mnt, "two", "two"))).toEqual([]);

    const json = JSON.parse(
      await ok("snapshot", "diff", s.mnt, "one", "production", "--json"),
    ) as DiffChange[];
    expect(json.map((c) => c.path)).toEqual(expected.map((l) => l.split(" ").at(-1)));
    const ino = (p: string) => statSync(at(p)).ino;
    expect(json.find((c) => c.path === "/b/f2")).toEqual({
      change: "renamed",
      path: "/b/f2",
      from: "/a/f2",
      type: "file",
      inode: ino("b/f2"),
      sizeBefore: 3,
      sizeAfter: 3,
    });
    expect(json.find((c) => c.path === "/c/new")).toEqual({
      change: "added",
      path: "/c/new",
      type: "file",
      inode: ino("c/new"),
      sizeAfter: 7,
    });
    expect(json.find((c) => c.path === "/c/a2")).toMatchObject({
      change: "renamed",
      from: "/a",
      type: "directory",
      inode: ino("c/a2"),
    });
    expect(json.find((c) => c.path === "/c/a2/f1")).toMatchObject({
      change: "modified",
      sizeBefore: 5,
      sizeAfter: 11,
      inode: ino("c/a2/f1"),
    });
    expect(json.find((c) => c.path === "/s")).toMatchObject({ change: "removed", type: "symlink" });
    expect(json.find((c) => c.path === "/s")?.sizeAfter).toBeUndefined();

    refused(await shadowfs("snapshot", "diff", s.mnt, "nope"), /no snapshot "nope"/);
    refused(await shadowfs("snapshot", "diff", s.mnt, "two", "one"), /newer/);
    refused(await shadowfs("snapshot", "diff", s.mnt, "production", "one"), /newer/);

    await ok("unmount", s.mnt);
    expect(lines(await ok("snapshot", "diff", s.store, "one", "two"))).toEqual(expected);
    expect(lines(await ok("snapshot", "diff", s.store, "two"))).toEqual(["M /c/new"]);
    refused(await shadowfs("snapshot", "diff", s.store, "one", "gone"), /no snapshot "gone"/);
  });

  it("answers a diff longer than a request may be (1 MiB of JSON) through the daemon", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "256M");
    await mount(s.store, s.mnt);
    await ok("snapshot", "create", s.mnt, "--name", "empty");
    run(
      `mkdir many && cd many && seq -f 'a-file-with-a-much-longer-name-to-fill-the-answer-%05g' 1 9000 | xargs touch`,
      s.mnt,
    );
    const json = JSON.parse(await ok("snapshot", "diff", s.mnt, "empty", "--json")) as DiffChange[];
    expect(json).toHaveLength(9001);
    expect(Buffer.byteLength(JSON.stringify(json))).toBeGreaterThan(1 << 20);
    expect(json[0]).toMatchObject({ change: "added", path: "/many", type: "directory" });
    expect(json.at(-1)).toMatchObject({
      change: "added",
      path: "/many/a-file-with-a-much-longer-name-to-fill-the-answer-09000",
    });
  });
});
