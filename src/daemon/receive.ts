// `snapshot receive`: a stream made into a new store (full) or applied to a store whose newest
// snapshot is its base (incremental; receive-apply.ts). The whole stream is checked, and kept in
// the store's `receive/` directory, before anything in the destination changes; a stream cut short
// is kept as far as it came, to be resumed. It never writes a chunk the stream did not check.

import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type ChunkSource,
  CowVolume,
  type HostFile,
  NodeHostFs,
  peekHeader,
  StreamReader,
} from "../cow/index.js";
import { eexist, einval, FsError, isFsError } from "../errors.js";
import { gmtName } from "../mount/index.js";
import { isStore, storePaths } from "./paths.js";
import { apply, plan, snapshotOptions } from "./receive-apply.js";
import {
  CHECKPOINT_BYTES,
  checkResumes,
  describe,
  howToResume,
  interrupted,
  readStaged,
  type Staged,
  segmentFile,
  tokenOf,
  writeStaged,
} from "./receive-staging.js";
import type { Service } from "./service.js";

export interface ReceiveResult {
  store: string;
  /** The `@GMT` name of the snapshot received. */
  snapshot: string;
  /** Its user-given name, if it has one. */
  name: string | null;
  /** Production as it was before a forced receive, kept in this snapshot. */
  saved: string | null;
  /** Bytes of the stream (of its rest, for a resumed one). */
  bytes: number;
  dataChunks: number;
  zeroChunks: number;
}

const isCut = (e: unknown) => isFsError(e, "EBADMSG") && /cut short/.test(e.message);

/** A stream cut short: what is kept, and how to resume. */
function cutShort(e: Error, store: string, st: Staged & { state: "receiving" }): FsError {
  return new FsError(
    "EBADMSG",
    `${e.message.replace(/^EBADMSG: /, "")}; ${howToResume(store, st)}`,
  );
}

/**
 * Reads `reader`'s chunks, giving each to `take`, and keeps `st` up to date: every
 * CHECKPOINT_BYTES, and when the stream is cut short, `sync` makes what was taken durable and the
 * state moves on (then a cut is thrown, saying how to resume). Other faults are thrown as they are.
 */
async function receiveChunks(
  reader: ChunkSource,
  store: string,
  dir: string,
  st: Staged & { state: "receiving" },
  take: (c: { chunk: number; count: number; data: Buffer | null }) => Promise<void>,
  sync: (kept: number) => Promise<number[]>,
): Promise<{ dataChunks: number; zeroChunks: number }> {
  const counts = { dataChunks: 0, zeroChunks: 0 };
  await reader.header();
  let next = st.next;
  let kept = reader.offset;
  let saved = reader.offset;
  const checkpoint = async () => {
    const segments = await sync(kept);
    Object.assign(st, { next, segments });
    await writeStaged(dir, st);
    saved = kept;
  };
  try {
    for await (const c of reader.chunks()) {
      await take(c);
      if (c.data) counts.dataChunks++;
      else counts.zeroChunks += c.count;
      next = c.chunk + c.count;
      kept = reader.offset;
      if (kept - saved >= CHECKPOINT_BYTES) await checkpoint();
    }
  } catch (e) {
    if (!isCut(e)) throw e;
    await checkpoint();
    throw cutShort(e as Error, store, st);
  }
  return counts;
}

/**
 * Makes a new store in `store` (missing, or empty) from a full stream: its production, and its
 * one snapshot unless `keepSnapshot` is false (a clone); or goes on with one whose stream was cut
 * (a stream with `resume`). The volume is written in `receive/volume` and becomes the store by one
 * rename once the stream has checked whole. A stream refused leaves no store and nothing of its
 * own (a resumed one, what was kept before it); a stream cut is kept as far as it came. The
 * stream's chunks may come already read and checked (`ChunkSource`) rather than as bytes.
 */
