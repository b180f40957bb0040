// Benchmark of mounted filesystems, side by side on one disk: a plain host directory, bindfs
// mirroring a host directory (about the best a FUSE filesystem can do), a shadowfs mount, the
// read side of a shadowfs snapshot, and any other FUSE filesystem named with --extra NAME=COMMAND
// (COMMAND, run by sh in the foreground, serves {mnt}, e.g. mirroring {src}, a fresh host
// directory; both substituted shell-quoted; its figures go under `extra.NAME`). Data IO is measured with fio, metadata with a separate
// Node process, tree copies with rsync. It owns one temporary directory (under --dir, default
// /var/tmp), and unmounts everything it mounted and removes that directory at exit, also on
// SIGINT and SIGTERM.

import { createCipheriv } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  assertFuse,
  benchName,
  COMMON_OPTIONS,
  children,
  diskFree,
  fmt,
  GiB,
  MB,
  makeWork,
  median,
  mountShadowfs,
  notes,
  positive,
  printReport,
  removeWork,
  requireTool,
  round,
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
  type Extra,
  extraServer,
  mountServer,
  parseExtra,
  unmountServerAt,
} from "./bench-servers.js";

const MiB = 2 ** 20;
const TREE_FILES = 2000;
const TREE_BYTES = 100 * MiB;
const TREE_DIRS = [10, 4]; // 10 directories of 4 subdirectories each, 50 files in each subdirectory
const META_CONCURRENCY = 16;
const SNAPSHOT_NAME = /^@GMT-\d{4}\.\d{2}\.\d{2}-\d{2}\.\d{2}\.\d{2}$/;
const TARGETS = ["host", "bindfs", "shadowfs", "snapshot"] as const;
const FIELDS = [
  "seqWriteMBps",
  "seqReadMBps",
  "randWriteIops",
  "randReadIops",
  "createPerSec",
  "statPerSec",
  "deletePerSec",
  "rsyncInSec",
  "rsyncOutSec",
] as const;

type TargetName = (typeof TARGETS)[number];
type Field = (typeof FIELDS)[number];
type Figures = Record<Field, number | null>;

/** Bytes from "65536", "64K", "256M", "1G", "1GiB" (binary units). */
function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}": use bytes or e.g. 64K, 256M, 1G`);
  return Number(m[1]) * 1024 ** " KMGT".indexOf(m[2]!.toUpperCase() || " ");
}

benchName("bench-mount");
const { values: opt } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    size: { type: "string", default: "1G" },
    seconds: { type: "string", default: "20" },
    files: { type: "string", default: "10000" },
    only: { type: "string" },
    passes: { type: "string", default: "5" },
    // NAME=COMMAND, repeatable: COMMAND (sh) serves a FUSE filesystem in the foreground at {mnt},
    // optionally mirroring {src}, a fresh host directory; both substituted shell-quoted.
    extra: { type: "string", multiple: true, default: [] },
  },
});
const size = parseSize(opt.size);
const extras: Extra[] = [];
for (const spec of opt.extra)
  extras.push(parseExtra(spec, [...TARGETS, ...extras.map((e) => e.name)]));
const allTargets = [...TARGETS, ...extras.map((e) => e.name)];
const only = new Set((opt.only ?? allTargets.join(",")).split(",").map((s) => s.trim()));
for (const name of only)
  if (!allTargets.includes(name))
    throw new Error(`--only: unknown target "${name}" (targets: ${allTargets.join(", ")})`);
for (const e of extras)
  if (!only.has(e.name)) say(`--extra ${e.name} is not in --only: it will not run`);
if (size <= 0 || size % (128 * 1024) !== 0)
  throw new Error("--size must be a positive multiple of 128 KiB");
const seconds = positive("--seconds", opt.seconds);
const nFiles = positive("--files", opt.files, true);
const passes = positive("--passes", opt.passes, true);

const selected = (t: string) => only.has(t);
const extrasRun = extras.filter((e) => selected(e.name));
const needShadowfs = selected("shadowfs") || selected("snapshot");

// ---------------------------------------------------------------------------------------------
// Processes

