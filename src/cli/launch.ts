// Starting a store's daemon: the checks before a mount, the daemon run in this process (`-f`)
// or started in the background and heard on its ready fd. It never talks to a running daemon.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, writeSync } from "node:fs";
import { access, constants, mkdir, open, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { lockHolder } from "../daemon/lock.js";
import { isMountpoint, shadowfsMounts } from "../daemon/mounts.js";
import { isStore, storePaths } from "../daemon/paths.js";
import { FsError } from "../errors.js";
import { parseMountOptions } from "../mount/options.js";
import { message, print } from "./format.js";
import { withoutExtraCaCerts } from "./node-env.js";

/** What `shadowfs mount` was told. */
export interface MountRequest {
  /** The store's directory, resolved. */
  store: string;
  /** The mount point, resolved. */
  mountpoint: string;
  /** The `-o` list as given; checked first, passed on to a daemon started in the background. */
  options: string | undefined;
  foreground: boolean;
  /** Set in a daemon started in the background: where it tells its starter how it went. */
  readyFd: number | undefined;
  /** Where a mount started in the background says what it did (default: standard output). */
  say?: (line: string) => void;
}

/** Checks, then mounts: the daemon runs here in the foreground, or is started and waited for. */
export async function mountStore(r: MountRequest): Promise<void> {
  const { store: dir, mountpoint: mnt } = r;
  const options = parseMountOptions(r.options);
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
      (r.say ?? print)(`detached the stale mount of ${dir} on ${mnt}`);
    }
    await checkMountpoint(mnt);
  } catch (e) {
    // A daemon started in the background says why it did not start.
    tellStarter(r.readyFd, { ok: false, error: message(e) });
    throw e;
  }
  if (r.foreground) await runDaemon(dir, mnt, options, r.readyFd);
  else {
    const reply = await startDaemon(
      [dir, mnt, ...(r.options ? ["-o", r.options] : [])],
      storePaths(dir).log,
    );
    const say = r.say ?? print;
    if (reply.recovered) say(reply.recovered);
    say(`mounted ${dir} on ${resolve(mnt)} (daemon ${reply.pid})`);
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
export async function detach(mnt: string): Promise<void> {
  await new Promise((done) => spawn("fusermount", ["-uz", mnt]).on("exit", done));
}

/** Unmounts `mnt` (not lazily: a mount in use stays, and says so); its daemon then stops. */
export async function unmountNow(mnt: string): Promise<void> {
  const child = spawn("fusermount", ["-u", mnt], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  const code = await new Promise<number | null>((done) => child.on("close", done));
  if (code !== 0)
    throw new FsError("EBUSY", err.trim().replace(/^fusermount: /, "") || `cannot unmount ${mnt}`);
}

/** `mnt` is a directory that nothing is mounted on yet. */
export async function checkMountpoint(mnt: string): Promise<void> {
  const st = await stat(mnt).catch(() => undefined);
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

/** The daemon's logger: to stderr in the foreground, else appended to `log`. */
async function daemonLogger(readyFd: number | undefined, log: string) {
  const { default: pino } = await import("pino");
  const o = { name: "shadowfs", level: process.env.SHADOWFS_LOG_LEVEL ?? "info" };
  return readyFd === undefined
    ? pino(o, pino.destination(2))
    : pino(o, pino.destination({ dest: log, append: true, sync: true }));
}

/** Stops `daemon` on a signal; exits once it has stopped. */
async function runUntilStopped(
  daemon: { stop(): Promise<void>; stopped: Promise<void> },
  logger: { info(o: object, msg: string): void },
): Promise<never> {
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(sig, () => {
      logger.info({ signal: sig }, "stopping");
      void daemon.stop();
    });
  }
  await daemon.stopped;
  process.exit(0);
}

/** Runs the daemon in this process until it is stopped; `readyFd` hears how the start went. */
async function runDaemon(store: string, mnt: string, options: string[], readyFd?: number) {
  // The daemon, the store and the FUSE binding load only here, never for another command.
  const { Daemon } = await import("../daemon/index.js");
  const logger = await daemonLogger(readyFd, storePaths(store).log);
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
  await runUntilStopped(daemon, logger);
}

/**
 * Starts `shadowfs mount ARGS -f` in the background, its output appended to `log`, and waits
 * until the mount is live (or failed).
 */
async function startDaemon(
  mountArgs: string[],
  log: string,
): Promise<{ recovered?: string | null; pid?: number }> {
  const out = await open(log, "a");
  const args = [
    ...process.execArgv,
    process.argv[1]!,
    "mount",
    ...mountArgs,
    "-f",
    "--ready-fd",
    "3",
  ];
  const child = spawn(process.execPath, args, {
    env: withoutExtraCaCerts(process.env),
    detached: true,
    stdio: ["ignore", out.fd, out.fd, "pipe"],
  });
  await out.close();
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
      return { ok: false, error: `the daemon exited without mounting (see ${log})` };
    }
  })() as { ok: boolean; error?: string; recovered?: string | null; pid?: number };
  if (!reply.ok) throw new FsError("EIO", reply.error ?? "mount failed");
  child.unref();
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  return reply;
}

