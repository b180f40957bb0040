// Reads of a snapshot through the chain: each chunk from the first diff area from the snapshot's
// on that holds it, else from the base image. It never writes, and never reads the base unheld.

import type { ChunkStore, Run } from "./chunk-store.js";
import type { ReadHolds } from "./gate.js";
import type { HostFile } from "./host.js";

export class SnapshotRead {
  private readonly cs: number;

  /**
   * `baseReads`: every read of the base image is held there until it settles, so that a batch
   * landing meanwhile does not overwrite what it chose the base for (see WriteBack).
   */
  constructor(
    private readonly store: ChunkStore,
    private readonly base: HostFile,
    private readonly baseReads: ReadHolds,
  ) {
    this.cs = store.chunkSize;
  }

  /** True when snapshot `id` reads the whole range from the base image. */
  inBase(id: number, offset: number, length: number): boolean {
    if (length === 0) return true;
    const first = Math.floor(offset / this.cs);
    const runs = this.store.locate(id, first, Math.floor((offset + length - 1) / this.cs));
    return runs.length === 1 && runs[0]!.area === undefined;
  }

  /** Fills `target` with snapshot `id` (in the chain) at `offset`. */
  async read(id: number, offset: number, target: Uint8Array): Promise<void> {
    const { cs } = this;
    const end = offset + target.length;
    const reads: Promise<void>[] = [];
    const releases: Array<() => void> = [];
    const held = new Set<number>();
    // Sources are decided, and areas held, for the whole range before the first await, so that
    // a batch landing meanwhile waits for the base reads chosen here.
    const runs = this.store.locate(id, Math.floor(offset / cs), Math.floor((end - 1) / cs));
    for (const run of runs) {
      const lo = Math.max(offset, run.chunk * cs);
      const hi = Math.min(end, (run.chunk + run.count) * cs);
      if (run.area === undefined) {
        const r = this.base.read(target.subarray(lo - offset, hi - offset), lo).then(() => {});
        this.baseReads.add(r);
        reads.push(r);
        continue;
      }
      if (!held.has(run.area)) {
        releases.push(this.store.hold(run.area));
        held.add(run.area);
      }
      reads.push(this.readPreserved(run, offset, target));
    }
    try {
      await Promise.all(reads);
    } finally {
      for (const release of releases) release();
    }
  }

  /** Reads a run of an area; copies the part of it asked for into `target`. */
  private async readPreserved(run: Run, offset: number, target: Uint8Array): Promise<void> {
    const { cs } = this;
    const lo = Math.max(offset, run.chunk * cs);
    const hi = Math.min(offset + target.length, (run.chunk + run.count) * cs);
    // A run covered whole is read straight into the caller's buffer; one covered in part, through
    // a bounce buffer, in one read still: a system call costs more than copying a chunk or two.
    const whole = lo === run.chunk * cs && hi === (run.chunk + run.count) * cs;
    const t = Buffer.from(target.buffer, target.byteOffset, target.byteLength);
    const buf = whole ? t.subarray(lo - offset, hi - offset) : Buffer.allocUnsafe(run.count * cs);
    await this.store.read(run, buf);
    if (!whole) t.set(buf.subarray(lo - run.chunk * cs, hi - run.chunk * cs), lo - offset);
  }
}
