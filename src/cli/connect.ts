// How a command reaches a store: through its daemon's control socket when it is mounted, or
// by opening it directly (under its lock) when it is not.

import { existsSync } from "node:fs";
import type { Method, Peer } from "../daemon/index.js";
import { lockHolder } from "../daemon/lock.js";
import { storePaths } from "../daemon/paths.js";
import { RpcClient } from "../daemon/rpc.js";
import { FsError } from "../errors.js";

export interface Backend {
  /** True when a daemon serves the store. */
  readonly mounted: boolean;
  call<T>(method: string, params?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

export type OnProgress = (done: number, total: number) => void;

/** Reaches `store`; `write` opens it read-write when no daemon has it. */
export async function connect(
  store: string,
  opts: { write?: boolean; onProgress?: OnProgress } = {},
): Promise<Backend> {
  const paths = storePaths(store);
  const holder = await lockHolder(paths.dir);
  if (holder !== undefined) {
    if (!existsSync(paths.socket))
      throw new FsError("EBUSY", `${paths.dir} is in use by process ${holder}`);
    const client = await RpcClient.connect(paths.socket).catch((e: NodeJS.ErrnoException) => {
      throw new FsError(
        "EBUSY",
        `${paths.dir} is in use by process ${holder}, whose control socket does not answer (${e.code ?? e.message})`,
      );
    });
    client.handle("progress", async (p) => opts.onProgress?.(p.done as number, p.total as number));
    return {
      mounted: true,
      call: (method, params = {}) => client.call(method, params),
      close: async () => client.close(),
    };
  }
  // Opening the store loads all of it: only now, not for a command a daemon answers.
  const { lockStore, openStore, Service, serviceMethods, VolumeProtocol } = await import(
    "../daemon/index.js"
  );
  const unlock = await lockStore(paths.dir);
  try {
    const { volume, fs } = await openStore(paths.dir, { readOnly: !opts.write });
    const service = new Service(paths.dir, volume, fs);
    const methods: Record<string, Method> = {
      ...serviceMethods(service),
      ...new VolumeProtocol(service, null).methods(),
    };
    const peer: Peer = {
      notify: (_, p) => {
        const { done, total } = p as { done: number; total: number };
        opts.onProgress?.(done, total);
      },
    };
    return {
      mounted: false,
      call: async <T>(method: string, params: Record<string, unknown> = {}) => {
        const fn = methods[method];
        if (!fn) throw new FsError("ENOTCONN", `${paths.dir} is not mounted`);
        return (await fn(params, peer)) as T;
      },
      close: async () => {
        try {
          await service.fs.close();
          await volume.close();
        } finally {
          await unlock();
        }
      },
    };
  } catch (e) {
    await unlock();
    throw e;
  }
}
