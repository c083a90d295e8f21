/* Layer unpacking (see layer.h). libarchive only reads and decompresses
 * the archive (gzip, zstd or none; tar formats); every file is written
 * here, relative to a directory fd of the destination: each entry's parent
 * is reached with openat(O_DIRECTORY|O_NOFOLLOW) one component at a time
 * (creating missing directories), so no symlink on disk and no ".." can
 * lead out of the layer, whatever the order of the entries.
 * archive_write_disk is not used: its SECURE_NOABSOLUTEPATHS check needs
 * relative paths and so a chdir(), which is process-wide.
 *
 * Directory modes, owners and mtimes are applied once every entry is
 * written (creating entries changes a directory's mtime), in archive order
 * so a later entry for the same directory wins.
 *
 * Thread-safe: all state is per call. */
#include "node_engine/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_log.h"

#define READ_BUF       (128u * 1024u)
#define WHITEOUT       ".wh."
#define OPAQUE         ".wh..wh..opq"
#define OVERLAY_OPAQUE "trusted.overlay.opaque"

typedef struct {
    char *path; /* relative to the root; "" is the root */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec mtime;
} dir_meta_t;

typedef struct {
    int root; /* the destination directory */
    const char *label;
    dir_meta_t *dirs;
    size_t ndirs, cap;
    uint64_t entries, bytes;
} unpack_t;

/* The source of a layer read from a file descriptor, hashed as read. */
typedef struct {
    int fd;
    EVP_MD_CTX *md;
    unsigned char *buf;
} src_t;

static void archive_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

/* ---- paths ---- */

/* Normalises an archive name to a relative path without "." or empty
 * components ("" for the root). Absolute names and ".." are refused. */
static int clean_path(const unpack_t *u, const char *name, char **out, oak_err_t *err)
{
    size_t len = strlen(name);
    *out = NULL;
    if (name[0] == '/')
        return oak_err_set(err, OAK_E_INVALID, "%s: entry '%.200s' has an absolute path", u->label,
                           name);
    if (len >= PATH_MAX)
        return oak_err_set(err, OAK_E_INVALID, "%s: entry name of %zu bytes is too long", u->label,
                           len);
    char *res = xmalloc(len + 1);
    size_t o = 0;
    const char *p = name;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            free(res);
            return oak_err_set(err, OAK_E_INVALID, "%s: entry '%.200s' has a '..' component",
                               u->label, name);
        }
        if (n > NAME_MAX) {
            free(res);
            return oak_err_set(err, OAK_E_INVALID,
                               "%s: entry '%.200s' has a component over %d "
                               "bytes",
                               u->label, name, NAME_MAX);
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o)
                res[o++] = '/';
            memcpy(res + o, p, n);
            o += n;
        }
        p += n;
        while (*p == '/')
            p++;
    }
    res[o] = 0;
    *out = res;
    return 0;
}

/* Opens the directory holding the last component of rel (non-empty, as
 * from clean_path), walking from the root without following symlinks;
 * missing directories are created (0755, root-owned) when create. *base
 * points at the last component inside rel. Returns an fd owned by the
 * caller. */
static int open_parent(const unpack_t *u, const char *rel, bool create, const char **base,
                       oak_err_t *err)
{
    int fd = openat(u->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return oak_err_errno(err, errno, "%s: open the layer directory", u->label);
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (!slash) {
            *base = p;
            return fd;
        }
        char comp[NAME_MAX + 1];
        size_t n = (size_t)(slash - p);
        memcpy(comp, p, n);
        comp[n] = 0;
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                int e = errno;
                close(fd);
                return oak_err_errno(err, e, "%s: create directory '%.*s'", u->label,
                                     (int)(slash - rel), rel);
            }
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (next >= 0)
                fchmod(next, 0755);
        }
        int e = errno;
        close(fd);
        if (next < 0) {
            if (e == ENOTDIR || e == ELOOP)
                return oak_err_set(err, OAK_E_INVALID,
                                   "%s: entry '%.200s': '%.*s' is not a directory in the layer "
                                   "(a symlink or a file)",
                                   u->label, rel, (int)(slash - rel), rel);
            if (e == ENOENT)
                return oak_err_set(err, OAK_E_INVALID, "%s: '%.*s' does not exist in the layer",
                                   u->label, (int)(slash - rel), rel);
            return oak_err_errno(err, e, "%s: open '%.*s'", u->label, (int)(slash - rel), rel);
        }
        fd = next;
        p = slash + 1;
    }
}

