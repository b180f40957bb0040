// Read-ahead for files read in order: one device read fills a window of the file, and the next
// requests inside it are copies. It never serves bytes that a change to the file has made stale.

/** Bytes one window holds. */
export const WINDOW = 1 << 20;
/** Files read in order at the same time that keep a window each. */
const STREAMS = 4;
/** Files whose last read end is remembered, to tell an in-order read. */
const REMEMBERED = 1024;

interface Window {
  ino: number;
  /** File offset of `buf[0]`. */
  start: number;
  /** Bytes of the window; fewer than its buffer holds when it reaches the end of the file. */
  len: number;
  eof: boolean;
  buf: Buffer;
  /** Settles when the window is filled (or failed: then `dead`). */
  ready: Promise<void>;
  filling: boolean;
  /** The file changed, or the fill failed: it serves nothing any more. */
  dead: boolean;
  /** Fill and requests waiting for it that still use `buf`. */
  users: number;
  /** No longer in the table: `buf` goes back to the pool when its last user is done. */
  retired: boolean;
}

/**
 * Windows by inode. Contract: the filesystem calls `invalidate(ino)` before it changes the data,
 * size or blocks of `ino`, and plans a fill (blocks and size) only when no operation is half-done;
 * a window killed while its fill is in flight serves nothing. Buffers are reused, never while a
 * device read or a copy may still touch them.
 */
export class ReadAhead {
  // No lock guards these: every method changes them in one synchronous step (reads call it
  // outside the metadata lock), and a fill that settles later finds its window by reference.
  private readonly windows = new Map<number, Window>();
  private readonly ends = new Map<number, number>();
  private readonly pool: Buffer[] = [];

  /** True when a read of `ino` at `offset` continues the previous one: worth a window. */
  wants(ino: number, offset: number, length: number): boolean {
    return offset > 0 && length < WINDOW && this.ends.get(ino) === offset;
  }

  /** Notes where a read of `ino` ended. */
  note(ino: number, end: number): void {
    if (this.ends.size >= REMEMBERED && !this.ends.has(ino)) this.ends.clear();
    this.ends.set(ino, end);
  }

  /**
   * The bytes [offset, offset + length) of `ino` (fewer at the end of the file), copied into
   * `into` or a new buffer, if a live window holds them all; else undefined. The promise gives
   * undefined if the window died meanwhile: the caller then reads as usual.
   */
  serve(
    ino: number,
    offset: number,
    length: number,
    into?: Uint8Array,
  ): Promise<Buffer | undefined> | undefined {
    const w = this.windows.get(ino);
    if (!w || w.dead || offset < w.start) return undefined;
    const end = offset + length;
    if (end > w.start + w.len && !(w.eof && offset <= w.start + w.len)) return undefined;
    if (!w.filling) return Promise.resolve(this.copy(w, offset, length, into));
    w.users++;
    return w.ready
      .then(() => (w.dead ? undefined : this.copy(w, offset, length, into)))
      .finally(() => this.release(w));
  }

  /**
   * Makes a window of `ino` from `offset`, filled by `fill` (which reads `len` bytes of the file
   * into the buffer it is given; `eof` when they reach the end of the file), and gives the first
   * `length` of them as `serve` does.
   */
  start(
    ino: number,
    offset: number,
    len: number,
    eof: boolean,
    fill: (buf: Buffer) => Promise<unknown>,
    length: number,
    into?: Uint8Array,
  ): Promise<Buffer> {
    this.invalidate(ino);
    while (this.windows.size >= STREAMS) this.invalidate(this.windows.keys().next().value!);
    const buf = this.pool.pop() ?? Buffer.allocUnsafeSlow(WINDOW);
    const w: Window = {
      ino,
      start: offset,
      len,
      eof,
      buf,
      ready: Promise.resolve(),
      filling: true,
      dead: false,
      users: 1,
      retired: false,
    };
    this.windows.set(ino, w);
    const filled = fill(buf.subarray(0, len));
    w.ready = filled.then(
      () => {
        w.filling = false;
      },
      () => {
        w.filling = false;
        w.dead = true;
      },
    );
    // The request started before any change that may kill the window: its bytes stand.
    return filled.then(() => this.copy(w, offset, length, into)).finally(() => this.release(w));
  }

  /** Forgets the window of `ino`: its data, size or blocks are about to change. */
  invalidate(ino: number): void {
    const w = this.windows.get(ino);
    if (!w) return;
    w.dead = true;
    w.retired = true;
    this.windows.delete(ino);
    if (w.users === 0) this.recycle(w.buf);
  }

  private release(w: Window): void {
    if (--w.users === 0 && w.retired) this.recycle(w.buf);
  }

  private recycle(buf: Buffer): void {
    if (this.pool.length < STREAMS) this.pool.push(buf);
  }

  private copy(w: Window, offset: number, length: number, into?: Uint8Array): Buffer {
    const from = offset - w.start;
    const n = Math.max(0, Math.min(length, w.len - from));
    const out = into ? Buffer.from(into.buffer, into.byteOffset, n) : Buffer.allocUnsafe(n);
    w.buf.copy(out, 0, from, from + n);
    this.note(w.ino, offset + n);
    return out;
  }
}
