// What the snapshot protocol tests share: a scratch dir of bash writers that log their events,
// an in-memory provider, and a unix-socket server for registered writers. It asserts nothing.

import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import tmp from "tmp";
import { expect } from "vitest";
import type { Provider, WriterChannel, WriterClientOptions } from "../../src/snapshot/index.js";
import {
  parseRegistration,
  SocketWriter,
  WriterClient,
  WriterFailure,
} from "../../src/snapshot/index.js";

export interface Scratch {
  dir: string;
  writersDir: string;
  /** Every writer and provider appends `WHO WHAT` lines here, in the order things happen. */
  log: string;
  /** Every writer process (and what it forks) appends its pid here. */
  pids: string;
  cleanup: () => void;
}

export function scratch(): Scratch {
  const t = tmp.dirSync({ prefix: "shadowfs-snapshot-" });
  const writersDir = join(t.name, "writers.d");
  const s = {
    dir: t.name,
    writersDir,
    log: join(t.name, "events.log"),
    pids: join(t.name, "pids"),
    cleanup: () => rmSync(t.name, { recursive: true, force: true }),
  };
  mkdirSync(writersDir);
  writeFileSync(s.log, "");
  return s;
}

/**
 * A bash writer `writers.d/NAME` that logs `NAME EVENT SNAPSHOT_ID` and then runs `on[EVENT]`
 * (a bash snippet; it may `exit`). `$PIDS` names the pid file for anything it forks.
 */
export function execWriter(s: Scratch, name: string, on: Record<string, string> = {}): string {
  const cases = Object.entries(on)
    .map(([event, body]) => `  ${event})\n${body}\n  ;;`)
    .join("\n");
  const path = join(s.writersDir, name);
  writeFileSync(
    path,
    `#!/bin/bash
PIDS='${s.pids}'
echo $$ >> "$PIDS"
echo "${name} $1 \${SHADOWFS_SNAPSHOT_ID}" >> '${s.log}'
case "$1" in
${cases}
esac
exit 0
`,
    { mode: 0o755 },
  );
  return path;
}

/** The log, one entry per line. */
export const logLines = (s: Scratch): string[] =>
  readFileSync(s.log, "utf8")
    .split("\n")
    .filter((l) => l !== "");

/** `WHO WHAT` of every log line (the snapshot id left off). */
export const steps = (s: Scratch): string[] =>
  logLines(s).map((l) => l.split(" ").slice(0, 2).join(" "));

/** Whether `pid` is a running (not zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Kills every process a writer logged in the pid file, and their groups. */
export function killWriters(s: Scratch): void {
  if (!existsSync(s.pids)) return;
  for (const line of readFileSync(s.pids, "utf8").split("\n")) {
    const pid = Number(line);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    for (const target of [-pid, pid])
      try {
        process.kill(target, "SIGKILL");
      } catch {
        // Gone already.
      }
  }
}

export { until } from "../helpers/mounted.js";

/** The WriterFailure `p` rejects with (failing the test if it resolves or rejects otherwise). */
export async function failure(p: Promise<unknown>): Promise<WriterFailure> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(WriterFailure);
  return e as WriterFailure;
}

/** An in-memory provider that logs what it is asked to do. */
export class FakeProvider implements Provider {
  readonly calls: string[] = [];
  readonly snapshots = new Map<number, string>();
  held = false;
  /** When set, hold never resolves (a volume that cannot get quiet). */
  stuck = false;
  /** When set, commit fails with this error. */
  commitError: Error | null = null;
  private nextId = 1;

  constructor(
    private readonly s: Scratch,
    private readonly who = "provider",
  ) {}

  private note(what: string): void {
    this.calls.push(what);
    appendFileSync(this.s.log, `${this.who} ${what}\n`);
  }

  hold(): Promise<void> {
    this.note("hold");
    if (this.stuck) return new Promise(() => undefined);
    this.held = true;
    return Promise.resolve();
  }

