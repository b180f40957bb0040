// Benchmark of mounted filesystems, side by side on one disk: a plain host directory, bindfs
// mirroring a host directory (about the best a FUSE filesystem can do), the binding's ceiling
// (ceiling-fs.ts: an in-memory filesystem on shadowfs's patched binding and mount options), a
// shadowfs mount, the read side of a shadowfs snapshot, and any other FUSE filesystem named with
// --extra NAME=COMMAND (COMMAND, run by sh in the foreground, serves {mnt}, e.g. mirroring {src},
// a fresh host directory; both substituted shell-quoted; its figures go under `extra.NAME`).
// Data IO is measured with fio, metadata with a separate Node process, tree copies with rsync
// (a synthetic tree, and a copy of the machine's /usr/include and /usr/share/doc), small files
// with the project's node_modules as a tar (bench-mount-measure.ts). It owns one temporary
// directory (under --dir, default /var/tmp), and unmounts everything it mounted and removes that
// directory at exit, also on SIGINT and SIGTERM.
//
// Order on the shadowfs volume: first the production figures, phase by phase as on every
// writable target (each phase with the same files present everywhere: what the phases before it
// left); or, with --only snapshot, the same files written untimed. Only then, untimed, what the
// snapshot's read side reads besides (the real tree, the untarred node_modules, the stat set),
// and then the snapshots are taken and read. So no production figure is measured on a volume
// holding them, and the snapshot reads the same trees the writable targets wrote.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { freemem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  assertFuse,
  benchName,
  COMMON_OPTIONS,
  children,
  diskFree,
  GiB,
  MB,
  makeWork,
  median,
  mountShadowfs,
  notes,
  positive,
  removeWork,
  requireTool,
  root,
  run,
  runBench,
  say,
  sayShadowfsCommand,
  shadowfs,
  sleep,
  unmountAll,
  unmountShadowfs,
  work,
} from "./bench-common.js";
import {
  dropCaches,
  Measure,
  machineNote,
  machineSince,
  makeTree,
  TREE_BYTES,
  TREE_FILES,
} from "./bench-mount-measure.js";
import { type Results, report, TARGETS } from "./bench-mount-report.js";
import { describe, makeTreeSources, type TreeSources } from "./bench-mount-trees.js";
import {
  bindfsServer,
  ceilingServer,
  type Extra,
  extraServer,
  mountServer,
  parseExtra,
  type Server,
  unmountServerAt,
} from "./bench-servers.js";

const SNAPSHOT_NAME = /^@GMT-\d{4}\.\d{2}\.\d{2}-\d{2}\.\d{2}\.\d{2}$/;
/** Runs of `shadowfs --help` whose median is cliHelpMs. */
const HELP_RUNS = 11;

/** Bytes from "65536", "64K", "256M", "1G", "1GiB" (binary units). */
function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}": use bytes or e.g. 64K, 256M, 1G`);
  return Number(m[1]) * 1024 ** " KMGT".indexOf(m[2]!.toUpperCase() || " ");
}

benchName("bench-mount");

/** The command line, checked: one line saying what is wrong, and exit status 2, if it is not. */
function options() {
  try {
    const { values: opt } = parseArgs({
      options: {
        ...COMMON_OPTIONS,
        size: { type: "string", default: "1G" },
        seconds: { type: "string", default: "20" },
        files: { type: "string", default: "10000" },
        only: { type: "string" },
        passes: { type: "string", default: "5" },
        extra: { type: "string", multiple: true, default: [] },
      },
    });
    const size = parseSize(opt.size);
    if (size <= 0 || size % (128 * 1024) !== 0)
      throw new Error("--size must be a positive multiple of 128 KiB");
    const extras: Extra[] = [];
    for (const spec of opt.extra)
      extras.push(parseExtra(spec, [...TARGETS, ...extras.map((e) => e.name)]));
    const all = [...TARGETS, ...extras.map((e) => e.name)];
    const only = new Set((opt.only ?? all.join(",")).split(",").map((s) => s.trim()));
    for (const name of only)
      if (!all.includes(name))
        throw new Error(`--only: unknown target "${name}" (targets: ${all.join(", ")})`);
    for (const e of extras)
      if (!only.has(e.name)) say(`--extra ${e.name} is not in --only: it will not run`);
    return {
      ...opt,
      sizeText: opt.size,
      size,
      seconds: positive("--seconds", opt.seconds),
      nFiles: positive("--files", opt.files, true),
      passes: positive("--passes", opt.passes, true),
      only,
      extras: extras.filter((e) => only.has(e.name)),
    };
  } catch (e) {
    say(e instanceof Error ? e.message : String(e));
    process.exit(2);
  }
}
const opt = options();
const selected = (t: string) => opt.only.has(t);
const needShadowfs = selected("shadowfs") || selected("snapshot");

