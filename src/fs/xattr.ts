// Extended attributes of one inode, kept in one block of their own (4 KiB for all of them, as
// ext4 without large-xattr inodes). Encode/decode only; the filesystem owns the block.

import { crc32c } from "@node-rs/crc32";
import { CorruptStoreError, einval, FsError } from "../errors.js";

const MAGIC = "SHDWXATR";
const BS = 4096;
const HEAD = 16; // magic 8, count u32, reserved u32; entries; crc32c in the last 4 bytes
export const XATTR_NAME_MAX = 255;

export type Xattrs = Map<string, Buffer>;

/** Room the entries take in a block; more than the block holds is ENOSPC at set time. */
export function encodedSize(attrs: Xattrs): number {
  let n = HEAD + 4;
  for (const [name, value] of attrs) n += 3 + Buffer.byteLength(name, "utf8") + value.length;
  return n;
}

export function checkName(name: string): void {
  const len = Buffer.byteLength(name, "utf8");
  if (len === 0) throw einval("empty attribute name");
  if (len > XATTR_NAME_MAX)
    throw new FsError("ERANGE", `attribute name of ${len} bytes (at most ${XATTR_NAME_MAX})`);
}

/** Names are stored as UTF-8, as the FUSE binding hands them over. */
export function encodeXattrs(attrs: Xattrs): Buffer {
  if (encodedSize(attrs) > BS) throw new FsError("ENOSPC", "extended attributes exceed 4 KiB");
  const b = Buffer.alloc(BS);
  b.write(MAGIC, 0, "latin1");
  b.writeUInt32LE(attrs.size, 8);
  let at = HEAD;
  for (const [name, value] of [...attrs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const n = Buffer.from(name, "utf8");
    b[at] = n.length;
    b.writeUInt16LE(value.length, at + 1);
    n.copy(b, at + 3);
    value.copy(b, at + 3 + n.length);
    at += 3 + n.length + value.length;
  }
  b.writeUInt32LE(crc32c(b.subarray(0, BS - 4)), BS - 4);
  return b;
}

export function decodeXattrs(b: Buffer, ino: number): Xattrs {
  const bad = (why: string) => new CorruptStoreError(`extended attributes of inode ${ino}`, why);
  if (b.toString("latin1", 0, 8) !== MAGIC) throw bad("bad magic");
  if (b.readUInt32LE(BS - 4) !== crc32c(b.subarray(0, BS - 4))) throw bad("checksum mismatch");
  const out: Xattrs = new Map();
  let at = HEAD;
  for (let i = b.readUInt32LE(8); i > 0; i--) {
    const nlen = b[at]!;
    const vlen = b.readUInt16LE(at + 1);
    if (at + 3 + nlen + vlen > BS - 4) throw bad(`entry at byte ${at} runs past the block`);
    out.set(
      b.toString("utf8", at + 3, at + 3 + nlen),
      Buffer.from(b.subarray(at + 3 + nlen, at + 3 + nlen + vlen)),
    );
    at += 3 + nlen + vlen;
  }
  return out;
}
