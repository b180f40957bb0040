#!/usr/bin/env node
// The `shadowfs` command: makes stores, mounts them and manages their snapshots. A TARGET is a
// store directory or its mount point.

import { spawn } from "node:child_process";
import { closeSync, readFileSync, writeSync } from "node:fs";
import { access, constants, mkdir, open, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import type { OnFull } from "../cow/index.js";
import type { SnapshotRow } from "../daemon/index.js";
import { lockHolder } from "../daemon/lock.js";
import { isMountpoint, shadowfsMounts } from "../daemon/mounts.js";
import { isStore, storePaths } from "../daemon/paths.js";
import { FsError, isFsError } from "../errors.js";
import { parseMountOptions } from "../mount/options.js";
import type { SnapshotOptions, SnapshotRun } from "../snapshot/index.js";
import { type Backend, connect, type OnProgress } from "./connect.js";
import { formatBytes, parseSize, table } from "./format.js";
import { resolveTarget } from "./target.js";

const print = (text: string) => process.stdout.write(`${text}\n`);

// Output to a pipe whose reader is gone (`shadowfs status | head -1`) ends the command quietly
// with status 0, as it ends `ls | head`.
for (const stream of [process.stdout, process.stderr])
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    process.exit(0);
  });

/** The version in shadowfs's package.json, found upward from this file (src/ or dist/src/). */
function version(): string {
  for (
    let dir = dirname(fileURLToPath(import.meta.url));
    dir !== dirname(dir);
    dir = dirname(dir)
  ) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "shadowfs") return pkg.version ?? "unknown";
    } catch {
      // Not here: one directory up.
    }
  }
  return "unknown";
}
const json = (value: unknown) => print(JSON.stringify(value, null, 2));

/** A progress line on a terminal; nothing when stderr is not one. */
function progress(what: string): OnProgress | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (done, total) => {
    process.stderr.write(`\r${what}: ${done}/${total}${done === total ? "\n" : ""}`);
  };
}

async function withTarget<T>(
  target: string,
  opts: { write?: boolean; onProgress?: OnProgress },
  fn: (call: Backend["call"]) => Promise<T>,
): Promise<T> {
  const { store } = await resolveTarget(target);
  const backend = await connect(store, opts);
  try {
    return await fn(backend.call);
  } finally {
    await backend.close();
  }
}

async function requireFuse(): Promise<void> {
  try {
    await access("/dev/fuse", constants.R_OK | constants.W_OK);
  } catch {
    throw new FsError(
      "ENODEV",
      "/dev/fuse is missing or not accessible: load the fuse module (modprobe fuse)",
    );
  }
}

/** Detaches the FUSE mount on `mnt` (lazily, as `fusermount -uz` does). */
async function detach(mnt: string): Promise<void> {
  await new Promise((done) => spawn("fusermount", ["-uz", mnt]).on("exit", done));
}

async function checkMountpoint(mnt: string): Promise<void> {
  const st = await import("node:fs/promises").then((f) => f.stat(mnt)).catch(() => undefined);
  if (!st) throw new FsError("ENOENT", `mount point ${mnt} does not exist`);
  if (!st.isDirectory()) throw new FsError("ENOTDIR", `mount point ${mnt} is not a directory`);
  if (await isMountpoint(mnt)) throw new FsError("EBUSY", `${mnt} is already a mount point`);
}

/** Tells the command that started a daemon (on `readyFd`) how the start went. */
function tellStarter(readyFd: number | undefined, msg: object): void {
  if (readyFd === undefined) return;
  try {
    writeSync(readyFd, `${JSON.stringify(msg)}\n`);
    closeSync(readyFd);
  } catch {
    // The command that started the daemon is gone; the log says the rest.
  }
}

/** Runs the daemon in this process until it is stopped; `readyFd` hears how the start went. */
async function runDaemon(store: string, mnt: string, options: string[], readyFd?: number) {
  const { default: pino } = await import("pino");
  const { Daemon } = await import("../daemon/index.js");
  const logger =
    readyFd === undefined
      ? pino(
          { name: "shadowfs", level: process.env.SHADOWFS_LOG_LEVEL ?? "info" },
          pino.destination(2),
        )
      : pino(
          { name: "shadowfs", level: process.env.SHADOWFS_LOG_LEVEL ?? "info" },
          pino.destination({ dest: storePaths(store).log, append: true, sync: true }),
        );
  const tell = (msg: object) => tellStarter(readyFd, msg);
  let daemon: import("../daemon/index.js").Daemon;
  try {
    const r = await Daemon.start({ store, mountpoint: mnt, options, logger });
    daemon = r.daemon;
    tell({ ok: true, ...r.started });
    if (readyFd === undefined) {
      if (r.started.recovered) print(r.started.recovered);
      print(`mounted ${store} on ${r.started.mountpoint}`);
    }
  } catch (e) {
    tell({ ok: false, error: message(e) });
    throw e;
  }
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(sig, () => {
      logger.info({ signal: sig }, "stopping");
      void daemon.stop();
    });
  }
  await daemon.stopped;
  process.exit(0);
}

