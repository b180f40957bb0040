// A store directory: the copy-on-write volume holding the filesystem, the lock of whoever
// has it open, the control socket of its daemon, its log and its writers.

import { constants } from "node:fs";
import { open, unlink } from "node:fs/promises";
import { CowVolume, type Logger, NodeHostFs, type OnFull } from "../cow/index.js";
import { FsError } from "../errors.js";
import { FileSystem } from "../fs/filesystem.js";
import { isStore, lockHolder, storePaths } from "./paths.js";

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