/* Removes name (a file, symlink, device or directory tree) below dirfd. */
static int rmtree_at(int parent, const char *name)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(parent, name, 0);
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (rmtree_at(dirfd(d), e->d_name) < 0)
            rc = -1;
    }
    closedir(d);
    if (rc < 0)
        return -1;
    return unlinkat(parent, name, AT_REMOVEDIR);
}

static bool is_whiteout(const struct stat *st)
{
    return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Makes room for a new entry name in pfd. Returns 1 when an existing
 * directory is kept (keep_dir and it is one), else 0; *was_whiteout tells
 * whether an overlay whiteout was replaced. */
static int make_room(const unpack_t *u, int pfd, const char *name, bool keep_dir,
                     bool *was_whiteout, oak_err_t *err)
{
    struct stat st;
    if (was_whiteout)
        *was_whiteout = false;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return oak_err_errno(err, errno, "%s: stat '%s'", u->label, name);
    }
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 1;
    if (was_whiteout)
        *was_whiteout = is_whiteout(&st);
    if (rmtree_at(pfd, name) < 0)
        return oak_err_errno(err, errno, "%s: remove '%s'", u->label, name);
    return 0;
}

/* ---- metadata ---- */

static struct timespec entry_mtime(struct archive_entry *e)
{
    struct timespec ts = {0, 0};
    if (archive_entry_mtime_is_set(e)) {
        ts.tv_sec = archive_entry_mtime(e);
        ts.tv_nsec = archive_entry_mtime_nsec(e);
        if (ts.tv_nsec < 0 || ts.tv_nsec > 999999999)
            ts.tv_nsec = 0;
    }
    return ts;
}

static bool xattr_allowed(const char *name)
{
    return strncmp(name, "user.", 5) == 0 || strcmp(name, "security.capability") == 0;
}

/* Sets the entry's allowed extended attributes on fd. */
static int apply_xattrs(const unpack_t *u, int fd, struct archive_entry *e, const char *rel,
                        oak_err_t *err)
{
    const char *name;
    const void *value;
    size_t size;
    archive_entry_xattr_reset(e);
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (!name || !xattr_allowed(name))
            continue;
        if (fsetxattr(fd, name, value, size, 0) < 0 && errno != ENOTSUP && errno != EOPNOTSUPP)
            return oak_err_errno(err, errno, "%s: set xattr %.100s on '%.200s'", u->label, name,
                                 rel);
    }
    return 0;
}

static int set_opaque(const unpack_t *u, int dir, const char *rel, oak_err_t *err)
{
    if (fsetxattr(dir, OVERLAY_OPAQUE, "y", 1, 0) < 0)
        return oak_err_errno(err, errno, "%s: mark '%.200s' opaque (xattr %s)", u->label,
                             *rel ? rel : "/", OVERLAY_OPAQUE);
    return 0;
}

static int chown_err(int e)
{
    /* without CAP_CHOWN (tests as a user) files keep our own ids */
    return e == EPERM && geteuid() != 0 ? 0 : -1;
}