/** Starts the daemon in the background and waits until the mount is live (or failed). */
async function startDaemon(store: string, mnt: string, o: string | undefined): Promise<void> {
  const log = await open(storePaths(store).log, "a");
  const args = [
    ...process.execArgv,
    process.argv[1]!,
    "mount",
    store,
    mnt,
    "-f",
    "--ready-fd",
    "3",
  ];
  if (o) args.push("-o", o);
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ["ignore", log.fd, log.fd, "pipe"],
  });
  await log.close();
  const answer = await new Promise<string>((done) => {
    let text = "";
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding("utf8");
    pipe.on("data", (d: string) => {
      text += d;
      if (text.includes("\n")) done(text);
    });
    pipe.on("end", () => done(text));
    pipe.on("error", () => done(text));
  });
  const reply = (() => {
    try {
      return JSON.parse(answer.split("\n")[0] ?? "");
    } catch {
      return {
        ok: false,
        error: `the daemon exited without mounting (see ${storePaths(store).log})`,
      };
    }
  })() as { ok: boolean; error?: string; recovered?: string | null; pid?: number };
  if (!reply.ok) throw new FsError("EIO", reply.error ?? "mount failed");
  child.unref();
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  if (reply.recovered) print(reply.recovered);
  print(`mounted ${store} on ${resolve(mnt)} (daemon ${reply.pid})`);
}

/** An error we made (here or in the daemon) reads as its message, without the errno prefix. */
const ours = (e: unknown): e is Error =>
  isFsError(e) || (e instanceof Error && e.name === "RpcError");

const message = (e: unknown) =>
  ours(e) ? e.message.replace(/^E[A-Z0-9]+: /, "") : e instanceof Error ? e.message : String(e);

function snapshotTable(rows: SnapshotRow[]): string {
  return table(
    ["NAME", "ALIAS", "CREATED", "DIFF AREA", "SET"],
    rows.map((r) => [
      r.gmt,
      r.name ?? "-",
      r.createdAt,
      formatBytes(r.diffAreaBytes),
      r.setId?.slice(0, 8) ?? "-",
    ]),
  );
}

function seconds(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new FsError("EINVAL", `${what} "${text}": expected a number of seconds above 0`);
  return Math.round(n * 1000);
}

/**
 * Runs the snapshot protocol on every target at once, and records the run in each volume's
 * history, whether it succeeded or not.
 */
async function snapshotSet(
  targets: string[],
  opts: SnapshotOptions,
): Promise<{ setId: string; rows: Array<SnapshotRow & { volume: string }> }> {
  // The requester's modules only, not the snapshot layer's index: that also loads the socket
  // writers' message schemas (zod); importing it took 62-92 ms, the coordinator alone 8-12 ms.
  const [{ BackendParticipant }, { ProtocolError, takeSnapshot }, { historyRecord }] =
    await Promise.all([
      import("./participant.js"),
      import("../snapshot/coordinator.js"),
      import("../snapshot/history.js"),
    ]);
  const stores = await Promise.all(targets.map(async (t) => (await resolveTarget(t)).store));
  const twice = stores.find((s, i) => stores.indexOf(s) !== i);
  if (twice) throw new FsError("EINVAL", `${twice} is named twice`);
  const backends: Backend[] = [];
  try {
    for (const store of stores) backends.push(await connect(store, { write: true }));
    const participants = backends.map((b, i) => new BackendParticipant(stores[i]!, b));
    let run: SnapshotRun;
    try {
      run = await takeSnapshot(participants, opts);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      run = e.record;
      await record(run);
      throw e;
    }
    // The history line and the new snapshots' rows are asked for together.
    const [, listed] = await Promise.all([
      record(run),
      Promise.all(backends.map((b) => b.call("snapshot.list", { settle: false }))),
    ]);
    const rows: Array<SnapshotRow & { volume: string }> = [];
    for (const [i, volume] of stores.entries()) {
      const made = run.snapshots.find((x) => x.volume === volume);
      const row = listed[i]?.find((r) => r.id === made?.id);
      if (row) rows.push({ volume, ...row });
    }
    return { setId: run.setId, rows };
  } finally {
    for (const b of backends) await b.close();
  }

  async function record(run: SnapshotRun): Promise<void> {
    await Promise.all(
      backends.map((b, i) =>
        b
          .call("history.append", { record: historyRecord(run, stores[i]!) })
          .catch((e: unknown) =>
            process.stderr.write(`shadowfs: ${stores[i]}: history not written: ${message(e)}\n`),
          ),
      ),
    );
  }
}

