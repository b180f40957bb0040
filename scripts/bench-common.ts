// What the benchmarks of mounted shadowfs volumes share: checked options, child processes
// (timed, and stopped at exit), the shadowfs command (the build or the source), the mounts of a
// run and its work directory, the run itself with its cleanup on exit and on SIGINT and SIGTERM,
// and the report (a table, or one JSON line).

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm, statfs, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { withoutExtraCaCerts } from "../src/cli/node-env.js";

export const MB = 1e6;
export const GiB = 2 ** 30;
const RAM_FS = [0x01021994, 0x858458f6]; // tmpfs, ramfs: statfs magic numbers

/** The options every benchmark takes: --json, --keep and --dir. */
export const COMMON_OPTIONS = {
  json: { type: "boolean", default: false },
  keep: { type: "boolean", default: false },
  dir: { type: "string", default: "/var/tmp" },
} as const;

/** The value of a numeric option; throws unless it is above 0 (and whole, with `integer`). */
export function positive(option: string, text: string, integer = false): number {
  const n = Number(text);
  if (integer) {
    if (!(Number.isInteger(n) && n > 0)) throw new Error(`${option} must be a positive integer`);
  } else if (!(n > 0)) throw new Error(`${option} must be a positive number`);
  return n;
}

let name = "bench";
/** Names the benchmark: its messages, and its work directory. */
export function benchName(n: string): void {
  name = n;
}

export const say = (msg: string) => process.stderr.write(`${name}: ${msg}\n`);
/** Notes printed under the figures. */
export const notes: string[] = [];
/** The run's own directory (empty until it is made). */
export let work = "";
/** Processes started here and running. */
export const children = new Set<ChildProcess>();
export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Processes

export interface RunOptions {
  timeoutMs?: number;
  /** Send stdout and stderr to this file and settle when the process exits, without waiting for
   * descendants that keep its output open (a daemon started in the background). */
  log?: string;
  /** The environment, when not this process's. */
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion: its stdout and the wall-clock milliseconds it took. */
export function run(
  cmd: string,
  args: string[],
  opts: RunOptions = {},
): Promise<{ stdout: string; ms: number }> {
  return new Promise((resolveRun, rejectRun) => {
    const logFd = opts.log === undefined ? undefined : openSync(opts.log, "a");
    const t0 = performance.now();
    const child = spawn(cmd, args, {
      env: opts.env,
      stdio: logFd === undefined ? ["ignore", "pipe", "pipe"] : ["ignore", logFd, logFd],
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    let settled = false;
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            stderr += `\n(killed after ${opts.timeoutMs! / 1000} s)`;
            child.kill("SIGTERM");
          }, opts.timeoutMs);
    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      const ms = performance.now() - t0;
      clearTimeout(timer);
      children.delete(child);
      if (logFd !== undefined) closeSync(logFd);
      if (!error) resolveRun({ stdout, ms });
      else {
        const log = opts.log === undefined ? stderr : readFileSync(opts.log, "utf8");
        const tail = log.trim().split("\n").slice(-15).join("\n");
        rejectRun(new Error(`${[cmd, ...args].join(" ")}: ${error.message}\n${tail}`));
      }
    };
    child.on("error", (e) => finish(e));
    child.on(logFd === undefined ? "close" : "exit", (code, signal) =>
      finish(code === 0 ? undefined : new Error(signal ? `killed by ${signal}` : `exit ${code}`)),
    );
  });
}

/** Throws unless `tool ARGS` runs. */
export async function requireTool(tool: string, args: string[]): Promise<void> {
  await run(tool, args).catch(() => {
    throw new Error(`${tool} is missing: run scripts/setup.sh (or apt-get install ${tool})`);
  });
}

/** The newest modification time of the TypeScript files under src/. */
function newestSource(dir = join(root, "src")): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** Whether the build in dist/ (`npm run build`) is at least as new as every source file. */
function distIsFresh(): boolean {
  const built = ["dist/bin/main.js", "dist/src/snapshot/client.js"].map((f) => join(root, f));
  const newest = newestSource();
  return built.every((f) => existsSync(f) && statSync(f).mtimeMs >= newest);
}

export interface Runtime {
  /** How a script of this project is started: node on the build, or tsx on the source. */
  cmd: [string, string[]];
  cli: string;
  client: string;
}
let runtime: Runtime | undefined;

/** The build in dist/ when it is up to date, else the source through tsx. */
export function projectRuntime(): Runtime {
  if (runtime) return runtime;
  const source = join(root, "src");
  if (distIsFresh())
    runtime = {
      cmd: [process.execPath, []],
      cli: join(root, "dist/bin/main.js"),
      client: join(root, "dist/src/snapshot/client.js"),
    };
  else if (existsSync(join(source, "cli/main.ts")))
    runtime = {
      cmd: [join(root, "node_modules/.bin/tsx"), []],
      cli: join(source, "cli/main.ts"),
      client: join(source, "snapshot/client.ts"),
    };
  else throw new Error("no shadowfs command: neither dist/bin/main.js nor src/cli/main.ts");
  return runtime;
}

