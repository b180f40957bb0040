// The in-memory filesystem both C frontends serve (hl2.c: libfuse 2 path API, ll3.c: libfuse 3
// inode API): nodes, names, data, xattrs. It never talks to FUSE and never touches the disk.
//
// Locking: one mutex, mfs_lock, guards everything here; every mfs_* function but mfs_init
// expects the caller to hold it. Errors are negative errno values.

#ifndef MEMFS_H
#define MEMFS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

typedef struct mnode mnode;
typedef struct mdirent mdirent;

// One name in a directory; entries of a directory are listed in the order they were made, each
// with a cookie (readdir offset) that never changes while the entry exists.
struct mdirent {
  mdirent *hash_next;  // chain of the name hash table
  mdirent *prev, *next;  // the directory's list
  mnode *dir;
  mnode *node;
  uint64_t cookie;
  char name[];
};

typedef struct mxattr {
  struct mxattr *next;
  size_t size;
  char *name;
  char value[];
} mxattr;

struct mnode {
  ino_t ino;
  mode_t mode;
  nlink_t nlink;
  uid_t uid;
  gid_t gid;
  dev_t rdev;
  off_t size;
  struct timespec atime, mtime, ctime;
  char *data;  // file contents, or a symlink's target
  size_t cap;
  mdirent *first, *last;  // a directory's entries
  uint64_t next_cookie;
  mnode *parent;  // a directory's parent
  uint64_t nlookup;  // references the kernel holds (libfuse 3 low-level API only)
  unsigned open;  // open file handles
  mxattr *xattrs;
};

extern pthread_mutex_t mfs_lock;
extern mnode *mfs_root;

void mfs_init(void);
void mfs_stat(const mnode *n, struct stat *st);
void mfs_statfs(struct statvfs *sv);
mnode *mfs_lookup(const mnode *dir, const char *name);
// The entry after `cookie` (0: the first).
mdirent *mfs_dir_after(const mnode *dir, uint64_t cookie);
int mfs_make(mnode *dir, const char *name, mode_t mode, dev_t rdev, const char *target, uid_t uid,
             gid_t gid, mnode **out);
int mfs_link(mnode *n, mnode *dir, const char *name);
int mfs_remove(mnode *dir, const char *name, int rmdir);
int mfs_rename(mnode *odir, const char *oname, mnode *ndir, const char *nname, unsigned flags);
int mfs_truncate(mnode *n, off_t size);
ssize_t mfs_write(mnode *n, const char *buf, size_t len, off_t off);
// Bytes readable at `off` (at most `len`), starting at n->data + off.
size_t mfs_readable(const mnode *n, size_t len, off_t off);
void mfs_touch(mnode *n, int what);  // MFS_ATIME | MFS_MTIME | MFS_CTIME: set to now
int mfs_setxattr(mnode *n, const char *name, const char *value, size_t size, int flags);
ssize_t mfs_getxattr(const mnode *n, const char *name, char *buf, size_t size);
ssize_t mfs_listxattr(const mnode *n, char *buf, size_t size);
int mfs_removexattr(mnode *n, const char *name);
// Frees `n` once no name, open handle or kernel reference is left.
void mfs_maybe_free(mnode *n);

#define MFS_ATIME 1
#define MFS_MTIME 2
#define MFS_CTIME 4

#endif