/** Processes other than this one whose command line names the work directory: the shadowfs
 * daemon, the ceiling and --extra servers started for this run's mount points. */
function processesOfThisRun(): number[] {
  if (!work) return [];
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(work)) pids.push(pid);
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

/** Unmounts everything mounted here, ends what is left of this run's processes, removes the work
 * directory (unless --keep) with the trees and the tarball in it. */
async function cleanup(): Promise<void> {
  for (const child of children) child.kill("SIGTERM");
  await unmountAll();
  for (let i = 0; i < 100 && processesOfThisRun().length > 0; i++) await sleep(100);
  for (const pid of processesOfThisRun()) {
    say(`process ${pid} of this run still running after unmount: stopping it`);
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  await removeWork(opt.keep);
}

// ---------------------------------------------------------------------------------------------
// Targets

const gib = (bytes: number) => `${Math.ceil(bytes / GiB)}G`;

/** Measures the writable FUSE filesystem `server` serves at work/`dir` (from work/`dir`-source,
 * made fresh for it), then stops it. */
async function runServed(
  name: string,
  dir: string,
  m: Measure,
  server: (src: string, mnt: string) => Server,
) {
  const source = join(work, `${dir}-source`);
  const mnt = join(work, dir);
  await mkdir(source);
  await mkdir(mnt);
  sameDisk(source);
  const s = server(source, mnt);
  say(`${name}: ${[s.cmd, ...s.args].join(" ")}`);
  await mountServer(s, mnt);
  const figures = await m.writable(name, mnt);
  await unmountServerAt(mnt);
  await rm(source, { recursive: true, force: true });
  return figures;
}

async function runShadowfs(results: Results, m: Measure, volumeBytes: number): Promise<void> {
  const store = join(work, "shadowfs-store");
  const mnt = join(work, "shadowfs");
  await mkdir(mnt);
  const limit = Math.max(GiB, Math.floor(volumeBytes / 2 / GiB) * GiB);
  say(`shadowfs: init (--size ${gib(volumeBytes)}, shadow storage limit ${gib(limit)}), mount`);
  await shadowfs(["init", store, "--size", gib(volumeBytes), "--shadow-storage-limit", gib(limit)]);
  sameDisk(store);
  await mountShadowfs(store, mnt);
  assertFuse(mnt);
  if (selected("shadowfs")) results.shadowfs = await m.writable("shadowfs", mnt);
  else {
    say("shadowfs: filling the volume (untimed)");
    await m.fill(mnt);
  }
  say("shadowfs: the real tree, node_modules and the stat set for the snapshot (untimed)");
  await m.fillReadSide(mnt);
  const createMs: number[] = [];
  /** Takes a snapshot, timed, and returns its directory. */
  const snapshot = async () => {
    await readStore(store);
    await dropCaches();
    const made = await shadowfs(["snapshot", "create", mnt]);
    const machine = machineSince();
    say(
      `shadowfs: snapshot create ${made.ms.toFixed(1)} ms${machine ? ` (machine: ${machine})` : ""}`,
    );
    createMs.push(made.ms);
    const name = made.stdout.trim().split("\n").at(-1)?.trim() ?? "";
    if (!SNAPSHOT_NAME.test(name))
      throw new Error(`shadowfs snapshot create printed "${made.stdout.trim()}", not a name`);
    const snapDir = join(mnt, ".snapshots", name);
    if (!statSync(snapDir).isDirectory()) throw new Error(`${snapDir} is not a directory`);
    return snapDir;
  };
  if (selected("snapshot")) results.snapshot = await m.readOnly("snapshot", snapshot);
  else await snapshot();
  results.snapshotCreateMs = median(createMs);
  await unmountShadowfs(mnt);
}

/** Median milliseconds of `shadowfs --help`, the command's start-up alone. */
async function cliHelpMs(): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < HELP_RUNS; i++) ms.push((await shadowfs(["--help"])).ms);
  say(`shadowfs --help (ms): ${ms.map((x) => x.toFixed(0)).join(", ")}`);
  return median(ms);
}

