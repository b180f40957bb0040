// Writing a send stream: the header, a record for each chunk sent (its bytes, or a run of zeros)
// in chunk order, and the end record. It reads through the function it is given; it never writes.

import { alignedBuffer } from "./direct-file.js";
import {
  dataRecord,
  encodeHeader,
  endRecord,
  type StreamCounts,
  StreamCrc,
  type StreamHeader,
  type StreamSnapshot,
  zerosRecord,
} from "./stream-format.js";
import type { CowVolume } from "./volume.js";
import type { SnapshotInfo } from "./volume-options.js";

/** Bytes read at once: runs of consecutive chunks up to this size. */
const READ_BYTES = 1 << 20;
/** Reads under way while the stream is written: enough to keep the thread pool's reads busy. */
const READ_AHEAD = 3;

/**
 * Where a stream goes: `write` takes the next bytes, in pieces to be written one after the other,
 * and resolves once it holds no reference to them (they are copied or written out).
 */
export interface StreamSink {
  write(parts: readonly Buffer[]): Promise<void>;
}

/** A sink that keeps a copy of everything written to it (`bytes()`). */
export function collectingSink(): StreamSink & { bytes(): Buffer } {
  const all: Buffer[] = [];
  return {
    write: async (parts) => {
      all.push(Buffer.concat(parts));
    },
    bytes: () => Buffer.concat(all),
  };
}

/** Runs of consecutive chunks, each at most `max` long, in order. */
function* runs(chunks: Iterable<number>, max: number): Generator<[number, number]> {
  let first = -1;
  let count = 0;
  for (const c of chunks) {
    if (count > 0 && c === first + count && count < max) {
      count++;
      continue;
    }
    if (count > 0) yield [first, count];
    first = c;
    count = 1;
  }
  if (count > 0) yield [first, count];
}

function* every(from: number, n: number): Generator<number> {
  for (let c = from; c < n; c++) yield c;
}

/**
 * Writes the stream of `header.snapshot` to `sink`; `read(offset, target)` reads the snapshot.
 * With `chunks` (ascending), those chunks, a chunk of zeros as a run of zeros; without, every
 * chunk that is not all zeros (a full stream: the receiver starts from a volume of zeros). Reads
 * runs of chunks ahead into a few buffers used in turn, so that nothing is allocated per chunk.
 * Resolves with the counts it sent.
 */
