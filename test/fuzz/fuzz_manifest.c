/* Fuzz harness for the image documents of node_engine/manifest (manifest
 * or index, under each Content-Type the registry might send; image
 * config) and the registry responses of node_engine/registry
 * (WWW-Authenticate challenge, token reply, error body). Every input goes
 * to every parser. Accepted documents must hold only valid sha256
 * digests, non-negative sizes and counts within the limits, and a
 * platform lookup in an index must return one of its entries or
 * OAK_E_NOT_FOUND; refused ones fail with OAK_E_INVALID or
 * OAK_E_TOO_LARGE and output nothing. Never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "node_engine/image_ref.h"
#include "node_engine/manifest.h"
#include "node_engine/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refused(oak_err_t *err)
{
    if ((err->code != OAK_E_INVALID && err->code != OAK_E_TOO_LARGE) || !err->msg[0])
        abort();
    oak_err_clear(err);
}

static void check_desc(const manifest_desc_t *d)
{
    if (!image_digest_valid(d->digest) || d->size < 0 || !d->media_type)
        abort();
}

static void check_manifest(const char *buf, size_t len, const char *ctype)
{
    manifest_t *m = (manifest_t *)1;
    oak_err_t err = OAK_ERR_INIT;
    if (manifest_parse(buf, len, ctype, &m, &err) < 0) {
        if (m)
            abort();
        check_refused(&err);
        return;
    }
    if (m->kind == MANIFEST_IMAGE) {
        check_desc(&m->config);
        if (m->nlayers > MANIFEST_MAX_LAYERS || m->config.size > (int64_t)MANIFEST_MAX_BYTES)
            abort();
        for (size_t i = 0; i < m->nlayers; i++)
            check_desc(&m->layers[i]);
    } else if (m->kind == MANIFEST_INDEX) {
        if (m->nmanifests > MANIFEST_MAX_ENTRIES)
            abort();
        for (size_t i = 0; i < m->nmanifests; i++)
            check_desc(&m->manifests[i]);
        static const char *const plats[][3] = {
            {"linux", "amd64", NULL}, {"linux", "arm", "v7"}, {"linux", "arm64", "v8"}};
        for (size_t i = 0; i < 3; i++) {
            const manifest_desc_t *d =
                manifest_select_platform(m, plats[i][0], plats[i][1], plats[i][2], &err);
            if (d) {
                if (d < m->manifests || d >= m->manifests + m->nmanifests ||
                    strcmp(d->os, plats[i][0]) != 0 || strcmp(d->arch, plats[i][1]) != 0)
                    abort();
            } else if (err.code != OAK_E_NOT_FOUND) {
                abort();
            }
            oak_err_clear(&err);
        }
    } else {
        abort();
    }
    manifest_free(m);
}

static void check_config(const char *buf, size_t len)
{
    manifest_config_t *c = (manifest_config_t *)1;
    oak_err_t err = OAK_ERR_INIT;
    if (manifest_config_parse(buf, len, &c, &err) < 0) {
        if (c)
            abort();
        check_refused(&err);
        return;
    }
    if ((c->env && c->env[c->nenv]) || (c->cmd && c->cmd[c->ncmd]) ||
        (c->entrypoint && c->entrypoint[c->nentry]))
        abort();
    for (size_t i = 0; i < c->nenv; i++)
        if (!strchr(c->env[i], '=') || c->env[i][0] == '=')
            abort();
    manifest_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    static const char *const ctypes[] = {NULL,           MT_OCI_INDEX,       MT_OCI_MANIFEST,
                                         MT_DOCKER_LIST, MT_DOCKER_MANIFEST, "text/plain"};
    for (size_t i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++)
        check_manifest(buf, size, ctypes[i]);
    check_config(buf, size);

    char *s = xstrndup(buf, size);
    registry_challenge_t c;
    if (registry_challenge_parse(s, &c) == 0) {
        if (!c.scheme || !*c.scheme)
            abort();
        registry_challenge_clear(&c);
    } else if (c.scheme || c.realm || c.service || c.scope || c.error) {
        abort();
    }
    free(s);

    oak_err_t err = OAK_ERR_INIT;
    char *token = registry_token_parse(buf, size, &err);
    if (token) {
        if (!*token)
            abort();
        for (const char *p = token; *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7f)
                abort();
        free(token);
    } else {
        check_refused(&err);
    }
    free(registry_error_message(buf, size));
    return 0;
}