/** Says how the shadowfs command is started. */
export function sayShadowfsCommand(): void {
  const { cmd, cli } = projectRuntime();
  say(
    `shadowfs command: ${[...cmd.flat(), cli].join(" ")}, without NODE_EXTRA_CA_CERTS, as the installed command starts`,
  );
}

/** Runs the shadowfs command as the installed one starts (see `withoutExtraCaCerts`). */
export function shadowfs(args: string[], opts: RunOptions = {}) {
  const { cmd, cli } = projectRuntime();
  return run(cmd[0], [...cmd[1], cli, ...args], {
    timeoutMs: 300_000,
    env: withoutExtraCaCerts(process.env),
    ...opts,
  });
}

// ---------------------------------------------------------------------------------------------
// Mounts and the work directory

/** Mount points from /proc/mounts, with their filesystem types. */
function mountTable(): Map<string, string> {
  const table = new Map<string, string>();
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const [, point, type] = line.split(" ");
    if (point && type)
      table.set(
        point.replace(/\\([0-7]{3})/g, (_, o: string) =>
          String.fromCharCode(Number.parseInt(o, 8)),
        ),
        type,
      );
  }
  return table;
}

export const isMounted = (path: string) => mountTable().has(path);

export function assertFuse(path: string): void {
  const type = mountTable().get(path);
  if (!type?.startsWith("fuse")) throw new Error(`${path} is not a FUSE mount (${type ?? "none"})`);
}

/** What this run mounted, in order, with how to unmount it. */
export const mounts: { path: string; unmount: () => Promise<void> }[] = [];

/** `shadowfs mount STORE MNT`, its output in the work directory's shadowfs-mount.log; returns
 * that log's path. The caller checks the mount. */
export async function mountShadowfs(store: string, mnt: string): Promise<string> {
  mounts.push({ path: mnt, unmount: () => unmountShadowfs(mnt) });
  const log = join(work, "shadowfs-mount.log");
  await shadowfs(["mount", store, mnt], { log });
  return log;
}

/** The options of a benchmark of one volume filled with data: --passes and --size-mib. */
export const VOLUME_OPTIONS = {
  passes: { type: "string", default: "3" },
  "size-mib": { type: "string", default: "1024" },
} as const;

const MiB = 2 ** 20;

/**
 * A store of `sizeMiB` in the work directory, mounted, with 85% of it in one file of random
 * bytes (`data`), written once, and snapshot `a` taken of it.
 */
export async function filledVolume(
  sizeMiB: number,
): Promise<{ store: string; mnt: string; dataMiB: number }> {
  const store = join(work, "store");
  const mnt = join(work, "mnt");
  await run("mkdir", [mnt]);
  await shadowfs(["init", store, "--size", `${sizeMiB}M`]);
  await mountShadowfs(store, mnt);
  assertFuse(mnt);
  const dataMiB = Math.floor(sizeMiB * 0.85);
  say(`writing ${dataMiB} MiB`);
  await run("bash", ["-c", `head -c ${dataMiB * MiB} /dev/urandom > ${mnt}/data && sync`]);
  await shadowfs(["snapshot", "create", mnt, "--name", "a"]);
  return { store, mnt, dataMiB };
}

/**
 * Overwrites 1% of a `filledVolume` (at least 1 MiB) in MiB runs at random places of its data,
 * then takes snapshot `b`; returns the bytes changed.
 */
export async function changeOnePercent(
  v: { mnt: string; dataMiB: number },
  sizeMiB: number,
): Promise<number> {
  const runs = Math.max(1, Math.round(sizeMiB / 100));
  await run("python3", [
    "-c",
    [
      "import os, random",
      `fd = os.open("${v.mnt}/data", os.O_WRONLY)`,
      `for m in random.sample(range(${v.dataMiB}), ${runs}):`,
      "    os.pwrite(fd, os.urandom(1 << 20), m << 20)",
      "os.close(fd)",
    ].join("\n"),
  ]);
  await shadowfs(["snapshot", "create", v.mnt, "--name", "b"]);
  return runs * MiB;
}

