// The in-memory filesystem (memfs.c) served through libfuse 2's high-level, path-based API, the
// API shadowfs's binding (fuse-native) uses. It never keeps state of its own beyond memfs.
//
// Usage: memfs-hl2 MOUNTPOINT [-f] [-s] [-o OPTIONS]; libfuse 2's options (use_ino, big_writes,
// max_write=N, entry_timeout=S, attr_timeout=S, ...) plus read_ahead_kb=N (see readahead.h).
// Every operation takes mfs_lock; an open file's handle (fh) is its node.

#define FUSE_USE_VERSION 26
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "memfs.h"
#include "readahead.h"

static struct {
  unsigned read_ahead_kb;
  char *mountpoint;
} cfg;

#define LOCKED(expr)                      \
  do {                                    \
    pthread_mutex_lock(&mfs_lock);        \
    int res_ = (expr);                    \
    pthread_mutex_unlock(&mfs_lock);      \
    return res_;                          \
  } while (0)

// The node at `path`, or of its first `len` bytes.
static int resolve_len(const char *path, size_t len, mnode **out) {
  mnode *n = mfs_root;
  const char *p = path, *end = path + len;
  while (p < end) {
    while (p < end && *p == '/') p++;
    const char *q = p;
    while (q < end && *q != '/') q++;
    if (q == p) break;
    char name[256];
    if (q - p > 255) return -ENAMETOOLONG;
    if (!S_ISDIR(n->mode)) return -ENOTDIR;
    memcpy(name, p, q - p);
    name[q - p] = 0;
    n = mfs_lookup(n, name);
    if (!n) return -ENOENT;
    p = q;
  }
  *out = n;
  return 0;
}

static int resolve(const char *path, mnode **out) { return resolve_len(path, strlen(path), out); }

// The directory holding the last component of `path`, and that component.
static int parent(const char *path, mnode **dir, const char **name) {
  const char *slash = strrchr(path, '/');
  *name = slash + 1;
  int err = resolve_len(path, slash - path, dir);
  if (!err && !S_ISDIR((*dir)->mode)) err = -ENOTDIR;
  return err;
}

static int do_getattr(const char *path, struct stat *st) {
  mnode *n;
  int err = resolve(path, &n);
  if (!err) mfs_stat(n, st);
  return err;
}
static int op_getattr(const char *path, struct stat *st) { LOCKED(do_getattr(path, st)); }

static int op_fgetattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  (void) path;
  pthread_mutex_lock(&mfs_lock);
  mfs_stat((mnode *) (uintptr_t) fi->fh, st);
  pthread_mutex_unlock(&mfs_lock);
  return 0;
}

static int do_readlink(const char *path, char *buf, size_t size) {
  mnode *n;
  int err = resolve(path, &n);
  if (err) return err;
  if (!S_ISLNK(n->mode)) return -EINVAL;
  size_t len = (size_t) n->size < size - 1 ? (size_t) n->size : size - 1;
  memcpy(buf, n->data, len);
  buf[len] = 0;
  return 0;
}
static int op_readlink(const char *path, char *buf, size_t size) {
  LOCKED(do_readlink(path, buf, size));
}

static int make(const char *path, mode_t mode, dev_t rdev, const char *target, mnode **out) {
  mnode *dir, *n;
  const char *name;
  int err = parent(path, &dir, &name);
  struct fuse_context *ctx = fuse_get_context();
  if (!err) err = mfs_make(dir, name, mode, rdev, target, ctx->uid, ctx->gid, &n);
  if (!err && out) *out = n;
  return err;
}
static int op_mknod(const char *path, mode_t mode, dev_t rdev) {
  LOCKED(make(path, mode, rdev, NULL, NULL));
}
static int op_mkdir(const char *path, mode_t mode) {
  LOCKED(make(path, S_IFDIR | (mode & 07777), 0, NULL, NULL));
}
static int op_symlink(const char *target, const char *path) {
  LOCKED(make(path, S_IFLNK | 0777, 0, target, NULL));
}

