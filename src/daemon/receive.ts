// `snapshot receive`: a stream made into a new store (full) or applied to a store whose newest
// snapshot is its base (incremental). The whole stream is checked, and kept in the store's
// `receive/` directory, before anything in the destination changes; once it is being applied, an
// open completes it. It never writes a chunk the stream did not check.

import { createReadStream } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  CowVolume,
  NodeHostFs,
  peekHeader,
  replaceFileAtomically,
  type SnapshotInfo,
  type StreamHeader,
  StreamReader,
} from "../cow/index.js";
import { eexist, einval, enoent, FsError } from "../errors.js";
import { gmtName } from "../mount/index.js";
import { isStore, storePaths } from "./paths.js";
import type { Service } from "./service.js";

export interface ReceiveResult {
  store: string;
  /** The `@GMT` name of the snapshot received. */
  snapshot: string;
  /** Its user-given name, if it has one. */
  name: string | null;
  /** Production as it was before a forced receive, kept in this snapshot. */
  saved: string | null;
  /** Bytes of the stream. */
  bytes: number;
  dataChunks: number;
  zeroChunks: number;
}

/** What a receive in progress leaves in `receive/`: it is applied once `state` is "applying". */
interface Staged {
  state: "applying";
  header: StreamHeader;
}

const stagedStream = (dir: string) => join(dir, "stream");
const stateFile = (dir: string) => join(dir, "state.json");

const describe = (s: { createdAt: number; name?: string | undefined }) =>
  `${gmtName(s.createdAt)}${s.name !== undefined ? ` (${s.name})` : ""}`;

/** Writes each piece of `source` to `path` as it passes, then syncs it. */
async function* teeTo(source: AsyncIterable<Uint8Array>, path: string): AsyncGenerator<Uint8Array> {
  const f = await new NodeHostFs().open(path, { create: true, exclusive: true });
  try {
    let at = 0;
    for await (const piece of source) {
      await f.write(piece, at);
      at += piece.byteLength;
      yield piece;
    }
    await f.sync();
  } finally {
    await f.close();
  }
}

/**
 * Makes a new store in `store` (missing, empty, or left holding an interrupted receive) from a
 * full stream: its production, and its one snapshot unless `keepSnapshot` is false (a clone). The
 * volume is written in `receive/volume` and becomes the store by one rename once the stream has
 * checked whole; a stream refused or cut leaves no store and nothing of its own.
 */
