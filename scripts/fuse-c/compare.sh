#!/usr/bin/env bash
# The measurement behind docs/decisions/fuse-binding.md: one run of the mount benchmark on a host
# directory, bindfs, the binding's ceiling (scripts/ceiling-fs.ts) and the C filesystems of
# scripts/fuse-c side by side (libfuse 2 high-level; libfuse 3 low-level without and with
# writeback_cache, 1 MiB requests, readdirplus, and all three), the C ones with the same
# kernel-side options.
#
# Usage: scripts/fuse-c/compare.sh OUT [bench-mount options...], e.g.
#   scripts/fuse-c/compare.sh /var/tmp/run1 --size 128M --seconds 3 --files 2000 --passes 1
# writes OUT.json (the benchmark's JSON line) and OUT.err (its messages, every pass included).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [bench-mount options...]" >&2; exit 2; }
out=$1
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bash "$root/scripts/fuse-c/build.sh" >&2
bin=$root/dist/fuse-c
# As shadowfs: the kernel checks permissions, 1 MiB read-ahead; entries and attributes kept 1 s.
same=default_permissions,entry_timeout=1,attr_timeout=1,read_ahead_kb=1024
# As shadowfs's libfuse 2 mount: its inode numbers, 128 KiB writes.
hl2=$same,use_ino,big_writes,max_write=131072
cd "$root"
npx tsx scripts/bench-mount.ts --json \
  --only host,bindfs,ceiling,hl2,ll3,ll3-wb,ll3-1m,ll3-rdp,ll3-all "$@" \
  --extra "hl2=$bin/memfs-hl2 -f -o $hl2 {mnt}" \
  --extra "ll3=$bin/memfs-ll3 -f -o $same,max_write=131072 {mnt}" \
  --extra "ll3-wb=$bin/memfs-ll3 -f -o $same,max_write=131072,writeback_cache {mnt}" \
  --extra "ll3-1m=$bin/memfs-ll3 -f -o $same,max_write=1048576 {mnt}" \
  --extra "ll3-rdp=$bin/memfs-ll3 -f -o $same,max_write=131072,readdirplus=auto {mnt}" \
  --extra "ll3-all=$bin/memfs-ll3 -f -o $same,max_write=1048576,writeback_cache,readdirplus=auto {mnt}" \
  >"$out.json" 2>"$out.err"
