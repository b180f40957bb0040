// The control API of a store, declared once: every method's name, parameter schema and result.
// The daemon answers from it, the command line calls through it; it holds no behaviour.

import { z } from "zod";
import type {
  AbortReport,
  History,
  HistoryRecord,
  SnapshotMade,
  WriterInfo,
  WriterResult,
} from "../snapshot/index.js";
import {
  type Client,
  type MethodNameOf,
  method,
  type ParamsIn,
  type ResultIn,
} from "../snapshot/rpc/api.js";
import { writerRegistrationApi } from "../snapshot/socket-writer.js";
import type { DiffChange } from "./diff.js";
import type { PropertyValue } from "./properties.js";
import type { WriterListing } from "./protocol.js";
import type { ReceiveResult } from "./receive.js";
import type {
  CheckReport,
  RevertResult,
  SnapshotRow,
  StatusReport,
  StorageReport,
} from "./reports.js";
import type { RestoreResult } from "./restore.js";
import type { CleanupReport } from "./retention-admin.js";
import type { SendResult } from "./send.js";
import type { VersionsResult } from "./versions.js";

const none = z.object({});
/** A snapshot named by its `@GMT` name, user-given name or id. */
const snapshotRef = z.string().min(1);
const later = z.enum(["prepare", "freeze", "thaw", "post-snapshot"]);
const writerKind = z.enum(["exec", "socket"]);
const event = z.enum(["identify", "prepare", "freeze", "thaw", "post-snapshot"]);
const made = z.object({ id: z.number().int(), gmt: z.string() });

const historyRecord = z.object({
  startedAt: z.string(),
  setId: z.string(),
  name: z.string().nullable(),
  volume: z.string(),
  writers: z.array(
    z.object({
      name: z.string(),
      kind: writerKind,
      paths: z.array(z.string()),
      restore: z.string(),
    }),
  ),
  events: z.array(
    z.object({
      volume: z.string(),
      event,
      writer: z.string(),
      kind: writerKind,
      ok: z.boolean(),
      reason: z.string().optional(),
      at: z.number(),
      ms: z.number(),
    }),
  ),
  holdMs: z.number().nullable(),
  result: z.enum(["ok", "failed"]),
  reason: z.string().nullable(),
  snapshot: made.nullable(),
  discarded: made.nullable(),
}) satisfies z.ZodType<HistoryRecord>;

