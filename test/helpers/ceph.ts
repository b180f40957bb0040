// A private single-node Ceph for tests: a monitor, one in-memory OSD and a RADOS Gateway (S3) on
// 127.0.0.1, everything in a scratch directory. Never the system's /etc/ceph, /var/lib/ceph or services.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { processGroup, until } from "./mounted.js";

// The SDK's notice that its releases from 2027 need Node 22 is not the tests' business.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const TOOLS = [
  "/usr/bin/ceph-mon",
  "/usr/bin/ceph-osd",
  "/usr/bin/radosgw",
  "/usr/bin/radosgw-admin",
  "/usr/bin/ceph-authtool",
  "/usr/bin/monmaptool",
  "/usr/bin/ceph",
];

/** Why Ceph cannot be used here (the tools are missing), or undefined when it can. */
export function cephMissing(): string | undefined {
  const missing = TOOLS.filter((p) => !existsSync(p));
  return missing.length
    ? `${missing.join(", ")} not installed: run scripts/setup.sh (Debian ceph-mon, ceph-osd, radosgw, ceph-common)`
    : undefined;
}

export interface Gateway {
  /** `http://127.0.0.1:PORT`, the S3 endpoint (path-style buckets). */
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Its scratch directory: configuration, keyring, monitor data, run directory, logs. */
  dir: string;
  /** The daemons' process ids; `rgw` changes with `restartGateway`. */
  pids(): { mon: number; osd: number; rgw: number };
  /** Every TCP port it listens on or may listen on (monitor, gateway, the OSD's range). */
  ports: number[];
  /** An S3 client for it; `overrides` (e.g. `maxAttempts`) go on top of its settings. */
  client(overrides?: Partial<S3ClientConfig>): S3Client;
  createBucket(name: string): Promise<void>;
  /** What a child process's default AWS SDK v3 credential and config chain needs to reach it. */
  env(): Record<string, string>;
  /** SIGKILLs radosgw alone; the monitor and the OSD (and so the data) stay. */
  killGateway(): Promise<void>;
  /** Starts radosgw again on the same port over the same cluster; resolves once it answers. */
  restartGateway(): Promise<void>;
  /** SIGKILLs every daemon it started, by process group, waits for them, removes `dir`. */
  stop(): Promise<void>;
  /** The end of each daemon's log and output, for a failing test's message. */
  output(): string;
}

export interface GatewayOptions {
  /** Where its scratch directory is made (default: the system's temporary directory). */
  parent?: string;
}

// Ports are taken from blocks of BLOCK below the kernel's ephemeral range (32768-60999 here), so
// that no outgoing connection is given one: the monitor's, the gateway's, then the OSD's range.
// The OSD binds 4 ports (public, cluster, two heartbeats; msgr2 only) from the 8 it is given.
// Its default range starts at 6800 for every OSD, which is what keeps two clusters from running
// side by side unless `ms bind port min/max` is set.
const BLOCK = 10;
const FIRST_BLOCK = 10_000 / BLOCK;
const BLOCKS = (32_000 - 10_000) / BLOCK;

const bindable = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });

/** A block of BLOCK ports on 127.0.0.1 none of which is in use at the moment, at random. */
async function freeBlock(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const base = (FIRST_BLOCK + Math.floor(Math.random() * BLOCKS)) * BLOCK;
    const ports = Array.from({ length: BLOCK }, (_, i) => base + i);
    if ((await Promise.all(ports.map(bindable))).every(Boolean)) return base;
  }
  throw new Error("no block of free ports between 10000 and 32000 on 127.0.0.1");
}

/** Runs a Ceph tool to its end; fails with its output. */
function tool(file: string, args: string[], ms = 30_000): Promise<string> {
  return new Promise((done, fail) => {
    execFile(file, args, { timeout: ms, killSignal: "SIGKILL" }, (err, stdout, stderr) =>
      err ? fail(new Error(`${file} ${args.join(" ")}: ${err.message}\n${stderr}`)) : done(stdout),
    );
  });
}

