// Executable writers as the daemon finds and runs them: what counts as a writer, what it is told,
// how its refusals read, and that a writer past its time-out leaves no process behind.

import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type EventContext,
  ExecWriter,
  killRunningWriters,
  scanWriters,
} from "../../src/snapshot/index.js";
import {
  alive,
  execWriter,
  failure,
  killWriters,
  type Scratch,
  scratch,
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

const ctx: EventContext = {
  volume: "/srv/store",
  mountpoint: "/mnt/data",
  setId: "set-1",
  snapshotId: null,
  snapshotName: null,
};

describe("scanWriters", () => {
  it("finds NN-name executables in name order and reports every other entry", async () => {
    execWriter(s, "20-db");
    execWriter(s, "10-cache");
    execWriter(s, "db");
    execWriter(s, "5-short");
    writeFileSync(join(s.writersDir, "30-plain"), "#!/bin/bash\n", { mode: 0o644 });
    mkdirSync(join(s.writersDir, "40-dir"));
    symlinkSync(join(s.dir, "nowhere"), join(s.writersDir, "50-gone"));
    symlinkSync(join(s.writersDir, "20-db"), join(s.writersDir, "60-link"));
    writeFileSync(join(s.writersDir, "70-spa ce"), "#!/bin/bash\n", { mode: 0o755 });

    const { writers, problems } = await scanWriters(s.writersDir);
    expect(writers.map((w) => w.name)).toEqual(["10-cache", "20-db", "60-link"]);
    expect(writers.every((w) => w.kind === "exec")).toBe(true);
    const byEntry = Object.fromEntries(problems.map((p) => [p.entry, p.problem]));
    expect(Object.keys(byEntry).sort()).toEqual([
      "30-plain",
      "40-dir",
      "5-short",
      "50-gone",
      "70-spa ce",
      "db",
    ]);
    expect(byEntry["30-plain"]).toMatch(/not executable/);
    expect(byEntry["40-dir"]).toMatch(/directory/);
    expect(byEntry["50-gone"]).toMatch(/symbolic link to nothing/);
    expect(byEntry.db).toMatch(/NN-name/);
    expect(byEntry["5-short"]).toMatch(/NN-name/);
    expect(byEntry["70-spa ce"]).toMatch(/NN-name/);
  });

  it("finds no writers and no problems where there is no directory", async () => {
    expect(await scanWriters(join(s.dir, "absent"))).toEqual({ writers: [], problems: [] });
  });
});

describe("ExecWriter", () => {
  it("runs WRITER EVENT in the writers dir with the snapshot in its environment", async () => {
    execWriter(s, "10-env", {
      "*": `env | grep ^SHADOWFS_ | sort > '${s.dir}/env.txt'; pwd > '${s.dir}/cwd.txt'`,
    });
    const [w] = (await scanWriters(s.writersDir)).writers;
    process.env.SHADOWFS_TEST_INHERITED = "yes";
    await w!.call(
      "thaw",
      { ...ctx, snapshotId: 7, snapshotName: "@GMT-2025.01.02-03.04.05" },
      5000,
    );
    expect(readFileSync(join(s.dir, "env.txt"), "utf8").trim().split("\n")).toEqual([
      "SHADOWFS_EVENT=thaw",
      "SHADOWFS_MOUNTPOINT=/mnt/data",
      "SHADOWFS_SET_ID=set-1",
      "SHADOWFS_SNAPSHOT_ID=7",
      "SHADOWFS_SNAPSHOT_NAME=@GMT-2025.01.02-03.04.05",
      "SHADOWFS_TEST_INHERITED=yes",
      "SHADOWFS_VOLUME=/srv/store",
    ]);
    expect(readFileSync(join(s.dir, "cwd.txt"), "utf8").trim()).toBe(s.writersDir);

    await w!.call("prepare", { ...ctx, mountpoint: null }, 5000);
    const env = readFileSync(join(s.dir, "env.txt"), "utf8");
    expect(env).toContain("SHADOWFS_MOUNTPOINT=\n");
    expect(env).toContain("SHADOWFS_SNAPSHOT_ID=\n");
    expect(env).toContain("SHADOWFS_SNAPSHOT_NAME=\n");
    delete process.env.SHADOWFS_TEST_INHERITED;
  });

  it("reads paths and restore method from identify's output, with defaults", async () => {
    execWriter(s, "10-db", {
      identify:
        "echo path=/srv/store/db; echo noise; echo path=/srv/store/wal; echo restore=db-restore",
    });
    execWriter(s, "20-quiet");
    const [db, quiet] = (await scanWriters(s.writersDir)).writers;
    expect(await db!.call("identify", ctx, 5000)).toEqual({
      paths: ["/srv/store/db", "/srv/store/wal"],
      restore: "db-restore",
    });
    expect(await quiet!.call("identify", ctx, 5000)).toEqual({ paths: [], restore: "files" });
    expect(await quiet!.call("freeze", ctx, 5000)).toEqual({});
  });

  it("fails with the last line of stderr, the exit status, or the signal", async () => {
    execWriter(s, "10-busy", {
      prepare: "echo starting >&2; echo 'database busy' >&2; echo >&2; exit 3",
      freeze: "exit 4",
      thaw: "kill -TERM $$",
    });
    const [w] = (await scanWriters(s.writersDir)).writers;
    const veto = await failure(w!.call("prepare", ctx, 5000));
    expect(veto.writer).toBe("10-busy");
    expect(veto.reason).toBe("database busy");
    expect((await failure(w!.call("freeze", ctx, 5000))).reason).toBe("exited with status 4");
    expect((await failure(w!.call("thaw", ctx, 5000))).reason).toBe("killed by SIGTERM");
  });

  it("fails when the executable cannot run", async () => {
    const w = new ExecWriter("10-gone", join(s.writersDir, "10-gone"), s.writersDir);
    expect((await failure(w.call("freeze", ctx, 5000))).reason).toMatch(/could not run: .*ENOENT/);
  });

  it("kills the writer and everything it forked when it does not answer in time", async () => {
    execWriter(s, "10-stuck", {
      freeze: `sleep 60 & echo $! > '${s.dir}/child'; wait`,
    });
    const [w] = (await scanWriters(s.writersDir)).writers;
    const e = await failure(w!.call("freeze", ctx, 500));
    expect(e.reason).toBe("did not answer freeze within 500 ms");
    const writerPid = Number(readFileSync(s.pids, "utf8").trim());
    const childPid = Number(readFileSync(join(s.dir, "child"), "utf8").trim());
    await until("the writer and its child are gone", () => !alive(writerPid) && !alive(childPid));
  });

  it("kills every writer still running when asked to (a daemon stopping)", async () => {
    execWriter(s, "10-stuck", { freeze: `sleep 60 & echo $! > '${s.dir}/child'; wait` });
    const [w] = (await scanWriters(s.writersDir)).writers;
    const call = failure(w!.call("freeze", ctx, 60_000));
    const childFile = join(s.dir, "child");
    await until(
      "the writer has started its child",
      () => existsSync(childFile) && readFileSync(childFile, "utf8").endsWith("\n"),
    );
    expect(killRunningWriters()).toBe(1);
    expect((await call).reason).toBe("killed by SIGKILL");
    const child = Number(readFileSync(childFile, "utf8").trim());
    expect(child).toBeGreaterThan(0);
    await until("the writer's child is gone", () => !alive(child));
    expect(killRunningWriters()).toBe(0);
  });

  it("answers when it exits, even if something it started still holds its output open", async () => {
    execWriter(s, "10-daemonize", {
      freeze: `sleep 60 & echo $! >> "$PIDS"`,
    });
    const [w] = (await scanWriters(s.writersDir)).writers;
    // Waiting for the pipes to close would run into the time-out and fail.
    expect(await w!.call("freeze", ctx, 8000)).toEqual({});
  });
});
