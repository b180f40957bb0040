// The in-memory filesystem (memfs.c) served through libfuse 3's low-level, inode-based API: the
// kernel's node id of a file is its node's address (1 for the root), and the node counts the
// kernel's references (nlookup). It never keeps state of its own beyond memfs.
//
// Usage: memfs-ll3 MOUNTPOINT [-f] [-s] [-o OPTIONS]; libfuse 3's options, among them
// writeback_cache, max_write=N (the largest request; libfuse 3.14 derives max_pages from it, and
// defaults to 1 MiB), readdirplus=yes|auto (without it: no readdirplus), plus
// entry_timeout=S and attr_timeout=S (default 1) and read_ahead_kb=N (see readahead.h).
// Every operation takes mfs_lock, and replies once it has let it go.

#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfs.h"
#include "readahead.h"

static struct {
  double entry_timeout;
  double attr_timeout;
  unsigned read_ahead_kb;
  int readdirplus;  // readdirplus=yes|auto was given
  char *mountpoint;
  struct fuse_conn_info_opts *conn;
} cfg = {.entry_timeout = 1, .attr_timeout = 1};

#define LOCK() pthread_mutex_lock(&mfs_lock)
#define UNLOCK() pthread_mutex_unlock(&mfs_lock)

static mnode *N(fuse_ino_t ino) { return ino == FUSE_ROOT_ID ? mfs_root : (mnode *) (uintptr_t) ino; }
static fuse_ino_t ID(const mnode *n) { return n == mfs_root ? FUSE_ROOT_ID : (uintptr_t) n; }

static void entry_of(mnode *n, struct fuse_entry_param *e) {
  memset(e, 0, sizeof(*e));
  e->ino = ID(n);
  e->attr_timeout = cfg.attr_timeout;
  e->entry_timeout = cfg.entry_timeout;
  mfs_stat(n, &e->attr);
}

// Replies with the entry of `n`, which the kernel then holds one more reference to; called
// with mfs_lock held, it lets it go before replying.
static void reply_entry_unlock(fuse_req_t req, mnode *n) {
  struct fuse_entry_param e;
  entry_of(n, &e);
  n->nlookup++;
  UNLOCK();
  if (fuse_reply_entry(req, &e) != 0) {  // interrupted: the kernel took no reference
    LOCK();
    n->nlookup--;
    mfs_maybe_free(n);
    UNLOCK();
  }
}

static void reply_err(fuse_req_t req, int err) { fuse_reply_err(req, -err); }

static void op_init(void *data, struct fuse_conn_info *conn) {
  (void) data;
  if (!cfg.readdirplus) conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  fuse_apply_conn_info_opts(cfg.conn, conn);
  if (cfg.read_ahead_kb) set_read_ahead(cfg.mountpoint, cfg.read_ahead_kb);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  LOCK();
  mnode *dir = N(parent), *n = S_ISDIR(dir->mode) ? mfs_lookup(dir, name) : NULL;
  if (n) {
    reply_entry_unlock(req, n);
    return;
  }
  int err = S_ISDIR(dir->mode) ? ENOENT : ENOTDIR;
  UNLOCK();
  fuse_reply_err(req, err);
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup) {
  mnode *n = N(ino);
  n->nlookup -= nlookup;
  mfs_maybe_free(n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  LOCK();
  forget_one(ino, nlookup);
  UNLOCK();
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  LOCK();
  for (size_t i = 0; i < count; i++) forget_one(forgets[i].ino, forgets[i].nlookup);
  UNLOCK();
  fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void) fi;
  struct stat st;
  LOCK();
  mfs_stat(N(ino), &st);
  UNLOCK();
  fuse_reply_attr(req, &st, cfg.attr_timeout);
}

static void set_time(struct timespec *t, int now, const struct timespec *to,
                     const struct timespec *clock) {
  *t = now ? *clock : *to;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi) {
  (void) fi;
  LOCK();
  mnode *n = N(ino);
  int err = 0;
  if (to_set & FUSE_SET_ATTR_SIZE) err = mfs_truncate(n, attr->st_size);
  if (!err) {
    if (to_set & FUSE_SET_ATTR_MODE) n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID) n->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) n->gid = attr->st_gid;
    mfs_touch(n, MFS_CTIME);
    if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
      set_time(&n->atime, to_set & FUSE_SET_ATTR_ATIME_NOW, &attr->st_atim, &n->ctime);
    if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
      set_time(&n->mtime, to_set & FUSE_SET_ATTR_MTIME_NOW, &attr->st_mtim, &n->ctime);
    if (to_set & FUSE_SET_ATTR_CTIME) n->ctime = attr->st_ctim;
  }
  struct stat st;
  mfs_stat(n, &st);
  UNLOCK();
  if (err) reply_err(req, err);
  else fuse_reply_attr(req, &st, cfg.attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  LOCK();
  mnode *n = N(ino);
  char *target = S_ISLNK(n->mode) ? strdup(n->data) : NULL;
  UNLOCK();
  if (target) fuse_reply_readlink(req, target);
  else fuse_reply_err(req, EINVAL);
  free(target);
}

