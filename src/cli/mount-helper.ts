#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// `mount.fuse.shadowfs STORE MNT [-o OPTIONS]`: what mount(8) runs for an /etc/fstab line
// `STORE MNT fuse.shadowfs OPTIONS 0 0`. Drops the options that only mount(8) reads and hands
// the rest to `shadowfs mount`. Its first line is that of main.ts (see node-env.ts).

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Options for mount(8) and fstab only, never for the filesystem. */
const FSTAB_ONLY =
  /^(defaults|auto|noauto|user|users|nouser|owner|group|nofail|_netdev|rw|comment=.*|x-.*)$/;

const args = process.argv.slice(2);
const positional: string[] = [];
const options: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === "-o") options.push(...(args[++i] ?? "").split(","));
  else if (a.startsWith("-o")) options.push(...a.slice(2).split(","));
  else if (/^-[sfnv]+$/.test(a))
    continue; // sloppy, fake, no-mtab, verbose: nothing to do here
  else positional.push(a);
}
if (positional.length !== 2) {
  process.stderr.write("usage: mount.fuse.shadowfs STORE MOUNTPOINT [-o OPTIONS]\n");
  process.exit(1);
}
const kept = options.filter((o) => o !== "" && !FSTAB_ONLY.test(o));
const cli = join(dirname(fileURLToPath(import.meta.url)), "main.js");
const mount = [
  cli,
  "mount",
  positional[0]!,
  positional[1]!,
  ...(kept.length ? ["-o", kept.join(",")] : []),
];
const r = spawnSync(process.execPath, mount, { stdio: "inherit" });
process.exit(r.status ?? 1);
