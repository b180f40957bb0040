// What a caller gives a volume and gets back: options, snapshot information, the recovery report,
// and the checks a new store's settings must pass. It does no I/O.

import { randomUUID } from "node:crypto";
import pino from "pino";
import { einval } from "../errors.js";
import { type Catalog, validChunkSize } from "./format.js";

export type OnFull = "delete-oldest" | "fail-writes";
/** Where the volume reports recoveries, evictions and failures (pino's signature). */
export interface Logger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface CreateOptions {
  volumeSize: number;
  /** Bytes per copy-on-write chunk: a power of two from 4 KiB to 1 MiB. */
  chunkSize?: number;
  /** Maximum bytes of all diff areas; 0 = no limit. */
  shadowStorageLimit?: number;
  onFull?: OnFull;
}

export interface OpenOptions {
  readOnly?: boolean;
  logger?: Logger;
  /** Bytes of copy-on-write chunks staged in memory before a write-back batch starts. */
  writeBackBytes?: number;
}

export interface SnapshotInfo {
  id: number;
  /**
   * Its identity in every store that has it: kept by a receive; for one taken here, the store's
   * uuid and the id (`uuid:id`).
   */
  guid: string;
  name: string | undefined;
  /** The snapshot set it belongs to, if it was taken as part of one. */
  setId: string | undefined;
  createdAt: number;
  /** Bytes of this snapshot's diff area (preserved chunks and index). */
  diffAreaBytes: number;
  /** Tags of its holds, sorted; while there is one, nothing deletes the snapshot. */
  holds: string[];
  /** Taken by the timeline rather than by hand. */
  timeline: boolean;
}

/** What opening the store had to do to make it consistent. */
export interface Recovery {
  /** The previous process did not close the store (crash, kill -9, power loss). */
  uncleanShutdown: boolean;
  /** Index records of interrupted batches or merges that were dropped. */
  droppedRecords: number;
  /** Diff-area files no snapshot owned (an interrupted create or delete), removed. */
  removedFiles: string[];
  /** A revert that was interrupted and has been completed. */
  resumedRevert: number | undefined;
  /** A revert that was interrupted and, the store being opened read-only, is not completed yet. */
  unfinishedRevert: number | undefined;
}

export const DEFAULT_CHUNK_SIZE = 64 * 1024;
/**
 * Bytes staged before a write-back batch starts. First copy-on-write writes (bench:cow, 1 GiB)
 * ran at 0.26 of a raw file's speed with 4 or 8 MiB, 0.25-0.32 with 16, 0.24-0.25 with 32,
 * 0.19-0.21 with 64 and 0.16 with 128: the largest of the fastest, for the fewest syncs.
 */
export const DEFAULT_WRITE_BACK = 16 * 1024 * 1024;

export const defaultLogger = (): Logger =>
  pino({ name: "shadowfs", level: process.env.SHADOWFS_LOG_LEVEL ?? "warn" }, pino.destination(2));

/** The catalog of a new store made with `opts`; EINVAL for a setting out of range. */
export function newCatalog(opts: CreateOptions): Catalog {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!validChunkSize(chunkSize)) {
    throw einval(`chunk size ${chunkSize}: must be a power of two from 4 KiB to 1 MiB`);
  }
  if (
    !Number.isSafeInteger(opts.volumeSize) ||
    opts.volumeSize <= 0 ||
    opts.volumeSize % chunkSize !== 0
  ) {
    throw einval(
      `volume size ${opts.volumeSize}: must be a positive multiple of the chunk size (${chunkSize})`,
    );
  }
  const limit = opts.shadowStorageLimit ?? 0;
  if (!Number.isSafeInteger(limit) || limit < 0)
    throw einval(`shadow storage limit ${limit}: must be >= 0`);
  return {
    uuid: randomUUID(),
    volumeSize: opts.volumeSize,
    chunkSize,
    shadowStorageLimit: limit,
    onFull: opts.onFull ?? "delete-oldest",
    createdAt: Date.now(),
    generation: 0,
    nextId: 1,
    clean: true,
    snapshots: [],
    evictions: [],
  };
}
