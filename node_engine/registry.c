/* OCI distribution API client (see registry.h). One curl easy handle per
 * registry_t, reset between requests so its connection stays open across
 * the manifest, config and layer requests of a pull. Every request goes
 * through request(): on a 401 it answers the registry's challenge once
 * (fetching a bearer token, or switching to basic credentials) and
 * retries. Response bodies go to a bounded memory buffer (manifests,
 * tokens, error messages) or, for a blob's 2xx answer, to the caller's fd
 * while they are hashed.
 *
 * Thread-safety: a registry_t belongs to one thread at a time; curl's
 * global initialisation runs once (pthread_once). */
#include "node_engine/registry.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "node_engine/image_ref.h"
#include "node_engine/manifest.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define CONNECT_TIMEOUT_MS 10000L
#define MAX_REDIRECTS      5
/* error bodies and token replies kept in memory */
#define ERROR_BODY_MAX (64u * 1024u)
#define TOKEN_MAX      (1u << 20)
#define USER_AGENT     "oak-node-engine/1"

struct registry {
    CURL *curl;
    char *endpoint, *repository;
    char *scheme; /* "https" or "http" */
    char *username, *password;
    bool insecure;
    long timeout_ms;
    char *token;    /* bearer token, once obtained */
    bool use_basic; /* the registry asked for Basic credentials */
    registry_stats_t stats;
    char errbuf[CURL_ERROR_SIZE];
};

/* One HTTP exchange: the current response's status and headers (reset at
 * each status line, so after redirects they are the final response's), and
 * the body sink. */
typedef struct {
    long status;
    char *content_type, *www_auth;
    /* memory sink */
    char *mem;
    size_t mem_len, mem_cap, mem_max;
    bool mem_overflow;
    /* blob sink (fd >= 0): 2xx bodies go there */
    int fd;
    EVP_MD_CTX *md;
    uint64_t written, limit;
    bool fd_overflow;
    int write_errno;
} xfer_t;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- response parsers ---- */

void registry_challenge_clear(registry_challenge_t *c)
{
    if (!c)
        return;
    free(c->scheme);
    free(c->realm);
    free(c->service);
    free(c->scope);
    free(c->error);
    memset(c, 0, sizeof(*c));
}

static void set_param(registry_challenge_t *c, const char *key, size_t klen, char *value)
{
    char **slot = NULL;
    if (klen == 5 && strncasecmp(key, "realm", 5) == 0)
        slot = &c->realm;
    else if (klen == 7 && strncasecmp(key, "service", 7) == 0)
        slot = &c->service;
    else if (klen == 5 && strncasecmp(key, "scope", 5) == 0)
        slot = &c->scope;
    else if (klen == 5 && strncasecmp(key, "error", 5) == 0)
        slot = &c->error;
    if (slot && !*slot) {
        *slot = value;
        return;
    }
    free(value);
}

int registry_challenge_parse(const char *value, registry_challenge_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!value)
        return -1;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]) && p[n] != ',')
        n++;
    if (n == 0 || memchr(p, '=', n))
        return -1;
    out->scheme = xstrndup(p, n);
    p += n;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && *p != ',' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '=') {
            /* a token68 or junk: skip to the next comma */
            while (*p && *p != ',')
                p++;
            continue;
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        char *val;
        if (*p == '"') {
            p++;
            size_t cap = strlen(p) + 1, o = 0;
            val = xmalloc(cap);
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    p++;
                val[o++] = *p++;
            }
            val[o] = 0;
            if (*p == '"')
                p++;
        } else {
            const char *v = p;
            while (*p && *p != ',' && !isspace((unsigned char)*p))
                p++;
            val = xstrndup(v, (size_t)(p - v));
        }
        if (klen > 0)
            set_param(out, key, klen, val);
        else
            free(val);
    }
    return 0;
}

char *registry_token_parse(const char *buf, size_t len, oak_err_t *err)
{
    json_auto_t *j = NULL;
    if (oak_json_parse_object(buf, len, TOKEN_MAX, &j, err) < 0)
        return NULL;
    const char *t = oak_json_str(j, "token");
    if (!t || !*t)
        t = oak_json_str(j, "access_token");
    if (!t || !*t) {
        oak_err_set(err, OAK_E_INVALID, "token server reply holds no token");
        return NULL;
    }
    for (const char *c = t; *c; c++)
        if ((unsigned char)*c < 0x21 || *c == 0x7f) {
            oak_err_set(err, OAK_E_INVALID, "token server reply: token has invalid characters");
            return NULL;
        }
    return xstrdup(t);
}

