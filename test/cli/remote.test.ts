// Snapshots replicated to object storage, against a real Ceph RADOS Gateway of the test's own
// (test/helpers/ceph.ts), through the real binary: a varied tree through five snapshots
// replicated and received again (`rsync -aHAXc`), a second run that uploads nothing, what 1 % of
// a 1 GiB volume weighs there, the gateway killed mid-run, a damaged object, wrong credentials or
// bucket, prune, and a snapshot mounted where it lies.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReplicateToRemoteResult } from "../../src/cli/remote.js";
import type { RemoteRow, VerifyReport } from "../../src/daemon/remote/admin.js";
import type { SnapshotRow } from "../../src/daemon/reports.js";
import { cephMissing, type Gateway, startGateway } from "../helpers/ceph.js";
import {
  background,
  CLI,
  ok,
  type Run,
  run,
  type Scratch,
  scratchEachTest,
  sh,
  shadowfs,
  until,
} from "../helpers/mounted.js";
import { change, differences } from "../helpers/varied-tree.js";

const missing = cephMissing();
const { fresh, mount, hold } = scratchEachTest({ checkAll: true });
let gw: Gateway;
let buckets = 0;

beforeAll(async () => {
  if (missing) return;
  gw = await startGateway();
  // The SDK's default chain finds them here, as it would in a user's shell.
  Object.assign(process.env, gw.env());
}, 120_000);
afterAll(async () => {
  await gw?.stop();
});

/** A new bucket for the running test: s3://BUCKET/PREFIX. */
async function place(prefix = "vol"): Promise<string> {
  const bucket = `shadowfs-${process.pid}-${++buckets}`;
  await gw.createBucket(bucket);
  return `s3://${bucket}/${prefix}`;
}

/** Every object under `url`'s prefix with its size, by key. */
async function objects(url: string): Promise<Map<string, number>> {
  const { ListObjectsV2Command } = await import("@aws-sdk/client-s3");
  const [, bucket, prefix] = /^s3:\/\/([^/]+)\/(.*)$/.exec(url)!;
  const out = new Map<string, number>();
  let token: string | undefined;
  do {
    const r = await gw.client().send(
      new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: `${prefix}/`,
        ContinuationToken: token,
      }),
    );
    for (const o of r.Contents ?? []) out.set(o.Key!, o.Size ?? 0);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

const storedBytes = async (url: string) =>
  [...(await objects(url)).values()].reduce((a, b) => a + b, 0);

const list = async (target: string) =>
  JSON.parse(await ok("snapshot", "list", target, "--json")) as SnapshotRow[];

const replicate = async (source: string, url: string) =>
  JSON.parse(await ok("replicate", source, url, "--json")) as ReplicateToRemoteResult;

