// Direct I/O (O_DIRECT) beside a buffered handle of a host file (part of the host seam), for
// the originals in diff areas: written once, synced at once, read rarely. It changes no result.

import type { FileHandle } from "node:fs/promises";

/** Offsets, lengths and memory of direct I/O are multiples of this. */
const ALIGN = 4096;
/** Reads shorter than this stay buffered: small reads are random, and the page cache serves repeats. */
const DIRECT_READ_MIN = 256 * 1024;
/** One pooled buffer: direct I/O goes through it in pieces of at most this. */
const PIECE = 4 * 2 ** 20;
/** Pooled buffers in all, shared by every file; I/O finding none free is buffered. */
const PIECES = 8;

/** The memory `alignedBuffer` made: direct I/O goes straight into it, without a pooled buffer. */
const alignedMemory = new WeakSet<ArrayBufferLike>();

/**
 * `bytes` of page-aligned memory (zeros). O_DIRECT needs memory aligned to the device's blocks,
 * and the memory of a WebAssembly instance is the only such memory JS can allocate.
 */
export function alignedBuffer(bytes: number): Buffer {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) }).buffer;
  alignedMemory.add(memory);
  return Buffer.from(memory, 0, bytes);
}

/** Whether `buf` lies in memory made by `alignedBuffer`, from an aligned offset. */
const inAlignedMemory = (buf: Uint8Array) =>
  alignedMemory.has(buf.buffer) && buf.byteOffset % ALIGN === 0;

/** Page-aligned buffers, lent out. */
class AlignedPool {
  private free: Buffer[] | undefined;

  take(): Buffer | undefined {
    if (!this.free) {
      const all = alignedBuffer(PIECE * PIECES);
      this.free = Array.from({ length: PIECES }, (_, i) =>
        all.subarray(i * PIECE, (i + 1) * PIECE),
      );
    }
    return this.free.pop();
  }

  give(buf: Buffer): void {
    this.free!.push(buf);
  }
}

const pool = new AlignedPool();

const aligned = (position: number, length: number) =>
  position % ALIGN === 0 && length % ALIGN === 0;

/** How the file is read and written through its buffered handle. */
export interface BufferedIo {
  /** As HostFile.read: zeros past the end; the bytes read from the file. */
  read(buf: Uint8Array, position: number): Promise<number>;
  writev(chunks: readonly Uint8Array[], position: number): Promise<void>;
}

/**
 * Aligned writes, and aligned reads of at least DIRECT_READ_MIN, go to the disk through a pooled
 * buffer; everything else, or everything once the host refuses O_DIRECT (EINVAL), goes through
 * the buffered handle. The kernel keeps the two handles coherent: a direct write drops the pages
 * it overwrites from the page cache, a direct read first writes back dirty ones.
 */
export class DirectIo {
  constructor(
    private direct: FileHandle | undefined,
    private readonly buffered: BufferedIo,
  ) {}

  async writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const direct = aligned(position, total) ? this.direct : undefined;
    const buf = direct && pool.take();
    if (!direct || !buf) return this.buffered.writev(chunks, position);
    let fill = 0;
    let at = position;
    const drain = async () => {
      for (let done = 0; done < fill; ) {
        const { bytesWritten } = await direct.write(buf, done, fill - done, at + done);
        done += bytesWritten;
      }
      at += fill;
      fill = 0;
    };
    try {
      for (const c of chunks) {
        for (let off = 0; off < c.length; ) {
          const n = Math.min(c.length - off, PIECE - fill);
          buf.set(c.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === PIECE) await drain();
        }
      }
      await drain();
    } catch (e) {
      if (!this.refused(e) || at !== position) throw e;
      await this.buffered.writev(chunks, position);
    } finally {
      pool.give(buf);
    }
  }

  /**
   * Reads `buf.length` bytes (zeros past the end); returns the bytes read from the file. Into
   * memory from `alignedBuffer`, straight; else through a pooled buffer.
   */
  async read(buf: Uint8Array, position: number): Promise<number> {
    const big = buf.length >= DIRECT_READ_MIN && aligned(position, buf.length);
    const direct = big ? this.direct : undefined;
    if (direct && inAlignedMemory(buf)) return this.readStraight(direct, buf, position);
    const piece = direct && pool.take();
    if (!direct || !piece) return this.buffered.read(buf, position);
    let done = 0;
    try {
      while (done < buf.length) {
        const want = Math.min(PIECE, buf.length - done);
        const { bytesRead } = await direct.read(piece, 0, want, position + done);
        buf.set(piece.subarray(0, bytesRead), done);
        done += bytesRead;
        if (bytesRead < want) break; // the end of the file
      }
    } catch (e) {
      if (!this.refused(e) || done > 0) throw e;
      return this.buffered.read(buf, position);
    } finally {
      pool.give(piece);
    }
    buf.fill(0, done);
    return done;
  }

  private async readStraight(direct: FileHandle, buf: Uint8Array, position: number) {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesRead } = await direct.read(buf, done, buf.length - done, position + done);
        if (bytesRead === 0) break; // the end of the file
        done += bytesRead;
      }
    } catch (e) {
      if (!this.refused(e) || done > 0) throw e;
      return this.buffered.read(buf, position);
    }
    buf.fill(0, done);
    return done;
  }

  async close(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    await direct?.close();
  }

  /** True when `e` says the host refuses O_DIRECT here (EINVAL): from then on all is buffered. */
  private refused(e: unknown): boolean {
    if ((e as NodeJS.ErrnoException).code !== "EINVAL") return false;
    this.close().catch(() => {}); // the buffered handle goes on either way
    return true;
  }
}