char *registry_error_message(const char *buf, size_t len)
{
    json_auto_t *j = NULL;
    if (!buf || oak_json_parse_object(buf, len, ERROR_BODY_MAX, &j, NULL) < 0)
        return NULL;
    json_t *errors = json_object_get(j, "errors");
    if (!json_is_array(errors) || json_array_size(errors) == 0)
        return NULL;
    char msg[400] = "";
    size_t off = 0, i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        const char *code = oak_json_str(e, "code");
        const char *m = oak_json_str(e, "message");
        if (!code && !m)
            continue;
        int w = snprintf(msg + off, sizeof(msg) - off, "%s%.60s%s%.200s", off ? "; " : "",
                         code ? code : "", code && m ? ": " : "", m ? m : "");
        if (w < 0 || (size_t)w >= sizeof(msg) - off)
            break;
        off += (size_t)w;
    }
    return off ? xstrdup(msg) : NULL;
}

/* ---- transfers ---- */

static void xfer_reset(xfer_t *x)
{
    x->status = 0;
    free(x->content_type);
    free(x->www_auth);
    x->content_type = x->www_auth = NULL;
    free(x->mem);
    x->mem = NULL;
    x->mem_len = x->mem_cap = 0;
    x->mem_overflow = x->fd_overflow = false;
    x->written = 0;
    x->write_errno = 0;
    if (x->md && !EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        abort();
}

static void xfer_clear(xfer_t *x)
{
    xfer_reset(x);
    EVP_MD_CTX_free(x->md);
    x->md = NULL;
}

static char *header_value(const char *line, size_t n, const char *name)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    return xstrndup(v, (size_t)(end - v));
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a redirect or 100-continue) */
        free(x->content_type);
        free(x->www_auth);
        x->content_type = x->www_auth = NULL;
        const char *sp = memchr(line, ' ', n);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    char *v;
    if (!x->content_type && (v = header_value(line, n, "Content-Type")))
        x->content_type = v;
    else if (!x->www_auth && (v = header_value(line, n, "WWW-Authenticate")))
        x->www_auth = v;
    return n;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (x->fd >= 0 && x->status >= 200 && x->status < 300) {
        if (x->written + n > x->limit) {
            x->fd_overflow = true;
            return 0;
        }
        if (!EVP_DigestUpdate(x->md, ptr, n))
            abort();
        const char *p = ptr;
        size_t left = n;
        off_t off = (off_t)x->written;
        while (left > 0) {
            ssize_t w = pwrite(x->fd, p, left, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                x->write_errno = errno;
                return 0;
            }
            p += w;
            left -= (size_t)w;
            off += w;
        }
        x->written += n;
        return n;
    }
    size_t max = x->status >= 200 && x->status < 300 ? x->mem_max : ERROR_BODY_MAX;
    if (n > max - x->mem_len) {
        if (x->status >= 200 && x->status < 300) {
            x->mem_overflow = true;
            return 0;
        }
        n = max - x->mem_len; /* an error body only feeds a message */
        if (n == 0)
            return size * nmemb;
    }
    if (x->mem_len + n + 1 > x->mem_cap) {
        size_t cap = x->mem_cap ? x->mem_cap : 4096;
        while (cap < x->mem_len + n + 1)
            cap *= 2;
        x->mem = xrealloc(x->mem, cap);
        x->mem_cap = cap;
    }
    memcpy(x->mem + x->mem_len, ptr, n);
    x->mem_len += n;
    x->mem[x->mem_len] = 0;
    return size * nmemb;
}

static long timeout(const registry_t *r)
{
    return r->timeout_ms > 0 ? r->timeout_ms : DEFAULT_TIMEOUT_MS;
}

typedef enum {
    AUTH_REGISTRY,    /* the bearer token or basic credentials, once known */
    AUTH_TOKEN_SERVER /* basic credentials when configured */
} auth_t;

/* One HTTP GET of url. blob: no overall timeout, a stall timeout instead.
 * Transport errors become oak errors; any HTTP status is success here;
 * returns 1 when a sink overflowed. */
