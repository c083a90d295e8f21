/* HTTP server: owns a libmicrohttpd daemon started without threads
 * (MHD_USE_EPOLL), its listening socket, the compiled route table and the
 * per-request state (raw URI, accumulated body). MHD's epoll fd is watched
 * by the oak_loop; on readiness, and when the timer armed from
 * MHD_get_timeout() fires, MHD_run() processes connections and calls the
 * access handler, so routing and every handler run on the loop thread.
 * Nothing here is touched from another thread.
 *
 * Request life cycle in MHD terms: the URI log callback (first thing MHD
 * does with a request) allocates a req_state_t holding the raw URI, which
 * becomes the connection's con_cls; the access handler is then called once
 * with no data (the Content-Length check happens here), once per chunk of
 * upload data (accumulated up to max_body, discarded beyond it) and a last
 * time with no data, when the route runs and the reply is queued; the
 * completion callback frees the state. */
#include "lib/oak_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"

#define MAX_SEGS       32
#define CONN_LIMIT     1024u
#define CONN_TIMEOUT_S 30u
#define LISTEN_BACKLOG 1024
/* After a body went over the limit, at most this much more is read (and
 * discarded) so the 413 can still be delivered; beyond it the connection is
 * dropped. */
#define TOO_LARGE_DRAIN   (16u * 1024u * 1024u)
#define CORS_ALLOW_HEADER "Authorization, Content-Type"

typedef struct {
    char **segs; /* literal text, or NULL for a <param> segment */
    int nseg;
    int nlit;
} route_c_t;

struct oak_http_server {
    oak_loop_t *loop;
    struct MHD_Daemon *mhd;
    int epfd;
    uint64_t timer;
    oak_http_route_t *routes;
    route_c_t *comp;
    size_t nroutes;
    void *ctx;
    size_t max_body;
    int port;
    char *unix_path;
    char mhd_msg[256]; /* last message MHD logged, for start errors */
    struct oak_http_pending *pending; /* suspended connections, for stop */
    bool resume_due;                  /* a resumed connection waits for MHD_run */
};

typedef struct {
    char *raw_uri;
    uint64_t t0_us;
    bool started;
    bool too_large;
    size_t drained;
    char *body;
    size_t len, cap;
    bool deferred;             /* the handler called oak_http_defer */
    bool answered;             /* dresp holds the deferred answer */
    oak_http_resp_t dresp;
    struct oak_http_pending *p; /* while suspended */
} req_state_t;

/* A suspended request. Owned by whoever completes it; the server keeps it
 * on its list until then, and detaches it (orphan) when it stops first. */
struct oak_http_pending {
    oak_http_server_t *s; /* NULL: orphan (the server stopped) */
    struct MHD_Connection *conn;
    req_state_t *st;
    struct oak_http_pending *prev, *next;
};

typedef struct {
    oak_http_server_t *s;
    req_state_t *st;
    struct MHD_Connection *conn;
} defer_ctx_t;

/* A request path split into percent-decoded segments; a segment with a bad
 * escape, a NUL or an encoded '/' is marked invalid and matches nothing. */
typedef struct {
    char *buf;
    char *seg[MAX_SEGS];
    bool ok[MAX_SEGS];
    int n;
    bool unmatchable; /* too deep, or not a path: matches no route */
} path_t;

static void path_free(path_t *p)
{
    free(p->buf);
}

static int steal_fd(int *fd)
{
    int f = *fd;
    *fd = -1;
    return f;
}

/* ---- route table --------------------------------------------------- */

static void route_c_free(route_c_t *c)
{
    for (int i = 0; i < c->nseg; i++)
        free(c->segs[i]);
    free(c->segs);
}

