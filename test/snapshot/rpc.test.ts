// The one JSON-RPC 2.0 module, without a daemon: two peers over a real unix socket calling each
// other, notifications, and every malformed message answered with its JSON-RPC error.

import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { client, method, methodTable } from "../../src/snapshot/rpc/api.js";
import { ErrorCode, parseMessage, RpcError } from "../../src/snapshot/rpc/message.js";
import { type MethodTable, type PeerOptions, RpcPeer } from "../../src/snapshot/rpc/peer.js";
import { until } from "./fixture.js";

const api = {
  add: method<number>()(z.object({ a: z.number(), b: z.number().default(0) })),
  /** Asks the caller back (as the daemon asks a writer) and reports progress on the way. */
  ask: method<string>()(z.object({ question: z.string() })),
  throwSync: method<never>()(z.object({})),
  throwAsync: method<never>()(z.object({})),
  bigint: method<unknown>()(z.object({})),
  big: method<string>()(z.object({ bytes: z.number().int() })),
};

const handlers = methodTable(api, {
  add: ({ a, b }) => a + b,
  ask: async ({ question }, caller) => {
    caller.notify("progress", { done: 1, total: 2 });
    return String(await (caller as RpcPeer).request("answer", { question }));
  },
  throwSync: () => {
    throw new RpcError("refused at once", "EPERM");
  },
  throwAsync: async () => {
    await new Promise((r) => setTimeout(r, 5));
    throw Object.assign(new Error("failed later"), { code: "EBUSY" });
  },
  bigint: () => 1n as unknown,
  big: ({ bytes }) => "x".repeat(bytes),
});

let dir: string;
let server: Server;
let serverPeers: RpcPeer[];
let path: string;

async function listen(opts: PeerOptions = {}): Promise<void> {
  server = createServer((s) => serverPeers.push(new RpcPeer(s, { methods: handlers, ...opts })));
  await new Promise<void>((ok) => server.listen(path, ok));
}

function connect(methods?: MethodTable<RpcPeer>): Promise<RpcPeer> {
  return new Promise((ok, fail) => {
    const s = createConnection(path);
    s.once("error", fail);
    s.once("connect", () => ok(new RpcPeer(s, methods ? { methods } : {})));
  });
}

/** A raw client: writes bytes, collects every answer line. */
async function raw(): Promise<{ socket: Socket; lines: unknown[] }> {
  const socket = createConnection(path);
  await new Promise((ok) => socket.once("connect", ok));
  const lines: unknown[] = [];
  let buf = "";
  socket.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  socket.on("error", () => undefined);
  return { socket, lines };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "shadowfs-rpc-"));
  path = join(dir, "rpc.sock");
  serverPeers = [];
});
afterEach(async () => {
  for (const p of serverPeers) p.socket.destroy();
  await new Promise<void>((ok) => server.close(() => ok()));
  rmSync(dir, { recursive: true, force: true });
});

describe("two peers", () => {
  beforeEach(() => listen());

  it("call each other, with notifications on the way and typed params and results", async () => {
    const progress: unknown[] = [];
    const peer = await connect(
      new Map([
        [
          "answer",
          { parse: (p) => p, run: ((p: { question: string }) => `${p.question}? 42`) as never },
        ],
        ["progress", { parse: (p) => p, run: ((p: unknown) => void progress.push(p)) as never }],
      ]),
    );
    const api2 = client<typeof api>((m, p) => peer.request(m, p));
    expect(await api2.call("add", { a: 2, b: 3 })).toBe(5);
    expect(await api2.call("add", { a: 2 })).toBe(2);
    expect(await api2.call("ask", { question: "life" })).toBe("life? 42");
    expect(progress).toEqual([{ done: 1, total: 2 }]);
    await peer.close();
  });

  it("turns a handler's throw, sync or async, into an error answer with its POSIX code", async () => {
    const peer = await connect();
    const api2 = client<typeof api>((m, p) => peer.request(m, p));
    await expect(api2.call("throwSync")).rejects.toMatchObject({
      name: "RpcError",
      message: "refused at once",
      code: "EPERM",
      rpcCode: ErrorCode.failed,
    });
    await expect(api2.call("throwAsync")).rejects.toMatchObject({
      message: "failed later",
      code: "EBUSY",
    });
    await expect(api2.call("bigint")).rejects.toMatchObject({ rpcCode: ErrorCode.internalError });
    // The connection still works.
    expect(await api2.call("add", { a: 1, b: 1 })).toBe(2);
    await peer.close();
  });

  it("names the parameter of the wrong type", async () => {
    const peer = await connect();
    await expect(peer.request("add", { a: "two" })).rejects.toMatchObject({
      rpcCode: ErrorCode.invalidParams,
      code: "EINVAL",
      message: expect.stringMatching(/^invalid params of add: a: /),
    });
    await peer.close();
  });

  it("fails pending calls when the connection drops, and later ones at once", async () => {
    const peer = await connect();
    const pending = peer.request("ask", { question: "never answered" });
    await until("the server has the connection", () => serverPeers.length === 1);
    serverPeers[0]!.socket.destroy();
    await expect(pending).rejects.toMatchObject({ code: "ECONNRESET" });
    await expect(peer.request("add", { a: 1 })).rejects.toMatchObject({ code: "ECONNRESET" });
  });
});

