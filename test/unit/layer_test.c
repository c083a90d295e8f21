/* Unit tests for node_engine/layer: real archives (written with
 * libarchive, plain and gzip) unpacked into a real directory: files,
 * modes, owners, mtimes, symlinks, hard links, fifos, skipped devices,
 * xattrs; OCI whiteouts turned into overlayfs whiteouts (0:0 devices,
 * opaque xattr) with the same-layer rules; entries replacing entries; and
 * every escape attempt (absolute names, "..", writes through symlinks,
 * hard links out of the layer) refused with nothing changed outside the
 * layer directory, which sits next to a sentinel file. Needs root for
 * owners, devices and trusted.* xattrs (skips otherwise). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_hash.h"
#include "node_engine/layer.h"
#include "test/common/harness.h"

enum { F = 1, D, L, H, FIFO, CHR };

typedef struct {
    int kind;
    const char *name;
    const char *data; /* file content, or link target */
    mode_t mode;
    int uid;
    const char *xattr; /* "name=value" */
} ent_t;

typedef struct {
    char *tmp;  /* holds root/ and sentinel */
    char *root; /* the layer directory */
    char *sentinel;
    struct stat sentinel_st;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->tmp = th_tmpdir("oak-layer");
    fx->root = xasprintf("%s/root", fx->tmp);
    fx->sentinel = xasprintf("%s/sentinel", fx->tmp);
    assert_int_equal(mkdir(fx->root, 0755), 0);
    FILE *f = fopen(fx->sentinel, "w");
    fputs("untouched\n", f);
    fclose(f);
    chmod(fx->sentinel, 0600);
    assert_int_equal(stat(fx->sentinel, &fx->sentinel_st), 0);
    *state = fx;
    return 0;
}

/* Nothing outside root changed: tmp holds root and the same sentinel. */
static void check_outside(fx_t *fx)
{
    DIR *d = opendir(fx->tmp);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "root") &&
            strcmp(e->d_name, "sentinel"))
            fail_msg("'%s' appeared outside the layer", e->d_name);
    }
    closedir(d);
    struct stat st;
    assert_int_equal(lstat(fx->sentinel, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_ino, fx->sentinel_st.st_ino);
    assert_int_equal(st.st_nlink, 1);
    assert_int_equal(st.st_mode, fx->sentinel_st.st_mode);
    assert_int_equal(st.st_size, fx->sentinel_st.st_size);
    assert_int_equal(st.st_mtim.tv_sec, fx->sentinel_st.st_mtim.tv_sec);
    assert_int_equal(st.st_mtim.tv_nsec, fx->sentinel_st.st_mtim.tv_nsec);
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    check_outside(fx);
    th_rmtree(fx->tmp);
    free(fx->tmp);
    free(fx->root);
    free(fx->sentinel);
    free(fx);
    return 0;
}

static bool root_user(void)
{
    if (geteuid() == 0)
        return true;
    printf("SKIPPED: needs root (owners, devices, trusted xattrs)\n");
    return false;
}

/* An archive of the entries (pax), gzip-compressed when gz. */
static void *make_tar(const ent_t *ents, size_t n, bool gz, size_t *len)
{
    size_t cap = 1 << 20;
    void *buf = xmalloc(cap);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (gz)
        archive_write_add_filter_gzip(a);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        const ent_t *e = &ents[i];
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e->name);
        archive_entry_set_mtime(ae, 1000000000 + (time_t)i, 0);
        archive_entry_set_uid(ae, e->uid);
        archive_entry_set_gid(ae, e->uid);
        mode_t perm = e->mode ? e->mode : 0644;
        switch (e->kind) {
        case F:
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_size(ae, e->data ? (la_int64_t)strlen(e->data) : 0);
            break;
        case D:
            archive_entry_set_filetype(ae, AE_IFDIR);
            perm = e->mode ? e->mode : 0755;
            break;
        case L:
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_symlink(ae, e->data);
            perm = 0777;
            break;
        case H:
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_hardlink(ae, e->data);
            break;
        case FIFO:
            archive_entry_set_filetype(ae, AE_IFIFO);
            break;
        case CHR:
            archive_entry_set_filetype(ae, AE_IFCHR);
            archive_entry_set_rdev(ae, makedev(1, 3));
            break;
        }
        archive_entry_set_perm(ae, perm);
        if (e->xattr) {
            const char *eq = strchr(e->xattr, '=');
            _cleanup_free_ char *xn = xstrndup(e->xattr, (size_t)(eq - e->xattr));
            archive_entry_xattr_add_entry(ae, xn, eq + 1, strlen(eq + 1));
        }
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (e->kind == F && e->data)
            archive_write_data(a, e->data, strlen(e->data));
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return buf;
}

