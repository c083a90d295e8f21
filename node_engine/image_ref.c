/* Image reference parsing (see image_ref.h). The grammar follows
 * github.com/distribution/reference: a name is an optional registry host
 * followed by '/'-separated lower-case path components; the first
 * component is a host when it contains '.' or ':', is "localhost", starts
 * with '[' (IPv6) or has upper-case letters. Tags are
 * [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; digests must be sha256. Pure code,
 * no shared state. */
#include "node_engine/image_ref.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

#define DOCKER_HUB          "docker.io"
#define DOCKER_HUB_ENDPOINT "registry-1.docker.io"
#define TAG_MAX             128

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return isalnum((unsigned char)c) != 0;
}

bool image_digest_valid(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != IMAGE_DIGEST_LEN)
        return false;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool tag_valid(const char *s, size_t n)
{
    if (n == 0 || n > TAG_MAX)
        return false;
    if (!(is_alnum(s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* One path component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)* */
static bool component_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(s[i]))
            i++;
        if (i == n)
            return true;
        /* a separator, then at least one alnum */
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

/* host[:port], host being DNS labels or a bracketed IPv6 address. */
static bool host_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close || close == s + 1)
            return false;
        for (const char *p = s + 1; p < close; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return false;
        i = (size_t)(close - s) + 1;
    } else {
        /* labels: [A-Za-z0-9] ([A-Za-z0-9-]* [A-Za-z0-9])? separated by '.' */
        for (;;) {
            size_t start = i;
            while (i < n && (is_alnum(s[i]) || s[i] == '-'))
                i++;
            if (i == start || s[start] == '-' || s[i - 1] == '-')
                return false;
            if (i < n && s[i] == '.') {
                i++;
                continue;
            }
            break;
        }
    }
    if (i == n)
        return true;
    if (s[i] != ':' || i + 1 == n || n - i - 1 > 5)
        return false;
    long port = 0;
    for (size_t j = i + 1; j < n; j++) {
        if (!isdigit((unsigned char)s[j]))
            return false;
        port = port * 10 + (s[j] - '0');
    }
    return port >= 1 && port <= 65535;
}

static bool looks_like_host(const char *s, size_t n)
{
    if (n == 9 && memcmp(s, "localhost", 9) == 0)
        return true;
    if (s[0] == '[')
        return true;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == ':' || isupper((unsigned char)s[i]))
            return true;
    return false;
}

static int parse_oci(const char *rest, image_ref_t *r, oak_err_t *err)
{
    const char *colon = strchr(rest, ':');
    size_t dlen = colon ? (size_t)(colon - rest) : strlen(rest);
    if (dlen == 0)
        return oak_err_set(err, OAK_E_INVALID, "image reference 'oci:' names no directory");
    if (colon && !tag_valid(colon + 1, strlen(colon + 1)))
        return oak_err_set(err, OAK_E_INVALID,
                           "image reference 'oci:%s': invalid tag '%s' (the directory of an oci "
                           "reference cannot contain ':')",
                           rest, colon + 1);
    r->oci_dir = xstrndup(rest, dlen);
    if (colon)
        r->tag = xstrdup(colon + 1);
    r->oci_layout = true;
    return 0;
}

static int parse_name(const char *s, size_t n, image_ref_t *r, const char *whole, oak_err_t *err)
{
    const char *slash = memchr(s, '/', n);
    const char *path = s;
    size_t plen = n;
    if (slash && looks_like_host(s, (size_t)(slash - s))) {
        size_t hlen = (size_t)(slash - s);
        if (!host_valid(s, hlen))
            return oak_err_set(err, OAK_E_INVALID, "image reference '%s': invalid registry host",
                               whole);
        r->registry = xstrndup(s, hlen);
        path = slash + 1;
        plen = n - hlen - 1;
    } else {
        r->registry = xstrdup(DOCKER_HUB);
    }
    if (strcmp(r->registry, "index.docker.io") == 0) {
        free(r->registry);
        r->registry = xstrdup(DOCKER_HUB);
    }
    if (plen == 0)
        return oak_err_set(err, OAK_E_INVALID, "image reference '%s' names no repository", whole);
    for (size_t i = 0, start = 0; i <= plen; i++) {
        if (i < plen && path[i] != '/')
            continue;
        if (!component_valid(path + start, i - start)) {
            for (size_t j = 0; j < plen; j++)
                if (isupper((unsigned char)path[j]))
                    return oak_err_set(err, OAK_E_INVALID,
                                       "image reference '%s': repository name must be lowercase",
                                       whole);
            return oak_err_set(err, OAK_E_INVALID,
                               "image reference '%s': invalid repository name component '%.*s'",
                               whole, (int)(i - start), path + start);
        }
        start = i + 1;
    }
    bool hub = strcmp(r->registry, DOCKER_HUB) == 0;
    if (hub && !memchr(path, '/', plen))
        r->repository = xasprintf("library/%.*s", (int)plen, path);
    else
        r->repository = xstrndup(path, plen);
    if (strlen(r->registry) + 1 + strlen(r->repository) > IMAGE_REF_NAME_MAX)
        return oak_err_set(err, OAK_E_INVALID,
                           "image reference '%s': repository name longer than %d characters", whole,
                           IMAGE_REF_NAME_MAX);
    return 0;
}

