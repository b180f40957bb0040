// File contents: reads and writes of byte ranges through the block map, holes as zeros, and
// truncation. Data blocks go straight to the device, before the transaction that points to them.

import type { BlockDevice, HostRange, Lease } from "../cow/index.js";
import { FsError } from "../errors.js";
import {
  type AllocContext,
  ensureRange,
  MAX_FILE_BLOCKS,
  mapBlock,
  mapRange,
  mapRangeNow,
  truncateBlocks,
} from "./block-map.js";
import type { Inode } from "./inode.js";
import { ReadAhead } from "./read-ahead.js";

/** What file contents need of the filesystem: the device for data, and the block maps' parts. */
export interface DataContext extends AllocContext {
  readonly dev: BlockDevice;
}

const BS = 4096;
export const MAX_FILE_SIZE = MAX_FILE_BLOCKS * BS;

/**
 * Where the bytes of a read come from: `length` bytes, made of device ranges (`dev`, copied to
 * `at` in the result) in ascending order of `at`, and zeros (holes) in between.
 */
export interface ReadPlan {
  length: number;
  runs: Array<{ dev: number; at: number; len: number }>;
}

/**
 * A reader that can read host files on a thread of its own (see `BlockDevice.lend`): a read may
 * leave it one part, `lent`, to read there. It releases `lease` once it has; the device keeps
 * the bytes in place until then.
 */
export interface Lender {
  readonly lease: Lease;
  lent?: HostRange & { at: number; length: number };
}

export class FileData {
  /**
   * Windows of files read in order; every change below forgets the file's first. No lock: its
   * state changes in synchronous steps, and a window killed while its fill runs serves nothing.
   */
  readonly ahead = new ReadAhead();
  private readonly dev: BlockDevice;
  /**
   * The merged images of a write's partial blocks (its first and its last), kept rather than a
   * new zeroed 4 KiB buffer each: writes run one at a time inside metadata operations, and the
   * device keeps nothing of what it was given once a write resolves.
   */
  private readonly partial = [Buffer.alloc(BS), Buffer.alloc(BS)];

  /** `ctx`: the device for data; the metadata and allocator for the block maps. */
  constructor(private readonly ctx: DataContext) {
    this.dev = ctx.dev;
  }

  /** Plans a read of up to `length` bytes at `offset`, stopping at the end of the file. */
  async plan(ino: Inode, offset: number, length: number): Promise<ReadPlan> {
    const end = Math.min(ino.size, offset + length);
    if (end <= offset) return { length: 0, runs: [] };
    const first = Math.floor(offset / BS);
    return runsOf(offset, end, await mapRange(this.ctx, ino, first, Math.ceil(end / BS) - first));
  }

  /** `plan`, if every metadata block it needs is in memory; else undefined. It never waits. */
  planNow(ino: Inode, offset: number, length: number): ReadPlan | undefined {
    const end = Math.min(ino.size, offset + length);
    if (end <= offset) return { length: 0, runs: [] };
    const first = Math.floor(offset / BS);
    const map = mapRangeNow(this.ctx, ino, first, Math.ceil(end / BS) - first);
    return map && runsOf(offset, end, map);
  }

  /**
   * Reads what `plan` says, one device read per run, into `into` (which must hold
   * `plan.length` bytes) or a new buffer; returns the bytes read.
   */
  async fetch(plan: ReadPlan, into?: Uint8Array): Promise<Buffer> {
    const out = zeroed(plan, into);
    await Promise.all(plan.runs.map((r) => this.dev.read(r.dev, out.subarray(r.at, r.at + r.len))));
    return out;
  }

  /**
   * The first `length` bytes of `plan` for `lender`, if they are one device run (holes aside)
   * that the device lends: into `into` or a new buffer, with zeros in the holes and the run left
   * to the lender (`lender.lent`). Undefined otherwise.
   */
  lend(plan: ReadPlan, length: number, lender: Lender, into?: Uint8Array): Buffer | undefined {
    const n = Math.min(length, plan.length);
    const first = plan.runs[0];
    if (!first || first.at >= n || (plan.runs[1]?.at ?? n) < n) return undefined;
    const len = Math.min(first.len, n - first.at);
    const range = this.dev.lend?.(first.dev, len, lender.lease);
    if (!range) return undefined;
    lender.lent = { ...range, at: first.at, length: len };
    return zeroed({ length: n, runs: [{ dev: first.dev, at: first.at, len }] }, into);
  }

  /** Reads up to `length` bytes at `offset`, stopping at the end of the file. */
  async read(ino: Inode, offset: number, length: number): Promise<Buffer> {
    return this.fetch(await this.plan(ino, offset, length));
  }

