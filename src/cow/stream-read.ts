// Reading a send stream from a byte source: its header, then its records, each checked as it
// comes (checksums, order, bounds) and the whole against the end record. It never writes.

import { open } from "node:fs/promises";
import { crc } from "./format.js";
import {
  badStream,
  DATA,
  decodeHeaderBody,
  decodeRecord,
  END,
  headerBodyLength,
  STREAM_HEADER_SIZE,
  STREAM_MAGIC,
  STREAM_RECORD_SIZE,
  type StreamCounts,
  StreamCrc,
  type StreamHeader,
} from "./stream-format.js";

/** A chunk as the stream gives it: its bytes, or (`data` null) a run of `count` chunks of zeros. */
export interface StreamChunks {
  chunk: number;
  count: number;
  data: Buffer | null;
}

/**
 * What a receive takes a snapshot from: a header, then the chunks in ascending order, each valid
 * until the next is asked for, every one checked before it is given out. `offset` counts the
 * bytes taken so far. `StreamReader` is one, over a stream's bytes.
 */
export interface ChunkSource {
  header(): Promise<StreamHeader>;
  chunks(): AsyncIterable<StreamChunks>;
  readonly offset: number;
}

/** A Buffer over the same bytes, not a copy. */
const view = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Bytes taken from an async source in pieces of the sizes asked for. */
class ByteQueue {
  private readonly parts: Buffer[] = [];
  private buffered = 0;
  /** Bytes taken so far. */
  taken = 0;

  /** Bytes the source gave so far. */
  get received(): number {
    return this.taken + this.buffered;
  }

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  private scratch = Buffer.alloc(0);

  /**
   * The next `n` bytes, valid until the next call; undefined when the source ends first. They
   * are the source's own bytes when one piece holds them all.
   */
  async take(n: number): Promise<Buffer | undefined> {
    while (this.buffered < n) {
      const next = await this.source.next();
      if (next.done) return undefined;
      const b = view(next.value);
      this.parts.push(b);
      this.buffered += b.length;
    }
    let out: Buffer;
    const first = this.parts[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.parts.shift();
      else this.parts[0] = first.subarray(n);
    } else {
      // Bytes from several pieces are copied together, into a buffer used again and again.
      if (this.scratch.length < n) this.scratch = Buffer.allocUnsafe(n);
      out = this.scratch.subarray(0, n);
      let at = 0;
      while (at < n) {
        const p = this.parts[0]!;
        const k = Math.min(p.length, n - at);
        p.copy(out, at, 0, k);
        at += k;
        if (k === p.length) this.parts.shift();
        else this.parts[0] = p.subarray(k);
      }
    }
    this.buffered -= n;
    this.taken += n;
    return out;
  }

  /** True when the source has nothing more. */
  async ended(): Promise<boolean> {
    if (this.buffered > 0) return false;
    for (;;) {
      const next = await this.source.next();
      if (next.done) return true;
      if (next.value.byteLength > 0) {
        this.parts.push(view(next.value));
        this.buffered += next.value.byteLength;
        return false;
      }
    }
  }
}

/**
 * Reads one stream. `header()` first, then `chunks()`, whose `data` is valid until the next chunk
 * is asked for (copy what must outlive it); every fault (a damaged, cut, reordered or
 * extended stream) is an EBADMSG error naming what and where, found before the chunk it concerns
 * is given out; the end record is checked before `chunks()` ends. A caller that must change
 * nothing until the whole stream is known good keeps what it is given until then.
 */
