/* Unit tests for lib/oak_http (server) and lib/oak_httpc (client) over real
 * sockets on 127.0.0.1 with ephemeral ports: an oak_loop runs the server in
 * a background thread, requests come from oak_httpc and from a small raw
 * socket client (for exact headers, chunked bodies and keep-alive on one
 * connection). ASan checks that stopping the server frees everything, also
 * with idle and half-received connections still open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_http.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"

#define MAX_BODY 1024

/* ---- handlers ------------------------------------------------------ */

static void h_instance(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:s, s:i, s:s, s:s}", "id", req->params[0], "n",
                                 req->params[1], "nparams", req->nparams, "path", req->path, "peer",
                                 req->peer_ip));
}

static void h_items(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 200, json_pack("{s:[]}", "items"));
}

static void h_item(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 200,
                       json_pack("{s:s, s:s}", "item", req->params[0], "method", req->method));
}

static void h_special(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 200, json_pack("{s:b}", "special", 1));
}

static void h_echo(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    if (req->body[req->body_len] != '\0') { /* loop thread: no cmocka asserts here */
        oak_http_resp_errorf(resp, OAK_E_INTERNAL, "body not NUL-terminated");
        return;
    }
    if (oak_json_parse_object(req->body, req->body_len, MAX_BODY, &j, &err) < 0) {
        oak_http_resp_error(resp, &err);
        oak_err_clear(&err);
        return;
    }
    resp->location = xstrdup("/api/echo/1");
    oak_http_resp_json(resp, 201, j);
}

static void h_validate(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_err_t err = OAK_ERR_INIT;
    oak_err_set(&err, OAK_E_UNPROCESSABLE, "validation failed");
    oak_err_add_field(&err, "applications[0].memory", "must be >= %d", 1);
    oak_http_resp_error(resp, &err);
    oak_err_clear(&err);
}

static void h_query(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    json_t *o = json_object();
    const char *q = oak_http_req_query(req, "q");
    const char *flag = oak_http_req_query(req, "flag");
    const char *h = oak_http_req_header(req, "x-test");
    json_object_set_new(o, "q", q ? json_string(q) : json_null());
    json_object_set_new(o, "flag", flag ? json_string(flag) : json_null());
    json_object_set_new(o, "missing", oak_http_req_query(req, "nope") ? json_true() : json_false());
    json_object_set_new(o, "header", h ? json_string(h) : json_null());
    oak_http_resp_json(resp, 200, o);
}

static void h_html(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    resp->raw = xstrdup("<h1>hi</h1>");
    resp->raw_len = strlen(resp->raw);
    resp->content_type = "text/html; charset=utf-8";
}

static void h_nocontent(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 204, json_object()); /* body must be dropped */
}

static void h_huge(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    resp->raw_len = OAK_HTTPC_MAX_RESPONSE + 1;
    resp->raw = xmalloc(resp->raw_len);
    memset(resp->raw, 'x', resp->raw_len);
    resp->content_type = "text/plain";
}

static void h_secret(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    const char *auth = oak_http_req_header(req, "Authorization");
    if (!auth)
        oak_http_resp_errorf(resp, OAK_E_UNAUTH, "Missing authentication token");
    else if (strcmp(auth, "Bearer admin") != 0)
        oak_http_resp_errorf(resp, OAK_E_FORBIDDEN, "You have not enough permissions!");
    else
        oak_http_resp_json(resp, 200, json_pack("{s:s}", "secret", "42"));
}

static void h_count(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    int *calls = ctx; /* loop thread only */
    (*calls)++;
    oak_http_resp_json(resp, 200, json_pack("{s:i}", "calls", *calls));
}

/* Deferred answers: /deferred/<ms> answers after ms from a loop timer,
 * /deferred/0 from inside the handler, /deferred/never keeps the handle in
 * g_never (completed by the test after the server stopped). */
static oak_loop_t *g_loop;
static oak_http_pending_t *g_never;

typedef struct {
    oak_http_pending_t *p;
    long ms;
} late_t;

static void late_answer(oak_loop_t *loop, void *data)
{
    late_t *l = data;
    oak_http_resp_t r = {0};
    oak_http_resp_json(&r, 202, json_pack("{s:I}", "late", (json_int_t)l->ms));
    oak_http_complete(l->p, &r);
    free(l);
}