static void make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
                 const char *target) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  mnode *n;
  LOCK();
  int err = mfs_make(N(parent), name, mode, rdev, target, ctx->uid, ctx->gid, &n);
  if (!err) {
    reply_entry_unlock(req, n);
    return;
  }
  UNLOCK();
  reply_err(req, err);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev) {
  make(req, parent, name, mode, rdev, NULL);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  make(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}
static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name) {
  make(req, parent, name, S_IFLNK | 0777, 0, target);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, int rmdir) {
  LOCK();
  int err = mfs_remove(N(parent), name, rmdir);
  UNLOCK();
  reply_err(req, err);
}
static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  remove_name(req, parent, name, 0);
}
static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  remove_name(req, parent, name, 1);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned flags) {
  LOCK();
  int err = mfs_rename(N(parent), name, N(newparent), newname, flags);
  UNLOCK();
  reply_err(req, err);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  LOCK();
  mnode *n = N(ino);
  int err = mfs_link(n, N(newparent), newname);
  if (!err) {
    reply_entry_unlock(req, n);
    return;
  }
  UNLOCK();
  reply_err(req, err);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  LOCK();
  mnode *n = N(ino);
  int err = (fi->flags & O_TRUNC) ? mfs_truncate(n, 0) : 0;
  if (!err) {
    n->open++;
    fi->fh = (uintptr_t) n;
  }
  UNLOCK();
  if (err) reply_err(req, err);
  else if (fuse_reply_open(req, fi) != 0) {
    LOCK();
    n->open--;
    mfs_maybe_free(n);
    UNLOCK();
  }
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  mnode *n;
  LOCK();
  int err = mfs_make(N(parent), name, S_IFREG | (mode & 07777), 0, NULL, ctx->uid, ctx->gid, &n);
  struct fuse_entry_param e;
  if (!err) {
    entry_of(n, &e);
    n->open++;
    n->nlookup++;
    fi->fh = (uintptr_t) n;
  }
  UNLOCK();
  if (err) {
    reply_err(req, err);
  } else if (fuse_reply_create(req, &e, fi) != 0) {  // interrupted: nothing taken
    LOCK();
    n->open--;
    n->nlookup--;
    mfs_maybe_free(n);
    UNLOCK();
  }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  (void) fi;
  char *buf = malloc(size);  // copied out, as libfuse 2's high-level API does for hl2.c
  LOCK();
  mnode *n = N(ino);
  size_t len = mfs_readable(n, size, off);
  if (len) memcpy(buf, n->data + off, len);
  UNLOCK();
  fuse_reply_buf(req, buf, len);
  free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void) fi;
  LOCK();
  ssize_t res = mfs_write(N(ino), buf, size, off);
  UNLOCK();
  if (res < 0) reply_err(req, (int) res);
  else fuse_reply_write(req, res);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void) ino, (void) fi;
  fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void) fi;
  LOCK();
  mnode *n = N(ino);
  n->open--;
  mfs_maybe_free(n);
  UNLOCK();
  fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void) ino, (void) datasync, (void) fi;
  fuse_reply_err(req, 0);
}

// Fills `buf` with the entries after `off`, as readdir (plus = 0) or readdirplus (plus = 1):
// "." and ".." first (cookies 1 and 2), then the directory's entries. Returns the bytes used.
static size_t list(fuse_req_t req, mnode *dir, char *buf, size_t size, off_t off, int plus) {
  size_t used = 0;
  const char *dots[] = {".", ".."};
  for (off_t c = off; c < 2; c++) {
    mnode *n = c == 0 ? dir : dir->parent;
    struct fuse_entry_param e = {.attr = {.st_ino = n->ino, .st_mode = S_IFDIR}};
    size_t len = plus ? fuse_add_direntry_plus(req, buf + used, size - used, dots[c], &e, c + 1)
                      : fuse_add_direntry(req, buf + used, size - used, dots[c], &e.attr, c + 1);
    if (len > size - used) return used;
    used += len;
  }
  for (mdirent *d = mfs_dir_after(dir, off < 2 ? 2 : off); d; d = d->next) {
    struct fuse_entry_param e = {0};
    size_t len;
    if (plus) {
      entry_of(d->node, &e);
      len = fuse_add_direntry_plus(req, buf + used, size - used, d->name, &e, d->cookie);
    } else {
      e.attr.st_ino = d->node->ino;
      e.attr.st_mode = d->node->mode & S_IFMT;
      len = fuse_add_direntry(req, buf + used, size - used, d->name, &e.attr, d->cookie);
    }
    if (len > size - used) break;
    used += len;
    if (plus) d->node->nlookup++;  // every entry but "." and ".." is a reference
  }
  return used;
}

