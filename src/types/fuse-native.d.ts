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
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }

  export default Fuse;
}
