// A private Samba server for tests: Debian's smbd with its own configuration, state, lock, cache,
// pid and log directories in a scratch directory, on 127.0.0.1 and a free port. Never the system's.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { join } from "node:path";
import type { Run } from "./mounted.js";
import { processGroup, until } from "./mounted.js";

export const SMBD = "/usr/sbin/smbd";
export const SMBCLIENT = "/usr/bin/smbclient";

/** Why Samba cannot be used here (the tools are missing), or undefined when it can. */
export function sambaMissing(): string | undefined {
  const missing = [SMBD, SMBCLIENT].filter((p) => !existsSync(p));
  return missing.length
    ? `${missing.join(" and ")} not installed: run scripts/setup.sh (Debian samba, samba-vfs-modules, smbclient)`
    : undefined;
}

export interface Smbd {
  port: number;
  pid: number;
  /** Its smb.conf, which smbclient reads too (client side of the same private directories). */
  conf: string;
  /** What smbd has written so far (it logs to stdout), for a failing test's message. */
  output(): string;
  /** `smbclient //127.0.0.1/SHARE -c COMMANDS` as guest, in `cwd`; never throws. */
  client(share: string, commands: string, cwd?: string): Run;
  /** Stops smbd and every process it started (its own process group), by that group's id. */
  stop(): Promise<void>;
}

/** A TCP port nothing listens on at the moment (the kernel's choice). */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? done(address.port) : fail(new Error("no port")),
      );
    });
  });
}

const accepts = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });

/**
 * Starts smbd in the foreground (`-F`: it makes itself a session and process group leader, so
 * that its children can be stopped with it) with `[global]` settings of its own in `dir`, then
 * `shares` (smb.conf sections). Resolves once it accepts connections.
 */
export async function startSmbd(dir: string, shares: string): Promise<Smbd> {
  const port = await freePort();
  const sub = (name: string) => join(dir, name);
  for (const d of ["lock", "state", "cache", "pid", "private", "ncalrpc", "log"])
    await mkdir(sub(d), { recursive: true });
  const conf = sub("smb.conf");
  await writeFile(
    conf,
    `[global]
   server role = standalone server
   workgroup = SHADOWFS
   smb ports = ${port}
   interfaces = 127.0.0.1
   bind interfaces only = yes
   disable netbios = yes
   lock directory = ${sub("lock")}
   state directory = ${sub("state")}
   cache directory = ${sub("cache")}
   pid directory = ${sub("pid")}
   private dir = ${sub("private")}
   ncalrpc dir = ${sub("ncalrpc")}
   log file = ${sub("log")}/smbd.log
   passdb backend = tdbsam:${sub("private")}/passdb.tdb
   map to guest = Bad User
   guest account = nobody
   load printers = no
   printing = bsd
   printcap name = /dev/null
   disable spoolss = yes

${shares}`,
  );

  const child: ChildProcess = spawn(
    SMBD,
    ["--foreground", "--debug-stdout", "--debuglevel=1", `--configfile=${conf}`],
    // Its clock five and a half hours from UTC (a POSIX TZ string; no zone files needed): a share
    // that read the snapshots' names as local time would offer each at the wrong time.
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TZ: "XST-5:30" } },
  );
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  let exited = false;
  const gone = new Promise<void>((done) =>
    child.on("exit", () => {
      exited = true;
      done();
    }),
  );
  if (child.pid === undefined) throw new Error(`cannot start ${SMBD}`);
  const pid = child.pid;

  const stop = async () => {
    // smbd is its group's leader once it has called setsid; until then only it runs.
    const members = processGroup(pid);
    if (members.length > 0) process.kill(-pid, "SIGTERM");
    else if (!exited) process.kill(pid, "SIGTERM");
    try {
      await until(
        `smbd ${pid} and its children have exited`,
        () => processGroup(pid).length === 0,
        10_000,
      );
    } catch {
      if (processGroup(pid).length > 0) process.kill(-pid, "SIGKILL");
      await until(`smbd ${pid} has been killed`, () => processGroup(pid).length === 0, 10_000);
    }
    if (!exited) await gone;
  };

  try {
    await until(
      `smbd listens on 127.0.0.1:${port}`,
      async () => {
        if (exited) throw new Error(`smbd exited at start:\n${out}`);
        return accepts(port);
      },
      30_000,
    );
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    port,
    pid,
    conf,
    output: () => out,
    client(share, commands, cwd) {
      const r = spawnSync(
        SMBCLIENT,
        [`//127.0.0.1/${share}`, "-p", String(port), "-N", `--configfile=${conf}`, "-c", commands],
        { cwd, encoding: "utf8", timeout: 60_000, env: { ...process.env, TZ: "UTC" } },
      );
      return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
    },
    stop,
  };
}
