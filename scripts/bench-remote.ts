// Benchmark of snapshots in object storage, against a private Ceph RADOS Gateway on this machine
// (test/helpers/ceph.ts): `replicate` of a volume filled with data against uploading its base image
// as one object with the SDK's multipart upload (the same part size and uploads at once);
// `snapshot receive --from` against a plain download of that object to a file (each followed by a
// sync); the bytes an incremental replicate stores with 1 % changed; and the time to a file's
// first byte through a mount of the snapshot from object storage, with an empty cache. Caches are
// dropped before each timed run. It owns one temporary directory and the gateway it starts, and
// unmounts, stops and removes them at exit, also on SIGINT and SIGTERM.

import { createReadStream, createWriteStream } from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { ReplicateToRemoteResult } from "../src/cli/remote.js";
import { cephMissing, type Gateway, startGateway } from "../test/helpers/ceph.js";
import {
  benchName,
  COMMON_OPTIONS,
  changeOnePercent,
  diskFree,
  dropCaches,
  filledVolume,
  fmt,
  makeWork,
  median,
  mounts,
  notes,
  positive,
  printReport,
  removeWork,
  round,
  run,
  runBench,
  say,
  sayShadowfsCommand,
  shadowfs,
  timedPasses,
  unmountAll,
  VOLUME_OPTIONS,
} from "./bench-common.js";

benchName("bench-remote");
const { values: opt } = parseArgs({
  options: {
    ...COMMON_OPTIONS,
    ...VOLUME_OPTIONS,
  },
});
const passes = positive("--passes", opt.passes, true);
const sizeMiB = positive("--size-mib", opt["size-mib"], true);
const MiB = 2 ** 20;
/** As replicate uploads: parts of 16 MiB, four at a time. */
const PART = 16 * MiB;
const QUEUE = 4;

interface Results {
  volumeBytes: number;
  dataBytes: number;
  replicateSec: number;
  uploadSec: number;
  replicateVsUpload: number;
  incrementalBytes: number;
  changedBytes: number;
  receiveSec: number;
  downloadSec: number;
  receiveVsDownload: number;
  lazyFirstByteMs: number;
}

let gw: Gateway | undefined;

/** Deletes every object in `bucket` (the gateway keeps them in memory). */
async function empty(bucket: string): Promise<void> {
  const client = gw!.client();
  for (;;) {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (r.Contents ?? []).map((o) => o.Key!);
    if (keys.length === 0) return;
    for (const Key of keys) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
  }
}

