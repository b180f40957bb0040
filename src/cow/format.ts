// Byte layouts of the store's files (see docs/format.md): catalog, diff-area headers, index
// records. Pure encode/decode with checksums; no I/O, and never a guess at damaged bytes.

import { crc32c } from "@node-rs/crc32";
import { z } from "zod";

export const FORMAT_VERSION = 1;
export const CATALOG_MAGIC = "SHDWCTLG";
export const DATA_MAGIC = "SHDWDATA";
export const INDEX_MAGIC = "SHDWINDX";
export const CATALOG_HEADER_SIZE = 24;
export const DATA_HEADER_SIZE = 4096;
export const INDEX_HEADER_SIZE = 64;
export const RECORD_SIZE = 32;
/** Slot value of an index entry whose original chunk was all zeros: no data is stored. */
export const ZERO_SLOT = 2 ** 53 - 1;

/** CRC-32C of `bytes`; with `initial`, the checksum of what came before them, carried on. */
export const crc = (bytes: Uint8Array, initial = 0): number =>
  crc32c(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), initial);

// ---------------------------------------------------------------- catalog

const snapshotSchema = z.object({
  id: z.number().int().positive(),
  createdAt: z.number().int().nonnegative(),
  name: z.string().optional(),
  /** The snapshot set this snapshot was taken in, with snapshots of other volumes. */
  setId: z.string().optional(),
  /** Tags of the holds on this snapshot: while there is one, nothing deletes it. */
  holds: z.array(z.string()).optional(),
  /** Taken by the timeline (the daemon's snapshot every interval), not by hand. */
  timeline: z.boolean().optional(),
  /** A received snapshot's identity in the store it came from (absent: `uuid:id` of this one). */
  guid: z.string().optional(),
  /** Index records of this snapshot's diff area known committed (exact once frozen or cleanly closed). */
  records: z.number().int().nonnegative(),
});

const evictionSchema = z.object({
  id: z.number().int().positive(),
  createdAt: z.number().int().nonnegative(),
  name: z.string().optional(),
  evictedAt: z.number().int().nonnegative(),
  reason: z.string(),
});

/** Chunk sizes a volume may have: powers of two from 4 KiB to 1 MiB. */
export const validChunkSize = (n: number): boolean =>
  Number.isInteger(n) && n >= 4096 && n <= 1 << 20 && (n & (n - 1)) === 0;

export const catalogSchema = z
  .object({
    uuid: z.string(),
    volumeSize: z.number().int().positive(),
    chunkSize: z.number().refine(validChunkSize, "must be a power of two from 4 KiB to 1 MiB"),
    /** Maximum bytes of all diff areas together; 0 means no limit. */
    shadowStorageLimit: z.number().int().nonnegative(),
    onFull: z.enum(["delete-oldest", "fail-writes"]),
    createdAt: z.number().int().nonnegative(),
    /** Incremented by every catalog write. */
    generation: z.number().int().nonnegative(),
    nextId: z.number().int().positive(),
    /** False while a process has the store open for writing; true after a clean close. */
    clean: z.boolean(),
    snapshots: z.array(snapshotSchema),
    evictions: z.array(evictionSchema),
    /** The volume's other properties (`shadowfs get/set`), as their text values. */
    properties: z.record(z.string(), z.string()).optional(),
    /** Set while a revert is in progress; an open resumes it. */
    revert: z.object({ to: z.number().int().positive(), discardNewer: z.boolean() }).optional(),
  })
  .refine((c) => c.volumeSize % c.chunkSize === 0, "volumeSize must be a multiple of chunkSize");

export type Catalog = z.infer<typeof catalogSchema>;
export type SnapshotEntry = z.infer<typeof snapshotSchema>;
export type Eviction = z.infer<typeof evictionSchema>;

/**
 * A JSON body behind a 24-byte header: magic, version, body length, the body's checksum and the
 * header's (the catalog's layout, and a send stream's header's).
 */
export function frameJson(magic: string, version: number, body: Buffer): Buffer {
  const head = Buffer.alloc(CATALOG_HEADER_SIZE);
  head.write(magic, 0, "latin1");
  head.writeUInt32LE(version, 8);
  head.writeUInt32LE(body.length, 12);
  head.writeUInt32LE(crc(body), 16);
  head.writeUInt32LE(crc(head.subarray(0, 20)), 20);
  return Buffer.concat([head, body]);
}

export const encodeCatalog = (cat: Catalog): Buffer =>
  frameJson(CATALOG_MAGIC, FORMAT_VERSION, Buffer.from(JSON.stringify(cat, null, 1), "utf8"));

/** Decodes a catalog file; returns a reason string when it is not a valid catalog. */
/**
 * Checks the 24-byte header of a framed JSON body (`frameJson`): magic, checksum and version.
 * Returns the length of the body that follows, or why the header is refused.
 */
