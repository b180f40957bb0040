// A store's files as an open finds them: a new store's directory, base image and first catalog;
// an existing one's catalog, base image and diff areas, recovered. It never resumes a revert.

import { join } from "node:path";
import { CorruptStoreError, FsError } from "../errors.js";
import { basePath, catalogPath, readCatalog, writeCatalog } from "./catalog.js";
import { FileChunkStore } from "./file-chunk-store.js";
import type { Catalog } from "./format.js";
import type { HostFile, HostFs } from "./host.js";
import type { Recovery } from "./volume-options.js";

/** Makes the files of a new, empty store with catalog `cat` in `dir` (EEXIST if it holds one). */
export async function makeStore(host: HostFs, dir: string, cat: Catalog): Promise<void> {
  await host.mkdir(join(dir, "diff"));
  const exists = await host.exists(join(dir, "catalog"));
  if (exists) throw new FsError("EEXIST", `${dir} already holds a shadowfs store`);
  const base = await host.open(basePath(dir), { create: true });
  await base.truncate(cat.volumeSize);
  await base.sync();
  await base.close();
  await writeCatalog(host, dir, cat);
}

export interface OpenedStore {
  cat: Catalog;
  base: HostFile;
  store: FileChunkStore;
  recovery: Recovery;
}

/**
 * Opens a store's files: the catalog, the base image and every diff area, applying the recovery
 * rules of docs/format.md; a read-write open also removes the files no snapshot owns. Refuses a
 * damaged store with CorruptStoreError, closing what it opened. Writes no catalog.
 */
export async function openStore(
  host: HostFs,
  dir: string,
  readOnly: boolean,
): Promise<OpenedStore> {
  const cat = await readCatalog(host, dir);
  if (!(await host.exists(basePath(dir)))) throw new CorruptStoreError("base.img", "missing");
  const base = await host.open(basePath(dir), { readOnly });
  let store: FileChunkStore | undefined;
  try {
    const baseSize = await base.size();
    if (baseSize < cat.volumeSize) {
      throw new CorruptStoreError(
        "base.img",
        `${baseSize} bytes, the volume has ${cat.volumeSize}`,
      );
    }
    const { chunkSize, volumeSize } = cat;
    const opened = await FileChunkStore.open(
      host,
      dir,
      { chunkSize, chunkCount: volumeSize / chunkSize, readOnly },
      cat.snapshots.map((s, i) => ({
        id: s.id,
        committed: s.records,
        exact: i < cat.snapshots.length - 1 || cat.clean,
      })),
    );
    store = opened.store;
    const recovery: Recovery = {
      uncleanShutdown: !cat.clean,
      droppedRecords: opened.dropped,
      removedFiles: [],
      resumedRevert: undefined,
      unfinishedRevert: readOnly ? cat.revert?.to : undefined,
    };
    if (!readOnly) {
      recovery.removedFiles.push(...(await store.removeStrays()));
      if (await host.exists(`${catalogPath(dir)}.tmp`)) {
        await host.unlink(`${catalogPath(dir)}.tmp`);
        recovery.removedFiles.push("catalog.tmp");
      }
    }
    return { cat, base, store, recovery };
  } catch (e) {
    await Promise.allSettled([base.close(), store?.close()]);
    throw e;
  }
}
