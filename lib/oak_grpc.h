/* Unary and server-streaming gRPC over the gRPC core C API, with protobuf-c
 * messages.
 *
 * Server: one completion-queue thread per server reads requests; handlers,
 * close callbacks and every app-side call (reply, send, finish) run on the
 * event loop thread. Client: blocking calls usable from any thread, one
 * completion queue per call. The threading model is described in
 * docs/grpc.md. */
#ifndef OAK_GRPC_H
#define OAK_GRPC_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/oak_cleanup.h"
#include "lib/oak_err.h"
#include "lib/oak_loop.h"

/* Largest message accepted in either direction's receive path (4 MiB). */
#define OAK_GRPC_MAX_MESSAGE (4 * 1024 * 1024)

/* ---- status mapping ---- */

/* oak code for a gRPC status: UNAVAILABLE->UNAVAILABLE,
 * DEADLINE_EXCEEDED->TIMEOUT, UNAUTHENTICATED->UNAUTH,
 * PERMISSION_DENIED->FORBIDDEN, NOT_FOUND->NOT_FOUND,
 * INVALID_ARGUMENT/OUT_OF_RANGE->INVALID, ALREADY_EXISTS/ABORTED->CONFLICT,
 * FAILED_PRECONDITION->UNPROCESSABLE, RESOURCE_EXHAUSTED->TOO_LARGE,
 * UNIMPLEMENTED->NOT_IMPLEMENTED, OK->OK, anything else->INTERNAL. */
oak_code_t oak_grpc_status_to_oak(grpc_status_code status);
/* gRPC status for an oak code; the inverse of oak_grpc_status_to_oak
 * (CONFLICT->ALREADY_EXISTS, IO->INTERNAL). */
grpc_status_code oak_grpc_status_from_oak(oak_code_t code);

/* ---- server ---- */

typedef struct oak_grpc_server oak_grpc_server_t;
/* A unary call handed to the app; finished by oak_grpc_reply/_fail. */
typedef struct oak_grpc_call oak_grpc_call_t;
/* A server stream handed to the app; see oak_grpc_stream_on_close. */
typedef struct oak_grpc_stream oak_grpc_stream_t;

/* Handlers run on the loop thread. req is owned by the call and stays valid
 * until the call/stream is finished or closed. */
typedef void (*oak_grpc_unary_fn)(oak_grpc_call_t *call, const ProtobufCMessage *req, void *ctx);
typedef void (*oak_grpc_stream_fn)(oak_grpc_stream_t *stream, const ProtobufCMessage *req,
                                   void *ctx);
typedef void (*oak_grpc_close_fn)(oak_grpc_stream_t *stream, void *data);

/* Creates a server bound to addr ("host:port"; port 0 picks a free port)
 * whose handlers run on loop. Keepalive pings detect dead clients; requests
 * larger than OAK_GRPC_MAX_MESSAGE are rejected with RESOURCE_EXHAUSTED.
 * Errors: OAK_E_UNAVAILABLE if the address cannot be bound. Register methods,
 * then oak_grpc_server_start; release with oak_grpc_server_shutdown. */
oak_grpc_server_t *oak_grpc_server_new(oak_loop_t *loop, const char *addr, oak_err_t *err);
/* The bound TCP port. */
int oak_grpc_server_port(const oak_grpc_server_t *s);
/* Registers a unary method by full path ("/pkg.Service/Method") with its
 * request and response descriptors. Before oak_grpc_server_start only.
 * Errors: OAK_E_CONFLICT for a duplicate path, OAK_E_INVALID after start. */
int oak_grpc_server_add_unary(oak_grpc_server_t *s, const char *path,
                              const ProtobufCMessageDescriptor *req_desc,
                              const ProtobufCMessageDescriptor *resp_desc, oak_grpc_unary_fn fn,
                              void *ctx, oak_err_t *err);
/* As oak_grpc_server_add_unary for a server-streaming method. */
int oak_grpc_server_add_stream(oak_grpc_server_t *s, const char *path,
                               const ProtobufCMessageDescriptor *req_desc,
                               const ProtobufCMessageDescriptor *resp_desc, oak_grpc_stream_fn fn,
                               void *ctx, oak_err_t *err);
/* Starts accepting calls. Unknown methods are answered UNIMPLEMENTED. */
void oak_grpc_server_start(oak_grpc_server_t *s);
/* Stops the server and frees it; callable from any thread, including the
 * loop thread. Every call is cancelled and the completion-queue thread joined
 * before it returns. Handlers are never invoked afterwards. Close callbacks
 * of streams the app still holds are posted to the loop like any other
 * cancellation: they run the next time the loop runs, so run the loop (or
 * keep it running) to let the app drop its streams before oak_loop_free.
 * Unary calls the app still holds stay valid: oak_grpc_reply/_fail on them
 * just release them. NULL is ignored. */
void oak_grpc_server_shutdown(oak_grpc_server_t *s);

/* The following run on the loop thread only. */

/* Sends resp (whose descriptor must be the method's response descriptor)
 * with status OK and releases the call: call is invalid afterwards. Exactly
 * once per call, from the handler or later. Returns -1 if the client had
 * already gone (the call is released all the same). */
