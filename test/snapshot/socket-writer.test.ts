// Long-lived writers over a real unix socket: registering with WriterClient, answering events,
// refusing, timing out, and the connection dropping under a pending call.

import type { Server } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { serve } from "../../src/daemon/rpc.js";
import {
  type EventContext,
  parseRegistration,
  SocketWriter,
  type WriterChannel,
  WriterClient,
} from "../../src/snapshot/index.js";
import { methodTable } from "../../src/snapshot/rpc/api.js";
import type { RpcPeer } from "../../src/snapshot/rpc/peer.js";
import { writerRegistrationApi } from "../../src/snapshot/socket-writer.js";
import { failure, type Scratch, scratch, steps, until, WriterServer } from "./fixture.js";

let s: Scratch;
let server: WriterServer;
beforeEach(async () => {
  s = scratch();
  server = await new WriterServer(s).start();
});
afterEach(async () => {
  await server.stop();
  s.cleanup();
});

const ctx: EventContext = {
  volume: "/srv/store",
  mountpoint: null,
  setId: "set-1",
  snapshotId: 3,
  snapshotName: "@GMT-2025.01.01-00.00.03",
};

describe("SocketWriter and WriterClient", () => {
  it("registers, answers identify from its registration and runs handlers with the context", async () => {
    const seen: EventContext[] = [];
    const client = await WriterClient.register(server.path, {
      name: "cache",
      paths: ["/srv/store/cache"],
      restore: "rebuild",
      handlers: { freeze: (c) => void seen.push(c) },
    });
    server.clients.push(client);
    expect(server.writers.map((w) => [w.name, w.kind])).toEqual([["cache", "socket"]]);
    const w = server.writers[0]!;
    const requests = server.channels[0]!.requests;
    expect(await w.call("identify", ctx, 1000)).toEqual({
      paths: ["/srv/store/cache"],
      restore: "rebuild",
    });
    expect(server.channels[0]!.requests).toBe(requests);
    expect(await w.call("freeze", ctx, 5000)).toEqual({});
    expect(seen).toEqual([ctx]);
    // No handler for thaw: it agrees.
    expect(await w.call("thaw", ctx, 5000)).toEqual({});
  });

  it("turns a handler's throw into a failure with its message", async () => {
    await server.register("db", {
      prepare: () => {
        throw new Error("database busy");
      },
    });
    const e = await failure(server.writers[0]!.call("prepare", ctx, 5000));
    expect(e.writer).toBe("db");
    expect(e.reason).toBe("database busy");
  });

  it("fails a call the client does not answer in time", async () => {
    await server.register("slow", { freeze: () => new Promise(() => undefined) });
    const e = await failure(server.writers[0]!.call("freeze", ctx, 300));
    expect(e.reason).toBe("did not answer freeze within 300 ms");
  });

  it("fails the pending call and every later one when the connection drops", async () => {
    await server.register("leaver", {
      freeze: (c) => {
        void c.close();
        return new Promise(() => undefined);
      },
    });
    const w = server.writers[0] as SocketWriter;
    expect((await failure(w.call("freeze", ctx, 10_000))).reason).toBe("connection dropped");
    expect(w.connected).toBe(false);
    expect((await failure(w.call("thaw", ctx, 10_000))).reason).toBe("connection dropped");
    expect((await failure(w.call("identify", ctx, 10_000))).reason).toBe("connection dropped");
    expect(steps(s)).toEqual(["leaver freeze"]);
  });

  it("fails a pending call when its channel closes, even if the channel forgets it", async () => {
    let close: () => void = () => undefined;
    const channel: WriterChannel = {
      request: () => new Promise(() => undefined),
      onClose: (fn) => {
        close = fn;
      },
    };
    const w = new SocketWriter(channel, { name: "app", paths: [], restore: "files" });
    const pending = w.call("freeze", ctx, 60_000);
    close();
    expect((await failure(pending)).reason).toBe("connection dropped");
  }, 8000);

  it("refuses a registration with a bad name, and the client says so", async () => {
    await expect(
      WriterClient.register(server.path, { name: "no spaces", handlers: {} }),
    ).rejects.toThrow(/writer registration: name/);
    expect(server.writers).toEqual([]);
    expect(() => parseRegistration({ name: "ok", paths: [3] })).toThrow(/EINVAL.*paths/);
    expect(parseRegistration({ name: "ok" })).toEqual({ name: "ok", paths: [], restore: "files" });
  });
});

describe("the daemon's connection as a writer channel", () => {
  let daemon: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((ok) => (daemon ? daemon.close(() => ok()) : ok()));
  });

  it("carries writer events both ways", async () => {
    const writers: SocketWriter[] = [];
    const path = join(s.dir, "daemon.sock");
    daemon = await serve(
      path,
      methodTable(writerRegistrationApi, {
        "writer.register": (reg, peer) => {
          const channel: WriterChannel = peer as RpcPeer;
          writers.push(new SocketWriter(channel, reg));
          return { registered: reg.name };
        },
      }),
    );
    const events: string[] = [];
    const client = await WriterClient.register(path, {
      name: "app",
      handlers: { freeze: () => void events.push("freeze") },
    });
    expect(await writers[0]!.call("freeze", ctx, 5000)).toEqual({});
    expect(events).toEqual(["freeze"]);
    await client.close();
    await until("the daemon sees the writer leave", () => !writers[0]!.connected);
  });
});
