// Ends a FUSE mount that a child process serves: unmounted first, then the child ended with
// SIGKILL, then its scratch directory removed, each even when the one before failed. It never
// stops a process it was not given.

import { type ChildProcess, execFile } from "node:child_process";
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function endChildMount(
  child: ChildProcess | undefined,
  mnt: string | undefined,
  dir: string | undefined,
): Promise<void> {
  try {
    if (mnt) await run("fusermount", ["-uz", mnt]).catch(() => undefined);
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
