// Starting a store's daemon: the checks before a mount, the daemon run in this process (`-f`)
// or started in the background and heard on its ready fd. It never talks to a running daemon.

import { spawn } from "node:child_process";
import { closeSync, writeSync } from "node:fs";
import { access, constants, open, stat } from "node:fs/promises";
import { resolve } from "node:path";
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
  else await startDaemon(dir, mnt, r.options, r.say ?? print);
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

/** Runs the daemon in this process until it is stopped; `readyFd` hears how the start went. */
async function runDaemon(store: string, mnt: string, options: string[], readyFd?: number) {
  // The daemon, the store and the FUSE binding load only here, never for another command.
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
async function startDaemon(
  store: string,
  mnt: string,
  o: string | undefined,
  say: (line: string) => void,
): Promise<void> {
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
    env: withoutExtraCaCerts(process.env),
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
  if (reply.recovered) say(reply.recovered);
  say(`mounted ${store} on ${resolve(mnt)} (daemon ${reply.pid})`);
}
