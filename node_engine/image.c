/* The image store and the pull procedure (see image.h). A pull resolves
 * the reference to a top digest (the reference's digest; a tag through
 * the refs index or the registry; an OCI layout's index.json), then walks
 * index -> platform manifest -> config -> layers, taking each from the
 * store when present and from the source (a registry, through registry.c,
 * or the layout directory) otherwise.
 *
 * Concurrency: the store object is immutable after opening; all
 * coordination is on disk. Fetching or unpacking a digest happens under an
 * exclusive flock(2) on locks/<hex> (opened per acquisition, so threads of
 * one process exclude each other as processes do); results are built
 * under tmp/ with names unique to the process and call and renamed into
 * place once complete and verified, so readers never need the lock. */
#include "node_engine/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "lib/oak_fs.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_hash.h"
#include "lib/oak_json.h"
#include "node_engine/image_ref.h"
#include "node_engine/layer.h"
#include "node_engine/manifest.h"
#include "node_engine/registry.h"

#define OCI_REF_ANNOTATION "org.opencontainers.image.ref.name"
#define REF_FILE_MAX       4096

struct image_store {
    char *dir; /* absolute, symlinks resolved */
};

/* One pull in progress. */
typedef struct {
    image_store_t *s;
    const image_ref_t *ref;
    const char *ref_str; /* canonical */
    image_pull_opts_t o;
    registry_t *reg; /* opened on first need */
    char *layout;    /* resolved directory of an oci: reference */
    unsigned blobs;  /* blobs copied from a layout */
    uint64_t bytes;
} pull_t;

static atomic_ulong tmp_seq;

static void manifest_freep(manifest_t **m)
{
    manifest_free(*m);
}

static void config_freep(manifest_config_t **c)
{
    manifest_config_free(*c);
}

