// Where a copy into a mount spends its time, request by request: `rsync -a` of bench:mount's
// synthetic tree (2,000 files, 100 MiB) into shadowfs, bindfs and the binding's ceiling, traced
// with the kernel's FUSE events (fuse_request_send: a request queued for the filesystem;
// fuse_request_end: its answer back). For each target: the copy's wall time, how long its
// requests were in flight in all, and per kind of request how many a copy makes, how long one is
// in flight (mean, median, 90th percentile) and the sum. A copy whose requests are in flight for
// most of its time waits on the filesystem; where they fill a small part of it, it waits on
// something else (rsync reading the source).
//
// Each target gets a fresh mount and one copy untimed to warm it; then --passes copies into each
// in turn, each into a new directory after the caches are dropped. Needs root and a kernel with
// those events (Linux 6.x); mounts tracefs if it is not, and leaves the tracing as it found it.
// It owns one temporary directory (under --dir, default /var/tmp), and unmounts everything it
// mounted and removes that directory at exit, also on SIGINT and SIGTERM.

import { existsSync, statSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  assertFuse,
  benchName,
  COMMON_OPTIONS,
  dropCaches,
  fmt,
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
  unmountAll,
  work,
} from "./bench-common.js";
import { makeTree, TREE_BYTES, TREE_FILES } from "./bench-mount-measure.js";
import { bindfsServer, ceilingServer, mountServer } from "./bench-servers.js";

const TARGETS = ["shadowfs", "bindfs", "ceiling"] as const;
type Target = (typeof TARGETS)[number];
const TRACING = "/sys/kernel/tracing";
const EVENTS = ["fuse_request_send", "fuse_request_end"].map((e) => `events/fuse/${e}`);
/** Per CPU: a copy makes about 35,000 requests, two events each. */
const BUFFER_KB = 32768;
const MiB = 2 ** 20;

benchName("bench-requests");

function options() {
  try {
    const { values: opt } = parseArgs({
      options: {
        ...COMMON_OPTIONS,
        passes: { type: "string", default: "3" },
        only: { type: "string", default: TARGETS.join(",") },
      },
    });
    const only = opt.only.split(",").map((s) => s.trim());
    for (const t of only)
      if (!(TARGETS as readonly string[]).includes(t))
        throw new Error(`--only: unknown target "${t}" (targets: ${TARGETS.join(", ")})`);
    return {
      ...opt,
      passes: positive("--passes", opt.passes, true),
      only: TARGETS.filter((t) => only.includes(t)),
    };
  } catch (e) {
    say(e instanceof Error ? e.message : String(e));
    process.exit(2);
  }
}
const opt = options();

// ---------------------------------------------------------------------------------------------
// Tracing

/** What the tracing was before this run, to be put back. */
let restore: (() => Promise<void>) | undefined;

async function setUpTracing(): Promise<void> {
  let mounted = false;
  if (!existsSync(join(TRACING, "trace"))) {
    await run("mount", ["-t", "tracefs", "nodev", TRACING]);
    mounted = true;
  }
  if (!EVENTS.every((e) => existsSync(join(TRACING, e))))
    throw new Error(`this kernel has no FUSE trace events (${TRACING}/events/fuse)`);
  const read = async (file: string) => (await readFile(join(TRACING, file), "utf8")).trim();
  const bufferKb = (await read("buffer_size_kb")).replace(/\D.*/, ""); // "7 (expanded: 1408)"
  const before = await Promise.all(
    EVENTS.map(async (e) => [await read(`${e}/enable`), await read(`${e}/filter`)] as const),
  );
  restore = async () => {
    for (const [i, e] of EVENTS.entries()) {
      const [enable, filter] = before[i]!;
      await writeFile(join(TRACING, e, "enable"), enable);
      await writeFile(join(TRACING, e, "filter"), filter === "none" ? "0" : filter);
    }
    await writeFile(join(TRACING, "buffer_size_kb"), bufferKb);
    if (mounted) await run("umount", [TRACING]);
  };
  await writeFile(join(TRACING, "buffer_size_kb"), String(BUFFER_KB));
}

/** The kernel's number for the FUSE connection of `mnt` (its device, as the events print it). */
function connectionOf(mnt: string): number {
  const dev = statSync(mnt).dev;
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & ~0xff);
  return major * 2 ** 20 + minor;
}

