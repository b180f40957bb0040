// A snapshot seen as a read-only BlockDevice: what the volume held when the snapshot was taken.
// It owns nothing; every read goes through the volume, every change fails with EROFS.

import { erofs } from "../errors.js";
import type { BlockDevice } from "./block-device.js";
import type { CowVolume } from "./volume.js";

export class SnapshotDevice implements BlockDevice {
  readonly readOnly = true;
  readonly size: number;
  readonly blockSize: number;

  constructor(
    private readonly volume: CowVolume,
    readonly snapshotId: number,
  ) {
    this.size = volume.size;
    this.blockSize = volume.blockSize;
  }

  read(offset: number, target: Uint8Array): Promise<void> {
    return this.volume.readSnapshot(this.snapshotId, offset, target);
  }

  async write(): Promise<void> {
    throw erofs(`snapshot ${this.snapshotId}`);
  }

  /** Nothing to make durable: a snapshot never changes. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
