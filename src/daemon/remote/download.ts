// A snapshot in object storage made into a send stream again: whole, or from the snapshot before
// it (the chunks whose content differs). Every chunk fetched is checked against its hash before it
// goes into the stream. It never writes to object storage.

import {
  type ChunkSource,
  type StreamChunks,
  type StreamHeader,
  type StreamSink,
  writeStream,
} from "../../cow/index.js";
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

/**
 * A run's chunks in one request (into `into`, when given), each checked against its hash
 * (EBADMSG naming the object).
 */
export async function fetchRun(
  remote: Remote,
  run: readonly ChunkEntry[],
  chunkSize: number,
  into?: Buffer,
): Promise<Buffer> {
  const key = packKey(run[0]!.pack);
  const bytes = await remote.objects.get(
    key,
    { offset: run[0]!.slot * chunkSize, length: run.length * chunkSize },
    into,
  );
  for (const [i, e] of run.entries())
    if (sha256(bytes.subarray(i * chunkSize, (i + 1) * chunkSize)) !== e.hash)
      throw new FsError(
        "EBADMSG",
        `${remote.where}/${key}: slot ${e.slot} (chunk ${e.chunk} of ${e.hash.slice(0, 12)}…) does not match its hash: the object is damaged`,
      );
  return bytes;
}

/** Bytes one request fetches at most, and requests under way at once, while a snapshot is read. */
const FETCH_BYTES = 16 << 20;
const FETCHES = 4;

/**
 * Runs of chunks fetched in order, several ahead at once, each checked: `bytes(r)` waits for run
 * `r` (and starts the ones after it); the runs before `r` are let go. With `reuse`, for a reader
 * done with a run once it asks for a later one, their buffers are fetched into again.
 */
class RunsAhead {
  readonly runs: ChunkEntry[][];
  private readonly fetched: Array<{ bytes: Promise<Buffer>; buf?: Buffer } | undefined> = [];
  private readonly spare: Buffer[] = [];
  private started = 0;
  private done = 0;

  constructor(
    private readonly remote: Remote,
    entries: readonly ChunkEntry[],
    private readonly chunkSize: number,
    private readonly reuse = false,
  ) {
    const per = Math.max(1, FETCH_BYTES / chunkSize);
    this.runs = runsOf(entries).flatMap((run) =>
      Array.from({ length: Math.ceil(run.length / per) }, (_, i) =>
        run.slice(i * per, (i + 1) * per),
      ),
    );
  }

  bytes(r: number): Promise<Buffer> {
    for (; this.done < r; this.done++) {
      const buf = this.fetched[this.done]?.buf;
      if (buf) this.spare.push(buf);
      this.fetched[this.done] = undefined;
    }
    for (; this.started < this.runs.length && this.started < r + FETCHES; this.started++) {
      const buf = this.reuse ? (this.spare.pop() ?? Buffer.allocUnsafe(FETCH_BYTES)) : undefined;
      const bytes = fetchRun(this.remote, this.runs[this.started]!, this.chunkSize, buf);
      bytes.catch(() => undefined);
      this.fetched[this.started] = { bytes, ...(buf ? { buf } : {}) };
    }
    return this.fetched[r]!.bytes;
  }
}

/**
 * Reads of manifest `m`'s chunks `chunks` (ascending), in that order, as `writeStream` makes
 * them; a chunk the manifest does not hold reads as zeros.
 */
function readsAhead(
  remote: Remote,
  m: Manifest,
  chunks: readonly number[],
): (offset: number, target: Buffer) => Promise<void> {
  const cs = m.chunkSize;
  const byChunk = new Map(m.entries.map((e) => [e.chunk, e]));
  const ahead = new RunsAhead(
    remote,
    chunks.flatMap((c) => byChunk.get(c) ?? []),
    cs,
  );
  const runOf = new Map<number, number>();
  for (const [r, run] of ahead.runs.entries()) for (const e of run) runOf.set(e.chunk, r);
  return async (offset, target) => {
    const first = offset / cs;
    const parts: Array<{ at: number; run: Promise<Buffer>; from: number }> = [];
    for (let i = 0; i < target.length / cs; i++) {
      const r = runOf.get(first + i);
      if (r === undefined) target.fill(0, i * cs, (i + 1) * cs);
      else parts.push({ at: i, run: ahead.bytes(r), from: first + i - ahead.runs[r]![0]!.chunk });
    }
    for (const p of parts) (await p.run).copy(target, p.at * cs, p.from * cs, (p.from + 1) * cs);
  };
}

const headerOf = (m: Manifest, base?: Manifest): StreamHeader => ({
  volumeUuid: m.volumeUuid,
  volumeSize: m.volumeSize,
  chunkSize: m.chunkSize,
  snapshot: m.snapshot,
  ...(base ? { base: base.snapshot } : {}),
});

/**
 * Manifest `m`'s chunks as a receive takes them, read ahead and checked, without a stream's
 * encoding: what makes a new store from object storage.
 */
export class ManifestChunks implements ChunkSource {
  offset = 0;

  constructor(
    private readonly remote: Remote,
    private readonly m: Manifest,
  ) {}

  async header(): Promise<StreamHeader> {
    return headerOf(this.m);
  }

  async *chunks(): AsyncGenerator<StreamChunks> {
    const cs = this.m.chunkSize;
    const ahead = new RunsAhead(this.remote, this.m.entries, cs, true);
    for (const [r, run] of ahead.runs.entries()) {
      const bytes = await ahead.bytes(r);
      for (const [i, e] of run.entries()) {
        this.offset += cs;
        yield { chunk: e.chunk, count: 1, data: bytes.subarray(i * cs, (i + 1) * cs) };
      }
    }
  }
}

/** The stream of manifest `m`: whole, or with `base` (an older manifest) only what differs. */
export function manifestStream(
  remote: Remote,
  m: Manifest,
  base?: Manifest,
): AsyncIterable<Buffer> {
  const chunks = base ? changedChunks(base, m) : m.entries.map((e) => e.chunk);
  return pulled((sink) =>
    writeStream(headerOf(m, base), readsAhead(remote, m, chunks), sink, chunks),
  );
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
