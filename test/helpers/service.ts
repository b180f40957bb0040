// A store made and opened in-process for the running test, its Service over it; everything it
// opened is closed, and its directory removed, after the test. It asserts nothing.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { initStore, openStore, Service } from "../../src/daemon/index.js";

/**
 * Registers (in the calling test file) an afterEach that closes and removes what `open` made in
 * the test; `open` makes a store of `size` bytes in chunks of `chunkSize` and serves it.
 */
export function servicesEachTest(): (size: number, chunkSize: number) => Promise<Service> {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return async (size, chunkSize) => {
    const dir = await mkdtemp(join(tmpdir(), "shadowfs-service-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const store = join(dir, "store");
    await initStore(store, { size, chunkSize });
    const { volume, fs } = await openStore(store);
    const service = new Service(store, volume, fs);
    cleanups.push(async () => {
      await service.fs.close();
      await volume.close();
    });
    return service;
  };
}