export const controlApi = {
  // A store opened directly answers these, as its daemon does.
  status: method<StatusReport>()(none),
  /** `settle: false` skips writing out staged copies first (diff-area sizes may lag behind). */
  "snapshot.list": method<SnapshotRow[]>()(z.object({ settle: z.boolean().default(true) })),
  "snapshot.delete": method<SnapshotRow>()(z.object({ snapshot: snapshotRef })),
  "snapshot.revert": method<RevertResult>()(
    z.object({
      snapshot: snapshotRef,
      /** Even while files are open in production (mounted only). */
      force: z.boolean().default(false),
      discardNewer: z.boolean().default(false),
    }),
  ),
  "snapshot.history": method<History>()(none),
  /** A hold pins a snapshot against every deletion; `tag` names it (default "hold"). */
  "snapshot.hold": method<SnapshotRow>()(
    z.object({ snapshot: snapshotRef, tag: z.string().optional() }),
  ),
  "snapshot.release": method<SnapshotRow>()(
    z.object({ snapshot: snapshotRef, tag: z.string().optional() }),
  ),
  /** Applies the retention rules now; with `dryRun`, says what they would delete. */
  "snapshot.cleanup": method<CleanupReport>()(z.object({ dryRun: z.boolean().default(false) })),
  /** The volume's properties (all, or those named). */
  get: method<PropertyValue[]>()(z.object({ properties: z.array(z.string()).default([]) })),
  /** Sets `PROPERTY=VALUE`s, all checked before any is applied; answers their new values. */
  set: method<PropertyValue[]>()(z.object({ assignments: z.array(z.string()).min(1) })),
  /** Changes from `from` to `to` (a snapshot or "production"), sorted by path. */
  "snapshot.diff": method<DiffChange[]>()(
    z.object({ from: snapshotRef, to: snapshotRef.default("production") }),
  ),
  storage: method<StorageReport>()(none),
  /** Sends `progress` notifications `{ done, total }` while the store's chunks are checked. */
  fsck: method<CheckReport>()(z.object({ snapshot: snapshotRef.optional() })),
  "writers.list": method<WriterListing>()(none),
  /** Every distinct version of a path (below the volume's root), newest first. */
  versions: method<VersionsResult>()(z.object({ path: z.string() })),
  /**
   * Restores a path of a snapshot into production (paths below the volume's root). With
   * `progress`, sends `progress` notifications `{ done, total }` in bytes.
   */
  restore: method<RestoreResult>()(
    z.object({
      path: z.string(),
      from: snapshotRef,
      to: z.string().optional(),
      force: z.boolean().default(false),
      progress: z.boolean().default(false),
    }),
  ),
  /**
   * Writes snapshot `snapshot` as a stream (from `from`, incrementally) to the file `output` (an
   * absolute path), or else to a data channel: a `channel` notification `{ path }` names the
   * socket to connect to and read. With `progress`, `progress` notifications `{ done, total }`
   * in chunks.
   */
  "snapshot.send": method<SendResult>()(
    z.object({
      snapshot: snapshotRef.optional(),
      from: snapshotRef.optional(),
      /** A resume token: the rest of the stream whose receive it names (no snapshot then). */
      resume: z.string().min(1).optional(),
      output: z.string().startsWith("/").optional(),
      progress: z.boolean().default(false),
    }),
  ),
  /**
   * Applies an incremental stream, written by the caller to a data channel (as for
   * `snapshot.send`) and ended. `force`: production changed since the stream's base is kept in
   * a snapshot first, and files open in production do not refuse it.
   */
  "snapshot.receive": method<ReceiveResult>()(z.object({ force: z.boolean().default(false) })),
  "history.append": method<null>()(z.object({ record: historyRecord })),
  // The snapshot protocol, driven by a requester (see docs/snapshot-protocol.md).
  "protocol.identify": method<{ writers: WriterInfo[]; results: WriterResult[] }>()(
    z.object({ setId: z.string().min(1) }),
  ),
  "protocol.event": method<WriterResult[]>()(
    z.object({ event: later, setId: z.string().min(1), deadline: z.number().optional() }),
  ),
  "protocol.hold": method<null>()(none),
  "protocol.commit": method<SnapshotMade>()(
    z.object({ setId: z.string().min(1), name: z.string().optional() }),
  ),
  "protocol.release": method<null>()(none),
  "protocol.discard": method<null>()(z.object({ id: z.number().int().nonnegative() })),
  "protocol.finish": method<null>()(none),
  "protocol.abort": method<AbortReport>()(z.object({ reason: z.string().min(1) })),
  // Only a mounted store's daemon answers these; a store opened directly says it is not mounted.
  "snapshot.expose": method<{ mountpoint: string; gmt: string }>()(
    z.object({ snapshot: snapshotRef, mountpoint: z.string().min(1) }),
  ),
  "snapshot.unexpose": method<{ mountpoint: string }>()(
    z.object({ mountpoint: z.string().min(1) }),
  ),
  unmount: method<{ stopping: true }>()(none),
  /** A long-lived writer registers on its own connection, which the daemon keeps. */
  ...writerRegistrationApi,
};

export type ControlApi = typeof controlApi;
export type MethodName = MethodNameOf<ControlApi>;
export type ParamsOf<M extends MethodName> = ParamsIn<ControlApi, M>;
export type ResultOf<M extends MethodName> = ResultIn<ControlApi, M>;
/** The typed client of a store's control API: `call("snapshot.delete", { snapshot: "x" })`. */
export type ControlClient = Client<ControlApi>;