/* Prefixes err's message with a formatted context, keeping its code. */
static int err_wrap(oak_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int err_wrap(oak_err_t *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[256], old[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    return oak_err_set(err, err->code, "%s: %s", prefix, old);
}

/* ---- files ---- */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void rmtree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tmp_path(const image_store_t *s, const char *kind)
{
    unsigned long n = atomic_fetch_add(&tmp_seq, 1) + 1;
    return xasprintf("%s/tmp/%d.%lu.%s", s->dir, (int)getpid(), n, kind);
}

static int write_full(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes path atomically: a unique file under tmp/, fsync, rename. */
static int write_atomic(const image_store_t *s, const char *path, const char *buf, size_t len,
                        oak_err_t *err)
{
    _cleanup_free_ char *tmp = tmp_path(s, "file");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return oak_err_errno(err, errno, "create %s", tmp);
    if (write_full(fd, buf, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return oak_err_errno(err, e, "write %s", tmp);
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return oak_err_errno(err, e, "rename %s to %s", tmp, path);
    }
    return 0;
}

/* Reads a whole file of at most max bytes: 1 read, 0 missing, -1 error
 * (OAK_E_TOO_LARGE when larger). */
static int read_file(const char *path, size_t max, char **buf, size_t *len, oak_err_t *err)
{
    *buf = NULL;
    *len = 0;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : oak_err_errno(err, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return oak_err_errno(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return oak_err_set(err, OAK_E_INVALID, "%s is not a regular file", path);
    if ((uint64_t)st.st_size > max)
        return oak_err_set(err, OAK_E_TOO_LARGE, "%s: %lld bytes, over the %zu byte limit", path,
                           (long long)st.st_size, max);
    char *b = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(b);
            return oak_err_errno(err, e, "read %s", path);
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    b[got] = 0;
    *buf = b;
    *len = got;
    return 1;
}

static bool digest_matches(const char *buf, size_t len, const char *digest)
{
    char hex[65];
    oak_sha256_hex(buf, len, hex);
    return strcmp(hex, digest + 7) == 0;
}

/* An exclusive lock on one digest; close the fd to release. */
static int lock_digest(const image_store_t *s, const char *digest, oak_err_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/locks/%s", s->dir, digest + 7);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return oak_err_errno(err, errno, "open lock %s", path);
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return oak_err_errno(err, e, "lock %s", path);
        }
    }
    return fd;
}

static char *blob_path(const image_store_t *s, const char *digest)
{
    return xasprintf("%s/blobs/sha256/%s", s->dir, digest + 7);
}

static char *layer_path(const image_store_t *s, const char *digest)
{
    return xasprintf("%s/layers/%s", s->dir, digest + 7);
}

/* A small blob from the store, verified: 1 found, 0 missing (a corrupt
 * copy is removed), -1 error. */
static int store_read_blob(const image_store_t *s, const char *digest, char **buf, size_t *len,
                           oak_err_t *err)
{
    _cleanup_free_ char *path = blob_path(s, digest);
    int rc = read_file(path, MANIFEST_MAX_BYTES, buf, len, err);
    if (rc <= 0)
        return rc;
    if (!digest_matches(*buf, *len, digest)) {
        free(*buf);
        *buf = NULL;
        *len = 0;
        unlink(path);
        return 0;
    }
    return 1;
}

/* ---- store ---- */

/* Removes tmp/ entries of processes that no longer exist. */
static void clean_tmp(const image_store_t *s)
{
    _cleanup_free_ char *dir = xasprintf("%s/tmp", s->dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (e->d_name[0] == '.' || end == e->d_name || *end != '.' || pid <= 0)
            continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
        rmtree(p);
    }
    closedir(d);
}

int image_store_open(const char *dir, image_store_t **out, oak_err_t *err)
{
    *out = NULL;
    if (oak_mkdir_p(dir, 0700, err) < 0)
        return -1;
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return oak_err_errno(err, errno, "resolve %s", dir);
    static const char *const subdirs[] = {"blobs", "blobs/sha256", "layers",
                                          "refs",  "locks",        "tmp"};
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", real, subdirs[i]);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return oak_err_errno(err, errno, "create %s", p);
    }
    image_store_t *s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(real);
    clean_tmp(s);
    *out = s;
    return 0;
}

void image_store_close(image_store_t *s)
{
    if (!s)
        return;
    free(s->dir);
    free(s);
}

const char *image_store_dir(const image_store_t *s)
{
    return s->dir;
}

static struct {
    const char *arch, *variant;
    char machine[65];
} host;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_init(void)
{
    static const struct {
        const char *machine, *arch, *variant;
    } map[] = {
        {"x86_64", "amd64", NULL},  {"amd64", "amd64", NULL},
        {"aarch64", "arm64", NULL}, {"arm64", "arm64", NULL},
        {"armv8l", "arm", "v8"},    {"armv7l", "arm", "v7"},
        {"armv7", "arm", "v7"},     {"armv6l", "arm", "v6"},
        {"armv5tel", "arm", "v5"},  {"i386", "386", NULL},
        {"i486", "386", NULL},      {"i586", "386", NULL},
        {"i686", "386", NULL},      {"ppc64le", "ppc64le", NULL},
        {"s390x", "s390x", NULL},   {"riscv64", "riscv64", NULL},
        {"mips64", "mips64", NULL}, {"loongarch64", "loong64", NULL},
    };
    struct utsname u;
    host.arch = "amd64";
    if (uname(&u) < 0)
        return;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(u.machine, map[i].machine) == 0) {
            host.arch = map[i].arch;
            host.variant = map[i].variant;
            return;
        }
    /* an unknown machine: the kernel's name for it */
    snprintf(host.machine, sizeof(host.machine), "%s", u.machine);
    host.arch = host.machine;
}

const char *image_host_arch(const char **variant)
{
    pthread_once(&host_once, host_init);
    if (variant)
        *variant = host.variant;
    return host.arch;
}

/* ---- refs index ---- */

static char *ref_file(const image_store_t *s, const char *ref)
{
    char hex[65];
    oak_sha256_hex(ref, strlen(ref), hex);
    return xasprintf("%s/refs/%s.json", s->dir, hex);
}

/* The digest the store last resolved ref to: 1 found, 0 not. */
static int refs_get(const image_store_t *s, const char *ref, char digest[72])
{
    _cleanup_free_ char *path = ref_file(s, ref);
    json_auto_t *j = NULL;
    if (oak_json_load_file(path, REF_FILE_MAX, &j, NULL) < 0)
        return 0;
    const char *r = oak_json_str(j, "ref");
    const char *d = oak_json_str(j, "digest");
    if (!r || !d || strcmp(r, ref) != 0 || !image_digest_valid(d))
        return 0;
    snprintf(digest, 72, "%s", d);
    return 1;
}

static int refs_put(const image_store_t *s, const char *ref, const char *digest, oak_err_t *err)
{
    _cleanup_free_ char *path = ref_file(s, ref);
    json_auto_t *j = json_pack("{s:s, s:s}", "ref", ref, "digest", digest);
    _cleanup_free_ char *text = oak_json_dump(j);
    return write_atomic(s, path, text, strlen(text), err);
}

/* ---- sources ---- */

static int need_registry(pull_t *p, oak_err_t *err)
{
    if (p->reg)
        return 0;
    if (p->o.policy == IMAGE_PULL_NEVER)
        return oak_err_set(err, OAK_E_NOT_FOUND,
                           "image %s is not (completely) in the store and the pull policy is "
                           "never",
                           p->ref_str);
    registry_opts_t ro = {.insecure = p->o.insecure,
                          .username = p->o.username,
                          .password = p->o.password,
                          .timeout_ms = p->o.timeout_ms};
    return registry_open(image_ref_endpoint(p->ref), p->ref->repository, &ro, &p->reg, err);
}

static char *layout_blob(const pull_t *p, const char *digest)
{
    return xasprintf("%s/blobs/sha256/%s", p->layout, digest + 7);
}

/* A manifest or config from the source, verified against digest (and
 * size when >= 0). config selects the blob API (configs are blobs). */
static int source_small(pull_t *p, const char *digest, int64_t size, bool config, char **buf,
                        size_t *len, oak_err_t *err)
{
    *buf = NULL;
    *len = 0;
    if (p->layout) {
        _cleanup_free_ char *path = layout_blob(p, digest);
        int rc = read_file(path, MANIFEST_MAX_BYTES, buf, len, err);
        if (rc == 0)
            return oak_err_set(err, OAK_E_NOT_FOUND, "%s: blob %s is missing from the layout",
                               p->ref_str, digest);
        if (rc < 0)
            return -1;
        if (!digest_matches(*buf, *len, digest)) {
            free(*buf);
            *buf = NULL;
            return oak_err_set(err, OAK_E_INVALID,
                               "blob %s: content does not match its digest "
                               "(in the layout %s)",
                               digest, p->layout);
        }
        p->blobs++;
        p->bytes += *len;
    } else {
        if (need_registry(p, err) < 0)
            return -1;
        if (!config) {
            if (registry_get_manifest(p->reg, digest, buf, len, NULL, err) < 0)
                return -1;
        } else {
            _cleanup_free_ char *tmp = tmp_path(p->s, "config");
            _cleanup_close_ int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0)
                return oak_err_errno(err, errno, "create %s", tmp);
            int rc = registry_get_blob(p->reg, digest, size, MANIFEST_MAX_BYTES, fd, err);
            if (rc == 0)
                rc = read_file(tmp, MANIFEST_MAX_BYTES, buf, len, err) < 0 ? -1 : 0;
            unlink(tmp);
            if (rc < 0)
                return -1;
        }
    }
    if (size >= 0 && (uint64_t)size != *len) {
        free(*buf);
        *buf = NULL;
        return oak_err_set(err, OAK_E_INVALID, "blob %s: %zu bytes, its descriptor says %lld",
                           digest, *len, (long long)size);
    }
    return 0;
}

/* A manifest, index or config by digest: from the store, else fetched
 * (under the digest's lock) and stored. */
static int ensure_small(pull_t *p, const char *digest, int64_t size, bool config, char **buf,
                        size_t *len, oak_err_t *err)
{
    int rc = store_read_blob(p->s, digest, buf, len, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    _cleanup_close_ int lock = lock_digest(p->s, digest, err);
    if (lock < 0)
        return -1;
    rc = store_read_blob(p->s, digest, buf, len, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (source_small(p, digest, size, config, buf, len, err) < 0)
        return -1;
    _cleanup_free_ char *path = blob_path(p->s, digest);
    if (write_atomic(p->s, path, *buf, *len, err) < 0) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

/* Unpacks the layer desc into layers/<hex> unless it is there. */
static int ensure_layer(pull_t *p, const manifest_desc_t *desc, oak_err_t *err)
{
    _cleanup_free_ char *dest = layer_path(p->s, desc->digest);
    struct stat st;
    if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    _cleanup_close_ int lock = lock_digest(p->s, desc->digest, err);
    if (lock < 0)
        return -1;
    if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;

    _cleanup_close_ int fd = -1;
    _cleanup_free_ char *blob_tmp = NULL;
    if (p->layout) {
        _cleanup_free_ char *path = layout_blob(p, desc->digest);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return errno == ENOENT ? oak_err_set(err, OAK_E_NOT_FOUND,
                                                 "%s: layer %s is missing from the layout",
                                                 p->ref_str, desc->digest)
                                   : oak_err_errno(err, errno, "open %s", path);
        if (fstat(fd, &st) < 0)
            return oak_err_errno(err, errno, "stat %s", path);
        if (st.st_size != desc->size)
            return oak_err_set(err, OAK_E_INVALID,
                               "blob %s: %lld bytes, its descriptor says "
                               "%lld",
                               desc->digest, (long long)st.st_size, (long long)desc->size);
        p->blobs++;
        p->bytes += (uint64_t)st.st_size;
    } else {
        if (need_registry(p, err) < 0)
            return -1;
        blob_tmp = tmp_path(p->s, "blob");
        fd = open(blob_tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return oak_err_errno(err, errno, "create %s", blob_tmp);
        /* the name is only needed while the blob downloads */
        unlink(blob_tmp);
        if (registry_get_blob(p->reg, desc->digest, desc->size, MANIFEST_MAX_LAYER_BYTES, fd, err) <
            0)
            return -1;
        if (lseek(fd, 0, SEEK_SET) < 0)
            return oak_err_errno(err, errno, "seek %s", blob_tmp);
    }
    _cleanup_free_ char *tmp = tmp_path(p->s, "layer");
    if (mkdir(tmp, 0755) < 0)
        return oak_err_errno(err, errno, "create %s", tmp);
    int rc = layer_unpack_fd(fd, tmp, desc->digest, NULL, err);
    if (rc == 0) {
        /* the layer must be on disk before its name says it is complete */
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) < 0)
            rc = oak_err_errno(err, errno, "sync %s", tmp);
    }
    if (rc == 0 && rename(tmp, dest) < 0)
        rc = oak_err_errno(err, errno, "rename %s to %s", tmp, dest);
    if (rc < 0)
        rmtree(tmp);
    return rc;
}

/* ---- resolution ---- */

static int layout_open(pull_t *p, oak_err_t *err)
{
    if (!p->o.oci_root)
        return oak_err_set(err, OAK_E_FORBIDDEN,
                           "%s: local OCI layouts are not enabled on this worker", p->ref_str);
    char root[PATH_MAX], dir[PATH_MAX];
    if (!realpath(p->o.oci_root, root))
        return oak_err_errno(err, errno, "resolve %s", p->o.oci_root);
    if (!realpath(p->ref->oci_dir, dir)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return oak_err_set(err, OAK_E_NOT_FOUND, "%s: no such directory", p->ref_str);
        return oak_err_errno(err, errno, "resolve %s", p->ref->oci_dir);
    }
    size_t rl = strlen(root);
    bool inside = strncmp(dir, root, rl) == 0 &&
                  (dir[rl] == '/' || dir[rl] == 0 || (rl == 1 && root[0] == '/'));
    if (!inside)
        return oak_err_set(err, OAK_E_FORBIDDEN, "%s: OCI layouts must lie under %s", p->ref_str,
                           root);
    p->layout = xstrdup(dir);
    return 0;
}

/* The top digest of an oci: reference, from the layout's index.json. */
static int layout_top(pull_t *p, char top[72], oak_err_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/index.json", p->layout);
    _cleanup_free_ char *buf = NULL;
    size_t len;
    int rc = read_file(path, MANIFEST_MAX_BYTES, &buf, &len, err);
    if (rc == 0)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s: not an OCI image layout (no index.json)",
                           p->ref_str);
    if (rc < 0)
        return -1;
    _cleanup_(manifest_freep) manifest_t *idx = NULL;
    if (manifest_parse(buf, len, NULL, &idx, err) < 0)
        return err_wrap(err, "%s: index.json", p->ref_str);
    if (idx->kind != MANIFEST_INDEX)
        return oak_err_set(err, OAK_E_INVALID, "%s: index.json is not an image index", p->ref_str);
    const manifest_desc_t *pick = NULL;
    if (!p->ref->tag) {
        if (idx->nmanifests != 1)
            return oak_err_set(err, OAK_E_INVALID,
                               "%s: the layout holds %zu images; name one with :<tag>", p->ref_str,
                               idx->nmanifests);
        pick = &idx->manifests[0];
    } else {
        for (size_t i = 0; i < idx->nmanifests && !pick; i++)
            if (idx->manifests[i].ref_name && strcmp(idx->manifests[i].ref_name, p->ref->tag) == 0)
                pick = &idx->manifests[i];
        if (!pick)
            return oak_err_set(err, OAK_E_NOT_FOUND, "%s: no image tagged '%s' in the layout",
                               p->ref_str, p->ref->tag);
    }
    snprintf(top, 72, "%s", pick->digest);
    return 0;
}

/* The top digest of a registry reference. */
static int registry_top(pull_t *p, char top[72], oak_err_t *err)
{
    if (p->ref->digest) {
        snprintf(top, 72, "%s", p->ref->digest);
        return 0;
    }
    if (p->o.policy != IMAGE_PULL_ALWAYS && refs_get(p->s, p->ref_str, top))
        return 0;
    if (need_registry(p, err) < 0)
        return -1;
    _cleanup_free_ char *body = NULL, *ctype = NULL;
    size_t len;
    if (registry_get_manifest(p->reg, p->ref->tag, &body, &len, &ctype, err) < 0)
        return -1;
    /* parse before storing: no junk in the store */
    _cleanup_(manifest_freep) manifest_t *m = NULL;
    if (manifest_parse(body, len, ctype, &m, err) < 0)
        return -1;
    char hex[65];
    oak_sha256_hex(body, len, hex);
    snprintf(top, 72, "sha256:%s", hex);
    _cleanup_free_ char *path = blob_path(p->s, top);
    return write_atomic(p->s, path, body, len, err);
}

static char **strv_steal(char ***v)
{
    char **r = *v;
    *v = NULL;
    if (!r)
        r = xcalloc(1, sizeof(*r));
    return r;
}

static int resolve(pull_t *p, const char *top, image_t *img, oak_err_t *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len;
    if (ensure_small(p, top, -1, false, &buf, &len, err) < 0)
        return -1;
    _cleanup_(manifest_freep) manifest_t *m = NULL;
    if (manifest_parse(buf, len, NULL, &m, err) < 0)
        return err_wrap(err, "%s (%s)", p->ref_str, top);
    snprintf(img->digest, sizeof(img->digest), "%s", top);
    snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", top);
    if (m->kind == MANIFEST_INDEX) {
        const manifest_desc_t *d =
            manifest_select_platform(m, p->o.os, p->o.arch, p->o.variant, err);
        if (!d)
            return err_wrap(err, "%s", p->ref_str);
        snprintf(img->manifest_digest, sizeof(img->manifest_digest), "%s", d->digest);
        int64_t size = d->size;
        manifest_free(m);
        m = NULL;
        free(buf);
        buf = NULL;
        if (size > (int64_t)MANIFEST_MAX_BYTES)
            return oak_err_set(err, OAK_E_INVALID, "%s: manifest %s is over %u bytes", p->ref_str,
                               img->manifest_digest, MANIFEST_MAX_BYTES);
        if (ensure_small(p, img->manifest_digest, size, false, &buf, &len, err) < 0)
            return -1;
        if (manifest_parse(buf, len, NULL, &m, err) < 0)
            return err_wrap(err, "%s (%s)", p->ref_str, img->manifest_digest);
        if (m->kind != MANIFEST_IMAGE)
            return oak_err_set(err, OAK_E_INVALID, "%s: nested image indexes are not supported",
                               p->ref_str);
    }
    snprintf(img->config_digest, sizeof(img->config_digest), "%s", m->config.digest);
    _cleanup_free_ char *cbuf = NULL;
    size_t clen;
    if (ensure_small(p, m->config.digest, m->config.size, true, &cbuf, &clen, err) < 0)
        return -1;
    _cleanup_(config_freep) manifest_config_t *cfg = NULL;
    if (manifest_config_parse(cbuf, clen, &cfg, err) < 0)
        return err_wrap(err, "%s: config %s", p->ref_str, m->config.digest);
    if (cfg->os && p->o.os && strcmp(cfg->os, p->o.os) != 0)
        return oak_err_set(err, OAK_E_INVALID, "%s: the image is for os '%.40s', not '%s'",
                           p->ref_str, cfg->os, p->o.os);
    if (cfg->ndiff_ids && cfg->ndiff_ids != m->nlayers)
        return oak_err_set(err, OAK_E_INVALID, "%s: the config lists %zu layers, the manifest %zu",
                           p->ref_str, cfg->ndiff_ids, m->nlayers);
    for (size_t i = 0; i < m->nlayers; i++)
        if (ensure_layer(p, &m->layers[i], err) < 0)
            return -1;
    /* A layer listed twice (Docker's repeated empty layers) is kept at its
     * top-most place only: overlayfs refuses a lowerdir given twice, and
     * the upper copy redoes whatever the lower one did. */
    img->layers = xcalloc(m->nlayers + 1, sizeof(*img->layers));
    for (size_t i = 0; i < m->nlayers; i++) {
        bool again = false;
        for (size_t j = i + 1; j < m->nlayers && !again; j++)
            again = strcmp(m->layers[i].digest, m->layers[j].digest) == 0;
        if (!again)
            img->layers[img->nlayers++] = layer_path(p->s, m->layers[i].digest);
    }
    img->nenv = cfg->nenv;
    img->env = strv_steal(&cfg->env);
    img->nentry = cfg->nentry;
    img->entrypoint = strv_steal(&cfg->entrypoint);
    img->ncmd = cfg->ncmd;
    img->cmd = strv_steal(&cfg->cmd);
    img->workdir = oak_steal(&cfg->workdir);
    img->user = oak_steal(&cfg->user);
    return 0;
}

static void image_freep(image_t **img)
{
    image_free(*img);
}

int image_pull(image_store_t *s, const char *ref, const image_pull_opts_t *o, image_t **out,
               oak_err_t *err)
{
    *out = NULL;
    image_ref_t r;
    if (image_ref_parse(ref, &r, err) < 0)
        return -1;
    _cleanup_free_ char *canon = image_ref_format(&r);
    pull_t p = {.s = s, .ref = &r, .ref_str = canon};
    if (o)
        p.o = *o;
    const char *variant = NULL;
    const char *host_arch = image_host_arch(&variant);
    if (!p.o.os)
        p.o.os = "linux";
    if (!p.o.arch) {
        p.o.arch = host_arch;
        p.o.variant = variant;
    }
    _cleanup_(image_freep) image_t *img = xcalloc(1, sizeof(*img));
    img->ref = xstrdup(canon);
    char top[72];
    int rc;
    if (r.oci_layout)
        rc = layout_open(&p, err) < 0 || layout_top(&p, top, err) < 0 ? -1 : 0;
    else
        rc = registry_top(&p, top, err);
    if (rc == 0)
        rc = resolve(&p, top, img, err);
    if (rc == 0 && !r.oci_layout && !r.digest && r.tag)
        rc = refs_put(s, canon, top, err);
    if (p.reg) {
        registry_stats_t st;
        registry_stats(p.reg, &st);
        img->http_requests = st.requests;
        img->blobs_fetched = st.blobs;
        img->bytes_fetched = st.bytes;
    }
    img->blobs_fetched += p.blobs;
    img->bytes_fetched += p.bytes;
    registry_close(p.reg);
    free(p.layout);
    image_ref_clear(&r);
    if (rc < 0)
        return -1;
    *out = oak_steal(&img);
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void image_free(image_t *img)
{
    if (!img)
        return;
    free(img->ref);
    strv_free(img->layers, img->nlayers);
    strv_free(img->env, img->nenv);
    strv_free(img->entrypoint, img->nentry);
    strv_free(img->cmd, img->ncmd);
    free(img->workdir);
    free(img->user);
    free(img);
}