static int compile_route(const oak_http_route_t *r, route_c_t *c, oak_err_t *err)
{
    const char *p = r->pattern;
    *c = (route_c_t){0};
    if (!r->method || !r->handler || !p || p[0] != '/')
        return oak_err_set(err, OAK_E_INVALID,
                           "route \"%s\": method, handler and a pattern "
                           "starting with '/' are required",
                           p ? p : "(null)");
    int nparams = 0;
    p++;
    while (*p) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 && !end)
            break;
        if (n == 0 || c->nseg == MAX_SEGS) {
            route_c_free(c);
            return oak_err_set(err, OAK_E_INVALID, "route \"%s\": empty segment or too deep",
                               r->pattern);
        }
        c->segs = xrealloc(c->segs, sizeof(char *) * (size_t)(c->nseg + 1));
        if (p[0] == '<' && p[n - 1] == '>' && n > 2) {
            c->segs[c->nseg++] = NULL;
            nparams++;
        } else {
            c->segs[c->nseg++] = xstrndup(p, n);
            c->nlit++;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    if (nparams > OAK_HTTP_MAX_PARAMS) {
        route_c_free(c);
        return oak_err_set(err, OAK_E_INVALID, "route \"%s\": more than %d parameters", r->pattern,
                           OAK_HTTP_MAX_PARAMS);
    }
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes src[0..n) into dst (NUL-terminated); false on a bad escape or a
 * decoded '/' or NUL. */
static bool decode_segment(const char *src, size_t n, char *dst, size_t *dlen)
{
    bool ok = true;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            int hi = i + 2 < n ? hexval(src[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(src[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                ok = false;
            } else {
                ch = (char)(hi * 16 + lo);
                i += 2;
                if (ch == '/' || ch == '\0')
                    ok = false;
            }
        }
        dst[j++] = ch;
    }
    dst[j] = '\0';
    *dlen = j;
    return ok;
}

/* Splits the path part of a raw request URI into decoded segments, ignoring
 * one trailing slash. */
static void path_split(const char *raw, path_t *p)
{
    *p = (path_t){0};
    if (raw[0] != '/') {
        /* absolute-form "http://host/path" */
        const char *s = strstr(raw, "://");
        raw = s ? strchr(s + 3, '/') : NULL;
        if (!raw) {
            p->unmatchable = true;
            return;
        }
    }
    size_t len = strcspn(raw, "?#");
    p->buf = xmalloc(len + 1);
    const char *s = raw + 1, *end = raw + len;
    if (end > s && end[-1] == '/')
        end--;
    if (s == end)
        return;
    char *out = p->buf;
    for (;;) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        size_t n = slash ? (size_t)(slash - s) : (size_t)(end - s);
        if (p->n == MAX_SEGS) {
            p->unmatchable = true;
            return;
        }
        p->seg[p->n] = out;
        size_t dlen;
        p->ok[p->n] = decode_segment(s, n, out, &dlen);
        out += dlen + 1;
        p->n++;
        if (!slash)
            break;
        s = slash + 1;
    }
}

static bool route_matches(const route_c_t *c, const path_t *p)
{
    if (p->unmatchable || c->nseg != p->n)
        return false;
    for (int i = 0; i < c->nseg; i++) {
        if (!p->ok[i])
            return false;
        if (c->segs[i] ? strcmp(c->segs[i], p->seg[i]) != 0 : p->seg[i][0] == '\0')
            return false;
    }
    return true;
}

/* ---- responses ----------------------------------------------------- */

static void resp_release(oak_http_resp_t *r)
{
    json_decref(r->body);
    free(r->raw);
    free(r->location);
    *r = (oak_http_resp_t){0};
}

void oak_http_resp_json(oak_http_resp_t *resp, int status, json_t *body)
{
    json_decref(resp->body);
    resp->status = status;
    resp->body = body;
}

void oak_http_resp_error(oak_http_resp_t *resp, const oak_err_t *err)
{
    oak_http_resp_json(resp, oak_err_http_status(err->code), oak_err_to_json(err));
}

void oak_http_resp_errorf(oak_http_resp_t *resp, oak_code_t code, const char *fmt, ...)
{
    oak_err_t e = OAK_ERR_INIT;
    va_list ap;
    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    oak_http_resp_error(resp, &e);
}

/* Queues resp (whose contents are released) with the common headers. */
static enum MHD_Result send_resp(struct MHD_Connection *conn, req_state_t *st, const char *method,
                                 const char *path, oak_http_resp_t *resp, const char *allow)
{
    struct MHD_Response *mr;
    int status = resp->status ? resp->status : 200;
    const char *ctype = NULL;
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);

    if (resp->raw && !no_body) {
        mr = MHD_create_response_from_buffer(resp->raw_len, resp->raw, MHD_RESPMEM_MUST_FREE);
        resp->raw = NULL;
        ctype = resp->content_type ? resp->content_type : "application/octet-stream";
    } else if (resp->body && !no_body) {
        char *s = oak_json_dump(resp->body);
        mr = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
        ctype = "application/json";
    } else {
        mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!mr) {
        resp_release(resp);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(mr, "Access-Control-Allow-Origin", "*");
    if (resp->location)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_LOCATION, resp->location);
    if (status == 401) /* RFC 9110: a 401 names the scheme */
        MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (allow) {
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, allow);
        if (strcmp(method, "OPTIONS") == 0) {
            MHD_add_response_header(mr, "Access-Control-Allow-Methods", allow);
            MHD_add_response_header(mr, "Access-Control-Allow-Headers", CORS_ALLOW_HEADER);
            MHD_add_response_header(mr, "Access-Control-Max-Age", "86400");
        }
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, mr);
    MHD_destroy_response(mr);
    resp_release(resp);
    log_debug("http %s %s -> %d (%.2f ms)", method, path, status,
              (double)(oak_now_us() - st->t0_us) / 1000.0);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, req_state_t *st, const char *method,
                                  const char *path, oak_code_t code, const char *allow,
                                  const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static enum MHD_Result send_error(struct MHD_Connection *conn, req_state_t *st, const char *method,
                                  const char *path, oak_code_t code, const char *allow,
                                  const char *fmt, ...)
{
    oak_http_resp_t resp = {0};
    oak_err_t e = OAK_ERR_INIT;
    va_list ap;
    e.code = code;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
    va_end(ap);
    oak_http_resp_error(&resp, &e);
    return send_resp(conn, st, method, path, &resp, allow);
}