/** SIGKILL to `pid` (a group when negative), which may have gone meanwhile. */
function signal(pid: number) {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Resolves once an anonymous `GET /` (the empty bucket list) answers 200. */
async function answers(endpoint: string, what: string, died: () => string | undefined) {
  await until(
    what,
    async () => {
      const death = died();
      if (death) throw new Error(death);
      return fetch(`${endpoint}/`).then(
        (r) => r.ok,
        () => false,
      );
    },
    30_000,
  );
}

export async function startGateway(opts: GatewayOptions = {}): Promise<Gateway> {
  const dir = await mkdtemp(join(opts.parent ?? tmpdir(), "shadowfs-ceph-"));
  const base = await freeBlock();
  const monPort = base;
  const rgwPort = base + 1;
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  const sub = (name: string) => join(dir, name);
  for (const d of ["mon", "osd", "rgw", "run", "log", "crash"]) await mkdir(sub(d));
  const conf = sub("ceph.conf");
  const keyring = sub("keyring");
  const fsid = randomUUID();
  await writeFile(
    conf,
    `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${monPort}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind port min = ${base + 2}
ms bind port max = ${base + BLOCK - 1}
keyring = ${keyring}
run dir = ${sub("run")}
admin socket = ${sub("run")}/$cluster-$name.asok
log file = ${sub("log")}/$name.log
mon cluster log file = ${sub("log")}/cluster.log
crash dir = ${sub("crash")}
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
# radosgw makes 6 pools at its first start; 8 placement groups each rather than 32 kept the OSD
# at 51 MiB resident instead of 58 (starts took as long).
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
# Every change to the maps (the OSD's creation and boot, each pool radosgw makes) waits this long
# before it is proposed: 1 s by default, with which a start took 11.5 s instead of 1-2 s.
paxos propose interval = 0.01
[mon.a]
mon data = ${sub("mon")}
[osd.0]
osd data = ${sub("osd")}
osd objectstore = memstore
# memstore's own bound is 1 GiB, and a full OSD holds every write back, for ever: a benchmark's
# volumes and its reference uploads need more (memory is taken only as objects come; the data of
# a deleted object stays until radosgw's garbage collection, hours later).
memstore device bytes = ${16 * 2 ** 30}
[client.rgw.a]
rgw data = ${sub("rgw")}
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
`,
  );

  const logs: Record<string, string> = {};
  const daemons = new Map<string, { child: ChildProcess; exit: Promise<void>; exited: boolean }>();
  // Each daemon in the foreground, in a process group of its own (detached), as root or not: the
  // scratch directory is its user's, and Debian's daemons only switch user when told to
  // (`--setuser`), which is left out.
  const daemon = (name: string, file: string, args: string[]) => {
    const child = spawn(file, ["-f", "-c", conf, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    if (child.pid === undefined) throw new Error(`cannot start ${file}`);
    logs[name] = "";
    const collect = (d: string) => {
      logs[name] += d;
    };
    child.stdout?.setEncoding("utf8").on("data", collect);
    child.stderr?.setEncoding("utf8").on("data", collect);
    const entry = { child, exited: false, exit: Promise.resolve() };
    entry.exit = new Promise<void>((done) =>
      child.on("exit", (code, signal) => {
        entry.exited = true;
        logs[name] += `\n[${name} exited: ${signal ?? code}]\n`;
        done();
      }),
    );
    daemons.set(name, entry);
  };
  const died = () => {
    for (const [name, d] of daemons) if (d.exited) return `${name} exited:\n${output()}`;
    return undefined;
  };
  const kill = async (name: string) => {
    const d = daemons.get(name);
    if (!d) return;
    const pid = d.child.pid!;
    if (processGroup(pid).length > 0) signal(-pid);
    await d.exit;
    await until(
      `${name} (${pid}) and its group have exited`,
      () => processGroup(pid).length === 0,
      10_000,
    );
  };
  // Should the test process end without `stop`, its daemons go with it.
  const onExit = () => {
    for (const d of daemons.values()) if (!d.exited) signal(-d.child.pid!);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);

  const output = () =>
    [
      ...Object.entries(logs).map(([name, text]) => `--- ${name} output\n${text.slice(-4000)}`),
      ...(existsSync(sub("log")) ? readdirSync(sub("log")) : []).map(
        (f) => `--- ${f}\n${readFileSync(join(sub("log"), f), "utf8").slice(-4000)}`,
      ),
    ].join("\n");

  const stop = async () => {
    process.removeListener("exit", onExit);
    // The gateway first, then the OSD while the monitor still runs; SIGKILL because the data is
    // thrown away anyway, and a terminated OSD waits for the monitor to acknowledge its going.
    for (const name of ["rgw", "osd", "mon"]) await kill(name);
    await rm(dir, { recursive: true, force: true });
  };

  const credentials = {
    accessKeyId: `SHADOWFS${randomBytes(6).toString("hex").toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString("base64"),
  };
  const region = "us-east-1";
  try {
    // One keyring for all: each daemon finds its own key in it by its name.
    const authtool = (name: string, ...caps: string[]) =>
      tool("/usr/bin/ceph-authtool", [keyring, "--gen-key", "-n", name, ...caps]);
    await tool("/usr/bin/ceph-authtool", ["--create-keyring", keyring]);
    await authtool("mon.", "--cap", "mon", "allow *");
    await authtool("client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *");
    await authtool("osd.0", "--cap", "mon", "allow profile osd", "--cap", "osd", "allow *");
    await authtool("client.rgw.a", "--cap", "mon", "allow rw", "--cap", "osd", "allow rwx");
    const monmap = sub("monmap");
    await tool("/usr/bin/monmaptool", [
      "--create",
      "--fsid",
      fsid,
      "--addv",
      "a",
      `[v2:127.0.0.1:${monPort}]`,
      monmap,
    ]);
    await tool("/usr/bin/ceph-mon", ["-c", conf, "--mkfs", "-i", "a", "--monmap", monmap]);
    daemon("mon", "/usr/bin/ceph-mon", ["-i", "a"]);
    const osdUuid = randomUUID();
    const ceph = ["-c", conf, "--connect-timeout", "20"];
    const id = (await tool("/usr/bin/ceph", [...ceph, "osd", "new", osdUuid])).trim();
    if (id !== "0") throw new Error(`ceph osd new gave osd id ${JSON.stringify(id)}, not 0`);
    await tool("/usr/bin/ceph-osd", ["-c", conf, "--mkfs", "-i", "0", "--osd-uuid", osdUuid]);
    daemon("osd", "/usr/bin/ceph-osd", ["-i", "0"]);
    // radosgw makes its pools itself; it answers once they are there (the OSD has booted).
    daemon("rgw", "/usr/bin/radosgw", ["-n", "client.rgw.a"]);
    await answers(endpoint, `radosgw answers at ${endpoint}`, died);
    await tool("/usr/bin/radosgw-admin", [
      "-c",
      conf,
      "user",
      "create",
      "--uid=shadowfs",
      "--display-name=shadowfs tests",
      `--access-key=${credentials.accessKeyId}`,
      `--secret-key=${credentials.secretAccessKey}`,
    ]);
  } catch (e) {
    const message = `${(e as Error).message}\n${output()}`;
    await stop();
    throw new Error(message);
  }

  const client = (overrides: Partial<S3ClientConfig> = {}) =>
    new S3Client({
      endpoint,
      region,
      credentials,
      forcePathStyle: true,
      // By default the SDK sends a streamed body (one with a ContentLength) as `aws-chunked` with
      // a trailing checksum, which this radosgw refuses: 411 MissingContentLength. A Buffer body
      // goes through either way; a stream without ContentLength is refused 411 either way.
      requestChecksumCalculation: "WHEN_REQUIRED",
      ...overrides,
    });

  return {
    endpoint,
    region,
    credentials,
    dir,
    ports: Array.from({ length: BLOCK }, (_, i) => base + i),
    pids: () => ({
      mon: daemons.get("mon")!.child.pid!,
      osd: daemons.get("osd")!.child.pid!,
      rgw: daemons.get("rgw")!.child.pid!,
    }),
    client,
    async createBucket(name) {
      const s3 = client();
      try {
        await s3.send(new CreateBucketCommand({ Bucket: name }));
      } finally {
        s3.destroy();
      }
    },
    env: () => ({
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_REGION: region,
      // Read by the SDK's endpoint configuration (AWS_ENDPOINT_URL_<SERVICE ID>, then
      // AWS_ENDPOINT_URL). An IP address as the host makes the SDK address buckets by path.
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_REQUEST_CHECKSUM_CALCULATION: "WHEN_REQUIRED",
    }),
    killGateway: () => kill("rgw"),
    async restartGateway() {
      const old = daemons.get("rgw");
      if (old && !old.exited) throw new Error("radosgw is running: killGateway first");
      daemon("rgw", "/usr/bin/radosgw", ["-n", "client.rgw.a"]);
      await answers(endpoint, `radosgw answers again at ${endpoint}`, died);
    },
    stop,
    output,
  };
}