static void h_deferred(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    oak_http_resp_json(resp, 500, json_object()); /* dropped by the defer */
    oak_http_pending_t *p = oak_http_defer(req);
    if (!p || oak_http_defer(req) != NULL) { /* a second defer is refused */
        oak_http_resp_errorf(resp, OAK_E_INTERNAL, "defer");
        return;
    }
    if (strcmp(req->params[0], "never") == 0) {
        g_never = p;
        return;
    }
    late_t *l = xcalloc(1, sizeof(*l));
    l->p = p;
    l->ms = strtol(req->params[0], NULL, 10);
    if (l->ms == 0)
        late_answer(g_loop, l);
    else
        oak_loop_add_timer(g_loop, (uint64_t)l->ms, late_answer, l);
}

static const oak_http_route_t ROUTES[] = {
    {"GET", "/deferred/<ms>", h_deferred},
    {"GET", "/api/service/<id>/instance/<n>", h_instance},
    {"GET", "/api/items/", h_items},
    {"GET", "/api/items/<id>", h_item},
    {"DELETE", "/api/items/<id>", h_item},
    {"GET", "/api/items/special", h_special},
    {"POST", "/api/echo", h_echo},
    {"POST", "/api/validate", h_validate},
    {"GET", "/api/query", h_query},
    {"GET", "/html", h_html},
    {"DELETE", "/api/nocontent", h_nocontent},
    {"GET", "/huge", h_huge},
    {"GET", "/count", h_count},
    {"GET", "/api/secret", h_secret},
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

/* ---- fixture ------------------------------------------------------- */

typedef struct {
    oak_loop_t *loop;
    oak_http_server_t *srv;
    pthread_t th;
    int port;
    char base[64];
    int calls;
} fx_t;

static void *loop_main(void *arg)
{
    oak_loop_run(arg);
    return NULL;
}

static void mark_running(oak_loop_t *loop, void *data)
{
    __atomic_store_n((int *)data, 1, __ATOMIC_RELEASE);
}

static int fx_setup_at(void **state, const char *addr)
{
    fx_t *f = xcalloc(1, sizeof(*f));
    oak_err_t err = OAK_ERR_INIT;
    f->loop = oak_loop_new();
    g_loop = f->loop;
    if (oak_http_server_start(f->loop, addr, 0, ROUTES, NROUTES, &f->calls, MAX_BODY, &f->srv,
                              &err) < 0) {
        fprintf(stderr, "server start: %s\n", err.msg);
        return -1;
    }
    f->port = oak_http_server_port(f->srv);
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->port);
    pthread_create(&f->th, NULL, loop_main, f->loop);
    /* oak_loop_run() clears a stop request made before it started: wait
     * until the loop really runs, so the teardown's stop is not lost */
    int running = 0;
    oak_loop_post(f->loop, mark_running, &running);
    while (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
        usleep(1000);
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_at(state, "127.0.0.1");
}

static int fx_setup_any(void **state)
{
    return fx_setup_at(state, NULL);
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    oak_loop_stop(f->loop);
    pthread_join(f->th, NULL);
    oak_http_server_stop(f->srv);
    oak_loop_free(f->loop);
    free(f);
    return 0;
}

/* ---- client helpers ------------------------------------------------ */

static char *url(const fx_t *f, const char *path)
{
    return xasprintf("%s%s", f->base, path);
}

/* GET/other request with oak_httpc_json; asserts transport success. */
static json_t *call(const fx_t *f, const char *method, const char *path, const json_t *body,
                    long *status)
{
    _cleanup_free_ char *u = url(f, path);
    oak_err_t err = OAK_ERR_INIT;
    json_t *out = NULL;
    int rc = oak_httpc_json(method, u, NULL, body, 5000, status, &out, &err);
    if (rc < 0)
        fail_msg("%s %s: %s", method, path, err.msg);
    return out;
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void raw_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the server may close early (413); the reply is still readable */
        data += n;
        len -= (size_t)n;
    }
}

typedef struct {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
} raw_resp_t;

static void raw_resp_free(raw_resp_t *r)
{
    free(r->body);
}

/* Header value from a raw response head, or NULL. Returns a static copy. */
static const char *raw_header(const raw_resp_t *r, const char *name)
{
    static __thread char val[512]; /* per thread: the concurrency test reads from 4 threads */
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r");
            snprintf(val, sizeof(val), "%.*s", (int)n, v);
            return val;
        }
    }
    return NULL;
}

