/* Test helpers for container tests with the real runc: a root filesystem
 * layer made of the static busybox (/bin/busybox and its applets as
 * symlinks), the cgroup directory of a process as seen from the host, the
 * mounts under a directory, and a teardown that removes every container,
 * mount and cgroup a test left behind (even when it failed).
 * Single-threaded use. */
#ifndef TEST_ROOTFS_H
#define TEST_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* True when container tests can run here: root, runc in PATH, a static
 * /bin/busybox, overlayfs. Otherwise prints a line with SKIPPED and why. */
bool th_runc_available(void);

/* Fills dir (created if missing) with a minimal rootfs: bin/busybox (a
 * copy of the static /bin/busybox), bin/<applet> symlinks for the common
 * applets (sh, echo, cat, env, hostname, sleep, ls, kill, seq, ...),
 * etc/passwd, etc/group, and the empty directories runc mounts onto.
 * Returns 0 or -1 (message on stderr). */
int th_rootfs_busybox(const char *dir);

/* Host directory of the cgroup v1 hierarchy holding controller (e.g.
 * "memory", "cpu") for process pid, or of the unified hierarchy when
 * controller is NULL or the system is cgroup v2. Owned; NULL if unknown. */
char *th_cgroup_dir(pid_t pid, const char *controller);

/* Number of mount points at or below dir in /proc/self/mountinfo. */
int th_mounts_under(const char *dir);

/* Teardown for container tests: `runc --root <runc_root> delete --force`
 * of every container there, unmounts everything under dir (lazily),
 * reaps exited children, and removes the cgroup directories
 * "<own cgroup>/<cgroup_parent>" of every hierarchy (NULL: none). Any
 * argument may be NULL. */
void th_runc_cleanup(const char *runc_root, const char *cgroup_parent, const char *dir);

/* Runs `runc --root <runc_root> <args...>` (NULL-terminated) with stdout
 * into *out when out is not NULL (owned). Returns the exit status (0 on
 * success) or -1 when runc cannot be run. */
int th_runc(const char *runc_root, char **out, ...);

#endif
