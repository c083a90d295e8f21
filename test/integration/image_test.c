/* Integration tests of the node engine's image store (node_engine/image.c,
 * registry.c, layer.c) against a real registry (Debian's docker-registry
 * on a free port, test/common/registry.h) serving images built from
 * busybox-static with umoci and pushed with skopeo
 * (test/common/testimage.h): pulls by tag, digest and index platform, the
 * cache (no request on a second pull), a corrupted blob in the registry's
 * storage, unknown tags and repositories, an unreachable registry, HTTPS
 * required unless insecure, whiteouts checked through a real overlayfs
 * mount, local OCI layouts and their confinement, concurrent pulls of one
 * image into one store, basic and bearer-token authentication.
 * One registry with test/busybox:{v1,v2,multi} serves most tests; tests
 * that change a registry start their own. Each test uses fresh stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_hash.h"
#include "node_engine/image.h"
#include "node_engine/image_ref.h"
#include "test/common/harness.h"
#include "test/common/registry.h"
#include "test/common/testimage.h"

typedef struct {
    char *dir;
    th_registry_t reg;
    char ref_v1[128], ref_v2[128], ref_multi[128];
} fx_t;

static fx_t *g;

static int group_setup(void **state)
{
    if (!th_registry_available() || !th_testimage_available() || !th_testimage_layout())
        return 0;
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-image");
    _cleanup_free_ char *rdir = xasprintf("%s/registry", fx->dir);
    if (th_registry_start(&fx->reg, rdir, TH_REGISTRY_OPEN, NULL, NULL) < 0)
        fail_msg("registry did not start");
    if (th_testimage_push(fx->reg.port, "v1", "test/busybox", "v1", false) < 0 ||
        th_testimage_push(fx->reg.port, "v2", "test/busybox", "v2", false) < 0 ||
        th_testimage_push(fx->reg.port, "multi", "test/busybox", "multi", false) < 0)
        fail_msg("skopeo could not push the test images");
    snprintf(fx->ref_v1, sizeof(fx->ref_v1), "%s/test/busybox:v1", fx->reg.addr);
    snprintf(fx->ref_v2, sizeof(fx->ref_v2), "%s/test/busybox:v2", fx->reg.addr);
    snprintf(fx->ref_multi, sizeof(fx->ref_multi), "%s/test/busybox:multi", fx->reg.addr);
    g = fx;
    return 0;
}

static int group_teardown(void **state)
{
    if (!g)
        return 0;
    th_registry_stop(&g->reg);
    th_rmtree(g->dir);
    free(g->dir);
    free(g);
    g = NULL;
    return 0;
}

#define FX()                                                                                       \
    fx_t *fx = g;                                                                                  \
    if (!fx)                                                                                       \
        skip();

static const image_pull_opts_t insecure = {.insecure = true, .timeout_ms = 10000};

/* A fresh store in the fixture's directory. */
static image_store_t *new_store(fx_t *fx, const char *name)
{
    _cleanup_free_ char *dir = xasprintf("%s/%s", fx->dir, name);
    image_store_t *s = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (image_store_open(dir, &s, &err) < 0)
        fail_msg("image_store_open: %s", err.msg);
    return s;
}

static image_t *pull_ok(image_store_t *s, const char *ref, const image_pull_opts_t *o)
{
    image_t *img = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (image_pull(s, ref, o, &img, &err) < 0)
        fail_msg("pull %s: %s", ref, err.msg);
    return img;
}

static oak_code_t pull_fails(image_store_t *s, const char *ref, const image_pull_opts_t *o,
                             char *msg, size_t msglen)
{
    image_t *img = NULL;
    oak_err_t err = OAK_ERR_INIT;
    int rc = image_pull(s, ref, o, &img, &err);
    if (rc == 0)
        fail_msg("pull %s succeeded, expected a failure", ref);
    assert_null(img);
    if (msg)
        snprintf(msg, msglen, "%s", err.msg);
    printf("  expected failure for %s: [%s] %s\n", ref, oak_err_code_name(err.code), err.msg);
    oak_code_t code = err.code;
    oak_err_clear(&err);
    return code;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static int store_count(image_store_t *s, const char *sub)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", image_store_dir(s), sub);
    return count_entries(p);
}

