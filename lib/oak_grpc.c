/* gRPC server and client helpers over the gRPC core C API.
 *
 * Server. The server owns one completion queue and one thread that drains
 * it (cq thread). Calls are requested generically (grpc_server_request_call)
 * from a few request slots and dispatched by method path. Each call object
 * starts two receive batches when it arrives: RECV_MESSAGE (the request) and
 * RECV_CLOSE_ON_SERVER (fires when the call ends for any reason, so a
 * vanished client is noticed). Once the request is unpacked the call is
 * posted to the loop thread, where the handler runs; every app-side entry
 * point (reply, send, finish) runs there too. Sends are serialised through a
 * per-call FIFO with at most one send batch in flight.
 *
 * Per-call state shared by the two threads (the send queue, batch counts,
 * the grpc_call pointer, "closed") is guarded by the call's mutex; state
 * touched only on the loop thread (app ownership, close callback) or only on
 * the cq thread is not. A call object is reference counted: one reference
 * while the grpc_call is alive (dropped on the cq thread once the call is
 * closed and no batch is in flight), one per posted loop item, and one held
 * by the app from the handler until it finishes the call or its close
 * callback returns. Call objects never point at the server once their
 * grpc_call is released, so they may outlive oak_grpc_server_shutdown.
 *
 * Client. Blocking: each call or stream has its own pluck completion queue,
 * waited on by the calling thread. */
#include "lib/oak_grpc.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "lib/oak_alloc.h"
#include "lib/oak_log.h"

#define KEEPALIVE_TIME_MS        10000
#define KEEPALIVE_TIMEOUT_MS     5000
#define MIN_RECV_PING_MS         5000
#define MAX_RECONNECT_BACKOFF_MS 5000
#define N_REQUEST_SLOTS          8

/* ---------------------------------------------------------------- status */

oak_code_t oak_grpc_status_to_oak(grpc_status_code status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return OAK_E_OK;
    case GRPC_STATUS_UNAVAILABLE:
        return OAK_E_UNAVAILABLE;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return OAK_E_TIMEOUT;
    case GRPC_STATUS_UNAUTHENTICATED:
        return OAK_E_UNAUTH;
    case GRPC_STATUS_PERMISSION_DENIED:
        return OAK_E_FORBIDDEN;
    case GRPC_STATUS_NOT_FOUND:
        return OAK_E_NOT_FOUND;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return OAK_E_INVALID;
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_ABORTED:
        return OAK_E_CONFLICT;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return OAK_E_UNPROCESSABLE;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return OAK_E_TOO_LARGE;
    case GRPC_STATUS_UNIMPLEMENTED:
        return OAK_E_NOT_IMPLEMENTED;
    default:
        return OAK_E_INTERNAL;
    }
}

