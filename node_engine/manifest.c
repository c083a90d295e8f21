/* Image manifest, index and configuration parsers (see manifest.h). Every
 * document is bounded (MANIFEST_MAX_BYTES), every descriptor checked
 * (media type, sha256 digest, non-negative size), and every error names
 * the field at fault. Pure code over jansson, no shared state. */
#include "node_engine/manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "node_engine/image_ref.h"

/* Most strings in Env, Entrypoint or Cmd. */
#define CONFIG_MAX_STRINGS 4096

static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    NULL,
};

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static bool is_index_type(const char *t)
{
    return strcmp(t, MT_OCI_INDEX) == 0 || strcmp(t, MT_DOCKER_LIST) == 0;
}

static bool is_manifest_type(const char *t)
{
    return strcmp(t, MT_OCI_MANIFEST) == 0 || strcmp(t, MT_DOCKER_MANIFEST) == 0;
}

static void desc_clear(manifest_desc_t *d)
{
    free(d->media_type);
    free(d->os);
    free(d->arch);
    free(d->variant);
    free(d->ref_name);
    memset(d, 0, sizeof(*d));
}

void manifest_free(manifest_t *m)
{
    if (!m)
        return;
    desc_clear(&m->config);
    for (size_t i = 0; i < m->nlayers; i++)
        desc_clear(&m->layers[i]);
    for (size_t i = 0; i < m->nmanifests; i++)
        desc_clear(&m->manifests[i]);
    free(m->layers);
    free(m->manifests);
    free(m->media_type);
    free(m);
}

static void manifest_freep(manifest_t **m)
{
    manifest_free(*m);
}

/* Optional string member: NULL when absent; -1 when present but not a
 * string. */
static int opt_str(const json_t *o, const char *key, char **out, const char *where, oak_err_t *err)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return oak_err_set(err, OAK_E_INVALID, "%s.%s must be a string", where, key);
    *out = xstrdup(json_string_value(v));
    return 0;
}

static int parse_desc(const json_t *o, manifest_desc_t *d, const char *where, oak_err_t *err)
{
    if (!json_is_object(o))
        return oak_err_set(err, OAK_E_INVALID, "%s must be an object", where);
    const char *mt = oak_json_str(o, "mediaType");
    const char *digest = oak_json_str(o, "digest");
    json_t *size = json_object_get(o, "size");
    if (!mt || !*mt)
        return oak_err_set(err, OAK_E_INVALID, "%s.mediaType is missing", where);
    if (!digest)
        return oak_err_set(err, OAK_E_INVALID, "%s.digest is missing", where);
    if (!image_digest_valid(digest)) {
        if (strncmp(digest, "sha256:", 7) != 0 && strchr(digest, ':'))
            return oak_err_set(err, OAK_E_INVALID,
                               "%s.digest '%.80s': unsupported digest algorithm (only sha256)",
                               where, digest);
        return oak_err_set(err, OAK_E_INVALID, "%s.digest '%.80s' is not a sha256 digest", where,
                           digest);
    }
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return oak_err_set(err, OAK_E_INVALID, "%s.size must be a non-negative integer", where);
    d->media_type = xstrdup(mt);
    snprintf(d->digest, sizeof(d->digest), "%s", digest);
    d->size = json_integer_value(size);
    return 0;
}

