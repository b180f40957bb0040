// BlockDevice on a sparse host file, and on memory (for tests and scratch volumes).
// Neither knows about snapshots; the copy-on-write volume adds those on top.

import { dirname } from "node:path";
import { erofs } from "../errors.js";
import { type BlockDevice, checkRange } from "./block-device.js";
import type { HostFile, HostFs } from "./host.js";

export class FileBlockDevice implements BlockDevice {
  private constructor(
    private readonly file: HostFile,
    readonly size: number,
    readonly blockSize: number,
    readonly readOnly: boolean,
  ) {}

  /** Creates (or resizes) a sparse file of `size` bytes and opens it read/write. */
  static async create(
    host: HostFs,
    path: string,
    size: number,
    blockSize = 4096,
  ): Promise<FileBlockDevice> {
    const file = await host.open(path, { create: true });
    await file.truncate(size);
    await file.sync();
    await host.syncDir(dirname(path));
    return new FileBlockDevice(file, size, blockSize, false);
  }

  static async open(
    host: HostFs,
    path: string,
    opts: { blockSize?: number; readOnly?: boolean } = {},
  ): Promise<FileBlockDevice> {
    const readOnly = opts.readOnly ?? false;
    const file = await host.open(path, { readOnly });
    const blockSize = opts.blockSize ?? 4096;
    const size = await file.size();
    return new FileBlockDevice(file, size - (size % blockSize), blockSize, readOnly);
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.size, offset, target.length);
    await this.file.read(target, offset);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) throw erofs("block device");
    checkRange(this.size, offset, data.length);
    await this.file.write(data, offset);
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.file.sync();
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** A volatile device in memory: every write is "durable" at once. */
export class MemoryBlockDevice implements BlockDevice {
  readonly readOnly = false;
  private readonly bytes: Buffer;

  constructor(
    readonly size: number,
    readonly blockSize = 4096,
  ) {
    this.bytes = Buffer.alloc(size);
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this.size, offset, target.length);
    target.set(this.bytes.subarray(offset, offset + target.length));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length);
    this.bytes.set(data, offset);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