async function main(): Promise<Results> {
  const missing = cephMissing();
  if (missing) throw new Error(missing);
  const work = await makeWork(opt.dir);
  if ((await diskFree(work)) < sizeMiB * MiB * 4)
    throw new Error(`${work} needs ${sizeMiB * 4} MiB free: a volume, two stores and a download`);
  sayShadowfsCommand();
  say("starting a private Ceph RADOS Gateway");
  gw = await startGateway();
  Object.assign(process.env, gw.env());
  const volume = await filledVolume(sizeMiB);
  const { store, mnt } = volume;
  const image = join(store, "volume", "base.img");

  say("replicate against a multipart upload of the base image");
  const buckets = Array.from({ length: passes }, (_, i) => `bench-replicate-${i}`);
  for (const b of [...buckets, "bench-upload"]) await gw.createBucket(b);
  const replicateSec = await timedPasses(
    passes,
    (i) => shadowfs(["replicate", mnt, `s3://${buckets[i]}/vol`, "--json"]),
    // The previous pass's objects go first: the gateway holds them in memory.
    async (i) => (i > 0 ? empty(buckets[i - 1]!) : undefined),
  );
  const uploadSec = await timedPasses(passes, async () => {
    const up = new Upload({
      client: gw!.client(),
      params: { Bucket: "bench-upload", Key: "base.img", Body: createReadStream(image) },
      partSize: PART,
      queueSize: QUEUE,
    });
    await up.done();
  });

  say("incremental replicate, 1% changed");
  const url = `s3://${buckets.at(-1)}/vol`;
  const changedBytes = await changeOnePercent(volume, sizeMiB);
  const inc = JSON.parse(
    (await shadowfs(["replicate", mnt, url, "--json"])).stdout,
  ) as ReplicateToRemoteResult;
  const incrementalBytes = inc.traffic.bytesUp;

  say("receive against a download of the uploaded image");
  const received = join(work, "received");
  const receiveSec = await timedPasses(
    passes,
    () => shadowfs(["snapshot", "receive", received, "--from", `${url}@a`]),
    () => run("rm", ["-rf", received]),
  );
  const copy = join(work, "image.copy");
  const downloadSec = await timedPasses(passes, async () => {
    const r = await gw!
      .client()
      .send(new GetObjectCommand({ Bucket: "bench-upload", Key: "base.img" }));
    await pipeline(r.Body as NodeJS.ReadableStream, createWriteStream(copy));
    await run("sync", [copy]);
  });

  say("first byte through a mount from object storage, empty cache");
  const lazy = join(work, "lazy");
  await run("mkdir", [lazy]);
  const firstByte: number[] = [];
  for (let i = 0; i < passes; i++) {
    const cache = join(work, `cache-${i}`);
    await shadowfs(["mount", `${url}@a`, lazy, "--cache", cache]);
    mounts.push({ path: lazy, unmount: () => shadowfs(["unmount", lazy]).then(() => undefined) });
    await dropCaches();
    const t0 = performance.now();
    await run("head", ["-c", "1", join(lazy, "data")]);
    firstByte.push(performance.now() - t0);
    await shadowfs(["unmount", lazy]);
    mounts.pop();
  }
  say(`  passes: ${firstByte.map((x) => x.toFixed(1)).join(", ")} ms`);
  notes.push(
    "replicate and receive are timed as the command runs them, start-up included; the receive " +
      "syncs what it wrote before it returns, so the download is followed by a sync of its file; " +
      "the gateway keeps objects in memory (memstore), so the disk is not the limit",
  );
  return {
    volumeBytes: sizeMiB * MiB,
    dataBytes: volume.dataMiB * MiB,
    replicateSec: round(replicateSec, 3)!,
    uploadSec: round(uploadSec, 3)!,
    replicateVsUpload: round(uploadSec / replicateSec, 2)!,
    incrementalBytes,
    changedBytes,
    receiveSec: round(receiveSec, 3)!,
    downloadSec: round(downloadSec, 3)!,
    receiveVsDownload: round(downloadSec / receiveSec, 2)!,
    lazyFirstByteMs: round(median(firstByte), 1)!,
  };
}

await runBench(
  main,
  async () => {
    await unmountAll();
    await gw?.stop();
    await removeWork(opt.keep);
  },
  (r) =>
    printReport(
      opt.json,
      `volume ${sizeMiB} MiB, 85% written; a private Ceph RADOS Gateway (memstore) on this machine; medians of ${passes} passes, caches dropped before each`,
      r,
      () => [
        `replicate:  ${fmt(r.replicateSec, 2)} s; multipart upload of the base image: ${fmt(r.uploadSec, 2)} s; replicate vs upload ${fmt(r.replicateVsUpload, 2)}`,
        `incremental replicate, ${fmt(r.changedBytes / MiB, 0)} MiB changed: ${fmt(r.incrementalBytes / MiB, 2)} MiB uploaded (${fmt(r.incrementalBytes / r.changedBytes, 2)}x the bytes changed)`,
        `receive:    ${fmt(r.receiveSec, 2)} s; download of the image: ${fmt(r.downloadSec, 2)} s; receive vs download ${fmt(r.receiveVsDownload, 2)}`,
        `first byte through a mount from object storage: ${fmt(r.lazyFirstByteMs, 1)} ms`,
      ],
    ),
);