grpc_status_code oak_grpc_status_from_oak(oak_code_t code)
{
    switch (code) {
    case OAK_E_OK:
        return GRPC_STATUS_OK;
    case OAK_E_INVALID:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case OAK_E_UNPROCESSABLE:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case OAK_E_UNAUTH:
        return GRPC_STATUS_UNAUTHENTICATED;
    case OAK_E_FORBIDDEN:
        return GRPC_STATUS_PERMISSION_DENIED;
    case OAK_E_NOT_FOUND:
        return GRPC_STATUS_NOT_FOUND;
    case OAK_E_CONFLICT:
        return GRPC_STATUS_ALREADY_EXISTS;
    case OAK_E_TOO_LARGE:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case OAK_E_UNAVAILABLE:
        return GRPC_STATUS_UNAVAILABLE;
    case OAK_E_TIMEOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case OAK_E_NOT_IMPLEMENTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case OAK_E_IO:
    case OAK_E_INTERNAL:
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

/* Fills err from a final status and its details; returns -1. */
static int status_err(oak_err_t *err, grpc_status_code st, grpc_slice details, const char *method)
{
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n > 0)
        return oak_err_set(err, oak_grpc_status_to_oak(st), "%.*s", (int)n,
                           (const char *)GRPC_SLICE_START_PTR(details));
    return oak_err_set(err, oak_grpc_status_to_oak(st), "%s: gRPC status %d", method, (int)st);
}

/* -------------------------------------------------------------- messages */

static grpc_byte_buffer *pack_msg(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice sl = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* NULL if bb does not parse as desc. */
static ProtobufCMessage *unpack_msg(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(sl), GRPC_SLICE_START_PTR(sl));
    grpc_slice_unref(sl);
    return m;
}

static gpr_timespec deadline_after(long timeout_ms)
{
    if (timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static grpc_arg int_arg(const char *key, int value)
{
    return (grpc_arg){.type = GRPC_ARG_INTEGER, .key = (char *)key, .value.integer = value};
}

/* ---------------------------------------------------------------- server */

typedef enum { TAG_REQUEST, TAG_SHUTDOWN, TAG_RECV_MSG, TAG_RECV_CLOSE, TAG_SEND } tag_kind_t;

/* Every completion-queue tag points at one of these. */
typedef struct {
    tag_kind_t kind;
    void *owner;
} tag_t;

typedef enum { METHOD_UNKNOWN, METHOD_UNARY, METHOD_STREAM } method_kind_t;

typedef struct {
    char *path;
    method_kind_t kind;
    const ProtobufCMessageDescriptor *req_desc, *resp_desc;
    oak_grpc_unary_fn unary;
    oak_grpc_stream_fn stream;
    void *ctx;
} method_t;

typedef struct {
    tag_t tag;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
} req_slot_t;

struct oak_grpc_server {
    oak_loop_t *loop;
    grpc_server *gs;
    grpc_completion_queue *cq;
    pthread_t thread;
    int port;
    bool started;
    method_t *methods; /* fixed once started */
    size_t nmethods;
    req_slot_t slots[N_REQUEST_SLOTS];
    tag_t shutdown_tag;
    pthread_mutex_t lock; /* shutting, pending_requests */
    bool shutting;
    int pending_requests;
    /* cq thread only */
    bool shutdown_notified;
    bool cq_shut;
    int live_calls;
};

typedef struct send_item {
    grpc_byte_buffer *bb;
    struct send_item *next;
} send_item_t;

struct oak_grpc_call {
    int refs; /* atomic */
    pthread_mutex_t lock;
    /* immutable after creation */
    oak_grpc_server_t *server; /* valid while gcall is set */
    oak_loop_t *loop;
    method_t m; /* path not copied */
    char *peer;
    tag_t t_recv, t_close, t_send;
    /* cq thread only */
    grpc_byte_buffer *recv_bb;
    int cancelled;
    bool dispatched;
    /* set on the cq thread before dispatch, read on the loop thread */
    ProtobufCMessage *req;
    /* under lock */
    grpc_call *gcall;
    int outstanding; /* batches in flight */
    bool closed;     /* RECV_CLOSE_ON_SERVER completed: no more batches */
    bool md_sent;
    bool send_busy;
    send_item_t *q_head, *q_tail;
    size_t q_len;
    grpc_byte_buffer *inflight_bb;
    bool status_pending;
    grpc_status_code status;
    char *status_msg;
    /* loop thread only */
    bool app_owned;    /* the handler was invoked */
    bool app_released; /* finished by the app or closed towards it */
    oak_grpc_close_fn on_close;
    void *on_close_data;
};

/* The stream handle is the call object itself. */
struct oak_grpc_stream {
    struct oak_grpc_call c;
};

static oak_grpc_stream_t *as_stream(oak_grpc_call_t *c)
{
    return (oak_grpc_stream_t *)c;
}

static void drop_queue_locked(oak_grpc_call_t *c)
{
    send_item_t *it = c->q_head;
    while (it) {
        send_item_t *n = it->next;
        grpc_byte_buffer_destroy(it->bb);
        free(it);
        it = n;
    }
    c->q_head = c->q_tail = NULL;
    c->q_len = 0;
    c->status_pending = false;
}

static void call_unref(oak_grpc_call_t *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    /* the grpc reference is gone, so the queue was dropped on close */
    pthread_mutex_destroy(&c->lock);
    if (c->req)
        protobuf_c_message_free_unpacked(c->req, NULL);
    free(c->status_msg);
    free(c->peer);
    free(c);
}

static void call_ref(oak_grpc_call_t *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
}

/* Starts the next send batch if none is in flight: initial metadata with
 * the first batch, the queue head, and the final status once the queue is
 * empty. */
static void kick_locked(oak_grpc_call_t *c)
{
    if (c->send_busy || c->closed || !c->gcall)
        return;
    if (!c->q_head && !c->status_pending)
        return;
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    size_t n = 0;
    if (!c->md_sent)
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->q_head) {
        send_item_t *it = c->q_head;
        c->q_head = it->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_len--;
        c->inflight_bb = it->bb;
        free(it);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->inflight_bb;
    }
    bool with_status = c->status_pending && !c->q_head;
    grpc_slice details = grpc_empty_slice();
    if (with_status) {
        if (c->status_msg && c->status_msg[0])
            details = grpc_slice_from_copied_string(c->status_msg);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = c->status;
        ops[n++].data.send_status_from_server.status_details = &details;
    }
    grpc_call_error e = grpc_call_start_batch(c->gcall, ops, n, &c->t_send, NULL);
    grpc_slice_unref(details); /* start_batch took its own reference */
    if (e != GRPC_CALL_OK) {
        log_warn("grpc: cannot start send batch: error %d", (int)e);
        if (c->inflight_bb)
            grpc_byte_buffer_destroy(c->inflight_bb);
        c->inflight_bb = NULL;
        drop_queue_locked(c);
        grpc_call_cancel(c->gcall, NULL);
        return;
    }
    c->md_sent = true;
    c->send_busy = true;
    c->outstanding++;
    if (with_status)
        c->status_pending = false;
}

/* Takes the grpc_call out of c if nothing can use it any more. */
static grpc_call *take_gcall_locked(oak_grpc_call_t *c)
{
    if (!c->closed || c->outstanding > 0 || !c->gcall)
        return NULL;
    grpc_call *g = c->gcall;
    c->gcall = NULL;
    return g;
}

/* cq thread: releases the grpc_call taken by take_gcall_locked and the
 * reference it held; c may be freed. */
static void release_gcall(oak_grpc_server_t *s, oak_grpc_call_t *c, grpc_call *g)
{
    if (!g)
        return;
    grpc_call_unref(g);
    s->live_calls--;
    call_unref(c);
}

/* Queues the final status; caller holds the lock. */
static void queue_status_locked(oak_grpc_call_t *c, grpc_status_code st, const char *msg)
{
    c->status_pending = true;
    c->status = st;
    free(c->status_msg);
    c->status_msg = xstrdup(msg ? msg : "");
    kick_locked(c);
}

/* ---- loop thread items ---- */

static void dispatch_cb(oak_loop_t *loop, void *data)
{
    oak_grpc_call_t *c = data;
    pthread_mutex_lock(&c->lock);
    bool closed = c->closed;
    pthread_mutex_unlock(&c->lock);
    if (closed) {
        /* cancelled (or server shut down) before the app saw it */
        call_unref(c);
        return;
    }
    /* this item's reference becomes the app's */
    c->app_owned = true;
    if (c->m.kind == METHOD_UNARY)
        c->m.unary(c, c->req, c->m.ctx);
    else
        c->m.stream(as_stream(c), c->req, c->m.ctx);
}

static void close_cb(oak_loop_t *loop, void *data)
{
    oak_grpc_call_t *c = data;
    if (c->app_owned && !c->app_released) {
        c->app_released = true;
        if (c->on_close)
            c->on_close(as_stream(c), c->on_close_data);
        call_unref(c); /* the app's reference */
    }
    call_unref(c);
}

/* ---- cq thread ---- */

static void arm_slot(oak_grpc_server_t *s, req_slot_t *slot)
{
    pthread_mutex_lock(&s->lock);
    if (!s->shutting) {
        grpc_call_error e = grpc_server_request_call(s->gs, &slot->call, &slot->details, &slot->md,
                                                     s->cq, s->cq, &slot->tag);
        if (e == GRPC_CALL_OK)
            s->pending_requests++;
        else
            log_error("grpc: request_call failed: error %d", (int)e);
    }
    pthread_mutex_unlock(&s->lock);
}

static const method_t *find_method(const oak_grpc_server_t *s, grpc_slice path)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (grpc_slice_str_cmp(path, s->methods[i].path) == 0)
            return &s->methods[i];
    return NULL;
}

static void on_new_call(oak_grpc_server_t *s, req_slot_t *slot, bool ok)
{
    if (!ok) {
        /* the server is shutting down */
        pthread_mutex_lock(&s->lock);
        s->pending_requests--;
        pthread_mutex_unlock(&s->lock);
        return;
    }
    grpc_call *g = slot->call;
    const method_t *m = find_method(s, slot->details.method);

    oak_grpc_call_t *c = xcalloc(1, sizeof(struct oak_grpc_stream));
    c->refs = 1; /* the grpc reference */
    pthread_mutex_init(&c->lock, NULL);
    c->server = s;
    c->loop = s->loop;
    if (m) {
        c->m = *m;
        c->m.path = NULL;
    } else {
        c->m.kind = METHOD_UNKNOWN;
    }
    char *peer = grpc_call_get_peer(g);
    c->peer = xstrdup(peer ? peer : "");
    gpr_free(peer);
    c->t_recv = (tag_t){TAG_RECV_MSG, c};
    c->t_close = (tag_t){TAG_RECV_CLOSE, c};
    c->t_send = (tag_t){TAG_SEND, c};
    c->gcall = g;
    s->live_calls++;

    if (!m)
        log_debug("grpc: unknown method %.*s from %s", (int)GRPC_SLICE_LENGTH(slot->details.method),
                  (const char *)GRPC_SLICE_START_PTR(slot->details.method), c->peer);

    /* give the slot back to the server */
    slot->call = NULL;
    grpc_call_details_destroy(&slot->details);
    grpc_metadata_array_destroy(&slot->md);
    grpc_call_details_init(&slot->details);
    grpc_metadata_array_init(&slot->md);
    pthread_mutex_lock(&s->lock);
    s->pending_requests--;
    bool shutting = s->shutting;
    pthread_mutex_unlock(&s->lock);
    if (shutting)
        grpc_call_cancel(g, NULL);
    else
        arm_slot(s, slot);

    pthread_mutex_lock(&c->lock);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(g, &op, 1, &c->t_close, NULL) == GRPC_CALL_OK) {
        c->outstanding++;
    } else {
        log_error("grpc: cannot start recv-close batch");
        grpc_call_cancel(g, NULL);
        c->closed = true;
    }
    if (!c->closed && m) {
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv_bb;
        if (grpc_call_start_batch(g, &op, 1, &c->t_recv, NULL) == GRPC_CALL_OK) {
            c->outstanding++;
        } else {
            log_error("grpc: cannot start recv-message batch");
            grpc_call_cancel(g, NULL);
        }
    } else if (!c->closed) {
        queue_status_locked(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    }
    grpc_call *rel = take_gcall_locked(c);
    pthread_mutex_unlock(&c->lock);
    release_gcall(s, c, rel);
}

static void on_recv_msg(oak_grpc_server_t *s, oak_grpc_call_t *c, bool ok)
{
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    pthread_mutex_lock(&c->lock);
    c->outstanding--;
    if (!c->closed && c->gcall) {
        if (!ok) {
            /* the transport failed the read (e.g. message too large) and has
             * already ended the call with a status */
            grpc_call_cancel(c->gcall, NULL);
        } else if (!bb) {
            queue_status_locked(c, GRPC_STATUS_INVALID_ARGUMENT, "missing request message");
        } else if (!(c->req = unpack_msg(bb, c->m.req_desc))) {
            queue_status_locked(c, GRPC_STATUS_INVALID_ARGUMENT, "cannot parse request");
        } else {
            c->dispatched = true;
            call_ref(c);
            oak_loop_post(c->loop, dispatch_cb, c);
        }
    }
    grpc_call *rel = take_gcall_locked(c);
    pthread_mutex_unlock(&c->lock);
    if (bb)
        grpc_byte_buffer_destroy(bb);
    release_gcall(s, c, rel);
}

static void on_recv_close(oak_grpc_server_t *s, oak_grpc_call_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->outstanding--;
    c->closed = true;
    drop_queue_locked(c);
    bool post = c->cancelled && c->dispatched && c->m.kind == METHOD_STREAM;
    grpc_call *rel = take_gcall_locked(c);
    pthread_mutex_unlock(&c->lock);
    if (post) {
        call_ref(c);
        oak_loop_post(c->loop, close_cb, c);
    }
    release_gcall(s, c, rel);
}

static void on_send(oak_grpc_server_t *s, oak_grpc_call_t *c, bool ok)
{
    pthread_mutex_lock(&c->lock);
    c->outstanding--;
    c->send_busy = false;
    if (c->inflight_bb)
        grpc_byte_buffer_destroy(c->inflight_bb);
    c->inflight_bb = NULL;
    if (ok)
        kick_locked(c);
    else
        drop_queue_locked(c);
    grpc_call *rel = take_gcall_locked(c);
    pthread_mutex_unlock(&c->lock);
    release_gcall(s, c, rel);
}

static void *cq_thread(void *arg)
{
    oak_grpc_server_t *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        tag_t *t = ev.tag;
        switch (t->kind) {
        case TAG_REQUEST:
            on_new_call(s, t->owner, ev.success);
            break;
        case TAG_SHUTDOWN:
            s->shutdown_notified = true;
            break;
        case TAG_RECV_MSG:
            on_recv_msg(s, t->owner, ev.success);
            break;
        case TAG_RECV_CLOSE:
            on_recv_close(s, t->owner);
            break;
        case TAG_SEND:
            on_send(s, t->owner, ev.success);
            break;
        }
        if (s->shutdown_notified && !s->cq_shut && s->live_calls == 0) {
            pthread_mutex_lock(&s->lock);
            bool idle = s->pending_requests == 0;
            pthread_mutex_unlock(&s->lock);
            if (idle) {
                s->cq_shut = true;
                grpc_completion_queue_shutdown(s->cq);
            }
        }
    }
    return NULL;
}

