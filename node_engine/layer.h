/* Unpacking image layers (tar, optionally gzip- or zstd-compressed) into a
 * directory, as one overlayfs layer: OCI whiteouts become overlayfs
 * whiteouts (".wh.NAME" -> a 0:0 character device NAME, ".wh..wh..opq" ->
 * the xattr trusted.overlay.opaque=y on its directory), so a stack of
 * unpacked layers mounts directly as an overlayfs lowerdir.
 *
 * The layer is untrusted. Every entry is resolved below the destination
 * with openat(O_NOFOLLOW) one component at a time: absolute names, ".."
 * components, paths through symlinks or non-directories are refused (the
 * whole layer fails); hard links may only point inside the layer; device
 * nodes in the archive are skipped; extended attributes other than user.*
 * and security.capability are dropped. Modes, owners and mtimes are kept.
 * Independent of the working directory and thread-safe (no shared state;
 * concurrent unpacks must use different destinations). */
#ifndef LAYER_H
#define LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"

/* Most entries and most unpacked bytes in one layer (decompression bombs). */
#define LAYER_MAX_ENTRIES 2000000
#define LAYER_MAX_BYTES   (256ll << 30)

/* Unpacks the layer read from fd (from its current offset to EOF) into the
 * existing directory dest. When digest ("sha256:<hex>") is non-NULL, the
 * sha256 of every byte read from fd must equal it, else OAK_E_INVALID
 * naming the digest. label names the layer in messages (a digest; NULL:
 * "layer"). On failure dest holds a partial tree the caller removes.
 * Errors: OAK_E_INVALID (corrupt archive, unsafe entry, digest mismatch),
 * OAK_E_TOO_LARGE (over the limits), OAK_E_IO (the filesystem). */
int layer_unpack_fd(int fd, const char *dest, const char *digest, const char *label,
                    oak_err_t *err);
/* As layer_unpack_fd, from len bytes in memory, without a digest check. */
int layer_unpack_mem(const void *buf, size_t len, const char *dest, oak_err_t *err);

#endif
