/* OCI bundles for runc: the config.json of an instance (process, env,
 * hostname, rlimits, default Linux mounts, namespaces, masked paths,
 * cgroup limits) and the overlayfs root filesystem of the bundle (image
 * layers as lower directories, per-instance upper/ and work/), and the
 * removal of a bundle directory. No global state; thread-safe. */
#ifndef BUNDLE_H
#define BUNDLE_H

#include <jansson.h>
#include <stdbool.h>

#include "lib/oak_err.h"
#include "node_engine/runtime.h"

#define BUNDLE_CPU_PERIOD    100000 /* us */
#define BUNDLE_CPU_MIN_QUOTA 1000
#define BUNDLE_DEFAULT_PATH  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Checks a spec (id, args, layers, cwd, limits, env entries). Errors:
 * OAK_E_INVALID naming the field. */
int bundle_check_spec(const instance_spec_t *spec, oak_err_t *err);

/* The OCI runtime config of spec with root "rootfs" and the given
 * cgroupsPath; new reference. spec must have passed bundle_check_spec. */
json_t *bundle_config(const instance_spec_t *spec, const char *cgroups_path);

/* Mounts the overlayfs of the layers (bottom to top) on <dir>/rootfs with
 * <dir>/upper and <dir>/work (all created if missing). Option strings
 * longer than a page are shortened with relative layer links made in
 * <dir>/layers and a mount from a child process that changed directory.
 * Errors: OAK_E_INVALID for a layer path with ',' ':' or '\', OAK_E_IO. */
int bundle_mount_rootfs(const char *dir, const char *const *lowerdirs, size_t nlower,
                        oak_err_t *err);

/* True when path is a mount point (listed in /proc/self/mountinfo). */
bool bundle_is_mountpoint(const char *path);

/* Unmounts <dir>/rootfs if mounted (lazily when busy). Errors: OAK_E_IO. */
int bundle_unmount_rootfs(const char *dir, oak_err_t *err);

/* Removes the bundle directory tree (never crossing into a mount; fails
 * if rootfs is still mounted). With keep_logs the files "log", "log.1"
 * and "runc.log" and the directory stay. A missing dir is not an error.
 * Errors: OAK_E_IO. */
int bundle_remove(const char *dir, bool keep_logs, oak_err_t *err);

#endif