/* ---- server API ---- */

oak_grpc_server_t *oak_grpc_server_new(oak_loop_t *loop, const char *addr, oak_err_t *err)
{
    grpc_init();
    grpc_arg args[] = {
        int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, KEEPALIVE_TIME_MS),
        int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, KEEPALIVE_TIMEOUT_MS),
        int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, MIN_RECV_PING_MS),
        int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
        int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, OAK_GRPC_MAX_MESSAGE),
        /* a second server on the same port must fail, not share it */
        int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
    };
    grpc_channel_args cargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};

    oak_grpc_server_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    pthread_mutex_init(&s->lock, NULL);
    s->gs = grpc_server_create(&cargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->gs, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->gs, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0) {
        /* no listener was added, so the server may be destroyed unshut */
        grpc_server_destroy(s->gs);
        grpc_completion_queue_shutdown(s->cq);
        grpc_completion_queue_destroy(s->cq);
        pthread_mutex_destroy(&s->lock);
        free(s);
        grpc_shutdown();
        oak_err_set(err, OAK_E_UNAVAILABLE, "cannot listen on %s", addr);
        return NULL;
    }
    for (int i = 0; i < N_REQUEST_SLOTS; i++) {
        s->slots[i].tag = (tag_t){TAG_REQUEST, &s->slots[i]};
        grpc_call_details_init(&s->slots[i].details);
        grpc_metadata_array_init(&s->slots[i].md);
    }
    s->shutdown_tag = (tag_t){TAG_SHUTDOWN, s};
    if (pthread_create(&s->thread, NULL, cq_thread, s) != 0) {
        log_error("grpc: cannot start completion-queue thread");
        abort();
    }
    return s;
}