/** Processes other than this one whose command line names the work directory: the shadowfs
 * daemon started for this run's store and mount point. */
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

// ---------------------------------------------------------------------------------------------
// Mounts

/** Unmounts everything mounted here, ends what is left of this run's processes, removes the work
 * directory (unless --keep). */
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
// Measurements

let dropFailed = false;
let cliStartMs = 0;

/** Writes dirty data back and empties the page, dentry and inode caches, so the next phase
 * reads from the filesystem under test rather than from the kernel's memory. */
async function dropCaches(): Promise<void> {
  await run("sync", []);
  try {
    await writeFile("/proc/sys/vm/drop_caches", "3");
  } catch (e) {
    if (!dropFailed) {
      dropFailed = true;
      notes.push(`page cache NOT dropped (${(e as Error).message}): reads may come from memory`);
    }
  }
}

interface FioJob {
  rw: "write" | "read" | "randwrite" | "randread";
  bs: string;
  file: string;
  timeBased?: boolean;
}

/** One fio job at queue depth 1 with buffered IO; writes end with an fsync that fio times. */
async function fio(job: FioJob): Promise<{ bwBytes: number; iops: number }> {
  if (job.file.includes(":")) throw new Error(`fio cannot take a file name with ":" (${job.file})`);
  const writes = job.rw.includes("write");
  const out = join(work, "fio.json");
  const args = [
    "--name=bench",
    `--filename=${job.file}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--size=${size}`,
    "--ioengine=psync",
    "--iodepth=1",
    "--numjobs=1",
    "--fallocate=none",
    "--output-format=json",
    `--output=${out}`,
    ...(writes ? ["--end_fsync=1"] : ["--readonly"]),
    ...(job.rw.startsWith("rand") ? ["--randrepeat=1", "--norandommap"] : []),
    ...(job.timeBased ? ["--time_based", `--runtime=${seconds}`] : []),
  ];
  await run("fio", args);
  const text = await readFile(out, "utf8");
  // fio may put warnings ahead of the JSON document
  type Side = { bw_bytes: number; iops: number };
  const report = JSON.parse(text.slice(text.indexOf("{"))) as {
    jobs: { error: number; read: Side; write: Side }[];
  };
  const j = report.jobs[0];
  if (!j || j.error) throw new Error(`fio ${job.rw} on ${job.file}: error ${j?.error}`);
  const side = writes ? j.write : j.read;
  return { bwBytes: side.bw_bytes, iops: side.iops };
}

// Creates, stats or deletes files f0..f{n-1} of one directory, META_CONCURRENCY at a time, and
// prints the seconds that took. It runs as its own process, never inside a filesystem's server.
const META_WORKER = `
import { open, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
const [op, dir, count, width] = process.argv.slice(-4);
const n = Number(count);
const ops = {
  create: async (p) => (await open(p, "wx")).close(),
  stat: (p) => stat(p),
  delete: (p) => unlink(p),
};
const one = ops[op];
let next = 0;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: Number(width) }, async () => {
    while (next < n) await one(join(dir, "f" + next++));
  }),
);
process.stdout.write(JSON.stringify({ seconds: (performance.now() - t0) / 1000 }));
`;

/** Operations per second of `op` on nFiles files of `dir`, measured in a separate process. */
async function meta(op: "create" | "stat" | "delete", dir: string): Promise<number> {
  const args = ["--input-type=module", "-e", META_WORKER, "--", op, dir];
  const { stdout } = await run(process.execPath, [
    ...args,
    String(nFiles),
    String(META_CONCURRENCY),
  ]);
  return nFiles / (JSON.parse(stdout) as { seconds: number }).seconds;
}

/** The rsync source: TREE_FILES files of TREE_BYTES in all, in 40 directories, each file's
 * content a fixed AES-CTR keystream (incompressible, the same in every run). */