static int unpack(fx_t *fx, const ent_t *ents, size_t n, oak_err_t *err)
{
    size_t len;
    _cleanup_free_ void *tar = make_tar(ents, n, false, &len);
    return layer_unpack_mem(tar, len, fx->root, err);
}

static void unpack_ok(fx_t *fx, const ent_t *ents, size_t n)
{
    oak_err_t err = OAK_ERR_INIT;
    if (unpack(fx, ents, n, &err) < 0)
        fail_msg("unpack: %s", err.msg);
}

static void unpack_refused(fx_t *fx, const ent_t *ents, size_t n, const char *msg)
{
    oak_err_t err = OAK_ERR_INIT;
    if (unpack(fx, ents, n, &err) == 0)
        fail_msg("a layer expected to be refused (%s) was unpacked", msg);
    assert_int_equal(err.code, OAK_E_INVALID);
    if (!strstr(err.msg, msg))
        fail_msg("message '%s' lacks '%s'", err.msg, msg);
    check_outside(fx);
}

static struct stat lst(fx_t *fx, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", fx->root, rel);
    struct stat st;
    if (lstat(p, &st) < 0)
        fail_msg("%s: %s", rel, strerror(errno));
    return st;
}

static bool exists(fx_t *fx, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", fx->root, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static char *content(fx_t *fx, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", fx->root, rel);
    return th_read_file(p, NULL);
}

