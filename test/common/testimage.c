/* Test images (see testimage.h): the layout is built by
 * test/common/make-test-image.sh into a directory named after the
 * script's sha256, so an edited script gives a fresh build and concurrent
 * test processes share one. Pushing runs skopeo with --insecure-policy
 * (no /etc/containers/policy.json needed). */
#include "test/common/testimage.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_hash.h"
#include "test/common/harness.h"
#include "test/common/registry.h"

#define SCRIPT "test/common/make-test-image.sh"

bool th_testimage_available(void)
{
    static const char *const tools[] = {"/usr/bin/umoci", "/usr/bin/skopeo", "/usr/bin/jq",
                                        "/bin/busybox"};
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
        if (access(tools[i], X_OK) != 0) {
            printf("SKIPPED: %s is not installed (packages umoci, skopeo, jq, busybox-static)\n",
                   tools[i]);
            return false;
        }
    return true;
}

/* Runs argv; its output goes to log (appended). Returns the exit status or
 * -1. */
static int run(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        perror(argv[0]);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

static void dump(const char *log)
{
    _cleanup_free_ char *text = th_read_file(log, NULL);
    if (text)
        fprintf(stderr, "---- %s ----\n%s----\n", log, text);
}

const char *th_testimage_layout(void)
{
    static char path[PATH_MAX];
    if (path[0])
        return path;
    size_t len = 0;
    _cleanup_free_ char *script = th_read_file(SCRIPT, &len);
    if (!script) {
        fprintf(stderr, "cannot read %s (tests run from the repository root)\n", SCRIPT);
        return NULL;
    }
    char hex[65];
    oak_sha256_hex(script, len, hex);
    char build[PATH_MAX];
    if (!realpath(th_build_dir(), build)) {
        perror(th_build_dir());
        return NULL;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/test-images/busybox-%.16s", build, hex);
    struct stat st;
    if (stat(dir, &st) != 0) {
        char log[PATH_MAX + 8];
        snprintf(log, sizeof(log), "%s.log", dir);
        mkdir(build, 0755);
        _cleanup_free_ char *parent = xasprintf("%s/test-images", build);
        mkdir(parent, 0755);
        const char *argv[] = {"bash", SCRIPT, dir, NULL};
        if (run(argv, log) != 0 || stat(dir, &st) != 0) {
            fprintf(stderr, "building the test image failed\n");
            dump(log);
            return NULL;
        }
    }
    snprintf(path, sizeof(path), "%s", dir);
    return path;
}

int th_testimage_push(int port, const char *tag, const char *repo, const char *dest_tag, bool creds)
{
    const char *layout = th_testimage_layout();
    if (!layout)
        return -1;
    _cleanup_free_ char *src = xasprintf("oci:%s:%s", layout, tag);
    _cleanup_free_ char *dst = xasprintf("docker://127.0.0.1:%d/%s:%s", port, repo, dest_tag);
    _cleanup_free_ char *cred = xasprintf("%s:%s", TH_REGISTRY_USER, TH_REGISTRY_PASSWORD);
    char log[] = "/tmp/oak-skopeo-XXXXXX";
    int fd = mkstemp(log);
    if (fd < 0)
        return -1;
    close(fd);
    const char *argv[12];
    int n = 0;
    argv[n++] = "skopeo";
    argv[n++] = "--insecure-policy";
    argv[n++] = "copy";
    argv[n++] = "--quiet";
    argv[n++] = "--all";
    argv[n++] = "--dest-tls-verify=false";
    if (creds) {
        argv[n++] = "--dest-creds";
        argv[n++] = cred;
    }
    argv[n++] = src;
    argv[n++] = dst;
    argv[n] = NULL;
    int rc = run(argv, log);
    if (rc != 0) {
        fprintf(stderr, "skopeo copy %s %s failed (%d)\n", src, dst, rc);
        dump(log);
    }
    unlink(log);
    return rc == 0 ? 0 : -1;
}
