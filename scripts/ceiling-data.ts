// A file's bytes in memory for the binding's ceiling (ceiling-fs.ts): 1 MiB chunks, allocated
// when first written, so that a large file never moves and a sparse one holds no zeros. It knows
// nothing of FUSE, names or attributes.

/** Chunk size: a 128 KiB write request lands inside one chunk. */
const CHUNK = 2 ** 20;

export class FileData {
  size = 0;
  /** Bytes [i * CHUNK, i * CHUNK + chunks[i].length); missing or past a chunk's end: zeros. */
  private chunks: (Buffer | undefined)[] = [];

  /** Copies up to `len` bytes from `pos` into `buf`; returns how many (0 past the end). */
  read(buf: Buffer, len: number, pos: number): number {
    const end = Math.min(pos + len, this.size);
    for (let at = pos; at < end; ) {
      const i = Math.floor(at / CHUNK);
      const off = at - i * CHUNK;
      const n = Math.min(end - at, CHUNK - off);
      const c = this.chunks[i];
      const out = at - pos;
      const copied = c && off < c.length ? c.copy(buf, out, off, Math.min(off + n, c.length)) : 0;
      if (copied < n) buf.fill(0, out + copied, out + n);
      at += n;
    }
    return Math.max(0, end - pos);
  }

  /** Writes `len` bytes of `src` at `pos`, growing the file as needed. */
  write(src: Buffer, len: number, pos: number): void {
    for (let from = 0; from < len; ) {
      const at = pos + from;
      const i = Math.floor(at / CHUNK);
      const off = at - i * CHUNK;
      const n = Math.min(len - from, CHUNK - off);
      let c = this.chunks[i];
      if (!c || c.length < off + n) {
        // The first chunk grows by doubling (most files are small); any other is made whole.
        const length = i > 0 ? CHUNK : Math.min(CHUNK, Math.max(off + n, 2 * (c?.length ?? 0)));
        const grown = Buffer.alloc(length);
        c?.copy(grown);
        this.chunks[i] = c = grown;
      }
      src.copy(c, off, from, from + n);
      from += n;
    }
    this.size = Math.max(this.size, pos + len);
  }

  /** Sets the size; bytes past a shrunk end read as zeros if the file grows again. */
  truncate(size: number): void {
    if (size < this.size) {
      this.chunks.length = Math.min(this.chunks.length, Math.ceil(size / CHUNK));
      const off = size % CHUNK;
      const last = this.chunks[Math.floor(size / CHUNK)];
      if (off > 0 && last && last.length > off) last.fill(0, off);
    }
    this.size = size;
  }
}