describe("malformed input", () => {
  beforeEach(() => listen());

  const cases: Array<[string, string, number, unknown]> = [
    ["not JSON", "{nope", ErrorCode.parseError, null],
    ["a number", "42", ErrorCode.invalidRequest, null],
    ["a batch", "[]", ErrorCode.invalidRequest, null],
    ["no method", '{"jsonrpc":"2.0","id":1}', ErrorCode.invalidRequest, 1],
    ["method not a string", '{"jsonrpc":"2.0","id":2,"method":7}', ErrorCode.invalidRequest, 2],
    ["no jsonrpc", '{"id":3,"method":"add"}', ErrorCode.invalidRequest, 3],
    ["an object id", '{"jsonrpc":"2.0","id":{},"method":"add"}', ErrorCode.invalidRequest, null],
    ["a boolean id", '{"jsonrpc":"2.0","id":true,"method":"add"}', ErrorCode.invalidRequest, null],
    [
      "string params",
      '{"jsonrpc":"2.0","id":4,"method":"add","params":"a"}',
      ErrorCode.invalidRequest,
      4,
    ],
    [
      "null params",
      '{"jsonrpc":"2.0","id":5,"method":"add","params":null}',
      ErrorCode.invalidRequest,
      5,
    ],
    [
      "array params",
      '{"jsonrpc":"2.0","id":6,"method":"add","params":[1,2]}',
      ErrorCode.invalidParams,
      6,
    ],
    ["__proto__", '{"jsonrpc":"2.0","id":7,"method":"__proto__"}', ErrorCode.methodNotFound, 7],
    [
      "constructor",
      '{"jsonrpc":"2.0","id":"c","method":"constructor"}',
      ErrorCode.methodNotFound,
      "c",
    ],
    ["toString", '{"jsonrpc":"2.0","id":null,"method":"toString"}', ErrorCode.methodNotFound, null],
    [
      "hasOwnProperty",
      '{"jsonrpc":"2.0","id":8,"method":"hasOwnProperty"}',
      ErrorCode.methodNotFound,
      8,
    ],
    [
      "a result and an error",
      '{"jsonrpc":"2.0","id":9,"result":1,"error":{}}',
      ErrorCode.invalidRequest,
      9,
    ],
  ];
  for (const [what, line, code, id] of cases)
    it(`answers ${what} with ${code}`, async () => {
      const c = await raw();
      c.socket.write(`${line}\n`);
      await until("an answer", () => c.lines.length === 1);
      expect(c.lines[0]).toMatchObject({ jsonrpc: "2.0", id, error: { code } });
      c.socket.destroy();
    });

  it("answers a line that is not UTF-8 with a parse error and reads on", async () => {
    const c = await raw();
    c.socket.write(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
    c.socket.write('{"jsonrpc":"2.0","id":1,"method":"add","params":{"a":1}}\n');
    await until("two answers", () => c.lines.length === 2);
    expect(c.lines).toEqual([
      {
        jsonrpc: "2.0",
        id: null,
        error: { code: ErrorCode.parseError, message: expect.any(String) },
      },
      { jsonrpc: "2.0", id: 1, result: 1 },
    ]);
    c.socket.destroy();
  });

  it("runs a notification without answering it, and ignores answers to nothing", async () => {
    const c = await raw();
    c.socket.write('{"jsonrpc":"2.0","method":"add","params":{"a":1}}\n');
    c.socket.write('{"jsonrpc":"2.0","method":"nothing"}\n');
    c.socket.write('{"jsonrpc":"2.0","id":99,"result":1}\n');
    c.socket.write('{"jsonrpc":"2.0","id":1,"method":"add","params":{"a":5}}\n');
    await until("an answer", () => c.lines.length >= 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.lines).toEqual([{ jsonrpc: "2.0", id: 1, result: 5 }]);
    c.socket.destroy();
  });

  it("answers a line over the limit, then closes the connection", async () => {
    const c = await raw();
    const closed = new Promise((ok) => c.socket.on("close", ok));
    c.socket.write(
      `{"jsonrpc":"2.0","id":1,"method":"add","params":{"a":"${"x".repeat(1 << 20)}"}}\n`,
    );
    await closed;
    expect(c.lines).toEqual([
      {
        jsonrpc: "2.0",
        id: null,
        error: { code: ErrorCode.invalidRequest, message: expect.stringMatching(/longer than/) },
      },
    ]);
  });
});

describe("a client that does not read", () => {
  it("is dropped once its unread answers pass the limit", async () => {
    await listen({ maxUnreadBytes: 1 << 20 });
    const socket = createConnection(path);
    socket.on("error", () => undefined);
    await new Promise((ok) => socket.once("connect", ok));
    socket.pause();
    const lines = Array.from(
      { length: 200 },
      (_, i) => `{"jsonrpc":"2.0","id":${i},"method":"big","params":{"bytes":65536}}\n`,
    );
    socket.write(lines.join(""));
    await until("the server dropped it", () => serverPeers[0]?.closed === true, 10_000);
    socket.destroy();
  });
});

describe("parseMessage", () => {
  it("reads own properties only", () => {
    expect(parseMessage('{"jsonrpc":"2.0","__proto__":{"method":"add"},"id":1}')).toMatchObject({
      kind: "invalid",
      error: { code: ErrorCode.invalidRequest },
    });
    expect(parseMessage('{"jsonrpc":"2.0","id":1,"method":"x","params":{}}')).toEqual({
      kind: "request",
      id: 1,
      method: "x",
      params: {},
    });
  });
});