/**
 * Reads every file of the store once, untimed. The disk under a virtual machine may keep what
 * was written or read lately in a cache of its own, which dropping this machine's caches leaves
 * alone: on the development machine a store's image read with `dd` after the caches were dropped
 * gave 580 MB/s the first time and 1.8 GB/s the next. Every writable target reads what it has
 * just written; a snapshot reads what production wrote minutes before, with other IO between.
 * So the snapshot's first read finds its bytes where the writable targets find theirs. The
 * caller drops this machine's caches after it.
 */
async function readStore(store: string): Promise<void> {
  await run("sh", ["-c", 'find "$1" -type f -exec cat {} + > /dev/null', "sh", store]);
}

/** Throws unless `path` lies on the same host filesystem as the work directory. */
function sameDisk(path: string): void {
  if (statSync(path).dev !== statSync(work).dev)
    throw new Error(`${path} is not on the same filesystem as ${work}`);
}

async function checkTools(): Promise<void> {
  const tools: [string, string[]][] = [
    ["fio", ["--version"]],
    ["rsync", ["--version"]],
    ["tar", ["--version"]],
  ];
  if (selected("bindfs")) tools.push(["bindfs", ["--version"]]);
  if (selected("bindfs") || selected("ceiling") || opt.extras.length > 0)
    tools.push(["fusermount", ["-V"]]);
  for (const [tool, args] of tools) await requireTool(tool, args);
  if (needShadowfs) sayShadowfsCommand();
}

async function main(): Promise<Results> {
  await checkTools();
  const { size } = opt;
  const free = await diskFree(opt.dir);
  await makeWork(opt.dir);
  const treeSrc = join(work, "tree-src");
  say(`writing the rsync source tree (${TREE_FILES} files, ${TREE_BYTES / MiB} MiB)`);
  await makeTree(treeSrc);
  sameDisk(treeSrc);
  const trees = await makeTreeSources(work, root);
  say(`real tree: ${describe(trees.realCount)}; node_modules: ${describe(trees.tarCount)}`);
  const treeBytes = TREE_BYTES + trees.realCount.bytes + trees.tarCount.bytes;
  /** The shadowfs volume: both fio files, the trees, the stat set and 1 GiB of slack. */
  const volumeBytes = Math.ceil((2 * size + treeBytes + GiB) / GiB) * GiB;
  const need = (needShadowfs ? volumeBytes : 0) + 2 * size + 2 * treeBytes;
  if (free < need)
    throw new Error(
      `${opt.dir}: ${(need / GiB).toFixed(1)} GiB free needed for --size ${opt.sizeText}`,
    );
  // The ceiling holds every file in memory: both fio files and the trees at once.
  const held = 2 * size + treeBytes + GiB / 2;
  if (selected("ceiling") && freemem() < held)
    throw new Error(`ceiling: ${(held / GiB).toFixed(1)} GiB of free memory needed`);
  const m = new Measure({ ...opt, treeSrc, trees });
  const results: Results = {
    host: null,
    bindfs: null,
    ceiling: null,
    shadowfs: null,
    snapshot: null,
    snapshotCreateMs: null,
    cliHelpMs: needShadowfs ? await cliHelpMs() : null,
    extra: {},
  };

  if (selected("host")) {
    const dir = join(work, "host");
    await mkdir(dir);
    sameDisk(dir);
    results.host = await m.writable("host", dir);
    await rm(dir, { recursive: true });
  }
  if (selected("bindfs")) results.bindfs = await runServed("bindfs", "bindfs", m, bindfsServer);
  for (const extra of opt.extras)
    results.extra[extra.name] = await runServed(extra.name, `extra-${extra.name}`, m, (src, mnt) =>
      extraServer(extra, src, mnt),
    );
  if (selected("ceiling"))
    results.ceiling = await runServed("ceiling", "ceiling", m, (_src, mnt) => ceilingServer(mnt));
  if (needShadowfs) await runShadowfs(results, m, volumeBytes);
  describeRun(trees);
  return results;
}

