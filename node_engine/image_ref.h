/* Image references as users write them, parsed and normalised the way the
 * Docker tools do (distribution/reference grammar):
 *
 *   nginx                          -> docker.io/library/nginx:latest
 *   user/app:1.2                   -> docker.io/user/app:1.2
 *   registry.local:5000/team/app   -> registry.local:5000/team/app:latest
 *   [::1]:5000/app@sha256:<hex>    -> by digest (a tag next to it is kept
 *                                     but the digest is what is pulled)
 *   oci:/srv/images/app:v1         -> the local OCI image layout in
 *                                     /srv/images/app, image tagged v1
 *                                     (the directory cannot contain ':')
 *
 * Pure functions, thread-safe. */
#ifndef IMAGE_REF_H
#define IMAGE_REF_H

#include <stdbool.h>

#include "lib/oak_err.h"

/* Longest reference accepted (OCI layout paths included). */
#define IMAGE_REF_MAX 1024
/* Longest repository name (registry host + '/' + path), as in Docker. */
#define IMAGE_REF_NAME_MAX 255
/* The only digest form accepted: "sha256:" + 64 lower-case hex digits. */
#define IMAGE_DIGEST_LEN 71

typedef struct {
    bool oci_layout;  /* an "oci:<dir>[:<tag>]" reference */
    char *registry;   /* "docker.io", "host:5000", "[::1]:5000"; NULL for oci */
    char *repository; /* "library/nginx"; NULL for oci */
    char *tag;        /* "latest"; NULL when only a digest was given, or an
                       * oci reference named no tag */
    char *digest;     /* "sha256:<hex>" or NULL */
    char *oci_dir;    /* the layout directory of an oci reference, else NULL */
} image_ref_t;

/* Parses s into *out (all members owned; release with image_ref_clear).
 * Registry names are normalised (no registry -> docker.io,
 * index.docker.io -> docker.io, single-component Docker Hub names get
 * "library/"), and a reference with neither tag nor digest gets the tag
 * "latest" (not for oci references). Errors: OAK_E_INVALID naming what is
 * wrong (upper-case repository, bad tag, unsupported digest algorithm,
 * too long, ...); *out is then zeroed. */
int image_ref_parse(const char *s, image_ref_t *out, oak_err_t *err);
/* Frees the members of r and zeroes it. */
void image_ref_clear(image_ref_t *r);
/* The canonical form ("docker.io/library/nginx:latest",
 * "host:5000/app@sha256:...", "oci:/dir:v1"), owned by the caller. Parsing
 * it again yields the same reference. */
char *image_ref_format(const image_ref_t *r);
/* The host (and port) to connect to for r's registry: Docker Hub's API
 * lives at registry-1.docker.io, every other registry at its own name.
 * Borrowed from r or a constant. */
const char *image_ref_endpoint(const image_ref_t *r);
/* True when s is "sha256:" followed by exactly 64 lower-case hex digits. */
bool image_digest_valid(const char *s);

#endif