export async function unmountShadowfs(path: string): Promise<void> {
  if (isMounted(path)) {
    await shadowfs(["unmount", path], { timeoutMs: 180_000 }).catch((e: unknown) =>
      say(`shadowfs unmount failed: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
  if (isMounted(path)) {
    say(`${path} still mounted: fusermount -uz`);
    await run("fusermount", ["-uz", path]).catch(() => run("umount", ["-l", path]));
  }
}

/** Unmounts everything mounted here, the last mounted first; says what fails. */
export async function unmountAll(): Promise<void> {
  for (const m of mounts.reverse()) {
    try {
      await m.unmount();
    } catch (e) {
      say(`unmounting ${m.path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** Free bytes on the filesystem of `dir`; throws if it is in memory (tmpfs, ramfs). */
export async function diskFree(dir: string): Promise<number> {
  const fs = await statfs(dir);
  if (RAM_FS.includes(fs.type))
    throw new Error(`${dir} is tmpfs/ramfs: benchmark a real disk (--dir)`);
  return fs.bavail * fs.bsize;
}

/** Makes the work directory under `dir`. */
export async function makeWork(dir: string): Promise<string> {
  work = await mkdtemp(join(dir, `${name}-`));
  say(`working in ${work}`);
  return work;
}

/** Removes the work directory, unless `keep` or something is still mounted. */
export async function removeWork(keep: boolean): Promise<void> {
  const left = mounts.map((m) => m.path).filter(isMounted);
  if (left.length > 0) say(`still mounted: ${left.join(", ")}`);
  if (!work) return;
  if (keep) say(`kept ${work}`);
  else if (left.length === 0) await rm(work, { recursive: true, force: true });
  else say(`not removing ${work}: mounts remain under it`);
}

// ---------------------------------------------------------------------------------------------
// The run and the report

/** Runs `main`, then `cleanup` (once, also on SIGINT and SIGTERM, which end the process), then
 * reports the results unless the run failed or was interrupted. */
export async function runBench<R>(
  main: () => Promise<R>,
  cleanup: () => Promise<void>,
  report: (results: R) => void,
): Promise<void> {
  let interrupted = false;
  let cleaning: Promise<void> | undefined;
  const cleanupOnce = () => {
    cleaning ??= cleanup();
    return cleaning;
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (interrupted) return; // the same signal relayed by tsx, or a second Ctrl-C
      interrupted = true;
      say(`${sig}: stopping, unmounting and removing the work directory`);
      void cleanupOnce().finally(() => process.exit(130));
    });
  }
  let results: R | undefined;
  try {
    results = await main();
  } catch (e) {
    if (!interrupted) {
      say(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exitCode = 1;
    }
  } finally {
    await cleanupOnce();
  }
  if (results && !interrupted) report(results);
}

/** Writes back what is dirty, then drops the page cache: a timed run starts cold. */
export async function dropCaches(): Promise<void> {
  await run("sync", []);
  await writeFile("/proc/sys/vm/drop_caches", "3");
}

/** A timed step: `run(pass)`, after `before(pass)` (untimed). */
export interface Timed {
  run: (pass: number) => Promise<unknown>;
  before?: (pass: number) => Promise<unknown>;
}

/**
 * The median wall times, in seconds, of `passes` runs of each step, taken in turn (a pass of
 * each, then the next pass), each after a drop of the caches: every side finds the machine as
 * the other left it, not as itself did. Every pass is said.
 */
export async function timedInTurn<const S extends readonly Timed[]>(
  passes: number,
  steps: S,
): Promise<{ [K in keyof S]: number }> {
  const s: number[][] = steps.map(() => []);
  for (let i = 0; i < passes; i++)
    for (const [k, step] of steps.entries()) {
      await step.before?.(i);
      await dropCaches();
      const t0 = performance.now();
      await step.run(i);
      s[k]!.push((performance.now() - t0) / 1000);
    }
  for (const x of s) say(`  passes: ${x.map((v) => v.toFixed(2)).join(", ")} s`);
  return s.map(median) as { [K in keyof S]: number };
}

/** `timedInTurn` of one step. */
export const timedPasses = async (
  passes: number,
  run: Timed["run"],
  before?: Timed["before"],
): Promise<number> => (await timedInTurn(passes, [{ run, ...(before ? { before } : {}) }]))[0];

export const round = (x: number | null, digits = 1) =>
  x === null ? null : Number(x.toFixed(digits));
/** The middle value (the upper of the two middle ones for an even count). */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const fmt = (x: number | null, digits = 1) => (x === null ? "-" : x.toFixed(digits));

/** With `json`, the configuration and the notes on stderr and `out` as one line on stdout; else
 * the configuration, the table's lines and the notes on stdout. */
export function printReport(json: boolean, config: string, out: unknown, table: () => string[]) {
  if (json) {
    say(config);
    for (const n of notes) say(`note: ${n}`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const lines = [config, "", ...table()];
  process.stdout.write(`${[...lines, "", ...notes.map((n) => `note: ${n}`)].join("\n")}\n`);
}