const MiB = 2 ** 20;
let config = "";

/** The run's configuration line and its notes, for the report. */
function describeRun(trees: TreeSources): void {
  const { passes, seconds, nFiles } = opt;
  config =
    `seq file ${opt.sizeText}, random IO ${seconds} s on a ${opt.sizeText} file, ${nFiles} files, ` +
    `${TREE_FILES}-file ${TREE_BYTES / MiB} MiB tree, real tree of ${trees.realCount.files} files ` +
    `(${(trees.realCount.bytes / MB).toFixed(0)} MB), node_modules of ${trees.tarCount.files} files ` +
    `(${(trees.tarCount.bytes / MB).toFixed(0)} MB), in ${opt.dir}`;
  notes.push(
    "fio: psync, queue depth 1, buffered IO; writes end with fsync (end_fsync=1), inside the timing",
    "random reads are buffered: the file fills the page cache as a run goes on, as it would for an application",
    "page cache, dentries and inodes dropped before every phase; a daemon's own caches stay warm",
    `every figure but random IO is the median of ${passes} passes; the snapshot's, each on a snapshot just taken, read for the first time`,
    "create/stat/delete: a separate Node process, fs/promises, 16 operations in flight, no sync",
    "rsync: wall time of rsync -a, no sync; the host-side source or destination is on the same disk",
    `real tree: cp -a of /usr/include and /usr/share/doc made once per run (${describe(trees.realCount)}); ` +
      "wall time of rsync -aHAX into a fresh directory, no sync, then (caches dropped) out to a fresh host directory",
    `small files: node_modules packed once per run into an uncompressed tar (${describe(trees.tarCount)}); ` +
      "tar -xf into a fresh directory, no sync; caches dropped; find DIR -print0 | xargs -0 stat > /dev/null; rm -rf DIR",
  );
  const machine = machineNote();
  if (machine) notes.push(machine);
  if (selected("bindfs"))
    notes.push("bindfs: default options plus big_writes (128 KiB write requests), single-threaded");
  if (selected("ceiling"))
    notes.push(
      "ceiling: scripts/ceiling-fs.ts, files in memory on the patched fuse-native binding (one JS thread), with shadowfs's mount options and attribute timeouts",
    );
  for (const e of opt.extras) notes.push(`${e.name} (--extra): sh -c ${JSON.stringify(e.command)}`);
  if (selected("snapshot"))
    notes.push(
      "snapshot: its real tree and node_modules are written to production untimed after every production figure, before the first snapshot; " +
        "before each snapshot, every file of the store is read once, untimed (a virtual disk may cache what was used lately, below the caches dropped here; every writable target reads what it has just written)",
    );
  if (needShadowfs)
    notes.push(
      `snapshot create: median wall time of the shadowfs snapshot create command (${passes} snapshots), after a sync and a drop of the caches; ` +
        `shadowfs --help: median of ${HELP_RUNS} runs (the command's start-up alone)`,
    );
}

await runBench(main, cleanup, (r: Results) => report(r, opt.json, config));