static int parse_image(const json_t *root, manifest_t *m, oak_err_t *err)
{
    json_t *config = json_object_get(root, "config");
    json_t *layers = json_object_get(root, "layers");
    if (!config)
        return oak_err_set(err, OAK_E_INVALID, "image manifest has no config");
    if (parse_desc(config, &m->config, "config", err) < 0)
        return -1;
    if (strcmp(m->config.media_type, MT_OCI_CONFIG) != 0 &&
        strcmp(m->config.media_type, MT_DOCKER_CONFIG) != 0)
        return oak_err_set(err, OAK_E_INVALID,
                           "not a container image: unsupported config media type '%.100s'",
                           m->config.media_type);
    if (m->config.size > (int64_t)MANIFEST_MAX_BYTES)
        return oak_err_set(err, OAK_E_INVALID, "config.size %lld is over the %u byte limit",
                           (long long)m->config.size, MANIFEST_MAX_BYTES);
    if (!json_is_array(layers))
        return oak_err_set(err, OAK_E_INVALID, "image manifest: layers must be an array");
    size_t n = json_array_size(layers);
    if (n > MANIFEST_MAX_LAYERS)
        return oak_err_set(err, OAK_E_INVALID, "image manifest has %zu layers (at most %d)", n,
                           MANIFEST_MAX_LAYERS);
    m->layers = xcalloc(n ? n : 1, sizeof(*m->layers));
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof(where), "layers[%zu]", i);
        manifest_desc_t *d = &m->layers[i];
        m->nlayers = i + 1;
        if (parse_desc(json_array_get(layers, i), d, where, err) < 0)
            return -1;
        if (strstr(d->media_type, ".foreign."))
            return oak_err_set(err, OAK_E_INVALID, "%s: foreign (Windows) layers are not supported",
                               where);
        if (!in_list(d->media_type, layer_types))
            return oak_err_set(err, OAK_E_INVALID, "%s: unsupported layer media type '%.100s'",
                               where, d->media_type);
        if (d->size > MANIFEST_MAX_LAYER_BYTES)
            return oak_err_set(err, OAK_E_INVALID, "%s.size %lld is over the layer size limit",
                               where, (long long)d->size);
    }
    return 0;
}

static int parse_index(const json_t *root, manifest_t *m, oak_err_t *err)
{
    json_t *list = json_object_get(root, "manifests");
    if (!json_is_array(list))
        return oak_err_set(err, OAK_E_INVALID, "image index: manifests must be an array");
    size_t n = json_array_size(list);
    if (n > MANIFEST_MAX_ENTRIES)
        return oak_err_set(err, OAK_E_INVALID, "image index has %zu entries (at most %d)", n,
                           MANIFEST_MAX_ENTRIES);
    m->manifests = xcalloc(n ? n : 1, sizeof(*m->manifests));
    for (size_t i = 0; i < n; i++) {
        char where[40];
        snprintf(where, sizeof(where), "manifests[%zu]", i);
        json_t *e = json_array_get(list, i);
        manifest_desc_t *d = &m->manifests[i];
        m->nmanifests = i + 1;
        if (parse_desc(e, d, where, err) < 0)
            return -1;
        json_t *plat = json_object_get(e, "platform");
        if (plat && !json_is_null(plat)) {
            if (!json_is_object(plat))
                return oak_err_set(err, OAK_E_INVALID, "%s.platform must be an object", where);
            snprintf(where, sizeof(where), "manifests[%zu].platform", i);
            if (opt_str(plat, "os", &d->os, where, err) < 0 ||
                opt_str(plat, "architecture", &d->arch, where, err) < 0 ||
                opt_str(plat, "variant", &d->variant, where, err) < 0)
                return -1;
        }
        json_t *ann = json_object_get(e, "annotations");
        if (ann && !json_is_null(ann)) {
            if (!json_is_object(ann))
                return oak_err_set(err, OAK_E_INVALID,
                                   "manifests[%zu].annotations must be an "
                                   "object",
                                   i);
            snprintf(where, sizeof(where), "manifests[%zu].annotations", i);
            if (opt_str(ann, "org.opencontainers.image.ref.name", &d->ref_name, where, err) < 0)
                return -1;
        }
    }
    return 0;
}

