#!/usr/bin/env bash
# Checks that a build of scripts/fuse-c serves what the mount benchmark and its tools need, with
# real tools on a real mount: rsync -aHAX (hard links, xattrs, symlinks, a fifo, nanosecond
# times) in and back out compared with the source, tar out and in, find/stat, fio with
# verification, rm -rf. It mounts only under its own temporary directory and unmounts it at exit.
#
# Usage: scripts/fuse-c/check.sh SERVER [OPTIONS...], SERVER served in the foreground, e.g.
#   scripts/fuse-c/check.sh dist/fuse-c/memfs-ll3 -o writeback_cache,readdirplus=yes
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SERVER [OPTIONS...]" >&2; exit 2; }
tmp=$(mktemp -d /var/tmp/fuse-c-check.XXXXXX)
mnt=$tmp/mnt
src=$tmp/src
pid=
fail() { echo "check: FAILED: $*" >&2; exit 1; }
finish() {
  if grep -q " $mnt fuse" /proc/mounts; then fusermount -u "$mnt" || fusermount -uz "$mnt"; fi
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  fi
  rm -rf "$tmp"
}
trap finish EXIT

# The source: a slice of /usr/include and things rsync -aHAX must carry over.
mkdir -p "$mnt" "$src/tree" "$src/special"
cp -a /usr/include/linux "$src/tree/"
echo one >"$src/special/file"
ln "$src/special/file" "$src/special/hardlink"
ln -s file "$src/special/symlink"
ln -s /nowhere "$src/special/dangling"
mkfifo "$src/special/fifo"
setfattr -n user.colour -v blue "$src/special/file"
setfattr -n user.empty "$src/special/symlink" 2>/dev/null || true # not on symlinks on every fs
touch -h -d '2001-02-03 04:05:06.123456789 UTC' "$src/special/file" "$src/special/symlink"
touch -d '1960-01-01 00:00:00.5 UTC' "$src/special/fifo"
truncate -s 3M "$src/special/sparse"
chmod 4750 "$src/special/sparse"
touch -d '2010-10-10 10:10:10.000000001 UTC' "$src/special"

"$@" -f "$mnt" &
pid=$!
for _ in $(seq 100); do grep -q " $mnt fuse" /proc/mounts && break; sleep 0.1; done
grep -q " $mnt fuse" /proc/mounts || fail "not mounted"

# Every entry with its type, mode, links, size (not a directory's), times, owner, target.
listing() {
  (cd "$1" && find . -printf '%p %y %m %n %s %T@ %U %G %l\n' | awk '$2 == "d" { $5 = "-" } 1' | sort)
}
# Every file's xattrs on one line, in name order.
xattrs() {
  (cd "$1" && getfattr -R -h -d -m - . 2>/dev/null | awk -v RS= '{ gsub(/\n/, " | "); print }' | sort)
}
# Fails with WHAT and the first differences unless the two texts are the same.
same() {
  [ "$1" = "$2" ] && return 0
  diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") | head -20 >&2
  fail "$3"
}

# Times of the same second are equal to rsync unless --modify-window=-1.
rsync -aHAX --modify-window=-1 "$src/" "$mnt/copy/"
same "$(listing "$src")" "$(listing "$mnt/copy")" "rsync in: names, types, modes, links or times"
same "$(xattrs "$src")" "$(xattrs "$mnt/copy")" "rsync in: xattrs"
[ "$(stat -c %i "$mnt/copy/special/file")" = "$(stat -c %i "$mnt/copy/special/hardlink")" ] ||
  fail "hard link: two inode numbers"
[ -z "$(rsync -aHAX -n -i --modify-window=-1 "$src/" "$mnt/copy/")" ] || fail "rsync sees changes"
rsync -aHAX --modify-window=-1 "$mnt/copy/" "$tmp/back/"
same "$(listing "$src")" "$(listing "$tmp/back")" "rsync out: differs from the source"
diff -r "$src/tree" "$tmp/back/tree" >/dev/null || fail "rsync out: contents differ"

tar -C "$mnt/copy" -cf "$tmp/copy.tar" .
mkdir "$mnt/untar"
tar -C "$mnt/untar" -xf "$tmp/copy.tar"
diff -r "$src/tree" "$mnt/untar/tree" >/dev/null || fail "tar: contents differ"
[ "$(find "$mnt/untar" | wc -l)" = "$(find "$src" | wc -l)" ] || fail "tar: files missing"
find "$mnt" -print0 | xargs -0 stat >/dev/null || fail "find | xargs stat"

ln "$mnt/copy/special/file" "$mnt/copy/special/third"
[ "$(stat -c %h "$mnt/copy/special/file")" = 3 ] || fail "link count not 3 after link"
mv "$mnt/copy/special/third" "$mnt/untar/moved"
rm "$mnt/copy/special/hardlink"
[ "$(stat -c %h "$mnt/untar/moved")" = 2 ] || fail "link count not 2 after unlink"

fio --name=check --filename="$mnt/fio.dat" --size=16M --bs=4k --rw=randwrite --verify=crc32c \
  --ioengine=psync --end_fsync=1 --verify_state_save=0 --output=/dev/null || fail "fio"
exec 3<"$mnt/fio.dat"
rm "$mnt/fio.dat"
[ "$(head -c 4096 <&3 | wc -c)" = 4096 ] || fail "an unlinked open file is not readable"
exec 3<&-

rm -rf "${mnt:?}"/*
[ -z "$(ls -A "$mnt")" ] || fail "rm -rf left $(ls -A "$mnt")"
echo "check: ok: $*"