async function makeTree(dir: string): Promise<void> {
  const [tops, subs] = TREE_DIRS as [number, number];
  const perDir = TREE_FILES / (tops * subs);
  let s = 12345;
  const weights = Array.from({ length: TREE_FILES }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 0.1 + 1.9 * (s / 2 ** 32);
  });
  const total = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((w / total) * TREE_BYTES));
  sizes[0]! += TREE_BYTES - sizes.reduce((a, b) => a + b, 0);
  const key = Buffer.alloc(16, 7);
  for (let i = 0; i < TREE_FILES; i++) {
    const top = Math.floor(i / (perDir * subs));
    const sub = Math.floor(i / perDir) % subs;
    const d = join(dir, `d${top}`, `s${sub}`);
    if (i % perDir === 0) await mkdir(d, { recursive: true });
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(i, 0);
    const data = createCipheriv("aes-128-ctr", key, iv).update(Buffer.alloc(sizes[i]!));
    await writeFile(join(d, `f${i}.bin`), data);
  }
}

const emptyFigures = (): Figures =>
  Object.fromEntries(FIELDS.map((f) => [f, null])) as unknown as Figures;

/**
 * The figures of one target, pass by pass. Figures that take seconds to measure move a lot
 * between runs on a shared machine (bindfs's stat rate from 16,000 to 54,000 per second), so
 * each is measured `passes` times and the middle one kept; the 20-second random IO runs, once.
 */
class Passes {
  private readonly got = new Map<Field, number[]>();

  constructor(private readonly name: string) {}

  add(field: Field, value: number): void {
    this.got.set(field, [...(this.got.get(field) ?? []), value]);
  }

  /** The median of each field's passes; says every pass. */
  figures(): Figures {
    const r = emptyFigures();
    for (const [field, values] of this.got) {
      r[field] = median(values);
      if (values.length > 1)
        say(
          `${this.name}: ${LABELS[field]}: ${values.map((v) => fmt(v, DIGITS(field))).join(", ")}`,
        );
    }
    return r;
  }
}

/** Every figure on a writable target. Each phase starts with the caches dropped. It leaves
 * seq.dat, rand.dat and tree/ in `dir`. */
async function measureWritable(name: string, dir: string, treeSrc: string): Promise<Figures> {
  const got = new Passes(name);
  const seqFile = join(dir, "seq.dat");
  const randFile = join(dir, "rand.dat");
  say(`${name}: sequential write and read of ${opt.size} in 128 KiB blocks, ${passes} times`);
  for (let pass = 0; pass < passes; pass++) {
    await rm(seqFile, { force: true });
    await dropCaches();
    got.add("seqWriteMBps", (await fio({ rw: "write", bs: "128k", file: seqFile })).bwBytes / MB);
    await dropCaches();
    got.add("seqReadMBps", (await fio({ rw: "read", bs: "128k", file: seqFile })).bwBytes / MB);
  }

  say(`${name}: random 4 KiB writes, then reads, for ${seconds} s each on a ${opt.size} file`);
  await fio({ rw: "write", bs: "1m", file: randFile }); // lays the file out, untimed
  await dropCaches();
  got.add(
    "randWriteIops",
    (await fio({ rw: "randwrite", bs: "4k", file: randFile, timeBased: true })).iops,
  );
  await dropCaches();
  got.add(
    "randReadIops",
    (await fio({ rw: "randread", bs: "4k", file: randFile, timeBased: true })).iops,
  );

  say(`${name}: create, stat and delete ${nFiles} files in one directory, ${passes} times`);
  const metaDir = join(dir, "meta");
  for (let pass = 0; pass < passes; pass++) {
    await mkdir(metaDir);
    await dropCaches();
    got.add("createPerSec", await meta("create", metaDir));
    await dropCaches();
    got.add("statPerSec", await meta("stat", metaDir));
    await dropCaches();
    got.add("deletePerSec", await meta("delete", metaDir));
    await rm(metaDir, { recursive: true });
  }

  say(
    `${name}: rsync -a of ${TREE_FILES} files (${TREE_BYTES / MiB} MiB) in and out, ${passes} times`,
  );
  const tree = join(dir, "tree");
  for (let pass = 0; pass < passes; pass++) {
    await rm(tree, { recursive: true, force: true });
    await dropCaches();
    got.add("rsyncInSec", (await run("rsync", ["-a", `${treeSrc}/`, tree])).ms / 1000);
    got.add("rsyncOutSec", await rsyncOut(tree));
  }
  return got.figures();
}