int oak_grpc_server_port(const oak_grpc_server_t *s)
{
    return s->port;
}

static int add_method(oak_grpc_server_t *s, const method_t *m, oak_err_t *err)
{
    if (s->started)
        return oak_err_set(err, OAK_E_INVALID, "%s: server already started", m->path);
    for (size_t i = 0; i < s->nmethods; i++)
        if (strcmp(s->methods[i].path, m->path) == 0)
            return oak_err_set(err, OAK_E_CONFLICT, "%s: method registered twice", m->path);
    s->methods = xrealloc(s->methods, sizeof(method_t) * (s->nmethods + 1));
    s->methods[s->nmethods] = *m;
    s->methods[s->nmethods].path = xstrdup(m->path);
    s->nmethods++;
    return 0;
}

int oak_grpc_server_add_unary(oak_grpc_server_t *s, const char *path,
                              const ProtobufCMessageDescriptor *req_desc,
                              const ProtobufCMessageDescriptor *resp_desc, oak_grpc_unary_fn fn,
                              void *ctx, oak_err_t *err)
{
    method_t m = {.path = (char *)path,
                  .kind = METHOD_UNARY,
                  .req_desc = req_desc,
                  .resp_desc = resp_desc,
                  .unary = fn,
                  .ctx = ctx};
    return add_method(s, &m, err);
}

