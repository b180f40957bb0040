// What people do with the snapshots in object storage: list them, verify every object against
// its checksums, prune old ones and then the packs no manifest needs. Prune deletes manifests
// first and packs last, so no manifest ever names a deleted pack.

import type { Manifest, PackIndex } from "../../cow/remote-format.js";
import { decodeManifest, decodePackIndex, sha256 } from "../../cow/remote-format.js";
import { einval, FsError, isFsError } from "../../errors.js";
import { gmtName } from "../../mount/index.js";
import {
  INDEXES,
  indexKey,
  inParallel,
  MANIFESTS,
  manifestKey,
  PACKS,
  packKey,
  type Remote,
} from "./repository.js";

export interface RemoteRow {
  gmt: string;
  name: string | null;
  setId: string | null;
  createdAt: string;
  guid: string;
  /** Bytes of its chunks that are not zeros. */
  bytes: number;
  /** Bytes of the chunks no other snapshot there holds: what pruning it alone would free. */
  exclusiveBytes: number;
}

export const remoteRow = (m: Manifest, exclusiveBytes: number): RemoteRow => ({
  gmt: gmtName(m.snapshot.createdAt),
  name: m.snapshot.name ?? null,
  setId: m.snapshot.setId ?? null,
  createdAt: new Date(m.snapshot.createdAt).toISOString(),
  guid: m.snapshot.guid,
  bytes: m.entries.length * m.chunkSize,
  exclusiveBytes,
});

/** The snapshots there, oldest first, with their sizes. */
export async function listRemote(remote: Remote): Promise<RemoteRow[]> {
  const all = await remote.manifests();
  const holders = new Map<string, number>();
  for (const m of all)
    for (const h of new Set(m.entries.map((e) => e.hash)))
      holders.set(h, (holders.get(h) ?? 0) + 1);
  return all.map((m) => {
    const own = new Set(m.entries.filter((e) => holders.get(e.hash) === 1).map((e) => e.hash));
    return remoteRow(m, own.size * m.chunkSize);
  });
}

/** The snapshot `name` names there: its `@GMT` name, its own name, or its guid. */
export function findRemote(all: readonly Manifest[], name: string, where: string): Manifest {
  const gmt = name.startsWith("@") ? name : `@${name}`;
  const found = all.filter(
    (m) =>
      gmtName(m.snapshot.createdAt) === gmt || m.snapshot.name === name || m.snapshot.guid === name,
  );
  if (found.length === 0) throw new FsError("ENOENT", `${where} has no snapshot ${name}`);
  if (found.length > 1)
    throw einval(`${name} names ${found.length} snapshots in ${where}: give its guid`);
  return found[0]!;
}

export interface Problem {
  object: string;
  problem: string;
}

export interface VerifyReport {
  where: string;
  snapshots: number;
  packs: number;
  chunks: number;
  bytesChecked: number;
  problems: Problem[];
}

/** Packs downloaded at once by verify. */
const DOWNLOADS = 4;

/**
 * Reads every manifest, every pack index and every pack a manifest needs, and checks each against
 * its checksums and hashes: what is missing or damaged, named by object.
 */
