// The control socket of a real mounted daemon under thousands of random and hostile messages:
// every message that calls for an answer gets one, the daemon never dies, and a reader of a file
// on the mount never sees an error meanwhile.

import { writeFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { storePaths } from "../../src/daemon/paths.js";
import {
  type Background,
  background,
  mounted,
  ok,
  running,
  type Scratch,
  until,
} from "../helpers/mounted.js";
import { int, pick, type Rand, seeds, withSeed } from "../helpers/random.js";

let s: Scratch | undefined;
let reader: Background | undefined;
afterEach(async () => {
  await reader?.stop();
  reader = undefined;
  await s?.cleanup();
  s = undefined;
});

/** Methods that only read, or that fail on an empty store whatever their string params. */
const SAFE = ["status", "snapshot.list", "storage", "writers.list", "snapshot.history"];
/** Methods that act when their params are valid: sent only with params that cannot be. */
const ACTING = [
  "protocol.hold",
  "protocol.release",
  "protocol.finish",
  "protocol.identify",
  "protocol.event",
  "protocol.commit",
  "protocol.abort",
  "protocol.discard",
  "snapshot.revert",
  "unmount",
  "history.append",
];
const HOSTILE = [
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "",
  "x".repeat(300),
];

const anyValue = (r: Rand, depth = 0): unknown => {
  switch (int(r, 0, depth > 2 ? 4 : 6)) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return pick(r, [0, -1, 1.5, 2 ** 53, -0, 1e308]);
    case 3:
      return pick(r, [
        "",
        "a",
        "__proto__",
        "@GMT-2025.01.01-00.00.00",
        "\u0000",
        "é".repeat(int(r, 1, 50)),
      ]);
    case 4:
      return "s".repeat(int(r, 0, 20));
    case 5:
      return Array.from({ length: int(r, 0, 3) }, () => anyValue(r, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: int(r, 0, 3) }, () => [
          pick(r, ["snapshot", "settle", "__proto__", "constructor", "force", "k"]),
          anyValue(r, depth + 1),
        ]),
      );
  }
};

/** A params value no method's schema accepts (not an object, or a required field mistyped). */
const badParams = (r: Rand): unknown => pick(r, [[1, 2], [], "params", 7, true, null]);

const anyId = (r: Rand): unknown =>
  pick(r, [int(r, 0, 1e6), `id-${int(r, 0, 99)}`, null, 1.25, -7]);
const badId = (r: Rand): unknown => pick(r, [{}, [], true, false, { a: 1 }]);

/**
 * Params JSON-RPC allows (an object or an array). A notification with any other params is not a
 * valid request at all, and is answered (id null) like every invalid request.
 */
const structured = (p: unknown) => typeof p === "object" && p !== null;

