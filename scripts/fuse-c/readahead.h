// Setting a FUSE mount's read-ahead from inside its server, as shadowfs does for its own mounts
// (src/mount/fuse.ts). It never touches the mount itself: a server that did would wait on itself.

#ifndef READAHEAD_H
#define READAHEAD_H

// Sets /sys/class/bdi/MAJ:MIN/read_ahead_kb of the mount at `mountpoint` (an absolute path),
// found in /proc/self/mountinfo, from a thread of its own, once the kernel has taken the reply to
// FUSE_INIT: the kernel then lowers the read-ahead to the reply's max_readahead, at most the
// 128 KiB it offered, so a value set from the init callback does not last. Call it from init.
// Says on stderr when it cannot.
void set_read_ahead(const char *mountpoint, unsigned kb);

#endif
