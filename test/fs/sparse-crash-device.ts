// A sparse BlockDevice in memory that can lose power: only the blocks written take memory (a
// 4 GiB volume costs what is on it), and what survives a power cut is what a flush made durable,
// plus, in "random" mode, a random part of the rest torn at 512-byte sectors. It asserts nothing.

import { checkRange } from "../../src/cow/block-device.js";
import type { BlockDevice } from "../../src/cow/index.js";
import { PowerCut } from "../helpers/crash-host.js";

const BS = 4096;
const SECTOR = 512;

type Blocks = Map<number, Buffer>;

function apply(blocks: Blocks, offset: number, data: Uint8Array): void {
  for (let done = 0; done < data.length; ) {
    const at = offset + done;
    const b = Math.floor(at / BS);
    const into = at % BS;
    const n = Math.min(BS - into, data.length - done);
    let img = blocks.get(b);
    if (!img) {
      img = Buffer.alloc(BS);
      blocks.set(b, img);
    }
    img.set(data.subarray(done, done + n), into);
    done += n;
  }
}

const clone = (blocks: Blocks): Blocks =>
  new Map([...blocks].map(([b, img]) => [b, Buffer.from(img)]));

export class SparseCrashDevice implements BlockDevice {
  readonly blockSize = BS;
  readonly readOnly = false;
  private readonly live: Blocks;
  private readonly durable: Blocks;
  private pending: Array<{ offset: number; data: Buffer }> = [];
  /** Writes and flushes so far. */
  ops = 0;
  private cutAt: number | undefined;
  private stopped = false;

  constructor(
    readonly size: number,
    durable: Blocks = new Map(),
  ) {
    this.durable = durable;
    this.live = clone(durable);
  }

  /** Cuts the power at the `after`th write or flush from now (that call and every later one throw). */
  arm(after: number): void {
    this.cutAt = this.ops + after;
  }

  /** The device as it comes back after a power cut (this one is dead from now on). */
  reboot(mode: "drop" | "random" = "drop", rand: () => number = Math.random): SparseCrashDevice {
    this.stopped = true;
    const blocks = clone(this.durable);
    if (mode === "random") {
      for (const { offset, data } of this.pending) {
        if (rand() < 0.5) continue;
        for (let s = 0; s < data.length; s += SECTOR)
          if (rand() < 0.7) apply(blocks, offset + s, data.subarray(s, s + SECTOR));
      }
    }
    return new SparseCrashDevice(this.size, blocks);
  }

  /** A new device holding what this one holds durably (this one lives on). */
  copy(): SparseCrashDevice {
    return new SparseCrashDevice(this.size, clone(this.durable));
  }

  /** Blocks that hold something: what the device costs in memory. */
  get blocksStored(): number {
    return this.live.size;
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    this.alive();
    checkRange(this.size, offset, target.length);
    for (let done = 0; done < target.length; ) {
      const at = offset + done;
      const into = at % BS;
      const n = Math.min(BS - into, target.length - done);
      const img = this.live.get(Math.floor(at / BS));
      if (img) target.set(img.subarray(into, into + n), done);
      else target.fill(0, done, done + n);
      done += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this.size, offset, data.length);
    this.tick();
    apply(this.live, offset, data);
    this.pending.push({ offset, data: Buffer.from(data) });
  }

  async flush(): Promise<void> {
    this.tick();
    for (const { offset, data } of this.pending) apply(this.durable, offset, data);
    this.pending = [];
  }

  async close(): Promise<void> {}

  private alive(): void {
    if (this.stopped) throw new PowerCut();
  }

  private tick(): void {
    this.alive();
    this.ops++;
    if (this.cutAt !== undefined && this.ops > this.cutAt) {
      this.stopped = true;
      throw new PowerCut();
    }
  }
}