/** Seconds of `rsync -a` from `tree` to a fresh host directory, caches dropped first. */
async function rsyncOut(tree: string): Promise<number> {
  const out = join(work, "out");
  await rm(out, { recursive: true, force: true });
  await dropCaches();
  const { ms } = await run("rsync", ["-a", `${tree}/`, out]);
  await rm(out, { recursive: true, force: true });
  return ms / 1000;
}

/**
 * The read-side figures of snapshots of a volume filled by measureWritable (or fill), each pass
 * on a snapshot `snapshot` has just taken, read for the first time; random reads on the first.
 */
async function measureReadOnly(name: string, snapshot: () => Promise<string>): Promise<Figures> {
  const got = new Passes(name);
  say(
    `${name}: sequential read of ${opt.size}, stat of ${nFiles} files, rsync -a of ${TREE_FILES} files out, ${passes} times`,
  );
  for (let pass = 0; pass < passes; pass++) {
    const dir = await snapshot();
    await dropCaches();
    const seqFile = join(dir, "seq.dat");
    got.add("seqReadMBps", (await fio({ rw: "read", bs: "128k", file: seqFile })).bwBytes / MB);
    if (pass === 0) {
      say(`${name}: random 4 KiB reads for ${seconds} s`);
      await dropCaches();
      const randFile = join(dir, "rand.dat");
      got.add(
        "randReadIops",
        (await fio({ rw: "randread", bs: "4k", file: randFile, timeBased: true })).iops,
      );
    }
    await dropCaches();
    got.add("statPerSec", await meta("stat", join(dir, "statset")));
    got.add("rsyncOutSec", await rsyncOut(join(dir, "tree")));
  }
  return got.figures();
}

/** The same files as measureWritable leaves, without measuring anything. */
async function fill(dir: string, treeSrc: string): Promise<void> {
  say("shadowfs: filling the volume (untimed)");
  await fio({ rw: "write", bs: "1m", file: join(dir, "seq.dat") });
  await fio({ rw: "write", bs: "1m", file: join(dir, "rand.dat") });
  await run("rsync", ["-a", `${treeSrc}/`, join(dir, "tree")]);
}

// ---------------------------------------------------------------------------------------------
// Targets

type Results = Record<TargetName, Figures | null> & {
  snapshotCreateMs: number | null;
  /** The --extra filesystems', by name. */
  extra: Record<string, Figures>;
};

const gib = (bytes: number) => `${Math.ceil(bytes / GiB)}G`;
/** The shadowfs volume: both fio files, the tree, the stat set and 1 GiB of slack. */
const volumeBytes = Math.ceil((2 * size + TREE_BYTES + GiB) / GiB) * GiB;

async function runShadowfs(results: Results, treeSrc: string): Promise<void> {
  const store = join(work, "shadowfs-store");
  const mnt = join(work, "shadowfs");
  await mkdir(mnt);
  const limit = Math.max(GiB, Math.floor(volumeBytes / 2 / GiB) * GiB);
  say(`shadowfs: init (--size ${gib(volumeBytes)}, shadow storage limit ${gib(limit)}), mount`);
  await shadowfs(["init", store, "--size", gib(volumeBytes), "--shadow-storage-limit", gib(limit)]);
  sameDisk(store);
  await mountShadowfs(store, mnt);
  assertFuse(mnt);
  if (selected("shadowfs")) results.shadowfs = await measureWritable("shadowfs", mnt, treeSrc);
  else await fill(mnt, treeSrc);

  say(`shadowfs: ${nFiles} files for the snapshot's stat figure (untimed)`);
  await mkdir(join(mnt, "statset"));
  await meta("create", join(mnt, "statset"));
  cliStartMs = (await shadowfs(["--help"])).ms;
  const createMs: number[] = [];
  /** Takes a snapshot, timed, and returns its directory. */
  const snapshot = async () => {
    await run("sync", []);
    say("shadowfs: snapshot create");
    const made = await shadowfs(["snapshot", "create", mnt]);
    createMs.push(made.ms);
    const name = made.stdout.trim().split("\n").at(-1)?.trim() ?? "";
    if (!SNAPSHOT_NAME.test(name))
      throw new Error(`shadowfs snapshot create printed "${made.stdout.trim()}", not a name`);
    const snapDir = join(mnt, ".snapshots", name);
    if (!statSync(snapDir).isDirectory()) throw new Error(`${snapDir} is not a directory`);
    return snapDir;
  };
  if (selected("snapshot")) results.snapshot = await measureReadOnly("snapshot", snapshot);
  else await snapshot();
  results.snapshotCreateMs = median(createMs);
  await unmountShadowfs(mnt);
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
  ];
  if (selected("bindfs")) tools.push(["bindfs", ["--version"]]);
  if (selected("bindfs") || extrasRun.length > 0) tools.push(["fusermount", ["-V"]]);
  for (const [tool, args] of tools) await requireTool(tool, args);
  if (needShadowfs) sayShadowfsCommand();
}

