// The `-o` mount options shadowfs passes on to libfuse, checked first: an option libfuse
// rejects would leave a dead mount behind.

import { einval } from "../errors.js";

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