/** What `shadowfs mount s3://BUCKET/PREFIX@SNAP MNT` was told. */
export interface RemoteMountRequest {
  address: string;
  mountpoint: string;
  options: string | undefined;
  foreground: boolean;
  readyFd: number | undefined;
  endpoint: string | undefined;
  /** The cache directory, resolved; and its bound in bytes, as given. */
  cache: string | undefined;
  cacheSize: string | undefined;
}

/** The default cache of a remote: under the user's cache directory, one per place. */
function defaultCache(where: string): string {
  const base = process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache");
  return join(base, "shadowfs", createHash("sha256").update(where).digest("hex").slice(0, 16));
}

/** Mounts a snapshot in object storage read-only: here in the foreground, or in the background. */
export async function mountRemote(r: RemoteMountRequest): Promise<void> {
  const { parseRemoteUrl } = await import("../daemon/remote/url.js");
  const { parseSize } = await import("../daemon/properties.js");
  const url = parseRemoteUrl(r.address);
  const cache = r.cache ?? defaultCache(url.where);
  const log = join(cache, "mount.log");
  const cacheBytes = parseSize(r.cacheSize ?? "2G", "--cache-size");
  try {
    if (url.snapshot === undefined)
      throw new FsError(
        "EINVAL",
        `${r.address}: name the snapshot to mount (s3://BUCKET/PREFIX@SNAPSHOT)`,
      );
    await requireFuse();
    await checkMountpoint(r.mountpoint);
    await mkdir(cache, { recursive: true, mode: 0o700 });
  } catch (e) {
    tellStarter(r.readyFd, { ok: false, error: message(e) });
    throw e;
  }
  if (!r.foreground) {
    const args = [r.address, r.mountpoint, "--cache", cache, "--cache-size", String(cacheBytes)];
    if (r.endpoint) args.push("--endpoint", r.endpoint);
    if (r.options) args.push("-o", r.options);
    const reply = await startDaemon(args, log);
    print(`mounted ${url.where}@${url.snapshot} on ${r.mountpoint} (daemon ${reply.pid})`);
    return;
  }
  const { openRemote } = await import("./remote.js");
  const { RemoteMount } = await import("../daemon/remote/mount.js");
  const logger = await daemonLogger(r.readyFd, log);
  let mounted: import("../daemon/remote/mount.js").RemoteMount;
  try {
    const remote = await openRemote(url, r.endpoint);
    mounted = await RemoteMount.start({
      url: { ...url, snapshot: url.snapshot },
      remote,
      mountpoint: r.mountpoint,
      cacheDir: cache,
      cacheBytes,
      options: parseMountOptions(r.options),
      logger,
    });
    void mounted.stopped.then(() => remote.s3.close());
    tellStarter(r.readyFd, { ok: true, pid: process.pid, mountpoint: r.mountpoint });
    if (r.readyFd === undefined)
      print(`mounted ${url.where}@${mounted.snapshot} on ${r.mountpoint}`);
  } catch (e) {
    tellStarter(r.readyFd, { ok: false, error: message(e) });
    throw e;
  }
  await runUntilStopped(mounted, logger);
}
