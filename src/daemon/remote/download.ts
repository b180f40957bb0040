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

/**
 * Reads chunks of manifest `m` into `target` from `offset` on: consecutive slots of one pack in
 * one request, each chunk checked against its hash; a chunk the manifest does not hold is zeros.
 */
export function chunkReader(
  remote: Remote,
  m: Manifest,
): (offset: number, target: Buffer) => Promise<void> {
  const cs = m.chunkSize;
  const byChunk = new Map(m.entries.map((e) => [e.chunk, e]));
  return async (offset, target) => {
    const first = offset / cs;
    const count = target.length / cs;
    const runs: Array<{ at: number; entries: ChunkEntry[] }> = [];
    for (let i = 0; i < count; i++) {
      const e = byChunk.get(first + i);
      if (!e) {
        target.fill(0, i * cs, (i + 1) * cs);
        continue;
      }
      const run = runs.at(-1);
      const last = run?.entries.at(-1);
      if (
        run &&
        last &&
        last.pack === e.pack &&
        last.slot + 1 === e.slot &&
        run.at + run.entries.length === i
      )
        run.entries.push(e);
      else runs.push({ at: i, entries: [e] });
    }
    await Promise.all(
      runs.map(async ({ at, entries }) => {
        const key = packKey(entries[0]!.pack);
        const bytes = await remote.objects.get(key, {
          offset: entries[0]!.slot * cs,
          length: entries.length * cs,
        });
        for (const [i, e] of entries.entries()) {
          const data = bytes.subarray(i * cs, (i + 1) * cs);
          if (sha256(data) !== e.hash)
            throw new FsError(
              "EBADMSG",
              `${remote.where}/${key}: slot ${e.slot} (chunk ${e.chunk} of ${e.hash.slice(0, 12)}…) does not match its hash: the object is damaged`,
            );
          data.copy(target, (at + i) * cs);
        }
      }),
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
