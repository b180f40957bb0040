// Snapshots between a store and object storage for the command line: every snapshot the remote
// lacks sent there (each from the one before it that is there), and a remote's snapshots received
// into a new store. It loads the S3 client only when called.

import { rm } from "node:fs/promises";
import type { ReceiveResult } from "../daemon/receive.js";
import { Remote } from "../daemon/remote/repository.js";
import type { S3Objects, Traffic } from "../daemon/remote/s3.js";
import type { RemoteUrl } from "../daemon/remote/url.js";
import type { SnapshotRow } from "../daemon/reports.js";
import { einval, FsError } from "../errors.js";
import { withTarget } from "./connect.js";
import { progress } from "./format.js";
import { applyStream, sendTo } from "./transfer.js";

/** The objects at `url` through the S3 API, checked to be reachable with the credentials found. */
export async function openRemote(
  url: RemoteUrl,
  endpoint?: string,
): Promise<Remote & { s3: S3Objects }> {
  const { S3Objects } = await import("../daemon/remote/s3.js");
  const s3 = await S3Objects.open(url, endpoint ? { endpoint } : {});
  return Object.assign(new Remote(s3), { s3 });
}

export interface SentToRemote {
  snapshot: string;
  /** The snapshot it was sent from, or null when whole. */
  from: string | null;
  newChunks: number;
  reusedChunks: number;
  packs: number;
  bytes: number;
}

export interface ReplicateToRemoteResult {
  source: string;
  dest: string;
  sent: SentToRemote[];
  upToDate: boolean;
  traffic: Traffic;
}

/**
 * Sends every snapshot of SOURCE that `url` lacks, oldest first: each incrementally from the
 * newest older one that is there, or whole. Chunks already there are not uploaded again; a run
 * cut short leaves its finished packs to the next.
 */
export async function replicateToRemote(
  source: string,
  url: RemoteUrl,
  endpoint?: string,
): Promise<ReplicateToRemoteResult> {
  const { uploadSnapshot } = await import("../daemon/remote/upload.js");
  const { gmtName } = await import("../mount/index.js");
  const rows = await withTarget(source, {}, (call) => call("snapshot.list", { settle: false }));
  if (rows.length === 0) throw einval(`${source} has no snapshot: take one first`);
  const remote = await openRemote(url, endpoint);
  try {
    const there = new Map((await remote.manifests()).map((m) => [m.snapshot.guid, m]));
    const places = await remote.chunkPlaces();
    const sent: SentToRemote[] = [];
    for (const [i, row] of rows.entries()) {
      if (there.has(row.guid)) continue;
      const base: SnapshotRow | undefined = rows
        .slice(0, i)
        .filter((r) => there.has(r.guid))
        .at(-1);
      const baseManifest = base ? there.get(base.guid) : undefined;
      const { result } = await sendTo(
        source,
        { snapshot: String(row.id), ...(base ? { from: String(base.id) } : {}) },
        (stream) =>
          uploadSnapshot(remote, places, baseManifest, [...there.values()].at(-1), stream),
        progress(`${row.gmt} chunks`),
      );
      there.set(row.guid, result.manifest);
      sent.push({
        snapshot: gmtName(result.manifest.snapshot.createdAt),
        from: base ? base.gmt : null,
        newChunks: result.newChunks,
        reusedChunks: result.reusedChunks,
        packs: result.packs,
        bytes: result.bytes,
      });
    }
    return {
      source,
      dest: remote.where,
      sent,
      upToDate: sent.length === 0,
      traffic: remote.s3.traffic,
    };
  } finally {
    remote.s3.close();
  }
}

/**
 * Makes a new store in `store` from the snapshots at `url`: the one `url` names after `@`, or all
 * of them (the oldest whole, each next one from the one before). Anything but the whole leaves no
 * store behind.
 */
export async function receiveFromRemote(
  store: string,
  url: RemoteUrl,
  endpoint?: string,
): Promise<{ store: string; received: ReceiveResult[]; traffic: Traffic }> {
  const { findRemote } = await import("../daemon/remote/admin.js");
  const { ManifestChunks, manifestStream } = await import("../daemon/remote/download.js");
  const { sameVolume } = await import("../daemon/remote/upload.js");
  const { abortReceive, receiveNew } = await import("../daemon/receive.js");
  const remote = await openRemote(url, endpoint);
  try {
    const all = await remote.manifests();
    if (all.length === 0) throw new FsError("ENOENT", `${remote.where} holds no snapshot`);
    const chosen = url.snapshot === undefined ? all : [findRemote(all, url.snapshot, remote.where)];
    for (const m of chosen.slice(1)) sameVolume(chosen[0], m.volumeSize, m.chunkSize, remote.where);
    const first = await receiveNew(store, new ManifestChunks(remote, chosen[0]!));
    const received = [first];
    try {
      for (const [i, m] of chosen.entries())
        if (i > 0)
          received.push(
            await applyStream(first.store, manifestStream(remote, m, chosen[i - 1]), false),
          );
    } catch (e) {
      // The store is this receive's own: all of it, or nothing.
      await abortReceive(first.store).catch(() => undefined);
      await rm(first.store, { recursive: true, force: true });
      throw e;
    }
    return { store: first.store, received, traffic: remote.s3.traffic };
  } finally {
    remote.s3.close();
  }
}
