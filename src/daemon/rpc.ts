// The daemon's control socket: a Unix socket (mode 0600) where every connection is one JSON-RPC
// 2.0 peer answering the store's method table. It holds no method and no framing of its own.

import { chmod, unlink } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { type Caller, MAX_UNREAD_BYTES, type MethodTable, RpcPeer } from "../snapshot/rpc/peer.js";

/** Listens on `path` (mode 0600); a socket file left by a dead daemon is replaced. */
export async function serve(
  path: string,
  methods: MethodTable<Caller>,
  log?: (what: string, err?: unknown) => void,
): Promise<Server> {
  await unlink(path).catch(() => undefined);
  const server = createServer((socket) => {
    new RpcPeer(socket, { methods, ...(log ? { log } : {}) });
  });
  // A failed accept (too many open files) concerns one client, never the daemon.
  server.on("error", (e) => log?.("control socket error", e));
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(path, () => {
      server.off("error", fail);
      ok();
    });
  });
  await chmod(path, 0o600);
  return server;
}

/**
 * Connects to a daemon's control socket; `methods` answers what the daemon sends (progress). A
 * daemon's answer may be as long as the daemon ever sends (MAX_UNREAD_BYTES: a `snapshot diff`
 * of many changes), longer than a request may be.
 */
export function connectSocket(path: string, methods?: MethodTable<RpcPeer>): Promise<RpcPeer> {
  return new Promise((ok, fail) => {
    const socket = createConnection(path);
    socket.once("error", fail);
    socket.once("connect", () => {
      socket.off("error", fail);
      ok(new RpcPeer(socket, { ...(methods ? { methods } : {}), maxLineBytes: MAX_UNREAD_BYTES }));
    });
  });
}