int oak_grpc_server_add_stream(oak_grpc_server_t *s, const char *path,
                               const ProtobufCMessageDescriptor *req_desc,
                               const ProtobufCMessageDescriptor *resp_desc, oak_grpc_stream_fn fn,
                               void *ctx, oak_err_t *err)
{
    method_t m = {.path = (char *)path,
                  .kind = METHOD_STREAM,
                  .req_desc = req_desc,
                  .resp_desc = resp_desc,
                  .stream = fn,
                  .ctx = ctx};
    return add_method(s, &m, err);
}

void oak_grpc_server_start(oak_grpc_server_t *s)
{
    if (s->started)
        return;
    s->started = true;
    grpc_server_start(s->gs);
    for (int i = 0; i < N_REQUEST_SLOTS; i++)
        arm_slot(s, &s->slots[i]);
}

void oak_grpc_server_shutdown(oak_grpc_server_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->shutting = true;
    pthread_mutex_unlock(&s->lock);
    grpc_server_shutdown_and_notify(s->gs, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->gs);
    pthread_join(s->thread, NULL);
    grpc_server_destroy(s->gs);
    grpc_completion_queue_destroy(s->cq);
    for (int i = 0; i < N_REQUEST_SLOTS; i++) {
        grpc_call_details_destroy(&s->slots[i].details);
        grpc_metadata_array_destroy(&s->slots[i].md);
    }
    for (size_t i = 0; i < s->nmethods; i++)
        free(s->methods[i].path);
    free(s->methods);
    pthread_mutex_destroy(&s->lock);
    free(s);
    grpc_shutdown();
}