async function main(): Promise<Results> {
  await checkTools();
  const free = await diskFree(opt.dir);
  const need = (needShadowfs ? volumeBytes : 2 * size) + 2 * size + 4 * TREE_BYTES;
  if (free < need)
    throw new Error(
      `${opt.dir}: ${(need / GiB).toFixed(1)} GiB free needed for --size ${opt.size}`,
    );
  await makeWork(opt.dir);
  const results: Results = {
    host: null,
    bindfs: null,
    shadowfs: null,
    snapshot: null,
    snapshotCreateMs: null,
    extra: {},
  };
  const treeSrc = join(work, "tree-src");
  say(`writing the rsync source tree (${TREE_FILES} files, ${TREE_BYTES / MiB} MiB)`);
  await makeTree(treeSrc);
  sameDisk(treeSrc);

  if (selected("host")) {
    const dir = join(work, "host");
    await mkdir(dir);
    sameDisk(dir);
    results.host = await measureWritable("host", dir, treeSrc);
    await rm(dir, { recursive: true });
  }
  if (selected("bindfs")) {
    const source = join(work, "bindfs-source");
    const mnt = join(work, "bindfs");
    await mkdir(source);
    await mkdir(mnt);
    sameDisk(source);
    // big_writes: writes of up to 128 KiB per request instead of 4 KiB (libfuse 2), as a FUSE
    // filesystem at its best.
    const args = ["-f", "-o", "big_writes", source, mnt];
    await mountServer({ label: "bindfs", cmd: "bindfs", args }, mnt);
    results.bindfs = await measureWritable("bindfs", mnt, treeSrc);
    await unmountServerAt(mnt);
    await rm(source, { recursive: true });
  }
  for (const extra of extrasRun) {
    const source = join(work, `extra-${extra.name}-source`);
    const mnt = join(work, `extra-${extra.name}`);
    await mkdir(source);
    await mkdir(mnt);
    const server = extraServer(extra, source, mnt);
    say(`${extra.name}: sh -c ${server.args[1]}`);
    await mountServer(server, mnt);
    results.extra[extra.name] = await measureWritable(extra.name, mnt, treeSrc);
    await unmountServerAt(mnt);
    await rm(source, { recursive: true, force: true });
  }
  if (needShadowfs) await runShadowfs(results, treeSrc);
  return results;
}

// ---------------------------------------------------------------------------------------------
// Report

const LABELS: Record<Field, string> = {
  seqWriteMBps: "seq write 128K (MB/s)",
  seqReadMBps: "seq read 128K (MB/s)",
  randWriteIops: "random write 4K (IOPS)",
  randReadIops: "random read 4K (IOPS)",
  createPerSec: "create (files/s)",
  statPerSec: "stat (files/s)",
  deletePerSec: "delete (files/s)",
  rsyncInSec: "rsync in (s)",
  rsyncOutSec: "rsync out (s)",
};
const isSeconds = (f: Field) => f === "rsyncInSec" || f === "rsyncOutSec";
const DIGITS = (f: Field) => (f.endsWith("MBps") ? 1 : isSeconds(f) ? 3 : 0);

/** Relative performance of `a` against `b` (above 1: `a` is faster), or null. */
function faster(field: Field, a: number | null | undefined, b: number | null | undefined) {
  if (a == null || b == null || a === 0 || b === 0) return null;
  return isSeconds(field) ? b / a : a / b;
}

