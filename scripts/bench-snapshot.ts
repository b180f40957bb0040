// Benchmark of the snapshot protocol on a mounted shadowfs volume: how long `shadowfs snapshot
// create` takes and how long changes are held, with no writer, with 3 executable writers, with 3
// socket writers and under a steady write load; then the write throughput of that load with and
// without a snapshot every --interval seconds. The load is fio in a child process (128 KiB
// buffered writes overwriting one file in a loop). It owns one temporary directory (under --dir,
// default /var/tmp), and unmounts everything it mounted, stops the processes it started (by PID)
// and removes that directory at exit, also on SIGINT and SIGTERM.

import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
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
  mountShadowfs as mountAndLog,
  notes,
  positive,
  printReport,
  projectRuntime,
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

const VOLUME_SIZE = "4G";
const SHADOW_LIMIT = "2G";
const LOAD_FILE_SIZE = "512M";
const LOAD_BLOCK = "128k";
/** Snapshots kept at a time: older ones are deleted, untimed, so the store does not fill. */
const KEEP = 2;
const CASES = ["none", "exec3", "socket3", "underLoad"] as const;
const TARGET_IDLE_HOLD_P99_MS = 200;
const TARGET_WRITERS_CREATE_P50_MS = 500;
const TARGET_THROUGHPUT_RATIO = 0.8;

type CaseName = (typeof CASES)[number];

benchName("bench-snapshot");
const { values: opt } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    count: { type: "string", default: "50" },
    seconds: { type: "string", default: "30" },
    interval: { type: "string", default: "10" },
  },
});
const count = positive("--count", opt.count, true);
const seconds = positive("--seconds", opt.seconds);
const interval = positive("--interval", opt.interval);

/** PIDs of shadowfs daemons started here (as `shadowfs mount` reported them). */
const daemons = new Set<number>();

// ---------------------------------------------------------------------------------------------
// Processes

/** Stops a child started here, by its PID, and waits (a while) for it to exit. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // already gone
    }
  }
  if (await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)])) return;
  say(`process ${child.pid} did not stop on ${signal}: SIGKILL`);
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await Promise.race([exited, sleep(5000)]);
}

// ---------------------------------------------------------------------------------------------
// Mounts

/** Mounts, and remembers the daemon's PID. */
async function mountShadowfs(store: string, mnt: string): Promise<void> {
  const log = await mountAndLog(store, mnt);
  const pid = /\(daemon (\d+)\)/.exec(readFileSync(log, "utf8"))?.[1];
  if (pid) daemons.add(Number(pid));
  else notes.push("shadowfs mount did not say its daemon's PID");
  assertFuse(mnt);
}

/** Whether `pid` is still a process of this run (its command line names the work directory). */
function ours(pid: number): boolean {
  try {
    return work !== "" && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(work);
  } catch {
    return false;
  }
}

/** Stops what is left of the processes started here, unmounts everything mounted here, stops a
 * daemon that outlived its unmount, removes the work directory (unless --keep). */