/* Owner, mode, mtime of a regular file or directory open as fd. */
static int apply_meta(const unpack_t *u, int fd, uid_t uid, gid_t gid, mode_t mode,
                      struct timespec mtime, const char *rel, oak_err_t *err)
{
    if (fchown(fd, uid, gid) < 0 && chown_err(errno) < 0)
        return oak_err_errno(err, errno, "%s: chown '%.200s'", u->label, rel);
    if (fchmod(fd, mode & 07777) < 0)
        return oak_err_errno(err, errno, "%s: chmod '%.200s'", u->label, rel);
    struct timespec ts[2] = {mtime, mtime};
    if (futimens(fd, ts) < 0)
        return oak_err_errno(err, errno, "%s: set times of '%.200s'", u->label, rel);
    return 0;
}

/* Owner and mtime of a symlink or fifo name in pfd, without following. */
static int apply_meta_at(const unpack_t *u, int pfd, const char *name, uid_t uid, gid_t gid,
                         struct timespec mtime, const char *rel, oak_err_t *err)
{
    if (fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 && chown_err(errno) < 0)
        return oak_err_errno(err, errno, "%s: chown '%.200s'", u->label, rel);
    struct timespec ts[2] = {mtime, mtime};
    if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return oak_err_errno(err, errno, "%s: set times of '%.200s'", u->label, rel);
    return 0;
}

static void defer_dir(unpack_t *u, const char *rel, struct archive_entry *e)
{
    if (u->ndirs == u->cap) {
        u->cap = u->cap ? 2 * u->cap : 64;
        u->dirs = xrealloc(u->dirs, u->cap * sizeof(*u->dirs));
    }
    dir_meta_t *d = &u->dirs[u->ndirs++];
    d->path = xstrdup(rel);
    d->mode = archive_entry_perm(e);
    d->uid = (uid_t)archive_entry_uid(e);
    d->gid = (gid_t)archive_entry_gid(e);
    d->mtime = entry_mtime(e);
}

/* Applies the deferred directory metadata; directories replaced by later
 * entries are skipped. */
static int finish_dirs(unpack_t *u, oak_err_t *err)
{
    for (size_t i = 0; i < u->ndirs; i++) {
        dir_meta_t *d = &u->dirs[i];
        _cleanup_close_ int fd = -1;
        if (!*d->path) {
            fd = openat(u->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        } else {
            const char *base;
            oak_err_t ignored = OAK_ERR_INIT;
            _cleanup_close_ int pfd = open_parent(u, d->path, false, &base, &ignored);
            if (pfd < 0)
                continue;
            fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
            continue;
        if (apply_meta(u, fd, d->uid, d->gid, d->mode, d->mtime, *d->path ? d->path : "/", err) < 0)
            return -1;
    }
    return 0;
}

/* ---- entries ---- */

static int write_all(int fd, const char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static int do_regular(unpack_t *u, struct archive *a, struct archive_entry *e, const char *rel,
                      oak_err_t *err)
{
    const char *base;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0 || make_room(u, pfd, base, false, NULL, err) < 0)
        return -1;
    _cleanup_close_ int fd =
        openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return oak_err_errno(err, errno, "%s: create '%.200s'", u->label, rel);
    int64_t end = 0;
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t off;
        int r = archive_read_data_block(a, &buf, &size, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return oak_err_set(err, OAK_E_INVALID, "%s: corrupt archive at '%.200s': %s", u->label,
                               rel, archive_error_string(a));
        if (off < 0)
            return oak_err_set(err, OAK_E_INVALID, "%s: '%.200s': negative data offset", u->label,
                               rel);
        u->bytes += size;
        if (u->bytes > (uint64_t)LAYER_MAX_BYTES)
            return oak_err_set(err, OAK_E_TOO_LARGE, "%s unpacks to more than %lld bytes", u->label,
                               (long long)LAYER_MAX_BYTES);
        if (write_all(fd, buf, size, (off_t)off) < 0)
            return oak_err_errno(err, errno, "%s: write '%.200s'", u->label, rel);
        if (off + (int64_t)size > end)
            end = off + (int64_t)size;
    }
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size > end && size <= LAYER_MAX_BYTES && ftruncate(fd, (off_t)size) < 0)
        return oak_err_errno(err, errno, "%s: size '%.200s'", u->label, rel);
    if (apply_xattrs(u, fd, e, rel, err) < 0)
        return -1;
    return apply_meta(u, fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                      archive_entry_perm(e), entry_mtime(e), rel, err);
}

static int do_dir(unpack_t *u, struct archive_entry *e, const char *rel, oak_err_t *err)
{
    const char *base;
    bool was_whiteout = false;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0)
        return -1;
    int kept = make_room(u, pfd, base, true, &was_whiteout, err);
    if (kept < 0)
        return -1;
    if (!kept && mkdirat(pfd, base, 0700) < 0)
        return oak_err_errno(err, errno, "%s: create directory '%.200s'", u->label, rel);
    _cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return oak_err_errno(err, errno, "%s: open directory '%.200s'", u->label, rel);
    /* deleted and created again in this layer: hide what lower layers had */
    if (was_whiteout && set_opaque(u, fd, rel, err) < 0)
        return -1;
    if (apply_xattrs(u, fd, e, rel, err) < 0)
        return -1;
    defer_dir(u, rel, e);
    return 0;
}