const rounded = (f: Figures | null) =>
  f && Object.fromEntries(FIELDS.map((k) => [k, round(f[k], DIGITS(k))]));

function report(r: Results): void {
  const out = {
    ...Object.fromEntries(TARGETS.map((t) => [t, rounded(r[t])])),
    snapshotCreateMs: round(r.snapshotCreateMs, 1),
    extra: Object.fromEntries(Object.entries(r.extra).map(([name, f]) => [name, rounded(f)])),
  };
  const config = `seq file ${opt.size}, random IO ${seconds} s on a ${opt.size} file, ${nFiles} files, ${TREE_FILES}-file ${TREE_BYTES / MiB} MiB tree, in ${opt.dir}`;
  notes.push(
    "fio: psync, queue depth 1, buffered IO; writes end with fsync (end_fsync=1), inside the timing",
    "random reads are buffered: the file fills the page cache as a run goes on, as it would for an application",
    "page cache, dentries and inodes dropped before every phase; a daemon's own caches stay warm",
    `every figure but random IO is the median of ${passes} passes; the snapshot's, each on a snapshot just taken, read for the first time`,
    `create/stat/delete: a separate Node process, fs/promises, ${META_CONCURRENCY} operations in flight, no sync`,
    "rsync: wall time of rsync -a, no sync; the host-side source or destination is on the same disk",
  );
  if (r.bindfs)
    notes.push("bindfs: default options plus big_writes (128 KiB write requests), single-threaded");
  for (const e of extrasRun)
    if (r.extra[e.name]) notes.push(`${e.name} (--extra): sh -c ${JSON.stringify(e.command)}`);
  if (r.snapshotCreateMs !== null)
    notes.push(
      `snapshot create: median wall time of the shadowfs snapshot create command (${passes} snapshots), after a sync; ` +
        `the command's start-up alone (shadowfs --help) takes ${cliStartMs.toFixed(0)} ms`,
    );
  printReport(opt.json, config, out, () => table(r));
}

/** The figures of every target that ran, then how they compare. */
function table(r: Results): string[] {
  const columns = new Map<string, Figures>();
  for (const t of TARGETS) if (r[t]) columns.set(t, r[t]);
  for (const [name, f] of Object.entries(r.extra)) columns.set(name, f);
  const ran = [...columns.keys()];
  const pairs = [
    ["bindfs", "host"],
    ["shadowfs", "bindfs"],
    ["shadowfs", "host"],
    ["snapshot", "bindfs"],
    ["snapshot", "host"],
    ...Object.keys(r.extra).map((name) => [name, "bindfs"]),
  ].filter(([a, b]) => columns.has(a!) && columns.has(b!)) as [string, string][];
  const width = Math.max(12, ...ran.map((t) => t.length + 2));
  const lines = ["metric".padEnd(24) + ran.map((t) => t.padStart(width)).join("")];
  for (const f of FIELDS)
    lines.push(
      LABELS[f].padEnd(24) +
        ran.map((t) => fmt(columns.get(t)![f], DIGITS(f)).padStart(width)).join(""),
    );
  if (r.snapshotCreateMs !== null)
    lines.push(`${"snapshot create (ms)".padEnd(24)}${fmt(r.snapshotCreateMs, 1).padStart(12)}`);
  if (pairs.length > 0) {
    lines.push("", "relative performance, a/b: 1.00 the same, below 1 slower, above 1 faster");
    const w = Math.max(16, ...pairs.map(([a, b]) => a.length + b.length + 3));
    lines.push("a/b".padEnd(24) + pairs.map(([a, b]) => `${a}/${b}`.padStart(w)).join(""));
    for (const f of FIELDS) {
      const ratio = (a: string, b: string) => faster(f, columns.get(a)![f], columns.get(b)![f]);
      const ratios = pairs.map(([a, b]) => fmt(ratio(a, b), 2).padStart(w));
      lines.push(LABELS[f].padEnd(24) + ratios.join(""));
    }
  }
  return lines;
}

await runBench(main, cleanup, report);
