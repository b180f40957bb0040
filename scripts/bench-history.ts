// Benchmark of the history tools on real mounted volumes: `snapshot diff` of the same 10 changes
// on a volume of 1,000 files and on one of 100,000, `versions` of a file across 100 snapshots,
// cleanup choosing among 1,000 timeline snapshots, and `restore` of a 1 GiB file against `cp` from
// the snapshot directory on the same mount. Control calls are timed from a client already
// connected to the daemon (the command's own start-up is measured once and said apart). It owns
// one temporary directory (under --dir, default /var/tmp), and unmounts everything it mounted and
// removes that directory at exit, also on SIGINT and SIGTERM.

import { appendFile, mkdir, rename, rm, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { connect } from "../src/cli/connect.js";
import { CowVolume, NodeHostFs } from "../src/cow/index.js";
import { FileSystem, ROOT, SUPERUSER } from "../src/fs/filesystem.js";
import {
  assertFuse,
  benchName,
  COMMON_OPTIONS,
  diskFree,
  fmt,
  makeWork,
  median,
  mountShadowfs,
  notes,
  positive,
  printReport,
  removeWork,
  round,
  run,
  runBench,
  say,
  sayShadowfsCommand,
  shadowfs,
  unmountAll,
  unmountShadowfs,
} from "./bench-common.js";

benchName("bench-history");
const { values: opt } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    passes: { type: "string", default: "11" },
    "big-files": { type: "string", default: "100000" },
    snapshots: { type: "string", default: "100" },
    "cleanup-snapshots": { type: "string", default: "1000" },
    "restore-mib": { type: "string", default: "1024" },
  },
});
const passes = positive("--passes", opt.passes, true);
const bigFiles = positive("--big-files", opt["big-files"], true);
const nSnapshots = positive("--snapshots", opt.snapshots, true);
const nCleanup = positive("--cleanup-snapshots", opt["cleanup-snapshots"], true);
const restoreMiB = positive("--restore-mib", opt["restore-mib"], true);

const HOUR = 36e5;

interface Results {
  diffMs1k: number;
  diffMs100k: number;
  diffCommandMs: number;
  versionsMs: number;
  versions: number;
  cleanupMs: number;
  cleanupDeletes: number;
  restoreSec: number;
  cpSec: number;
  restoreVsCp: number;
}

/** The median wall time of `passes` runs of `fn`, in ms. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < passes; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

let workPath = "";
const workDir = () => workPath;

/** A store of `files` small files (1,000 a directory), made through the filesystem API, mounted. */
async function volumeOf(
  name: string,
  files: number,
  size: string,
): Promise<{ store: string; mnt: string }> {
  const store = join(workDir(), name, "store");
  const mnt = join(workDir(), name, "mnt");
  await mkdir(mnt, { recursive: true });
  await shadowfs(["init", store, "--size", size]);
  const vol = await CowVolume.open(new NodeHostFs(), join(store, "volume"));
  const fs = await FileSystem.open(vol);
  const body = Buffer.from("some contents of a small file\n");
  for (let d = 0; d * 1000 < files; d++) {
    const dir = await fs.mkdir(ROOT, `d${d}`, 0o755, SUPERUSER);
    for (let f = 0; f < Math.min(1000, files - d * 1000); f++) {
      const a = await fs.create(dir.ino, `f${f}`, 0o644, SUPERUSER);
      await fs.write(a.ino, 0, body);
    }
  }
  await fs.close();
  await vol.close();
  await mountShadowfs(store, mnt);
  assertFuse(mnt);
  return { store, mnt };
}

/** The same 10 changes on any volume made by `volumeOf`: 4 modified, 2 added, 2 removed, 2 renamed. */
async function tenChanges(mnt: string): Promise<void> {
  for (const f of ["d0/f1", "d0/f2", "d0/f500", "d0/f999"])
    await appendFile(join(mnt, f), "more\n");
  await writeFile(join(mnt, "d0/new1"), "new\n");
  await writeFile(join(mnt, "d0/new2"), "new\n");
  await unlink(join(mnt, "d0/f10"));
  await unlink(join(mnt, "d0/f11"));
  await rename(join(mnt, "d0/f20"), join(mnt, "d0/renamed"));
  await rename(join(mnt, "d0/f21"), join(mnt, "moved"));
}