/* ---- app side (loop thread) ---- */

/* Finishes c with an optional last message and a status, and drops the
 * app's reference. */
static int app_finish(oak_grpc_call_t *c, const ProtobufCMessage *msg, grpc_status_code st,
                      const char *text)
{
    if (c->app_released)
        return -1; /* inside the close callback */
    c->app_released = true;
    if (msg && msg->descriptor != c->m.resp_desc) {
        log_error("grpc: reply of type %s, method wants %s", msg->descriptor->name,
                  c->m.resp_desc->name);
        msg = NULL;
        st = GRPC_STATUS_INTERNAL;
        text = "internal error: wrong response type";
    }
    int rc = -1;
    pthread_mutex_lock(&c->lock);
    if (!c->closed && c->gcall) {
        if (msg) {
            send_item_t *it = xmalloc(sizeof(*it));
            it->bb = pack_msg(msg);
            it->next = NULL;
            if (c->q_tail)
                c->q_tail->next = it;
            else
                c->q_head = it;
            c->q_tail = it;
            c->q_len++;
        }
        queue_status_locked(c, st, text);
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    call_unref(c);
    return rc;
}

int oak_grpc_reply(oak_grpc_call_t *call, const ProtobufCMessage *resp)
{
    return app_finish(call, resp, GRPC_STATUS_OK, NULL);
}

int oak_grpc_fail(oak_grpc_call_t *call, grpc_status_code status, const char *msg)
{
    if (status == GRPC_STATUS_OK)
        status = GRPC_STATUS_UNKNOWN;
    return app_finish(call, NULL, status, msg);
}

int oak_grpc_fail_err(oak_grpc_call_t *call, const oak_err_t *err)
{
    return oak_grpc_fail(call, oak_grpc_status_from_oak(err->code), err->msg);
}

const char *oak_grpc_call_peer(const oak_grpc_call_t *call)
{
    return call->peer;
}

int oak_grpc_stream_send(oak_grpc_stream_t *stream, const ProtobufCMessage *msg)
{
    oak_grpc_call_t *c = &stream->c;
    if (c->app_released)
        return -1;
    if (msg->descriptor != c->m.resp_desc) {
        log_error("grpc: stream message of type %s, method wants %s", msg->descriptor->name,
                  c->m.resp_desc->name);
        return -1;
    }
    int rc = -1;
    pthread_mutex_lock(&c->lock);
    if (!c->closed && c->gcall) {
        send_item_t *it = xmalloc(sizeof(*it));
        it->bb = pack_msg(msg);
        it->next = NULL;
        if (c->q_tail)
            c->q_tail->next = it;
        else
            c->q_head = it;
        c->q_tail = it;
        c->q_len++;
        kick_locked(c);
        rc = 0;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

size_t oak_grpc_stream_backlog(const oak_grpc_stream_t *stream)
{
    oak_grpc_call_t *c = (oak_grpc_call_t *)&stream->c;
    pthread_mutex_lock(&c->lock);
    size_t n = c->q_len;
    pthread_mutex_unlock(&c->lock);
    return n;
}

int oak_grpc_stream_finish(oak_grpc_stream_t *stream, grpc_status_code status, const char *msg)
{
    return app_finish(&stream->c, NULL, status, msg);
}

void oak_grpc_stream_on_close(oak_grpc_stream_t *stream, oak_grpc_close_fn cb, void *data)
{
    stream->c.on_close = cb;
    stream->c.on_close_data = data;
}

const char *oak_grpc_stream_peer(const oak_grpc_stream_t *stream)
{
    return stream->c.peer;
}

/* ---------------------------------------------------------------- client */

struct oak_grpc_channel {
    grpc_channel *ch;
};

oak_grpc_channel_t *oak_grpc_channel_new(const char *target)
{
    grpc_init();
    grpc_arg args[] = {
        int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, KEEPALIVE_TIME_MS),
        int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, KEEPALIVE_TIMEOUT_MS),
        int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, OAK_GRPC_MAX_MESSAGE),
        int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, MAX_RECONNECT_BACKOFF_MS),
        /* a peer that comes back is found within a second, not after
         * gRPC's default initial backoff */
        int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500),
        int_arg(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500),
    };
    grpc_channel_args cargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    oak_grpc_channel_t *ch = xcalloc(1, sizeof(*ch));
    ch->ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    return ch;
}