/* ---- dispatch ------------------------------------------------------ */

static void peer_text(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    snprintf(buf, len, "unknown");
    if (!sa)
        return;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)len);
        else
            inet_ntop(AF_INET6, a, buf, (socklen_t)len);
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(buf, len, "unix");
    }
}

static enum MHD_Result dispatch(oak_http_server_t *s, struct MHD_Connection *conn, req_state_t *st,
                                const char *url, const char *method)
{
    _cleanup_(path_free) path_t p;
    path_split(st->raw_uri ? st->raw_uri : url, &p);

    const route_c_t *best = NULL;
    const oak_http_route_t *best_r = NULL;
    char allow[256] = "";
    size_t alen = 0;
    bool path_known = false;
    for (size_t i = 0; i < s->nroutes; i++) {
        if (!route_matches(&s->comp[i], &p))
            continue;
        path_known = true;
        const char *m = s->routes[i].method;
        if (strcmp(m, method) == 0) {
            if (!best || s->comp[i].nlit > best->nlit) {
                best = &s->comp[i];
                best_r = &s->routes[i];
            }
        }
        /* Allow: distinct methods, in table order */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(s->routes[j].method, m) == 0 && route_matches(&s->comp[j], &p);
        if (!seen && alen + strlen(m) + 3 < sizeof(allow))
            alen +=
                (size_t)snprintf(allow + alen, sizeof(allow) - alen, "%s%s", alen ? ", " : "", m);
    }
    if (path_known && !strstr(allow, "OPTIONS") && alen + 10 < sizeof(allow))
        snprintf(allow + alen, sizeof(allow) - alen, "%sOPTIONS", alen ? ", " : "");

    if (!best) {
        if (!path_known)
            return send_error(conn, st, method, url, OAK_E_NOT_FOUND, NULL, "no route for %s", url);
        if (strcmp(method, "OPTIONS") == 0) {
            oak_http_resp_t resp = {.status = 204};
            return send_resp(conn, st, method, url, &resp, allow);
        }
        /* no oak_code_t maps to 405; the body keeps the usual shape */
        oak_http_resp_t resp = {.status = 405};
        _cleanup_free_ char *msg = xasprintf("method %s not allowed on %s", method, url);
        resp.body = json_pack("{s:s, s:s}", "message", msg, "error", "method_not_allowed");
        return send_resp(conn, st, method, url, &resp, allow);
    }

    char peer[INET6_ADDRSTRLEN + 8];
    peer_text(conn, peer, sizeof(peer));
    oak_http_req_t req = {
        .method = method,
        .path = url,
        .body = st->body ? st->body : "",
        .body_len = st->len,
        .conn = conn,
        .peer_ip = peer,
    };
    for (int i = 0; i < best->nseg; i++)
        if (!best->segs[i])
            req.params[req.nparams++] = p.seg[i];
    defer_ctx_t dc = {.s = s, .st = st, .conn = conn};
    req.priv = &dc;
    oak_http_resp_t resp = {.status = 200};
    best_r->handler(&req, &resp, s->ctx);
    if (st->deferred) {
        resp_release(&resp);
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    return send_resp(conn, st, method, url, &resp, NULL);
}

/* ---- MHD callbacks ------------------------------------------------- */

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    req_state_t *st = xcalloc(1, sizeof(*st));
    st->raw_uri = xstrdup(uri ? uri : "");
    st->t0_us = oak_now_us();
    return st;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state_t *st = *con_cls;
    if (!st)
        return;
    if (st->p) /* cannot happen while suspended; be safe */
        st->p->st = NULL;
    resp_release(&st->dresp);
    free(st->raw_uri);
    free(st->body);
    free(st);
    *con_cls = NULL;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    oak_http_server_t *s = cls;
    req_state_t *st = *con_cls;
    if (!st) /* no URI log callback ran (should not happen): make one */
        st = *con_cls = uri_cb(s, url, conn);

    if (!st->started) {
        st->started = true;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > s->max_body)
                return send_error(conn, st, method, url, OAK_E_TOO_LARGE, NULL,
                                  "request body exceeds %zu bytes", s->max_body);
        }
        return MHD_YES;
    }

    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (st->too_large) {
            st->drained += n;
            return st->drained > TOO_LARGE_DRAIN ? MHD_NO : MHD_YES;
        }
        if (n > s->max_body - st->len) {
            st->too_large = true;
            st->drained = st->len + n;
            free(st->body);
            st->body = NULL;
            st->len = st->cap = 0;
            return MHD_YES;
        }
        if (st->len + n + 1 > st->cap) {
            size_t cap = st->cap ? st->cap * 2 : 1024;
            while (cap < st->len + n + 1)
                cap *= 2;
            if (cap > s->max_body + 1)
                cap = s->max_body + 1;
            st->body = xrealloc(st->body, cap);
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload, n);
        st->len += n;
        st->body[st->len] = '\0';
        return MHD_YES;
    }

    if (st->too_large)
        return send_error(conn, st, method, url, OAK_E_TOO_LARGE, NULL,
                          "request body exceeds %zu bytes", s->max_body);
    if (st->deferred) {
        /* resumed: the answer is there (or the server is stopping) */
        if (!st->answered)
            return MHD_NO;
        st->answered = false;
        return send_resp(conn, st, method, url, &st->dresp, NULL);
    }
    return dispatch(s, conn, st, url, method);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    oak_http_server_t *s = cls;
    vsnprintf(s->mhd_msg, sizeof(s->mhd_msg), fmt, ap);
    size_t n = strlen(s->mhd_msg);
    while (n > 0 && s->mhd_msg[n - 1] == '\n')
        s->mhd_msg[--n] = '\0';
    log_debug("libmicrohttpd: %s", s->mhd_msg);
}

