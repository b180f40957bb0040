// A store directory: making one (the volume, formatted with an empty filesystem) and opening
// it. Who may open it is the lock's business (lock.ts), where its daemon listens the paths'.

import { CowVolume, type Logger, NodeHostFs, type OnFull } from "../cow/index.js";
import { FsError } from "../errors.js";
import { FileSystem } from "../fs/filesystem.js";
import { isStore, storePaths } from "./paths.js";
import { finishReceive } from "./receive-apply.js";
import { openProduction } from "./service.js";

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

/**
 * Opens the volume and its filesystem (recovering both after a crash, and completing a receive
 * that was being applied).
 */
export async function openStore(
  store: string,
  opts: { readOnly?: boolean; logger?: Logger } = {},
): Promise<OpenedStore> {
  const p = storePaths(store);
  if (!(await isStore(p.dir))) throw new FsError("ENOENT", `${p.dir} is not a shadowfs store`);
  const volume = await CowVolume.open(new NodeHostFs(), p.volume, opts);
  try {
    if (!volume.readOnly) {
      const received = await finishReceive(volume, p.dir);
      if (received) opts.logger?.warn({ store: p.dir, snapshot: received }, "completed a receive");
    }
    return { volume, fs: await openProduction(volume) };
  } catch (e) {
    await volume.close();
    throw e;
  }
}
