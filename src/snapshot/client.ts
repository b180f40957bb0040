// The library an application uses to take part in snapshots as a long-lived writer.
// It speaks JSON-RPC 2.0, one object per line, on the daemon's socket; it never touches a store.
//
//   const w = await WriterClient.register("/srv/store", {
//     name: "db",
//     paths: ["/srv/store/db"],
//     handlers: { freeze: () => db.pause(), thaw: () => db.resume() },
//   });

import { statSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { client, methodTable } from "./rpc/api.js";
import { RpcPeer } from "./rpc/peer.js";
import { controlSocket } from "./runtime.js";
import { writerEventApi, type writerRegistrationApi } from "./socket-writer.js";
import type { EventContext, WriterEvent } from "./writer.js";

export type WriterHandler = (ctx: EventContext) => Promise<void> | void;

export interface WriterClientOptions {
  /** The writer's name: letters, digits, '.', '_' or '-'; it sets the writer's place in the order. */
  name: string;
  /** The paths whose data the writer owns (reported at identify). */
  paths?: string[];
  /** How the writer's data is restored (reported at identify); default "files". */
  restore?: string;
  /** What to do at each event; a missing handler agrees, a throw refuses with its message. */
  handlers: Partial<Record<WriterEvent, WriterHandler>>;
}

export class WriterClient {
  private constructor(private readonly peer: RpcPeer) {}

  /**
   * Connects to the daemon of `store` (the store's directory, or its control socket's path) and
   * registers; resolves once the daemon accepted.
   */
  static async register(store: string, opts: WriterClientOptions): Promise<WriterClient> {
    const path = statSync(store, { throwIfNoEntry: false })?.isDirectory()
      ? controlSocket(store)
      : store;
    const socket = await new Promise<Socket>((ok, fail) => {
      const s = createConnection(path);
      s.once("error", fail);
      s.once("connect", () => {
        s.off("error", fail);
        ok(s);
      });
    });
    const { handlers } = opts;
    const peer = new RpcPeer(socket, {
      methods: methodTable(writerEventApi, {
        "writer.event": async ({ event, context }) => {
          await handlers[event]?.(context);
          return {};
        },
      }),
    });
    try {
      await client<typeof writerRegistrationApi>((m, p) => peer.request(m, p)).call(
        "writer.register",
        { name: opts.name, paths: opts.paths ?? [], restore: opts.restore ?? "files" },
      );
    } catch (e) {
      await peer.close();
      throw e;
    }
    return new WriterClient(peer);
  }

  /** True once the connection is gone (closed by either side). */
  get closed(): boolean {
    return this.peer.closed;
  }

  /** Leaves: the daemon stops calling this writer. Resolves when the socket is closed. */
  close(): Promise<void> {
    return this.peer.close();
  }
}
