/* The worker's image store: pulls OCI/Docker images from registries (or
 * local OCI image layouts) and keeps each blob and each unpacked layer
 * once, by digest, shared by all instances. An instance's root filesystem
 * is an overlayfs whose lowerdirs are the image's layer directories.
 *
 * Layout of the store directory (see docs/images.md):
 *   blobs/sha256/<hex>   manifests, indexes and image configs (verified)
 *   layers/<hex>/        one unpacked layer per compressed-layer digest,
 *                        in overlayfs form (whiteouts as 0:0 devices)
 *   refs/<sha256 of ref> {"ref": canonical reference, "digest": ...}
 *   locks/<hex>          flock(2) files serialising work on one digest
 *   tmp/                 downloads and unpacks in progress (<pid>.*)
 *
 * Functions block (network, disk) and are meant for worker threads. They
 * are thread-safe, also for concurrent pulls of the same image, and safe
 * between processes sharing one store directory (several node engines on
 * one machine): work on a digest is serialised by a lock file, and every
 * file appears under its final name only once complete and verified. */
#ifndef IMAGE_H
#define IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"

typedef struct image_store image_store_t;

typedef enum {
    /* use the cached image of a reference when it is complete, else pull */
    IMAGE_PULL_IF_NOT_PRESENT = 0,
    /* resolve a tag at the registry every time (blobs still come from the
     * cache when present) */
    IMAGE_PULL_ALWAYS,
    /* never contact a registry: the cached image or OAK_E_NOT_FOUND */
    IMAGE_PULL_NEVER,
} image_pull_policy_t;

typedef struct {
    bool insecure;                   /* plain HTTP to this registry (only when configured) */
    const char *username, *password; /* optional credentials */
    /* platform picked from an image index; NULL: linux and the host's
     * architecture as Go names it (amd64, arm64, arm + variant v7, ...) */
    const char *os, *arch, *variant;
    /* per manifest/token request, and the longest stall of a blob
     * download; <= 0: 30 s */
    long timeout_ms;
    image_pull_policy_t policy;
    /* "oci:<dir>" references are honoured only for directories under this
     * one (after resolving symlinks); NULL refuses them (OAK_E_FORBIDDEN):
     * references come from users, the worker's files are not theirs */
    const char *oci_root;
} image_pull_opts_t;

typedef struct {
    char *ref;                /* canonical reference pulled */
    char digest[72];          /* what the reference resolved to (an index or
                               * a manifest): pulling <name>@<digest> gives
                               * this image again */
    char manifest_digest[72]; /* the platform's image manifest */
    char config_digest[72];   /* the image configuration (the image id) */
    char **layers;            /* absolute paths of the unpacked layer */
    size_t nlayers;           /* directories, bottom to top */
    char **env;               /* "NAME=value" */
    size_t nenv;
    char **entrypoint;
    size_t nentry;
    char **cmd;
    size_t ncmd;
    char *workdir; /* NULL when the image sets none */
    char *user;    /* NULL when the image sets none */
    /* what this pull cost */
    unsigned http_requests;
    unsigned blobs_fetched; /* blobs downloaded or copied from a layout */
    uint64_t bytes_fetched;
} image_t;

/* Opens (creating if needed) the store rooted at dir and removes the
 * leftovers of dead processes from tmp/. *out is released with
 * image_store_close, after every pull using it returned. Errors: OAK_E_IO. */
int image_store_open(const char *dir, image_store_t **out, oak_err_t *err);
void image_store_close(image_store_t *s);
/* The store's absolute directory (symlinks resolved). Borrowed. */
const char *image_store_dir(const image_store_t *s);

/* Returns the image ref names (see image_ref.h), pulling whatever the
 * store lacks: each blob verified by sha256 (a mismatch fails naming the
 * digest, and the blob is discarded), each layer unpacked once. o may be
 * NULL (defaults). On success *out is owned (image_free). Errors:
 * OAK_E_INVALID (bad reference, corrupt blob, unsupported media type,
 * unsafe layer), OAK_E_NOT_FOUND (unknown repository, tag or manifest,
 * with the registry's message; no image for our platform; nothing cached
 * under IMAGE_PULL_NEVER), OAK_E_UNAUTH, OAK_E_UNAVAILABLE (registry
 * unreachable), OAK_E_TIMEOUT, OAK_E_FORBIDDEN (oci: reference outside
 * oci_root), OAK_E_TOO_LARGE, OAK_E_IO (the store's disk). */
int image_pull(image_store_t *s, const char *ref, const image_pull_opts_t *o, image_t **out,
               oak_err_t *err);
void image_free(image_t *img);

/* The host's architecture as a Go/OCI name ("amd64", "arm64", "arm", ...)
 * and, for arm, its variant ("v7"; else NULL). */
const char *image_host_arch(const char **variant);

#endif