export async function receiveNew(
  store: string,
  input: AsyncIterable<Uint8Array> | ChunkSource,
  opts: { keepSnapshot?: boolean } = {},
): Promise<ReceiveResult> {
  const p = storePaths(store);
  if (await isStore(p.dir))
    throw eexist(`${p.dir} holds a store: a full stream makes a new one (or send incrementally)`);
  const host = new NodeHostFs();
  const staging = join(p.receive, "volume");
  const reader = "chunks" in input ? input : new StreamReader(input);
  const h = await reader.header();
  if (h.base) throw einval(`an incremental stream (from ${describe(h.base)}) needs a store`);
  const kept = await readStaged(p.receive);
  let st: Staged & { state: "receiving" };
  let made: string | undefined;
  if (h.resume) st = checkResumes(p.dir, kept, h);
  else {
    if (kept) throw interrupted(p.dir, kept);
    const entries = await readdir(p.dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (entries?.some((e) => e !== "receive"))
      throw eexist(`${p.dir} is not empty: a full stream makes a new store in a new directory`);
    made = entries ? p.receive : p.dir;
    await rm(p.receive, { recursive: true, force: true });
    await host.mkdir(staging);
    st = { state: "receiving", header: h, next: 0, segments: [] };
  }
  let base: HostFile | undefined;
  try {
    base = await host.open(join(staging, "base.img"), { create: true });
    if (!h.resume) {
      await base.truncate(h.volumeSize);
      await base.sync();
      await writeStaged(p.receive, st);
    }
    const counts = await writeVolume(reader, p.dir, p.receive, st, base);
    await base.close();
    base = undefined;
    const vol = await CowVolume.create(host, staging, {
      volumeSize: h.volumeSize,
      chunkSize: h.chunkSize,
    });
    try {
      if (opts.keepSnapshot !== false) await vol.createSnapshot(snapshotOptions(st.header));
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
    await base?.close();
    // A fresh stream refused leaves nothing; one cut, or the rest of one, keeps what was kept.
    if (made && !isCut(e)) await rm(made, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A full stream's chunks written to the new volume's `base`: consecutive ones together, up to a
 * MiB at a time, one batch while the next fills. A new volume reads zeros: a run of them is there.
 */
async function writeVolume(
  reader: ChunkSource,
  store: string,
  dir: string,
  st: Staged & { state: "receiving" },
  base: HostFile,
): Promise<{ dataChunks: number; zeroChunks: number }> {
  const cs = st.header.chunkSize;
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
  const counts = await receiveChunks(
    reader,
    store,
    dir,
    st,
    async (c) => {
      if (!c.data) return;
      if (held > 0 && (c.chunk !== first + held || (held + 1) * cs > batch.length)) await flush();
      if (held === 0) first = c.chunk;
      c.data.copy(batch, held * cs);
      held++;
    },
    async () => {
      await flush();
      await writing;
      await base.sync();
      return [];
    },
  );
  await flush();
  await writing;
  await base.sync();
  return counts;
}

/** Writes each piece of `source` to `file` from `at` on, as it passes. */
async function* teeTo(
  source: AsyncIterable<Uint8Array>,
  file: HostFile,
): AsyncGenerator<Uint8Array> {
  let at = 0;
  for await (const piece of source) {
    await file.write(piece, at);
    at += piece.byteLength;
    yield piece;
  }
}

/**
 * Applies an incremental stream to the store `s` serves, or the rest of one whose receive was cut
 * (a stream with `resume`). Refused, with nothing changed, when the stream does not check whole or
 * does not fit the store (see `plan`); with `force`, production as it is is first kept in a
 * snapshot and reverted to the base. Refused while files are open in a mounted production,
 * unless `force`.
 */
export async function receiveInto(
  s: Service,
  input: AsyncIterable<Uint8Array>,
  opts: { force?: boolean } = {},
): Promise<ReceiveResult> {
  const { header: h, stream } = await peekHeader(input);
  const host = new NodeHostFs();
  const dir = storePaths(s.store).receive;
  const kept = await readStaged(dir);
  const resumed = h.resume ? checkResumes(s.store, kept, h) : undefined;
  if (!resumed && kept) throw interrupted(s.store, kept);
  s.checkClosed("receive", opts.force);
  // Checked before the stream is taken, and again before it is applied.
  const fits = async () => {
    const f = await plan(s, h);
    if (f.moved && !opts.force) throw new FsError("EBUSY", `${f.moved} (--force keeps it)`);
    return f;
  };
  await fits();
  let st: Staged & { state: "receiving" };
  if (resumed) st = resumed;
  else {
    await rm(dir, { recursive: true, force: true });
    await host.mkdir(dir);
    st = { state: "receiving", header: h, next: 0, segments: [] };
    await writeStaged(dir, st);
  }
  const before = st.segments;
  const file = await host.open(segmentFile(dir, before.length), { create: true });
  let counts: { dataChunks: number; zeroChunks: number };
  let bytes: number;
  try {
    await file.truncate(0);
    // Kept as it passes, and checked to its end.
    const reader = new StreamReader(teeTo(stream, file));
    counts = await receiveChunks(
      reader,
      s.store,
      dir,
      st,
      async () => undefined,
      async (n) => {
        await file.sync();
        return [...before, n];
      },
    );
    bytes = reader.offset;
    await file.sync();
  } catch (e) {
    if (!h.resume && !isCut(e)) await rm(dir, { recursive: true, force: true });
    throw e;
  } finally {
    await file.close();
  }
  const segments = [...before, bytes];
  const now = await fits();
  const saved = now.moved
    ? await s.create({ name: `before-receive-${new Date().toISOString()}` })
    : null;
  const info = await s.replaceProduction(async () => {
    if (saved) await s.volume.revert(now.base.id);
    else {
      await s.volume.flush();
      if (s.volume.preservedChunks(now.base.id) > 0)
        throw new FsError("EBUSY", `production of ${s.store} changed during the receive`);
    }
    // Durable before production changes: an open after a crash applies it again.
    const applying: Staged = { state: "applying", header: st.header, segments };
    await writeStaged(dir, applying);
    return apply(s.volume, dir, applying);
  });
  return {
    store: s.store,
    snapshot: gmtName(info.createdAt),
    name: info.name ?? null,
    saved: saved?.gmt ?? null,
    bytes,
    ...counts,
  };
}

/** The token that resumes the receive interrupted in `store`; undefined when there is none. */
export async function resumeToken(store: string): Promise<string | undefined> {
  const st = await readStaged(storePaths(store).receive);
  return st?.state === "receiving" ? tokenOf(st) : undefined;
}

/**
 * Discards what an interrupted receive left in `store`; a new store that never came to be leaves
 * no directory behind.
 */
export async function abortReceive(store: string): Promise<boolean> {
  const p = storePaths(store);
  const st = await readStaged(p.receive);
  if (st?.state === "applying") throw interrupted(p.dir, st);
  const had = await readdir(p.receive).then(
    () => true,
    () => false,
  );
  await rm(p.receive, { recursive: true, force: true });
  if (had && !(await isStore(p.dir)) && (await readdir(p.dir)).length === 0)
    await rm(p.dir, { recursive: true, force: true });
  return had;
}
