// The filesystem's superblock and geometry: where the journal, the allocation bitmap and the
// data blocks lie on the device. Pure encode/decode plus mkfs's layout; it holds no state.

import { randomUUID } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import { CorruptStoreError, einval } from "../errors.js";
import type { JournalRegion } from "./journal.js";

export const SUPER_MAGIC = "SHDWFSSB";
/** 2: inodes list their names (name-refs.ts). A version-1 filesystem is read and written as it is. */
export const FS_VERSION = 2;
export const BLOCK_SIZE = 4096;
/** The superblock's bytes: it fits in one 512-byte sector, so a write of it is never torn. */
const SUPER_BYTES = 512;

export interface Superblock {
  version: number;
  blockSize: number;
  totalBlocks: number;
  uuid: string;
  createdAt: number;
  journal: JournalRegion;
  /** Block allocation bitmap: one bit per device block, 1 = in use. */
  bitmap: { start: number; blocks: number };
  /** The block holding the system inodes: the inode table's and the inode bitmap's. */
  systemBlock: number;
  /** First block that holds file data or later metadata (after the fixed regions). */
  dataStart: number;
}

/** The layout mkfs gives a device of `totalBlocks` blocks. */
export function geometry(
  totalBlocks: number,
  journalBlocks?: number,
): Omit<Superblock, "uuid" | "createdAt"> {
  const jblocks = journalBlocks ?? Math.min(8192, Math.max(64, Math.floor(totalBlocks / 256)));
  const bitmapBlocks = Math.ceil(totalBlocks / (BLOCK_SIZE * 8));
  const systemBlock = 1 + jblocks + bitmapBlocks;
  const dataStart = systemBlock + 1;
  if (totalBlocks < dataStart + 16) {
    throw einval(
      `a device of ${totalBlocks} blocks is too small (at least ${dataStart + 16} are needed)`,
    );
  }
  return {
    version: FS_VERSION,
    blockSize: BLOCK_SIZE,
    totalBlocks,
    journal: { start: 1, blocks: jblocks },
    bitmap: { start: 1 + jblocks, blocks: bitmapBlocks },
    systemBlock,
    dataStart,
  };
}

export function newSuperblock(totalBlocks: number, journalBlocks?: number): Superblock {
  return { ...geometry(totalBlocks, journalBlocks), uuid: randomUUID(), createdAt: Date.now() };
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE);
  b.write(SUPER_MAGIC, 0, "latin1");
  b.writeUInt32LE(sb.version, 8);
  b.writeUInt32LE(sb.blockSize, 12);
  b.writeBigUInt64LE(BigInt(sb.totalBlocks), 16);
  Buffer.from(sb.uuid.replaceAll("-", ""), "hex").copy(b, 24);
  b.writeBigUInt64LE(BigInt(sb.createdAt), 40);
  b.writeBigUInt64LE(BigInt(sb.journal.start), 48);
  b.writeUInt32LE(sb.journal.blocks, 56);
  b.writeBigUInt64LE(BigInt(sb.bitmap.start), 64);
  b.writeUInt32LE(sb.bitmap.blocks, 72);
  b.writeBigUInt64LE(BigInt(sb.dataStart), 80);
  b.writeBigUInt64LE(BigInt(sb.systemBlock), 88);
  b.writeUInt32LE(crc32c(b.subarray(0, SUPER_BYTES - 4)), SUPER_BYTES - 4);
  return b;
}

/** Decodes block 0 of a device of `deviceBlocks` blocks; refuses anything it cannot trust. */
export function decodeSuperblock(b: Buffer, deviceBlocks: number): Superblock {
  const bad = (why: string) => new CorruptStoreError("superblock", why);
  if (b.toString("latin1", 0, 8) !== SUPER_MAGIC)
    throw bad("not a shadowfs filesystem (bad magic)");
  if (b.readUInt32LE(SUPER_BYTES - 4) !== crc32c(b.subarray(0, SUPER_BYTES - 4)))
    throw bad("checksum mismatch");
  const version = b.readUInt32LE(8);
  if (version > FS_VERSION)
    throw bad(
      `format version ${version} is newer than this shadowfs supports (${FS_VERSION}); upgrade shadowfs`,
    );
  if (version < 1) throw bad(`unknown format version ${version}`);
  const hex = b.toString("hex", 24, 40);
  const sb: Superblock = {
    version,
    blockSize: b.readUInt32LE(12),
    totalBlocks: Number(b.readBigUInt64LE(16)),
    uuid: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    createdAt: Number(b.readBigUInt64LE(40)),
    journal: { start: Number(b.readBigUInt64LE(48)), blocks: b.readUInt32LE(56) },
    bitmap: { start: Number(b.readBigUInt64LE(64)), blocks: b.readUInt32LE(72) },
    dataStart: Number(b.readBigUInt64LE(80)),
    systemBlock: Number(b.readBigUInt64LE(88)),
  };
  if (sb.blockSize !== BLOCK_SIZE)
    throw bad(`block size ${sb.blockSize}; only ${BLOCK_SIZE} is supported`);
  if (sb.totalBlocks > deviceBlocks)
    throw bad(`${sb.totalBlocks} blocks, but the device has ${deviceBlocks}`);
  let g: ReturnType<typeof geometry>;
  try {
    g = geometry(sb.totalBlocks, sb.journal.blocks);
  } catch (e) {
    throw bad((e as Error).message);
  }
  if (
    sb.journal.start !== g.journal.start ||
    sb.bitmap.start !== g.bitmap.start ||
    sb.bitmap.blocks !== g.bitmap.blocks ||
    sb.dataStart !== g.dataStart ||
    sb.systemBlock !== g.systemBlock
  ) {
    throw bad("regions do not match the device's geometry");
  }
  return sb;
}
