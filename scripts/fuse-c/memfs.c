// The in-memory filesystem shared by the C frontends: a name hash table over all directories,
// each directory's entries in creation order, file data in one growing buffer per file.
// It never talks to FUSE and never takes mfs_lock itself (its callers hold it).

#include "memfs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t mfs_lock = PTHREAD_MUTEX_INITIALIZER;
mnode *mfs_root;

static ino_t next_ino = 1;

// Every directory entry, by (directory, name).
static mdirent **buckets;
static size_t nbuckets;
static size_t nentries;

static size_t hash(const mnode *dir, const char *name) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t) (uintptr_t) dir;
  for (const unsigned char *p = (const unsigned char *) name; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return (size_t) (h ^ (h >> 29)) & (nbuckets - 1);
}

static void rehash(void) {
  size_t old = nbuckets;
  mdirent **was = buckets;
  nbuckets = old ? old * 2 : 1024;
  buckets = calloc(nbuckets, sizeof(*buckets));
  for (size_t i = 0; i < old; i++) {
    for (mdirent *e = was[i], *next; e; e = next) {
      next = e->hash_next;
      size_t h = hash(e->dir, e->name);
      e->hash_next = buckets[h];
      buckets[h] = e;
    }
  }
  free(was);
}

static mdirent *find(const mnode *dir, const char *name) {
  for (mdirent *e = buckets[hash(dir, name)]; e; e = e->hash_next)
    if (e->dir == dir && strcmp(e->name, name) == 0) return e;
  return NULL;
}

static void now(struct timespec *ts) { clock_gettime(CLOCK_REALTIME, ts); }

void mfs_touch(mnode *n, int what) {
  struct timespec t;
  now(&t);
  if (what & MFS_ATIME) n->atime = t;
  if (what & MFS_MTIME) n->mtime = t;
  if (what & MFS_CTIME) n->ctime = t;
}

static void add_entry(mnode *dir, const char *name, mnode *n) {
  if (nentries + 1 > nbuckets) rehash();
  mdirent *e = malloc(sizeof(*e) + strlen(name) + 1);
  strcpy(e->name, name);
  e->dir = dir;
  e->node = n;
  e->cookie = dir->next_cookie++;
  e->next = NULL;
  e->prev = dir->last;
  if (dir->last) dir->last->next = e;
  else dir->first = e;
  dir->last = e;
  size_t h = hash(dir, name);
  e->hash_next = buckets[h];
  buckets[h] = e;
  nentries++;
  mfs_touch(dir, MFS_MTIME | MFS_CTIME);
}

// Removes the entry and drops the link it held (the caller frees the node if that was the last).
static void drop_entry(mdirent *e) {
  mnode *dir = e->dir;
  mdirent **p = &buckets[hash(dir, e->name)];
  while (*p != e) p = &(*p)->hash_next;
  *p = e->hash_next;
  if (e->prev) e->prev->next = e->next;
  else dir->first = e->next;
  if (e->next) e->next->prev = e->prev;
  else dir->last = e->prev;
  nentries--;
  mnode *n = e->node;
  if (S_ISDIR(n->mode)) {
    n->nlink = 0;
    dir->nlink--;
  } else {
    n->nlink--;
  }
  mfs_touch(n, MFS_CTIME);
  mfs_touch(dir, MFS_MTIME | MFS_CTIME);
  free(e);
}

static mnode *new_node(mode_t mode, uid_t uid, gid_t gid) {
  mnode *n = calloc(1, sizeof(*n));
  n->ino = next_ino++;
  n->mode = mode;
  n->nlink = S_ISDIR(mode) ? 2 : 1;
  n->uid = uid;
  n->gid = gid;
  n->next_cookie = 3;  // 1 and 2 are "." and ".."
  mfs_touch(n, MFS_ATIME | MFS_MTIME | MFS_CTIME);
  return n;
}

void mfs_init(void) {
  rehash();
  mfs_root = new_node(S_IFDIR | 0755, getuid(), getgid());
  mfs_root->parent = mfs_root;
  mfs_root->nlookup = 1;  // the kernel's root is never forgotten
}