void oak_grpc_channel_free(oak_grpc_channel_t *ch)
{
    if (!ch)
        return;
    grpc_channel_destroy(ch->ch);
    free(ch);
    grpc_shutdown();
}

int oak_grpc_unary(oak_grpc_channel_t *ch, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, long timeout_ms,
                   ProtobufCMessage **resp_out, oak_err_t *err)
{
    *resp_out = NULL;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               grpc_slice_from_static_string(method), NULL,
                                               deadline_after(timeout_ms), NULL);
    grpc_byte_buffer *send_bb = pack_msg(req);
    grpc_byte_buffer *recv_bb = NULL;
    grpc_metadata_array init_md, trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;

    int rc = 0;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, ops, NULL);
    if (e != GRPC_CALL_OK) {
        rc = oak_err_set(err, OAK_E_INTERNAL, "%s: cannot start call: error %d", method, (int)e);
    } else {
        grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (status != GRPC_STATUS_OK)
            rc = status_err(err, status, details, method);
        else if (!recv_bb || !(*resp_out = unpack_msg(recv_bb, resp_desc)))
            rc = oak_err_set(err, OAK_E_INTERNAL, "%s: missing or unparsable response", method);
    }

    if (recv_bb)
        grpc_byte_buffer_destroy(recv_bb);
    grpc_byte_buffer_destroy(send_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

struct oak_grpc_client_stream {
    grpc_completion_queue *cq;
    grpc_call *call;
    const ProtobufCMessageDescriptor *desc;
    char *method;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    /* tags; their addresses are used */
    char t_start, t_recv, t_status;
    bool start_pending, recv_pending, status_pending;
    bool done;
};

oak_grpc_client_stream_t *oak_grpc_stream_open(oak_grpc_channel_t *ch, const char *method,
                                               const ProtobufCMessage *req,
                                               const ProtobufCMessageDescriptor *resp_desc,
                                               oak_err_t *err)
{
    oak_grpc_client_stream_t *s = xcalloc(1, sizeof(*s));
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq,
                                       grpc_slice_from_static_string(method), NULL,
                                       gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    s->desc = resp_desc;
    s->method = xstrdup(method);
    s->send_bb = pack_msg(req);
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();

    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 4, &s->t_start, NULL);
    if (e == GRPC_CALL_OK) {
        s->start_pending = true;
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[0].data.recv_status_on_client.trailing_metadata = &s->trail_md;
        ops[0].data.recv_status_on_client.status = &s->status;
        ops[0].data.recv_status_on_client.status_details = &s->details;
        e = grpc_call_start_batch(s->call, ops, 1, &s->t_status, NULL);
        if (e == GRPC_CALL_OK)
            s->status_pending = true;
    }
    if (e != GRPC_CALL_OK) {
        oak_grpc_stream_close(s);
        oak_err_set(err, OAK_E_INTERNAL, "%s: cannot start call: error %d", method, (int)e);
        return NULL;
    }
    return s;
}