static void readdir_any(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  char *buf = malloc(size);
  LOCK();
  mnode *dir = N(ino);
  if (!S_ISDIR(dir->mode)) {
    UNLOCK();
    free(buf);
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  size_t used = list(req, dir, buf, size, off, plus);
  UNLOCK();
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi) {
  (void) fi;
  readdir_any(req, ino, size, off, 0);
}
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi) {
  (void) fi;
  readdir_any(req, ino, size, off, 1);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void) ino;
  struct statvfs sv;
  mfs_statfs(&sv);
  fuse_reply_statfs(req, &sv);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags) {
  LOCK();
  int err = mfs_setxattr(N(ino), name, value, size, flags);
  UNLOCK();
  reply_err(req, err);
}

// getxattr (name) and listxattr (name NULL): the size when asked for it, else the bytes.
static void xattr_reply(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  char *buf = size ? malloc(size) : NULL;
  LOCK();
  ssize_t res = name ? mfs_getxattr(N(ino), name, buf, size) : mfs_listxattr(N(ino), buf, size);
  UNLOCK();
  if (res < 0) reply_err(req, (int) res);
  else if (size == 0) fuse_reply_xattr(req, res);
  else fuse_reply_buf(req, buf, res);
  free(buf);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  xattr_reply(req, ino, name, size);
}
static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  xattr_reply(req, ino, NULL, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  LOCK();
  int err = mfs_removexattr(N(ino), name);
  UNLOCK();
  reply_err(req, err);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
};

enum { KEY_READDIRPLUS };
static const struct fuse_opt opts[] = {
    {"entry_timeout=%lf", offsetof(__typeof__(cfg), entry_timeout), 0},
    {"attr_timeout=%lf", offsetof(__typeof__(cfg), attr_timeout), 0},
    {"read_ahead_kb=%u", offsetof(__typeof__(cfg), read_ahead_kb), 0},
    FUSE_OPT_KEY("readdirplus=yes", KEY_READDIRPLUS),
    FUSE_OPT_KEY("readdirplus=auto", KEY_READDIRPLUS),
    FUSE_OPT_END};

// Notes readdirplus=yes|auto and leaves it, and every other argument, to libfuse.
static int keep(void *data, const char *arg, int key, struct fuse_args *args) {
  (void) data, (void) arg, (void) args;
  if (key == KEY_READDIRPLUS) cfg.readdirplus = 1;
  return 1;
}

int main(int argc, char *argv[]) {
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  struct fuse_cmdline_opts o;
  if (fuse_opt_parse(&args, &cfg, opts, keep) != 0) return 1;
  cfg.conn = fuse_parse_conn_info_opts(&args);
  if (!cfg.conn || fuse_parse_cmdline(&args, &o) != 0) return 1;
  if (!o.mountpoint) {
    fprintf(stderr, "usage: %s MOUNTPOINT [-f] [-s] [-o OPTIONS]\n", argv[0]);
    return 1;
  }
  cfg.mountpoint = o.mountpoint;
  mfs_init();
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
  if (!se) return 1;
  int res = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    if (fuse_session_mount(se, o.mountpoint) == 0) {
      fuse_daemonize(o.foreground);
      if (o.singlethread) {
        res = fuse_session_loop(se);
      } else {
        struct fuse_loop_config *loop = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(loop, o.clone_fd);
        if (o.max_idle_threads != UINT_MAX)  // unset: libfuse's default, workers never end
          fuse_loop_cfg_set_idle_threads(loop, o.max_idle_threads);
        fuse_loop_cfg_set_max_threads(loop, o.max_threads);
        res = fuse_session_loop_mt(se, loop);
        fuse_loop_cfg_destroy(loop);
      }
      fuse_session_unmount(se);
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return res ? 1 : 0;
}