static int parse(const char *s, image_ref_t *r, oak_err_t *err)
{
    size_t len = strlen(s);
    if (len == 0)
        return oak_err_set(err, OAK_E_INVALID, "empty image reference");
    if (len > IMAGE_REF_MAX)
        return oak_err_set(err, OAK_E_INVALID, "image reference longer than %d characters",
                           IMAGE_REF_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return oak_err_set(err, OAK_E_INVALID, "image reference contains a control character");
    if (strncmp(s, "oci:", 4) == 0)
        return parse_oci(s + 4, r, err);
    for (size_t i = 0; i < len; i++)
        if (isspace((unsigned char)s[i]))
            return oak_err_set(err, OAK_E_INVALID, "image reference '%s' contains a space", s);

    size_t n = len;
    const char *at = strchr(s, '@');
    if (at) {
        if (strncmp(at + 1, "sha256:", 7) != 0 && strchr(at + 1, ':'))
            return oak_err_set(err, OAK_E_INVALID,
                               "image reference '%s': unsupported digest algorithm (only sha256)",
                               s);
        if (!image_digest_valid(at + 1))
            return oak_err_set(err, OAK_E_INVALID,
                               "image reference '%s': digest must be sha256: and 64 lower-case "
                               "hex digits",
                               s);
        r->digest = xstrdup(at + 1);
        n = (size_t)(at - s);
    }
    /* a tag is after the last ':' that follows the last '/' */
    const char *last_slash = NULL, *last_colon = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/')
            last_slash = s + i;
        else if (s[i] == ':')
            last_colon = s + i;
    }
    if (last_colon && (!last_slash || last_colon > last_slash)) {
        size_t tlen = n - (size_t)(last_colon - s) - 1;
        if (!tag_valid(last_colon + 1, tlen))
            return oak_err_set(err, OAK_E_INVALID,
                               "image reference '%s': invalid tag '%.*s' (letters, digits, "
                               "'_', '.', '-', at most %d, not starting with '.' or '-')",
                               s, (int)tlen, last_colon + 1, TAG_MAX);
        r->tag = xstrndup(last_colon + 1, tlen);
        n = (size_t)(last_colon - s);
    }
    if (n == 0)
        return oak_err_set(err, OAK_E_INVALID, "image reference '%s' names no repository", s);
    if (parse_name(s, n, r, s, err) < 0)
        return -1;
    if (!r->tag && !r->digest)
        r->tag = xstrdup("latest");
    return 0;
}

int image_ref_parse(const char *s, image_ref_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (parse(s, out, err) < 0) {
        image_ref_clear(out);
        return -1;
    }
    return 0;
}

void image_ref_clear(image_ref_t *r)
{
    if (!r)
        return;
    free(r->registry);
    free(r->repository);
    free(r->tag);
    free(r->digest);
    free(r->oci_dir);
    memset(r, 0, sizeof(*r));
}

char *image_ref_format(const image_ref_t *r)
{
    if (r->oci_layout)
        return r->tag ? xasprintf("oci:%s:%s", r->oci_dir, r->tag)
                      : xasprintf("oci:%s", r->oci_dir);
    return xasprintf("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
                     r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}

const char *image_ref_endpoint(const image_ref_t *r)
{
    if (r->registry && strcmp(r->registry, DOCKER_HUB) == 0)
        return DOCKER_HUB_ENDPOINT;
    return r->registry;
}
