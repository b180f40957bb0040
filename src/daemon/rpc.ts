// JSON-RPC 2.0 over a Unix socket, one JSON object per line: the daemon's control channel.

import { chmod, unlink } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { FsError, isFsError } from "../errors.js";
import { onLines } from "../snapshot/lines.js";

/** Whoever called a method, as the method sees it. */
export interface Peer {
  /** Tells the caller something on the way (progress): a notification, with no answer. */
  notify(method: string, params: object): void;
}

export type Method = (params: Record<string, unknown>, peer: Peer) => Promise<unknown>;

/** A required string parameter. */
export function param(params: Record<string, unknown>, name: string): string {
  const v = params[name];
  if (typeof v !== "string" || v === "") throw new FsError("EINVAL", `${name} is required`);
  return v;
}

/** An optional string parameter. */
export function optionalParam(params: Record<string, unknown>, name: string): string | undefined {
  return params[name] === undefined || params[name] === null ? undefined : param(params, name);
}

/** An error a method returns: its POSIX code travels along, so the caller can show it. */
export class RpcError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = "RpcError";
  }
}

interface Request {
  jsonrpc: "2.0";
  id?: number | string | null;
  method: string;
  params?: Record<string, unknown>;
}

/** One client connection, as a method sees it (long-lived clients keep it open). */
export class Connection implements Peer {
  private readonly closers: Array<() => void> = [];
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { ok: (v: unknown) => void; fail: (e: Error) => void }
  >();

  constructor(readonly socket: Socket) {
    socket.on("close", () => {
      for (const c of this.closers.splice(0)) c();
      for (const p of this.pending.values()) p.fail(new Error("connection closed"));
      this.pending.clear();
    });
  }

  onClose(fn: () => void): void {
    this.closers.push(fn);
  }

  send(message: object): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(message)}\n`);
  }

  notify(method: string, params: object): void {
    this.send({ jsonrpc: "2.0", method, params });
  }

  /** Sends a request to the client and waits for its answer. */
  request(method: string, params: object): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      this.pending.set(id, { ok, fail });
      this.send({ jsonrpc: "2.0", id, method, params });
    });
  }

  answer(msg: { id: number; result?: unknown; error?: { message: string } }): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.error) p.fail(new Error(msg.error.message));
    else p.ok(msg.result);
  }
}

const codeOf = (e: unknown) => (isFsError(e) ? e.code : e instanceof RpcError ? e.code : "EIO");

/** Listens on `path` (mode 0600); a socket file left by a dead daemon is replaced. */
export async function serve(path: string, methods: Record<string, Method>): Promise<Server> {
  await unlink(path).catch(() => undefined);
  const server = createServer((socket) => {
    const conn = new Connection(socket);
    socket.on("error", () => socket.destroy());
    onLines(socket, (line) => {
      let msg: Request & { result?: unknown; error?: { message: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        conn.send({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } });
        return;
      }
      if (msg.method === undefined && typeof msg.id === "number") {
        conn.answer(msg as { id: number });
        return;
      }
      const method = methods[msg.method];
      if (!method) {
        conn.send({
          jsonrpc: "2.0",
          id: msg.id ?? null,
          error: { code: -32601, message: `unknown method ${msg.method}` },
        });
        return;
      }
      method(msg.params ?? {}, conn).then(
        (result) => conn.send({ jsonrpc: "2.0", id: msg.id ?? null, result: result ?? null }),
        (e) =>
          conn.send({
            jsonrpc: "2.0",
            id: msg.id ?? null,
            error: {
              code: -32000,
              message: e instanceof Error ? e.message : String(e),
              data: { code: codeOf(e) },
            },
          }),
      );
    });
  });
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

/** A client of the control socket. */
export class RpcClient {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { ok: (v: unknown) => void; fail: (e: Error) => void }
  >();
  private readonly handlers = new Map<
    string,
    (params: Record<string, unknown>) => Promise<unknown>
  >();

  private constructor(private readonly socket: Socket) {
    onLines(socket, (line) => this.receive(JSON.parse(line)));
    socket.on("close", () => {
      for (const p of this.pending.values())
        p.fail(new FsError("ECONNRESET", "the daemon closed the connection"));
      this.pending.clear();
    });
  }

  static connect(path: string): Promise<RpcClient> {
    return new Promise((ok, fail) => {
      const socket = createConnection(path);
      socket.once("error", fail);
      socket.once("connect", () => {
        socket.off("error", fail);
        socket.on("error", () => undefined);
        ok(new RpcClient(socket));
      });
    });
  }

  call<T = unknown>(method: string, params: object = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((ok, fail) => {
      this.pending.set(id, { ok: ok as (v: unknown) => void, fail });
      this.socket.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
    });
  }

  /** Answers requests the daemon sends this client (a long-lived writer's events). */
  handle(method: string, fn: (params: Record<string, unknown>) => Promise<unknown>): void {
    this.handlers.set(method, fn);
  }

  close(): void {
    this.socket.end();
  }

  private receive(msg: {
    id?: number;
    method?: string;
    params?: Record<string, unknown>;
    result?: unknown;
    error?: { message: string; data?: { code?: string } };
  }): void {
    if (msg.method !== undefined) {
      const fn = this.handlers.get(msg.method);
      const reply = (body: object) => {
        // A message without an id is a notification: it gets no answer.
        if (msg.id !== undefined)
          this.socket.write(`${JSON.stringify({ jsonrpc: "2.0", id: msg.id, ...body })}\n`);
      };
      if (!fn) {
        reply({ error: { code: -32601, message: `unknown method ${msg.method}` } });
        return;
      }
      fn(msg.params ?? {}).then(
        (result) => reply({ result: result ?? null }),
        (e) =>
          reply({ error: { code: -32000, message: e instanceof Error ? e.message : String(e) } }),
      );
      return;
    }
    const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
    if (!p || msg.id === undefined) return;
    this.pending.delete(msg.id);
    if (msg.error) p.fail(new RpcError(msg.error.message, msg.error.data?.code ?? "EIO"));
    else p.ok(msg.result);
  }
}