/** One message: its bytes, and whether the daemon owes an answer to it. */
function message(r: Rand): { bytes: Buffer | string; answered: boolean } {
  const json = (o: unknown) => JSON.stringify(o);
  switch (int(r, 0, 11)) {
    case 0: // not JSON
      return {
        bytes: pick(r, ["{", "nope", '{"jsonrpc":"2.0",', "}{", "\u0001\u0002"]),
        answered: true,
      };
    case 1: // not valid UTF-8
      return { bytes: Buffer.from([0x7b, 0xc3, 0x28, 0xff, 0x7d]), answered: true };
    case 2: // JSON, not an object
      return {
        bytes: json(
          pick(r, [1, "s", null, true, [], [{ jsonrpc: "2.0", id: 1, method: "status" }]]),
        ),
        answered: true,
      };
    case 3: // no method, or a method that is not a string
      return {
        bytes: json({
          jsonrpc: "2.0",
          id: anyId(r),
          ...(r() < 0.5 ? {} : { method: pick(r, [1, null, {}, [], true]) }),
        }),
        answered: true,
      };
    case 4: // an id of a type JSON-RPC refuses
      return {
        bytes: json({ jsonrpc: "2.0", id: badId(r), method: pick(r, SAFE) }),
        answered: true,
      };
    case 5: // no or a wrong jsonrpc member
      return {
        bytes: json({ jsonrpc: pick(r, [undefined, "1.0", 2]), id: anyId(r), method: "status" }),
        answered: true,
      };
    case 6: // hostile method names, with anything as params
      return {
        bytes: json({
          jsonrpc: "2.0",
          id: anyId(r),
          method: pick(r, HOSTILE),
          params: anyValue(r),
        }),
        answered: true,
      };
    case 7: // acting methods with params that cannot pass, as requests or notifications
      {
        const id = r() < 0.8 ? { id: anyId(r) } : {};
        const params = badParams(r);
        return {
          bytes: json({ jsonrpc: "2.0", ...id, method: pick(r, ACTING), params }),
          answered: "id" in id || !structured(params),
        };
      }
    case 8: // reading methods with random params (objects pass: unknown keys are dropped)
      {
        const id = r() < 0.8 ? { id: anyId(r) } : {};
        const params = anyValue(r);
        return {
          bytes: json({ jsonrpc: "2.0", ...id, method: pick(r, SAFE), params }),
          answered: "id" in id || !structured(params),
        };
      }
    case 9: // methods that fail on a store with no snapshots, whatever string they get
      return {
        bytes: json({
          jsonrpc: "2.0",
          id: anyId(r),
          method: pick(r, ["snapshot.delete", "snapshot.expose", "snapshot.unexpose"]),
          params: {
            snapshot: `nosuch-${int(r, 0, 9)}`,
            mountpoint: `/nonexistent/${int(r, 0, 9)}`,
          },
        }),
        answered: true,
      };
    case 10: // answers to requests the daemon never sent: never answered
      return {
        bytes: json({
          jsonrpc: "2.0",
          id: int(r, 0, 99),
          ...(r() < 0.5 ? { result: anyValue(r) } : { error: anyValue(r) }),
        }),
        answered: false,
      };
    default: // unknown methods
      return {
        bytes: json({
          jsonrpc: "2.0",
          id: anyId(r),
          method: `no.such.${int(r, 0, 99)}`,
          params: {},
        }),
        answered: true,
      };
  }
}

interface Conn {
  socket: Socket;
  answers: Array<Record<string, unknown>>;
  closed: Promise<void>;
}

async function open(path: string): Promise<Conn> {
  const socket = createConnection(path);
  socket.on("error", () => undefined);
  await new Promise((ok, fail) => {
    socket.once("connect", ok);
    socket.once("error", fail);
  });
  const answers: Conn["answers"] = [];
  let buf = "";
  socket.setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      answers.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  const closed = new Promise<void>((done) => socket.on("close", () => done()));
  return { socket, answers, closed };
}

const errorOf = (answers: Conn["answers"], id: number) =>
  answers.find((a) => a.id === id)?.error as { code: number; message: string };

/** A JSON-RPC 2.0 response: an id, and a result or an error with a code and a message. */
function expectResponse(a: Record<string, unknown>): void {
  expect(a.jsonrpc).toBe("2.0");
  expect(Object.hasOwn(a, "id")).toBe(true);
  expect(Object.hasOwn(a, "result") !== Object.hasOwn(a, "error")).toBe(true);
  if (a.error) {
    const e = a.error as { code: unknown; message: unknown };
    expect(typeof e.code).toBe("number");
    expect(typeof e.message).toBe("string");
  }
}

