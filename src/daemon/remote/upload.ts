// A send stream stored in object storage as one snapshot: each chunk the remote does not hold yet
// goes into a pack, packs upload several at a time, and the manifest is written last, once the
// whole stream has checked and every pack it needs is there. It never rewrites an object.

import { StreamReader } from "../../cow/index.js";
import { type ChunkEntry, type Manifest, sha256 } from "../../cow/remote-format.js";
import { einval } from "../../errors.js";
import type { ChunkPlace, Remote } from "./repository.js";

/** Bytes of a pack: large enough that requests cost little, small enough to prune well. */
export const PACK_BYTES = 16 << 20;
/** Packs uploading at once. */
const UPLOADS = 4;

export interface Uploaded {
  manifest: Manifest;
  /** Packs uploaded, and their bytes. */
  packs: number;
  bytes: number;
  /** Chunks stored anew, and chunks found already there. */
  newChunks: number;
  reusedChunks: number;
}

/** A pack being filled: its chunks' bytes, their hashes, and the entries that point into it. */
interface Filling {
  buf: Buffer;
  hashes: string[];
  slots: Map<string, number>;
  entries: ChunkEntry[];
}

/** Refuses a volume of another size or chunk size than snapshot `there`'s, at `where`. */
export function sameVolume(
  there: Manifest | undefined,
  size: number,
  chunkSize: number,
  where: string,
): void {
  if (there && (there.volumeSize !== size || there.chunkSize !== chunkSize))
    throw einval(
      `${where} holds snapshots of a volume of ${there.volumeSize} bytes in chunks of ` +
        `${there.chunkSize}; this one is ${size} bytes in chunks of ${chunkSize}: use another prefix`,
    );
}

/**
 * Stores the snapshot `source` (a send stream) holds. `base` is the manifest of an incremental
 * stream's base (whose chunks it keeps unless the stream changes them), `like` one of the same
 * volume there (any other size is refused); `places` is every chunk the remote holds, by hash,
 * and gains the ones stored here.
 */
export async function uploadSnapshot(
  remote: Remote,
  places: Map<string, ChunkPlace>,
  base: Manifest | undefined,
  like: Manifest | undefined,
  source: AsyncIterable<Uint8Array>,
): Promise<Uploaded> {
  const reader = new StreamReader(source);
  const h = await reader.header();
  if (h.base?.guid !== base?.snapshot.guid)
    throw einval(`stream of ${h.snapshot.guid} is not from ${base?.snapshot.guid ?? "nothing"}`);
  sameVolume(like, h.volumeSize, h.chunkSize, remote.where);
  const cs = h.chunkSize;
  const perPack = Math.max(1, PACK_BYTES / cs);
  const entries = new Map<number, ChunkEntry>(base?.entries.map((e) => [e.chunk, e]));
  const out = { packs: 0, bytes: 0, newChunks: 0, reusedChunks: 0 };

  const free: Buffer[] = [];
  const uploading = new Set<Promise<void>>();
  let failed: unknown;
  const newPack = (): Filling => ({
    buf: free.pop() ?? Buffer.allocUnsafe(perPack * cs),
    hashes: [],
    slots: new Map(),
    entries: [],
  });
  let filling = newPack();

  const seal = async (p: Filling) => {
    if (p.hashes.length === 0) return;
    // A pack is named by what it holds: the hash of its chunks' hashes, in slot order.
    const id = sha256(Buffer.from(p.hashes.join(""), "hex"));
    for (const e of p.entries) e.pack = id;
    for (const [slot, hash] of p.hashes.entries()) places.set(hash, { pack: id, slot });
    const bytes = p.buf.subarray(0, p.hashes.length * cs);
    while (uploading.size >= UPLOADS) await Promise.race(uploading);
    if (failed) throw failed;
    const up = remote.putPack(id, bytes, { chunkSize: cs, hashes: p.hashes }).then(
      () => {
        out.packs++;
        out.bytes += bytes.length;
        free.push(p.buf);
      },
      (e: unknown) => {
        failed ??= e;
      },
    );
    const tracked = up.finally(() => uploading.delete(tracked));
    uploading.add(tracked);
  };

  for await (const c of reader.chunks()) {
    if (!c.data) {
      for (let k = c.chunk; k < c.chunk + c.count; k++) entries.delete(k);
      continue;
    }
    const hash = sha256(c.data);
    const there = places.get(hash);
    const slot = filling.slots.get(hash);
    if (there) {
      entries.set(c.chunk, { chunk: c.chunk, hash, ...there });
      out.reusedChunks++;
    } else if (slot !== undefined) {
      const e = { chunk: c.chunk, pack: "", slot, hash };
      filling.entries.push(e);
      entries.set(c.chunk, e);
      out.reusedChunks++;
    } else {
      const e = { chunk: c.chunk, pack: "", slot: filling.hashes.length, hash };
      c.data.copy(filling.buf, e.slot * cs);
      filling.hashes.push(hash);
      filling.slots.set(hash, e.slot);
      filling.entries.push(e);
      entries.set(c.chunk, e);
      out.newChunks++;
      if (filling.hashes.length === perPack) {
        await seal(filling);
        filling = newPack();
      }
    }
  }
  await seal(filling);
  await Promise.all(uploading);
  if (failed) throw failed;
  const manifest: Manifest = {
    volumeUuid: h.volumeUuid,
    volumeSize: h.volumeSize,
    chunkSize: cs,
    snapshot: h.snapshot,
    entries: [...entries.values()].sort((a, b) => a.chunk - b.chunk),
  };
  await remote.putManifest(manifest);
  return { manifest, ...out };
}