  async commit(opts: { name?: string; setId: string }): Promise<{ id: number; gmt: string }> {
    if (this.commitError) throw this.commitError;
    const id = this.nextId++;
    const gmt = `@GMT-2025.01.01-00.00.${String(id).padStart(2, "0")}`;
    this.snapshots.set(id, opts.name ?? gmt);
    this.note(`commit ${id}`);
    return { id, gmt };
  }

  release(): void {
    this.held = false;
    this.note("release");
  }

  async discard(id: number): Promise<void> {
    this.snapshots.delete(id);
    this.note(`discard ${id}`);
  }
}

/** The server side of one connection: NDJSON JSON-RPC, as the daemon speaks it. */
class TestChannel implements WriterChannel {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { ok: (v: unknown) => void; fail: (e: Error) => void }
  >();
  private readonly closers: Array<() => void> = [];
  requests = 0;

  constructor(
    readonly socket: Socket,
    onRegister: (w: SocketWriter) => void,
  ) {
    let buffered = "";
    socket.setEncoding("utf8");
    socket.on("error", () => undefined);
    socket.on("close", () => {
      for (const c of this.closers.splice(0)) c();
      for (const p of this.pending.values()) p.fail(new Error("closed"));
    });
    socket.on("data", (chunk: string) => {
      buffered += chunk;
      for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
        const msg = JSON.parse(buffered.slice(0, i));
        buffered = buffered.slice(i + 1);
        if (msg.method === "writer.register") {
          try {
            onRegister(new SocketWriter(this, parseRegistration(msg.params)));
            this.send({ jsonrpc: "2.0", id: msg.id, result: {} });
          } catch (e) {
            this.send({
              jsonrpc: "2.0",
              id: msg.id,
              error: { code: -32000, message: (e as Error).message },
            });
          }
        } else if (msg.method === undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.fail(new Error(msg.error.message));
          else p?.ok(msg.result);
        }
      }
    });
  }

  private send(m: object): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(m)}\n`);
  }

  request(method: string, params: object): Promise<unknown> {
    this.requests++;
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      this.pending.set(id, { ok, fail });
      this.send({ jsonrpc: "2.0", id, method, params });
    });
  }

  onClose(fn: () => void): void {
    this.closers.push(fn);
  }
}

/** A unix socket writers register on, and the clients registered through it. */
export class WriterServer {
  readonly path: string;
  readonly writers: SocketWriter[] = [];
  readonly channels: TestChannel[] = [];
  readonly clients: WriterClient[] = [];
  private server: Server | null = null;

  constructor(private readonly s: Scratch) {
    this.path = join(s.dir, "control.sock");
  }

  async start(): Promise<this> {
    const server = createServer((socket) => {
      this.channels.push(new TestChannel(socket, (w) => this.writers.push(w)));
    });
    await new Promise<void>((ok) => server.listen(this.path, ok));
    this.server = server;
    return this;
  }

  /** Registers a client whose handlers log `NAME EVENT SNAPSHOT_ID`, then run `on[EVENT]`. */
  async register(
    name: string,
    on: Partial<Record<string, (c: WriterClient) => Promise<void> | void>> = {},
    extra: Partial<WriterClientOptions> = {},
  ): Promise<WriterClient> {
    let client: WriterClient | undefined;
    const handler = (event: string) => async (ctx: { snapshotId: number | null }) => {
      appendFileSync(this.s.log, `${name} ${event} ${ctx.snapshotId ?? ""}\n`);
      await on[event]?.(client!);
    };
    client = await WriterClient.register(this.path, {
      name,
      handlers: {
        prepare: handler("prepare"),
        freeze: handler("freeze"),
        thaw: handler("thaw"),
        "post-snapshot": handler("post-snapshot"),
      },
      ...extra,
    });
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
    for (const ch of this.channels) ch.socket.destroy();
    await new Promise<void>((ok) => (this.server ? this.server.close(() => ok()) : ok()));
  }
}
