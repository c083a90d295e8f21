/* Blocking HTTP client over the libcurl easy API. Owns nothing between
 * calls: each request creates and destroys its own easy handle, so calls
 * from several threads never share state (curl_global_init runs once, via
 * pthread_once). Responses are buffered in memory up to
 * OAK_HTTPC_MAX_RESPONSE. */
#include "lib/oak_httpc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define CONNECT_TIMEOUT_MS 10000L

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void curl_easy_cleanupp(CURL **h)
{
    if (*h)
        curl_easy_cleanup(*h);
}

static void curl_slist_freep(struct curl_slist **l)
{
    if (*l)
        curl_slist_free_all(*l);
}

typedef struct {
    char *buf;
    size_t len, cap;
    bool too_large;
} sink_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink_t *s = userdata;
    size_t n = size * nmemb;
    if (n > OAK_HTTPC_MAX_RESPONSE - s->len) {
        s->too_large = true;
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->buf = xrealloc(s->buf, cap);
        s->cap = cap;
    }
    memcpy(s->buf + s->len, ptr, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static int map_curl_error(CURLcode rc, const char *errbuf, const char *method, const char *url,
                          oak_err_t *err)
{
    const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return oak_err_set(err, OAK_E_TIMEOUT, "%s %s: %s", method, url, msg);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return oak_err_set(err, OAK_E_INVALID, "%s %s: %s", method, url, msg);
    default:
        return oak_err_set(err, OAK_E_UNAVAILABLE, "%s %s: %s", method, url, msg);
    }
}

static int do_request(const char *socket_path, const char *method, const char *url,
                      const char *const *headers, const char *body, size_t body_len,
                      long timeout_ms, oak_httpc_resp_t *out, oak_err_t *err)
{
    *out = (oak_httpc_resp_t){0};
    if (!method || !method[0] || strpbrk(method, " \r\n"))
        return oak_err_set(err, OAK_E_INVALID, "invalid HTTP method");
    pthread_once(&global_once, global_init);

    _cleanup_(curl_easy_cleanupp) CURL *h = curl_easy_init();
    _cleanup_(curl_slist_freep) struct curl_slist *hl = NULL;
    if (!h)
        return oak_err_set(err, OAK_E_INTERNAL, "curl_easy_init failed");
    char errbuf[CURL_ERROR_SIZE] = "";
    sink_t sink = {0};

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms > 0 && timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms
                                                                       : CONNECT_TIMEOUT_MS);
    if (timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (socket_path) {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket_path);
        curl_easy_setopt(h, CURLOPT_PROXY, "");
    }

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0 && !body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        }
    }
    for (const char *const *p = headers; p && *p; p++) {
        struct curl_slist *n = curl_slist_append(hl, *p);
        if (!n)
            return oak_err_set(err, OAK_E_INTERNAL, "curl_slist_append failed");
        hl = n;
    }
    if (hl)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        free(sink.buf);
        if (sink.too_large)
            return oak_err_set(err, OAK_E_TOO_LARGE, "%s %s: response exceeds %u bytes", method,
                               url, OAK_HTTPC_MAX_RESPONSE);
        return map_curl_error(rc, errbuf, method, url, err);
    }
    char *ctype = NULL;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
    out->content_type = ctype ? xstrdup(ctype) : NULL;
    out->body = sink.buf ? sink.buf : xstrdup("");
    out->body_len = sink.len;
    return 0;
}

int oak_httpc_request(const char *method, const char *url, const char *const *headers,
                      const char *body, size_t body_len, long timeout_ms, oak_httpc_resp_t *out,
                      oak_err_t *err)
{
    return do_request(NULL, method, url, headers, body, body_len, timeout_ms, out, err);
}

int oak_httpc_request_unix(const char *socket_path, const char *method, const char *url,
                           const char *const *headers, const char *body, size_t body_len,
                           long timeout_ms, oak_httpc_resp_t *out, oak_err_t *err)
{
    return do_request(socket_path, method, url, headers, body, body_len, timeout_ms, out, err);
}

void oak_httpc_resp_free(oak_httpc_resp_t *r)
{
    if (!r)
        return;
    free(r->body);
    free(r->content_type);
    *r = (oak_httpc_resp_t){0};
}

static int do_json(const char *socket_path, const char *method, const char *url,
                   const char *bearer_token, const json_t *body, long timeout_ms, long *status,
                   json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *auth =
        bearer_token ? xasprintf("Authorization: Bearer %s", bearer_token) : NULL;
    _cleanup_free_ char *payload = body ? oak_json_dump(body) : NULL;
    const char *headers[4];
    size_t n = 0;
    headers[n++] = "Accept: application/json";
    if (payload)
        headers[n++] = "Content-Type: application/json";
    if (auth)
        headers[n++] = auth;
    headers[n] = NULL;

    if (out)
        *out = NULL;
    oak_httpc_resp_t r;
    if (do_request(socket_path, method, url, headers, payload, payload ? strlen(payload) : 0,
                   timeout_ms, &r, err) < 0)
        return -1;
    if (status)
        *status = r.status;
    if (out && r.body_len > 0) {
        json_t *j = NULL;
        if (oak_json_parse(r.body, r.body_len, 0, &j, NULL) == 0)
            *out = j;
    }
    oak_httpc_resp_free(&r);
    return 0;
}

int oak_httpc_json(const char *method, const char *url, const char *bearer_token,
                   const json_t *body, long timeout_ms, long *status, json_t **out, oak_err_t *err)
{
    return do_json(NULL, method, url, bearer_token, body, timeout_ms, status, out, err);
}

int oak_httpc_json_unix(const char *socket_path, const char *method, const char *url,
                        const char *bearer_token, const json_t *body, long timeout_ms, long *status,
                        json_t **out, oak_err_t *err)
{
    return do_json(socket_path, method, url, bearer_token, body, timeout_ms, status, out, err);
}