/* ---- loop integration ---------------------------------------------- */

static void on_timer(oak_loop_t *loop, void *data);

static void arm(oak_http_server_t *s)
{
    MHD_UNSIGNED_LONG_LONG to;
    if (s->timer) {
        oak_loop_cancel_timer(s->loop, s->timer);
        s->timer = 0;
    }
    if (MHD_get_timeout(s->mhd, &to) == MHD_YES)
        s->timer = oak_loop_add_timer(s->loop, (uint64_t)to, on_timer, s);
}


/* A zero timer, so MHD runs again soon (after a resume). */
static void kick(oak_http_server_t *s)
{
    if (s->timer)
        oak_loop_cancel_timer(s->loop, s->timer);
    s->timer = oak_loop_add_timer(s->loop, 0, on_timer, s);
}

static void run_mhd(oak_http_server_t *s)
{
    s->resume_due = false;
    MHD_run(s->mhd);
    arm(s);
    if (s->resume_due) /* a handler completed a deferred request */
        kick(s);
}

static void on_timer(oak_loop_t *loop, void *data)
{
    oak_http_server_t *s = data;
    s->timer = 0;
    run_mhd(s);
}

/* ---- deferred responses -------------------------------------------- */

oak_http_pending_t *oak_http_defer(const oak_http_req_t *req)
{
    defer_ctx_t *dc = req->priv;
    if (!dc || dc->st->deferred)
        return NULL;
    oak_http_pending_t *p = xcalloc(1, sizeof(*p));
    p->s = dc->s;
    p->conn = dc->conn;
    p->st = dc->st;
    dc->st->deferred = true;
    dc->st->p = p;
    p->next = dc->s->pending;
    if (p->next)
        p->next->prev = p;
    dc->s->pending = p;
    return p;
}

