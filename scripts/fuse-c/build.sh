#!/usr/bin/env bash
# Builds the minimal in-memory FUSE filesystems written in C into dist/fuse-c/ (ignored by git):
# memfs-hl2 on libfuse 2's high-level API and memfs-ll3 on libfuse 3's low-level API, both on
# memfs.c (docs/decisions/fuse-binding.md measures them). Installs the Debian packages the
# build needs only when one is missing, and never removes a package to do so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/../.." && pwd)/dist/fuse-c

say() { printf 'fuse-c: %s\n' "$*"; }
# shellcheck source=scripts/debs.sh
. "$here/../debs.sh"

debs=(libfuse-dev libfuse3-dev build-essential pkg-config)
# --no-remove: libfuse3-dev must not displace libfuse2, libfuse-dev or fuse3, which shadowfs
# needs; apt-get stops instead.
install_debs --no-remove -- "${debs[@]}"

mkdir -p "$out"
cflags=(-O2 -g -Wall -Wextra -std=gnu11 -pthread)
common=("$here/memfs.c" "$here/readahead.c")
# shellcheck disable=SC2046 # pkg-config's flags are words
cc "${cflags[@]}" $(pkg-config --cflags fuse) -o "$out/memfs-hl2" "$here/hl2.c" "${common[@]}" \
  $(pkg-config --libs fuse)
# shellcheck disable=SC2046
cc "${cflags[@]}" $(pkg-config --cflags fuse3) -o "$out/memfs-ll3" "$here/ll3.c" "${common[@]}" \
  $(pkg-config --libs fuse3)
say "built $out/memfs-hl2 and $out/memfs-ll3"