export async function receiveNew(
  store: string,
  input: AsyncIterable<Uint8Array>,
  opts: { keepSnapshot?: boolean } = {},
): Promise<ReceiveResult> {
  const p = storePaths(store);
  if (await isStore(p.dir))
    throw eexist(`${p.dir} holds a store: a full stream makes a new one (or send incrementally)`);
  const entries = await readdir(p.dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (entries?.some((e) => e !== "receive"))
    throw eexist(`${p.dir} is not empty: a full stream makes a new store in a new directory`);
  const host = new NodeHostFs();
  const staging = join(p.receive, "volume");
  await rm(p.receive, { recursive: true, force: true });
  await host.mkdir(staging);
  try {
    const reader = new StreamReader(input);
    const h = await reader.header();
    if (h.base) throw einval(`an incremental stream (from ${describe(h.base)}) needs a store`);
    const base = await host.open(join(staging, "base.img"), { create: true, exclusive: true });
    const counts = { dataChunks: 0, zeroChunks: 0 };
    try {
      await base.truncate(h.volumeSize);
      // Consecutive chunks are written together, up to a MiB at a time, one batch while the next
      // fills. A new volume reads zeros: a run of them is already there.
      const cs = h.chunkSize;
      const batches = [0, 1].map(() => Buffer.allocUnsafe(Math.max(cs, 1 << 20)));
      let batch = batches[0]!;
      let writing: Promise<void> = Promise.resolve();
      let first = 0;
      let held = 0;
      const flush = async () => {
        await writing;
        if (held > 0) writing = base.write(batch.subarray(0, held * cs), first * cs);
        batch = batch === batches[0] ? batches[1]! : batches[0]!;
        held = 0;
      };
      for await (const c of reader.chunks()) {
        if (!c.data) {
          counts.zeroChunks += c.count;
          continue;
        }
        if (held > 0 && (c.chunk !== first + held || (held + 1) * cs > batch.length)) await flush();
        if (held === 0) first = c.chunk;
        c.data.copy(batch, held * cs);
        held++;
        counts.dataChunks++;
      }
      await flush();
      await writing;
      await base.sync();
    } finally {
      await base.close();
    }
    const vol = await CowVolume.create(host, staging, {
      volumeSize: h.volumeSize,
      chunkSize: h.chunkSize,
    });
    try {
      if (opts.keepSnapshot !== false) await vol.createSnapshot(snapshotOptions(h));
    } finally {
      await vol.close();
    }
    await host.rename(staging, p.volume);
    await host.syncDir(p.dir);
    await rm(p.receive, { recursive: true, force: true });
    return {
      store: p.dir,
      snapshot: gmtName(h.snapshot.createdAt),
      name: h.snapshot.name ?? null,
      saved: null,
      bytes: reader.offset,
      ...counts,
    };
  } catch (e) {
    await rm(entries ? p.receive : p.dir, { recursive: true, force: true });
    throw e;
  }
}

const snapshotOptions = (h: StreamHeader) => ({
  createdAt: h.snapshot.createdAt,
  name: h.snapshot.name,
  setId: h.snapshot.setId,
  guid: h.snapshot.guid,
});

/**
 * Why an incremental stream cannot apply to the store `s` as it is: its base missing, sizes that
 * differ, the snapshot there already or a name taken (always refused); `moved` when production
 * changed since the base or newer snapshots follow it (refused unless forced). Production's
 * staged writes are flushed first, so that every change counts.
 */
async function plan(s: Service, h: StreamHeader): Promise<{ base: SnapshotInfo; moved?: string }> {
  const { volume } = s;
  if (!h.base) throw einval(`a full stream makes a new store; ${s.store} holds one`);
  if (h.volumeSize !== volume.size || h.chunkSize !== volume.chunkSize)
    throw einval(
      `the stream's volume is ${h.volumeSize} bytes in ${h.chunkSize}-byte chunks; ` +
        `${s.store}'s is ${volume.size} in ${volume.chunkSize}`,
    );
  const all = volume.snapshots();
  const has = all.find((x) => x.guid === h.snapshot.guid);
  if (has) throw eexist(`${s.store} already has snapshot ${describe(h.snapshot)}`);
  const base = all.find((x) => x.guid === h.base!.guid);
  if (!base)
    throw enoent(
      `the stream's base, snapshot ${describe(h.base)}, is not in ${s.store}: ` +
        "send from a snapshot it has, or a full stream into a new store",
    );
  const gmt = gmtName(h.snapshot.createdAt);
  if (all.some((x) => gmtName(x.createdAt) === gmt))
    throw eexist(`${s.store} has another snapshot named ${gmt}`);
  const name = h.snapshot.name;
  if (name !== undefined && all.some((x) => x.name === name))
    throw eexist(`${s.store} has another snapshot named "${name}"`);
  const newer = all.filter((x) => x.id > base.id);
  if (newer.length > 0)
    return {
      base,
      moved: `${s.store} has snapshots newer than the stream's base ${describe(base)}: ${newer.map(describe).join(", ")}`,
    };
  await s.flush();
  const changed = volume.preservedChunks(base.id);
  if (changed > 0)
    return {
      base,
      moved: `${s.store}'s production changed since the stream's base ${describe(base)} (${changed} chunks)`,
    };
  return { base };
}

/**
 * Applies an incremental stream to the store `s` serves. Refused, with nothing changed, when the
 * stream does not check whole or does not fit the store (see `plan`); with `force`, production as
 * it is is first kept in a snapshot and reverted to the base. Refused while files are open in a
 * mounted production, unless `force`.
 */
export async function receiveInto(
  s: Service,
  input: AsyncIterable<Uint8Array>,
  opts: { force?: boolean } = {},
): Promise<ReceiveResult> {
  const { header: h, stream } = await peekHeader(input);
  s.checkClosed("receive", opts.force);
  const fits = await plan(s, h);
  if (fits.moved && !opts.force) throw new FsError("EBUSY", `${fits.moved} (--force keeps it)`);
  const host = new NodeHostFs();
  const dir = storePaths(s.store).receive;
  await rm(dir, { recursive: true, force: true });
  await host.mkdir(dir);
  const counts = { dataChunks: 0, zeroChunks: 0 };
  try {
    // Kept as it passes, and checked to its end.
    const again = new StreamReader(teeTo(stream, stagedStream(dir)));
    for await (const c of again.chunks()) {
      if (c.data) counts.dataChunks++;
      else counts.zeroChunks += c.count;
    }
    const bytes = again.offset;
    const now = await plan(s, h);
    const saved =
      now.moved && opts.force
        ? await s.create({ name: `before-receive-${new Date().toISOString()}` })
        : null;
    if (now.moved && !opts.force) throw new FsError("EBUSY", `${now.moved} (--force keeps it)`);
    const info = await s.replaceProduction(async () => {
      if (saved) await s.volume.revert(now.base.id);
      else {
        await s.volume.flush();
        if (s.volume.preservedChunks(now.base.id) > 0)
          throw new FsError("EBUSY", `${s.store}'s production changed during the receive`);
      }
      const staged: Staged = { state: "applying", header: h };
      // Durable, with the stream's own name in the directory, before production changes.
      await replaceFileAtomically(host, stateFile(dir), Buffer.from(JSON.stringify(staged)));
      return apply(s.volume, dir, h);
    });
    return {
      store: s.store,
      snapshot: gmtName(info.createdAt),
      name: info.name ?? null,
      saved: saved?.gmt ?? null,
      bytes,
      ...counts,
    };
  } catch (e) {
    if (!(await applying(dir))) await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function applying(dir: string): Promise<boolean> {
  return readFile(stateFile(dir), "utf8").then(
    (t) => (JSON.parse(t) as Staged).state === "applying",
    () => false,
  );
}

/**
 * Writes the chunks of the stream kept in `dir` to the live volume and takes the snapshot it
 * holds, then forgets the stream. Repeatable: an open after a crash runs it again.
 */
async function apply(volume: CowVolume, dir: string, h: StreamHeader): Promise<SnapshotInfo> {
  let info = volume.snapshots().find((x) => x.guid === h.snapshot.guid);
  if (!info) {
    const cs = volume.chunkSize;
    const zero = Buffer.alloc(cs);
    for await (const c of new StreamReader(createReadStream(stagedStream(dir))).chunks()) {
      if (c.data) await volume.write(c.chunk * cs, c.data);
      else for (let i = 0; i < c.count; i++) await volume.write((c.chunk + i) * cs, zero);
    }
    info = await volume.createSnapshot(snapshotOptions(h));
  }
  await rm(dir, { recursive: true, force: true });
  return info;
}

/**
 * Completes a receive that was being applied when the store's last holder stopped (called by a
 * read-write open, before the filesystem is opened); a receive that never got so far is
 * discarded. Says which snapshot it completed.
 */
export async function finishReceive(volume: CowVolume, store: string): Promise<string | undefined> {
  const dir = storePaths(store).receive;
  if (!(await applying(dir))) {
    await rm(dir, { recursive: true, force: true });
    return undefined;
  }
  const staged = JSON.parse(await readFile(stateFile(dir), "utf8")) as Staged;
  const info = await apply(volume, dir, staged.header);
  return gmtName(info.createdAt);
}

/** Discards what an interrupted receive left in `store` (a new store that never came to be, too). */
export async function abortReceive(store: string): Promise<boolean> {
  const p = storePaths(store);
  if (await applying(p.receive))
    throw new FsError(
      "EBUSY",
      `a receive is being applied to ${p.dir}; opening the store completes it`,
    );
  const had = await readdir(p.receive).then(
    () => true,
    () => false,
  );
  await rm(p.receive, { recursive: true, force: true });
  return had;
}
