// How a command reaches a store: the store a TARGET names, reached through its daemon's control
// socket when it is mounted, or opened directly (under its lock) when it is not.

import { existsSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { resolve } from "node:path";
import type { ControlApi, ControlClient } from "../daemon/api.js";
import { lockHolder } from "../daemon/lock.js";
import { type ShadowfsMount, shadowfsMounts } from "../daemon/mounts.js";
import { isStore, storePaths } from "../daemon/paths.js";
import { connectSocket } from "../daemon/rpc.js";
import { FsError } from "../errors.js";
import { client } from "../snapshot/rpc/api.js";
import { ErrorCode, RpcError } from "../snapshot/rpc/message.js";
import type { Caller, MethodEntry } from "../snapshot/rpc/peer.js";

/**
 * A store's control API, whichever way it is reached: `call(method, params)` is typed by the
 * method's schema and result (src/daemon/api.ts). Through the daemon, the daemon checks the
 * params; opened directly, the same method table does, in this process.
 */
export interface Backend extends ControlClient {
  /** True when a daemon serves the store. */
  readonly mounted: boolean;
  close(): Promise<void>;
}

export type OnProgress = (done: number, total: number) => void;
/** Given the socket of a data channel the method opened (src/daemon/channel.ts). */
export type OnChannel = (socket: Socket) => void;

/** The `progress` notifications the daemon sends during long work (`{ done, total }`). */
function progressEntry(onProgress: OnProgress | undefined): MethodEntry {
  return {
    parse: (p) => {
      const { done, total } = (p ?? {}) as { done?: unknown; total?: unknown };
      if (typeof done !== "number" || typeof total !== "number")
        throw new RpcError(
          "progress: done and total are numbers",
          "EINVAL",
          ErrorCode.invalidParams,
        );
      return { done, total };
    },
    run: ((p: { done: number; total: number }) =>
      onProgress?.(p.done, p.total)) as MethodEntry["run"],
  };
}

/** The `channel` notification: `{ path }` of a socket to connect to, given to `onChannel`. */
function channelEntry(onChannel: OnChannel | undefined): MethodEntry {
  return {
    parse: (p) => {
      const { path } = (p ?? {}) as { path?: unknown };
      if (typeof path !== "string")
        throw new RpcError("channel: path is a string", "EINVAL", ErrorCode.invalidParams);
      return { path };
    },
    run: ((p: { path: string }) => {
      const socket = createConnection(p.path);
      // Its failures reach whoever copies through it, or end the call; none may stop the command.
      socket.on("error", () => undefined);
      if (onChannel) onChannel(socket);
      else socket.destroy();
    }) as MethodEntry["run"],
  };
}

/**
 * The store a TARGET names (a store directory, or the mount point of one: production or an
 * exposed snapshot), and its mount if it is a mount point.
 */
export async function resolveTarget(
  target: string,
): Promise<{ store: string; mount?: ShadowfsMount }> {
  const path = resolve(target);
  const mount = (await shadowfsMounts()).find((m) => m.mountpoint === path);
  if (mount) return { store: mount.store, mount };
  if (await isStore(path)) return { store: path };
  throw new FsError("ENOENT", `${target} is neither a shadowfs store nor a shadowfs mount point`);
}

/** Reaches `store`; `write` opens it read-write when no daemon has it. */
export async function connect(
  store: string,
  opts: { write?: boolean; onProgress?: OnProgress; onChannel?: OnChannel } = {},
): Promise<Backend> {
  const paths = storePaths(store);
  const notices = new Map([
    ["progress", progressEntry(opts.onProgress)],
    ["channel", channelEntry(opts.onChannel)],
  ]);
  const daemon = (peer: Awaited<ReturnType<typeof connectSocket>>): Backend => ({
    mounted: true,
    ...client<ControlApi>((method, params) => peer.request(method, params)),
    close: () => peer.close(),
  });
  // A daemon that answers holds the store: asked first, so that a command on a mounted store
  // never looks at the lock (whose native addon takes 13-20 ms to load).
  if (existsSync(paths.socket)) {
    const peer = await connectSocket(paths.socket, notices).catch(() => undefined);
    if (peer) return daemon(peer);
  }
  const holder = await lockHolder(paths.dir);
  if (holder !== undefined) {
    if (!existsSync(paths.socket))
      throw new FsError("EBUSY", `${paths.dir} is in use by process ${holder}`);
    const peer = await connectSocket(paths.socket, notices).catch((e: NodeJS.ErrnoException) => {
      throw new FsError(
        "EBUSY",
        `${paths.dir} is in use by process ${holder}, whose control socket does not answer (${e.code ?? e.message})`,
      );
    });
    return daemon(peer);
  }
  // Opening the store loads all of it: only now, not for a command a daemon answers.
  const { lockStore, openStore, Service, controlMethods, VolumeProtocol, invoke } = await import(
    "../daemon/index.js"
  );
  const unlock = await lockStore(paths.dir);
  try {
    const { volume, fs } = await openStore(paths.dir, { readOnly: !opts.write });
    const service = new Service(paths.dir, volume, fs);
    const methods = controlMethods(service, new VolumeProtocol(service, null));
    // What a daemon would send back during a call (`notices`), this process gets at once.
    const caller: Caller = {
      notify: (method, params) => {
        const entry = notices.get(method);
        entry?.run(entry.parse(params) as never, caller);
      },
    };
    return {
      mounted: false,
      ...client<ControlApi>((method, params) => invoke(methods, method, params, caller)),
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

/** Runs `fn` on the store a TARGET names, reached as `connect` does, and lets go of it after. */
export async function withTarget<T>(
  target: string,
  opts: { write?: boolean; onProgress?: OnProgress; onChannel?: OnChannel },
  fn: (call: Backend["call"]) => Promise<T>,
): Promise<T> {
  const { store } = await resolveTarget(target);
  const backend = await connect(store, opts);
  try {
    return await fn(backend.call);
  } finally {
    await backend.close();
  }
}
