// `snapshot send`: a snapshot of an open store written as a stream, whole or from an older
// snapshot (only the chunks the diff areas between them hold). It never changes the store.

import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type StreamCounts, snapshotStream } from "../cow/index.js";
import { einval } from "../errors.js";
import { gmtName } from "../mount/index.js";
import type { Service } from "./service.js";

export interface SendResult {
  snapshot: string;
  /** The base of an incremental stream; null for a full one. */
  base: string | null;
  /** Bytes of the stream. */
  bytes: number;
  dataChunks: number;
  zeroChunks: number;
}

/**
 * Writes snapshot `snapshot` of the store to `out` as a stream: with `from`, an older snapshot,
 * the chunks that may differ between them; without, every chunk in use. `progress` counts the
 * chunks looked at.
 */
export async function send(
  s: Service,
  p: { snapshot: string; from?: string },
  out: Writable,
  progress?: (done: number, total: number) => void,
): Promise<SendResult> {
  const snap = s.find(p.snapshot);
  const base = p.from === undefined ? undefined : s.find(p.from);
  if (base && base.id >= snap.id)
    throw einval(`--from ${p.from} is not older than snapshot ${p.snapshot}`);
  let done = 0;
  let shown = 0;
  const { chunks, stream } = snapshotStream(s.volume, snap.id, base?.id, (n) => {
    done += n;
    if (progress && (done - shown >= chunks / 100 || done === chunks)) {
      shown = done;
      progress(done, chunks);
    }
  });
  let bytes = 0;
  let counts: StreamCounts | undefined;
  async function* counted(): AsyncGenerator<Buffer> {
    for (;;) {
      const next = await stream.next();
      if (next.done) {
        counts = next.value;
        return;
      }
      bytes += next.value.length;
      yield next.value;
    }
  }
  await pipeline(Readable.from(counted(), { objectMode: false }), out);
  return {
    snapshot: gmtName(snap.createdAt),
    base: base ? gmtName(base.createdAt) : null,
    bytes,
    ...counts!,
  };
}
