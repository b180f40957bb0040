// One JSON-RPC 2.0 connection over a stream socket, both ways: it answers the other side's
// requests from a method table and sends its own. No input may throw out of it or make it grow.

import type { Socket } from "node:net";
import { onLines } from "../lines.js";
import { ErrorCode, errorOf, fromErrorObject, type Id, parseMessage, RpcError } from "./message.js";

/**
 * How much one connection may make this side hold. A request is a method name and a few
 * parameters (the largest, `history.append`, carries a few hundred bytes per writer), so a line
 * of 1 MiB is far beyond any real one yet cheap to hold once per connection.
 */
export const MAX_LINE_BYTES = 1 << 20;
/**
 * Answers not yet taken by a client that does not read. The largest real answers (the snapshot
 * list or the run history of a store with thousands of snapshots) are a few MiB; past 16 MiB the
 * connection is dropped rather than the daemon's memory growing with a peer that never reads.
 */
export const MAX_UNREAD_BYTES = 16 << 20;
/**
 * Requests running at once on one connection; past it, and while unread answers exceed a line's
 * limit, the socket is not read, so a client that only writes waits in the kernel's buffers.
 */
export const MAX_IN_FLIGHT = 64;

/** Whoever called a method, as the method sees it. */
export interface Caller {
  /** Tells the caller something on the way (progress): a notification, with no answer. */
  notify(method: string, params: object): void;
}

/**
 * A method this side answers. `parse` checks the params (throwing an `RpcError` with
 * `invalidParams`, naming the parameter); `run` gets only what `parse` returned.
 */
export interface MethodEntry<C extends Caller = Caller> {
  parse(params: unknown): unknown;
  run(params: never, caller: C): unknown;
}

export type MethodTable<C extends Caller = Caller> = ReadonlyMap<string, MethodEntry<C>>;

/**
 * Runs `method` of `table`: looked up as the table's own entry only, params checked, every
 * throw (sync or async) turned into a rejection with an `RpcError`-compatible error.
 */
export async function invoke<C extends Caller>(
  table: MethodTable<C>,
  method: string,
  params: unknown,
  caller: C,
): Promise<unknown> {
  const entry = table.get(method);
  if (entry === undefined)
    throw new RpcError(
      `unknown method ${JSON.stringify(method)}`,
      "ENOSYS",
      ErrorCode.methodNotFound,
    );
  const parsed = entry.parse(params === undefined ? {} : params);
  return (entry.run as (p: unknown, c: C) => unknown)(parsed, caller);
}

export interface PeerOptions {
  methods?: MethodTable<RpcPeer>;
  /** Hears what went wrong on the connection that the other side could not be told. */
  log?: (what: string, err?: unknown) => void;
  maxLineBytes?: number;
  maxUnreadBytes?: number;
}

const CLOSED = "the connection is closed";

export class RpcPeer implements Caller {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { ok: (v: unknown) => void; fail: (e: Error) => void }
  >();
  private readonly closers: Array<() => void> = [];
  private inFlight = 0;
  private isClosed = false;
  private readonly maxUnread: number;

  constructor(
    readonly socket: Socket,
    private readonly opts: PeerOptions = {},
  ) {
    this.maxUnread = opts.maxUnreadBytes ?? MAX_UNREAD_BYTES;
    socket.on("error", (e) => {
      opts.log?.("socket error", e);
      socket.destroy();
    });
    socket.on("close", () => {
      this.isClosed = true;
      for (const p of this.pending.values()) p.fail(new RpcError(CLOSED, "ECONNRESET"));
      this.pending.clear();
      for (const fn of this.closers.splice(0)) this.safely("close handler", fn);
    });
    socket.on("drain", () => this.flow());
    onLines(
      socket,
      {
        line: (text) => this.receive(text),
        invalid: () =>
          this.send({
            id: null,
            error: { code: ErrorCode.parseError, message: "parse error: not UTF-8" },
          }),
        tooLong: () => {
          const limit = opts.maxLineBytes ?? MAX_LINE_BYTES;
          this.send({
            id: null,
            error: {
              code: ErrorCode.invalidRequest,
              message: `invalid request: a line is longer than ${limit} bytes`,
            },
          });
          socket.end();
          // A peer that goes on writing is not waited for.
          setTimeout(() => socket.destroy(), 1000).unref();
        },
      },
      opts.maxLineBytes ?? MAX_LINE_BYTES,
    );
  }

