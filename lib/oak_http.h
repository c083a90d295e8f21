/* HTTP/1.1 server over libmicrohttpd, driven by the daemon's oak_loop: no
 * library threads, every handler runs on the loop thread and must not block.
 * Routes are a table of (method, pattern, handler); responses are JSON by
 * default. The error contract of the REST API is written down in
 * docs/errors.md. */
#ifndef OAK_HTTP_H
#define OAK_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "lib/oak_err.h"
#include "lib/oak_loop.h"

#define OAK_HTTP_MAX_PARAMS 8

typedef struct oak_http_server oak_http_server_t;

/* One request as a handler sees it. Everything is borrowed and valid only
 * for the duration of the handler call. */
typedef struct {
    const char *method;                      /* "GET", "POST", ... */
    const char *path;                        /* URL path without query (percent-decoded) */
    const char *params[OAK_HTTP_MAX_PARAMS]; /* decoded <name> segments in route order */
    int nparams;
    const char *body; /* raw body, NUL-terminated (never NULL; "" when empty) */
    size_t body_len;
    void *conn;          /* opaque, for oak_http_req_header / oak_http_req_query */
    const char *peer_ip; /* textual peer address ("127.0.0.1", "::1", "unix") */
    void *priv;          /* the server's, for oak_http_defer */
} oak_http_req_t;

/* What a handler fills in. The server frees everything it owns after
 * sending. */
typedef struct {
    int status;               /* default 200 */
    json_t *body;             /* owned; serialised compactly; NULL = empty body */
    char *raw;                /* alternative raw body (owned, malloc'd), e.g. HTML */
    size_t raw_len;           /* length of raw */
    const char *content_type; /* for raw; default "application/octet-stream" */
    char *location;           /* owned; sent as Location header when set */
} oak_http_resp_t;

typedef void (*oak_http_handler)(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx);

/* Pattern like "/api/service/<id>/instance/<n>": literal segments match
 * after percent-decoding, each <name> segment matches one non-empty segment
 * whose decoded value contains no '/' (nor NUL). A trailing slash is ignored
 * on both sides, so "/api/x/" and "/api/x" match either form. When several
 * routes match, the one with more literal segments wins, then table order. */
typedef struct {
    const char *method;
    const char *pattern;
    oak_http_handler handler;
} oak_http_route_t;

/* Starts a server on the loop (call on the loop thread, or before the loop
 * runs). bind_addr is an IPv4 or IPv6 literal ("0.0.0.0", "127.0.0.1",
 * "::"), NULL for all addresses (dual stack, falling back to IPv4-only when
 * IPv6 is unavailable), or "unix:/path/to.sock" for a unix socket (an
 * existing socket file is replaced; port is ignored). port 0 picks an
 * ephemeral port (see oak_http_server_port). The route table is copied; ctx
 * is passed to every handler. Bodies larger than max_body get 413.
 * Errors: OAK_E_INVALID (bad address or pattern), OAK_E_IO (socket, bind,
 * listen), OAK_E_INTERNAL (libmicrohttpd refused to start). On success *out
 * is owned by the caller and released with oak_http_server_stop(). */
int oak_http_server_start(oak_loop_t *loop, const char *bind_addr, int port,
                          const oak_http_route_t *routes, size_t nroutes, void *ctx,
                          size_t max_body, oak_http_server_t **out, oak_err_t *err);
/* The actual bound TCP port (0 for a unix socket). */
int oak_http_server_port(const oak_http_server_t *s);
/* Closes the listening socket and every connection, removes the unix socket
 * file if any, and frees the server. Call on the loop thread (or after the
 * loop has stopped), never from inside a handler (post it with
 * oak_loop_post instead). NULL is ignored. */
void oak_http_server_stop(oak_http_server_t *s);
/* The server's copy of the route table; returns its length. */
size_t oak_http_server_routes(const oak_http_server_t *s, const oak_http_route_t **out);

/* A response that is not ready when the handler returns (it waits for
 * another tier, say). */
typedef struct oak_http_pending oak_http_pending_t;

/* Inside a handler: the response will come later. The handler returns
 * without filling resp (whatever it put there is dropped); the connection
 * is suspended until oak_http_complete(). Every pending response must be
 * completed exactly once, on the loop thread, by its owner (keep a timeout).
 * Stopping the server first is allowed: the client then sees the connection
 * close, and the later oak_http_complete() only frees the handle. The
 * request (req and what it points to) is not valid after the handler
 * returns: copy what the completion needs. Call at most once per request. */
oak_http_pending_t *oak_http_defer(const oak_http_req_t *req);
/* Sends resp (its contents are taken over, *resp is zeroed) as the answer of
 * a deferred request and frees p. Loop thread; may be called from inside a
 * handler of another request. */
void oak_http_complete(oak_http_pending_t *p, oak_http_resp_t *resp);

/* Value of a request header (case-insensitive name), or NULL. Borrowed. */
const char *oak_http_req_header(const oak_http_req_t *req, const char *name);
/* Percent-decoded value of a query argument, or NULL when absent (a key
 * given without "=" yields ""). Borrowed. */
const char *oak_http_req_query(const oak_http_req_t *req, const char *name);

/* Sets status and JSON body (stolen; replaces any previous body). */
void oak_http_resp_json(oak_http_resp_t *resp, int status, json_t *body);
/* Error response: status from oak_err_http_status(err->code), body from
 * oak_err_to_json(err). err is not modified. */
void oak_http_resp_error(oak_http_resp_t *resp, const oak_err_t *err);
/* Convenience: error response from a code and a message. */
void oak_http_resp_errorf(oak_http_resp_t *resp, oak_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