int manifest_parse(const char *buf, size_t len, const char *content_type, manifest_t **out,
                   oak_err_t *err)
{
    json_auto_t *root = NULL;
    *out = NULL;
    if (len > MANIFEST_MAX_BYTES)
        return oak_err_set(err, OAK_E_TOO_LARGE, "manifest of %zu bytes is over the %u byte limit",
                           len, MANIFEST_MAX_BYTES);
    if (oak_json_parse_object(buf, len, MANIFEST_MAX_BYTES, &root, err) < 0)
        return -1;
    json_t *sv = json_object_get(root, "schemaVersion");
    if (!json_is_integer(sv))
        return oak_err_set(err, OAK_E_INVALID, "manifest has no schemaVersion");
    if (json_integer_value(sv) == 1)
        return oak_err_set(err, OAK_E_INVALID, "Docker schema 1 manifests are not supported");
    if (json_integer_value(sv) != 2)
        return oak_err_set(err, OAK_E_INVALID, "unsupported manifest schemaVersion %lld",
                           (long long)json_integer_value(sv));

    json_t *mtv = json_object_get(root, "mediaType");
    if (mtv && !json_is_string(mtv))
        return oak_err_set(err, OAK_E_INVALID, "manifest mediaType must be a string");
    _cleanup_free_ char *ctype = NULL;
    const char *mt = json_string_value(mtv);
    if (!mt && content_type && *content_type) {
        ctype = xstrndup(content_type, strcspn(content_type, "; \t"));
        if (is_index_type(ctype) || is_manifest_type(ctype))
            mt = ctype;
    }
    if (!mt) {
        bool has_manifests = json_object_get(root, "manifests") != NULL;
        bool has_layers = json_object_get(root, "layers") || json_object_get(root, "config");
        if (has_manifests == has_layers)
            return oak_err_set(err, OAK_E_INVALID,
                               "manifest has no mediaType and is neither an image manifest nor "
                               "an index");
        mt = has_manifests ? MT_OCI_INDEX : MT_OCI_MANIFEST;
    }
    _cleanup_(manifest_freep) manifest_t *m = xcalloc(1, sizeof(*m));
    m->media_type = xstrdup(mt);
    if (is_index_type(mt)) {
        if (json_object_get(root, "layers"))
            return oak_err_set(err, OAK_E_INVALID, "image index has layers");
        m->kind = MANIFEST_INDEX;
        if (parse_index(root, m, err) < 0)
            return -1;
    } else if (is_manifest_type(mt)) {
        if (json_object_get(root, "manifests"))
            return oak_err_set(err, OAK_E_INVALID, "image manifest has a manifests list");
        m->kind = MANIFEST_IMAGE;
        if (parse_image(root, m, err) < 0)
            return -1;
    } else {
        return oak_err_set(err, OAK_E_INVALID, "unsupported manifest media type '%.100s'", mt);
    }
    *out = oak_steal(&m);
    return 0;
}

static const char *str_or(const char *s, const char *def)
{
    return s && *s ? s : def;
}

const manifest_desc_t *manifest_select_platform(const manifest_t *idx, const char *os,
                                                const char *arch, const char *variant,
                                                oak_err_t *err)
{
    const manifest_desc_t *exact = NULL, *bare = NULL, *other = NULL;
    for (size_t i = 0; i < idx->nmanifests; i++) {
        const manifest_desc_t *d = &idx->manifests[i];
        if (!is_manifest_type(d->media_type) || !d->os || !d->arch)
            continue;
        if (strcmp(d->os, os) != 0 || strcmp(d->arch, arch) != 0)
            continue;
        if (!variant || !*variant) {
            if (!exact)
                exact = d;
        } else if (d->variant && strcmp(d->variant, variant) == 0) {
            if (!exact)
                exact = d;
        } else if (!d->variant || !*d->variant) {
            if (!bare)
                bare = d;
        } else if (!other) {
            other = d;
        }
    }
    const manifest_desc_t *pick = exact ? exact : bare ? bare : other;
    if (pick)
        return pick;
    char have[300] = "";
    size_t off = 0;
    for (size_t i = 0; i < idx->nmanifests && off < sizeof(have) - 1; i++) {
        const manifest_desc_t *d = &idx->manifests[i];
        if (!is_manifest_type(d->media_type) || !d->os || !d->arch)
            continue;
        int n =
            snprintf(have + off, sizeof(have) - off, "%s%.40s/%.40s%s%.20s", off ? ", " : "", d->os,
                     d->arch, d->variant && *d->variant ? "/" : "", d->variant ? d->variant : "");
        if (n < 0)
            break;
        off += (size_t)n;
        if (off >= sizeof(have))
            off = sizeof(have) - 1;
    }
    oak_err_set(err, OAK_E_NOT_FOUND, "no image for platform %s/%s%s%s in the index (it has: %s)",
                os, arch, variant && *variant ? "/" : "", variant ? variant : "",
                str_or(have, "no platform images"));
    return NULL;
}