/** Runs `fn` with the FUSE events of `connection` recorded; returns what was recorded. */
async function traced(connection: number, fn: () => Promise<void>): Promise<string> {
  await writeFile(join(TRACING, "trace"), "");
  for (const e of EVENTS) {
    await writeFile(join(TRACING, e, "filter"), `connection == ${connection}`);
    await writeFile(join(TRACING, e, "enable"), "1");
  }
  try {
    await fn();
  } finally {
    for (const e of EVENTS) await writeFile(join(TRACING, e, "enable"), "0");
  }
  return readFile(join(TRACING, "trace"), "utf8");
}

/** One kind of request over a copy. */
interface Kind {
  count: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  totalMs: number;
}

interface Copy {
  seconds: number;
  /** Summed time requests were in flight (several at once count several times). */
  inFlightMs: number;
  requests: number;
  kinds: Record<string, number[]>;
}

const EVENT =
  /\s(\d+\.\d+): fuse_request_(send|end): connection \d+ req (\d+)(?: opcode \d+ \((\w+)\))?/;

/**
 * The requests of a trace (`traced`): each one's latency in microseconds, by kind; and how many
 * events lack their pair (a full buffer), which the figures miss.
 */
function parseTrace(text: string): { kinds: Copy["kinds"]; unpaired: number } {
  const sent = new Map<string, [number, string]>();
  const kinds: Record<string, number[]> = {};
  let unpaired = 0;
  for (const line of text.split("\n")) {
    const m = EVENT.exec(line);
    if (!m) continue;
    const t = Number(m[1]) * 1e6;
    if (m[2] === "send") {
      sent.set(m[3]!, [t, m[4] ?? "?"]);
      continue;
    }
    const s = sent.get(m[3]!);
    if (!s) {
      unpaired++;
      continue;
    }
    sent.delete(m[3]!);
    kinds[s[1]] ??= [];
    kinds[s[1]]!.push(t - s[0]);
  }
  return { kinds, unpaired: unpaired + sent.size };
}

// ---------------------------------------------------------------------------------------------
// Targets

/** Mounts `target` at work/`target`; returns the mount point. */
async function mountTarget(target: Target): Promise<string> {
  const mnt = join(work, target);
  await mkdir(mnt);
  if (target === "shadowfs") {
    const store = join(work, "shadowfs-store");
    await shadowfs(["init", store, "--size", "4G"]);
    await mountShadowfs(store, mnt);
  } else if (target === "bindfs") {
    const source = join(work, "bindfs-source");
    await mkdir(source);
    await mountServer(bindfsServer(source, mnt), mnt);
  } else await mountServer(ceilingServer(mnt), mnt);
  assertFuse(mnt);
  return mnt;
}

/** One traced copy into `mnt` (FUSE connection `connection`), into directory `into`. */
async function tracedCopy(
  target: Target,
  mnt: string,
  treeSrc: string,
  into: string,
): Promise<Copy> {
  await dropCaches();
  let ms = 0;
  const trace = await traced(connectionOf(mnt), async () => {
    ms = (await run("rsync", ["-a", `${treeSrc}/`, join(mnt, into)])).ms;
  });
  const { kinds, unpaired } = parseTrace(trace);
  const all = Object.values(kinds).flat();
  const copy: Copy = {
    seconds: ms / 1000,
    inFlightMs: all.reduce((a, b) => a + b, 0) / 1000,
    requests: all.length,
    kinds,
  };
  if (copy.requests === 0) throw new Error(`${target}: no request of ${mnt} was recorded`);
  say(
    `${target}: copy ${copy.seconds.toFixed(3)} s, ${copy.requests} requests, ` +
      `${copy.inFlightMs.toFixed(0)} ms in flight` +
      (unpaired ? `, ${unpaired} events unpaired` : ""),
  );
  return copy;
}

/** Every copy's requests of one kind, as one copy's worth. */
function kindOf(copies: Copy[], kind: string): Kind {
  const us = copies.flatMap((c) => c.kinds[kind] ?? []).sort((a, b) => a - b);
  const total = us.reduce((a, b) => a + b, 0);
  return {
    count: us.length / copies.length,
    meanUs: total / us.length,
    p50Us: median(us),
    p90Us: us[Math.floor(us.length * 0.9)]!,
    totalMs: total / 1000 / copies.length,
  };
}

interface Summary {
  copySec: number[];
  inFlightMs: number[];
  requests: number;
  kinds: Record<string, Kind>;
}