/* Reads one response (head + Content-Length body) from fd. */
static int raw_read(int fd, raw_resp_t *r)
{
    *r = (raw_resp_t){0};
    size_t hl = 0;
    char *end = NULL;
    while (!end) {
        if (hl + 1 >= sizeof(r->head))
            return -1;
        ssize_t n = recv(fd, r->head + hl, 1, 0); /* byte-wise: never read past the head */
        if (n <= 0)
            return -1;
        hl += (size_t)n;
        r->head[hl] = '\0';
        end = strstr(r->head, "\r\n\r\n");
    }
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    const char *cl = raw_header(r, "Content-Length");
    r->body_len = cl ? strtoul(cl, NULL, 10) : 0;
    r->body = xmalloc(r->body_len + 1);
    size_t got = 0;
    while (got < r->body_len) {
        ssize_t n = recv(fd, r->body + got, r->body_len - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    r->body[r->body_len] = '\0';
    return 0;
}

/* One request on a fresh connection. */
static void raw_request(int port, const char *req, size_t len, raw_resp_t *r)
{
    _cleanup_close_ int fd = raw_connect(port);
    raw_send(fd, req, len);
    assert_int_equal(raw_read(fd, r), 0);
}

static void assert_error_body(const char *body, const char *code)
{
    json_auto_t *j = NULL;
    assert_int_equal(oak_json_parse(body, strlen(body), 0, &j, NULL), 0);
    assert_string_equal(oak_json_str(j, "error"), code);
    assert_non_null(oak_json_str(j, "message"));
}

/* ---- tests --------------------------------------------------------- */

static void test_params(void **state)
{
    fx_t *f = *state;
    long st = 0;
    json_auto_t *j = call(f, "GET", "/api/service/my%20svc%21/instance/3?x=1", NULL, &st);
    assert_int_equal(st, 200);
    assert_non_null(j);
    assert_string_equal(oak_json_str(j, "id"), "my svc!");
    assert_string_equal(oak_json_str(j, "n"), "3");
    assert_int_equal(oak_json_int(j, "nparams", 0), 2);
    assert_string_equal(oak_json_str(j, "path"), "/api/service/my svc!/instance/3");
    assert_string_equal(oak_json_str(j, "peer"), "127.0.0.1");

    /* an encoded '/' (or a bad escape) in a parameter matches no route */
    json_auto_t *j2 = call(f, "GET", "/api/service/a%2Fb/instance/3", NULL, &st);
    assert_int_equal(st, 404);
    json_auto_t *j3 = call(f, "GET", "/api/service/a%zz/instance/3", NULL, &st);
    assert_int_equal(st, 404);
    json_auto_t *j4 = call(f, "GET", "/api/service/a%00/instance/3", NULL, &st);
    assert_int_equal(st, 404);
    /* empty parameter */
    json_auto_t *j5 = call(f, "GET", "/api/service//instance/3", NULL, &st);
    assert_int_equal(st, 404);
    /* literal segments compare after decoding */
    json_auto_t *j6 = call(f, "GET", "/api/%69tems/special", NULL, &st);
    assert_int_equal(st, 200);
    assert_true(oak_json_bool(j6, "special", false));
}

static void test_trailing_slash(void **state)
{
    fx_t *f = *state;
    long st = 0;
    json_auto_t *a = call(f, "GET", "/api/items", NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_array(json_object_get(a, "items")));
    json_auto_t *b = call(f, "GET", "/api/items/", NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_array(json_object_get(b, "items")));
    /* a pattern without trailing slash accepts one too */
    json_auto_t *c = call(f, "GET", "/api/echo/", NULL, &st);
    assert_int_equal(st, 405);
    json_auto_t *d = call(f, "GET", "/api/items/42/", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(oak_json_str(d, "item"), "42");
    /* literal route beats the parameter route */
    json_auto_t *e = call(f, "GET", "/api/items/special/", NULL, &st);
    assert_int_equal(st, 200);
    assert_true(oak_json_bool(e, "special", false));
    json_auto_t *g = call(f, "DELETE", "/api/items/special", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(oak_json_str(g, "item"), "special");
    assert_string_equal(oak_json_str(g, "method"), "DELETE");
}

static void test_not_found(void **state)
{
    fx_t *f = *state;
    raw_resp_t r;
    const char req[] = "GET /nope/x HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_request(f->port, req, sizeof(req) - 1, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(raw_header(&r, "Content-Type"), "application/json");
    assert_string_equal(raw_header(&r, "Access-Control-Allow-Origin"), "*");
    assert_error_body(r.body, "not_found");
    raw_resp_free(&r);

    long st = 0;
    json_auto_t *j = call(f, "GET", "/", NULL, &st);
    assert_int_equal(st, 404);
    assert_string_equal(oak_json_str(j, "error"), "not_found");
    json_auto_t *k = call(f, "GET", "/api/items/1/2", NULL, &st);
    assert_int_equal(st, 404);
}

static void test_method_not_allowed(void **state)
{
    fx_t *f = *state;
    raw_resp_t r;
    const char req[] = "PUT /api/items/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    raw_request(f->port, req, sizeof(req) - 1, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(raw_header(&r, "Allow"), "GET, DELETE, OPTIONS");
    assert_string_equal(raw_header(&r, "Content-Type"), "application/json");
    assert_error_body(r.body, "method_not_allowed");
    raw_resp_free(&r);
}

static void test_options_cors(void **state)
{
    fx_t *f = *state;
    raw_resp_t r;
    const char req[] = "OPTIONS /api/items/7 HTTP/1.1\r\nHost: x\r\n"
                       "Origin: http://ui\r\nAccess-Control-Request-Method: DELETE\r\n\r\n";
    raw_request(f->port, req, sizeof(req) - 1, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(raw_header(&r, "Access-Control-Allow-Origin"), "*");
    assert_string_equal(raw_header(&r, "Access-Control-Allow-Methods"), "GET, DELETE, OPTIONS");
    assert_non_null(strstr(raw_header(&r, "Access-Control-Allow-Headers"), "Authorization"));
    assert_int_equal(r.body_len, 0);
    raw_resp_free(&r);

    const char req2[] = "OPTIONS /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_request(f->port, req2, sizeof(req2) - 1, &r);
    assert_int_equal(r.status, 404);
    raw_resp_free(&r);
}

static void test_echo_and_errors(void **state)
{
    fx_t *f = *state;
    long st = 0;
    json_auto_t *body = json_pack("{s:s, s:i}", "name", "nginx", "memory", 100);
    json_auto_t *j = call(f, "POST", "/api/echo", body, &st);
    assert_int_equal(st, 201);
    assert_true(json_equal(j, body));

    /* Location header and JSON content type */
    raw_resp_t r;
    const char req[] = "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
    raw_request(f->port, req, sizeof(req) - 1, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(raw_header(&r, "Location"), "/api/echo/1");
    assert_string_equal(r.body, "{\"a\":1}");
    raw_resp_free(&r);

    /* not JSON -> the handler's oak_http_resp_error gives 400 */
    _cleanup_free_ char *u = url(f, "/api/echo");
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    oak_httpc_resp_t cr;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_request("POST", u, hdrs, "{not json", 9, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 400);
    assert_string_equal(cr.content_type, "application/json");
    assert_error_body(cr.body, "invalid_request");
    assert_non_null(strstr(cr.body, "invalid JSON"));
    oak_httpc_resp_free(&cr);

    /* empty body */
    assert_int_equal(oak_httpc_request("POST", u, NULL, NULL, 0, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 400);
    oak_httpc_resp_free(&cr);

    /* 422 with field errors */
    json_auto_t *v = call(f, "POST", "/api/validate", body, &st);
    assert_int_equal(st, 422);
    assert_string_equal(oak_json_str(v, "error"), "validation_failed");
    json_t *errs = json_object_get(v, "errors");
    assert_int_equal(json_array_size(errs), 1);
    assert_string_equal(oak_json_str(json_array_get(errs, 0), "field"), "applications[0].memory");
    assert_string_equal(oak_json_str(json_array_get(errs, 0), "rule"), "must be >= 1");
}

static void test_auth_errors(void **state)
{
    fx_t *f = *state;
    raw_resp_t r;
    const char req[] = "GET /api/secret HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_request(f->port, req, sizeof(req) - 1, &r);
    assert_int_equal(r.status, 401);
    assert_string_equal(raw_header(&r, "WWW-Authenticate"), "Bearer");
    assert_error_body(r.body, "unauthenticated");
    raw_resp_free(&r);

    _cleanup_free_ char *u = url(f, "/api/secret");
    long st = 0;
    json_auto_t *j = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_json("GET", u, "user", NULL, 5000, &st, &j, &err), 0);
    assert_int_equal(st, 403);
    assert_string_equal(oak_json_str(j, "error"), "forbidden");
    json_auto_t *k = NULL;
    assert_int_equal(oak_httpc_json("GET", u, "admin", NULL, 5000, &st, &k, &err), 0);
    assert_int_equal(st, 200);
    assert_string_equal(oak_json_str(k, "secret"), "42");
}

static void test_too_large_content_length(void **state)
{
    fx_t *f = *state;
    _cleanup_free_ char *u = url(f, "/api/echo");
    oak_httpc_resp_t cr;
    oak_err_t err = OAK_ERR_INIT;

    /* exactly at the limit passes the size check (and fails JSON parsing) */
    _cleanup_free_ char *at = xmalloc(MAX_BODY);
    memset(at, ' ', MAX_BODY);
    assert_int_equal(oak_httpc_request("POST", u, NULL, at, MAX_BODY, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 400);
    oak_httpc_resp_free(&cr);

    /* one byte over, and far over (curl then asks "Expect: 100-continue") */
    size_t sizes[] = {MAX_BODY + 1, 3u * 1024u * 1024u};
    for (size_t i = 0; i < 2; i++) {
        _cleanup_free_ char *big = xmalloc(sizes[i]);
        memset(big, 'a', sizes[i]);
        assert_int_equal(oak_httpc_request("POST", u, NULL, big, sizes[i], 5000, &cr, &err), 0);
        assert_int_equal(cr.status, 413);
        json_auto_t *j = NULL;
        assert_int_equal(oak_json_parse(cr.body, cr.body_len, 0, &j, NULL), 0);
        assert_string_equal(oak_json_str(j, "error"), "too_large");
        assert_string_equal(oak_json_str(j, "message"), "request body exceeds 1024 bytes");
        oak_httpc_resp_free(&cr);
    }

    /* the server still works afterwards */
    long st = 0;
    json_auto_t *ok = call(f, "GET", "/api/items", NULL, &st);
    assert_int_equal(st, 200);
}

static void test_too_large_chunked(void **state)
{
    fx_t *f = *state;
    /* under the limit, in three chunks: accepted */
    const char small[] = "POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "4\r\n{\"a\"\r\n2\r\n:1\r\n1\r\n}\r\n0\r\n\r\n";
    raw_resp_t r;
    raw_request(f->port, small, sizeof(small) - 1, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"a\":1}");
    raw_resp_free(&r);

    /* 40 chunks of 100 bytes = 4000 bytes > 1024, no Content-Length */
    size_t cap = 8192, len = 0;
    _cleanup_free_ char *req = xmalloc(cap);
    len += (size_t)snprintf(
        req + len, cap - len,
        "POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 40; i++) {
        len += (size_t)snprintf(req + len, cap - len, "64\r\n");
        memset(req + len, 'z', 100);
        len += 100;
        len += (size_t)snprintf(req + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf(req + len, cap - len, "0\r\n\r\n");
    raw_request(f->port, req, len, &r);
    assert_int_equal(r.status, 413);
    assert_error_body(r.body, "too_large");
    assert_non_null(strstr(r.body, "request body exceeds 1024 bytes"));
    raw_resp_free(&r);
}

static void test_query_header_html_204(void **state)
{
    fx_t *f = *state;
    _cleanup_free_ char *u = url(f, "/api/query?q=a%20b+c&flag");
    const char *hdrs[] = {"X-Test: hello", NULL};
    oak_httpc_resp_t cr;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_request("GET", u, hdrs, NULL, 0, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 200);
    json_auto_t *j = NULL;
    assert_int_equal(oak_json_parse(cr.body, cr.body_len, 0, &j, NULL), 0);
    assert_string_equal(oak_json_str(j, "q"), "a b c");
    assert_string_equal(oak_json_str(j, "flag"), "");
    assert_false(oak_json_bool(j, "missing", true));
    assert_string_equal(oak_json_str(j, "header"), "hello");
    oak_httpc_resp_free(&cr);

    _cleanup_free_ char *h = url(f, "/html");
    assert_int_equal(oak_httpc_request("GET", h, NULL, NULL, 0, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 200);
    assert_string_equal(cr.content_type, "text/html; charset=utf-8");
    assert_string_equal(cr.body, "<h1>hi</h1>");
    oak_httpc_resp_free(&cr);

    _cleanup_free_ char *n = url(f, "/api/nocontent");
    assert_int_equal(oak_httpc_request("DELETE", n, NULL, NULL, 0, 5000, &cr, &err), 0);
    assert_int_equal(cr.status, 204);
    assert_int_equal(cr.body_len, 0);
    oak_httpc_resp_free(&cr);

    /* oak_httpc_json on a non-JSON body: status, no document */
    long st = 0;
    json_t *doc = (json_t *)1;
    assert_int_equal(oak_httpc_json("GET", h, "tok", NULL, 5000, &st, &doc, &err), 0);
    assert_int_equal(st, 200);
    assert_null(doc);
}

static void test_keepalive_one_connection(void **state)
{
    fx_t *f = *state;
    _cleanup_close_ int fd = raw_connect(f->port);
    for (int i = 1; i <= 50; i++) {
        const char req[] = "GET /count HTTP/1.1\r\nHost: x\r\n\r\n";
        raw_send(fd, req, sizeof(req) - 1);
        raw_resp_t r;
        assert_int_equal(raw_read(fd, &r), 0);
        assert_int_equal(r.status, 200);
        json_auto_t *j = NULL;
        assert_int_equal(oak_json_parse(r.body, r.body_len, 0, &j, NULL), 0);
        assert_int_equal(oak_json_int(j, "calls", 0), i);
        raw_resp_free(&r);
    }
    /* pipelined: two requests in one write */
    const char two[] =
        "GET /count HTTP/1.1\r\nHost: x\r\n\r\nGET /api/items HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(fd, two, sizeof(two) - 1);
    raw_resp_t a, b;
    assert_int_equal(raw_read(fd, &a), 0);
    assert_int_equal(raw_read(fd, &b), 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, "{\"items\":[]}");
    raw_resp_free(&a);
    raw_resp_free(&b);
}

static void test_sequential(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 300; i++) {
        long st = 0;
        json_auto_t *j = call(f, "GET", "/api/service/s/instance/1", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(oak_json_str(j, "id"), "s");
    }
}

typedef struct {
    const fx_t *f;
    int idx;
    int ok;
    int keepalive_ok;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 200; i++) {
        char path[96];
        snprintf(path, sizeof(path), "%s/api/service/t%d/instance/%d", w->f->base, w->idx, i);
        long st = 0;
        json_t *j = NULL;
        oak_err_t err = OAK_ERR_INIT;
        if (oak_httpc_json("GET", path, NULL, NULL, 10000, &st, &j, &err) == 0 && st == 200) {
            char n[16];
            snprintf(n, sizeof(n), "%d", i);
            const char *got = oak_json_str(j, "n");
            if (got && strcmp(got, n) == 0)
                w->ok++;
        }
        json_decref(j);
    }
    /* and 200 more on one keep-alive connection */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        for (int i = 0; i < 200; i++) {
            const char req[] = "GET /api/items/k HTTP/1.1\r\nHost: x\r\n\r\n";
            if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1))
                break;
            raw_resp_t r;
            if (raw_read(fd, &r) == 0 && r.status == 200 && strstr(r.body, "\"k\""))
                w->keepalive_ok++;
            raw_resp_free(&r);
        }
    }
    close(fd);
    return NULL;
}

static void test_concurrent(void **state)
{
    fx_t *f = *state;
    pthread_t th[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){.f = f, .idx = i};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].ok, 200);
        assert_int_equal(w[i].keepalive_ok, 200);
    }
}

static void test_stop_with_open_connections(void **state)
{
    fx_t *f = *state;
    /* an idle keep-alive connection after one request */
    _cleanup_close_ int idle = raw_connect(f->port);
    const char req[] = "GET /api/items HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(idle, req, sizeof(req) - 1);
    raw_resp_t r;
    assert_int_equal(raw_read(idle, &r), 0);
    assert_int_equal(r.status, 200);
    raw_resp_free(&r);
    /* a request whose body is only partly sent (state and body buffered) */
    _cleanup_close_ int half = raw_connect(f->port);
    const char part[] = "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":";
    raw_send(half, part, sizeof(part) - 1);
    /* a connection that sent nothing */
    _cleanup_close_ int mute = raw_connect(f->port);
    /* let the server see all of it, then the teardown stops it: ASan
     * reports anything not freed */
    usleep(200 * 1000);
    int rc = fx_teardown(state);
    assert_int_equal(rc, 0);
    char c;
    assert_true(recv(idle, &c, 1, 0) <= 0); /* closed by the server */
    *state = NULL;
    assert_int_equal(fx_setup(state), 0);
}

typedef struct {
    const fx_t *f;
    int ms;
    long status;
    long late;
} dcall_t;

static void *deferred_client(void *arg)
{
    dcall_t *d = arg;
    char path[96];
    snprintf(path, sizeof(path), "%s/deferred/%d", d->f->base, d->ms);
    json_t *j = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (oak_httpc_json("GET", path, NULL, NULL, 10000, &d->status, &j, &err) == 0)
        d->late = (long)oak_json_int(j, "late", -1);
    json_decref(j);
    return NULL;
}

static void test_deferred(void **state)
{
    fx_t *f = *state;
    /* answered from inside the handler, then later from a timer */
    long st = 0;
    json_auto_t *j0 = call(f, "GET", "/deferred/0", NULL, &st);
    assert_int_equal(st, 202);
    assert_int_equal(oak_json_int(j0, "late", -1), 0);
    /* several at once, answered out of order; other requests are served
     * meanwhile (the loop is not blocked) */
    pthread_t th[4];
    dcall_t d[4];
    int ms[4] = {400, 100, 300, 200};
    for (int i = 0; i < 4; i++) {
        d[i] = (dcall_t){.f = f, .ms = ms[i]};
        pthread_create(&th[i], NULL, deferred_client, &d[i]);
    }
    usleep(20 * 1000);
    uint64_t t0 = oak_now_us();
    json_auto_t *items = call(f, "GET", "/api/items/", NULL, &st);
    assert_int_equal(st, 200);
    assert_true(oak_now_us() - t0 < 90 * 1000); /* not queued behind the deferred ones */
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(d[i].status, 202);
        assert_int_equal(d[i].late, ms[i]);
    }
    /* keep-alive: a deferred answer, then a plain one on the same connection */
    _cleanup_close_ int fd = raw_connect(f->port);
    const char two[] = "GET /deferred/50 HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(fd, two, sizeof(two) - 1);
    raw_resp_t r;
    assert_int_equal(raw_read(fd, &r), 0);
    assert_int_equal(r.status, 202);
    raw_resp_free(&r);
    const char one[] = "GET /api/items HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(fd, one, sizeof(one) - 1);
    assert_int_equal(raw_read(fd, &r), 0);
    assert_int_equal(r.status, 200);
    raw_resp_free(&r);
}

static void test_deferred_server_stops_first(void **state)
{
    fx_t *f = *state;
    _cleanup_close_ int fd = raw_connect(f->port);
    const char req[] = "GET /deferred/never HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(fd, req, sizeof(req) - 1);
    for (int i = 0; i < 200 && !__atomic_load_n(&g_never, __ATOMIC_ACQUIRE); i++)
        usleep(10 * 1000);
    assert_non_null(g_never);
    assert_int_equal(fx_teardown(state), 0); /* stops the server with it suspended */
    char c;
    assert_true(recv(fd, &c, 1, 0) <= 0); /* closed without an answer */
    oak_http_resp_t r = {0};
    oak_http_resp_json(&r, 200, json_object());
    oak_http_complete(g_never, &r); /* only frees the handle (ASan checks) */
    assert_null(r.body);
    g_never = NULL;
    *state = NULL;
    assert_int_equal(fx_setup(state), 0);
}

static void test_dual_stack(void **state)
{
    fx_t *f = *state;
    long st = 0;
    json_auto_t *j = call(f, "GET", "/api/service/v4/instance/1", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(oak_json_str(j, "peer"), "127.0.0.1"); /* not ::ffff:127.0.0.1 */
    /* IPv6 loopback when the host has it */
    int s6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)f->port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = s6 >= 0 && connect(s6, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (s6 >= 0)
        close(s6);
    if (!have_v6)
        return;
    _cleanup_free_ char *u = xasprintf("http://[::1]:%d/api/service/v6/instance/1", f->port);
    json_auto_t *k = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_json("GET", u, NULL, NULL, 5000, &st, &k, &err), 0);
    assert_int_equal(st, 200);
    assert_string_equal(oak_json_str(k, "peer"), "::1");
}

static void test_unix_socket(void **state)
{
    char path[] = "/tmp/oak_http_test_XXXXXX";
    assert_non_null(mkdtemp(path));
    _cleanup_free_ char *sock = xasprintf("%s/api.sock", path);
    _cleanup_free_ char *addr = xasprintf("unix:%s", sock);
    fx_t *f = NULL;
    assert_int_equal(fx_setup_at((void **)&f, addr), 0);
    assert_int_equal(oak_http_server_port(f->srv), 0);

    long st = 0;
    json_auto_t *j = NULL;
    json_auto_t *body = json_pack("{s:s}", "x", "y");
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_httpc_json_unix(sock, "POST", "http://localhost/api/echo", NULL, body,
                                         5000, &st, &j, &err),
                     0);
    assert_int_equal(st, 201);
    assert_true(json_equal(j, body));
    oak_httpc_resp_t r;
    assert_int_equal(oak_httpc_request_unix(sock, "GET", "http://localhost/api/items/u", NULL, NULL,
                                            0, 5000, &r, &err),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"u\""));
    oak_httpc_resp_free(&r);
    void *vf = f;
    fx_teardown(&vf);
    assert_int_equal(access(sock, F_OK), -1); /* socket file removed */
    rmdir(path);
}

static void test_client_errors(void **state)
{
    fx_t *f = *state;
    oak_err_t err = OAK_ERR_INIT;
    oak_httpc_resp_t r;

    /* connection refused: a port that was just free */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    bind(s, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(s, (struct sockaddr *)&sa, &sl);
    close(s);
    _cleanup_free_ char *u = xasprintf("http://127.0.0.1:%d/", ntohs(sa.sin_port));
    assert_int_equal(oak_httpc_request("GET", u, NULL, NULL, 0, 2000, &r, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
    assert_true(strlen(err.msg) > 0);

    /* timeout: a listener that never answers */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {.sin_family = AF_INET};
    la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t ll = sizeof(la);
    bind(l, (struct sockaddr *)&la, sizeof(la));
    listen(l, 4);
    getsockname(l, (struct sockaddr *)&la, &ll);
    _cleanup_free_ char *t = xasprintf("http://127.0.0.1:%d/", ntohs(la.sin_port));
    uint64_t t0 = oak_now_ms();
    assert_int_equal(oak_httpc_request("GET", t, NULL, NULL, 0, 300, &r, &err), -1);
    assert_int_equal(err.code, OAK_E_TIMEOUT);
    assert_true(oak_now_ms() - t0 < 3000);
    close(l);

    /* malformed URL, foreign scheme, bad method */
    assert_int_equal(oak_httpc_request("GET", "http://[::1", NULL, NULL, 0, 1000, &r, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_httpc_request("GET", "file:///etc/passwd", NULL, NULL, 0, 1000, &r, &err),
                     -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_httpc_request("GE T", f->base, NULL, NULL, 0, 1000, &r, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    /* response over the 64 MiB cap */
    _cleanup_free_ char *h = url(f, "/huge");
    assert_int_equal(oak_httpc_request("GET", h, NULL, NULL, 0, 30000, &r, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
}

static void test_start_errors(void **state)
{
    oak_loop_t *loop = oak_loop_new();
    oak_http_server_t *s = NULL, *s2 = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(
        oak_http_server_start(loop, "not-an-ip", 0, ROUTES, NROUTES, NULL, 10, &s, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(
        oak_http_server_start(loop, "127.0.0.1", 70000, ROUTES, NROUTES, NULL, 10, &s, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    const oak_http_route_t bad[] = {{"GET", "no-slash", h_items}};
    assert_int_equal(oak_http_server_start(loop, "127.0.0.1", 0, bad, 1, NULL, 10, &s, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    const oak_http_route_t deep[] = {{"GET", "/<a>/<b>/<c>/<d>/<e>/<f>/<g>/<h>/<i>", h_items}};
    assert_int_equal(oak_http_server_start(loop, "127.0.0.1", 0, deep, 1, NULL, 10, &s, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    /* port in use */
    assert_int_equal(
        oak_http_server_start(loop, "127.0.0.1", 0, ROUTES, NROUTES, NULL, 10, &s, &err), 0);
    int port = oak_http_server_port(s);
    assert_true(port > 0);
    assert_int_equal(
        oak_http_server_start(loop, "127.0.0.1", port, ROUTES, NROUTES, NULL, 10, &s2, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(err.errnum, EADDRINUSE);

    /* route table introspection */
    const oak_http_route_t *rt = NULL;
    assert_int_equal(oak_http_server_routes(s, &rt), NROUTES);
    assert_string_equal(rt[0].pattern, ROUTES[0].pattern);
    assert_string_equal(rt[NROUTES - 1].method, ROUTES[NROUTES - 1].method);
    assert_true(rt[0].pattern != ROUTES[0].pattern); /* a copy */

    oak_http_server_stop(s);
    oak_http_server_stop(NULL);
    oak_loop_free(loop);
}

static void test_debug_log(void **state)
{
    fx_t *f = *state;
    oak_log_init("http_test", OAK_LOG_DEBUG, false);
    long st = 0;
    json_auto_t *j = call(f, "GET", "/api/items", NULL, &st);
    assert_int_equal(st, 200);
    oak_log_init("http_test", OAK_LOG_WARN, false);
}

int main(void)
{
    oak_log_init("http_test", OAK_LOG_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_params, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_trailing_slash, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_not_found, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_options_cors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_echo_and_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_too_large_content_length, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_too_large_chunked, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_query_header_html_204, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_one_connection, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sequential, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_deferred, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_deferred_server_stops_first, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dual_stack, fx_setup_any, fx_teardown),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test_setup_teardown(test_client_errors, fx_setup, fx_teardown),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test_setup_teardown(test_debug_log, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