void mfs_stat(const mnode *n, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = n->ino;
  st->st_mode = n->mode;
  st->st_nlink = n->nlink;
  st->st_uid = n->uid;
  st->st_gid = n->gid;
  st->st_rdev = n->rdev;
  st->st_size = n->size;
  st->st_blksize = 4096;
  st->st_blocks = (n->size + 511) / 512;
  st->st_atim = n->atime;
  st->st_mtim = n->mtime;
  st->st_ctim = n->ctime;
}

void mfs_statfs(struct statvfs *sv) {
  memset(sv, 0, sizeof(*sv));
  sv->f_bsize = sv->f_frsize = 4096;
  sv->f_blocks = sv->f_bfree = sv->f_bavail = 16ULL << 20;  // 64 GiB
  sv->f_files = sv->f_ffree = sv->f_favail = 1ULL << 30;
  sv->f_namemax = 255;
}

mnode *mfs_lookup(const mnode *dir, const char *name) {
  mdirent *e = find(dir, name);
  return e ? e->node : NULL;
}

mdirent *mfs_dir_after(const mnode *dir, uint64_t cookie) {
  mdirent *e = dir->first;
  while (e && e->cookie <= cookie) e = e->next;
  return e;
}

static int check_name(const mnode *dir, const char *name) {
  if (!S_ISDIR(dir->mode) || dir->nlink == 0) return -ENOENT;
  if (strlen(name) > 255) return -ENAMETOOLONG;
  if (find(dir, name)) return -EEXIST;
  return 0;
}

int mfs_make(mnode *dir, const char *name, mode_t mode, dev_t rdev, const char *target, uid_t uid,
             gid_t gid, mnode **out) {
  int err = check_name(dir, name);
  if (err) return err;
  mnode *n = new_node(mode, uid, gid);
  n->rdev = rdev;
  if (S_ISLNK(mode)) {
    n->data = strdup(target);
    n->size = n->cap = strlen(target);
  }
  if (S_ISDIR(mode)) {
    n->parent = dir;
    dir->nlink++;
  }
  add_entry(dir, name, n);
  *out = n;
  return 0;
}

int mfs_link(mnode *n, mnode *dir, const char *name) {
  if (S_ISDIR(n->mode)) return -EPERM;
  int err = check_name(dir, name);
  if (err) return err;
  n->nlink++;
  add_entry(dir, name, n);
  mfs_touch(n, MFS_CTIME);
  return 0;
}

int mfs_remove(mnode *dir, const char *name, int rmdir) {
  mdirent *e = S_ISDIR(dir->mode) ? find(dir, name) : NULL;
  if (!e) return -ENOENT;
  mnode *n = e->node;
  if (rmdir && !S_ISDIR(n->mode)) return -ENOTDIR;
  if (!rmdir && S_ISDIR(n->mode)) return -EISDIR;
  if (rmdir && n->first) return -ENOTEMPTY;
  drop_entry(e);
  mfs_maybe_free(n);
  return 0;
}

int mfs_rename(mnode *odir, const char *oname, mnode *ndir, const char *nname, unsigned flags) {
  if (flags & ~1u) return -EINVAL;  // RENAME_NOREPLACE only; no RENAME_EXCHANGE
  mdirent *from = S_ISDIR(odir->mode) ? find(odir, oname) : NULL;
  if (!from) return -ENOENT;
  if (!S_ISDIR(ndir->mode) || ndir->nlink == 0) return -ENOENT;
  if (strlen(nname) > 255) return -ENAMETOOLONG;
  mnode *n = from->node;
  mdirent *to = find(ndir, nname);
  if (to && to->node == n) return 0;
  if (to && (flags & 1)) return -EEXIST;
  if (S_ISDIR(n->mode)) {
    for (mnode *d = ndir; d != mfs_root; d = d->parent)
      if (d == n) return -EINVAL;  // into itself
    if (to && !S_ISDIR(to->node->mode)) return -ENOTDIR;
    if (to && to->node->first) return -ENOTEMPTY;
  } else if (to && S_ISDIR(to->node->mode)) {
    return -EISDIR;
  }
  if (to) {
    mnode *old = to->node;
    drop_entry(to);
    mfs_maybe_free(old);
  }
  // The entry moves: its link stays with the node, a directory's ".." changes parent.
  nlink_t links = n->nlink;
  drop_entry(from);
  n->nlink = links;
  if (S_ISDIR(n->mode)) {
    ndir->nlink++;  // its ".." (drop_entry took it from odir)
    n->parent = ndir;
  }
  add_entry(ndir, nname, n);
  return 0;
}