static void pluck(oak_grpc_client_stream_t *s, void *tag)
{
    grpc_completion_queue_pluck(s->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* The final result once the status is known. */
static int stream_result(oak_grpc_client_stream_t *s, oak_err_t *err)
{
    if (s->status == GRPC_STATUS_OK)
        return 0;
    return status_err(err, s->status, s->details, s->method);
}

int oak_grpc_stream_read(oak_grpc_client_stream_t *s, long timeout_ms, ProtobufCMessage **msg,
                         oak_err_t *err)
{
    *msg = NULL;
    if (s->done)
        return stream_result(s, err);
    if (!s->recv_pending) {
        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv_bb;
        grpc_call_error e = grpc_call_start_batch(s->call, &op, 1, &s->t_recv, NULL);
        if (e != GRPC_CALL_OK)
            return oak_err_set(err, OAK_E_INTERNAL, "%s: cannot read: error %d", s->method, (int)e);
        s->recv_pending = true;
    }
    grpc_event ev =
        grpc_completion_queue_pluck(s->cq, &s->t_recv, deadline_after(timeout_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return oak_err_set(err, OAK_E_TIMEOUT, "%s: no message within %ld ms", s->method,
                           timeout_ms);
    s->recv_pending = false;
    if (s->recv_bb) {
        *msg = unpack_msg(s->recv_bb, s->desc);
        grpc_byte_buffer_destroy(s->recv_bb);
        s->recv_bb = NULL;
        if (*msg)
            return 1;
        grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, "unparsable message", NULL);
    }
    /* end of stream, cancel or failure: the status follows */
    if (s->status_pending) {
        pluck(s, &s->t_status);
        s->status_pending = false;
    }
    s->done = true;
    return stream_result(s, err);
}

void oak_grpc_stream_cancel(oak_grpc_client_stream_t *s)
{
    grpc_call_cancel(s->call, NULL);
}

void oak_grpc_stream_close(oak_grpc_client_stream_t *s)
{
    if (!s)
        return;
    if (s->status_pending || s->recv_pending)
        grpc_call_cancel(s->call, NULL);
    if (s->start_pending)
        pluck(s, &s->t_start);
    if (s->recv_pending)
        pluck(s, &s->t_recv);
    if (s->status_pending)
        pluck(s, &s->t_status);
    if (s->recv_bb)
        grpc_byte_buffer_destroy(s->recv_bb);
    grpc_byte_buffer_destroy(s->send_bb);
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    grpc_completion_queue_destroy(s->cq);
    free(s->method);
    free(s);
}
