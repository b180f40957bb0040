// Byte layout of a send stream (see docs/format.md, "Send streams"): its header, chunk records and
// end record. Pure encode/decode with checksums; no I/O, and never a guess at damaged bytes.

import { z } from "zod";
import { FsError } from "../errors.js";
import {
  CATALOG_HEADER_SIZE,
  crc,
  frameBody,
  frameBodyLength,
  frameJson,
  getU64 as readU64,
  validChunkSize,
  putU64 as writeU64,
} from "./format.js";

export const STREAM_MAGIC = "SHDWSEND";
export const STREAM_VERSION = 1;
/** The header's fixed part: the catalog's framing (`frameJson`). */
export const STREAM_HEADER_SIZE = CATALOG_HEADER_SIZE;
export const STREAM_RECORD_SIZE = 32;
/** Record kinds. */
export const DATA = 1;
export const ZEROS = 2;
export const END = 3;
/** The longest header body a reader takes: a header names two snapshots, not more. */
const MAX_BODY = 64 * 1024;

const snapshotRef = z.object({
  /** The snapshot's identity in every store that has it (`SnapshotInfo.guid`). */
  guid: z.string().min(1),
  /** Its id in the sending store. */
  id: z.number().int().positive(),
  createdAt: z.number().int().nonnegative(),
  name: z.string().optional(),
  setId: z.string().optional(),
});

const headerSchema = z
  .object({
    /** The sending store's uuid. */
    volumeUuid: z.string().min(1),
    volumeSize: z.number().int().positive(),
    chunkSize: z.number().refine(validChunkSize, "must be a power of two from 4 KiB to 1 MiB"),
    /** The snapshot the stream holds. */
    snapshot: snapshotRef,
    /** An incremental stream's base: the stream holds only the chunks that differ from it. */
    base: snapshotRef.optional(),
    /** The rest of a stream whose receive was cut: only its records from chunk `from` on. */
    resume: z.object({ from: z.number().int().nonnegative() }).optional(),
  })
  .refine((h) => h.volumeSize % h.chunkSize === 0, "volumeSize must be a multiple of chunkSize");

export type StreamHeader = z.infer<typeof headerSchema>;
export type StreamSnapshot = z.infer<typeof snapshotRef>;

/** What the end record counts. */
export interface StreamCounts {
  /** Data records (one chunk each). */
  dataChunks: number;
  /** Chunks of zeros, over all zero runs. */
  zeroChunks: number;
}

export const badStream = (what: string) => new FsError("EBADMSG", `stream: ${what}`);

export const encodeHeader = (h: StreamHeader): Buffer =>
  frameJson(STREAM_MAGIC, STREAM_VERSION, Buffer.from(JSON.stringify(h), "utf8"));

/** Checks the fixed part of a header; returns the length of the JSON body that follows. */
export function headerBodyLength(head: Buffer): number {
  const length = frameBodyLength(head, STREAM_MAGIC, STREAM_VERSION, "send stream");
  if (typeof length === "string") throw badStream(length);
  if (length === 0 || length > MAX_BODY) throw badStream(`header body of ${length} bytes`);
  return length;
}

export function decodeHeaderBody(head: Buffer, body: Buffer): StreamHeader {
  const h = frameBody(head, body, headerSchema, "header");
  if (typeof h === "string") throw badStream(h);
  return h;
}

/** A data record's 32 bytes; the chunk's bytes follow it in the stream. */
export function dataRecord(chunk: number, data: Uint8Array): Buffer {
  const r = Buffer.alloc(STREAM_RECORD_SIZE);
  r.writeUInt32LE(DATA, 0);
  r.writeUInt32LE(1, 4);
  writeU64(r, chunk, 8);
  r.writeUInt32LE(crc(data), 16);
  r.writeUInt32LE(crc(r.subarray(0, 28)), 28);
  return r;
}

/** A run of `count` chunks of zeros from `chunk`; no bytes follow it. */
export function zerosRecord(chunk: number, count: number): Buffer {
  const r = Buffer.alloc(STREAM_RECORD_SIZE);
  r.writeUInt32LE(ZEROS, 0);
  r.writeUInt32LE(count, 4);
  writeU64(r, chunk, 8);
  r.writeUInt32LE(crc(r.subarray(0, 28)), 28);
  return r;
}

/** The end record: the counts, and `streamCrc` of every header and record byte before it. */
export function endRecord(counts: StreamCounts, streamCrc: number): Buffer {
  const r = Buffer.alloc(STREAM_RECORD_SIZE);
  r.writeUInt32LE(END, 0);
  writeU64(r, counts.dataChunks, 8);
  writeU64(r, counts.zeroChunks, 16);
  r.writeUInt32LE(streamCrc, 24);
  r.writeUInt32LE(crc(r.subarray(0, 28)), 28);
  return r;
}

export type StreamRecord =
  | { kind: typeof DATA; chunk: number; dataCrc: number }
  | { kind: typeof ZEROS; chunk: number; count: number }
  | { kind: typeof END; counts: StreamCounts; streamCrc: number };

/** Decodes one record's 32 bytes (`n`: its number in the stream, for messages). */
export function decodeRecord(r: Buffer, n: number): StreamRecord {
  if (crc(r.subarray(0, 28)) !== r.readUInt32LE(28))
    throw badStream(`record ${n}: checksum mismatch`);
  const kind = r.readUInt32LE(0);
  if (kind === DATA) {
    if (r.readUInt32LE(4) !== 1) throw badStream(`record ${n}: a data record holds one chunk`);
    return { kind, chunk: readU64(r, 8), dataCrc: r.readUInt32LE(16) };
  }
  if (kind === ZEROS) {
    const count = r.readUInt32LE(4);
    if (count === 0) throw badStream(`record ${n}: an empty run of zeros`);
    return { kind, chunk: readU64(r, 8), count };
  }
  if (kind === END) {
    return {
      kind,
      counts: { dataChunks: readU64(r, 8), zeroChunks: readU64(r, 16) },
      streamCrc: r.readUInt32LE(24),
    };
  }
  throw badStream(`record ${n}: unknown kind ${kind}`);
}

/** The running checksum of a stream: its header and record bytes, in order (not chunk data). */
export class StreamCrc {
  value = 0;
  add(bytes: Uint8Array): void {
    this.value = crc(bytes, this.value);
  }
}

/** What a resume token names: a stream, and the chunk its receive got to. */
export interface ResumeToken {
  snapshot: string;
  base?: string;
  from: number;
}

const tokenSchema = z.object({
  snapshot: z.string().min(1),
  base: z.string().min(1).optional(),
  from: z.number().int().nonnegative(),
});

/** A resume token as text: base64url of its JSON, printable and safe in a shell. */
export const encodeToken = (t: ResumeToken): string =>
  Buffer.from(JSON.stringify(t)).toString("base64url");

export function decodeToken(text: string): ResumeToken {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    value = undefined;
  }
  const parsed = tokenSchema.safeParse(value);
  if (!parsed.success) throw new FsError("EINVAL", `"${text}" is not a resume token`);
  return parsed.data;
}
