// Read-only devices of many snapshots of one volume that share their reads: a chunk that several
// snapshots read alike (no diff area between them holds it) is read once for all of them. It
// never writes, and never keeps more than a bounded number of chunks.

import { LRUCache } from "lru-cache";
import type { BlockDevice, CowVolume } from "../cow/index.js";
import { enoent, erofs } from "../errors.js";

/** Bytes of chunks kept at most. */
const KEPT = 64 << 20;

/**
 * The chain of snapshots as it is when made: a snapshot deleted later fails its reads (ENOENT,
 * from the volume), and one taken later is not among them.
 */
export class SharedReads {
  private readonly ids: number[];
  /** `holds[i](c)`: the diff area of `ids[i]` holds chunk c. */
  private readonly holds: Array<(chunk: number) => boolean>;
  /** Chunk bytes by where they are read from (an area's index, or the base) and number. */
  private readonly chunks: LRUCache<string, Promise<Buffer>>;

  constructor(private readonly volume: CowVolume) {
    this.ids = volume.snapshots().map((s) => s.id);
    this.holds = this.ids.map((id, i) => volume.mayDiffer(id, this.ids[i + 1]));
    this.chunks = new LRUCache({ max: Math.max(16, Math.floor(KEPT / volume.chunkSize)) });
  }

  /**
   * Where snapshot `ids[i]` reads chunk `c` from: the first diff area from its own on that holds
   * it, else the base image (`ids.length`). Snapshots with the same answer read the same bytes.
   */
  private source(i: number, c: number): number {
    for (let j = i; j < this.ids.length; j++) if (this.holds[j]!(c)) return j;
    return this.ids.length;
  }

  private chunk(i: number, c: number): Promise<Buffer> {
    const key = `${this.source(i, c)}/${c}`;
    let bytes = this.chunks.get(key);
    if (!bytes) {
      const cs = this.volume.chunkSize;
      const buf = Buffer.alloc(Math.min(cs, this.volume.size - c * cs));
      bytes = this.volume.readSnapshot(this.ids[i]!, c * cs, buf).then(() => buf);
      bytes.catch(() => this.chunks.delete(key));
      this.chunks.set(key, bytes);
    }
    return bytes;
  }

  /** Snapshot `id` (one of the chain when this was made) as a read-only device. */
  device(id: number): BlockDevice {
    const i = this.ids.indexOf(id);
    if (i < 0) throw enoent(`snapshot ${id} does not exist`);
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
            this.chunk(i, c).then((b) => {
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
