// Where a store keeps its parts, and who holds it: cheap to load (nothing of the store itself),
// so that a command talking to a daemon starts fast.

import { readFileSync } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

export function storePaths(store: string) {
  const dir = resolve(store);
  return {
    dir,
    volume: join(dir, "volume"),
    lock: join(dir, "lock"),
    socket: join(dir, "control.sock"),
    log: join(dir, "daemon.log"),
    writers: join(dir, "writers.d"),
    history: join(dir, "history.jsonl"),
  };
}

/** Is `dir` a store? */
export async function isStore(dir: string): Promise<boolean> {
  return access(join(storePaths(dir).volume, "catalog")).then(
    () => true,
    () => false,
  );
}

/** Does `pid` still run? A dead process its parent has not reaped yet (a zombie) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    // "pid (comm) S ...": the state follows the last ")", since comm may hold anything.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The pid holding the store's lock, if that process still lives. */
export async function lockHolder(store: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt(await readFile(storePaths(store).lock, "utf8"), 10);
    return pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}