static void assert_lstat(const char *dir, const char *rel, mode_t type, struct stat *out)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    struct stat st;
    if (lstat(p, &st) < 0)
        fail_msg("%s: %s", p, strerror(errno));
    if ((st.st_mode & S_IFMT) != type)
        fail_msg("%s has type %o, expected %o", p, st.st_mode & S_IFMT, type);
    if (out)
        *out = st;
}

static bool exists(const char *dir, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static void assert_busybox_v1(const image_t *img)
{
    assert_true(image_digest_valid(img->digest));
    assert_true(image_digest_valid(img->config_digest));
    assert_int_equal(img->nlayers, 1);
    struct stat st;
    assert_lstat(img->layers[0], "bin/busybox", S_IFREG, &st);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(st.st_uid, 0);
    assert_true(st.st_size > 100000);
    assert_lstat(img->layers[0], "bin/sh", S_IFLNK, NULL);
    char target[64] = "";
    _cleanup_free_ char *sh = xasprintf("%s/bin/sh", img->layers[0]);
    assert_true(readlink(sh, target, sizeof(target) - 1) > 0);
    assert_string_equal(target, "busybox");
    assert_lstat(img->layers[0], "tmp", S_IFDIR, &st);
    assert_int_equal(st.st_mode & 07777, 01777);
    assert_lstat(img->layers[0], "etc/to-delete", S_IFREG, NULL);
    /* the image config */
    bool foo = false, path = false;
    for (size_t i = 0; i < img->nenv; i++) {
        foo |= strcmp(img->env[i], "FOO=bar") == 0;
        path |= strncmp(img->env[i], "PATH=", 5) == 0;
    }
    assert_true(foo && path);
    assert_int_equal(img->ncmd, 3);
    assert_string_equal(img->cmd[0], "/bin/sh");
    assert_string_equal(img->cmd[1], "-c");
    assert_string_equal(img->cmd[2], "echo hello");
    assert_null(img->cmd[3]);
    assert_int_equal(img->nentry, 0);
    assert_non_null(img->entrypoint);
    assert_string_equal(img->workdir, "/data");
    assert_string_equal(img->user, "0:0");
}

/* ---- tests ---- */

static void test_pull_by_tag(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "tag");
    image_t *img = pull_ok(s, fx->ref_v1, &insecure);
    assert_busybox_v1(img);
    assert_string_equal(img->manifest_digest, img->digest);
    _cleanup_free_ char *want = xasprintf("%s/test/busybox:v1", fx->reg.addr);
    assert_string_equal(img->ref, want);
    assert_int_equal(img->blobs_fetched, 2); /* config + layer */
    assert_true(img->bytes_fetched > 100000);
    assert_true(img->http_requests >= 3);
    /* the layer lives under the store, named by its digest */
    _cleanup_free_ char *prefix = xasprintf("%s/layers/", image_store_dir(s));
    assert_true(strncmp(img->layers[0], prefix, strlen(prefix)) == 0);
    assert_int_equal(strlen(img->layers[0]) - strlen(prefix), 64);
    assert_int_equal(store_count(s, "tmp"), 0);
    image_free(img);
    image_store_close(s);
}