async function cleanup(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
  await unmountAll();
  for (let i = 0; i < 100 && [...daemons].some(ours); i++) await sleep(100);
  for (const pid of daemons) {
    if (!ours(pid)) continue;
    say(`daemon ${pid} still running after unmount: stopping it`);
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  await removeWork(opt.keep);
}

// ---------------------------------------------------------------------------------------------
// The write load

interface Load {
  child: ChildProcess;
  /** Settles when fio exits: its write bandwidth in bytes/s (null when it was stopped early). */
  done: Promise<number | null>;
}

/** fio writing 128 KiB blocks, buffered, over one file in a loop, for `runtime` seconds. */
function startLoad(file: string, runtime: number, tag: string): Load {
  if (file.includes(":")) throw new Error(`fio cannot take a file name with ":" (${file})`);
  const out = join(work, `fio-${tag}.json`);
  const args = [
    "--name=load",
    `--filename=${file}`,
    "--rw=write",
    `--bs=${LOAD_BLOCK}`,
    `--size=${LOAD_FILE_SIZE}`,
    "--direct=0",
    "--ioengine=psync",
    "--iodepth=1",
    "--numjobs=1",
    "--fallocate=none",
    "--time_based",
    `--runtime=${runtime}`,
    "--end_fsync=1",
    "--output-format=json",
    `--output=${out}`,
  ];
  const child = spawn("fio", args, { stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<number | null>((resolveLoad, rejectLoad) => {
    child.on("error", (e) => {
      children.delete(child);
      rejectLoad(e);
    });
    child.on("close", (code, signal) => {
      children.delete(child);
      if (signal !== null || code !== 0) {
        if (stopping.has(child)) resolveLoad(null);
        else rejectLoad(new Error(`fio ${tag}: ${signal ?? `exit ${code}`}\n${stderr.trim()}`));
        return;
      }
      readFile(out, "utf8").then((text) => {
        // fio may put warnings ahead of the JSON document
        const report = JSON.parse(text.slice(text.indexOf("{"))) as {
          jobs: { error: number; write: { bw_bytes: number } }[];
        };
        const j = report.jobs[0];
        if (!j || j.error) rejectLoad(new Error(`fio ${tag}: error ${j?.error}`));
        else resolveLoad(j.write.bw_bytes);
      }, rejectLoad);
    });
  });
  done.catch(() => undefined); // awaited later; a failure meanwhile must not end this process
  return { child, done };
}

const stopping = new WeakSet<ChildProcess>();

/** Stops a load started with a long runtime; throws if it had ended (failed) before. */
async function stopLoad(load: Load): Promise<void> {
  const early = load.child.exitCode !== null || load.child.signalCode !== null;
  stopping.add(load.child);
  await stopChild(load.child);
  const error = await load.done.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (early)
    throw new Error(
      `the write load ended before it was stopped${error instanceof Error ? `: ${error.message}` : ""}`,
    );
}

// ---------------------------------------------------------------------------------------------
// Writers

const EXEC_WRITERS = ["10-bench-a", "20-bench-b", "30-bench-c"];
const SOCKET_WRITERS = ["bench-sock-a", "bench-sock-b", "bench-sock-c"];

// Registers 3 socket writers whose handlers do nothing, says "ready", and leaves on SIGTERM.
// Arguments: the WriterClient module, the control socket, the writers' names.
const SOCKET_WRITER_SCRIPT = `
const [clientModule, socketPath, ...names] = process.argv.slice(2);
const { WriterClient } = await import(clientModule);
const handlers = {
  identify: () => {},
  prepare: () => {},
  freeze: () => {},
  thaw: () => {},
  "post-snapshot": () => {},
};
const clients = [];
for (const name of names) clients.push(await WriterClient.register(socketPath, { name, handlers }));
process.stdout.write("ready\\n");
const leave = async () => {
  await Promise.all(clients.map((c) => c.close()));
  process.exit(0);
};
process.on("SIGTERM", leave);
process.on("SIGINT", leave);
setInterval(() => {
  if (clients.some((c) => c.closed)) {
    process.stderr.write("the daemon closed a writer's connection\\n");
    process.exit(3);
  }
}, 500);
`;

async function startSocketWriters(store: string): Promise<ChildProcess> {
  const { cmd, client } = projectRuntime();
  const script = join(work, "socket-writers.mjs");
  await writeFile(script, SOCKET_WRITER_SCRIPT);
  const args = [script, pathToFileURL(client).href, join(store, "control.sock"), ...SOCKET_WRITERS];
  const child = spawn(cmd[0], [...cmd[1], ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let stdout = "";
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error("socket writers not ready after 30 s")), 30_000);
    child.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes("ready\n")) {
        clearTimeout(timer);
        ready();
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`socket writers exited (${signal ?? code}): ${stderr.trim()}`));
    });
  });
  return child;
}

// ---------------------------------------------------------------------------------------------
// Snapshots

interface Made {
  name: string;
  gmt: string;
  createdAt: number;
  createMs: number;
}

interface HistoryRecord {
  startedAt: string;
  name: string | null;
  writers: unknown[];
  events: { at: number; ms: number }[];
  holdMs: number | null;
  result: "ok" | "failed";
  reason: string | null;
}

/** Snapshots alive on the volume that this run made, oldest first. */
const kept: Made[] = [];
let lastCreatedAt = 0;
let failures: string[] = [];

/** Waits until a snapshot made now gets a @GMT name (one a second) other than the last one's. */
async function nextSecond(): Promise<void> {
  const now = Date.now();
  if (Math.floor(now / 1000) === Math.floor(lastCreatedAt / 1000)) await sleep(1005 - (now % 1000));
}

/** One timed `shadowfs snapshot create`, then (untimed) deletion of the snapshots past KEEP.
 * A failed create is counted and returns null. */