function refused(r: Run, pattern: RegExp): void {
  expect(r.code, `expected a failure, got stdout ${r.stdout}`).not.toBe(0);
  expect(r.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
}

/** A mounted store with snapshots s1..sN of the varied tree. */
async function sources(s: Scratch, count: number) {
  await ok("init", s.store, "--size", "256M");
  await mount(s.store, s.mnt);
  for (let i = 0; i < count; i++) {
    change(s.mnt, i);
    await ok("snapshot", "create", s.mnt, "--name", `s${i + 1}`);
  }
  const rows = await list(s.mnt);
  return { rows, at: (n: number) => join(s.mnt, ".snapshots", rows[n - 1]!.gmt) };
}

/** Mounts `store` at a new directory under the scratch; returns the mount point. */
async function mountAt(s: Scratch, store: string, name: string): Promise<string> {
  const mnt = join(s.dir, name);
  mkdirSync(mnt);
  await mount(store, mnt);
  return mnt;
}

describe.skipIf(missing)("replicate to object storage (a real Ceph RADOS Gateway)", () => {
  it("carries five snapshots there and back: each equals the source; a second run uploads nothing", async () => {
    const s = await fresh();
    const src = await sources(s, 5);
    const url = await place();
    const first = await replicate(s.mnt, url);
    expect(first.sent.map((x) => [x.snapshot, x.from])).toEqual(
      src.rows.map((r, i) => [r.gmt, i === 0 ? null : src.rows[i - 1]!.gmt]),
    );
    const before = await objects(url);
    const again = await replicate(s.mnt, url);
    expect(again).toMatchObject({ upToDate: true, sent: [] });
    expect(again.traffic).toMatchObject({ puts: 0, bytesUp: 0 });
    expect(await objects(url)).toEqual(before);

    const rows = JSON.parse(await ok("remote", "list", url, "--json")) as RemoteRow[];
    expect(rows.map((r) => [r.gmt, r.name, r.guid])).toEqual(
      src.rows.map((r) => [r.gmt, r.name, r.guid]),
    );
    expect(await ok("remote", "list", url)).toMatch(/^SNAPSHOT +NAME +CREATED +SIZE +EXCLUSIVE\n/);

    // Every snapshot into one new store, and each alone into a store of its own.
    const all = join(s.dir, "all");
    await ok("snapshot", "receive", all, "--from", url);
    const amnt = await mountAt(s, all, "amnt");
    const got = await list(amnt);
    expect(got.map((r) => [r.gmt, r.name, r.guid])).toEqual(
      src.rows.map((r) => [r.gmt, r.name, r.guid]),
    );
    for (let n = 1; n <= 5; n++)
      expect(differences(src.at(n), join(amnt, ".snapshots", got[n - 1]!.gmt)), `s${n}`).toBe("");
    expect(differences(src.at(5), amnt)).toBe("");
    await ok("unmount", amnt);
    await ok("fsck", all);
    for (let n = 1; n <= 5; n++) {
      const one = join(s.dir, `one${n}`);
      await ok("snapshot", "receive", one, "--from", `${url}@${src.rows[n - 1]!.gmt}`);
      const omnt = await mountAt(s, one, `omnt${n}`);
      expect(differences(src.at(n), omnt), `s${n} alone`).toBe("");
      expect((await list(omnt)).map((r) => r.guid)).toEqual([src.rows[n - 1]!.guid]);
      await ok("unmount", omnt);
      await ok("fsck", one);
    }

    const verified = JSON.parse(await ok("remote", "verify", url, "--json")) as VerifyReport;
    expect(verified).toMatchObject({ snapshots: 5, problems: [] });
  });

  it("a damaged object is named by verify and refused by a receive; bad credentials or bucket are one line", async () => {
    const s = await fresh();
    await sources(s, 1);
    const url = await place();
    await replicate(s.mnt, url);
    const { GetObjectCommand, PutObjectCommand } = await import("@aws-sdk/client-s3");
    const [, bucket] = /^s3:\/\/([^/]+)\//.exec(url)!;
    const pack = [...(await objects(url)).keys()].find((k) => k.includes("/packs/"))!;
    const body = await (
      await gw.client().send(new GetObjectCommand({ Bucket: bucket, Key: pack }))
    ).Body!.transformToByteArray();
    body[body.length >> 1]! ^= 0x5a;
    await gw.client().send(new PutObjectCommand({ Bucket: bucket, Key: pack, Body: body }));

    const v = await shadowfs("remote", "verify", url);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain(`s3://${bucket}/${pack}: damaged pack: slot`);
    const dst = join(s.dir, "dst");
    refused(await shadowfs("snapshot", "receive", dst, "--from", url), /damaged/);
    expect(existsSync(dst)).toBe(false);

    const wrong = sh(
      `AWS_SECRET_ACCESS_KEY=wrong ${process.execPath} ${CLI} snapshot receive ${dst} --from ${url}`,
    );
    refused(wrong, /access refused .*check the credentials/);
    expect(wrong.stderr).not.toContain(gw.credentials.secretAccessKey);
    expect(existsSync(dst)).toBe(false);
    refused(
      await shadowfs("remote", "list", "s3://no-such-bucket/x"),
      /bucket no-such-bucket does not exist/,
    );
    refused(await shadowfs("replicate", s.mnt, "s3://no-such-bucket/x"), /does not exist/);
  });

  it("the gateway killed mid-replicate: the next run completes, sending what is missing", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "1G");
    await mount(s.store, s.mnt);
    run(`head -c 400M /dev/urandom > ${s.mnt}/big`);
    await ok("snapshot", "create", s.mnt);
    const url = await place();
    const cut = hold(background(`${process.execPath} ${CLI} replicate ${s.mnt} ${url} --json`));
    await until(
      "some packs are uploaded",
      async () => [...(await objects(url)).keys()].filter((k) => k.includes("/index/")).length >= 3,
      120_000,
    );
    await gw.killGateway();
    expect(await cut.exited, cut.stdout).not.toBe(0);
    expect(cut.stderr).toMatch(/^shadowfs: [^\n]+\n$/);
    await gw.restartGateway();
    const done = await replicate(s.mnt, url);
    expect(done.sent).toHaveLength(1);
    expect(done.sent[0]!.reusedChunks).toBeGreaterThanOrEqual(3 * 256);
    const dst = join(s.dir, "dst");
    await ok("snapshot", "receive", dst, "--from", url);
    const dmnt = await mountAt(s, dst, "dmnt");
    expect(run(`cmp ${s.mnt}/big ${dmnt}/big && echo same`)).toBe("same\n");
  });

  it("prune keeps what the kept snapshots need: each still receives exactly", async () => {
    const s = await fresh();
    const src = await sources(s, 5);
    const url = await place();
    await replicate(s.mnt, url);
    const bytes = await storedBytes(url);
    await ok("remote", "prune", url, "--keep", "2");
    const rows = JSON.parse(await ok("remote", "list", url, "--json")) as RemoteRow[];
    expect(rows.map((r) => r.gmt)).toEqual(src.rows.slice(3).map((r) => r.gmt));
    expect(await storedBytes(url)).toBeLessThan(bytes);
    expect(JSON.parse(await ok("remote", "verify", url, "--json"))).toMatchObject({ problems: [] });
    for (const n of [4, 5]) {
      const dst = join(s.dir, `dst${n}`);
      await ok("snapshot", "receive", dst, "--from", `${url}@${src.rows[n - 1]!.gmt}`);
      const dmnt = await mountAt(s, dst, `dmnt${n}`);
      expect(differences(src.at(n), dmnt), `s${n}`).toBe("");
    }
    refused(await shadowfs("remote", "prune", url, "--keep", "0"), /keep at least/);
  });

  it("a 1 GiB volume: 1 % changed stores about 1 % more; one 10 MiB file read where it lies", async () => {
    const s = await fresh();
    await ok("init", s.store, "--size", "1G");
    await mount(s.store, s.mnt);
    run(`head -c 256M /dev/urandom > ${s.mnt}/bulk && head -c 10M /dev/urandom > ${s.mnt}/one`);
    await ok("snapshot", "create", s.mnt, "--name", "a");
    const url = await place();
    await replicate(s.mnt, url);
    const before = await storedBytes(url);
    const changed = 10 * 2 ** 20; // about 1 % of the volume, in ten places
    for (let i = 0; i < 10; i++)
      run(
        `head -c 1M /dev/urandom | dd of=${s.mnt}/bulk bs=1M seek=${i * 80} conv=notrunc status=none`,
      );
    await ok("snapshot", "create", s.mnt, "--name", "b");
    await replicate(s.mnt, url);
    const added = (await storedBytes(url)) - before;
    expect(added).toBeGreaterThanOrEqual(changed);
    expect(added, `${added} bytes stored for ${changed} changed`).toBeLessThan(changed * 1.25);

    const cache = join(s.dir, "cache");
    const lmnt = join(s.dir, "lazy");
    mkdirSync(lmnt);
    const said = await ok("mount", `${url}@b`, lmnt, "--cache", cache);
    const pid = Number(/daemon (\d+)/.exec(said)![1]);
    try {
      const sum = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
      expect(run(`sha256sum < ${lmnt}/one`).split(" ")[0]).toBe(sum(join(s.mnt, "one")));
      expect(sh(`touch ${lmnt}/x`).code).not.toBe(0);
    } finally {
      await ok("unmount", lmnt);
      await until(`remote mount daemon ${pid} has exited`, () => !existsSync(`/proc/${pid}`));
    }
    const stopped = readFileSync(join(cache, "mount.log"), "utf8")
      .split("\n")
      .filter((l) => l.includes('"stopped"'))
      .map((l) => JSON.parse(l) as { fetchedBytes: number })
      .at(-1)!;
    expect(stopped.fetchedBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(stopped.fetchedBytes, "bytes fetched to read 10 MiB").toBeLessThan(20 * 2 ** 20);
  }, 300_000);
});
