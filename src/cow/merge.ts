// Merging a snapshot's diff area into its older neighbour's, as deleting any snapshot but the
// oldest does, and what deleting one frees. It never takes an area out of the chain.

import type { ChunkStore } from "./chunk-store.js";

/** A merge copies at most this many bytes of chunks in one batch. */
const BATCH_BYTES = 8 << 20;

const perBatch = (store: ChunkStore) => Math.max(1, Math.floor(BATCH_BYTES / store.chunkSize));

/** The chunks of area `from` that area `into` lacks: those `into`'s snapshot reads through `from`. */
const lacking = (store: ChunkStore, from: number, into: number) =>
  store.chunks(from).filter((c) => !store.holds(into, c));

/** Preserves in area `into` the chunks of area `from` that it lacks, 8 MiB a batch. */
export async function mergeInto(store: ChunkStore, from: number, into: number): Promise<void> {
  const todo = lacking(store, from, into);
  const n = perBatch(store);
  for (let i = 0; i < todo.length; i += n) {
    const chunks = await Promise.all(
      todo.slice(i, i + n).map(async (chunk) => {
        const data = Buffer.alloc(store.chunkSize);
        await store.read({ chunk, count: 1, area: from }, data);
        return { chunk, data };
      }),
    );
    await store.publish(await store.write(into, chunks));
  }
}

/**
 * Exactly what deleting snapshot `id` alone frees: the oldest snapshot's whole diff area; for
 * another, its area less what `mergeInto` its older neighbour adds there (each chunk's data unless
 * it is zeros, its index entry, and each batch's header).
 */
export function exclusiveBytes(store: ChunkStore, id: number): number {
  const ids = store.ids();
  const pos = ids.indexOf(id);
  const own = store.bytesUsed(id);
  if (pos <= 0) return own;
  const todo = lacking(store, id, ids[pos - 1]!);
  const data = todo.filter((c) => store.holdsData(id, c)).length;
  const entry = store.chunkCost - store.chunkSize;
  const batches = Math.ceil(todo.length / perBatch(store));
  return own - data * store.chunkSize - todo.length * entry - batches * store.batchCost;
}
