/* Test images, built offline from busybox-static with umoci by
 * test/common/make-test-image.sh into an OCI image layout cached under the
 * build directory (rebuilt when the script changes), and pushed to a test
 * registry with skopeo. Tags of the layout (see the script):
 *   v1     one layer: busybox + applet symlinks, /etc/to-delete,
 *          /data/keep, /data/old; Env PATH=... and FOO=bar,
 *          Cmd ["/bin/sh", "-c", "echo hello"], WorkingDir /data, User 0:0
 *   v2     v1 + a layer deleting /etc/to-delete and /data/old (whiteouts)
 *          and adding /etc/added
 *   multi  an image index: linux/amd64 -> v1, linux/arm64/v8 -> v2
 * Single-threaded use. */
#ifndef TEST_TESTIMAGE_H
#define TEST_TESTIMAGE_H

#include <stdbool.h>

/* True when umoci, skopeo, jq and /bin/busybox are installed; otherwise
 * prints a line with SKIPPED and the reason. */
bool th_testimage_available(void);

/* The absolute path of the test OCI layout, built on first use (by any
 * process: the build is atomic) under <build dir>/test-images/. Borrowed;
 * NULL (with a message on stderr) when the build failed. */
const char *th_testimage_layout(void);

/* Pushes tag of the test layout to 127.0.0.1:<port>/<repo>:<dest_tag>
 * (plain HTTP; with TH_REGISTRY_USER's credentials when creds). Index tags
 * are pushed with all their images. Returns 0, or -1 with skopeo's output
 * on stderr. */
int th_testimage_push(int port, const char *tag, const char *repo, const char *dest_tag,
                      bool creds);

#endif