export async function verifyRemote(remote: Remote): Promise<VerifyReport> {
  const o = remote.objects;
  const problems: Problem[] = [];
  const at = (key: string) => `${remote.where}/${key}`;
  const note = (key: string, problem: string) => problems.push({ object: at(key), problem });
  const why = (e: unknown) =>
    e instanceof Error ? e.message.replace(/^E[A-Z]+: /, "") : String(e);

  const manifests: Manifest[] = [];
  for (const { key } of await o.list(MANIFESTS)) {
    try {
      manifests.push(decodeManifest(await o.get(key), at(key)));
    } catch (e) {
      if (!isFsError(e, "EBADMSG") && !isFsError(e, "ENOENT")) throw e;
      note(key, `damaged manifest: ${why(e)}`);
    }
  }
  const packSizes = new Map((await o.list(PACKS)).map((p) => [p.key.slice(PACKS.length), p.size]));
  const indexes = new Map<string, PackIndex | null>();
  for (const { key } of await o.list(INDEXES)) {
    const id = key.slice(INDEXES.length);
    try {
      indexes.set(id, decodePackIndex(await o.get(key), at(key)));
    } catch (e) {
      if (!isFsError(e, "EBADMSG") && !isFsError(e, "ENOENT")) throw e;
      indexes.set(id, null);
      note(key, `damaged pack index: ${why(e)}`);
    }
  }
  // What each manifest needs: every entry's pack, its index, and its hash in that index's slot.
  const needed = new Set<string>();
  let chunks = 0;
  for (const m of manifests) {
    const key = manifestKey(m.snapshot.guid);
    const missing = new Set<string>();
    for (const e of m.entries) {
      chunks++;
      needed.add(e.pack);
      const index = indexes.get(e.pack);
      if (!packSizes.has(e.pack)) missing.add(`pack ${packKey(e.pack)} is missing`);
      else if (index === undefined) missing.add(`pack index ${indexKey(e.pack)} is missing`);
      else if (index && index.hashes[e.slot] !== e.hash)
        missing.add(`chunk ${e.chunk}'s entry does not match ${indexKey(e.pack)} (slot ${e.slot})`);
    }
    for (const problem of missing) note(key, problem);
  }
  let bytesChecked = 0;
  const packs = [...needed].filter((id) => packSizes.has(id) && indexes.get(id));
  await inParallel(packs, DOWNLOADS, async (id) => {
    const index = indexes.get(id)!;
    const cs = index.chunkSize;
    const key = packKey(id);
    const bytes = await o.get(key);
    bytesChecked += bytes.length;
    if (bytes.length !== index.hashes.length * cs)
      return note(
        key,
        `damaged pack: ${bytes.length} bytes, its index says ${index.hashes.length * cs}`,
      );
    const bad = index.hashes.flatMap((h, slot) =>
      sha256(bytes.subarray(slot * cs, (slot + 1) * cs)) === h ? [] : [slot],
    );
    if (bad.length > 0)
      note(
        key,
        bad.length > 1
          ? `damaged pack: slots ${bad.join(", ")} do not match their hashes`
          : `damaged pack: slot ${bad[0]} does not match its hash`,
      );
  });
  return {
    where: remote.where,
    snapshots: manifests.length,
    packs: packs.length,
    chunks,
    bytesChecked,
    problems,
  };
}

export interface PruneReport {
  where: string;
  /** `@GMT` names of the snapshots pruned, and of those kept. */
  pruned: string[];
  kept: string[];
  packsDeleted: number;
  bytesFreed: number;
  dryRun: boolean;
}

/**
 * Keeps the newest `keep` snapshots and deletes the others' manifests, then every pack (index
 * first) that no kept manifest needs, a pack whose upload never finished included. Run it while
 * nothing replicates to the same place: a pack a replicate is about to name could go.
 */
export async function pruneRemote(
  remote: Remote,
  keep: number,
  dryRun = false,
): Promise<PruneReport> {
  if (!Number.isSafeInteger(keep) || keep < 1)
    throw einval(`--keep ${keep}: keep at least the newest snapshot (1 or more)`);
  const all = await remote.manifests();
  const pruned = all.slice(0, Math.max(0, all.length - keep));
  const kept = all.slice(pruned.length);
  const needed = new Set(kept.flatMap((m) => m.entries.map((e) => e.pack)));
  const o = remote.objects;
  const packs = await o.list(PACKS);
  const indexes = await o.list(INDEXES);
  const idOf = (key: string, dir: string) => key.slice(dir.length);
  const goingPacks = packs.filter((p) => !needed.has(idOf(p.key, PACKS)));
  const goingIndexes = indexes.filter((p) => !needed.has(idOf(p.key, INDEXES)));
  if (!dryRun) {
    await o.delete(pruned.map((m) => manifestKey(m.snapshot.guid)));
    await o.delete(goingIndexes.map((p) => p.key));
    await o.delete(goingPacks.map((p) => p.key));
  }
  return {
    where: remote.where,
    pruned: pruned.map((m) => gmtName(m.snapshot.createdAt)),
    kept: kept.map((m) => gmtName(m.snapshot.createdAt)),
    packsDeleted: goingPacks.length,
    bytesFreed: [...goingPacks, ...goingIndexes].reduce((n, p) => n + p.size, 0),
    dryRun,
  };
}