static void test_cache(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "cache");
    image_t *a = pull_ok(s, fx->ref_v1, &insecure);
    struct stat st1, st2;
    assert_int_equal(stat(a->layers[0], &st1), 0);

    /* default policy: the cached reference, no request at all */
    image_t *b = pull_ok(s, fx->ref_v1, &insecure);
    assert_int_equal(b->http_requests, 0);
    assert_int_equal(b->blobs_fetched, 0);
    assert_string_equal(a->digest, b->digest);
    assert_string_equal(a->layers[0], b->layers[0]);
    assert_busybox_v1(b);

    /* always: the tag is resolved again (one manifest request), no blob */
    image_pull_opts_t o = insecure;
    o.policy = IMAGE_PULL_ALWAYS;
    image_t *c = pull_ok(s, fx->ref_v1, &o);
    assert_int_equal(c->http_requests, 1);
    assert_int_equal(c->blobs_fetched, 0);
    assert_string_equal(a->digest, c->digest);
    assert_int_equal(stat(c->layers[0], &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);

    /* v2 shares v1's layer: only its own layer and config are fetched */
    image_t *d = pull_ok(s, fx->ref_v2, &insecure);
    assert_int_equal(d->nlayers, 2);
    assert_string_equal(d->layers[0], a->layers[0]);
    assert_int_equal(d->blobs_fetched, 2);

    /* the same image reopened from disk, never asking the registry */
    image_store_close(s);
    s = new_store(fx, "cache");
    o.policy = IMAGE_PULL_NEVER;
    o.insecure = false; /* would fail if it tried */
    image_t *e = pull_ok(s, fx->ref_v1, &o);
    assert_int_equal(e->http_requests, 0);
    assert_string_equal(e->digest, a->digest);
    /* under "never" an image not in the store is not found */
    char msg[512];
    _cleanup_free_ char *other = xasprintf("%s/test/busybox:multi", fx->reg.addr);
    assert_int_equal(pull_fails(s, other, &o, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    assert_non_null(strstr(msg, "never"));

    image_free(a);
    image_free(b);
    image_free(c);
    image_free(d);
    image_free(e);
    image_store_close(s);
}

static void test_pull_by_digest(void **state)
{
    FX();
    image_store_t *s1 = new_store(fx, "digest1");
    image_t *a = pull_ok(s1, fx->ref_v1, &insecure);
    image_store_t *s2 = new_store(fx, "digest2");
    _cleanup_free_ char *by_digest = xasprintf("%s/test/busybox@%s", fx->reg.addr, a->digest);
    image_t *b = pull_ok(s2, by_digest, &insecure);
    assert_string_equal(b->digest, a->digest);
    assert_string_equal(b->config_digest, a->config_digest);
    assert_busybox_v1(b);
    _cleanup_free_ char *canon = xasprintf("%s/test/busybox@%s", fx->reg.addr, a->digest);
    assert_string_equal(b->ref, canon);
    /* tag and digest: the digest decides */
    _cleanup_free_ char *both = xasprintf("%s/test/busybox:v2@%s", fx->reg.addr, a->digest);
    image_t *c = pull_ok(s2, both, &insecure);
    assert_string_equal(c->config_digest, a->config_digest);
    assert_int_equal(c->nlayers, 1);
    /* a digest the registry does not have */
    _cleanup_free_ char *missing = xasprintf("%s/test/busybox@sha256:%064d", fx->reg.addr, 0);
    char msg[512];
    assert_int_equal(pull_fails(s2, missing, &insecure, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    assert_non_null(strstr(msg, "MANIFEST_UNKNOWN"));
    image_free(a);
    image_free(b);
    image_free(c);
    image_store_close(s1);
    image_store_close(s2);
}

static void test_index_platforms(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "index");
    image_pull_opts_t o = insecure;
    o.arch = "amd64";
    image_t *amd = pull_ok(s, fx->ref_multi, &o);
    assert_int_equal(amd->nlayers, 1);
    assert_string_not_equal(amd->digest, amd->manifest_digest);
    o.arch = "arm64";
    o.variant = "v8";
    o.policy = IMAGE_PULL_ALWAYS;
    image_t *arm = pull_ok(s, fx->ref_multi, &o);
    assert_int_equal(arm->nlayers, 2);
    assert_string_equal(arm->digest, amd->digest);
    assert_string_not_equal(arm->manifest_digest, amd->manifest_digest);
    /* the index entry and the platform's manifest by digest give the same */
    _cleanup_free_ char *by_manifest =
        xasprintf("%s/test/busybox@%s", fx->reg.addr, arm->manifest_digest);
    image_t *direct = pull_ok(s, by_manifest, &insecure);
    assert_int_equal(direct->nlayers, 2);
    assert_string_equal(direct->config_digest, arm->config_digest);
    char msg[512];
    o.arch = "riscv64";
    o.variant = NULL;
    assert_int_equal(pull_fails(s, fx->ref_multi, &o, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    assert_non_null(strstr(msg, "linux/riscv64"));
    assert_non_null(strstr(msg, "linux/amd64"));
    assert_non_null(strstr(msg, "linux/arm64/v8"));
    image_free(amd);
    image_free(arm);
    image_free(direct);
    image_store_close(s);
}

static void test_corrupt_blob(void **state)
{
    FX();
    /* a registry of its own: its storage gets damaged */
    th_registry_t reg;
    _cleanup_free_ char *rdir = xasprintf("%s/registry-corrupt", fx->dir);
    assert_int_equal(th_registry_start(&reg, rdir, TH_REGISTRY_OPEN, NULL, NULL), 0);
    assert_int_equal(th_testimage_push(reg.port, "v1", "test/busybox", "v1", false), 0);
    _cleanup_free_ char *ref = xasprintf("%s/test/busybox:v1", reg.addr);
    image_store_t *s1 = new_store(fx, "corrupt1");
    image_t *img = pull_ok(s1, ref, &insecure);
    const char *hex = strrchr(img->layers[0], '/') + 1;
    _cleanup_free_ char *digest = xasprintf("sha256:%s", hex);

    /* flip one byte in the middle of the layer blob */
    _cleanup_free_ char *blob = th_registry_blob_path(&reg, digest);
    int fd = open(blob, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char c;
    off_t mid = st.st_size / 2;
    assert_int_equal(pread(fd, &c, 1, mid), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, mid), 1);
    close(fd);

    image_store_t *s2 = new_store(fx, "corrupt2");
    char msg[512];
    assert_int_equal(pull_fails(s2, ref, &insecure, msg, sizeof(msg)), OAK_E_INVALID);
    assert_non_null(strstr(msg, digest));
    /* nothing half-written: no layer, no temporary file, no ref */
    assert_int_equal(store_count(s2, "layers"), 0);
    assert_int_equal(store_count(s2, "tmp"), 0);
    assert_int_equal(store_count(s2, "refs"), 0);
    _cleanup_free_ char *stored = xasprintf("%s/blobs/sha256/%s", image_store_dir(s2), hex);
    assert_int_equal(access(stored, F_OK), -1);
    /* the store that has the layer still serves the image */
    image_t *again = pull_ok(s1, ref, &insecure);
    assert_int_equal(again->http_requests, 0);

    image_free(img);
    image_free(again);
    image_store_close(s1);
    image_store_close(s2);
    th_registry_stop(&reg);
}

static void test_unknown_image(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "unknown");
    char msg[512];
    _cleanup_free_ char *tag = xasprintf("%s/test/busybox:nope", fx->reg.addr);
    assert_int_equal(pull_fails(s, tag, &insecure, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    assert_non_null(strstr(msg, "test/busybox:nope"));
    assert_non_null(strstr(msg, "MANIFEST_UNKNOWN"));
    _cleanup_free_ char *repo = xasprintf("%s/test/nothing-here:v1", fx->reg.addr);
    assert_int_equal(pull_fails(s, repo, &insecure, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    assert_non_null(strstr(msg, "test/nothing-here:v1 not found"));
    /* references that are not references */
    assert_int_equal(pull_fails(s, "Upper/Case:1", &insecure, NULL, 0), OAK_E_INVALID);
    assert_int_equal(pull_fails(s, "", &insecure, NULL, 0), OAK_E_INVALID);
    assert_int_equal(pull_fails(s, "a@sha512:00", &insecure, NULL, 0), OAK_E_INVALID);
    assert_int_equal(store_count(s, "refs"), 0);
    image_store_close(s);
}

static void test_unreachable(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "unreachable");
    char msg[512];
    /* a port nobody listens on */
    th_registry_t dead;
    _cleanup_free_ char *ddir = xasprintf("%s/registry-dead", fx->dir);
    assert_int_equal(th_registry_start(&dead, ddir, TH_REGISTRY_OPEN, NULL, NULL), 0);
    _cleanup_free_ char *ref = xasprintf("%s/test/busybox:v1", dead.addr);
    th_registry_stop(&dead);
    assert_int_equal(pull_fails(s, ref, &insecure, msg, sizeof(msg)), OAK_E_UNAVAILABLE);
    assert_non_null(strstr(msg, dead.addr));
    /* plain HTTP only for a registry configured insecure: HTTPS to an HTTP
     * server fails */
    image_pull_opts_t secure = {.timeout_ms = 5000};
    assert_int_equal(pull_fails(s, fx->ref_v1, &secure, msg, sizeof(msg)), OAK_E_UNAVAILABLE);
    assert_int_equal(store_count(s, "layers"), 0);
    image_store_close(s);
}

static bool is_whiteout(const char *dir, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    struct stat st;
    return lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

/* Mounts the layers as overlayfs (read-only) and checks the merged view
 * of v2. */
static void check_overlay(fx_t *fx, const image_t *img, const char *name)
{
    if (geteuid() != 0) {
        printf("SKIPPED: overlay mount check needs root\n");
        return;
    }
    _cleanup_free_ char *mnt = xasprintf("%s/%s-mnt", fx->dir, name);
    mkdir(mnt, 0755);
    /* overlayfs lists the upper-most lowerdir first */
    _cleanup_free_ char *opts = xasprintf("ro,lowerdir=%s:%s", img->layers[1], img->layers[0]);
    if (mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0) {
        printf("SKIPPED: overlay mount failed here: %s\n", strerror(errno));
        return;
    }
    bool added = exists(mnt, "etc/added"), keep = exists(mnt, "data/keep");
    bool deleted = !exists(mnt, "etc/to-delete"), old = !exists(mnt, "data/old");
    bool sh = exists(mnt, "bin/sh") && exists(mnt, "bin/busybox");
    umount2(mnt, MNT_DETACH);
    assert_true(added);
    assert_true(keep);
    assert_true(deleted);
    assert_true(old);
    assert_true(sh);
}

static void check_v2_layers(const image_t *img)
{
    assert_int_equal(img->nlayers, 2);
    const char *lower = img->layers[0], *upper = img->layers[1];
    assert_lstat(lower, "etc/to-delete", S_IFREG, NULL);
    assert_lstat(lower, "data/old", S_IFREG, NULL);
    assert_true(is_whiteout(upper, "etc/to-delete"));
    assert_true(is_whiteout(upper, "data/old"));
    assert_lstat(upper, "etc/added", S_IFREG, NULL);
    assert_false(exists(upper, "etc/.wh.to-delete"));
    assert_false(exists(upper, "bin"));
}

static void test_whiteouts(void **state)
{
    FX();
    image_store_t *s = new_store(fx, "whiteout");
    image_t *img = pull_ok(s, fx->ref_v2, &insecure);
    check_v2_layers(img);
    check_overlay(fx, img, "whiteout");
    image_free(img);
    image_store_close(s);
}

static void test_oci_layout(void **state)
{
    FX();
    const char *layout = th_testimage_layout();
    _cleanup_free_ char *root = xstrdup(layout);
    *strrchr(root, '/') = 0;
    image_store_t *s = new_store(fx, "layout");
    image_pull_opts_t o = {.oci_root = root};
    _cleanup_free_ char *ref = xasprintf("oci:%s:v1", layout);
    image_t *img = pull_ok(s, ref, &o);
    assert_busybox_v1(img);
    assert_int_equal(img->http_requests, 0);
    assert_int_equal(img->blobs_fetched, 3); /* manifest, config, layer */
    /* the same config as the image pushed from the layout */
    image_store_t *rs = new_store(fx, "layout-registry");
    image_t *pushed = pull_ok(rs, fx->ref_v1, &insecure);
    assert_string_equal(img->config_digest, pushed->config_digest);

    _cleanup_free_ char *ref2 = xasprintf("oci:%s:v2", layout);
    image_t *img2 = pull_ok(s, ref2, &o);
    check_v2_layers(img2);
    assert_string_equal(img2->layers[0], img->layers[0]);
    assert_int_equal(img2->blobs_fetched, 3);

    char msg[512];
    _cleanup_free_ char *nope = xasprintf("oci:%s:nope", layout);
    assert_int_equal(pull_fails(s, nope, &o, msg, sizeof(msg)), OAK_E_NOT_FOUND);
    /* several images and no tag */
    _cleanup_free_ char *untagged = xasprintf("oci:%s", layout);
    assert_int_equal(pull_fails(s, untagged, &o, NULL, 0), OAK_E_INVALID);
    /* layouts are confined to oci_root, and refused without one */
    image_pull_opts_t none = {0};
    assert_int_equal(pull_fails(s, ref, &none, NULL, 0), OAK_E_FORBIDDEN);
    image_pull_opts_t elsewhere = {.oci_root = fx->dir};
    assert_int_equal(pull_fails(s, ref, &elsewhere, NULL, 0), OAK_E_FORBIDDEN);
    _cleanup_free_ char *escape = xasprintf("oci:%s/../../..:v1", layout);
    assert_int_equal(pull_fails(s, escape, &o, NULL, 0), OAK_E_FORBIDDEN);
    image_free(img);
    image_free(img2);
    image_free(pushed);
    image_store_close(s);
    image_store_close(rs);
}

/* ---- a layout written by hand ---- */

/* Writes data as a blob of the layout; returns its digest (owned). */
static char *put_blob(const char *layout, const void *data, size_t len)
{
    char hex[65];
    oak_sha256_hex(data, len, hex);
    _cleanup_free_ char *path = xasprintf("%s/blobs/sha256/%s", layout, hex);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return xasprintf("sha256:%s", hex);
}

/* A gzip tar holding one file name with content text. */
static void *small_layer(const char *name, const char *text, size_t *len)
{
    size_t cap = 64 * 1024;
    void *buf = xmalloc(cap);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_gzip(a);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)strlen(text));
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    archive_write_data(a, text, strlen(text));
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return buf;
}

static void test_handmade_layout(void **state)
{
    FX();
    _cleanup_free_ char *root = xasprintf("%s/handmade", fx->dir);
    _cleanup_free_ char *layout = xasprintf("%s/app", root);
    _cleanup_free_ char *blobs = xasprintf("%s/blobs/sha256", layout);
    assert_int_equal(mkdir(root, 0755), 0);
    assert_int_equal(mkdir(layout, 0755), 0);
    _cleanup_free_ char *b1 = xasprintf("%s/blobs", layout);
    assert_int_equal(mkdir(b1, 0755), 0);
    assert_int_equal(mkdir(blobs, 0755), 0);
    size_t l1len, l2len;
    _cleanup_free_ void *l1 = small_layer("a", "first", &l1len);
    _cleanup_free_ void *l2 = small_layer("b", "second", &l2len);
    _cleanup_free_ char *d1 = put_blob(layout, l1, l1len);
    _cleanup_free_ char *d2 = put_blob(layout, l2, l2len);
    /* a Docker-style config: layer 1 listed twice around layer 2 */
    _cleanup_free_ char *config = xasprintf(
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/a\"]},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\",\"%s\"]}}",
        d1, d2, d1);
    _cleanup_free_ char *dc = put_blob(layout, config, strlen(config));
    _cleanup_free_ char *manifest = xasprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"application/"
        "vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":%zu,"
        "\"digest\":\"%s\"},\"layers\":["
        "{\"mediaType\":\"application/"
        "vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":%zu,\"digest\":\"%s\"},"
        "{\"mediaType\":\"application/"
        "vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":%zu,\"digest\":\"%s\"},"
        "{\"mediaType\":\"application/"
        "vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":%zu,\"digest\":\"%s\"}]}",
        strlen(config), dc, l1len, d1, l2len, d2, l1len, d1);
    _cleanup_free_ char *dm = put_blob(layout, manifest, strlen(manifest));
    _cleanup_free_ char *index =
        xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
                  "\"application/"
                  "vnd.docker.distribution.manifest.v2+json\",\"size\":%zu,\"digest\":\"%s\"}]}",
                  strlen(manifest), dm);
    _cleanup_free_ char *ipath = xasprintf("%s/index.json", layout);
    FILE *f = fopen(ipath, "w");
    fputs(index, f);
    fclose(f);

    image_store_t *s = new_store(fx, "handmade-store");
    image_pull_opts_t o = {.oci_root = root};
    /* one image in the layout: no tag needed */
    _cleanup_free_ char *ref = xasprintf("oci:%s", layout);
    image_t *img = pull_ok(s, ref, &o);
    /* the duplicate is kept at its top-most place */
    assert_int_equal(img->nlayers, 2);
    assert_non_null(strstr(img->layers[0], d2 + 7));
    assert_non_null(strstr(img->layers[1], d1 + 7));
    assert_int_equal(img->nentry, 1);
    assert_string_equal(img->entrypoint[0], "/a");
    assert_int_equal(img->ncmd, 0);
    assert_null(img->workdir);
    assert_null(img->user);
    assert_int_equal(store_count(s, "layers"), 2);
    image_free(img);

    /* a damaged layer blob in the layout, pulled into a fresh store */
    _cleanup_free_ char *l2path = xasprintf("%s/%s", blobs, d2 + 7);
    int fd = open(l2path, O_RDWR);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)l2len - 3), 1);
    c ^= 1;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)l2len - 3), 1);
    close(fd);
    image_store_t *s2 = new_store(fx, "handmade-store2");
    char msg[512];
    assert_int_equal(pull_fails(s2, ref, &o, msg, sizeof(msg)), OAK_E_INVALID);
    assert_non_null(strstr(msg, d2));
    assert_int_equal(store_count(s2, "tmp"), 0);
    assert_int_equal(store_count(s2, "layers"), 1); /* layer 1 was fine */
    image_store_close(s2);
    image_store_close(s);
}

