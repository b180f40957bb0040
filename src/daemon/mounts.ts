// The kernel's mount table, read from /proc/self/mountinfo.

import { readFile } from "node:fs/promises";

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

const unescapeOctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

export async function mountTable(): Promise<MountEntry[]> {
  const out: MountEntry[] = [];
  for (const line of (await readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
    const [left, right] = line.split(" - ");
    const [fstype, source] = right?.split(" ") ?? [];
    const mountpoint = left?.split(" ")[4];
    if (mountpoint && fstype && source !== undefined)
      out.push({ mountpoint: unescapeOctal(mountpoint), fstype, source: unescapeOctal(source) });
  }
  return out;
}

export async function isMountpoint(path: string): Promise<boolean> {
  return (await mountTable()).some((m) => m.mountpoint === path);
}

export interface ShadowfsMount {
  mountpoint: string;
  /** The store the mount serves. */
  store: string;
  /** The exposed snapshot's @GMT name, for a snapshot mount. */
  snapshot: string | undefined;
}

/** The shadowfs mounts: their source is the store (`STORE@@GMT-…` for an exposed snapshot). */
export async function shadowfsMounts(): Promise<ShadowfsMount[]> {
  return (await mountTable())
    .filter((m) => m.fstype === "fuse.shadowfs")
    .map((m) => {
      const src = m.source.replace(/\\,/g, ",").replace(/\\\\/g, "\\");
      const at = src.lastIndexOf("@@GMT-");
      return {
        mountpoint: m.mountpoint,
        store: at >= 0 ? src.slice(0, at) : src,
        snapshot: at >= 0 ? src.slice(at + 1) : undefined,
      };
    });
}
