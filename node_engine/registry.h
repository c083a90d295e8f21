/* Client of the OCI distribution API (a registry's /v2/ endpoints) for one
 * repository: manifests by tag or digest, blobs streamed to a file while
 * their sha256 is checked. Authentication follows the registry's 401
 * challenge: Bearer (a token from the realm it names, anonymous or with
 * basic credentials, as Docker Hub does) or Basic (credentials sent
 * directly). Blob redirects (to a CDN) are followed; credentials are not
 * sent to another host. HTTPS always, plain HTTP only for a registry
 * configured insecure.
 *
 * Blocking (libcurl easy API), for worker threads. A registry_t is used by
 * one thread at a time; separate registry_t may be used concurrently. */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"

typedef struct registry registry_t;

typedef struct {
    bool insecure;                   /* plain HTTP (only for registries configured so) */
    const char *username, *password; /* optional */
    /* bounds each manifest and token request, and how long a blob download
     * may go without receiving data; <= 0: 30 s */
    long timeout_ms;
} registry_opts_t;

typedef struct {
    unsigned requests; /* HTTP requests made (token requests included) */
    unsigned blobs;    /* blobs downloaded */
    uint64_t bytes;    /* blob bytes downloaded */
} registry_stats_t;

/* Prepares a client of repository ("library/nginx") at endpoint
 * ("registry-1.docker.io", "127.0.0.1:5000"), both already validated
 * (image_ref_parse). No request is made yet; the strings in o are copied.
 * *out is released with registry_close. */
int registry_open(const char *endpoint, const char *repository, const registry_opts_t *o,
                  registry_t **out, oak_err_t *err);
void registry_close(registry_t *r);

/* GET /v2/<repo>/manifests/<reference> (a tag or "sha256:..." digest),
 * accepting every manifest and index kind of manifest.h. A digest
 * reference is checked against the bytes received. On success *body
 * (NUL-terminated, owned), *len and *content_type (owned, or NULL) are set.
 * Errors: OAK_E_NOT_FOUND (unknown repository or manifest, with the
 * registry's message), OAK_E_UNAUTH (401/403, also from the token server),
 * OAK_E_UNAVAILABLE (unreachable, TLS failure, 429, 5xx), OAK_E_TIMEOUT,
 * OAK_E_TOO_LARGE (over MANIFEST_MAX_BYTES), OAK_E_INVALID (digest
 * mismatch naming the digest, unexpected status). */
int registry_get_manifest(registry_t *r, const char *reference, char **body, size_t *len,
                          char **content_type, oak_err_t *err);

/* GET /v2/<repo>/blobs/<digest> into fd (written from offset 0; truncated
 * first), following redirects. The content must be exactly size bytes
 * (size < 0: any size up to max_size) and hash to digest, else
 * OAK_E_INVALID naming the digest. Errors otherwise as
 * registry_get_manifest, and OAK_E_IO when fd cannot be written. */
int registry_get_blob(registry_t *r, const char *digest, int64_t size, int64_t max_size, int fd,
                      oak_err_t *err);

/* Counters since registry_open. */
void registry_stats(const registry_t *r, registry_stats_t *out);

/* ---- registry responses (exposed for tests and fuzzing) ---- */

/* A WWW-Authenticate challenge: scheme ("Bearer", "Basic") and the
 * parameters used here (NULL when absent). */
typedef struct {
    char *scheme;
    char *realm, *service, *scope, *error;
} registry_challenge_t;

/* Parses a WWW-Authenticate value (RFC 7235: a scheme, then
 * comma-separated key=token or key="quoted string" parameters). Returns 0
 * and fills *out (owned members, registry_challenge_clear) or -1 when the
 * value holds no scheme; out is then zeroed. */
int registry_challenge_parse(const char *value, registry_challenge_t *out);
void registry_challenge_clear(registry_challenge_t *c);

/* The token of a token server's reply ({"token": ...} or
 * {"access_token": ...}), owned by the caller; NULL with OAK_E_INVALID
 * when there is none. */
char *registry_token_parse(const char *buf, size_t len, oak_err_t *err);

/* "CODE: message; CODE: message" from a registry error body
 * ({"errors": [{"code", "message"}]}), owned by the caller, or NULL when
 * buf holds no such list. */
char *registry_error_message(const char *buf, size_t len);

#endif
