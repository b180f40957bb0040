// A chunk store in memory: the reference the conformance suite holds every store to, and the
// chain WriteBack is tested on. It keeps nothing across a restart and never touches the host.

import { enoent } from "../errors.js";
import type { ChunkStore, Original, Run, Written } from "./chunk-store.js";
import { RECORD_SIZE } from "./format.js";

interface Area {
  id: number;
  /** Preserved chunks; null for a chunk of zeros (no data stored, as the file store). */
  entries: Map<number, Buffer | null>;
  dataChunks: number;
  records: number;
  /** Batches written and not yet published, in write order. */
  pending: MemoryWritten[];
  holds: number;
  /** Settles `drop` once the last hold is released. */
  unheld: (() => void) | undefined;
  /** Being dropped or closed: no new hold. */
  dropping: boolean;
}

function unheld(area: Area): Promise<void> {
  if (area.holds === 0) return Promise.resolve();
  return new Promise<void>((resolve) => (area.unheld = resolve));
}

interface MemoryWritten extends Written {
  originals: Original[];
}

/**
 * Usage and costs are counted as the file store counts them (a data chunk, an index record per
 * chunk and per batch), so that a volume's space policy decides alike on either. It refuses, with
 * an Error, what the contract forbids: writing a chunk the area holds or has pending, publishing
 * out of order, using an area that was dropped, dropping one still in the chain.
 */
export class MemoryChunkStore implements ChunkStore {
  readonly chunkCost: number;
  readonly batchCost = RECORD_SIZE;
  /**
   * The chain, oldest first, and its ids; every area not dropped. Guarded by the caller's lock
   * (the volume gate), as FileChunkStore's: changed only in synchronous steps.
   */
  private chain: Area[] = [];
  private chainIds: readonly number[] = [];
  private readonly areas = new Map<number, Area>();

  constructor(readonly chunkSize: number) {
    this.chunkCost = chunkSize + RECORD_SIZE;
  }

  ids(): readonly number[] {
    return this.chainIds;
  }

  newest(): number | undefined {
    return this.chain.at(-1)?.id;
  }

  has(id: number): boolean {
    return this.chain.some((a) => a.id === id);
  }

  holds(id: number, chunk: number): boolean {
    return this.areas.get(id)?.entries.has(chunk) ?? false;
  }

  holdsData(id: number, chunk: number): boolean {
    return !!this.areas.get(id)?.entries.get(chunk);
  }

  chunks(id: number): number[] {
    return [...this.area(id).entries.keys()].sort((a, b) => a - b);
  }

  chunkCount(id: number): number {
    return this.area(id).entries.size;
  }

  locate(id: number, first: number, last: number): Run[] {
    const pos = this.chain.findIndex((a) => a.id === id);
    if (pos < 0) throw enoent(`snapshot ${id} does not exist`);
    const runs: Run[] = [];
    for (let c = first; c <= last; c++) {
      const area = this.chain.slice(pos).find((a) => a.entries.has(c))?.id;
      const run = runs.at(-1);
      if (run && run.area === area) run.count++;
      else runs.push({ chunk: c, count: 1, area });
    }
    return runs;
  }

  hold(id: number): () => void {
    const area = this.area(id);
    if (area.dropping) throw new Error(`diff area ${id} is being dropped`);
    area.holds++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--area.holds === 0) area.unheld?.();
    };
  }

  async read(run: Run, target: Buffer): Promise<void> {
    if (run.area === undefined) throw new Error("a run of the base image is not the store's");
    const area = this.area(run.area);
    await Promise.resolve(); // a read completes later, as one of the host's does
    for (let i = 0; i < run.count; i++) {
      const c = run.chunk + i;
      if (!area.entries.has(c)) throw new Error(`chunk ${c} is not in diff area ${area.id}`);
      const at = target.subarray(i * this.chunkSize, (i + 1) * this.chunkSize);
      const data = area.entries.get(c);
      if (data) at.set(data);
      else at.fill(0);
    }
  }

  async write(id: number, originals: ReadonlyArray<Original>): Promise<Written> {
    const area = this.area(id);
    const taken = new Set(area.pending.flatMap((p) => p.originals.map((o) => o.chunk)));
    const copies: Original[] = [];
    for (const { chunk, data } of originals) {
      if (area.entries.has(chunk) || taken.has(chunk))
        throw new Error(`chunk ${chunk} is already preserved in diff area ${id}`);
      taken.add(chunk);
      const zero = data === null || data.every((b) => b === 0);
      copies.push({ chunk, data: zero ? null : Buffer.from(data) });
    }
    const w: MemoryWritten = { area: id, count: copies.length, originals: copies };
    area.pending.push(w);
    await Promise.resolve();
    return w;
  }

  async publish(written: Written): Promise<void> {
    const w = written as MemoryWritten;
    const area = this.area(w.area);
    if (area.pending[0] !== w) throw new Error(`diff area ${w.area}: batch published out of order`);
    await Promise.resolve();
    area.pending.shift();
    if (w.count === 0) return;
    for (const { chunk, data } of w.originals) {
      area.entries.set(chunk, data);
      if (data) area.dataChunks++;
    }
    area.records += w.count + 1;
  }

  bytesUsed(id: number): number {
    const a = this.area(id);
    return a.dataChunks * this.chunkSize + a.records * RECORD_SIZE;
  }

  checkpoint(id: number): number {
    return this.area(id).records;
  }

  async add(id: number): Promise<void> {
    if (this.areas.has(id) || id <= (this.newest() ?? 0))
      throw new Error(`diff area ${id} is not newer than the chain's`);
    const area: Area = {
      id,
      entries: new Map(),
      dataChunks: 0,
      records: 0,
      pending: [],
      holds: 0,
      unheld: undefined,
      dropping: false,
    };
    this.areas.set(id, area);
    this.chain = [...this.chain, area];
    this.chainIds = this.chain.map((a) => a.id);
  }

  detach(id: number): void {
    this.chain = this.chain.filter((a) => a.id !== id);
    this.chainIds = this.chain.map((a) => a.id);
  }

  async drop(id: number): Promise<void> {
    const area = this.area(id);
    if (this.has(id)) throw new Error(`diff area ${id} is still in the chain`);
    area.dropping = true;
    await unheld(area);
    this.areas.delete(id);
  }

  async close(): Promise<void> {
    const all = [...this.areas.values()];
    for (const a of all) a.dropping = true;
    await Promise.all(all.map(unheld));
    this.areas.clear();
    this.chain = [];
    this.chainIds = [];
  }

  private area(id: number): Area {
    const a = this.areas.get(id);
    if (!a) throw new Error(`no diff area ${id}`);
    return a;
  }
}
