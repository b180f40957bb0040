// A FUSE mount through fuse-native: mount options checked before libfuse sees them (an option
// it rejects would leave a dead mount), and the ones the binding has no name for appended.

import { writeFile } from "node:fs/promises";
import { getPriority, setPriority } from "node:os";
import Fuse from "fuse-native";
import type { Cred } from "../fs/cred.js";
import { mountTable } from "./mount-table.js";

/** Options always set: the filesystem's own inode numbers, 128 KiB writes, kernel checks. */
const ALWAYS = ["use_ino", "big_writes", "max_write=131072", "default_permissions"];

class OptionedFuse extends Fuse {
  constructor(
    mnt: string,
    ops: Record<string, unknown>,
    private readonly extra: string[],
    fsname: string,
  ) {
    super(mnt, ops, { timeout: false, fsname, subtype: "shadowfs" });
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = this.extra.join(",");
    return base ? `${base},${extra}` : `-o${extra}`;
  }
}

/**
 * Read-ahead of a mount, in KiB. The kernel's default for FUSE, 128 KiB, keeps one 128 KiB read
 * request in flight; 1 MiB keeps several, and a sequential `dd` of a file read 1.1 GB/s instead
 * of 0.64-0.78 (4 MiB read no faster).
 */
export const READ_AHEAD_KB = 1024;

/** Sets the mount's read-ahead; without the right to (not root), it keeps the kernel's. */
async function setReadAhead(mnt: string): Promise<void> {
  const dev = (await mountTable()).filter((m) => m.mountpoint === mnt).at(-1)?.device;
  if (dev)
    await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, `${READ_AHEAD_KB}\n`).catch(() => {});
}

/**
 * How far the thread that answers every request (the JS thread) runs above the daemon's own nice
 * value, where the daemon may raise it (root; else it stays as it is). Every request waits for
 * that one thread, and on 2 CPUs it shares them with the callers and the binding's threads:
 * raised, it is running when a request comes. As the kernel's filesystem threads run above the
 * tasks they serve (btrfs's workers at nice -20). On 2 CPUs, each mount fresh, three rounds at
 * 0 and at -10 in turn, 10,000 files 16 at a time: creates 1.73-1.89 s -> 1.24-1.39, stats
 * 0.41-0.51 -> 0.26-0.29, deletes 1.34-1.40 -> 0.78-0.88; rsync -a of 2,000 files in 1.86-1.94 s
 * -> 1.76-1.93. Not more: the thread polls for requests between them, and at -15 or -20 that
 * took the CPUs from the callers when three other processes kept them busy (rsync in 3.0-5.2 s
 * at 0, 2.8-5.1 at -10, 6.7-10.0 at -15, 8.1-9.0 at -20). The price, where the daemon and its
 * callers share one CPU (taskset): rsync in 1.89-2.09 s at 0, 2.05-2.27 at -10.
 */
export const REQUEST_THREAD_BOOST = 10;
let boosted = false;

/** Raises this thread's priority by REQUEST_THREAD_BOOST, once. */
export function boostRequestThread(): void {
  if (boosted) return;
  boosted = true;
  try {
    setPriority(Math.max(-20, getPriority() - REQUEST_THREAD_BOOST));
  } catch {
    // Not allowed (no CAP_SYS_NICE): the thread keeps the daemon's priority.
  }
}

/**
 * Who made the FUSE request being served: call it synchronously in an op, before the op awaits
 * anything (the binding sets it just before calling the op; later it may be another request's).
 * The value is the caller's own and never changes.
 */
export function requestCaller(): Cred {
  return Fuse.caller();
}

export interface MountSpec {
  mountpoint: string;
  /** What /proc/mounts shows as the source: the store's path. */
  source: string;
  ops: Record<string, unknown>;
  /** Checked options (`parseMountOptions`). */
  options: string[];
}

export class FuseMount {
  private constructor(
    private readonly fuse: Fuse,
    readonly mountpoint: string,
  ) {}

  /** Mounts; resolves once the kernel has the mount. */
  static async mount(spec: MountSpec): Promise<FuseMount> {
    const options = [...new Set([...ALWAYS, ...spec.options])];
    // libfuse splits options at commas: one in the source must be escaped.
    const fsname = spec.source.replace(/\\/g, "\\\\").replace(/,/g, "\\,");
    const fuse = new OptionedFuse(spec.mountpoint, spec.ops, options, fsname);
    await new Promise<void>((resolve, reject) =>
      fuse.mount((err) => (err ? reject(err) : resolve())),
    );
    await setReadAhead(fuse.mnt);
    // After the mount: the binding's threads, started by it, keep the daemon's priority.
    boostRequestThread();
    return new FuseMount(fuse, fuse.mnt);
  }

  // What shadowfs changes behind the kernel's back is dropped from what the kernel keeps. Each
  // call only queues: the binding sends them from a thread of its own (the kernel takes locks
  // that requests waiting for this thread hold), so they never block this thread.

  /** The kernel drops inode `ino`'s attributes and cached data, in every node it has for it. */
  invalidateInode(ino: number): void {
    this.fuse.invalidateInode(ino);
  }

  /** The kernel drops name `name` of directory `dir`, present or known as absent. */
  invalidateEntry(dir: number, name: string | Uint8Array): void {
    this.fuse.invalidateEntry(dir, name);
  }

  /** The kernel drops every inode and name it holds (but names it knows as absent). */
  invalidateAll(): void {
    this.fuse.invalidateAll();
  }

  /** Resolves once every invalidation queued before has reached the kernel. */
  invalidated(): Promise<void> {
    return new Promise((resolve) => this.fuse.invalidated(resolve));
  }

  unmount(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fuse.unmount((err) => (err ? reject(err) : resolve())),
    );
  }
}
