// The kernel's mount table, read from /proc/self/mountinfo.

import { readFile } from "node:fs/promises";

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
  /** The mount's device number, "major:minor" (its backing device info is /sys/class/bdi/…). */
  device: string;
}

const unescapeOctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

export async function mountTable(): Promise<MountEntry[]> {
  const out: MountEntry[] = [];
  for (const line of (await readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
    const [left, right] = line.split(" - ");
    const [fstype, source] = right?.split(" ") ?? [];
    const fields = left?.split(" ") ?? [];
    const [device, mountpoint] = [fields[2], fields[4]];
    if (device && mountpoint && fstype && source !== undefined)
      out.push({
        mountpoint: unescapeOctal(mountpoint),
        fstype,
        source: unescapeOctal(source),
        device,
      });
  }
  return out;
}
