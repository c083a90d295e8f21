/* Fuzz harness for node_engine/layer: the input is unpacked as a layer
 * (tar, gzip or zstd) into <tmp>/a/b/root. After each run nothing may
 * exist outside root: <tmp>, <tmp>/a and <tmp>/a/b hold only the next
 * level and a sentinel file each, and every sentinel is unchanged
 * (contents' size, mode, mtime, a single link). Inside root, no device
 * node but overlayfs whiteouts (0:0 character devices). A refused layer
 * fails with a code and a message. Never a crash or a leak. The
 * directories live under one mkdtemp directory per process, removed at
 * exit. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "node_engine/layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[64];
static char *levels[3]; /* base, base/a, base/a/b */
static const char *next_name[3] = {"a", "b", "root"};
static char *root;
static struct stat sentinel_st[3];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void rmtree(const char *p)
{
    nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void cleanup(void)
{
    rmtree(base);
}

static char *sentinel(int i)
{
    return xasprintf("%s/sentinel", levels[i]);
}

static void init(void)
{
    snprintf(base, sizeof(base), "/tmp/oak-fuzz-layer-XXXXXX");
    if (!mkdtemp(base))
        abort();
    levels[0] = xstrdup(base);
    levels[1] = xasprintf("%s/a", base);
    levels[2] = xasprintf("%s/a/b", base);
    root = xasprintf("%s/a/b/root", base);
    for (int i = 0; i < 3; i++) {
        if (i && mkdir(levels[i], 0755) < 0)
            abort();
        char *s = sentinel(i);
        int fd = open(s, O_WRONLY | O_CREAT | O_TRUNC, 0640);
        if (fd < 0 || write(fd, "sentinel\n", 9) != 9)
            abort();
        close(fd);
        if (stat(s, &sentinel_st[i]) < 0)
            abort();
        free(s);
    }
    atexit(cleanup);
}

static void check_level(int i)
{
    DIR *d = opendir(levels[i]);
    if (!d)
        abort();
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "sentinel") &&
            strcmp(e->d_name, next_name[i])) {
            fprintf(stderr, "escaped: %s/%s\n", levels[i], e->d_name);
            abort();
        }
    closedir(d);
    char *s = sentinel(i);
    struct stat st;
    if (lstat(s, &st) < 0 || !S_ISREG(st.st_mode) || st.st_ino != sentinel_st[i].st_ino ||
        st.st_nlink != 1 || st.st_mode != sentinel_st[i].st_mode ||
        st.st_size != sentinel_st[i].st_size ||
        st.st_mtim.tv_sec != sentinel_st[i].st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != sentinel_st[i].st_mtim.tv_nsec) {
        fprintf(stderr, "sentinel %s changed\n", s);
        abort();
    }
    free(s);
}

static int no_devices(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    if (S_ISBLK(st->st_mode) || (S_ISCHR(st->st_mode) && st->st_rdev != makedev(0, 0))) {
        fprintf(stderr, "device node in the layer: %s\n", p);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root)
        init();
    rmtree(root);
    if (mkdir(root, 0755) < 0)
        abort();
    oak_err_t err = OAK_ERR_INIT;
    if (layer_unpack_mem(data, size, root, &err) < 0 && (err.code == OAK_E_OK || !err.msg[0]))
        abort();
    for (int i = 0; i < 3; i++)
        check_level(i);
    nftw(root, no_devices, 16, FTW_PHYS);
    oak_err_clear(&err);
    return 0;
}
