// The BlockDevice seam: what the filesystem stands on, whether production or a snapshot view.
// It knows nothing of files; it never tells its user which kind of device it is.

import { einval } from "../errors.js";
import type { Lease } from "./gate.js";

/**
 * A fixed-size array of bytes addressed by offset, read and written in whole blocks or in
 * byte ranges. Reads of never-written ranges return zeros.
 *
 * Durability: a write is visible to reads as soon as its promise resolves; it is durable only
 * after a later `flush()` resolves. A device whose `readOnly` is true rejects every write and
 * flush of data with EROFS.
 */
export interface BlockDevice {
  /** Size in bytes; a multiple of `blockSize`. */
  readonly size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** Fills `target` with the bytes at [offset, offset + target.length). Range must lie inside the device. */
  read(offset: number, target: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`. Range must lie inside the device. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * For a reader that can read a host file on its own thread: where the bytes of the range
   * [offset, offset + length) lie, when one read of one host file gives them all as they are
   * now; else undefined (use `read`). They stay there, unchanged, until `lease` is released,
   * which the reader does once it has read them.
   */
  lend?(offset: number, length: number, lease: Lease): HostRange | undefined;
  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Bytes of a device range in a host file: `fd`, a descriptor of the host file, at `position`. */
export interface HostRange {
  fd: number;
  position: number;
}

export async function readBlock(dev: BlockDevice, block: number): Promise<Buffer> {
  const buf = Buffer.alloc(dev.blockSize);
  await dev.read(block * dev.blockSize, buf);
  return buf;
}

export async function writeBlock(dev: BlockDevice, block: number, data: Uint8Array): Promise<void> {
  if (data.length !== dev.blockSize) {
    throw einval(`block write of ${data.length} bytes; the block size is ${dev.blockSize}`);
  }
  return dev.write(block * dev.blockSize, data);
}

/** Throws EINVAL unless [offset, offset + length) lies inside a device of `size` bytes. */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > size) {
    throw einval(`range [${offset}, ${offset + length}) is outside the device (${size} bytes)`);
  }
}
