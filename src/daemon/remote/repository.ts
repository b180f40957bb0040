// A volume's snapshots in object storage: where each kind of object lives under the place, and
// reading them back whole (every manifest, every pack index). It never deletes.

import type { ObjectStore } from "../../cow/object-store.js";
import {
  type ChunkEntry,
  decodeManifest,
  decodePackIndex,
  encodeManifest,
  encodePackIndex,
  type Manifest,
  type PackIndex,
} from "../../cow/remote-format.js";

export const MANIFESTS = "snapshots/";
export const PACKS = "packs/";
export const INDEXES = "index/";

export const manifestKey = (guid: string) => `${MANIFESTS}${encodeURIComponent(guid)}`;
export const packKey = (id: string) => `${PACKS}${id}`;
export const indexKey = (id: string) => `${INDEXES}${id}`;

/** Where a chunk's bytes lie: slot `slot` of pack `pack`. */
export type ChunkPlace = Pick<ChunkEntry, "pack" | "slot">;

/** Requests to object storage at once, when many small objects are read. */
const PARALLEL = 8;

/** `fn` over `items`, at most `n` at a time; resolves with the results in the items' order. */
export async function inParallel<T, R>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** Oldest first: by creation time, then guid. */
const byTime = (a: Manifest, b: Manifest) =>
  a.snapshot.createdAt - b.snapshot.createdAt ||
  (a.snapshot.guid < b.snapshot.guid ? -1 : a.snapshot.guid > b.snapshot.guid ? 1 : 0);

export class Remote {
  constructor(readonly objects: ObjectStore) {}

  get where(): string {
    return this.objects.where;
  }

  /** Every snapshot's manifest, oldest first; a damaged one is an error naming it. */
  async manifests(): Promise<Manifest[]> {
    const keys = (await this.objects.list(MANIFESTS)).map((o) => o.key);
    const all = await inParallel(keys, PARALLEL, async (key) =>
      decodeManifest(await this.objects.get(key), `${this.where}/${key}`),
    );
    return all.sort(byTime);
  }

  /** The pack indexes, by pack id: the packs whose upload completed. */
  async packIndexes(): Promise<Map<string, PackIndex>> {
    const keys = (await this.objects.list(INDEXES)).map((o) => o.key);
    const all = await inParallel(keys, PARALLEL, async (key) => {
      const index = decodePackIndex(await this.objects.get(key), `${this.where}/${key}`);
      return [key.slice(INDEXES.length), index] as const;
    });
    return new Map(all);
  }

  /** Every chunk the remote holds, by its hash: where its bytes lie. */
  async chunkPlaces(): Promise<Map<string, ChunkPlace>> {
    const places = new Map<string, ChunkPlace>();
    for (const [pack, index] of await this.packIndexes())
      for (const [slot, hash] of index.hashes.entries()) places.set(hash, { pack, slot });
    return places;
  }

  /** A pack, then its index: a pack is used only once its index says it is whole. */
  async putPack(id: string, bytes: Buffer, index: PackIndex): Promise<void> {
    await this.objects.put(packKey(id), bytes);
    await this.objects.put(indexKey(id), encodePackIndex(index));
  }

  async putManifest(m: Manifest): Promise<void> {
    await this.objects.put(manifestKey(m.snapshot.guid), encodeManifest(m));
  }
}