static int reserve(mnode *n, size_t need) {
  if (need <= n->cap) return 0;
  size_t cap = n->cap ? n->cap : 4096;
  while (cap < need) cap *= 2;
  char *data = realloc(n->data, cap);
  if (!data) return -ENOSPC;
  n->data = data;
  n->cap = cap;
  return 0;
}

int mfs_truncate(mnode *n, off_t size) {
  if (S_ISDIR(n->mode)) return -EISDIR;
  if (size < 0) return -EINVAL;
  if (size > n->size) {
    int err = reserve(n, size);
    if (err) return err;
    memset(n->data + n->size, 0, size - n->size);
  }
  n->size = size;
  mfs_touch(n, MFS_MTIME | MFS_CTIME);
  return 0;
}

ssize_t mfs_write(mnode *n, const char *buf, size_t len, off_t off) {
  size_t end = off + len;
  int err = reserve(n, end);
  if (err) return err;
  if ((size_t) n->size < (size_t) off) memset(n->data + n->size, 0, off - n->size);
  memcpy(n->data + off, buf, len);
  if ((size_t) n->size < end) n->size = end;
  mfs_touch(n, MFS_MTIME | MFS_CTIME);
  return len;
}

size_t mfs_readable(const mnode *n, size_t len, off_t off) {
  if (off >= n->size) return 0;
  return (size_t) (n->size - off) < len ? (size_t) (n->size - off) : len;
}

static mxattr **find_xattr(mnode *n, const char *name) {
  mxattr **p = &n->xattrs;
  while (*p && strcmp((*p)->name, name) != 0) p = &(*p)->next;
  return p;
}

int mfs_setxattr(mnode *n, const char *name, const char *value, size_t size, int flags) {
  mxattr **p = find_xattr(n, name);
  if (*p && (flags & XATTR_CREATE)) return -EEXIST;
  if (!*p && (flags & XATTR_REPLACE)) return -ENODATA;
  mxattr *x = malloc(sizeof(*x) + size);
  x->name = strdup(name);
  x->size = size;
  memcpy(x->value, value, size);
  if (*p) {
    x->next = (*p)->next;
    free((*p)->name);
    free(*p);
  } else {
    x->next = NULL;
  }
  *p = x;
  mfs_touch(n, MFS_CTIME);
  return 0;
}

ssize_t mfs_getxattr(const mnode *n, const char *name, char *buf, size_t size) {
  mxattr *x = *find_xattr((mnode *) n, name);
  if (!x) return -ENODATA;
  if (size == 0) return x->size;
  if (size < x->size) return -ERANGE;
  memcpy(buf, x->value, x->size);
  return x->size;
}

ssize_t mfs_listxattr(const mnode *n, char *buf, size_t size) {
  size_t need = 0;
  for (mxattr *x = n->xattrs; x; x = x->next) need += strlen(x->name) + 1;
  if (size == 0) return need;
  if (size < need) return -ERANGE;
  for (mxattr *x = n->xattrs; x; x = x->next) buf = stpcpy(buf, x->name) + 1;
  return need;
}

int mfs_removexattr(mnode *n, const char *name) {
  mxattr **p = find_xattr(n, name);
  if (!*p) return -ENODATA;
  mxattr *x = *p;
  *p = x->next;
  free(x->name);
  free(x);
  mfs_touch(n, MFS_CTIME);
  return 0;
}

void mfs_maybe_free(mnode *n) {
  if (n->nlink > 0 || n->open > 0 || n->nlookup > 0 || n == mfs_root) return;
  for (mxattr *x = n->xattrs, *next; x; x = next) {
    next = x->next;
    free(x->name);
    free(x);
  }
  free(n->data);
  free(n);
}