static const char *entry_symlink(struct archive_entry *e)
{
    const char *t = archive_entry_symlink(e);
    return t ? t : archive_entry_symlink_utf8(e);
}

static int do_symlink(unpack_t *u, struct archive_entry *e, const char *rel, oak_err_t *err)
{
    const char *target = entry_symlink(e);
    if (!target || !*target)
        return oak_err_set(err, OAK_E_INVALID, "%s: symlink '%.200s' has no target", u->label, rel);
    if (strlen(target) >= PATH_MAX)
        return oak_err_set(err, OAK_E_INVALID, "%s: symlink '%.200s' target is too long", u->label,
                           rel);
    const char *base;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0 || make_room(u, pfd, base, false, NULL, err) < 0)
        return -1;
    if (symlinkat(target, pfd, base) < 0)
        return oak_err_errno(err, errno, "%s: create symlink '%.200s'", u->label, rel);
    return apply_meta_at(u, pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                         entry_mtime(e), rel, err);
}

static int do_fifo(unpack_t *u, struct archive_entry *e, const char *rel, oak_err_t *err)
{
    const char *base;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0 || make_room(u, pfd, base, false, NULL, err) < 0)
        return -1;
    if (mknodat(pfd, base, S_IFIFO | 0600, 0) < 0)
        return oak_err_errno(err, errno, "%s: create fifo '%.200s'", u->label, rel);
    if (fchmodat(pfd, base, archive_entry_perm(e) & 07777, 0) < 0)
        return oak_err_errno(err, errno, "%s: chmod '%.200s'", u->label, rel);
    return apply_meta_at(u, pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                         entry_mtime(e), rel, err);
}

