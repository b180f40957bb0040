// Object storage over the S3 API (the AWS SDK's client): `s3://BUCKET/PREFIX[@SNAP]` addresses,
// credentials from the SDK's default chain, every failure said in one line. It never prints,
// logs or takes credentials itself.

import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import type { ObjectInfo, ObjectStore } from "../../cow/object-store.js";
import { FsError } from "../../errors.js";
import { inParallel } from "./repository.js";
import type { RemoteUrl } from "./url.js";

/** Deletes under way at once. */
const DELETES = 8;

/** Requests made and bytes moved, for reports and tests. */
export interface Traffic {
  gets: number;
  puts: number;
  lists: number;
  deletes: number;
  bytesUp: number;
  bytesDown: number;
}

/** The endpoint to use: `--endpoint`, else the SDK's environment variables for one; or none (AWS). */
const endpointOf = (given?: string): string | undefined =>
  given ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;

/** The objects under an S3 bucket and prefix. */
export class S3Objects implements ObjectStore {
  readonly where: string;
  readonly traffic: Traffic = { gets: 0, puts: 0, lists: 0, deletes: 0, bytesUp: 0, bytesDown: 0 };
  private readonly endpoint: string | undefined;

  private constructor(
    private readonly url: RemoteUrl,
    private readonly client: S3Client,
    endpoint: string | undefined,
  ) {
    this.where = url.where;
    this.endpoint = endpoint;
  }

  /**
   * A client for `url`'s bucket, checked to exist and to take the credentials the SDK's chain
   * finds (environment, `~/.aws/credentials`, `AWS_PROFILE`): either failure is one clear error.
   */
  static async open(url: RemoteUrl, opts: { endpoint?: string } = {}): Promise<S3Objects> {
    // The SDK's notice that its releases from 2027 need Node 22 is for its users, not ours.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    const endpoint = endpointOf(opts.endpoint);
    const config = {
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      // Checksums only where the API needs them: a gateway that knows no other (Ceph's) takes
      // uploads of a known length.
      requestChecksumCalculation: "WHEN_REQUIRED" as const,
      responseChecksumValidation: "WHEN_REQUIRED" as const,
    };
    let client = new S3Client(config);
    // No region configured is no fault with a gateway of one's own: the SDK's default then.
    if (!(await client.config.region().catch(() => undefined))) {
      client.destroy();
      client = new S3Client({ ...config, region: "us-east-1" });
    }
    const objects = new S3Objects(url, client, endpoint);
    await objects.call("", () => client.send(new HeadBucketCommand({ Bucket: url.bucket })));
    return objects;
  }

  close(): void {
    this.client.destroy();
  }

  async get(
    key: string,
    range?: { offset: number; length: number },
    into?: Buffer,
  ): Promise<Buffer> {
    this.traffic.gets++;
    const out = await this.call(key, async () => {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.url.bucket,
          Key: this.url.prefix + key,
          ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
        }),
      );
      // Into one buffer of the length the answer gives, as the pieces come (no list of them).
      const length = res.ContentLength ?? 0;
      const out = into && into.length >= length ? into : Buffer.allocUnsafe(length);
      let at = 0;
      for await (const piece of res.Body as AsyncIterable<Buffer>) {
        if (at + piece.length > out.length) throw new Error("more bytes than its length");
        piece.copy(out, at);
        at += piece.length;
      }
      return out.subarray(0, at);
    });
    this.traffic.bytesDown += out.length;
    if (range && out.length !== range.length)
      throw new FsError(
        "EBADMSG",
        `${this.where}/${key}: ${out.length} bytes at ${range.offset}, not ${range.length} (object too short)`,
      );
    return out;
  }

  async put(key: string, body: Buffer): Promise<void> {
    this.traffic.puts++;
    await this.call(key, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.url.bucket,
          Key: this.url.prefix + key,
          Body: body,
          ContentLength: body.length,
        }),
      ),
    );
    this.traffic.bytesUp += body.length;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      this.traffic.lists++;
      const res = await this.call(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.url.bucket,
            Prefix: this.url.prefix + prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        ),
      );
      for (const o of res.Contents ?? [])
        if (o.Key) out.push({ key: o.Key.slice(this.url.prefix.length), size: o.Size ?? 0 });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  /** One request an object, several at once (a gateway may not take DeleteObjects' checksum). */
  async delete(keys: readonly string[]): Promise<void> {
    await inParallel(keys, DELETES, async (key) => {
      this.traffic.deletes++;
      await this.call(key, () =>
        this.client.send(
          new DeleteObjectCommand({ Bucket: this.url.bucket, Key: this.url.prefix + key }),
        ),
      );
    });
  }

  /** Runs one request; its failure becomes an FsError saying what failed, in one line. */
  private async call<T>(key: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (e) {
      throw this.failure(e, key);
    }
  }

  private failure(e: unknown, key: string): FsError {
    const err = e as Error & {
      code?: string;
      $metadata?: { httpStatusCode?: number };
    };
    const status = err.$metadata?.httpStatusCode;
    const at = this.endpoint ?? "the S3 endpoint";
    const object = key ? `${this.where}/${key}` : this.where;
    if (err.name === "NoSuchBucket" || (!key && status === 404))
      return new FsError("ENOENT", `bucket ${this.url.bucket} does not exist at ${at}`);
    if (err.name === "NoSuchKey" || status === 404)
      return new FsError("ENOENT", `${object}: no such object`);
    if (
      status === 403 ||
      ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"].includes(err.name)
    )
      return new FsError(
        "EACCES",
        `${this.where}: access refused by ${at} (${err.name === "Error" || !err.name ? status : err.name}): check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, AWS_PROFILE)`,
      );
    if (err.name === "CredentialsProviderError")
      return new FsError(
        "EACCES",
        `no credentials for ${this.where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials`,
      );
    if (err.code && /^E[A-Z]+$/.test(err.code))
      return new FsError("EIO", `cannot reach ${at} for ${object}: ${err.code}`);
    return new FsError("EIO", `${object}: ${err.name}: ${err.message}`.replace(/\s+/g, " "));
  }
}
