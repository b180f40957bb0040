// The private Ceph RADOS Gateway tests start (test/helpers/ceph.ts): S3 as the AWS SDK v3 speaks
// it, as a child process reaches it, a killed and restarted gateway, and nothing left behind.

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { Readable } from "node:stream";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  S3Client as SdkClient,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cephMissing, type Gateway, startGateway } from "./ceph.js";

const missing = cephMissing();
const BUCKET = "snapshots";
const MiB = 1 << 20;

const read = async (s3: S3Client, Key: string, Range?: string): Promise<Buffer> => {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key, Range }));
  return Buffer.from(await r.Body!.transformToByteArray());
};

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** The error an S3 call fails with: its name, HTTP status and code (a socket error's). */
async function failure(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    const err = e as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
    return { name: err.name, status: err.$metadata?.httpStatusCode, code: err.code };
  }
  throw new Error("it succeeded");
}

const bindable = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });

describe.skipIf(missing)(missing ? `skipped: ${missing}` : "a private Ceph RADOS Gateway", () => {
  let g: Gateway | undefined;
  let s3: S3Client;
  beforeAll(async () => {
    g = await startGateway();
    s3 = g.client();
    await g.createBucket(BUCKET);
  });
  afterEach((ctx) => {
    // The daemons' logs, for a failing test.
    if (ctx.task.result?.state === "fail" && g) console.error(g.output());
  });
  afterAll(async () => {
    s3?.destroy();
    await g?.stop();
  });
  const gw = () => g!;

  it("puts, gets, reads a range of, lists and deletes objects", async () => {
    const body = Buffer.from("0123456789abcdefghij".repeat(1000));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "dir/a", Body: body }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "dir/b", Body: Buffer.from("b") }));
    expect(await read(s3, "dir/a")).toEqual(body);
    expect((await read(s3, "dir/a", "bytes=10-19")).toString()).toBe("abcdefghij");
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "dir/a" }));
    expect(head.ContentLength).toBe(body.length);

    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "dir/" }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([
      ["dir/a", body.length],
      ["dir/b", 1],
    ]);
    const buckets = await s3.send(new ListBucketsCommand({}));
    expect(buckets.Buckets?.map((b) => b.Name)).toEqual([BUCKET]);

    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "dir/b" }));
    expect(
      await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "dir/b" }))),
    ).toMatchObject({ name: "NoSuchKey", status: 404 });
    const after = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "dir/" }));
    expect(after.Contents?.map((o) => o.Key)).toEqual(["dir/a"]);
  });

  it("takes a 20 MiB multipart upload and reads a range across its parts", async () => {
    // @aws-sdk/lib-storage is not a dependency: the three calls it would make, made here.
    const parts = [1, 2, 3, 4].map((n) => Buffer.alloc(5 * MiB, n)); // 5 MiB: S3's least part
    const whole = Buffer.concat(parts);
    const Key = "multipart";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key }));
    const done = [];
    for (const [i, Body] of parts.entries()) {
      const PartNumber = i + 1;
      const r = await s3.send(
        new UploadPartCommand({ Bucket: BUCKET, Key, UploadId, PartNumber, Body }),
      );
      done.push({ ETag: r.ETag, PartNumber });
    }
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key,
        UploadId,
        MultipartUpload: { Parts: done },
      }),
    );
    expect(sha256(await read(s3, Key))).toBe(sha256(whole));
    const across = await read(s3, Key, `bytes=${5 * MiB - 2}-${5 * MiB + 1}`);
    expect([...across]).toEqual([1, 1, 2, 2]);
  });

  it("takes a streamed body of known length; the SDK's default checksums get 411", async () => {
    const chunks = () => Readable.from([Buffer.alloc(100_000, 7), Buffer.alloc(100_000, 8)]);
    const put = (client: S3Client, Key: string) =>
      client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key, Body: chunks(), ContentLength: 200_000 }),
      );
    await put(s3, "streamed");
    expect((await read(s3, "streamed")).length).toBe(200_000);
    // A client with the SDK's defaults sends it `aws-chunked` with a trailing checksum.
    const plain = new SdkClient({
      endpoint: gw().endpoint,
      region: gw().region,
      credentials: gw().credentials,
      forcePathStyle: true,
    });
    try {
      expect(await failure(put(plain, "refused"))).toMatchObject({
        name: "MissingContentLength",
        status: 411,
      });
    } finally {
      plain.destroy();
    }
  });

  it("refuses wrong credentials and names a missing bucket", async () => {
    // An access key it does not know: 403 InvalidAccessKeyId; a known key with the wrong
    // secret: 403 SignatureDoesNotMatch.
    const { accessKeyId } = gw().credentials;
    for (const [credentials, name] of [
      [{ accessKeyId: "NOSUCHKEY", secretAccessKey: "x" }, "InvalidAccessKeyId"],
      [{ accessKeyId, secretAccessKey: "not-the-secret" }, "SignatureDoesNotMatch"],
    ] as const) {
      const wrong = gw().client({ credentials });
      try {
        expect(await failure(read(wrong, "dir/a"))).toMatchObject({ name, status: 403 });
      } finally {
        wrong.destroy();
      }
    }
    expect(
      await failure(s3.send(new ListObjectsV2Command({ Bucket: "no-such-bucket" }))),
    ).toMatchObject({ name: "NoSuchBucket", status: 404 });
  });

  it("is reached by a child process given env() alone (the SDK's default chain)", () => {
    const script = `
      import { S3Client, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
      const s3 = new S3Client({});
      await s3.send(new PutObjectCommand({ Bucket: "${BUCKET}", Key: "from-child", Body: "hello" }));
      const r = await s3.send(new GetObjectCommand({ Bucket: "${BUCKET}", Key: "from-child" }));
      process.stdout.write(await r.Body.transformToString());
    `;
    // HOME in the scratch directory: no ~/.aws/config or credentials of this machine's.
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { PATH: process.env.PATH ?? "", HOME: gw().dir, ...gw().env() },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("hello");
  });

  it("fails requests while the gateway is killed; restarted, it still holds the objects", async () => {
    const before = gw().pids();
    await gw().killGateway();
    expect(existsSync(`/proc/${before.rgw}`)).toBe(false);
    const once = gw().client({ maxAttempts: 1 });
    try {
      expect(await failure(read(once, "dir/a"))).toMatchObject({ code: "ECONNREFUSED" });
      await gw().restartGateway();
      expect(gw().pids()).toMatchObject({ mon: before.mon, osd: before.osd });
      expect(gw().pids().rgw).not.toBe(before.rgw);
      expect((await read(once, "dir/a")).length).toBe(20_000);
      expect(sha256(await read(once, "multipart"))).toBe(
        sha256(Buffer.concat([1, 2, 3, 4].map((n) => Buffer.alloc(5 * MiB, n)))),
      );
    } finally {
      once.destroy();
    }
  });

  it("stop leaves no process, no listening port and no scratch directory behind", async () => {
    const { dir, ports } = gw();
    const pids = Object.values(gw().pids());
    s3.destroy();
    await gw().stop();
    expect(pids.filter((pid) => existsSync(`/proc/${pid}`))).toEqual([]);
    expect(await Promise.all(ports.map(bindable))).toEqual(ports.map(() => true));
    expect(existsSync(dir)).toBe(false);
    g = undefined;
  });
});