static int perform(registry_t *r, const char *url, const char *accept, auth_t auth, bool blob,
                   xfer_t *x, oak_err_t *err)
{
    CURL *h = r->curl;
    curl_easy_reset(h);
    r->errbuf[0] = 0;
    const char *protos = r->insecure ? "http,https" : "https";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, protos);
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, protos);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    long t = timeout(r);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, t < CONNECT_TIMEOUT_MS ? t : CONNECT_TIMEOUT_MS);
    if (blob) {
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, t >= 1000 ? t / 1000 : 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, t);
    }
    _cleanup_free_ char *accept_h = accept ? xasprintf("Accept: %s", accept) : NULL;
    _cleanup_free_ char *auth_h = NULL;
    struct curl_slist *hl = NULL;
    if (accept_h)
        hl = curl_slist_append(hl, accept_h);
    if (auth == AUTH_REGISTRY && r->token) {
        auth_h = xasprintf("Authorization: Bearer %s", r->token);
        hl = curl_slist_append(hl, auth_h);
    } else if (r->username && (auth == AUTH_TOKEN_SERVER || r->use_basic)) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, r->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, r->password ? r->password : "");
    }
    if (hl)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    xfer_reset(x);
    if (x->fd >= 0 && ftruncate(x->fd, 0) < 0) {
        curl_slist_free_all(hl);
        return oak_err_errno(err, errno, "truncate a download file");
    }
    r->stats.requests++;
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hl);
    if (rc == CURLE_OK)
        return 0;
    if (x->write_errno)
        return oak_err_errno(err, x->write_errno, "write a download file");
    if (x->fd_overflow || x->mem_overflow)
        return 1; /* the caller names what was too large */
    const char *msg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return oak_err_set(err, OAK_E_TIMEOUT, "registry %s: %s", r->endpoint, msg);
    if (rc == CURLE_UNSUPPORTED_PROTOCOL)
        return oak_err_set(err, OAK_E_UNAVAILABLE,
                           "registry %s: %s (plain HTTP is only used for registries configured "
                           "insecure)",
                           r->endpoint, msg);
    return oak_err_set(err, OAK_E_UNAVAILABLE, "registry %s unreachable: %s", r->endpoint, msg);
}

/* Answers a 401 challenge: fetches a bearer token or switches to basic
 * credentials. */
static int authenticate(registry_t *r, const char *www_auth, oak_err_t *err)
{
    registry_challenge_t c;
    if (registry_challenge_parse(www_auth, &c) < 0)
        return oak_err_set(err, OAK_E_UNAUTH,
                           "registry %s requires authentication but sent no usable challenge",
                           r->endpoint);
    int rc = 0;
    if (strcasecmp(c.scheme, "Basic") == 0) {
        if (!r->username)
            rc = oak_err_set(err, OAK_E_UNAUTH,
                             "registry %s requires credentials for %s and none are configured",
                             r->endpoint, r->repository);
        else
            r->use_basic = true;
        registry_challenge_clear(&c);
        return rc;
    }
    if (strcasecmp(c.scheme, "Bearer") != 0 || !c.realm) {
        rc = oak_err_set(err, OAK_E_UNAUTH, "registry %s: unsupported authentication scheme '%s'",
                         r->endpoint, c.scheme);
        registry_challenge_clear(&c);
        return rc;
    }
    if (strncmp(c.realm, "https://", 8) != 0 &&
        !(r->insecure && strncmp(c.realm, "http://", 7) == 0)) {
        rc = oak_err_set(err, OAK_E_UNAUTH, "registry %s: token realm '%.200s' is not https",
                         r->endpoint, c.realm);
        registry_challenge_clear(&c);
        return rc;
    }
    _cleanup_free_ char *default_scope = xasprintf("repository:%s:pull", r->repository);
    char *scope = curl_easy_escape(r->curl, c.scope ? c.scope : default_scope, 0);
    char *service = c.service ? curl_easy_escape(r->curl, c.service, 0) : NULL;
    _cleanup_free_ char *url =
        xasprintf("%s%cscope=%s%s%s", c.realm, strchr(c.realm, '?') ? '&' : '?', scope,
                  service ? "&service=" : "", service ? service : "");
    curl_free(scope);
    curl_free(service);
    registry_challenge_clear(&c);

    xfer_t x = {.fd = -1, .mem_max = TOKEN_MAX};
    int p = perform(r, url, "application/json", AUTH_TOKEN_SERVER, false, &x, err);
    if (p < 0) {
        xfer_clear(&x);
        return -1;
    }
    if (p > 0) {
        xfer_clear(&x);
        return oak_err_set(err, OAK_E_UNAVAILABLE, "registry %s: token reply over %u bytes",
                           r->endpoint, TOKEN_MAX);
    }
    if (x.status == 401 || x.status == 403) {
        _cleanup_free_ char *m = registry_error_message(x.mem, x.mem_len);
        xfer_clear(&x);
        return oak_err_set(err, OAK_E_UNAUTH, "registry %s: the token server refused %s%s%s",
                           r->endpoint, r->username ? "the credentials" : "anonymous access",
                           m ? ": " : "", m ? m : "");
    }
    if (x.status != 200) {
        xfer_clear(&x);
        return oak_err_set(err, OAK_E_UNAVAILABLE, "registry %s: token server answered HTTP %ld",
                           r->endpoint, x.status);
    }
    oak_err_t perr = OAK_ERR_INIT;
    char *token = registry_token_parse(x.mem ? x.mem : "", x.mem_len, &perr);
    xfer_clear(&x);
    if (!token) {
        rc = oak_err_set(err, OAK_E_UNAUTH, "registry %s: %s", r->endpoint, perr.msg);
        oak_err_clear(&perr);
        return rc;
    }
    free(r->token);
    r->token = token;
    return 0;
}