static int str_array(const json_t *o, const char *key, char ***out, size_t *n, oak_err_t *err)
{
    json_t *a = json_object_get(o, key);
    *out = NULL;
    *n = 0;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return oak_err_set(err, OAK_E_INVALID, "config.%s must be an array of strings", key);
    size_t len = json_array_size(a);
    if (len > CONFIG_MAX_STRINGS)
        return oak_err_set(err, OAK_E_INVALID, "config.%s has %zu entries (at most %d)", key, len,
                           CONFIG_MAX_STRINGS);
    for (size_t i = 0; i < len; i++)
        if (!json_is_string(json_array_get(a, i)))
            return oak_err_set(err, OAK_E_INVALID, "config.%s[%zu] must be a string", key, i);
    char **v = xcalloc(len + 1, sizeof(*v));
    for (size_t i = 0; i < len; i++)
        v[i] = xstrdup(json_string_value(json_array_get(a, i)));
    *out = v;
    *n = len;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void manifest_config_free(manifest_config_t *c)
{
    if (!c)
        return;
    strv_free(c->env, c->nenv);
    strv_free(c->entrypoint, c->nentry);
    strv_free(c->cmd, c->ncmd);
    free(c->workdir);
    free(c->user);
    free(c->os);
    free(c->arch);
    free(c);
}

static void config_freep(manifest_config_t **c)
{
    manifest_config_free(*c);
}

int manifest_config_parse(const char *buf, size_t len, manifest_config_t **out, oak_err_t *err)
{
    json_auto_t *root = NULL;
    *out = NULL;
    if (len > MANIFEST_MAX_BYTES)
        return oak_err_set(err, OAK_E_TOO_LARGE,
                           "image config of %zu bytes is over the %u byte limit", len,
                           MANIFEST_MAX_BYTES);
    if (oak_json_parse_object(buf, len, MANIFEST_MAX_BYTES, &root, err) < 0)
        return -1;
    _cleanup_(config_freep) manifest_config_t *c = xcalloc(1, sizeof(*c));
    if (opt_str(root, "os", &c->os, "image config", err) < 0 ||
        opt_str(root, "architecture", &c->arch, "image config", err) < 0)
        return -1;
    json_t *cfg = json_object_get(root, "config");
    if (cfg && !json_is_null(cfg)) {
        if (!json_is_object(cfg))
            return oak_err_set(err, OAK_E_INVALID, "image config: config must be an object");
        if (str_array(cfg, "Env", &c->env, &c->nenv, err) < 0 ||
            str_array(cfg, "Entrypoint", &c->entrypoint, &c->nentry, err) < 0 ||
            str_array(cfg, "Cmd", &c->cmd, &c->ncmd, err) < 0 ||
            opt_str(cfg, "WorkingDir", &c->workdir, "config", err) < 0 ||
            opt_str(cfg, "User", &c->user, "config", err) < 0)
            return -1;
        for (size_t i = 0; i < c->nenv; i++)
            if (!strchr(c->env[i], '=') || c->env[i][0] == '=')
                return oak_err_set(err, OAK_E_INVALID, "config.Env[%zu] '%.80s' is not NAME=value",
                                   i, c->env[i]);
        if (c->workdir && !*c->workdir) {
            free(c->workdir);
            c->workdir = NULL;
        }
        if (c->user && !*c->user) {
            free(c->user);
            c->user = NULL;
        }
    }
    json_t *rootfs = json_object_get(root, "rootfs");
    if (rootfs && !json_is_null(rootfs)) {
        json_t *ids = json_object_get(rootfs, "diff_ids");
        if (!json_is_object(rootfs) || (ids && !json_is_array(ids)))
            return oak_err_set(err, OAK_E_INVALID,
                               "image config: rootfs.diff_ids must be an array");
        c->ndiff_ids = json_array_size(ids);
    }
    *out = oak_steal(&c);
    return 0;
}