describe("the control socket under hostile input", () => {
  for (const seed of seeds(1))
    it(`answers everything and never stops serving the mount (seed ${seed})`, async () => {
      await withSeed(seed, async (r) => {
        s = await mounted("256M");
        const socket = storePaths(s.store).socket;
        const data = Buffer.alloc(256 << 10, 7);
        writeFileSync(join(s.mnt, "data"), data);
        writeFileSync(join(s.dir, "expected"), data);
        reader = background(
          `while true; do cmp ${join(s.mnt, "data")} ${join(s.dir, "expected")} || exit 1; done`,
        );
        const first = await open(socket);
        first.socket.write('{"jsonrpc":"2.0","id":0,"method":"status"}\n');
        await until("status answers", () => first.answers.length === 1);
        const pid = (first.answers[0]!.result as { pid: number }).pid;
        expect(running(pid)).toBe(true);
        const alive = () => {
          expect(running(pid), "the daemon died").toBe(true);
          expect(reader?.stderr, "the reader saw an error").toBe("");
          expect(running(reader!.pid), "the reader stopped").toBe(true);
        };

        // The messages of the issue, each with the answer it must get.
        const named: Array<[string, number]> = [
          ['{"jsonrpc":"2.0","id":1,"method":"__proto__"}', -32601],
          ['{"jsonrpc":"2.0","id":2,"method":"constructor"}', -32601],
          ['{"jsonrpc":"2.0","id":3,"method":"toString"}', -32601],
          ['{"jsonrpc":"2.0","id":4,"method":"hasOwnProperty"}', -32601],
          ['{"jsonrpc":"2.0","id":5}', -32600],
          ['{"jsonrpc":"2.0","id":6,"method":"snapshot.delete","params":{"snapshot":5}}', -32602],
          ['{"jsonrpc":"2.0","id":7,"method":"status","params":[1]}', -32602],
        ];
        first.socket.write(named.map(([l]) => `${l}\n`).join(""));
        await until(
          "the named messages are answered",
          () => first.answers.length === 1 + named.length,
        );
        // Answers come as calls finish, not in order: each is found by its id.
        for (const [i, [line, code]] of named.entries())
          expect(errorOf(first.answers, i + 1).code, line).toBe(code);
        const delErr = errorOf(first.answers, 6);
        expect(delErr.message).toMatch(/snapshot/);

        // Many connections at once, each sending its share of random messages in random pieces.
        const conns = await Promise.all(Array.from({ length: 24 }, () => open(socket)));
        const owed = conns.map(() => 0);
        for (let n = 0; n < 4000; n++) {
          const c = int(r, 0, conns.length - 1);
          const m = message(r);
          if (m.answered) owed[c]!++;
          const bytes = Buffer.concat([Buffer.from(m.bytes), Buffer.from("\n")]);
          const cut = int(r, 0, bytes.length);
          conns[c]!.socket.write(bytes.subarray(0, cut));
          conns[c]!.socket.write(bytes.subarray(cut));
        }

        // Hostile connections alongside: a huge line, half a line then gone, one that never reads.
        const huge = await open(socket);
        huge.socket.write(
          `{"jsonrpc":"2.0","id":1,"method":"status","params":{"k":"${"x".repeat(3 << 20)}"}}\n`,
        );
        const half = await open(socket);
        half.socket.write('{"jsonrpc":"2.0","id":1,"meth');
        half.socket.destroy();
        const deaf = await open(socket);
        deaf.socket.pause();
        deaf.socket.write('{"jsonrpc":"2.0","id":1,"method":"writers.list"}\n'.repeat(5000));
        const leaver = await open(socket);
        leaver.socket.write(
          '{"jsonrpc":"2.0","id":1,"method":"storage"}\n{"jsonrpc":"2.0","id":2,"method":"snapshot.list"}\n',
        );
        leaver.socket.destroy();

        await huge.closed;
        expect(huge.answers).toHaveLength(1);
        expect((huge.answers[0]!.error as { code: number }).code).toBe(-32600);
        for (const [i, c] of conns.entries()) {
          await until(
            `connection ${i} got its ${owed[i]} answers`,
            () => {
              alive();
              return c.answers.length >= owed[i]!;
            },
            30_000,
          );
          for (const a of c.answers) expectResponse(a);
        }
        // Nothing more comes than was owed.
        await new Promise((done) => setTimeout(done, 200));
        expect(conns.map((c) => c.answers.length)).toEqual(owed);
        alive();

        // The daemon still does its work: the CLI is answered, a snapshot is taken, the reader reads on.
        expect(await ok("status", s.mnt, "--json")).toContain(`"pid": ${pid}`);
        await ok("snapshot", "create", s.mnt);
        expect(JSON.parse(await ok("snapshot", "list", s.mnt, "--json"))).toHaveLength(1);
        for (const c of [...conns, deaf, first]) c.socket.destroy();
        alive();
      });
    }, 90_000);
});