async function snapshot(mnt: string, name: string): Promise<Made | null> {
  await nextSecond();
  let made: Made;
  try {
    const r = await shadowfs(["snapshot", "create", mnt, "--name", name, "--json"]);
    const row = JSON.parse(r.stdout) as { gmt: string; createdAt: string };
    made = { name, gmt: row.gmt, createdAt: Date.parse(row.createdAt), createMs: r.ms };
  } catch (e) {
    failures.push(`${name}: ${(e instanceof Error ? e.message : String(e)).split("\n").at(-1)}`);
    return null;
  }
  lastCreatedAt = made.createdAt;
  kept.push(made);
  await trim(mnt, KEEP);
  return made;
}

async function trim(mnt: string, keep: number): Promise<void> {
  while (kept.length > keep) {
    const old = kept.shift()!;
    await shadowfs(["snapshot", "delete", mnt, old.gmt]);
  }
}

async function history(mnt: string): Promise<Map<string, HistoryRecord>> {
  const { stdout } = await shadowfs(["snapshot", "history", mnt, "--json"]);
  const h = JSON.parse(stdout) as { records: HistoryRecord[] };
  return new Map(h.records.filter((r) => r.name !== null).map((r) => [r.name!, r]));
}

/** Nearest-rank percentile; null for no samples. */
function percentile(xs: number[], p: number): number | null {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface CaseFigures {
  snapshots: number;
  failed: number;
  createMsP50: number | null;
  createMsP99: number | null;
  /** From the run's start to the last writer's last answer (history); null without writers. */
  protocolMsP50: number | null;
  protocolMsP99: number | null;
  holdMsP50: number | null;
  holdMsP99: number | null;
  holdMsMax: number | null;
  writersSeen: number | null;
}

/** Takes `count` snapshots named `${tag}-i` and sums up their timings and history. */
async function measureCase(
  mnt: string,
  tag: string,
  n: number,
  writers: number,
): Promise<CaseFigures> {
  failures = [];
  const made: Made[] = [];
  for (let i = 0; i < n; i++) {
    const m = await snapshot(mnt, `${tag}-${i}`);
    if (m) made.push(m);
  }
  return figures(mnt, tag, made, writers);
}

async function figures(
  mnt: string,
  tag: string,
  made: Made[],
  writers: number,
): Promise<CaseFigures> {
  const records = await history(mnt);
  const holds: number[] = [];
  const protocol: number[] = [];
  const seen = new Set<number>();
  for (const m of made) {
    const r = records.get(m.name);
    if (!r) {
      notes.push(`${tag}: no history record for snapshot ${m.name}`);
      continue;
    }
    seen.add(r.writers.length);
    if (r.holdMs !== null) holds.push(r.holdMs);
    if (r.events.length > 0)
      protocol.push(Math.max(...r.events.map((e) => e.at + e.ms)) - Date.parse(r.startedAt));
  }
  if (seen.size > 1 || (seen.size === 1 && !seen.has(writers)))
    notes.push(`${tag}: expected ${writers} writers per run, history shows ${[...seen].join("/")}`);
  for (const f of failures.slice(0, 5)) notes.push(`${tag}: snapshot create failed: ${f}`);
  const creates = made.map((m) => m.createMs);
  return {
    snapshots: made.length,
    failed: failures.length,
    createMsP50: percentile(creates, 50),
    createMsP99: percentile(creates, 99),
    protocolMsP50: percentile(protocol, 50),
    protocolMsP99: percentile(protocol, 99),
    holdMsP50: percentile(holds, 50),
    holdMsP99: percentile(holds, 99),
    holdMsMax: holds.length ? Math.max(...holds) : null,
    writersSeen: seen.size === 1 ? [...seen][0]! : null,
  };
}

// ---------------------------------------------------------------------------------------------
// The run

interface Results {
  cases: Record<CaseName, CaseFigures>;
  writeMBpsNoSnap: number;
  writeMBpsSnapLoop: number;
  snapLoop: CaseFigures;
  cliStartMs: number;
  /** The 1-minute load average of the machine at the start and at the end. */
  loadAvg: [number, number];
}

async function main(): Promise<Results> {
  const loadAtStart = loadavg()[0]!;
  await requireTool("fio", ["--version"]);
  sayShadowfsCommand();
  if ((await diskFree(opt.dir)) < 5 * GiB) throw new Error(`${opt.dir}: 5 GiB free needed`);
  await makeWork(opt.dir);
  const store = join(work, "store");
  const mnt = join(work, "mnt");
  await mkdir(mnt);
  say(`init (--size ${VOLUME_SIZE}, shadow storage limit ${SHADOW_LIMIT}), mount`);
  await shadowfs(["init", store, "--size", VOLUME_SIZE, "--shadow-storage-limit", SHADOW_LIMIT]);
  await mountShadowfs(store, mnt);
  const cliStartMs = (await shadowfs(["--help"])).ms;
  const file = join(mnt, "load.dat");
  say(`laying out ${LOAD_FILE_SIZE} load file (untimed)`);
  await run("fio", [
    "--name=layout",
    `--filename=${file}`,
    "--rw=write",
    "--bs=1m",
    `--size=${LOAD_FILE_SIZE}`,
    "--end_fsync=1",
    "--output-format=terse",
  ]);

  const cases = {} as Record<CaseName, CaseFigures>;
  say(`none: ${count} snapshots, no writer`);
  cases.none = await measureCase(mnt, "none", count, 0);

  say(`exec3: ${count} snapshots, 3 executable writers`);
  const writersDir = join(store, "writers.d");
  await mkdir(writersDir, { recursive: true });
  for (const w of EXEC_WRITERS) {
    await writeFile(join(writersDir, w), "#!/bin/bash\nexit 0\n");
    await chmod(join(writersDir, w), 0o755);
  }
  cases.exec3 = await measureCase(mnt, "exec3", count, 3);
  for (const w of EXEC_WRITERS) await rm(join(writersDir, w));

  say(`socket3: ${count} snapshots, 3 socket writers`);
  const sockets = await startSocketWriters(store);
  cases.socket3 = await measureCase(mnt, "socket3", count, 3);
  await stopChild(sockets);

  say(`underLoad: ${count} snapshots while fio writes ${LOAD_BLOCK} blocks`);
  const load = startLoad(file, 24 * 3600, "underload");
  await sleep(2000);
  cases.underLoad = await measureCase(mnt, "underLoad", count, 0);
  await stopLoad(load);
  await trim(mnt, 0);

  say(`write throughput: ${seconds} s without snapshots`);
  const noSnap = await startLoad(file, seconds, "nosnap").done;
  if (noSnap === null) throw new Error("fio stopped early");

  const every = Math.min(interval, seconds);
  if (every < interval) notes.push(`snapshot interval cut to --seconds (${seconds} s)`);
  say(`write throughput: ${seconds} s with a snapshot every ${every} s`);
  failures = [];
  const loop = startLoad(file, seconds, "snaploop");
  const t0 = performance.now();
  const loopMade: Made[] = [];
  let loopDone = false;
  const ended = () => {
    loopDone = true;
  };
  loop.done.then(ended, ended);
  for (let k = 0; (k + 0.5) * every < seconds; k++) {
    const wait = (k + 0.5) * every * 1000 - (performance.now() - t0);
    await Promise.race([sleep(Math.max(0, wait)), loop.done]);
    if (loopDone) break;
    const m = await snapshot(mnt, `loop-${k}`);
    if (m) loopMade.push(m);
  }
  const withSnap = await loop.done;
  if (withSnap === null) throw new Error("fio stopped early");
  const snapLoop = await figures(mnt, "loop", loopMade, 0);
  await trim(mnt, 0);
  await unmountShadowfs(mnt);
  return {
    cases,
    writeMBpsNoSnap: noSnap / MB,
    writeMBpsSnapLoop: withSnap / MB,
    snapLoop,
    cliStartMs,
    loadAvg: [loadAtStart, loadavg()[0]!],
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function report(r: Results): void {
  const ratio = r.writeMBpsNoSnap > 0 ? r.writeMBpsSnapLoop / r.writeMBpsNoSnap : null;
  const idleHoldP99 = Math.max(
    ...(["none", "exec3", "socket3"] as const).map((c) => r.cases[c].holdMsP99 ?? Infinity),
  );
  const writersCreateP50 = Math.max(
    ...(["exec3", "socket3"] as const).map((c) => r.cases[c].createMsP50 ?? Infinity),
  );
  const targets = {
    idleHoldMsP99Below200: idleHoldP99 < TARGET_IDLE_HOLD_P99_MS,
    writersCreateMsP50Below500: writersCreateP50 < TARGET_WRITERS_CREATE_P50_MS,
    throughputRatioAtLeast080: ratio !== null && ratio >= TARGET_THROUGHPUT_RATIO,
  };
  const roundCase = (f: CaseFigures) =>
    Object.fromEntries(
      Object.entries(f).map(([k, v]) => [k, typeof v === "number" ? round(v) : v]),
    );
  const out = {
    ...Object.fromEntries(CASES.map((c) => [c, roundCase(r.cases[c])])),
    writeMBpsNoSnap: round(r.writeMBpsNoSnap),
    writeMBpsSnapLoop: round(r.writeMBpsSnapLoop),
    throughputRatio: round(ratio, 3),
    snapLoop: roundCase(r.snapLoop),
    cliStartMs: round(r.cliStartMs),
    loadAvg: r.loadAvg.map((x) => round(x, 2)),
    targets,
  };
  const config =
    `${count} snapshots per case, volume ${VOLUME_SIZE} (shadow storage limit ${SHADOW_LIMIT}), ` +
    `load: fio ${LOAD_BLOCK} buffered writes over a ${LOAD_FILE_SIZE} file, throughput ` +
    `${seconds} s each, a snapshot every ${Math.min(interval, seconds)} s, in ${opt.dir}`;
  notes.push(
    "create: wall time of the shadowfs snapshot create command (a new process, the requester); " +
      `its start-up alone (shadowfs --help) takes ${r.cliStartMs.toFixed(0)} ms`,
    "protocol: from the run's start to the last writer's answer, from history; none without writers",
    "hold: holdMs from history, changes held from the hold to the release (flush and commit)",
    "snapshots start in a new second each (a @GMT name is one a second), not back to back; " +
      `older ones than the newest ${KEEP} are deleted after each, untimed`,
    `p99 is nearest-rank: with ${count} samples it is the ${Math.ceil(0.99 * count)}th smallest`,
    `machine load average (1 min) ${r.loadAvg[0].toFixed(2)} at the start, ${r.loadAvg[1].toFixed(2)} at the end`,
    "throughput: fio psync, queue depth 1, --direct=0, end_fsync; bandwidth as fio reports it",
  );
  printReport(opt.json, config, out, () => {
    const ok = (pass: boolean) => (pass ? "ok" : "MISSED");
    const rows: [string, (f: CaseFigures) => number | null, number, string][] = [
      [
        "create p50 (ms)",
        (f) => f.createMsP50,
        1,
        `< ${TARGET_WRITERS_CREATE_P50_MS} with 3 writers`,
      ],
      ["create p99 (ms)", (f) => f.createMsP99, 1, ""],
      ["protocol p50 (ms)", (f) => f.protocolMsP50, 1, ""],
      ["protocol p99 (ms)", (f) => f.protocolMsP99, 1, ""],
      ["hold p50 (ms)", (f) => f.holdMsP50, 1, ""],
      ["hold p99 (ms)", (f) => f.holdMsP99, 1, `< ${TARGET_IDLE_HOLD_P99_MS} with idle writers`],
      ["snapshots", (f) => f.snapshots, 0, ""],
      ["failed creates", (f) => f.failed, 0, ""],
    ];
    const lines = [`${"metric".padEnd(20)}${CASES.map((c) => c.padStart(12)).join("")}   target`];
    for (const [label, get, digits, target] of rows)
      lines.push(
        `${label.padEnd(20)}${CASES.map((c) => fmt(get(r.cases[c]), digits).padStart(12)).join("")}   ${target}`.trimEnd(),
      );
    lines.push(
      "",
      `write MB/s without snapshots   ${fmt(r.writeMBpsNoSnap)}`,
      `write MB/s with snapshot loop  ${fmt(r.writeMBpsSnapLoop)}  (${r.snapLoop.snapshots} snapshots, hold p50 ${fmt(r.snapLoop.holdMsP50)} ms, max ${fmt(r.snapLoop.holdMsMax)} ms)`,
      `throughput ratio               ${fmt(ratio, 3)}  target >= ${TARGET_THROUGHPUT_RATIO.toFixed(2)}: ${ok(targets.throughputRatioAtLeast080)}`,
      "",
      `hold p99 with idle writers (none, exec3, socket3): ${fmt(idleHoldP99)} ms  target < ${TARGET_IDLE_HOLD_P99_MS} ms: ${ok(targets.idleHoldMsP99Below200)}`,
      `create p50 with 3 writers (exec3, socket3):        ${fmt(writersCreateP50)} ms  target < ${TARGET_WRITERS_CREATE_P50_MS} ms: ${ok(targets.writersCreateMsP50Below500)}`,
    );
    return lines;
  });
}

await runBench(main, cleanup, report);
