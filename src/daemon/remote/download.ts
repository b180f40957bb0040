// A snapshot in object storage made into a send stream again: whole, or from the snapshot before
// it (the chunks whose content differs). Every chunk fetched is checked against its hash before it
// goes into the stream. It never writes to object storage.

import { type StreamHeader, type StreamSink, writeStream } from "../../cow/index.js";
import { type ChunkEntry, type Manifest, sha256 } from "../../cow/remote-format.js";
import { FsError } from "../../errors.js";
import { packKey, type Remote } from "./repository.js";

/** The chunks whose content differs between two manifests of one volume, ascending. */
export function changedChunks(base: Manifest, m: Manifest): number[] {
  const before = new Map(base.entries.map((e) => [e.chunk, e.hash]));
  const out: number[] = [];
  for (const e of m.entries) {
    if (before.get(e.chunk) !== e.hash) out.push(e.chunk);
    before.delete(e.chunk);
  }
  out.push(...before.keys());
  return out.sort((a, b) => a - b);
}

/** Entries grouped into runs of consecutive chunks in consecutive slots of one pack, in order. */
export function runsOf(entries: readonly ChunkEntry[]): ChunkEntry[][] {
  const runs: ChunkEntry[][] = [];
  for (const e of entries) {
    const run = runs.at(-1);
    const last = run?.at(-1);
    if (
      run &&
      last &&
      last.pack === e.pack &&
      last.slot + 1 === e.slot &&
      last.chunk + 1 === e.chunk
    )
      run.push(e);
    else runs.push([e]);
  }
  return runs;
}

/** A run's chunks in one request, each checked against its hash (EBADMSG naming the object). */
export async function fetchRun(
  remote: Remote,
  run: readonly ChunkEntry[],
  chunkSize: number,
): Promise<Buffer> {
  const key = packKey(run[0]!.pack);
  const bytes = await remote.objects.get(key, {
    offset: run[0]!.slot * chunkSize,
    length: run.length * chunkSize,
  });
  for (const [i, e] of run.entries())
    if (sha256(bytes.subarray(i * chunkSize, (i + 1) * chunkSize)) !== e.hash)
      throw new FsError(
        "EBADMSG",
        `${remote.where}/${key}: slot ${e.slot} (chunk ${e.chunk} of ${e.hash.slice(0, 12)}…) does not match its hash: the object is damaged`,
      );
  return bytes;
}

/** Reads chunks of manifest `m` into `target` from `offset` on; a chunk it does not hold is zeros. */
export function chunkReader(
  remote: Remote,
  m: Manifest,
): (offset: number, target: Buffer) => Promise<void> {
  const cs = m.chunkSize;
  const byChunk = new Map(m.entries.map((e) => [e.chunk, e]));
  return async (offset, target) => {
    const first = offset / cs;
    const held: ChunkEntry[] = [];
    for (let i = 0; i < target.length / cs; i++) {
      const e = byChunk.get(first + i);
      if (e) held.push(e);
      else target.fill(0, i * cs, (i + 1) * cs);
    }
    await Promise.all(
      runsOf(held).map(async (run) =>
        (await fetchRun(remote, run, cs)).copy(target, (run[0]!.chunk - first) * cs),
      ),
    );
  };
}

/** The stream of manifest `m`: whole, or with `base` (an older manifest) only what differs. */
export function manifestStream(
  remote: Remote,
  m: Manifest,
  base?: Manifest,
): AsyncIterable<Buffer> {
  const header: StreamHeader = {
    volumeUuid: m.volumeUuid,
    volumeSize: m.volumeSize,
    chunkSize: m.chunkSize,
    snapshot: m.snapshot,
    ...(base ? { base: base.snapshot } : {}),
  };
  const chunks = base ? changedChunks(base, m) : m.entries.map((e) => e.chunk);
  return pulled((sink) => writeStream(header, chunkReader(remote, m), sink, chunks));
}

/**
 * What `write` writes to its sink, as an iterable a consumer pulls from: a few writes ahead at
 * most. A consumer that stops early makes the next write fail, so `write` stops too.
 */
async function* pulled(write: (sink: StreamSink) => Promise<unknown>): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let finished = false;
  let failure: unknown;
  let stopped = false;
  let wake: (() => void) | undefined;
  let room: (() => void) | undefined;
  const sink: StreamSink = {
    write: async (parts) => {
      if (stopped) throw new FsError("EPIPE", "the stream's reader stopped");
      // Copied: the writer uses its buffers again once this resolves.
      queue.push(Buffer.concat(parts));
      wake?.();
      while (queue.length >= 4 && !stopped) await new Promise<void>((r) => (room = r));
    },
  };
  const running = write(sink).then(
    () => undefined,
    (e: unknown) => {
      failure = e;
    },
  );
  void running.finally(() => {
    finished = true;
    wake?.();
  });
  try {
    for (;;) {
      const next = queue.shift();
      if (next) {
        room?.();
        yield next;
        continue;
      }
      if (finished) {
        if (failure !== undefined) throw failure;
        return;
      }
      await new Promise<void>((r) => (wake = r));
    }
  } finally {
    stopped = true;
    room?.();
    await running;
  }
}