static int do_remove(const char *path, int rmdir) {
  mnode *dir;
  const char *name;
  int err = parent(path, &dir, &name);
  return err ? err : mfs_remove(dir, name, rmdir);
}
static int op_unlink(const char *path) { LOCKED(do_remove(path, 0)); }
static int op_rmdir(const char *path) { LOCKED(do_remove(path, 1)); }

static int do_rename(const char *from, const char *to) {
  mnode *odir, *ndir;
  const char *oname, *nname;
  int err = parent(from, &odir, &oname);
  if (!err) err = parent(to, &ndir, &nname);
  return err ? err : mfs_rename(odir, oname, ndir, nname, 0);
}
static int op_rename(const char *from, const char *to) { LOCKED(do_rename(from, to)); }

static int do_link(const char *from, const char *to) {
  mnode *n, *dir;
  const char *name;
  int err = resolve(from, &n);
  if (!err) err = parent(to, &dir, &name);
  return err ? err : mfs_link(n, dir, name);
}
static int op_link(const char *from, const char *to) { LOCKED(do_link(from, to)); }

static int do_chmod(const char *path, mode_t mode) {
  mnode *n;
  int err = resolve(path, &n);
  if (err) return err;
  n->mode = (n->mode & S_IFMT) | (mode & 07777);
  mfs_touch(n, MFS_CTIME);
  return 0;
}
static int op_chmod(const char *path, mode_t mode) { LOCKED(do_chmod(path, mode)); }

static int do_chown(const char *path, uid_t uid, gid_t gid) {
  mnode *n;
  int err = resolve(path, &n);
  if (err) return err;
  if (uid != (uid_t) -1) n->uid = uid;
  if (gid != (gid_t) -1) n->gid = gid;
  mfs_touch(n, MFS_CTIME);
  return 0;
}
static int op_chown(const char *path, uid_t uid, gid_t gid) { LOCKED(do_chown(path, uid, gid)); }

static int do_truncate(const char *path, off_t size) {
  mnode *n;
  int err = resolve(path, &n);
  return err ? err : mfs_truncate(n, size);
}
static int op_truncate(const char *path, off_t size) { LOCKED(do_truncate(path, size)); }
static int op_ftruncate(const char *path, off_t size, struct fuse_file_info *fi) {
  (void) path;
  LOCKED(mfs_truncate((mnode *) (uintptr_t) fi->fh, size));
}

static void set_time(struct timespec *t, const struct timespec *to, const struct timespec *now) {
  if (to->tv_nsec == UTIME_OMIT) return;
  *t = to->tv_nsec == UTIME_NOW ? *now : *to;
}

static int do_utimens(const char *path, const struct timespec tv[2]) {
  mnode *n;
  int err = resolve(path, &n);
  if (err) return err;
  mfs_touch(n, MFS_CTIME);
  set_time(&n->atime, &tv[0], &n->ctime);
  set_time(&n->mtime, &tv[1], &n->ctime);
  return 0;
}
static int op_utimens(const char *path, const struct timespec tv[2]) {
  LOCKED(do_utimens(path, tv));
}

static int do_open(const char *path, struct fuse_file_info *fi) {
  mnode *n;
  int err = resolve(path, &n);
  if (!err && (fi->flags & O_TRUNC)) err = mfs_truncate(n, 0);
  if (err) return err;
  n->open++;
  fi->fh = (uintptr_t) n;
  return 0;
}
static int op_open(const char *path, struct fuse_file_info *fi) { LOCKED(do_open(path, fi)); }

static int do_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  mnode *n;
  int err = make(path, S_IFREG | (mode & 07777), 0, NULL, &n);
  if (err) return err;
  n->open++;
  fi->fh = (uintptr_t) n;
  return 0;
}
static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  LOCKED(do_create(path, mode, fi));
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi) {
  (void) path;
  mnode *n = (mnode *) (uintptr_t) fi->fh;
  pthread_mutex_lock(&mfs_lock);
  size_t len = mfs_readable(n, size, off);
  memcpy(buf, n->data + off, len);
  pthread_mutex_unlock(&mfs_lock);
  return len;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  (void) path;
  LOCKED(mfs_write((mnode *) (uintptr_t) fi->fh, buf, size, off));
}