function summarize(copies: Copy[]): Summary {
  const names = [...new Set(copies.flatMap((c) => Object.keys(c.kinds)))];
  const kinds = names.map((k) => [k.replace(/^FUSE_/, ""), kindOf(copies, k)] as const);
  kinds.sort((a, b) => b[1].totalMs - a[1].totalMs);
  return {
    copySec: copies.map((c) => c.seconds),
    inFlightMs: copies.map((c) => c.inFlightMs),
    requests: copies.reduce((a, c) => a + c.requests, 0) / copies.length,
    kinds: Object.fromEntries(kinds),
  };
}

// ---------------------------------------------------------------------------------------------
// The run

async function main(): Promise<Partial<Record<Target, Summary>>> {
  if (process.getuid?.() !== 0) throw new Error("needs root: the kernel's trace events");
  await requireTool("rsync", ["--version"]);
  if (opt.only.includes("bindfs")) await requireTool("bindfs", ["--version"]);
  if (opt.only.includes("shadowfs")) sayShadowfsCommand();
  await setUpTracing();
  await makeWork(opt.dir);
  const treeSrc = join(work, "tree-src");
  say(`writing the rsync source tree (${TREE_FILES} files, ${TREE_BYTES / MiB} MiB)`);
  await makeTree(treeSrc);
  const mnts = new Map<Target, string>();
  for (const t of opt.only) {
    mnts.set(t, await mountTarget(t));
    say(`${t}: mounted; one copy to warm it`);
    await run("rsync", ["-a", `${treeSrc}/`, join(mnts.get(t)!, "warm")]);
  }
  // In turn, a copy into each, then the next: every target finds the machine as the others left it.
  const copies = new Map<Target, Copy[]>(opt.only.map((t) => [t, []]));
  for (let pass = 0; pass < opt.passes; pass++)
    for (const [t, mnt] of mnts)
      copies.get(t)!.push(await tracedCopy(t, mnt, treeSrc, `copy${pass}`));
  return Object.fromEntries([...copies].map(([t, c]) => [t, summarize(c)]));
}

async function cleanup(): Promise<void> {
  await unmountAll();
  await restore?.().catch((e: unknown) => say(`restoring the tracing: ${String(e)}`));
  await removeWork(opt.keep);
}

function table(out: Partial<Record<Target, Summary>>): string[] {
  const lines: string[] = [];
  for (const [target, s] of Object.entries(out)) {
    const copies = s.copySec.map((x) => x.toFixed(3)).join(" / ");
    const inFlight = s.inFlightMs.map((x) => x.toFixed(0)).join(" / ");
    lines.push(
      `${target}: copy ${copies} s (median ${median(s.copySec).toFixed(3)}); ` +
        `in flight ${inFlight} ms; ${s.requests.toFixed(0)} requests a copy`,
    );
    lines.push("  request        a copy   mean µs   p50 µs   p90 µs   ms a copy");
    for (const [k, v] of Object.entries(s.kinds)) {
      const cells = [
        fmt(v.count, 0),
        fmt(v.meanUs),
        fmt(v.p50Us, 0),
        fmt(v.p90Us, 0),
        fmt(v.totalMs, 0),
      ];
      const widths = [7, 9, 8, 8, 11];
      lines.push(`  ${k.padEnd(13)} ${cells.map((c, i) => c.padStart(widths[i]!)).join(" ")}`);
    }
    lines.push("");
  }
  return lines;
}

function report(out: Partial<Record<Target, Summary>>): void {
  notes.push("in flight: from the request's queueing in the kernel to its answer, summed");
  const json = Object.fromEntries(
    Object.entries(out).map(([t, s]) => [
      t,
      {
        ...s,
        copySec: s.copySec.map((x) => round(x, 3)),
        inFlightMs: s.inFlightMs.map((x) => round(x, 0)),
        kinds: Object.fromEntries(
          Object.entries(s.kinds).map(([k, v]) => [
            k,
            {
              count: round(v.count, 0),
              meanUs: round(v.meanUs),
              p50Us: round(v.p50Us),
              p90Us: round(v.p90Us),
              totalMs: round(v.totalMs),
            },
          ]),
        ),
      },
    ]),
  );
  const config =
    `rsync -a of ${TREE_FILES} files (${TREE_BYTES / MiB} MiB) into each target, in turn: ` +
    `copies after a warm-up: ${opt.passes}, the caches dropped before each`;
  printReport(opt.json, config, json, () => table(out));
}

await runBench(main, cleanup, report);