async function diffMs(name: string, files: number): Promise<{ ms: number; commandMs: number }> {
  say(`diff: a volume of ${files} files (made untimed)`);
  const { store, mnt } = await volumeOf(name, files, files > 10_000 ? "4G" : "512M");
  await shadowfs(["snapshot", "create", mnt, "--name", "before"]);
  await tenChanges(mnt);
  const b = await connect(store);
  try {
    const changes = await b.call("snapshot.diff", { from: "before", to: "production" });
    if (changes.length < 10) throw new Error(`diff found ${changes.length} changes, not 10`);
    const ms = await timed(() => b.call("snapshot.diff", { from: "before", to: "production" }));
    const commandMs = (await shadowfs(["snapshot", "diff", mnt, "before", "--json"])).ms;
    say(`diff of ${files} files: ${fmt(ms)} ms (the command: ${fmt(commandMs, 0)} ms)`);
    return { ms, commandMs };
  } finally {
    await b.close();
    await unmountShadowfs(mnt);
  }
}

async function versionsMs(): Promise<{ ms: number; versions: number }> {
  say(`versions: a file changed before each of ${nSnapshots} snapshots (untimed)`);
  const { store, mnt } = await volumeOf("versions", 10, "512M");
  for (let i = 0; i < nSnapshots; i++) {
    await writeFile(join(mnt, "d0/f1"), `version ${i}\n`);
    await shadowfs(["snapshot", "create", mnt]);
  }
  const b = await connect(store);
  try {
    const versions = (await b.call("versions", { path: "d0/f1" })).versions.length;
    const ms = await timed(() => b.call("versions", { path: "d0/f1" }));
    say(`versions across ${nSnapshots} snapshots: ${fmt(ms)} ms, ${versions} versions`);
    return { ms, versions };
  } finally {
    await b.close();
    await unmountShadowfs(mnt);
  }
}

async function cleanupMs(): Promise<{ ms: number; deletes: number }> {
  say(`cleanup: ${nCleanup} hourly timeline snapshots (made untimed)`);
  const store = join(workDir(), "cleanup", "store");
  const mnt = join(workDir(), "cleanup", "mnt");
  await mkdir(mnt, { recursive: true });
  await shadowfs(["init", store, "--size", "256M"]);
  const vol = await CowVolume.open(new NodeHostFs(), join(store, "volume"));
  const start = Date.UTC(2025, 0, 1);
  for (let i = 0; i < nCleanup; i++)
    await vol.createSnapshot({ timeline: true, createdAt: start + i * HOUR });
  await vol.close();
  await mountShadowfs(store, mnt);
  const b = await connect(store);
  try {
    const dry = await b.call("snapshot.cleanup", { dryRun: true });
    const ms = await timed(() => b.call("snapshot.cleanup", { dryRun: true }));
    say(`cleanup choosing among ${nCleanup}: ${fmt(ms)} ms, ${dry.deleted.length} to delete`);
    return { ms, deletes: dry.deleted.length };
  } finally {
    await b.close();
    await unmountShadowfs(mnt);
  }
}