export class StreamReader implements ChunkSource {
  private readonly bytes: ByteQueue;
  private readonly sum = new StreamCrc();
  private head: StreamHeader | undefined;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.bytes = new ByteQueue(source[Symbol.asyncIterator]());
  }

  /** Bytes read so far. */
  get offset(): number {
    return this.bytes.taken;
  }

  async header(): Promise<StreamHeader> {
    if (this.head) return this.head;
    // The magic first: a file that is no stream is said to be none, however short.
    const magic = (await this.bytes.take(STREAM_MAGIC.length))?.toString("latin1");
    if (magic !== STREAM_MAGIC) throw badStream("not a shadowfs send stream (bad magic)");
    const rest = await this.need(STREAM_HEADER_SIZE - magic.length, "its header");
    const fixed = Buffer.concat([Buffer.from(magic, "latin1"), rest]);
    const body = await this.need(headerBodyLength(fixed), "its header");
    this.head = decodeHeaderBody(fixed, body);
    this.sum.add(fixed);
    this.sum.add(body);
    return this.head;
  }

  /**
   * The chunks, in order. With `partial`, the source may end after any whole record, before the
   * end record (a stream kept as far as it came, checked record by record).
   */
  async *chunks(opts: { partial?: boolean } = {}): AsyncGenerator<StreamChunks> {
    const h = await this.header();
    const total = h.volumeSize / h.chunkSize;
    const counts: StreamCounts = { dataChunks: 0, zeroChunks: 0 };
    let next = h.resume?.from ?? 0;
    for (let n = 1; ; n++) {
      if (opts.partial && (await this.bytes.ended())) return;
      const raw = await this.need(STREAM_RECORD_SIZE, "its end record");
      const r = decodeRecord(raw, n);
      if (r.kind === END) {
        if (r.streamCrc !== this.sum.value)
          throw badStream("checksum of the whole stream mismatch");
        if (r.counts.dataChunks !== counts.dataChunks || r.counts.zeroChunks !== counts.zeroChunks)
          throw badStream(
            `end record counts ${r.counts.dataChunks} data and ${r.counts.zeroChunks} zero chunks; ` +
              `the stream held ${counts.dataChunks} and ${counts.zeroChunks}`,
          );
        if (!(await this.bytes.ended())) throw badStream("bytes follow its end record");
        return;
      }
      this.sum.add(raw);
      const count = r.kind === DATA ? 1 : r.count;
      if (r.chunk < next)
        throw badStream(`record ${n}: chunk ${r.chunk} out of order (records are in chunk order)`);
      if (r.chunk + count > total)
        throw badStream(`record ${n}: chunk ${r.chunk + count - 1} is beyond the volume`);
      next = r.chunk + count;
      if (r.kind === DATA) {
        const data = await this.need(h.chunkSize, "the data of its last record");
        if (crc(data) !== r.dataCrc)
          throw badStream(`record ${n}: chunk ${r.chunk}'s data checksum mismatch`);
        counts.dataChunks++;
        yield { chunk: r.chunk, count: 1, data };
      } else {
        counts.zeroChunks += count;
        yield { chunk: r.chunk, count, data: null };
      }
    }
  }

  private async need(n: number, what: string): Promise<Buffer> {
    const b = await this.bytes.take(n);
    if (!b)
      throw badStream(`cut short: it ends after ${this.bytes.received} bytes, before ${what}`);
    return b;
  }
}

/**
 * Reads the header of the stream `source` gives, and hands back the whole stream, header
 * included, to be read again from its first byte.
 */
export async function peekHeader(
  source: AsyncIterable<Uint8Array>,
): Promise<{ header: StreamHeader; stream: AsyncIterable<Uint8Array> }> {
  const it = source[Symbol.asyncIterator]();
  const seen: Uint8Array[] = [];
  const recording: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        const r = await it.next();
        if (!r.done) seen.push(r.value);
        return r;
      },
    }),
  };
  const header = await new StreamReader(recording).header();
  async function* whole(): AsyncGenerator<Uint8Array> {
    yield* seen;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { header, stream: whole() };
}

/**
 * The bytes of the file at `path`, read ahead in pieces of a MiB into a few buffers used in turn:
 * nothing is allocated per piece. A piece is read into again once three more have been taken, so
 * a consumer holds on to no more than the piece before the one it takes (as `StreamReader` does).
 */
export async function* readFileAhead(path: string): AsyncGenerator<Buffer> {
  const size = 1 << 20;
  const ahead = 2;
  const fh = await open(path, "r");
  const buffers = Array.from({ length: ahead + 2 }, () => Buffer.allocUnsafe(size));
  const pending: Array<Promise<Buffer>> = [];
  let position = 0;
  let turn = 0;
  try {
    for (;;) {
      while (pending.length < ahead) {
        const buf = buffers[turn++ % buffers.length]!;
        const read = fh.read(buf, 0, size, position).then((r) => buf.subarray(0, r.bytesRead));
        read.catch(() => undefined);
        pending.push(read);
        position += size;
      }
      const piece = await pending.shift()!;
      if (piece.length === 0) return;
      yield piece;
    }
  } finally {
    await Promise.allSettled(pending);
    await fh.close();
  }
}
