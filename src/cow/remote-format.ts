// Byte layout of a store in object storage (see docs/format.md, "Object storage"): packs of
// chunks named by their content, each pack's index, and one manifest per snapshot. Pure encode
// and decode with checksums; no I/O, and never a guess at damaged bytes.

import { createHash } from "node:crypto";
import { z } from "zod";
import { FsError } from "../errors.js";
import {
  CATALOG_HEADER_SIZE,
  crc,
  frameBody,
  frameBodyLength,
  frameJson,
  getU64,
  putU64,
  validChunkSize,
} from "./format.js";
import type { StreamSnapshot } from "./stream-format.js";

export const MANIFEST_MAGIC = "SHDWMNFT";
export const PACK_INDEX_MAGIC = "SHDWPIDX";
export const REMOTE_VERSION = 1;
/** A manifest's entry: chunk u64, pack u32 (in the manifest's `packs`), slot u32, SHA-256. */
export const ENTRY_SIZE = 48;

/** The SHA-256 of `bytes`, in hex: a chunk's and a pack's name. */
export const sha256 = (bytes: Uint8Array): string =>
  createHash("sha256").update(bytes).digest("hex");

/** A chunk of a snapshot in the remote: slot `slot` of pack `pack`, with content hash `hash`. */
export interface ChunkEntry {
  chunk: number;
  pack: string;
  slot: number;
  hash: string;
}

/** A snapshot in the remote: what it is, and where each of its chunks that are not zeros lies. */
export interface Manifest {
  volumeUuid: string;
  volumeSize: number;
  chunkSize: number;
  snapshot: StreamSnapshot;
  /** In ascending chunk order; a chunk not here reads as zeros. */
  entries: ChunkEntry[];
}

export const badObject = (key: string, what: string) => new FsError("EBADMSG", `${key}: ${what}`);

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

const manifestSchema = z
  .object({
    volumeUuid: z.string().min(1),
    volumeSize: z.number().int().positive(),
    chunkSize: z.number().refine(validChunkSize, "must be a power of two from 4 KiB to 1 MiB"),
    snapshot: z.object({
      guid: z.string().min(1),
      id: z.number().int().positive(),
      createdAt: z.number().int().nonnegative(),
      name: z.string().optional(),
      setId: z.string().optional(),
    }),
    packs: z.array(hex64),
    entries: z.number().int().nonnegative(),
    tableCrc: z.number().int().nonnegative(),
  })
  .refine((m) => m.volumeSize % m.chunkSize === 0, "volumeSize must be a multiple of chunkSize");

const packIndexSchema = z.object({
  chunkSize: z.number().refine(validChunkSize, "must be a power of two from 4 KiB to 1 MiB"),
  /** The SHA-256 of each chunk, slot by slot. */
  hashes: z.array(hex64).min(1),
});

export type PackIndex = z.infer<typeof packIndexSchema>;

/** Splits a framed object into its header's JSON (checked against `schema`) and what follows. */
function unframe<T>(
  buf: Buffer,
  key: string,
  magic: string,
  what: string,
  schema: z.ZodType<T>,
): { body: T; rest: Buffer } {
  if (buf.length < CATALOG_HEADER_SIZE) throw badObject(key, `truncated: ${buf.length} bytes`);
  const length = frameBodyLength(buf, magic, REMOTE_VERSION, what);
  if (typeof length === "string") throw badObject(key, length);
  const end = CATALOG_HEADER_SIZE + length;
  if (buf.length < end) throw badObject(key, `truncated: ${buf.length} bytes of ${end} or more`);
  const body = frameBody(buf, buf.subarray(CATALOG_HEADER_SIZE, end), schema, what);
  if (typeof body === "string") throw badObject(key, body);
  return { body, rest: buf.subarray(end) };
}

export function encodeManifest(m: Manifest): Buffer {
  const packs: string[] = [];
  const packNo = new Map<string, number>();
  const table = Buffer.alloc(m.entries.length * ENTRY_SIZE);
  for (const [i, e] of m.entries.entries()) {
    let n = packNo.get(e.pack);
    if (n === undefined) {
      n = packs.push(e.pack) - 1;
      packNo.set(e.pack, n);
    }
    const at = i * ENTRY_SIZE;
    putU64(table, e.chunk, at);
    table.writeUInt32LE(n, at + 8);
    table.writeUInt32LE(e.slot, at + 12);
    table.write(e.hash, at + 16, "hex");
  }
  const body = {
    volumeUuid: m.volumeUuid,
    volumeSize: m.volumeSize,
    chunkSize: m.chunkSize,
    snapshot: m.snapshot,
    packs,
    entries: m.entries.length,
    tableCrc: crc(table),
  };
  const head = frameJson(MANIFEST_MAGIC, REMOTE_VERSION, Buffer.from(JSON.stringify(body), "utf8"));
  return Buffer.concat([head, table]);
}

/** The manifest in object `key`; a damaged one is an EBADMSG error naming it and what is wrong. */
export function decodeManifest(buf: Buffer, key: string): Manifest {
  const { body, rest } = unframe(buf, key, MANIFEST_MAGIC, "manifest", manifestSchema);
  if (rest.length !== body.entries * ENTRY_SIZE)
    throw badObject(key, `table of ${rest.length} bytes for ${body.entries} entries`);
  if (crc(rest) !== body.tableCrc) throw badObject(key, "table checksum mismatch");
  const chunks = body.volumeSize / body.chunkSize;
  const entries: ChunkEntry[] = [];
  let last = -1;
  for (let i = 0; i < body.entries; i++) {
    const at = i * ENTRY_SIZE;
    const chunk = getU64(rest, at);
    const pack = body.packs[rest.readUInt32LE(at + 8)];
    if (chunk <= last || chunk >= chunks || pack === undefined)
      throw badObject(key, `entry ${i} (chunk ${chunk}) is out of order or out of range`);
    last = chunk;
    entries.push({
      chunk,
      pack,
      slot: rest.readUInt32LE(at + 12),
      hash: rest.toString("hex", at + 16, at + ENTRY_SIZE),
    });
  }
  const { packs: _p, entries: _e, tableCrc: _c, ...info } = body;
  return { ...info, entries };
}

export const encodePackIndex = (p: PackIndex): Buffer =>
  frameJson(PACK_INDEX_MAGIC, REMOTE_VERSION, Buffer.from(JSON.stringify(p), "utf8"));

export function decodePackIndex(buf: Buffer, key: string): PackIndex {
  const { body, rest } = unframe(buf, key, PACK_INDEX_MAGIC, "pack index", packIndexSchema);
  if (rest.length > 0) throw badObject(key, `${rest.length} bytes follow the index`);
  return body;
}