async function restoreVsCp(): Promise<{ restoreSec: number; cpSec: number }> {
  say(`restore: a ${restoreMiB} MiB file, against cp from .snapshots (3 passes each, alternating)`);
  const store = join(workDir(), "restore", "store");
  const mnt = join(workDir(), "restore", "mnt");
  await mkdir(mnt, { recursive: true });
  await shadowfs(["init", store, "--size", `${Math.ceil((3 * restoreMiB) / 1024) + 1}G`]);
  await mountShadowfs(store, mnt);
  assertFuse(mnt);
  await run("dd", [
    "if=/dev/urandom",
    `of=${join(mnt, "big")}`,
    "bs=1M",
    `count=${restoreMiB}`,
    "status=none",
  ]);
  const gmt = (await shadowfs(["snapshot", "create", mnt])).stdout.trim();
  await run("dd", [
    "if=/dev/zero",
    `of=${join(mnt, "big")}`,
    "bs=1M",
    "count=1",
    "conv=notrunc",
    "status=none",
  ]);
  await run("sync", []);
  const cp: number[] = [];
  const restore: number[] = [];
  for (let i = 0; i < 3; i++) {
    for (const what of i % 2 ? ["restore", "cp"] : ["cp", "restore"]) {
      await writeFile("/proc/sys/vm/drop_caches", "3").catch(() => undefined);
      const dest = join(mnt, `${what}-${i}`);
      const t = performance.now();
      if (what === "cp") await run("cp", [join(mnt, ".snapshots", gmt, "big"), dest]);
      else await shadowfs(["restore", join(mnt, "big"), "--from", gmt, "--to", dest]);
      (what === "cp" ? cp : restore).push((performance.now() - t) / 1000);
      await rm(dest);
      await run("sync", []);
    }
  }
  await unmountShadowfs(mnt);
  say(
    `restore ${restore.map((s) => fmt(s, 2)).join(", ")} s; cp ${cp.map((s) => fmt(s, 2)).join(", ")} s`,
  );
  return { restoreSec: median(restore), cpSec: median(cp) };
}

async function main(): Promise<Results> {
  await diskFree(opt.dir);
  workPath = await makeWork(opt.dir);
  sayShadowfsCommand();
  const small = await diffMs("diff-1k", 1000);
  const big = await diffMs("diff-big", bigFiles);
  const v = await versionsMs();
  const c = await cleanupMs();
  const r = await restoreVsCp();
  notes.push(
    `diff, versions, cleanup: median of ${passes} control calls from a connected client, after one untimed call (each volume has a daemon of its own, started for the run); the command's start-up comes on top (diff as a command: ${fmt(small.commandMs, 0)} ms)`,
    "cleanup: --dry-run, the default limits (10 hourly, 10 daily, 0 weekly, 10 monthly, 10 yearly)",
    "restore vs cp: wall time of `shadowfs restore --to` and of `cp` from .snapshots, page cache dropped before each, medians of 3",
  );
  return {
    diffMs1k: round(small.ms)!,
    diffMs100k: round(big.ms)!,
    diffCommandMs: round(small.commandMs, 0)!,
    versionsMs: round(v.ms)!,
    versions: v.versions,
    cleanupMs: round(c.ms)!,
    cleanupDeletes: c.deletes,
    restoreSec: round(r.restoreSec, 2)!,
    cpSec: round(r.cpSec, 2)!,
    restoreVsCp: round(r.cpSec / r.restoreSec, 2)!,
  };
}

await runBench(
  main,
  async () => {
    await unmountAll();
    await removeWork(opt.keep);
  },
  (r) =>
    printReport(
      opt.json,
      `big volume: ${bigFiles} files; ${nSnapshots} snapshots for versions`,
      r,
      () => [
        `snapshot diff, 10 changes, 1,000 files:     ${fmt(r.diffMs1k)} ms`,
        `snapshot diff, 10 changes, ${bigFiles} files: ${fmt(r.diffMs100k)} ms (${fmt(r.diffMs100k / r.diffMs1k, 2)}x)`,
        `versions across ${nSnapshots} snapshots:        ${fmt(r.versionsMs)} ms (${r.versions} versions)`,
        `cleanup among ${nCleanup} snapshots:          ${fmt(r.cleanupMs)} ms (${r.cleanupDeletes} to delete)`,
        `restore ${restoreMiB} MiB: ${fmt(r.restoreSec, 2)} s; cp: ${fmt(r.cpSec, 2)} s; restore vs cp ${fmt(r.restoreVsCp, 2)}`,
      ],
    ),
);