static void pending_unlink(oak_http_pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->s->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

void oak_http_complete(oak_http_pending_t *p, oak_http_resp_t *resp)
{
    if (!p)
        return;
    oak_http_server_t *s = p->s;
    if (!s || !p->st) { /* the server stopped meanwhile */
        resp_release(resp);
        free(p);
        return;
    }
    pending_unlink(p);
    req_state_t *st = p->st;
    resp_release(&st->dresp);
    st->dresp = *resp;
    if (!st->dresp.status)
        st->dresp.status = 200;
    *resp = (oak_http_resp_t){0};
    st->answered = true;
    st->p = NULL;
    MHD_resume_connection(p->conn);
    free(p);
    /* MHD picks the connection up on its next run: from a timer, never
     * from inside MHD_run (we may be in a handler right now) */
    s->resume_due = true;
    kick(s);
}

static void on_epoll(oak_loop_t *loop, int fd, uint32_t events, void *data)
{
    run_mhd(data);
}

/* ---- listening socket ---------------------------------------------- */

static int listen_unix(oak_http_server_t *s, const char *path, oak_err_t *err)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path))
        return oak_err_set(err, OAK_E_INVALID, "unix socket path too long: %s", path);
    strcpy(sun.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return oak_err_errno(err, errno, "socket");
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
        unlink(path);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        return oak_err_errno(err, errno, "cannot bind %s", path);
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        unlink(path);
        return oak_err_errno(err, e, "cannot listen on %s", path);
    }
    s->unix_path = xstrdup(path);
    return steal_fd(&fd);
}

static int listen_inet(const char *addr, int port, bool *v6_unavailable, oak_err_t *err)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    bool dual = addr == NULL;
    if (!addr)
        addr = "::";
    if (port < 0 || port > 65535)
        return oak_err_set(err, OAK_E_INVALID, "invalid port %d", port);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*s6);
        dual = dual || IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
    } else {
        return oak_err_set(err, OAK_E_INVALID, "invalid bind address \"%s\"", addr);
    }
    _cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (ss.ss_family == AF_INET6 && v6_unavailable)
            *v6_unavailable = errno == EAFNOSUPPORT;
        return oak_err_errno(err, errno, "socket");
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof(int));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
        if (ss.ss_family == AF_INET6 && v6_unavailable)
            *v6_unavailable = errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT;
        return oak_err_errno(err, errno, "cannot bind [%s]:%d", addr, port);
    }
    if (listen(fd, LISTEN_BACKLOG) < 0)
        return oak_err_errno(err, errno, "cannot listen on [%s]:%d", addr, port);
    return steal_fd(&fd);
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* ---- public API ---------------------------------------------------- */

static void server_free(oak_http_server_t *s)
{
    for (size_t i = 0; i < s->nroutes; i++) {
        free((char *)s->routes[i].method);
        free((char *)s->routes[i].pattern);
        route_c_free(&s->comp[i]);
    }
    free(s->routes);
    free(s->comp);
    free(s->unix_path);
    free(s);
}