typedef struct {
    image_store_t *s;
    const char *ref;
    image_t *img;
    oak_err_t err;
} puller_t;

static void *puller(void *arg)
{
    puller_t *p = arg;
    image_pull(p->s, p->ref, &insecure, &p->img, &p->err);
    return NULL;
}

static void test_concurrent_pulls(void **state)
{
    FX();
    enum { N = 6 };
    image_store_t *s = new_store(fx, "concurrent");
    /* a second handle on the same directory, as another process would */
    image_store_t *s2 = new_store(fx, "concurrent");
    puller_t p[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        p[i] = (puller_t){.s = i % 2 ? s2 : s, .ref = i < N / 2 ? fx->ref_v2 : fx->ref_v1};
        assert_int_equal(pthread_create(&t[i], NULL, puller, &p[i]), 0);
    }
    unsigned blobs = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (!p[i].img)
            fail_msg("concurrent pull %d: %s", i, p[i].err.msg);
        blobs += p[i].img->blobs_fetched;
    }
    /* every layer and config came once: v1 (config, layer), v2 (config,
     * its layer); the manifests are fetched by tag, not counted */
    assert_int_equal(blobs, 4);
    for (int i = 1; i < N; i++)
        assert_string_equal(p[i].img->layers[0], p[0].img->layers[0]);
    assert_int_equal(store_count(s, "layers"), 2);
    assert_int_equal(store_count(s, "tmp"), 0);
    for (int i = 0; i < N; i++)
        image_free(p[i].img);
    image_store_close(s);
    image_store_close(s2);
}

