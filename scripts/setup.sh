#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: system packages, npm packages, the patched FUSE
# binding, build.
# Every step checks first and does nothing when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
# shellcheck source=scripts/debs.sh
. scripts/debs.sh

# 1. Debian packages: installed only when missing. The compiler and python3 (for node-gyp)
#    rebuild the FUSE binding; rsync, attr, fio, bindfs and sqlite3 are tools for tests and
#    benchmarks; samba, samba-vfs-modules (vfs_shadow_copy2, only a Recommends of samba) and
#    smbclient serve a mount's snapshots as Windows "Previous Versions" in a test
#    (docs/samba.md).
debs=(libfuse2 fuse3 libfuse-dev build-essential pkg-config python3 rsync attr fio bindfs sqlite3
  samba samba-vfs-modules smbclient)
install_debs -- "${debs[@]}"
# A private single-node Ceph (monitor, one in-memory OSD, RADOS Gateway) that tests and benchmarks
# start and stop themselves as the S3 object storage snapshots are replicated to
# (docs/object-storage-testing.md); without their Recommends, which none of it needs.
install_debs --no-install-recommends -- ceph-mon ceph-osd radosgw ceph-common

# 2. npm packages: `npm ci` when node_modules is missing or older than the lock file or the
#    patches (its postinstall, patch-package, applies patches/ to the fresh node_modules).
stamp=node_modules/.shadowfs-lock-hash
want=$(cat package-lock.json patches/*.patch | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi

# 3. fuse-native, patched (docs/fuse-native.md), rebuilt from source so that node-gyp-build loads
#    build/Release/fuse.node instead of the unpatched prebuild: when the binary is missing or the
#    patch changed since it was built.
patch=patches/fuse-native+2.2.6.patch
binding=node_modules/fuse-native
stamp=node_modules/.shadowfs-fuse-native-hash
want=$(sha256sum "$patch" | cut -d' ' -f1)
if [ ! -f "$binding/build/Release/fuse.node" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -f "$stamp"
  if ! out=$(npx --no-install patch-package --error-on-fail 2>&1); then
    printf '%s\n' "$out" >&2
    say "$patch does not apply to $binding (see above); 'rm -rf node_modules' and run" \
      "setup again to start from a fresh copy" >&2
    exit 1
  fi
  # node-gyp as bundled with npm; Node's headers from this machine (there may be no network).
  gyp=$(npm config get node-gyp 2>/dev/null || true)
  [ -f "$gyp" ] || gyp=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/node_modules/node-gyp/bin/node-gyp.js
  if [ ! -f "$gyp" ]; then
    say "node-gyp not found (npm config get node-gyp; npm's own node_modules)" >&2
    exit 1
  fi
  nodedir=
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  for d in "${npm_config_nodedir:-}" "$node_prefix" /usr /usr/local \
    "$HOME/.cache/node-gyp/$(node -p process.versions.node)"; do
    if [ -n "$d" ] && [ -f "$d/include/node/node_api.h" ] && [ -f "$d/include/node/common.gypi" ]; then
      nodedir=$d
      break
    fi
  done
  if [ -z "$nodedir" ]; then
    say "no Node.js headers (include/node/node_api.h) under $node_prefix, /usr, /usr/local or" \
      "~/.cache/node-gyp: install the headers of Node $(node -v)" >&2
    exit 1
  fi
  say "rebuilding fuse-native from source (headers in $nodedir)"
  log=node_modules/.shadowfs-fuse-native-build.log
  if ! (cd "$binding" && node "$gyp" rebuild --nodedir="$nodedir") >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    say "building $binding failed; the whole log is in $log" >&2
    exit 1
  fi
  if ! node -e '
    const dir = require("path").resolve(process.argv[1]);
    const file = require(require.resolve("node-gyp-build", { paths: [dir] })).path(dir);
    if (file !== dir + "/build/Release/fuse.node") throw new Error("it loads " + file);
    require(dir);
  ' "$binding"; then
    say "the rebuilt $binding/build/Release/fuse.node does not load, or is not the binary" \
      "node-gyp-build picks (see above)" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi

# 4. Build the TypeScript sources into dist/src/, and the commands into dist/bin/: the command's
#    own modules bundled into a few files, as Node starts a command from a few files faster than
#    from its forty modules (package.json's "build").
npm run --silent build
