// Where a store keeps its parts and where its daemon listens: cheap to load (nothing of the store
// itself), so that a command talking to a daemon starts fast.

import { access } from "node:fs/promises";
import { join, resolve } from "node:path";
import { controlSocket } from "../snapshot/runtime.js";

export function storePaths(store: string) {
  const dir = resolve(store);
  return {
    dir,
    volume: join(dir, "volume"),
    lock: join(dir, "lock"),
    /** Under /run/shadowfs, not in the store (`controlSocket`). */
    socket: controlSocket(dir),
    log: join(dir, "daemon.log"),
    writers: join(dir, "writers.d"),
    history: join(dir, "history.jsonl"),
    /** What a receive in progress keeps (src/daemon/receive.ts). */
    receive: join(dir, "receive"),
  };
}

/** Is `dir` a store? */
export async function isStore(dir: string): Promise<boolean> {
  return access(join(storePaths(dir).volume, "catalog")).then(
    () => true,
    () => false,
  );
}
