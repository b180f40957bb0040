// The library an application uses to take part in snapshots as a long-lived writer.
// It speaks JSON-RPC 2.0, one object per line, on the daemon's socket; it never touches a store.
//
//   const w = await WriterClient.register("/srv/store/control.sock", {
//     name: "db",
//     paths: ["/srv/store/db"],
//     handlers: { freeze: () => db.pause(), thaw: () => db.resume() },
//   });

import { createConnection, type Socket } from "node:net";
import { onLines } from "./lines.js";
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

interface Message {
  jsonrpc?: string;
  id?: number | string | null;
  method?: string;
  params?: { event?: WriterEvent; context?: EventContext };
  result?: unknown;
  error?: { message?: string };
}

export class WriterClient {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { ok: (v: unknown) => void; fail: (e: Error) => void }
  >();
  private readonly closeWaiters: Array<() => void> = [];
  private isClosed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly handlers: WriterClientOptions["handlers"],
  ) {
    onLines(socket, (line) => this.receive(line));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.isClosed = true;
      for (const p of this.pending.values()) p.fail(new Error("the daemon closed the connection"));
      this.pending.clear();
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  /** Connects to the daemon's socket and registers; resolves once the daemon accepted. */
  static async register(socketPath: string, opts: WriterClientOptions): Promise<WriterClient> {
    const socket = await new Promise<Socket>((ok, fail) => {
      const s = createConnection(socketPath);
      s.once("error", fail);
      s.once("connect", () => {
        s.off("error", fail);
        ok(s);
      });
    });
    const client = new WriterClient(socket, opts.handlers);
    try {
      await client.request("writer.register", {
        name: opts.name,
        paths: opts.paths ?? [],
        restore: opts.restore ?? "files",
      });
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  /** True once the connection is gone (closed by either side). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Leaves: the daemon stops calling this writer. Resolves when the socket is closed. */
  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((ok) => {
      this.closeWaiters.push(ok);
      this.socket.end();
      this.socket.destroySoon();
    });
  }

  private request(method: string, params: object): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      if (this.isClosed) return fail(new Error("the daemon closed the connection"));
      this.pending.set(id, { ok, fail });
      this.send({ jsonrpc: "2.0", id, method, params });
    });
  }

  private send(message: object): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(message)}\n`);
  }

  private receive(line: string): void {
    let msg: Message;
    try {
      msg = JSON.parse(line) as Message;
    } catch {
      return;
    }
    if (msg.method === undefined) {
      const p = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
      if (!p || typeof msg.id !== "number") return;
      this.pending.delete(msg.id);
      if (msg.error) p.fail(new Error(msg.error.message ?? "refused"));
      else p.ok(msg.result);
      return;
    }
    const id = msg.id;
    // A message without an id is a notification: it gets no answer.
    const reply = (body: object) => {
      if (id !== undefined) this.send({ jsonrpc: "2.0", id, ...body });
    };
    if (msg.method !== "writer.event") {
      reply({ error: { code: -32601, message: `unknown method ${msg.method}` } });
      return;
    }
    const { event, context } = msg.params ?? {};
    const handler = event === undefined ? undefined : this.handlers[event];
    Promise.resolve()
      .then(() => (handler && context ? handler(context) : undefined))
      .then(
        () => reply({ result: {} }),
        (e: unknown) =>
          reply({ error: { code: -32000, message: e instanceof Error ? e.message : String(e) } }),
      );
  }
}