int oak_http_server_start(oak_loop_t *loop, const char *bind_addr, int port,
                          const oak_http_route_t *routes, size_t nroutes, void *ctx,
                          size_t max_body, oak_http_server_t **out, oak_err_t *err)
{
    oak_http_server_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->ctx = ctx;
    s->max_body = max_body;
    s->epfd = -1;
    s->routes = xcalloc(nroutes ? nroutes : 1, sizeof(*s->routes));
    s->comp = xcalloc(nroutes ? nroutes : 1, sizeof(*s->comp));
    for (size_t i = 0; i < nroutes; i++) {
        if (compile_route(&routes[i], &s->comp[i], err) < 0) {
            server_free(s);
            return -1;
        }
        s->routes[i] = (oak_http_route_t){
            .method = xstrdup(routes[i].method),
            .pattern = xstrdup(routes[i].pattern),
            .handler = routes[i].handler,
        };
        s->nroutes++;
    }

    int fd;
    if (bind_addr && strncmp(bind_addr, "unix:", 5) == 0) {
        fd = listen_unix(s, bind_addr + 5, err);
    } else {
        bool v6_unavailable = false;
        fd = listen_inet(bind_addr, port, &v6_unavailable, err);
        if (fd < 0 && !bind_addr && v6_unavailable) {
            oak_err_clear(err);
            fd = listen_inet("0.0.0.0", port, NULL, err);
        }
    }
    if (fd < 0) {
        server_free(s);
        return -1;
    }
    s->port = bound_port(fd);
    struct stat fd_st;
    fstat(fd, &fd_st);

    s->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, access_cb, s, MHD_OPTION_LISTEN_SOCKET,
        fd, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S,
        MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, MHD_OPTION_END);
    if (!s->mhd) {
        /* close our socket unless MHD already did (compare the inode, in
         * case the number was reused meanwhile) */
        struct stat now;
        if (fstat(fd, &now) == 0 && now.st_ino == fd_st.st_ino && now.st_dev == fd_st.st_dev)
            close(fd);
        if (s->unix_path)
            unlink(s->unix_path);
        oak_err_set(err, OAK_E_INTERNAL, "libmicrohttpd failed to start%s%s",
                    s->mhd_msg[0] ? ": " : "", s->mhd_msg);
        server_free(s);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    s->epfd = di ? di->epoll_fd : -1;
    if (s->epfd < 0 || oak_loop_add_fd(loop, s->epfd, EPOLLIN, on_epoll, s, err) < 0) {
        if (s->epfd < 0)
            oak_err_set(err, OAK_E_INTERNAL, "libmicrohttpd has no epoll fd");
        MHD_stop_daemon(s->mhd);
        if (s->unix_path)
            unlink(s->unix_path);
        server_free(s);
        return -1;
    }
    arm(s);
    *out = s;
    return 0;
}

int oak_http_server_port(const oak_http_server_t *s)
{
    return s->port;
}

void oak_http_server_stop(oak_http_server_t *s)
{
    if (!s)
        return;
    if (s->timer)
        oak_loop_cancel_timer(s->loop, s->timer);
    oak_loop_del_fd(s->loop, s->epfd);
    /* MHD refuses to stop with suspended connections: resume them without
     * an answer (they are closed) and orphan their handles */
    while (s->pending) {
        oak_http_pending_t *p = s->pending;
        pending_unlink(p);
        if (p->st)
            p->st->p = NULL;
        MHD_resume_connection(p->conn);
        p->s = NULL;
        p->st = NULL;
    }
    MHD_stop_daemon(s->mhd);
    if (s->unix_path)
        unlink(s->unix_path);
    server_free(s);
}

size_t oak_http_server_routes(const oak_http_server_t *s, const oak_http_route_t **out)
{
    *out = s->routes;
    return s->nroutes;
}

const char *oak_http_req_header(const oak_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *oak_http_req_query(const oak_http_req_t *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (v)
        return v;
    /* "?flag" without "=": MHD stores a NULL value; report it as "" */
    bool present = MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name,
                                                 strlen(name), NULL, NULL) == MHD_YES;
    return present ? "" : NULL;
}