static bool whiteout(fx_t *fx, const char *rel)
{
    if (!exists(fx, rel))
        return false;
    struct stat st = lst(fx, rel);
    return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static bool opaque(fx_t *fx, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", fx->root, rel);
    char v[4] = "";
    return lgetxattr(p, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

/* ---- tests ---- */

static void test_files(void **state)
{
    fx_t *fx = *state;
    if (!root_user())
        return;
    const ent_t ents[] = {
        {D, "./", NULL, 0751},
        {D, "etc/", NULL, 0755},
        {F, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644},
        {F, "./bin//tool", "#!/bin/sh\n", 04755, 0},
        {F, "home/user/secret", "s3cr3t", 0600, 1000, "user.note=kept"},
        {D, "home/user", NULL, 0700, 1000},
        {L, "bin/sh", "/bin/tool"},
        {L, "etc/abs-outside", "/../../etc/shadow"},
        {H, "bin/tool2", "bin/tool"},
        {FIFO, "run/fifo", NULL, 0620},
        {CHR, "dev/null", NULL, 0666},
        {F, "empty", NULL, 0400},
        {D, "sticky/", NULL, 01777},
    };
    unpack_ok(fx, ents, sizeof(ents) / sizeof(ents[0]));
    _cleanup_free_ char *pw = content(fx, "etc/passwd");
    assert_string_equal(pw, "root:x:0:0::/root:/bin/sh\n");
    struct stat st = lst(fx, "bin/tool");
    assert_int_equal(st.st_mode & 07777, 04755);
    assert_int_equal(st.st_mtim.tv_sec, 1000000003);
    assert_int_equal(st.st_nlink, 2); /* bin/tool2 */
    assert_int_equal(lst(fx, "bin/tool2").st_ino, st.st_ino);
    st = lst(fx, "home/user/secret");
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_gid, 1000);
    assert_int_equal(st.st_mode & 07777, 0600);
    _cleanup_free_ char *sp = xasprintf("%s/home/user/secret", fx->root);
    char v[16] = "";
    assert_int_equal(getxattr(sp, "user.note", v, sizeof(v)), 4);
    /* the directory's metadata, set after its children were written */
    st = lst(fx, "home/user");
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(st.st_uid, 1000);
    assert_int_equal(st.st_mtim.tv_sec, 1000000005);
    /* an implicit parent */
    st = lst(fx, "home");
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(st.st_uid, 0);
    /* symlinks keep their target text, even pointing "outside" */
    char target[64] = "";
    _cleanup_free_ char *lp = xasprintf("%s/etc/abs-outside", fx->root);
    assert_true(readlink(lp, target, sizeof(target)) > 0);
    assert_string_equal(target, "/../../etc/shadow");
    assert_true(S_ISFIFO(lst(fx, "run/fifo").st_mode));
    assert_int_equal(lst(fx, "run/fifo").st_mode & 07777, 0620);
    /* no device nodes */
    assert_false(exists(fx, "dev/null"));
    assert_int_equal(lst(fx, "empty").st_size, 0);
    assert_int_equal(lst(fx, "sticky").st_mode & 07777, 01777);
    /* the root entry */
    struct stat rs;
    assert_int_equal(stat(fx->root, &rs), 0);
    assert_int_equal(rs.st_mode & 07777, 0751);
}

static void test_escapes(void **state)
{
    fx_t *fx = *state;
    _cleanup_free_ char *abs_sentinel = xstrdup(fx->sentinel);
    const ent_t dotdot[] = {{F, "../sentinel", "pwned"}};
    unpack_refused(fx, dotdot, 1, "'..' component");
    const ent_t inner[] = {{D, "a/"}, {F, "a/../../sentinel", "pwned"}};
    unpack_refused(fx, inner, 2, "'..' component");
    const ent_t absolute[] = {{F, "/tmp/oak-layer-abs", "pwned"}};
    unpack_refused(fx, absolute, 1, "absolute path");
    /* symlink to a directory outside, then a file through it */
    const ent_t through[] = {{L, "out", ".."}, {F, "out/sentinel", "pwned"}};
    unpack_refused(fx, through, 2, "is not a directory in the layer");
    const ent_t through_abs[] = {{L, "out2", fx->tmp}, {F, "out2/new", "pwned"}};
    unpack_refused(fx, through_abs, 2, "is not a directory in the layer");
    /* a symlink as a deeper component */
    const ent_t deep[] = {{D, "d/"}, {L, "d/link", ".."}, {D, "d/link/x/"}};
    unpack_refused(fx, deep, 3, "is not a directory in the layer");
    /* whiteouts and opaque markers through symlinks */
    const ent_t wh[] = {{L, "w", ".."}, {F, "w/.wh.sentinel"}};
    unpack_refused(fx, wh, 2, "is not a directory in the layer");
    const ent_t opq[] = {{L, "o", fx->tmp}, {F, "o/.wh..wh..opq"}};
    unpack_refused(fx, opq, 2, "is not a directory in the layer");
    /* hard links out of the layer */
    const ent_t hl_dotdot[] = {{H, "h", "../sentinel"}};
    unpack_refused(fx, hl_dotdot, 1, "'..' component");
    const ent_t hl_abs[] = {{H, "h", abs_sentinel}};
    unpack_refused(fx, hl_abs, 1, "absolute path");
    const ent_t hl_through[] = {{L, "up", ".."}, {H, "h", "up/sentinel"}};
    unpack_refused(fx, hl_through, 2, "is not a directory in the layer");
    const ent_t hl_missing[] = {{H, "h", "nothing"}};
    unpack_refused(fx, hl_missing, 1, "not in the layer");
    const ent_t hl_dir[] = {{D, "dd/"}, {H, "h", "dd"}};
    unpack_refused(fx, hl_dir, 2, "target is a directory");
    /* the root must be a directory */
    const ent_t root_link[] = {{L, ".", ".."}};
    unpack_refused(fx, root_link, 1, "not a directory");
}

static void test_replace_symlink(void **state)
{
    fx_t *fx = *state;
    /* a symlink to the sentinel, then a file of the same name: the link is
     * replaced, the sentinel untouched */
    const ent_t ents[] = {
        {L, "f", fx->sentinel}, {F, "f", "new content"}, {L, "g", "../sentinel"}, {D, "g/"},
        {F, "g/inside", "x"},
    };
    unpack_ok(fx, ents, sizeof(ents) / sizeof(ents[0]));
    assert_true(S_ISREG(lst(fx, "f").st_mode));
    _cleanup_free_ char *c = content(fx, "f");
    assert_string_equal(c, "new content");
    assert_true(S_ISDIR(lst(fx, "g").st_mode));
    assert_true(exists(fx, "g/inside"));
}

static void test_replacements(void **state)
{
    fx_t *fx = *state;
    const ent_t ents[] = {
        {D, "a/"},        {F, "a/f", "1"},     {D, "a/sub/"},         {F, "a/sub/g", "2"},
        {F, "a", "file"},            /* a directory tree replaced by a file */
        {F, "b", "file"}, {D, "b/"}, /* a file replaced by a directory */
        {D, "c/"},        {F, "c/x", "1"},     {D, "c/", NULL, 0700}, /* merged, later mode wins */
        {F, "same", "1"}, {H, "same", "same"},                        /* a link to itself */
    };
    unpack_ok(fx, ents, sizeof(ents) / sizeof(ents[0]));
    assert_true(S_ISREG(lst(fx, "a").st_mode));
    assert_true(S_ISDIR(lst(fx, "b").st_mode));
    assert_true(exists(fx, "c/x"));
    assert_int_equal(lst(fx, "c").st_mode & 07777, 0700);
    assert_true(S_ISREG(lst(fx, "same").st_mode));
}

static void test_whiteouts(void **state)
{
    fx_t *fx = *state;
    if (!root_user())
        return;
    const ent_t ents[] = {
        {F, "etc/.wh.gone"}, /* a lower file deleted */
        {D, "var/"},
        {F, "var/.wh..wh..opq"}, /* a lower dir's content hidden */
        {F, "var/new", "n"},
        {F, ".wh..wh.plnk"}, /* aufs metadata: ignored */
        {F, "keep", "k"},
        {F, ".wh.keep"}, /* same layer: the entry stays */
        {D, "d2/"},
        {F, ".wh.d2"}, /* same layer dir: made opaque */
        {F, ".wh.x"},
        {D, "x/"}, /* deleted, created again: opaque */
        {F, ".wh.y"},
        {F, "y", "file"},            /* deleted, then a file */
        {F, "deep/er/.wh..wh..opq"}, /* marker in a dir not listed */
        {F, "dev/.wh.dev-entry"},
    };
    unpack_ok(fx, ents, sizeof(ents) / sizeof(ents[0]));
    assert_true(whiteout(fx, "etc/gone"));
    assert_false(exists(fx, "etc/.wh.gone"));
    assert_true(opaque(fx, "var"));
    assert_true(exists(fx, "var/new"));
    assert_false(exists(fx, "var/.wh..wh..opq"));
    assert_false(exists(fx, ".wh..wh.plnk"));
    assert_true(S_ISREG(lst(fx, "keep").st_mode));
    assert_true(S_ISDIR(lst(fx, "d2").st_mode));
    assert_true(opaque(fx, "d2"));
    assert_true(S_ISDIR(lst(fx, "x").st_mode));
    assert_true(opaque(fx, "x"));
    assert_true(S_ISREG(lst(fx, "y").st_mode));
    assert_true(opaque(fx, "deep/er"));
    assert_false(opaque(fx, "deep"));
    assert_true(whiteout(fx, "dev/dev-entry"));

    /* no forged overlay xattrs from the archive; hard links to whiteouts
     * are not followed into devices */
    th_rmtree(fx->root);
    mkdir(fx->root, 0755);
    const ent_t forged[] = {
        {D, "f/", NULL, 0755, 0, "trusted.overlay.opaque=y"},
        {F, "g", "x", 0644, 0, "trusted.overlay.redirect=/etc"},
        {F, ".wh.w"},
        {H, "wlink", "w"},
    };
    unpack_ok(fx, forged, sizeof(forged) / sizeof(forged[0]));
    assert_false(opaque(fx, "f"));
    assert_true(whiteout(fx, "w"));
    assert_false(exists(fx, "wlink"));
    _cleanup_free_ char *gp = xasprintf("%s/g", fx->root);
    char v[16];
    assert_int_equal(lgetxattr(gp, "trusted.overlay.redirect", v, sizeof(v)), -1);

    const ent_t bad[] = {{F, "a/.wh."}};
    unpack_refused(fx, bad, 1, "invalid whiteout");
}

static void test_corrupt(void **state)
{
    fx_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    /* empty input: an empty layer */
    assert_int_equal(layer_unpack_mem("", 0, fx->root, &err), 0);
    /* junk */
    char junk[2048];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    assert_int_equal(layer_unpack_mem(junk, sizeof(junk), fx->root, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    /* a truncated gzip layer */
    const ent_t ents[] = {{F, "big", "0123456789012345678901234567890123456789"},
                          {F, "more", "abcdefghijklmnopqrstuvwxyz"}};
    size_t len;
    _cleanup_free_ void *gz = make_tar(ents, 2, true, &len);
    assert_int_equal(layer_unpack_mem(gz, len / 2, fx->root, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    check_outside(fx);
}

static void test_fd_digest(void **state)
{
    fx_t *fx = *state;
    const ent_t ents[] = {{D, "bin/"}, {F, "bin/x", "hello"}};
    size_t len;
    _cleanup_free_ void *gz = make_tar(ents, 2, true, &len);
    char hex[65];
    oak_sha256_hex(gz, len, hex);
    _cleanup_free_ char *digest = xasprintf("sha256:%s", hex);
    _cleanup_free_ char *path = xasprintf("%s/blob", fx->tmp);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(write(fd, gz, len), (ssize_t)len);
    /* trailing bytes after the archive count for the digest */
    lseek(fd, 0, SEEK_SET);
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(layer_unpack_fd(fd, fx->root, digest, NULL, &err), 0);
    _cleanup_free_ char *c = content(fx, "bin/x");
    assert_string_equal(c, "hello");

    /* one byte more: the digest no longer matches */
    th_rmtree(fx->root);
    mkdir(fx->root, 0755);
    assert_int_equal(pwrite(fd, "\0", 1, (off_t)len), 1);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(layer_unpack_fd(fd, fx->root, digest, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, digest));
    /* a corrupted byte inside: named by its digest too */
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, (off_t)len / 2), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)len / 2), 1);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(layer_unpack_fd(fd, fx->root, digest, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, digest));
    close(fd);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replacements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_digest, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
