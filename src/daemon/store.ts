// A store directory: the copy-on-write volume holding the filesystem, the lock of whoever
// has it open, the control socket of its daemon, its log and its writers.

import { constants } from "node:fs";
import { open, readFile, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CowVolume, type Logger, NodeHostFs, type OnFull } from "../cow/index.js";
import { FsError } from "../errors.js";
import { FileSystem } from "../fs/filesystem.js";

export function storePaths(store: string) {
  const dir = resolve(store);
  return {
    dir,
    volume: join(dir, "volume"),
    lock: join(dir, "lock"),
    socket: join(dir, "control.sock"),
    log: join(dir, "daemon.log"),
    writers: join(dir, "writers.d"),
  };
}

export interface InitOptions {
  size: number;
  chunkSize?: number;
  shadowStorageLimit?: number;
  onFull?: OnFull;
}

/** Creates a store: the volume, formatted with an empty filesystem. */
export async function initStore(store: string, opts: InitOptions): Promise<void> {
  const p = storePaths(store);
  const host = new NodeHostFs();
  const vol = await CowVolume.create(host, p.volume, {
    volumeSize: opts.size,
    chunkSize: opts.chunkSize,
    shadowStorageLimit: opts.shadowStorageLimit,
    onFull: opts.onFull,
  });
  try {
    await FileSystem.mkfs(vol);
  } finally {
    await vol.close();
  }
}

/** Is `dir` a store? */
export async function isStore(dir: string): Promise<boolean> {
  return new NodeHostFs().exists(join(storePaths(dir).volume, "catalog"));
}

export interface OpenedStore {
  volume: CowVolume;
  fs: FileSystem;
}

/** Opens the volume and its filesystem (recovering both after a crash). */
export async function openStore(
  store: string,
  opts: { readOnly?: boolean; logger?: Logger } = {},
): Promise<OpenedStore> {
  const p = storePaths(store);
  if (!(await isStore(p.dir))) throw new FsError("ENOENT", `${p.dir} is not a shadowfs store`);
  const volume = await CowVolume.open(new NodeHostFs(), p.volume, opts);
  try {
    return { volume, fs: await FileSystem.open(volume) };
  } catch (e) {
    await volume.close();
    throw e;
  }
}

/** The store is in use by a live process. */
export class StoreLockedError extends FsError {
  constructor(
    readonly pid: number,
    store: string,
  ) {
    super("EBUSY", `${store} is in use by process ${pid}`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
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

/**
 * Takes the store's lock for this process (a file holding its pid); a lock left by a process
 * that died is taken over. Returns the function that releases it.
 */
export async function lockStore(store: string): Promise<() => Promise<void>> {
  const { lock, dir } = storePaths(store);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        await unlink(lock).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = await lockHolder(dir);
      if (pid !== undefined && pid !== process.pid) throw new StoreLockedError(pid, dir);
      await unlink(lock).catch(() => undefined);
    }
  }
  throw new FsError("EBUSY", `cannot take the lock of ${dir}`);
}