/* GET with authentication; maps error statuses. what names the object in
 * messages ("manifest docker.io/library/x:1"). Returns 0 with a 2xx in
 * x->status, 1 when a sink overflowed, -1 on error. */
static int request(registry_t *r, const char *url, const char *accept, bool blob, const char *what,
                   xfer_t *x, oak_err_t *err)
{
    for (int attempt = 0;; attempt++) {
        int p = perform(r, url, accept, AUTH_REGISTRY, blob, x, err);
        if (p != 0)
            return p;
        if (x->status != 401 || attempt > 0 || !x->www_auth)
            break;
        _cleanup_free_ char *challenge = xstrdup(x->www_auth);
        if (authenticate(r, challenge, err) < 0)
            return -1;
    }
    if (x->status >= 200 && x->status < 300)
        return 0;
    _cleanup_free_ char *m = registry_error_message(x->mem, x->mem_len);
    const char *sep = m ? ": " : "";
    const char *msg = m ? m : "";
    switch (x->status) {
    case 401:
    case 403:
        if (r->username)
            return oak_err_set(err, OAK_E_UNAUTH,
                               "%s: access denied with the configured "
                               "credentials (HTTP %ld)%s%s",
                               what, x->status, sep, msg);
        return oak_err_set(err, OAK_E_UNAUTH,
                           "%s: pull access denied, the repository does not exist or needs "
                           "credentials (HTTP %ld)%s%s",
                           what, x->status, sep, msg);
    case 404:
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s not found%s%s", what, sep, msg);
    case 429:
        return oak_err_set(err, OAK_E_UNAVAILABLE, "%s: the registry rate-limits us (HTTP 429)%s%s",
                           what, sep, msg);
    default:
        if (x->status >= 500)
            return oak_err_set(err, OAK_E_UNAVAILABLE, "%s: registry error HTTP %ld%s%s", what,
                               x->status, sep, msg);
        return oak_err_set(err, OAK_E_INVALID, "%s: unexpected HTTP status %ld%s%s", what,
                           x->status, sep, msg);
    }
}

/* ---- public ---- */

int registry_open(const char *endpoint, const char *repository, const registry_opts_t *o,
                  registry_t **out, oak_err_t *err)
{
    pthread_once(&global_once, global_init);
    registry_t *r = xcalloc(1, sizeof(*r));
    r->curl = curl_easy_init();
    if (!r->curl) {
        free(r);
        return oak_err_set(err, OAK_E_INTERNAL, "curl_easy_init failed");
    }
    r->endpoint = xstrdup(endpoint);
    r->repository = xstrdup(repository);
    r->insecure = o && o->insecure;
    r->scheme = xstrdup(r->insecure ? "http" : "https");
    if (o && o->username && *o->username) {
        r->username = xstrdup(o->username);
        r->password = xstrdup(o->password ? o->password : "");
    }
    r->timeout_ms = o ? o->timeout_ms : 0;
    *out = r;
    return 0;
}

