// bench:mount's measurements of one target, a directory it is given: data IO with fio, metadata
// with a separate Node process, tree copies with rsync, small files with tar, find | stat and
// rm -rf, each phase after the caches are dropped, every figure but random IO over several
// passes. It never mounts, and never runs I/O on a mount inside the process serving it.

import { createCipheriv } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { dropCaches as dropAll, fmt, MB, median, notes, run, say, work } from "./bench-common.js";
import { DIGITS, emptyFigures, type Field, type Figures, LABELS } from "./bench-mount-report.js";
import { rmTree, rsyncAHAX, statTree, type TreeSources, untar } from "./bench-mount-trees.js";

const MiB = 2 ** 20;
export const TREE_FILES = 2000;
export const TREE_BYTES = 100 * MiB;
const TREE_DIRS = [10, 4]; // 10 directories of 4 subdirectories each, 50 files in each subdirectory
const META_CONCURRENCY = 16;

export interface MeasureConfig {
  /** --size as given, and in bytes. */
  sizeText: string;
  size: number;
  seconds: number;
  nFiles: number;
  passes: number;
  /** The synthetic rsync source (makeTree). */
  treeSrc: string;
  trees: TreeSources;
}

let dropFailed = false;

/** `dropCaches` of bench-common, so the next phase reads from the filesystem under test rather
 * than from the kernel's memory; where the caches cannot be dropped, the run goes on and says so. */
export async function dropCaches(): Promise<void> {
  try {
    await dropAll();
  } catch (e) {
    if (!dropFailed) {
      dropFailed = true;
      notes.push(`page cache NOT dropped (${(e as Error).message}): reads may come from memory`);
    }
  }
  markMachine();
}

/** Counters of the whole machine, read from /proc: what else a figure went through. */
interface Machine {
  ns: bigint;
  /** Microseconds some task waited for a CPU, and for IO ("some" of /proc/pressure). */
  cpuUs: number;
  ioUs: number;
  /** CPU time the host took from this machine, in USER_HZ ticks summed over its CPUs. */
  stealTicks: number;
  majorFaults: number;
}

const USER_HZ = 100;
const some = (file: string) => Number(/^some .*total=(\d+)/m.exec(readFileSync(file, "utf8"))?.[1]);

/** The counters now; undefined where the kernel lacks one (no pressure stall information). */
function machineNow(): Machine | undefined {
  try {
    const cpuUs = some("/proc/pressure/cpu");
    const ioUs = some("/proc/pressure/io");
    const stealTicks = Number(readFileSync("/proc/stat", "utf8").split(/\s+/, 9)[8]);
    const majorFaults = Number(
      /^pgmajfault (\d+)/m.exec(readFileSync("/proc/vmstat", "utf8"))?.[1],
    );
    if (![cpuUs, ioUs, stealTicks, majorFaults].every(Number.isFinite)) return undefined;
    return { ns: process.hrtime.bigint(), cpuUs, ioUs, stealTicks, majorFaults };
  } catch {
    return undefined;
  }
}

let machineMark = machineNow();

/** Starts what `machineSince` tells: called as a timed step starts (after the caches are dropped). */
function markMachine(): void {
  machineMark = machineNow();
}

/** What the machine went through since `markMachine`, as "cpu 35 io 2 steal 0 majflt 0". */
export function machineSince(): string | undefined {
  const now = machineNow();
  const was = machineMark;
  if (!now || !was) return undefined;
  const us = Number(now.ns - was.ns) / 1000;
  const pct = (d: number) => Math.round((100 * d) / us);
  const steal = (now.stealTicks - was.stealTicks) * (1e6 / USER_HZ);
  return (
    `cpu ${pct(now.cpuUs - was.cpuUs)} io ${pct(now.ioUs - was.ioUs)} ` +
    `steal ${pct(steal / cpus().length)} majflt ${now.majorFaults - was.majorFaults}`
  );
}

/** What the "machine:" lines say, where the kernel gives their counters. */
export const machineNote = (): string | undefined =>
  machineNow() &&
  "machine: over each pass, the share of its time some task waited for a CPU (cpu) and for IO (io), " +
    "by the kernel's pressure stall information; the CPU time the host took from this machine, in % of all its CPUs (steal); " +
    "the major page faults of the whole machine (majflt)";

