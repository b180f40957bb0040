// Real stores mounted through the real `shadowfs` binary (built into dist/), in temporary
// directories; `cleanup` detaches every mount and stops every daemon a test started.

import { execFile, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, expect } from "vitest";

export const CLI = resolve("dist/bin/main.js");

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `shadowfs ARGS`; never throws: the exit code is in the result. */
export function shadowfs(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 1 << 26 }, (err, stdout, stderr) =>
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Runs `shadowfs ARGS` and returns its stdout; a non-zero exit fails with its stderr. */
export async function ok(...args: string[]): Promise<string> {
  const r = await shadowfs(...args);
  if (r.code !== 0) throw new Error(`shadowfs ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Runs a shell command (a real tool on the mount); returns its result, never throws. */
export function sh(command: string, cwd?: string): Run {
  const r = spawnSync("bash", ["-c", command], { cwd, encoding: "utf8", maxBuffer: 1 << 26 });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** `sh`, failing on a non-zero exit. */
export function run(command: string, cwd?: string): string {
  const r = sh(command, cwd);
  if (r.code !== 0) throw new Error(`${command} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export interface Scratch {
  dir: string;
  store: string;
  mnt: string;
  /** Detaches every mount below `dir`, stops the daemons of its stores, removes it. */
  cleanup(): Promise<void>;
}

const daemonPid = (store: string): number | undefined => {
  try {
    const pid = Number.parseInt(readFileSync(join(store, "lock"), "utf8"), 10);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
};

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function scratch(): Promise<Scratch> {
  const dir = await mkdtemp(join(tmpdir(), "shadowfs-mount-"));
  const store = join(dir, "store");
  const mnt = join(dir, "mnt");
  await mkdir(mnt);
  return {
    dir,
    store,
    mnt,
    async cleanup() {
      const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith(`${dir}/`));
      const pids = [store, ...(await storesIn(dir))].map(daemonPid).filter((p) => p !== undefined);
      for (const m of mounts.reverse()) spawnSync("fusermount", ["-uz", m]);
      for (const pid of pids) {
        if (!alive(pid)) continue;
        process.kill(pid, "SIGTERM");
        for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
        if (alive(pid)) process.kill(pid, "SIGKILL");
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Store directories directly below `dir` (a test may make more than one). */
async function storesIn(dir: string): Promise<string[]> {
  const { readdir } = await import("node:fs/promises");
  return (await readdir(dir)).map((n) => join(dir, n)).filter((p) => existsSync(join(p, "volume")));
}

/** Makes a store and mounts it; returns once the mount is live. */
export async function mounted(size = "1G", ...mountArgs: string[]): Promise<Scratch> {
  const s = await scratch();
  try {
    await ok("init", s.store, "--size", size);
    await ok("mount", s.store, s.mnt, ...mountArgs);
  } catch (e) {
    await s.cleanup();
    throw e;
  }
  return s;
}

/** The pid written in a store's lock file, whether that process still runs or not. */
export function lockPid(store: string): number | undefined {
  return daemonPid(store);
}

/** Is `pid` still running? A zombie (dead, not yet reaped) counts as gone. */
export function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The processes in process group `pgid` (read from /proc; zombies included). */
export function processGroup(pgid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[2]) === pgid) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Is `pid` still in the process table (running, or a zombie not yet reaped)? */
export const exists = (pid: number): boolean => existsSync(`/proc/${pid}`);

/** The mount points at or below `dir`, as the kernel lists them. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return (await readFile("/proc/self/mountinfo", "utf8"))
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " "))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** Polls `check` until it holds; fails naming `what` after `ms` milliseconds. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A process running in the background (`bash -c COMMAND`); `stop` kills it by its pid. */
export interface Background {
  pid: number;
  /** Everything it has written to stdout so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves with its exit code (or the signal that ended it). */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function background(command: string): Background {
  const child = spawn("bash", ["-c", command], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const exited = new Promise<number | string>((done) =>
    child.on("close", (code, signal) => done(code ?? signal ?? -1)),
  );
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  const pid = child.pid;
  return {
    pid,
    get stdout() {
      return out;
    },
    get stderr() {
      return err;
    },
    exited,
    async stop(signal: NodeJS.Signals = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, signal);
      return exited;
    },
  };
}

export interface ScratchEachTestOptions {
  /** Runs after a test's background processes are stopped, before its scratch is cleaned up. */
  beforeCleanup?: (s: Scratch) => void | Promise<void>;
  /** After each test, fail if a mount is left below its scratch directory. */
  checkEach?: boolean;
  /** After all tests, fail if a mount is left below any scratch directory, and wait until every
   * daemon mounted through `mount` has exited. */
  checkAll?: boolean;
}

/** One scratch directory per test, and what the test started in it. */
export interface ScratchEachTest {
  /** A fresh scratch directory for the running test, cleaned up after it. */
  fresh(): Promise<Scratch>;
  /** `shadowfs mount`, remembering the daemon, so the end of the run can check it is gone. */
  mount(store: string, mnt: string, ...args: string[]): Promise<string>;
  /** A background process of the running test, stopped after it. */
  hold(b: Background): Background;
}

/**
 * Registers (in the calling test file) an afterEach that stops the background processes the test
 * held and cleans up its scratch directory, whether the test passed or not.
 */
export function scratchEachTest(options: ScratchEachTestOptions = {}): ScratchEachTest {
  let current: Scratch | undefined;
  const started: Background[] = [];
  const dirs: string[] = [];
  const daemons = new Set<number>();

  afterEach(async () => {
    for (const b of started.splice(0)) await b.stop();
    const done = current;
    current = undefined;
    if (!done) return;
    await options.beforeCleanup?.(done);
    await done.cleanup();
    if (options.checkEach) expect(await mountsUnder(done.dir)).toEqual([]);
  });

  if (options.checkAll)
    afterAll(async () => {
      for (const dir of dirs) expect(await mountsUnder(dir)).toEqual([]);
      for (const pid of daemons) await until(`daemon ${pid} has exited`, () => !running(pid));
    });

  return {
    async fresh() {
      const s = await scratch();
      current = s;
      dirs.push(s.dir);
      return s;
    },
    async mount(store, mnt, ...args) {
      const out = await ok("mount", store, mnt, ...args);
      const pid = lockPid(store);
      if (pid !== undefined) daemons.add(pid);
      return out;
    },
    hold(b) {
      started.push(b);
      return b;
    },
  };
}
