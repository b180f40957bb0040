// Object storage addresses: `s3://BUCKET[/PREFIX][@SNAPSHOT]`, parsed and checked. It never
// reaches the network (the S3 client is loaded only by what talks to it).

import { einval } from "../../errors.js";

export interface RemoteUrl {
  bucket: string;
  /** Keys' common start: "" or ending in "/". */
  prefix: string;
  /** A snapshot named after `@`, if any. */
  snapshot?: string;
  /** `s3://bucket/prefix`, without the snapshot. */
  where: string;
}

export const isRemoteUrl = (s: string): boolean => s.startsWith("s3://");

/** `s3://BUCKET[/PREFIX][@SNAP]`; SNAP is what follows the first `@` after the bucket. */
export function parseRemoteUrl(s: string): RemoteUrl {
  const m = /^s3:\/\/([^/@]+)(?:\/([^@]*))?(?:@(.+))?$/.exec(s);
  const bucket = m?.[1];
  if (!m || !bucket || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw einval(`${s}: not an object storage address (s3://BUCKET/PREFIX[@SNAPSHOT])`);
  const path = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return {
    bucket,
    prefix: path ? `${path}/` : "",
    ...(m[3] !== undefined ? { snapshot: m[3] } : {}),
    where: `s3://${bucket}${path ? `/${path}` : ""}`,
  };
}