static void test_basic_auth(void **state)
{
    FX();
    th_registry_t reg;
    _cleanup_free_ char *rdir = xasprintf("%s/registry-basic", fx->dir);
    assert_int_equal(th_registry_start(&reg, rdir, TH_REGISTRY_BASIC, NULL, NULL), 0);
    assert_int_equal(th_testimage_push(reg.port, "v1", "private/busybox", "v1", true), 0);
    _cleanup_free_ char *ref = xasprintf("%s/private/busybox:v1", reg.addr);
    image_store_t *s = new_store(fx, "basic");
    char msg[512];
    assert_int_equal(pull_fails(s, ref, &insecure, msg, sizeof(msg)), OAK_E_UNAUTH);
    assert_non_null(strstr(msg, "credentials"));
    image_pull_opts_t o = insecure;
    o.username = TH_REGISTRY_USER;
    o.password = "wrong";
    assert_int_equal(pull_fails(s, ref, &o, msg, sizeof(msg)), OAK_E_UNAUTH);
    o.password = TH_REGISTRY_PASSWORD;
    image_t *img = pull_ok(s, ref, &o);
    assert_busybox_v1(img);
    image_free(img);
    image_store_close(s);
    th_registry_stop(&reg);
}

static void test_token_auth(void **state)
{
    FX();
    _cleanup_free_ char *tdir = xasprintf("%s/token-server", fx->dir);
    th_token_server_t *ts = th_token_server_start(tdir, true);
    assert_non_null(ts);
    th_registry_t reg;
    _cleanup_free_ char *rdir = xasprintf("%s/registry-token", fx->dir);
    assert_int_equal(th_registry_start(&reg, rdir, TH_REGISTRY_TOKEN, th_token_server_realm(ts),
                                       th_token_server_cert(ts)),
                     0);
    assert_int_equal(th_testimage_push(reg.port, "v1", "test/busybox", "v1", true), 0);
    _cleanup_free_ char *ref = xasprintf("%s/test/busybox:v1", reg.addr);

    /* the token server wants credentials */
    image_store_t *s = new_store(fx, "token1");
    char msg[512];
    assert_int_equal(pull_fails(s, ref, &insecure, msg, sizeof(msg)), OAK_E_UNAUTH);
    assert_non_null(strstr(msg, "token server refused"));
    image_pull_opts_t o = insecure;
    o.username = TH_REGISTRY_USER;
    o.password = TH_REGISTRY_PASSWORD;
    int before = th_token_server_issued(ts);
    image_t *img = pull_ok(s, ref, &o);
    assert_busybox_v1(img);
    /* one token for the whole pull */
    assert_int_equal(th_token_server_issued(ts) - before, 1);
    image_free(img);
    image_store_close(s);

    /* anonymous tokens, as Docker Hub hands out for public images */
    th_token_server_require_basic(ts, false);
    s = new_store(fx, "token2");
    img = pull_ok(s, ref, &insecure);
    assert_busybox_v1(img);
    image_free(img);
    image_store_close(s);

    th_registry_stop(&reg);
    th_token_server_stop(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_by_tag),      cmocka_unit_test(test_cache),
        cmocka_unit_test(test_pull_by_digest),   cmocka_unit_test(test_index_platforms),
        cmocka_unit_test(test_corrupt_blob),     cmocka_unit_test(test_unknown_image),
        cmocka_unit_test(test_unreachable),      cmocka_unit_test(test_whiteouts),
        cmocka_unit_test(test_oci_layout),       cmocka_unit_test(test_handmade_layout),
        cmocka_unit_test(test_concurrent_pulls), cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_token_auth),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