static int do_hardlink(unpack_t *u, const char *target_name, const char *rel, oak_err_t *err)
{
    _cleanup_free_ char *trel = NULL;
    if (clean_path(u, target_name, &trel, err) < 0)
        return -1;
    if (!*trel)
        return oak_err_set(err, OAK_E_INVALID, "%s: hard link '%.200s' to the layer root", u->label,
                           rel);
    if (strcmp(trel, rel) == 0)
        return 0;
    const char *tbase;
    _cleanup_close_ int tpfd = open_parent(u, trel, false, &tbase, err);
    if (tpfd < 0)
        return -1;
    struct stat st;
    if (fstatat(tpfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return oak_err_set(err, OAK_E_INVALID,
                           "%s: hard link '%.200s' -> '%.200s': target is not in the layer",
                           u->label, rel, trel);
    if (S_ISDIR(st.st_mode))
        return oak_err_set(err, OAK_E_INVALID,
                           "%s: hard link '%.200s' -> '%.200s': target is a directory", u->label,
                           rel, trel);
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
        return 0; /* no device nodes, not even by a link to a whiteout */
    const char *base;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0 || make_room(u, pfd, base, false, NULL, err) < 0)
        return -1;
    if (linkat(tpfd, tbase, pfd, base, 0) < 0) {
        if (errno == ENOENT) /* make_room removed the target: it was the same path */
            return oak_err_set(err, OAK_E_INVALID,
                               "%s: hard link '%.200s' -> '%.200s': target is not in the layer",
                               u->label, rel, trel);
        return oak_err_errno(err, errno, "%s: hard link '%.200s'", u->label, rel);
    }
    return 0;
}

static int do_whiteout(unpack_t *u, const char *rel, const char *base_name, oak_err_t *err)
{
    const char *base;
    _cleanup_close_ int pfd = open_parent(u, rel, true, &base, err);
    if (pfd < 0)
        return -1;
    if (strcmp(base_name, OPAQUE) == 0) {
        size_t plen = (size_t)(base - rel);
        _cleanup_free_ char *dir = xstrndup(rel, plen ? plen - 1 : 0);
        return set_opaque(u, pfd, dir, err);
    }
    if (strncmp(base_name, ".wh..wh.", 8) == 0)
        return 0; /* other aufs metadata (.wh..wh.plnk, ...) */
    const char *name = base_name + strlen(WHITEOUT);
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return oak_err_set(err, OAK_E_INVALID, "%s: invalid whiteout '%.200s'", u->label, rel);
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        /* A whiteout only hides lower layers: an entry of this layer stays,
         * and a directory of this layer stops merging with lower ones. */
        if (!S_ISDIR(st.st_mode))
            return 0;
        _cleanup_close_ int dfd =
            openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            return oak_err_errno(err, errno, "%s: open '%.200s'", u->label, rel);
        return set_opaque(u, dfd, rel, err);
    }
    if (mknodat(pfd, name, S_IFCHR | 0, makedev(0, 0)) < 0)
        return oak_err_errno(err, errno, "%s: create whiteout for '%.200s'", u->label, rel);
    return 0;
}

static const char *entry_name(struct archive_entry *e)
{
    const char *n = archive_entry_pathname(e);
    return n ? n : archive_entry_pathname_utf8(e);
}

static const char *entry_hardlink(struct archive_entry *e)
{
    const char *n = archive_entry_hardlink(e);
    return n ? n : archive_entry_hardlink_utf8(e);
}

static int do_entry(unpack_t *u, struct archive *a, struct archive_entry *e, oak_err_t *err)
{
    const char *name = entry_name(e);
    if (!name)
        return oak_err_set(err, OAK_E_INVALID, "%s: entry with an unreadable name", u->label);
    _cleanup_free_ char *rel = NULL;
    if (clean_path(u, name, &rel, err) < 0)
        return -1;
    const char *hl = entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (!*rel) {
        if (hl || type != AE_IFDIR)
            return oak_err_set(err, OAK_E_INVALID,
                               "%s: the layer root '%.200s' is not a "
                               "directory",
                               u->label, name);
        defer_dir(u, "", e);
        return apply_xattrs(u, u->root, e, "/", err);
    }
    const char *slash = strrchr(rel, '/');
    const char *base = slash ? slash + 1 : rel;
    if (strncmp(base, WHITEOUT, strlen(WHITEOUT)) == 0)
        return do_whiteout(u, rel, base, err);
    if (hl)
        return do_hardlink(u, hl, rel, err);
    switch (type) {
    case AE_IFREG:
        return do_regular(u, a, e, rel, err);
    case AE_IFDIR:
        return do_dir(u, e, rel, err);
    case AE_IFLNK:
        return do_symlink(u, e, rel, err);
    case AE_IFIFO:
        return do_fifo(u, e, rel, err);
    default:
        /* character and block devices, sockets: never in an instance's root */
        log_debug("%s: skipping special file '%s'", u->label, rel);
        return 0;
    }
}

/* ---- reading ---- */