int oak_grpc_reply(oak_grpc_call_t *call, const ProtobufCMessage *resp);
/* Finishes the call with a non-OK status and message; releases it as
 * oak_grpc_reply does. */
int oak_grpc_fail(oak_grpc_call_t *call, grpc_status_code status, const char *msg);
/* oak_grpc_fail with err's code mapped by oak_grpc_status_from_oak and its
 * message. */
int oak_grpc_fail_err(oak_grpc_call_t *call, const oak_err_t *err);
/* The client's address ("ipv4:127.0.0.1:4242"), owned by the call. */
const char *oak_grpc_call_peer(const oak_grpc_call_t *call);

/* Queues msg (the method's response type) on the stream. Messages go out in
 * order, one at a time. Returns 0, or -1 once the stream is closed or
 * finished (the close callback, if any, follows). */
int oak_grpc_stream_send(oak_grpc_stream_t *stream, const ProtobufCMessage *msg);
/* Number of queued messages not yet handed to the transport. */
size_t oak_grpc_stream_backlog(const oak_grpc_stream_t *stream);
/* Ends the stream with status (after the queued messages) and releases it:
 * the stream is invalid afterwards and its close callback never runs.
 * Returns -1 if the client had already gone. */
int oak_grpc_stream_finish(oak_grpc_stream_t *stream, grpc_status_code status, const char *msg);
/* cb(stream, data) runs on the loop thread when the stream ends before the
 * app finished it: client cancel or disconnect, deadline, keepalive
 * failure, server shutdown. The stream is released when cb returns; the app
 * must drop its pointer there (calling oak_grpc_stream_finish inside cb is
 * allowed and does nothing). An app that keeps a stream past its handler
 * must register this. */
void oak_grpc_stream_on_close(oak_grpc_stream_t *stream, oak_grpc_close_fn cb, void *data);
/* The client's address, owned by the stream. */
const char *oak_grpc_stream_peer(const oak_grpc_stream_t *stream);

/* ---- client (blocking, thread-safe per channel) ---- */

typedef struct oak_grpc_channel oak_grpc_channel_t;
typedef struct oak_grpc_client_stream oak_grpc_client_stream_t;

/* Insecure channel to target ("host:port"); connects lazily. Keepalive
 * pings detect a dead peer within ~15 s. Never fails. */
oak_grpc_channel_t *oak_grpc_channel_new(const char *target);
/* Frees the channel; every call on it must be finished. NULL is ignored. */
void oak_grpc_channel_free(oak_grpc_channel_t *ch);

/* Calls method with req and waits at most timeout_ms (<= 0: no deadline).
 * On success *resp_out holds a message of resp_desc owned by the caller
 * (protobuf_c_message_free_unpacked(resp, NULL)). Errors: the call's
 * non-OK status mapped by oak_grpc_status_to_oak with its details as
 * message (OAK_E_TIMEOUT for the deadline, OAK_E_UNAVAILABLE when the
 * server cannot be reached); OAK_E_INTERNAL for an unparsable response. */
int oak_grpc_unary(oak_grpc_channel_t *ch, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, long timeout_ms,
                   ProtobufCMessage **resp_out, oak_err_t *err);

/* Opens a server stream: sends req and returns at once (connection errors
 * surface from oak_grpc_stream_read). Release with oak_grpc_stream_close.
 * Errors: OAK_E_INTERNAL if the call cannot be started. */
oak_grpc_client_stream_t *oak_grpc_stream_open(oak_grpc_channel_t *ch, const char *method,
                                               const ProtobufCMessage *req,
                                               const ProtobufCMessageDescriptor *resp_desc,
                                               oak_err_t *err);
/* Waits at most timeout_ms (<= 0: forever) for the next message. Returns 1
 * with *msg owned by the caller, 0 at the end of a stream the server
 * finished with OK, -1 with err on a non-OK final status (mapped as for
 * oak_grpc_unary; the stream is over) or OAK_E_TIMEOUT (the stream stays
 * usable and the next read picks up where this one stopped). One reader
 * thread at a time. */
int oak_grpc_stream_read(oak_grpc_client_stream_t *s, long timeout_ms, ProtobufCMessage **msg,
                         oak_err_t *err);
/* Cancels the stream; a blocked or later read returns -1. Thread-safe, but
 * not concurrently with or after oak_grpc_stream_close. */
void oak_grpc_stream_cancel(oak_grpc_client_stream_t *s);
/* Cancels the stream if still open and frees it. NULL is ignored. */
void oak_grpc_stream_close(oak_grpc_client_stream_t *s);

/* ---- cleanup helpers ---- */

static inline void oak_grpc_channel_freep(oak_grpc_channel_t **p)
{
    oak_grpc_channel_free(*p);
}
static inline void oak_grpc_stream_closep(oak_grpc_client_stream_t **p)
{
    oak_grpc_stream_close(*p);
}
/* For any protobuf-c message pointer variable (RegisterReply *r ...). */
static inline void oak_pb_freep(void *p)
{
    ProtobufCMessage **m = (ProtobufCMessage **)p;
    if (*m)
        protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_grpc_channel_ _cleanup_(oak_grpc_channel_freep)
#define _cleanup_grpc_stream_  _cleanup_(oak_grpc_stream_closep)
#define _cleanup_pb_           _cleanup_(oak_pb_freep)

#endif
