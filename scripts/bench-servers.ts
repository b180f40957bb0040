// FUSE filesystems served by a foreground child process of a benchmark (bindfs, the binding's
// ceiling, an --extra command): started in a process group of their own, waited for until
// mounted, unmounted and then stopped, in that order. It never does I/O on a mount it started.

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { assertFuse, isMounted, mounts, root, run, say, sleep } from "./bench-common.js";

/** How long a server may take to mount (tsx compiling a script on a loaded machine included). */
const MOUNT_WITHIN_MS = 30_000;
/** How long a server may take to exit once its mount is gone, before it is sent SIGTERM. */
const EXIT_WITHIN_MS = 10_000;

export interface Server {
  /** Who it is in messages: bindfs, ceiling, or the --extra name. */
  label: string;
  cmd: string;
  args: string[];
  cwd?: string;
}

/**
 * Starts `server` in the foreground, as the filesystem mounted at `path`, and resolves once the
 * kernel has the mount. It runs as a child of this process in its own process group: a Ctrl-C
 * reaches fio and rsync but not the filesystem under them, which is unmounted here, in order
 * (the run's `mounts`, last mounted first).
 */
export async function mountServer(server: Server, path: string): Promise<void> {
  const child = spawn(server.cmd, server.args, {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
    cwd: server.cwd,
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let failed = false;
  const ended = new Promise<void>((r) => {
    child.once("exit", () => r());
    child.once("error", (e) => {
      stderr += e.message;
      failed = true;
      r();
    });
  });
  mounts.push({ path, unmount: () => unmountServer(server.label, path, child) });
  const deadline = performance.now() + MOUNT_WITHIN_MS;
  while (!isMounted(path)) {
    if (failed || child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `${server.label} ended before ${path} was mounted (it must stay in the foreground): ${stderr.trim()}`,
      );
    if (performance.now() > deadline)
      throw new Error(`${server.label} did not mount ${path} within ${MOUNT_WITHIN_MS / 1000} s`);
    await Promise.race([sleep(50), ended]);
  }
  assertFuse(path);
}

/** Unmounts `path` (lazily), waits for its server to exit, and stops its process group if it
 * does not. */
async function unmountServer(label: string, path: string, child: ChildProcess): Promise<void> {
  if (isMounted(path))
    await run("fusermount", ["-uz", path]).catch(() => run("umount", ["-l", path]));
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<boolean>((r) => child.once("exit", () => r(true)));
    if (!(await Promise.race([exited, sleep(EXIT_WITHIN_MS).then(() => false)]))) {
      say(`${label} (pid ${child.pid}) still running after unmount: stopping it`);
      try {
        process.kill(-child.pid!, "SIGTERM"); // its process group: a shell and what it started
      } catch {
        child.kill("SIGTERM");
      }
      await Promise.race([exited, sleep(5000)]);
    }
  }
}

/** Unmounts the server mounted at `path` by mountServer, now. */
export async function unmountServerAt(path: string): Promise<void> {
  await mounts.find((m) => m.path === path)?.unmount();
}

/** bindfs mirroring `source` at `mnt`, with big_writes (writes of up to 128 KiB per request
 * instead of 4 KiB on libfuse 2): a FUSE filesystem at its best. */
export const bindfsServer = (source: string, mnt: string): Server => ({
  label: "bindfs",
  cmd: "bindfs",
  args: ["-f", "-o", "big_writes", source, mnt],
});

/** The binding's ceiling (ceiling-fs.ts) at `mnt`. */
export const ceilingServer = (mnt: string): Server => ({
  label: "ceiling",
  cmd: process.execPath,
  args: ["--import", "tsx", join(root, "scripts/ceiling-fs.ts"), mnt],
  cwd: root,
});

/** `text` as one word of a POSIX shell, whatever it holds. */
export const shellQuote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/** An --extra filesystem: NAME=COMMAND, COMMAND run by sh in the foreground. */
export interface Extra {
  name: string;
  command: string;
}

const EXTRA_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Parses `--extra NAME=COMMAND`; throws with what is wrong. `taken`: names already in use. */
export function parseExtra(spec: string, taken: readonly string[]): Extra {
  const eq = spec.indexOf("=");
  const name = eq < 0 ? "" : spec.slice(0, eq);
  const command = spec.slice(eq + 1).trim();
  if (!EXTRA_NAME.test(name))
    throw new Error(
      `--extra "${spec}": give NAME=COMMAND, NAME of letters, digits, ".", "_" and "-"`,
    );
  if (taken.includes(name)) throw new Error(`--extra ${name}: that name is already a target`);
  if (!command.includes("{mnt}"))
    throw new Error(`--extra ${name}: COMMAND must name the mount point as {mnt}`);
  return { name, command };
}

/** The server of an --extra filesystem mounting `source` (a host directory) at `mnt`. */
export function extraServer(extra: Extra, source: string, mnt: string): Server {
  const command = extra.command
    .replaceAll("{src}", shellQuote(source))
    .replaceAll("{mnt}", shellQuote(mnt));
  return { label: extra.name, cmd: "sh", args: ["-c", command] };
}