export function frameBodyLength(
  head: Buffer,
  magic: string,
  version: number,
  what: string,
): number | string {
  if (head.toString("latin1", 0, 8) !== magic) return `not a shadowfs ${what} (bad magic)`;
  if (head.readUInt32LE(20) !== crc(head.subarray(0, 20))) return "header checksum mismatch";
  const v = head.readUInt32LE(8);
  if (v > version)
    return `format version ${v} is newer than this shadowfs supports (${version}); upgrade shadowfs`;
  if (v < 1) return `unknown format version ${v}`;
  return head.readUInt32LE(12);
}

/** A framed body checked against its header's checksum and parsed by `schema`, or why not. */
export function frameBody<T>(
  head: Buffer,
  body: Buffer,
  schema: z.ZodType<T>,
  what: string,
): T | string {
  if (head.readUInt32LE(16) !== crc(body)) return "body checksum mismatch";
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch (e) {
    return `body is not JSON: ${(e as Error).message}`;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    return `invalid ${what}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`;
  return parsed.data;
}

export function decodeCatalog(buf: Buffer): Catalog | string {
  if (buf.length < CATALOG_HEADER_SIZE)
    return `truncated: ${buf.length} bytes, header needs ${CATALOG_HEADER_SIZE}`;
  const len = frameBodyLength(buf, CATALOG_MAGIC, FORMAT_VERSION, "catalog");
  if (typeof len === "string") return len;
  const body = buf.subarray(CATALOG_HEADER_SIZE);
  if (body.length !== len) return `truncated: body has ${body.length} bytes, header says ${len}`;
  return frameBody(buf, body, catalogSchema, "catalog");
}

// ---------------------------------------------------------------- diff-area file headers

export interface AreaHeader {
  kind: "data" | "index";
  version: number;
  chunkSize: number;
  areaId: number;
}

export function encodeAreaHeader(h: AreaHeader): Buffer {
  const buf = Buffer.alloc(h.kind === "data" ? DATA_HEADER_SIZE : INDEX_HEADER_SIZE);
  buf.write(h.kind === "data" ? DATA_MAGIC : INDEX_MAGIC, 0, "latin1");
  buf.writeUInt32LE(h.version, 8);
  buf.writeUInt32LE(h.chunkSize, 12);
  buf.writeUInt32LE(h.areaId, 16);
  buf.writeUInt32LE(crc(buf.subarray(0, 60)), 60);
  return buf;
}

export function decodeAreaHeader(buf: Buffer, kind: "data" | "index"): AreaHeader | string {
  if (buf.length < INDEX_HEADER_SIZE) return `truncated header (${buf.length} bytes)`;
  if (buf.toString("latin1", 0, 8) !== (kind === "data" ? DATA_MAGIC : INDEX_MAGIC))
    return "bad magic";
  if (buf.readUInt32LE(60) !== crc(buf.subarray(0, 60))) return "header checksum mismatch";
  const version = buf.readUInt32LE(8);
  if (version > FORMAT_VERSION)
    return `format version ${version} is newer than supported (${FORMAT_VERSION})`;
  if (version < 1) return `unknown format version ${version}`;
  return { kind, version, chunkSize: buf.readUInt32LE(12), areaId: buf.readUInt32LE(16) };
}

// ---------------------------------------------------------------- index records

export const KIND_BATCH = 1;
export const KIND_ENTRY = 2;

/** A batch header announces how many entries follow; an entry maps a chunk to a data slot. */
export type IndexRecord =
  | { kind: typeof KIND_BATCH; batch: number; count: number }
  | { kind: typeof KIND_ENTRY; batch: number; chunk: number; slot: number; dataCrc: number };

export const putU64 = (buf: Buffer, v: number, at: number) => {
  buf.writeUInt32LE(v % 2 ** 32, at);
  buf.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
};
export const getU64 = (buf: Buffer, at: number) =>
  buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;

export function encodeRecord(r: IndexRecord, buf: Buffer, at: number): void {
  buf.fill(0, at, at + RECORD_SIZE);
  buf.writeUInt32LE(r.kind, at);
  buf.writeUInt32LE(r.batch, at + 4);
  if (r.kind === KIND_BATCH) {
    putU64(buf, r.count, at + 8);
  } else {
    putU64(buf, r.chunk, at + 8);
    putU64(buf, r.slot, at + 16);
    buf.writeUInt32LE(r.dataCrc, at + 24);
  }
  buf.writeUInt32LE(crc(buf.subarray(at, at + 28)), at + 28);
}

/** Decodes the record at `at`, or returns null when its checksum or kind is bad. */
export function decodeRecord(buf: Buffer, at: number): IndexRecord | null {
  if (buf.readUInt32LE(at + 28) !== crc(buf.subarray(at, at + 28))) return null;
  const kind = buf.readUInt32LE(at);
  const batch = buf.readUInt32LE(at + 4);
  if (kind === KIND_BATCH) return { kind, batch, count: getU64(buf, at + 8) };
  if (kind === KIND_ENTRY) {
    return {
      kind,
      batch,
      chunk: getU64(buf, at + 8),
      slot: getU64(buf, at + 16),
      dataCrc: buf.readUInt32LE(at + 24),
    };
  }
  return null;
}