interface FioJob {
  rw: "write" | "read" | "randwrite" | "randread";
  bs: string;
  file: string;
  timeBased?: boolean;
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

/** The synthetic rsync source: TREE_FILES files of TREE_BYTES in all, in 40 directories, each
 * file's content a fixed AES-CTR keystream (incompressible, the same in every run). */
export async function makeTree(dir: string): Promise<void> {
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

/**
 * The figures of one target, pass by pass. Figures that take seconds to measure move a lot
 * between runs on a shared machine (bindfs's stat rate from 16,000 to 54,000 per second), so
 * each is measured `passes` times and the middle one kept; the 20-second random IO runs, once.
 */
class Passes {
  private readonly got = new Map<Field, number[]>();
  private readonly machine = new Map<Field, string[]>();

  constructor(private readonly name: string) {}

  /** A pass of `field`, measured since the caches were last dropped (or `markMachine`). */
  add(field: Field, value: number): void {
    this.got.set(field, [...(this.got.get(field) ?? []), value]);
    const m = machineSince();
    if (m) this.machine.set(field, [...(this.machine.get(field) ?? []), m]);
  }

  /** The median of each field's passes; says every pass, and what the machine did meanwhile. */
  figures(): Figures {
    const r = emptyFigures();
    for (const [field, values] of this.got) {
      r[field] = median(values);
      const label = `${this.name}: ${LABELS[field]}`;
      if (values.length > 1)
        say(`${label}: ${values.map((v) => fmt(v, DIGITS(field))).join(", ")}`);
      const m = this.machine.get(field);
      if (m) say(`${label}: machine: ${m.join("; ")}`);
    }
    return r;
  }
}

export class Measure {
  constructor(private readonly c: MeasureConfig) {}

  /** One fio job at queue depth 1 with buffered IO; writes end with an fsync that fio times. */
  private async fio(job: FioJob): Promise<{ bwBytes: number; iops: number }> {
    if (job.file.includes(":"))
      throw new Error(`fio cannot take a file name with ":" (${job.file})`);
    const writes = job.rw.includes("write");
    const out = join(work, "fio.json");
    const args = [
      "--name=bench",
      `--filename=${job.file}`,
      `--rw=${job.rw}`,
      `--bs=${job.bs}`,
      `--size=${this.c.size}`,
      "--ioengine=psync",
      "--iodepth=1",
      "--numjobs=1",
      "--fallocate=none",
      "--output-format=json",
      `--output=${out}`,
      ...(writes ? ["--end_fsync=1"] : ["--readonly"]),
      ...(job.rw.startsWith("rand") ? ["--randrepeat=1", "--norandommap"] : []),
      ...(job.timeBased ? ["--time_based", `--runtime=${this.c.seconds}`] : []),
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

  /** Operations per second of `op` on nFiles files of `dir`, measured in a separate process. */
  private async meta(op: "create" | "stat" | "delete", dir: string): Promise<number> {
    const n = this.c.nFiles;
    const args = ["--input-type=module", "-e", META_WORKER, "--", op, dir];
    const { stdout } = await run(process.execPath, [...args, String(n), String(META_CONCURRENCY)]);
    return n / (JSON.parse(stdout) as { seconds: number }).seconds;
  }

  /** Seconds of `rsync FLAGS` from `tree` to a fresh host directory, caches dropped first. */
  private async rsyncOut(tree: string, flags: string): Promise<number> {
    const out = join(work, "out");
    await rm(out, { recursive: true, force: true });
    await dropCaches();
    const { ms } = await run("rsync", [flags, `${tree}/`, out]);
    await rm(out, { recursive: true, force: true });
    return ms / 1000;
  }

  /** Every figure on a writable target. Each phase starts with the caches dropped. It leaves
   * seq.dat, rand.dat and tree/ in `dir`; the real tree and the small files it removes. */
  async writable(name: string, dir: string): Promise<Figures> {
    const { passes, seconds, sizeText, nFiles, trees } = this.c;
    const got = new Passes(name);
    const seqFile = join(dir, "seq.dat");
    const randFile = join(dir, "rand.dat");
    say(`${name}: sequential write and read of ${sizeText} in 128 KiB blocks, ${passes} times`);
    for (let pass = 0; pass < passes; pass++) {
      await rm(seqFile, { force: true });
      await dropCaches();
      const write = await this.fio({ rw: "write", bs: "128k", file: seqFile });
      got.add("seqWriteMBps", write.bwBytes / MB);
      await dropCaches();
      const read = await this.fio({ rw: "read", bs: "128k", file: seqFile });
      got.add("seqReadMBps", read.bwBytes / MB);
    }

    say(`${name}: random 4 KiB writes, then reads, for ${seconds} s each on a ${sizeText} file`);
    await this.fio({ rw: "write", bs: "1m", file: randFile }); // lays the file out, untimed
    await dropCaches();
    const rw = await this.fio({ rw: "randwrite", bs: "4k", file: randFile, timeBased: true });
    got.add("randWriteIops", rw.iops);
    await dropCaches();
    const rr = await this.fio({ rw: "randread", bs: "4k", file: randFile, timeBased: true });
    got.add("randReadIops", rr.iops);

    say(`${name}: create, stat and delete ${nFiles} files in one directory, ${passes} times`);
    const metaDir = join(dir, "meta");
    for (let pass = 0; pass < passes; pass++) {
      await mkdir(metaDir);
      await dropCaches();
      got.add("createPerSec", await this.meta("create", metaDir));
      await dropCaches();
      got.add("statPerSec", await this.meta("stat", metaDir));
      await dropCaches();
      got.add("deletePerSec", await this.meta("delete", metaDir));
      await rm(metaDir, { recursive: true });
    }

    say(
      `${name}: rsync -a of ${TREE_FILES} files (${TREE_BYTES / MiB} MiB) in and out, ${passes} times`,
    );
    const tree = join(dir, "tree");
    for (let pass = 0; pass < passes; pass++) {
      await rm(tree, { recursive: true, force: true });
      await dropCaches();
      got.add("rsyncInSec", (await run("rsync", ["-a", `${this.c.treeSrc}/`, tree])).ms / 1000);
      got.add("rsyncOutSec", await this.rsyncOut(tree, "-a"));
    }

    say(`${name}: rsync -aHAX of the real tree in and out, ${passes} times`);
    const real = join(dir, "real");
    for (let pass = 0; pass < passes; pass++) {
      await rm(real, { recursive: true, force: true });
      await dropCaches();
      got.add("treeRsyncInSec", await rsyncAHAX(trees.real, real));
      got.add("treeRsyncOutSec", await this.rsyncOut(real, "-aHAX"));
    }
    await rm(real, { recursive: true, force: true });

    say(`${name}: untar node_modules, find | xargs stat, rm -rf, ${passes} times`);
    const small = join(dir, "node_modules");
    for (let pass = 0; pass < passes; pass++) {
      await dropCaches();
      got.add("untarSec", await untar(trees.tarball, small));
      await dropCaches();
      got.add("statTreeSec", await statTree(small));
      markMachine();
      got.add("rmTreeSec", await rmTree(small));
    }
    return got.figures();
  }

  /**
   * The read-side figures of snapshots of a volume filled by `writable` (or `fill`) and then
   * `fillReadSide`, each pass on a snapshot `snapshot` has just taken, read for the first time;
   * random reads on the first.
   */
  async readOnly(name: string, snapshot: () => Promise<string>): Promise<Figures> {
    const { passes, seconds, sizeText, nFiles } = this.c;
    const got = new Passes(name);
    say(
      `${name}: sequential read of ${sizeText}, stat of ${nFiles} files, rsync -a of ${TREE_FILES} files out, ` +
        `rsync -aHAX of the real tree out, find | stat of node_modules, ${passes} times`,
    );
    for (let pass = 0; pass < passes; pass++) {
      const dir = await snapshot();
      await dropCaches();
      const seqFile = join(dir, "seq.dat");
      const read = await this.fio({ rw: "read", bs: "128k", file: seqFile });
      got.add("seqReadMBps", read.bwBytes / MB);
      if (pass === 0) {
        say(`${name}: random 4 KiB reads for ${seconds} s`);
        await dropCaches();
        const randFile = join(dir, "rand.dat");
        const rr = await this.fio({ rw: "randread", bs: "4k", file: randFile, timeBased: true });
        got.add("randReadIops", rr.iops);
      }
      await dropCaches();
      got.add("statPerSec", await this.meta("stat", join(dir, "statset")));
      got.add("rsyncOutSec", await this.rsyncOut(join(dir, "tree"), "-a"));
      got.add("treeRsyncOutSec", await this.rsyncOut(join(dir, "real"), "-aHAX"));
      await dropCaches();
      got.add("statTreeSec", await statTree(join(dir, "node_modules")));
    }
    return got.figures();
  }

  /** The same files as `writable` leaves, without measuring anything. */
  async fill(dir: string): Promise<void> {
    await this.fio({ rw: "write", bs: "1m", file: join(dir, "seq.dat") });
    await this.fio({ rw: "write", bs: "1m", file: join(dir, "rand.dat") });
    await run("rsync", ["-a", `${this.c.treeSrc}/`, join(dir, "tree")]);
  }

  /** What a snapshot's read side reads besides: the real tree and the untarred node_modules,
   * and `nFiles` files for its stat figure; untimed. */
  async fillReadSide(dir: string): Promise<void> {
    await rsyncAHAX(this.c.trees.real, join(dir, "real"));
    await untar(this.c.trees.tarball, join(dir, "node_modules"));
    await mkdir(join(dir, "statset"));
    await this.meta("create", join(dir, "statset"));
  }
}