  /**
   * Writes `data` at `offset`, allocating blocks for holes, inside a metadata operation; grows
   * the size. The caller sets the times and writes the inode back. Every block is allocated
   * before the first byte is written; whole blocks go from `data` as it is, one device write per
   * run of contiguous blocks; a partial block is merged with what it holds (zeros if fresh).
   */
  async write(ino: Inode, offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    if (end > MAX_FILE_SIZE)
      throw new FsError("EFBIG", `a file cannot reach ${end} bytes (largest: ${MAX_FILE_SIZE})`);
    if (data.length === 0) return;
    this.ahead.invalidate(ino.ino);
    const first = Math.floor(offset / BS);
    const count = Math.ceil(end / BS) - first;
    const { blocks, fresh } = await ensureRange(this.ctx, ino, first, count);
    const writes: Array<{ dev: number; bytes: Uint8Array }> = [];
    let partials = 0;
    let run: { dev: number; lo: number; hi: number } | undefined;
    const endRun = () => {
      if (run) writes.push({ dev: run.dev, bytes: data.subarray(run.lo, run.hi) });
      run = undefined;
    };
    for (let i = 0; i < count; i++) {
      const f = first + i;
      const block = blocks[i]!;
      const lo = Math.max(offset, f * BS) - offset;
      const hi = Math.min(end, (f + 1) * BS) - offset;
      if (hi - lo < BS) {
        endRun();
        const whole = this.partial[partials++]!;
        if (fresh[i]) whole.fill(0);
        else await this.dev.read(block * BS, whole);
        whole.set(data.subarray(lo, hi), lo + offset - f * BS);
        writes.push({ dev: block * BS, bytes: whole });
        continue;
      }
      if (run && run.dev + (run.hi - run.lo) === block * BS && run.hi === lo) run.hi = hi;
      else {
        endRun();
        run = { dev: block * BS, lo, hi };
      }
    }
    endRun();
    for (const w of writes) await this.dev.write(w.dev, w.bytes);
    ino.size = Math.max(ino.size, end);
  }

  /** Sets the size, freeing blocks past it and zeroing the rest of the last block, inside an operation. */
  async truncate(ino: Inode, size: number): Promise<void> {
    const shrinks = size < ino.size;
    await this.resize(ino, size);
    if (shrinks) await this.free(ino, Math.ceil(size / BS));
  }

  /**
   * Sets the size; a shrink zeroes the rest of the new last block (in place, as file data) but
   * frees nothing: the blocks past the size are left to `free`, maybe over several operations.
   */
  async resize(ino: Inode, size: number): Promise<void> {
    if (size > MAX_FILE_SIZE)
      throw new FsError("EFBIG", `a file cannot reach ${size} bytes (largest: ${MAX_FILE_SIZE})`);
    this.ahead.invalidate(ino.ino);
    const tail = size % BS;
    if (size < ino.size && tail !== 0) {
      const block = await mapBlock(this.ctx, ino, Math.floor(size / BS));
      if (block !== 0) await this.dev.write(block * BS + tail, Buffer.alloc(BS - tail));
    }
    ino.size = size;
  }

  /**
   * Frees the file's blocks from file block `from` on, highest first, inside an operation;
   * stops early (returning false) when `mayFree` says no (see `truncateBlocks`).
   */
  free(ino: Inode, from: number, mayFree?: () => boolean): Promise<boolean> {
    this.ahead.invalidate(ino.ino);
    return truncateBlocks(this.ctx, ino, from, mayFree);
  }
}

/** `into` (or a new buffer) of `plan.length` bytes, zeros where `plan` has no run. */
function zeroed(plan: ReadPlan, into?: Uint8Array): Buffer {
  const out = into
    ? Buffer.from(into.buffer, into.byteOffset, plan.length)
    : Buffer.allocUnsafe(plan.length);
  let zeroFrom = 0;
  for (const r of plan.runs) {
    out.fill(0, zeroFrom, r.at);
    zeroFrom = r.at + r.len;
  }
  out.fill(0, zeroFrom, plan.length);
  return out;
}

/** The device runs of bytes [offset, end) of a file whose blocks from `offset`'s are `map`. */
function runsOf(offset: number, end: number, map: readonly number[]): ReadPlan {
  const runs: ReadPlan["runs"] = [];
  const first = Math.floor(offset / BS);
  for (let f = first; f * BS < end; f++) {
    const block = map[f - first]!;
    if (block === 0) continue; // a hole
    const lo = Math.max(offset, f * BS);
    const hi = Math.min(end, (f + 1) * BS);
    const devAt = block * BS + (lo - f * BS);
    const last = runs.at(-1);
    if (last && last.dev + last.len === devAt && last.at + last.len === lo - offset)
      last.len += hi - lo;
    else runs.push({ dev: devAt, at: lo - offset, len: hi - lo });
  }
  return { length: end - offset, runs };
}