export async function writeStream(
  header: StreamHeader,
  read: (offset: number, target: Buffer) => Promise<void>,
  sink: StreamSink,
  chunks?: readonly number[],
): Promise<StreamCounts> {
  const cs = header.chunkSize;
  const zero = Buffer.alloc(cs);
  const full = chunks === undefined;
  const sum = new StreamCrc();
  const counts: StreamCounts = { dataChunks: 0, zeroChunks: 0 };
  const head = encodeHeader(header);
  sum.add(head);
  await sink.write([head]);

  const per = Math.max(1, READ_BYTES / cs);
  // Reads run ahead, each into a buffer of its own, and a run is checked while the run before is
  // being written (one write at a time: the kernel takes a file's writes one at a time, and two
  // under way measured no faster). The buffers are used in turn, each read into again only once
  // the write of what was last read into it has settled (the sink has let go of it): a buffer for
  // each read, the run checked and the run written, so that this seldom waits.
  const n = READ_AHEAD + 2;
  // Aligned, so that a read around the page cache goes straight into them.
  const memory = alignedBuffer(n * per * cs);
  const slots = Array.from({ length: n }, (_, i) => ({
    buf: memory.subarray(i * per * cs, (i + 1) * per * cs),
    free: Promise.resolve(),
  }));
  const writing: Array<Promise<void>> = [];
  let zeros: [number, number] | undefined;
  const flushZeros = (parts: Buffer[]) => {
    if (!zeros) return;
    const r = zerosRecord(zeros[0], zeros[1]);
    counts.zeroChunks += zeros[1];
    zeros = undefined;
    sum.add(r);
    parts.push(r);
  };
  const todo = runs(full ? every(header.resume?.from ?? 0, header.volumeSize / cs) : chunks, per);
  const ahead: Array<Promise<{ first: number; count: number; slot: (typeof slots)[number] }>> = [];
  let turn = 0;
  const readAhead = () => {
    while (ahead.length < READ_AHEAD) {
      const step = todo.next();
      if (step.done) return;
      const [first, count] = step.value;
      const slot = slots[turn++ % slots.length]!;
      const buf = slot.buf.subarray(0, count * cs);
      const loaded = slot.free
        .then(() => read(first * cs, buf))
        .then(() => ({ first, count, slot }));
      // Awaited in turn below; a failure meanwhile must not go unhandled.
      loaded.catch(() => undefined);
      ahead.push(loaded);
    }
  };
  try {
    for (readAhead(); ahead.length > 0; readAhead()) {
      const { first, count, slot } = await ahead.shift()!;
      const buf = slot.buf;
      const parts: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        const c = first + i;
        const data = buf.subarray(i * cs, (i + 1) * cs);
        if (data.equals(zero)) {
          if (full) continue;
          if (zeros && zeros[0] + zeros[1] === c && zeros[1] < 0xffffffff) zeros[1]++;
          else {
            flushZeros(parts);
            zeros = [c, 1];
          }
          continue;
        }
        flushZeros(parts);
        const r = dataRecord(c, data);
        counts.dataChunks++;
        sum.add(r);
        parts.push(r, data);
      }
      if (parts.length === 0) continue;
      if (writing.length > 0) await writing.shift();
      const w = sink.write(parts);
      writing.push(w);
      // Awaited in turn (a failure meanwhile must not go unhandled), and by the next read into
      // this buffer, failed or not.
      slot.free = w.catch(() => undefined);
    }
    for (const w of writing.splice(0)) await w;
  } catch (e) {
    // No write may still be under way once the caller hears of the failure (it may close the file).
    await Promise.allSettled([...writing, ...ahead]);
    throw e;
  }
  const tail: Buffer[] = [];
  flushZeros(tail);
  tail.push(endRecord(counts, sum.value));
  await sink.write(tail);
  return counts;
}

const ref = (s: SnapshotInfo): StreamSnapshot => ({
  guid: s.guid,
  id: s.id,
  createdAt: s.createdAt,
  ...(s.name !== undefined ? { name: s.name } : {}),
  ...(s.setId !== undefined ? { setId: s.setId } : {}),
});

/**
 * The stream of snapshot `id` of `vol`: with `base`, an older snapshot, only the chunks that may
 * differ between them (those the diff areas from the base's on hold: found without reading the
 * volume); without, every chunk that is not all zeros. With `resumeFrom`, the rest of that stream
 * from that chunk on, for a receive that was cut. `read` is told of each range read.
 */
export function snapshotStream(
  vol: CowVolume,
  id: number,
  opts: { base?: number; resumeFrom?: number; read?: (chunks: number) => void } = {},
): { header: StreamHeader; chunks: number; write(sink: StreamSink): Promise<StreamCounts> } {
  const all = vol.snapshots();
  const snap = all[vol.position(id)]!;
  const { base, resumeFrom } = opts;
  const from = base === undefined ? undefined : all[vol.position(base)]!;
  const first = resumeFrom ?? 0;
  const chunks =
    base === undefined ? undefined : vol.changedBetween(base, id).filter((c) => c >= first);
  const header: StreamHeader = {
    volumeUuid: vol.settings.uuid,
    volumeSize: vol.size,
    chunkSize: vol.chunkSize,
    snapshot: ref(snap),
    ...(from ? { base: ref(from) } : {}),
    ...(resumeFrom !== undefined ? { resume: { from: resumeFrom } } : {}),
  };
  return {
    header,
    chunks: chunks ? chunks.length : vol.size / vol.chunkSize - first,
    write: async (sink) => {
      const reads = await vol.streamReads(id);
      try {
        const readRange = async (offset: number, target: Buffer) => {
          await reads.read(offset, target);
          opts.read?.(target.length / vol.chunkSize);
        };
        return await writeStream(header, readRange, sink, chunks);
      } finally {
        await reads.close();
      }
    },
  };
}