void registry_close(registry_t *r)
{
    if (!r)
        return;
    curl_easy_cleanup(r->curl);
    free(r->endpoint);
    free(r->repository);
    free(r->scheme);
    free(r->username);
    free(r->password);
    free(r->token);
    free(r);
}

void registry_stats(const registry_t *r, registry_stats_t *out)
{
    *out = r->stats;
}

static void hex_of(const unsigned char *md, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int registry_get_manifest(registry_t *r, const char *reference, char **body, size_t *len,
                          char **content_type, oak_err_t *err)
{
    *body = NULL;
    *len = 0;
    if (content_type)
        *content_type = NULL;
    bool by_digest = strncmp(reference, "sha256:", 7) == 0;
    _cleanup_free_ char *url =
        xasprintf("%s://%s/v2/%s/manifests/%s", r->scheme, r->endpoint, r->repository, reference);
    _cleanup_free_ char *what = xasprintf("manifest %s/%s%s%s", r->endpoint, r->repository,
                                          by_digest ? "@" : ":", reference);
    xfer_t x = {.fd = -1, .mem_max = MANIFEST_MAX_BYTES};
    int rc = request(r, url, MANIFEST_ACCEPT, false, what, &x, err);
    if (rc > 0)
        rc = oak_err_set(err, OAK_E_TOO_LARGE, "%s is over %u bytes", what, MANIFEST_MAX_BYTES);
    if (rc < 0) {
        xfer_clear(&x);
        return -1;
    }
    if (by_digest) {
        unsigned char md[32];
        unsigned int n = 0;
        char hex[65];
        if (!EVP_Digest(x.mem ? x.mem : "", x.mem_len, md, &n, EVP_sha256(), NULL))
            abort();
        hex_of(md, hex);
        if (strcmp(hex, reference + 7) != 0) {
            xfer_clear(&x);
            return oak_err_set(err, OAK_E_INVALID,
                               "blob %s: content does not match its digest (manifest from %s)",
                               reference, r->endpoint);
        }
    }
    *body = x.mem ? x.mem : xstrdup("");
    *len = x.mem_len;
    x.mem = NULL;
    if (content_type)
        *content_type = oak_steal(&x.content_type);
    xfer_clear(&x);
    return 0;
}

int registry_get_blob(registry_t *r, const char *digest, int64_t size, int64_t max_size, int fd,
                      oak_err_t *err)
{
    _cleanup_free_ char *url =
        xasprintf("%s://%s/v2/%s/blobs/%s", r->scheme, r->endpoint, r->repository, digest);
    _cleanup_free_ char *what = xasprintf("blob %s of %s/%s", digest, r->endpoint, r->repository);
    xfer_t x = {.fd = fd, .md = EVP_MD_CTX_new(), .mem_max = ERROR_BODY_MAX};
    if (!x.md)
        abort();
    x.limit = (uint64_t)(size >= 0 ? size : max_size);
    int rc = request(r, url, NULL, true, what, &x, err);
    if (rc > 0)
        rc = oak_err_set(err, OAK_E_INVALID, "blob %s: larger than the %lld bytes it should have",
                         digest, (long long)x.limit);
    if (rc == 0 && size >= 0 && x.written != (uint64_t)size)
        rc = oak_err_set(err, OAK_E_INVALID, "blob %s: got %llu bytes, its descriptor says %lld",
                         digest, (unsigned long long)x.written, (long long)size);
    if (rc == 0) {
        unsigned char md[32];
        unsigned int n = 0;
        char hex[65];
        if (!EVP_DigestFinal_ex(x.md, md, &n) || n != 32)
            abort();
        hex_of(md, hex);
        if (strcmp(hex, digest + 7) != 0)
            rc = oak_err_set(err, OAK_E_INVALID,
                             "blob %s: content does not match its digest (corrupt blob from %s)",
                             digest, r->endpoint);
    }
    if (rc == 0) {
        r->stats.blobs++;
        r->stats.bytes += x.written;
    }
    xfer_clear(&x);
    return rc;
}