export function program(): Command {
  const cli = new Command("shadowfs")
    .description("a versioning filesystem with point-in-time snapshots, mounted with FUSE")
    // Usage errors are thrown (and said in one line, as every other error), not printed here.
    .version(version(), "-V, --version", "print the version")
    .exitOverride()
    .configureOutput({ outputError: () => undefined });

  cli
    .command("init")
    .description("create a store holding an empty volume")
    .argument("<store>", "directory to create the store in")
    .option("--size <size>", "volume size", "8G")
    .option("--chunk-size <size>", "copy-on-write chunk size (4K to 1M)")
    .option("--shadow-storage-limit <size>", "most bytes all diff areas may take (0: no limit)")
    .addOption(
      new Option("--on-full <policy>", "when the limit is reached")
        .choices(["delete-oldest", "fail-writes"])
        .default("delete-oldest"),
    )
    .action(async (store: string, o) => {
      const dir = resolve(store);
      const settings = {
        size: parseSize(o.size, "--size"),
        chunkSize: o.chunkSize === undefined ? undefined : parseSize(o.chunkSize, "--chunk-size"),
        shadowStorageLimit:
          o.shadowStorageLimit === undefined
            ? undefined
            : parseSize(o.shadowStorageLimit, "--shadow-storage-limit"),
        onFull: o.onFull as OnFull,
      };
      const { initStore } = await import("../daemon/index.js");
      // The first directory this made, if any: a refused init removes it again.
      const made = await mkdir(dir, { recursive: true });
      try {
        await initStore(dir, settings);
      } catch (e) {
        if (made !== undefined) await rm(made, { recursive: true, force: true });
        throw e;
      }
      print(`created ${dir} (${formatBytes(settings.size)})`);
    });

  cli
    .command("mount")
    .description("mount a store; snapshots appear under MNT/.snapshots")
    .argument("<store>")
    .argument("<mountpoint>")
    .option("-f, --foreground", "stay in the foreground")
    .option("-o, --options <list>", "mount options (allow_other, ro, kernel_cache, ...)")
    .addOption(new Option("--ready-fd <fd>").hideHelp().argParser((v) => Number.parseInt(v, 10)))
    .action(async (store: string, mountpoint: string, o) => {
      const dir = resolve(store);
      const mnt = resolve(mountpoint);
      const options = parseMountOptions(o.options);
      try {
        if (!(await isStore(dir))) throw new FsError("ENOENT", `${dir} is not a shadowfs store`);
        await requireFuse();
        const holder = await lockHolder(dir);
        if (holder !== undefined)
          throw new FsError("EBUSY", `${dir} is already in use by process ${holder}`);
        // A mount left behind by a daemon that was killed: detach it first.
        const stale = (await shadowfsMounts()).find((m) => m.mountpoint === mnt && m.store === dir);
        if (stale) {
          await detach(mnt);
          print(`detached the stale mount of ${dir} on ${mnt}`);
        }
        await checkMountpoint(mnt);
      } catch (e) {
        // A daemon started in the background says why it did not start.
        tellStarter(o.readyFd, { ok: false, error: message(e) });
        throw e;
      }
      if (o.foreground) await runDaemon(dir, mnt, options, o.readyFd);
      else await startDaemon(dir, mnt, o.options);
    });

  cli
    .command("unmount")
    .alias("umount")
    .description("flush and unmount a mounted store")
    .argument("<mountpoint>")
    .action(async (mountpoint: string) => {
      const { store, mount } = await resolveTarget(mountpoint);
      if (!mount) throw new FsError("EINVAL", `${mountpoint} is not a mount point`);
      if (mount.snapshot)
        throw new FsError(
          "EINVAL",
          `${mountpoint} is an exposed snapshot: use "snapshot unexpose"`,
        );
      const pid = await lockHolder(store);
      if (pid === undefined) {
        await detach(mount.mountpoint);
        print(`detached ${mount.mountpoint} (its daemon was not running)`);
        return;
      }
      await withTarget(mountpoint, {}, (call) => call("unmount"));
      for (let i = 0; i < 600 && (await lockHolder(store)) !== undefined; i++)
        await new Promise((r) => setTimeout(r, 100));
      if ((await lockHolder(store)) !== undefined)
        throw new FsError("ETIMEDOUT", `daemon ${pid} did not stop`);
      print(`unmounted ${mount.mountpoint}`);
    });

  cli
    .command("status")
    .description("volume, space, snapshots and mount of a store")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const st = await withTarget(target, {}, (call) => call("status"));
      if (o.json) {
        json(st);
        return;
      }
      const limit = st.shadowStorageLimitBytes;
      print(`store:        ${st.store}`);
      print(`mounted on:   ${st.mountpoint ?? "not mounted"}`);
      print(
        `volume:       ${formatBytes(st.volumeBytes)} (${formatBytes(st.usedBytes)} used, ` +
          `${formatBytes(st.freeBytes)} free, ${st.files} files)`,
      );
      print(`snapshots:    ${st.snapshots}`);
      print(
        `shadow space: ${formatBytes(st.shadowStorageUsedBytes)} used of ` +
          `${limit ? formatBytes(limit) : "no limit"} (${st.onFull} when full)`,
      );
    });

  const snapshot = cli
    .command("snapshot")
    .description("create, list, delete, revert, expose snapshots");

  snapshot
    .command("create")
    .description(
      "take a snapshot: writers prepare and freeze, changes are held while it is committed; " +
        "with --set, one snapshot of each target at the same instant, all or none",
    )
    .argument("<targets...>")
    .option("--name <name>", "a name that also resolves to the snapshot")
    .option("--set", "several targets: one snapshot set")
    .option("--freeze-limit <seconds>", "from the first freeze to the last thaw, at most", "60")
    .option("--hold-limit <seconds>", "changes held for the commit, at most", "10")
    .option("--json", "print JSON")
    .action(async (targets: string[], o) => {
      if (targets.length > 1 && !o.set)
        throw new FsError("EINVAL", "several targets make a snapshot set: pass --set");
      const { setId, rows } = await snapshotSet(targets, {
        name: o.name,
        freezeLimitMs: seconds(o.freezeLimit, "--freeze-limit"),
        holdLimitMs: seconds(o.holdLimit, "--hold-limit"),
      });
      if (o.set) {
        if (o.json) json({ setId, snapshots: rows });
        else {
          print(`snapshot set ${setId}`);
          for (const r of rows) print(`${r.volume} ${r.gmt}`);
        }
        return;
      }
      const { volume: _, ...row } = rows[0]!;
      if (o.json) json(row);
      else print(row.gmt);
    });

  snapshot
    .command("history")
    .description("every run of the snapshot protocol: writers' answers, hold time, result")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const h = await withTarget(target, {}, (call) => call("snapshot.history"));
      if (o.json) {
        json(h);
        return;
      }
      if (h.records.length === 0) print("no snapshot runs");
      else
        print(
          table(
            ["STARTED", "RESULT", "SNAPSHOT", "HOLD", "WRITERS", "REASON"],
            h.records.map((r) => [
              r.startedAt,
              r.result,
              r.snapshot?.gmt ?? "-",
              r.holdMs === null ? "-" : `${r.holdMs} ms`,
              String(r.writers.length),
              r.reason ?? "-",
            ]),
          ),
        );
      if (h.torn) print(`note: line ${h.torn.line} was cut short by a crash and is skipped`);
    });

  snapshot
    .command("list")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const rows = await withTarget(target, {}, (call) => call("snapshot.list"));
      if (o.json) json(rows);
      else print(rows.length ? snapshotTable(rows) : "no snapshots");
    });

  snapshot
    .command("delete")
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .action(async (target: string, ref: string) => {
      const row = await withTarget(target, { write: true }, (call) =>
        call("snapshot.delete", { snapshot: ref }),
      );
      print(`deleted ${row.gmt}${row.name ? ` (${row.name})` : ""}`);
    });

  snapshot
    .command("revert")
    .description(
      "make production what the snapshot holds; newer snapshots are kept, and production as it was is saved as a snapshot first",
    )
    .argument("<target>")
    .argument("<snapshot>", "@GMT name, name or id")
    .option("--force", "even while files are open in production")
    .option("--discard-newer", "delete the snapshots newer than it instead (nothing is saved)")
    .option("--json", "print JSON")
    .action(async (target: string, ref: string, o) => {
      if (process.stderr.isTTY) process.stderr.write(`reverting to ${ref}...\n`);
      const r = await withTarget(target, { write: true }, (call) =>
        call("snapshot.revert", {
          snapshot: ref,
          force: o.force === true,
          discardNewer: o.discardNewer === true,
        }),
      );
      if (o.json) {
        json(r);
        return;
      }
      print(`production is now ${r.reverted.gmt}`);
      if (r.saved)
        print(
          `production as it was is kept as ${r.saved.gmt} (${r.saved.name}); newer snapshots are kept`,
        );
      for (const d of r.discarded) print(`deleted newer snapshot ${d.gmt}`);
    });

  snapshot
    .command("expose")
    .description("mount one snapshot read-only on a path of its own")
    .argument("<target>")
    .argument("<snapshot>")
    .argument("<mountpoint>")
    .action(async (target: string, ref: string, mountpoint: string) => {
      const mnt = resolve(mountpoint);
      await checkMountpoint(mnt);
      const { store } = await resolveTarget(target);
      if ((await lockHolder(store)) === undefined)
        throw new FsError("ENOTCONN", `${store} is not mounted`);
      const r = await withTarget(target, {}, (call) =>
        call("snapshot.expose", { snapshot: ref, mountpoint: mnt }),
      );
      print(`exposed ${r.gmt} on ${mnt}`);
    });

  snapshot
    .command("unexpose")
    .argument("<mountpoint>")
    .action(async (mountpoint: string) => {
      const { mount } = await resolveTarget(mountpoint);
      if (!mount?.snapshot) throw new FsError("EINVAL", `${mountpoint} is not an exposed snapshot`);
      await withTarget(mountpoint, {}, (call) =>
        call("snapshot.unexpose", { mountpoint: mount.mountpoint }),
      );
      print(`unexposed ${mount.mountpoint}`);
    });

  cli
    .command("writers")
    .description("writers of a volume")
    .command("list")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, {}, (call) => call("writers.list"));
      if (o.json) {
        json(r);
        return;
      }
      if (r.writers.length === 0) print("no writers");
      else
        print(
          table(
            ["WRITER", "KIND", "PATHS", "RESTORE", "LAST"],
            r.writers.map((w) => [
              w.name,
              w.kind,
              w.paths.join(",") || "-",
              w.restore,
              w.last
                ? `${w.last.event} ${w.last.ok ? "ok" : `failed: ${w.last.reason}`}`
                : w.identified === "ok"
                  ? "-"
                  : `identify failed: ${w.identified}`,
            ]),
          ),
        );
      for (const p of r.problems) print(`problem: writers.d/${p.entry}: ${p.problem}`);
    });

  cli
    .command("storage")
    .description("shadow storage: used, limit, per snapshot, evictions")
    .argument("<target>")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, {}, (call) => call("storage"));
      if (o.json) {
        json(r);
        return;
      }
      print(
        `used ${formatBytes(r.usedBytes)} of ${r.limitBytes ? formatBytes(r.limitBytes) : "no limit"}; when full: ${r.onFull}`,
      );
      if (r.snapshots.length)
        print(
          table(
            ["SNAPSHOT", "ALIAS", "DIFF AREA"],
            r.snapshots.map((s) => [s.gmt, s.name ?? "-", formatBytes(s.diffAreaBytes)]),
          ),
        );
      for (const e of r.evictions)
        print(`evicted ${e.gmt}${e.name ? ` (${e.name})` : ""} at ${e.evictedAt}: ${e.reason}`);
    });

  cli
    .command("fsck")
    .description("check a store's files and filesystem (or one snapshot's)")
    .argument("<store>")
    .option("--snapshot <snapshot>", "check this snapshot's filesystem")
    .option("--json", "print JSON")
    .action(async (target: string, o) => {
      const r = await withTarget(target, { onProgress: progress("checking chunks") }, (call) =>
        call("fsck", { snapshot: o.snapshot }),
      );
      if (o.json) json(r);
      else {
        for (const p of r.store?.problems ?? []) print(`store: ${p}`);
        for (const n of r.store?.notes ?? []) print(`note: ${n}`);
        for (const p of r.fs.problems) print(`filesystem: ${p}`);
        print(
          `${r.checked}: ${r.ok ? "clean" : "DAMAGED"} (${r.fs.directories} directories, ${r.fs.files} files)`,
        );
      }
      if (!r.ok) process.exitCode = 2;
    });

  return cli;
}

program()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    if (e instanceof CommanderError) {
      // --help, --version and a bare `shadowfs` end here too, having printed the help.
      if (e.exitCode === 0 || e.code === "commander.help") process.exit(e.exitCode);
      process.stderr.write(
        `shadowfs: ${e.message.replace(/^error: /, "")} (see shadowfs --help)\n`,
      );
      process.exit(e.exitCode || 1);
    }
    process.stderr.write(`shadowfs: ${message(e)}\n`);
    if (!ours(e)) process.stderr.write(`${(e as Error).stack ?? ""}\n`);
    process.exit(1);
  });