static la_ssize_t src_read(struct archive *a, void *p, const void **out)
{
    src_t *s = p;
    ssize_t n;
    do {
        n = read(s->fd, s->buf, READ_BUF);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        archive_set_error(a, errno, "read: %s", strerror(errno));
        return -1;
    }
    if (n > 0 && s->md && !EVP_DigestUpdate(s->md, s->buf, (size_t)n))
        abort();
    *out = s->buf;
    return n;
}

/* Reads what is left of the source into the hash and compares. Returns 0
 * when it matches, 1 on a mismatch, -1 on a read error (errno). */
static int src_verify(src_t *s, const char *digest)
{
    for (;;) {
        ssize_t n = read(s->fd, s->buf, READ_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (!EVP_DigestUpdate(s->md, s->buf, (size_t)n))
            abort();
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_DigestFinal_ex(s->md, md, &mdlen) || mdlen != 32)
        abort();
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return strcmp(hex, digest + 7) == 0 ? 0 : 1;
}

static struct archive *new_reader(void)
{
    struct archive *a = archive_read_new();
    if (!a)
        abort();
    /* no archive_read_support_filter_all(): some of its filters run
     * external programs; images only use gzip, zstd or no compression */
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_empty(a);
    return a;
}

static int unpack(struct archive *a, const char *dest, const char *label, oak_err_t *err)
{
    unpack_t u = {.root = -1, .label = label};
    int rc = -1;
    u.root = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.root < 0) {
        oak_err_errno(err, errno, "%s: open %s", label, dest);
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            oak_err_set(err, OAK_E_INVALID, "%s: corrupt archive: %s", label,
                        archive_error_string(a) ? archive_error_string(a) : "unreadable");
            goto out;
        }
        if (++u.entries > LAYER_MAX_ENTRIES) {
            oak_err_set(err, OAK_E_TOO_LARGE, "%s has more than %d entries", label,
                        LAYER_MAX_ENTRIES);
            goto out;
        }
        if (do_entry(&u, a, e, err) < 0)
            goto out;
    }
    rc = finish_dirs(&u, err);
out:
    for (size_t i = 0; i < u.ndirs; i++)
        free(u.dirs[i].path);
    free(u.dirs);
    if (u.root >= 0)
        close(u.root);
    return rc;
}

int layer_unpack_fd(int fd, const char *dest, const char *digest, const char *label, oak_err_t *err)
{
    if (!label)
        label = digest ? digest : "layer";
    src_t src = {.fd = fd, .buf = xmalloc(READ_BUF)};
    if (digest) {
        src.md = EVP_MD_CTX_new();
        if (!src.md || !EVP_DigestInit_ex(src.md, EVP_sha256(), NULL))
            abort();
    }
    _cleanup_(archive_freep) struct archive *a = new_reader();
    int rc;
    if (archive_read_open(a, &src, NULL, src_read, NULL) != ARCHIVE_OK) {
        rc = oak_err_set(err, OAK_E_INVALID, "%s: not a tar archive: %s", label,
                         archive_error_string(a) ? archive_error_string(a) : "unreadable");
    } else {
        rc = unpack(a, dest, label, err);
    }
    /* a digest mismatch explains a corrupt archive better than libarchive */
    if (digest && (rc == 0 || (err && err->code == OAK_E_INVALID))) {
        int v = src_verify(&src, digest);
        if (v < 0)
            rc = oak_err_errno(err, errno, "%s: read", label);
        else if (v > 0)
            rc = oak_err_set(err, OAK_E_INVALID, "blob %s: content does not match its digest",
                             digest);
    }
    EVP_MD_CTX_free(src.md);
    free(src.buf);
    return rc;
}

int layer_unpack_mem(const void *buf, size_t len, const char *dest, oak_err_t *err)
{
    _cleanup_(archive_freep) struct archive *a = new_reader();
    if (archive_read_open_memory(a, buf, len) != ARCHIVE_OK)
        return oak_err_set(err, OAK_E_INVALID, "layer: not a tar archive: %s",
                           archive_error_string(a) ? archive_error_string(a) : "unreadable");
    return unpack(a, dest, "layer", err);
}
