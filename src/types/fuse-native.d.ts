// The part of fuse-native's API that shadowfs uses (the package ships no types).

declare module "fuse-native" {
  interface FuseOptions {
    timeout?: number | false;
    force?: boolean;
    mkdir?: boolean;
    debug?: boolean;
    fsname?: string;
    subtype?: string;
    [option: string]: unknown;
  }

  class Fuse {
    constructor(mnt: string, ops: Record<string, unknown>, opts?: FuseOptions);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    protected _fuseOptions(): string;
    /** Queues dropping what the kernel keeps of inode `ino`: attributes and cached data. */
    invalidateInode(ino: number): void;
    /** Queues dropping name `name` in directory `dirIno` (also a name known as absent). */
    invalidateEntry(dirIno: number, name: string | Uint8Array): void;
    /** Queues dropping every inode and name the kernel holds (not names known as absent). */
    invalidateAll(): void;
    /** Calls `cb` once everything queued before has been sent to the kernel. */
    invalidated(cb: () => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    /**
     * The caller of the request being dispatched (a fresh frozen object; groups are the
     * supplementary groups, [] for uid 0). Valid synchronously in an op, before it awaits
     * anything; elsewhere, the caller of the request dispatched last (all zeros before any).
     */
    static caller(): {
      readonly uid: number;
      readonly gid: number;
      readonly pid: number;
      readonly groups: readonly number[];
    };
  }

  export default Fuse;
}
