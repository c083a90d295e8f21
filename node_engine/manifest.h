/* Parsers for the JSON documents of an OCI/Docker image: image manifests,
 * image indexes (manifest lists), and the image configuration. Each takes
 * untrusted bytes from a registry or an OCI layout, checks them strictly
 * (schema version, media types, sha256 digests, sizes, counts) and returns
 * plain C structures. Pure functions, thread-safe. */
#ifndef MANIFEST_H
#define MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"

/* Largest manifest, index or image configuration accepted. */
#define MANIFEST_MAX_BYTES (4u << 20)
/* Most layers in one image manifest, most entries in one index. */
#define MANIFEST_MAX_LAYERS  256
#define MANIFEST_MAX_ENTRIES 1024
/* Largest layer blob accepted (compressed). */
#define MANIFEST_MAX_LAYER_BYTES (64ll << 30)

#define MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG      "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG   "application/vnd.docker.container.image.v1+json"
/* The Accept header of a manifest request: every kind parsed here. */
#define MANIFEST_ACCEPT                                                                            \
    MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST

typedef enum { MANIFEST_IMAGE = 1, MANIFEST_INDEX } manifest_kind_t;

typedef struct {
    char *media_type;
    char digest[72]; /* "sha256:<64 hex>" */
    int64_t size;
    /* index entries only (NULL when absent) */
    char *os, *arch, *variant;
    char *ref_name; /* annotation org.opencontainers.image.ref.name */
} manifest_desc_t;

typedef struct {
    manifest_kind_t kind;
    char *media_type;
    manifest_desc_t config;  /* MANIFEST_IMAGE */
    manifest_desc_t *layers; /* MANIFEST_IMAGE, bottom to top */
    size_t nlayers;
    manifest_desc_t *manifests; /* MANIFEST_INDEX */
    size_t nmanifests;
} manifest_t;

typedef struct {
    char **env; /* "NAME=value" */
    size_t nenv;
    char **entrypoint;
    size_t nentry;
    char **cmd;
    size_t ncmd;
    char *workdir; /* NULL when unset */
    char *user;    /* NULL when unset */
    char *os, *arch;
    size_t ndiff_ids; /* rootfs.diff_ids */
} manifest_config_t;

/* Parses an image manifest or index of len bytes. The kind comes from the
 * document's mediaType, else from content_type (the HTTP Content-Type, may
 * be NULL), else from its shape (OCI documents may omit mediaType). Docker
 * schema 1 manifests, non-container artifacts (unknown config media type),
 * foreign (Windows) and unknown layer types and digests other than sha256
 * are refused. Index entries of kinds not parsed here are kept (a platform
 * lookup skips them). On success *out is owned (manifest_free). Errors:
 * OAK_E_TOO_LARGE over MANIFEST_MAX_BYTES, OAK_E_INVALID naming the
 * problem. */
int manifest_parse(const char *buf, size_t len, const char *content_type, manifest_t **out,
                   oak_err_t *err);
void manifest_free(manifest_t *m);

/* The entry of index idx for platform os/arch/variant (variant may be NULL:
 * any; otherwise an exact variant wins over an entry without one, which
 * wins over another variant). Only image-manifest entries are considered.
 * Returns a pointer into idx, or NULL with OAK_E_NOT_FOUND listing the
 * platforms the index offers. */
const manifest_desc_t *manifest_select_platform(const manifest_t *idx, const char *os,
                                                const char *arch, const char *variant,
                                                oak_err_t *err);

/* Parses an image configuration (config.Env, Entrypoint, Cmd, WorkingDir,
 * User, os, architecture, rootfs.diff_ids). *out is owned
 * (manifest_config_free). Errors: OAK_E_TOO_LARGE, OAK_E_INVALID. */
int manifest_config_parse(const char *buf, size_t len, manifest_config_t **out, oak_err_t *err);
void manifest_config_free(manifest_config_t *c);

#endif