  /** True once the connection is gone (closed by either side). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Runs `fn` once the connection is gone for good (at once if it already is). */
  onClose(fn: () => void): void {
    if (this.isClosed) this.safely("close handler", fn);
    else this.closers.push(fn);
  }

  notify(method: string, params: object): void {
    this.send({ method, params });
  }

  /** Sends a request; resolves with the answer's result, rejects with its error as an RpcError. */
  request(method: string, params: object = {}): Promise<unknown> {
    if (this.isClosed) return Promise.reject(new RpcError(CLOSED, "ECONNRESET"));
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      this.pending.set(id, { ok, fail });
      this.send({ id, method, params });
    });
  }

  /** Ends the connection once what was sent is out. */
  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((done) => {
      this.closers.push(done);
      this.socket.end();
      this.socket.destroySoon();
    });
  }

  private safely(what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.opts.log?.(`${what} failed`, e);
    }
  }

  private send(body: object): void {
    const s = this.socket;
    if (this.isClosed || s.destroyed || !s.writable) return;
    let text: string;
    try {
      text = `${JSON.stringify({ jsonrpc: "2.0", ...body })}\n`;
    } catch (e) {
      // A result JSON cannot carry (a cycle, a BigInt): the caller still gets an answer.
      this.opts.log?.("unserialisable message", e);
      const id = (body as { id?: Id }).id;
      if (id === undefined) return;
      text = `${JSON.stringify({ jsonrpc: "2.0", id, error: { code: ErrorCode.internalError, message: "internal error: the answer cannot be sent as JSON" } })}\n`;
    }
    s.write(text);
    if (s.writableLength > this.maxUnread) {
      this.opts.log?.(`the peer left more than ${this.maxUnread} bytes unread; dropped`);
      s.destroy();
      return;
    }
    this.flow();
  }

  /** Reads while the peer keeps up: few requests running and its answers taken. */
  private flow(): void {
    const s = this.socket;
    if (s.destroyed) return;
    const busy =
      this.inFlight >= MAX_IN_FLIGHT ||
      s.writableLength > (this.opts.maxLineBytes ?? MAX_LINE_BYTES);
    if (busy && !s.isPaused()) s.pause();
    else if (!busy && s.isPaused()) s.resume();
  }

  private receive(line: string): void {
    const msg = parseMessage(line);
    if (msg.kind === "invalid") {
      this.send({ id: msg.id, error: msg.error });
      return;
    }
    if (msg.kind === "response") {
      const p = typeof msg.id === "number" ? this.pending.get(msg.id) : undefined;
      // An answer to nothing this side asked is dropped: answers are never answered.
      if (p === undefined || typeof msg.id !== "number") return;
      this.pending.delete(msg.id);
      if (msg.error) p.fail(fromErrorObject(msg.error));
      else p.ok(msg.result);
      return;
    }
    const { id, method, params } = msg;
    const table = this.opts.methods;
    this.inFlight++;
    this.flow();
    const run = table
      ? invoke(table, method, params, this)
      : Promise.reject(
          new RpcError(
            `unknown method ${JSON.stringify(method)}`,
            "ENOSYS",
            ErrorCode.methodNotFound,
          ),
        );
    run
      .then(
        (result) => {
          if (id !== undefined) this.send({ id, result: result ?? null });
        },
        (e: unknown) => {
          if (id !== undefined) this.send({ id, error: errorOf(e) });
          else this.opts.log?.(`notification ${method} failed`, e);
        },
      )
      .catch((e: unknown) => this.opts.log?.(`answering ${method} failed`, e))
      .finally(() => {
        this.inFlight--;
        this.flow();
      });
  }
}
