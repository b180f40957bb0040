// A FUSE mount through fuse-native: mount options checked before libfuse sees them (an option
// it rejects would leave a dead mount), and the ones the binding has no name for appended.

import Fuse from "fuse-native";
import { einval } from "../errors.js";

/** Options always set: the filesystem's own inode numbers, 128 KiB writes, kernel checks. */
const ALWAYS = ["use_ino", "big_writes", "max_write=131072", "default_permissions"];

/** `-o` options a user may give (plus generic mount flags), and those with a value. */
const FLAGS = new Set([
  "allow_other",
  "allow_root",
  "auto_unmount",
  "default_permissions",
  "kernel_cache",
  "auto_cache",
  "ro",
  "rw",
  "nosuid",
  "suid",
  "nodev",
  "dev",
  "noexec",
  "exec",
  "noatime",
  "atime",
  "sync",
  "async",
  "dirsync",
]);
const VALUED = new Set(["entry_timeout", "attr_timeout", "negative_timeout", "max_read", "umask"]);

/** Splits and checks a `-o` list; EINVAL names the first option libfuse would not take. */
export function parseMountOptions(list: string | undefined): string[] {
  const out: string[] = [];
  for (const opt of (list ?? "").split(",").filter((o) => o !== "")) {
    const [name, value] = opt.split("=", 2) as [string, string | undefined];
    const ok =
      value === undefined ? FLAGS.has(name) : VALUED.has(name) && /^[0-9]+(\.[0-9]+)?$/.test(value);
    if (!ok) throw einval(`unknown or malformed mount option "${opt}"`);
    out.push(opt);
  }
  return out;
}

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
    return new FuseMount(fuse, fuse.mnt);
  }

  unmount(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fuse.unmount((err) => (err ? reject(err) : resolve())),
    );
  }
}
