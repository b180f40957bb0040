// Read-only devices of many snapshots of one volume that share their reads: a chunk that several
// snapshots read alike (no diff area between them holds it) is read once for all of them. It
// never writes, and never keeps more than a bounded number of chunks.

import { LRUCache } from "lru-cache";
import type { BlockDevice, CowVolume } from "../cow/index.js";
import { enoent, erofs } from "../errors.js";

/** Bytes of chunks kept at most. */
const KEPT = 64 << 20;

/**
 * For the snapshots there are when it is made: a chunk read from the base image is the same for
 * all of them until a write preserves it, and from then on none of them reads it there. A snapshot
 * taken later could read newer bytes there, so it is not among them.
 */
export class SharedReads {
  private readonly ids: Set<number>;
  /** Chunk bytes by where they are read from (an area, or the base) and number. */
  private readonly chunks: LRUCache<string, Promise<Buffer>>;

  constructor(private readonly volume: CowVolume) {
    this.ids = new Set(volume.snapshots().map((s) => s.id));
    this.chunks = new LRUCache({ max: Math.max(16, Math.floor(KEPT / volume.chunkSize)) });
  }

  private chunk(id: number, c: number): Promise<Buffer> {
    const key = `${this.volume.readsFrom(id, c) ?? "base"}/${c}`;
    let bytes = this.chunks.get(key);
    if (!bytes) {
      const cs = this.volume.chunkSize;
      const buf = Buffer.alloc(Math.min(cs, this.volume.size - c * cs));
      bytes = this.volume.readSnapshot(id, c * cs, buf).then(() => buf);
      bytes.catch(() => this.chunks.delete(key));
      this.chunks.set(key, bytes);
    }
    return bytes;
  }

  /** Snapshot `id` (one of those there were when this was made) as a read-only device. */
  device(id: number): BlockDevice {
    if (!this.ids.has(id)) throw enoent(`snapshot ${id} does not exist`);
    const { size, blockSize, chunkSize: cs } = this.volume;
    return {
      size,
      blockSize,
      readOnly: true,
      read: async (offset, target) => {
        const end = offset + target.length;
        const parts: Array<Promise<void>> = [];
        for (let c = Math.floor(offset / cs); c * cs < end; c++) {
          const lo = Math.max(offset, c * cs);
          const hi = Math.min(end, (c + 1) * cs);
          parts.push(
            this.chunk(id, c).then((b) => {
              target.set(b.subarray(lo - c * cs, hi - c * cs), lo - offset);
            }),
          );
        }
        await Promise.all(parts);
      },
      write: () => Promise.reject(erofs(`snapshot ${id}`)),
      flush: () => Promise.resolve(),
      close: () => Promise.resolve(),
    };
  }
}