static int op_statfs(const char *path, struct statvfs *sv) {
  (void) path;
  mfs_statfs(sv);
  return 0;
}

static int op_release(const char *path, struct fuse_file_info *fi) {
  (void) path;
  mnode *n = (mnode *) (uintptr_t) fi->fh;
  pthread_mutex_lock(&mfs_lock);
  n->open--;
  mfs_maybe_free(n);
  pthread_mutex_unlock(&mfs_lock);
  return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void) path, (void) datasync, (void) fi;
  return 0;
}

static int do_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags) {
  mnode *n;
  int err = resolve(path, &n);
  return err ? err : mfs_setxattr(n, name, value, size, flags);
}
static int op_setxattr(const char *path, const char *name, const char *value, size_t size,
                       int flags) {
  LOCKED(do_setxattr(path, name, value, size, flags));
}

static int do_getxattr(const char *path, const char *name, char *value, size_t size) {
  mnode *n;
  int err = resolve(path, &n);
  return err ? err : (int) mfs_getxattr(n, name, value, size);
}
static int op_getxattr(const char *path, const char *name, char *value, size_t size) {
  LOCKED(do_getxattr(path, name, value, size));
}

static int do_listxattr(const char *path, char *list, size_t size) {
  mnode *n;
  int err = resolve(path, &n);
  return err ? err : (int) mfs_listxattr(n, list, size);
}
static int op_listxattr(const char *path, char *list, size_t size) {
  LOCKED(do_listxattr(path, list, size));
}

static int do_removexattr(const char *path, const char *name) {
  mnode *n;
  int err = resolve(path, &n);
  return err ? err : mfs_removexattr(n, name);
}
static int op_removexattr(const char *path, const char *name) {
  LOCKED(do_removexattr(path, name));
}

// The whole directory in one call, offsets 0, as fuse-native does: libfuse keeps the listing.
static int do_readdir(const char *path, void *buf, fuse_fill_dir_t fill) {
  mnode *dir;
  int err = resolve(path, &dir);
  if (err) return err;
  if (!S_ISDIR(dir->mode)) return -ENOTDIR;
  struct stat st = {.st_mode = S_IFDIR, .st_ino = dir->ino};
  fill(buf, ".", &st, 0);
  st.st_ino = dir->parent->ino;
  fill(buf, "..", &st, 0);
  for (mdirent *e = dir->first; e; e = e->next) {
    st.st_ino = e->node->ino;
    st.st_mode = e->node->mode & S_IFMT;
    if (fill(buf, e->name, &st, 0)) break;
  }
  return 0;
}
static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi) {
  (void) off, (void) fi;
  LOCKED(do_readdir(path, buf, fill));
}

static void *op_init(struct fuse_conn_info *conn) {
  (void) conn;
  if (cfg.read_ahead_kb && cfg.mountpoint) set_read_ahead(cfg.mountpoint, cfg.read_ahead_kb);
  return NULL;
}

static struct fuse_operations ops = {
    .getattr = op_getattr,
    .fgetattr = op_fgetattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .ftruncate = op_ftruncate,
    .utimens = op_utimens,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .release = op_release,
    .fsync = op_fsync,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .readdir = op_readdir,
    .init = op_init,
    .flag_utime_omit_ok = 1,  // as the patched binding: UTIME_NOW and UTIME_OMIT reach utimens
};

static const struct fuse_opt opts[] = {
    {"read_ahead_kb=%u", offsetof(__typeof__(cfg), read_ahead_kb), 0}, FUSE_OPT_END};

// Notes the mount point (made absolute for set_read_ahead) and leaves every argument to libfuse.
static int keep(void *data, const char *arg, int key, struct fuse_args *args) {
  (void) data, (void) args;
  if (key == FUSE_OPT_KEY_NONOPT && !cfg.mountpoint) cfg.mountpoint = realpath(arg, NULL);
  return 1;
}

int main(int argc, char *argv[]) {
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  if (fuse_opt_parse(&args, &cfg, opts, keep) != 0) return 1;
  mfs_init();
  return fuse_main(args.argc, args.argv, &ops, NULL);
}
