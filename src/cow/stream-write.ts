// Writing a send stream: the header, a record for each chunk sent (its bytes, or a run of zeros)
// in chunk order, and the end record. It reads through the function it is given; it never writes.

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

function* every(n: number): Generator<number> {
  for (let c = 0; c < n; c++) yield c;
}

/**
 * The stream of `header.snapshot`: `read(offset, target)` reads it. With `chunks` (ascending), those
 * chunks, a chunk of zeros as a run of zeros; without, every chunk that is not all zeros (a full
 * stream: the receiver starts from a volume of zeros). Reads the next run while the one before is
 * being written out. Ends with the counts it sent.
 */
export async function* writeStream(
  header: StreamHeader,
  read: (offset: number, target: Buffer) => Promise<void>,
  chunks?: readonly number[],
): AsyncGenerator<Buffer, StreamCounts> {
  const cs = header.chunkSize;
  const zero = Buffer.alloc(cs);
  const full = chunks === undefined;
  const sum = new StreamCrc();
  const counts: StreamCounts = { dataChunks: 0, zeroChunks: 0 };
  const head = encodeHeader(header);
  sum.add(head);
  yield head;

  let zeros: [number, number] | undefined;
  const flushZeros = function* (): Generator<Buffer> {
    if (!zeros) return;
    const r = zerosRecord(zeros[0], zeros[1]);
    counts.zeroChunks += zeros[1];
    zeros = undefined;
    sum.add(r);
    yield r;
  };
  const load = ([first, count]: [number, number]) => {
    const buf = Buffer.allocUnsafe(count * cs);
    return read(first * cs, buf).then(() => ({ first, count, buf }));
  };

  const todo = runs(full ? every(header.volumeSize / cs) : chunks, Math.max(1, READ_BYTES / cs));
  let step = todo.next();
  let pending = step.done ? undefined : load(step.value);
  while (pending) {
    const { first, count, buf } = await pending;
    step = todo.next();
    pending = step.done ? undefined : load(step.value);
    for (let i = 0; i < count; i++) {
      const c = first + i;
      const data = buf.subarray(i * cs, (i + 1) * cs);
      if (data.equals(zero)) {
        if (full) continue;
        if (zeros && zeros[0] + zeros[1] === c && zeros[1] < 0xffffffff) zeros[1]++;
        else {
          yield* flushZeros();
          zeros = [c, 1];
        }
        continue;
      }
      yield* flushZeros();
      const r = dataRecord(c, data);
      counts.dataChunks++;
      sum.add(r);
      yield r;
      yield data;
    }
  }
  yield* flushZeros();
  yield endRecord(counts, sum.value);
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
 * volume); without, every chunk that is not all zeros. `read` is told of each range read.
 */
export function snapshotStream(
  vol: CowVolume,
  id: number,
  base?: number,
  read?: (chunks: number) => void,
): { header: StreamHeader; chunks: number; stream: AsyncGenerator<Buffer, StreamCounts> } {
  const all = vol.snapshots();
  const snap = all[vol.position(id)]!;
  const from = base === undefined ? undefined : all[vol.position(base)]!;
  const chunks = base === undefined ? undefined : vol.changedBetween(base, id);
  const header: StreamHeader = {
    volumeUuid: vol.settings.uuid,
    volumeSize: vol.size,
    chunkSize: vol.chunkSize,
    snapshot: ref(snap),
    ...(from ? { base: ref(from) } : {}),
  };
  const readRange = async (offset: number, target: Buffer) => {
    await vol.readSnapshot(id, offset, target);
    read?.(target.length / vol.chunkSize);
  };
  return {
    header,
    chunks: chunks ? chunks.length : vol.size / vol.chunkSize,
    stream: writeStream(header, readRange, chunks),
  };
}
