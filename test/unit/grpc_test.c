/* oak_grpc: a real server on 127.0.0.1:0 serving the ClusterService methods
 * of proto/cluster.proto from an event loop running in a background thread,
 * and the blocking client talking to it. App state (held streams, counters)
 * lives on the loop thread; the test thread reads counters under fx->mu. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_grpc.h"
#include "lib/oak_loop.h"
#include "proto/cluster.pb-c.h"

#define JOIN     "/oak.cluster.v1.ClusterService/Join"
#define COMMANDS "/oak.cluster.v1.ClusterService/Commands"

typedef Oak__Cluster__V1__RegisterRequest register_req_t;
typedef Oak__Cluster__V1__RegisterReply register_reply_t;
typedef Oak__Cluster__V1__CommandsRequest commands_req_t;
typedef Oak__Cluster__V1__Command command_t;

typedef struct {
    oak_loop_t *loop;
    pthread_t loop_thread;
    oak_grpc_server_t *server;
    oak_grpc_channel_t *ch;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    int join_calls;
    int slow_replies;
    int slow_reply_rc;
    int streams_opened;
    int streams_open; /* held by the app, not yet finished or closed */
    int closes;       /* close callbacks */
    int shutdown_posted;
    int shutdown_done;
    int loop_failures; /* checks that failed on the loop thread */
    char peer[128];
} fixture_t;

typedef struct {
    fixture_t *fx;
    oak_grpc_stream_t *stream;
    uint64_t next_seq;
    uint64_t timer;
} cmd_stream_t;

typedef struct {
    fixture_t *fx;
    oak_grpc_call_t *call;
    char *name;
} slow_join_t;

static void bump(fixture_t *fx, int *counter, int delta)
{
    pthread_mutex_lock(&fx->mu);
    *counter += delta;
    pthread_cond_broadcast(&fx->cv);
    pthread_mutex_unlock(&fx->mu);
}

static int read_counter(fixture_t *fx, const int *counter)
{
    pthread_mutex_lock(&fx->mu);
    int v = *counter;
    pthread_mutex_unlock(&fx->mu);
    return v;
}

/* Waits up to ms for *counter to reach want; returns the final value. */
static int wait_counter(fixture_t *fx, const int *counter, int want, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fx->mu);
    while (*counter < want)
        if (pthread_cond_timedwait(&fx->cv, &fx->mu, &until) != 0)
            break;
    int v = *counter;
    pthread_mutex_unlock(&fx->mu);
    return v;
}

/* ---- server side: runs on the loop thread ---- */

/* cmocka asserts must stay on the test thread: count failures instead. */
#define LOOP_CHECK(fx, cond)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: loop check failed: %s\n", __FILE__, __LINE__, #cond);          \
            bump((fx), &(fx)->loop_failures, 1);                                                   \
        }                                                                                          \
    } while (0)

static void reply_join(fixture_t *fx, oak_grpc_call_t *call, const char *name, int *rc_out)
{
    char *id = xasprintf("c-%s", name);
    register_reply_t rep = OAK__CLUSTER__V1__REGISTER_REPLY__INIT;
    rep.cluster_id = id;
    rep.session_token = "session";
    rep.last_seq = 42;
    int rc = oak_grpc_reply(call, &rep.base);
    if (rc_out)
        *rc_out = rc;
    free(id);
}

static void slow_join_fire(oak_loop_t *loop, void *data)
{
    slow_join_t *sj = data;
    int rc = 0;
    reply_join(sj->fx, sj->call, sj->name, &rc);
    pthread_mutex_lock(&sj->fx->mu);
    sj->fx->slow_reply_rc = rc;
    pthread_mutex_unlock(&sj->fx->mu);
    bump(sj->fx, &sj->fx->slow_replies, 1);
    free(sj->name);
    free(sj);
}

static void on_join(oak_grpc_call_t *call, const ProtobufCMessage *msg, void *ctx)
{
    fixture_t *fx = ctx;
    const register_req_t *req = (const register_req_t *)msg;
    pthread_mutex_lock(&fx->mu);
    snprintf(fx->peer, sizeof(fx->peer), "%s", oak_grpc_call_peer(call));
    pthread_mutex_unlock(&fx->mu);
    bump(fx, &fx->join_calls, 1);
    if (strcmp(req->join_token, "good") != 0) {
        oak_grpc_fail(call, GRPC_STATUS_UNAUTHENTICATED, "bad join token");
        return;
    }
    if (strcmp(req->cluster_name, "slow") == 0) {
        /* answered later from a timer, after the client gave up */
        slow_join_t *sj = xcalloc(1, sizeof(*sj));
        sj->fx = fx;
        sj->call = call;
        sj->name = xstrdup(req->cluster_name);
        oak_loop_add_timer(fx->loop, 1000, slow_join_fire, sj);
        return;
    }
    reply_join(fx, call, req->cluster_name, NULL);
}

static int send_cmd(cmd_stream_t *cs)
{
    command_t cmd = OAK__CLUSTER__V1__COMMAND__INIT;
    cmd.seq = cs->next_seq++;
    cmd.kind = OAK__CLUSTER__V1__COMMAND__KIND__PLACE;
    cmd.service_id = "svc-1";
    cmd.instance_number = (int32_t)cmd.seq;
    cmd.generation = 7;
    return oak_grpc_stream_send(cs->stream, &cmd.base);
}

static void cmd_stream_free(cmd_stream_t *cs)
{
    bump(cs->fx, &cs->fx->streams_open, -1);
    free(cs);
}

static void cmd_stream_later(oak_loop_t *loop, void *data)
{
    cmd_stream_t *cs = data;
    cs->timer = 0;
    LOOP_CHECK(cs->fx, send_cmd(cs) == 0);
    LOOP_CHECK(cs->fx, send_cmd(cs) == 0);
    oak_grpc_stream_finish(cs->stream, GRPC_STATUS_OK, NULL);
    cmd_stream_free(cs);
}

static void cmd_stream_drip(oak_loop_t *loop, void *data)
{
    cmd_stream_t *cs = data;
    cs->timer = 0;
    LOOP_CHECK(cs->fx, send_cmd(cs) == 0);
}

static void cmd_stream_closed(oak_grpc_stream_t *stream, void *data)
{
    cmd_stream_t *cs = data;
    LOOP_CHECK(cs->fx, cs->stream == stream);
    /* finishing from inside the close callback is a harmless no-op */
    LOOP_CHECK(cs->fx, oak_grpc_stream_finish(stream, GRPC_STATUS_OK, NULL) == -1);
    if (cs->timer)
        oak_loop_cancel_timer(cs->fx->loop, cs->timer);
    fixture_t *fx = cs->fx;
    cmd_stream_free(cs);
    bump(fx, &fx->closes, 1);
}

/* cluster_id selects the behaviour: "hold" sends two commands and keeps the
 * stream open, "drip" sends one now and one 300 ms later and keeps it open,
 * "deny" sends one and fails, anything else sends five (three
 * now, two from a timer) and finishes OK. */
static void on_commands(oak_grpc_stream_t *stream, const ProtobufCMessage *msg, void *ctx)
{
    fixture_t *fx = ctx;
    const commands_req_t *req = (const commands_req_t *)msg;
    LOOP_CHECK(fx, strstr(oak_grpc_stream_peer(stream), "127.0.0.1") != NULL);
    cmd_stream_t *cs = xcalloc(1, sizeof(*cs));
    cs->fx = fx;
    cs->stream = stream;
    cs->next_seq = req->after_seq + 1;
    bump(fx, &fx->streams_opened, 1);
    bump(fx, &fx->streams_open, 1);
    oak_grpc_stream_on_close(stream, cmd_stream_closed, cs);
    if (strcmp(req->cluster_id, "hold") == 0) {
        send_cmd(cs);
        send_cmd(cs);
    } else if (strcmp(req->cluster_id, "drip") == 0) {
        send_cmd(cs);
        cs->timer = oak_loop_add_timer(fx->loop, 300, cmd_stream_drip, cs);
    } else if (strcmp(req->cluster_id, "deny") == 0) {
        send_cmd(cs);
        oak_grpc_stream_finish(stream, GRPC_STATUS_PERMISSION_DENIED, "cluster disabled");
        cmd_stream_free(cs);
    } else {
        for (int i = 0; i < 3; i++)
            LOOP_CHECK(fx, send_cmd(cs) == 0);
        cs->timer = oak_loop_add_timer(fx->loop, 20, cmd_stream_later, cs);
    }
}

/* ---- fixture ---- */

static void *loop_main(void *arg)
{
    fixture_t *fx = arg;
    oak_loop_run(fx->loop);
    return NULL;
}

static void stop_cb(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

static int setup(void **state)
{
    fixture_t *fx = xcalloc(1, sizeof(*fx));
    oak_err_t err = OAK_ERR_INIT;
    pthread_mutex_init(&fx->mu, NULL);
    pthread_cond_init(&fx->cv, NULL);
    fx->loop = oak_loop_new();
    fx->server = oak_grpc_server_new(fx->loop, "127.0.0.1:0", &err);
    assert_non_null(fx->server);
    assert_true(oak_grpc_server_port(fx->server) > 0);
    assert_int_equal(
        oak_grpc_server_add_unary(fx->server, JOIN, &oak__cluster__v1__register_request__descriptor,
                                  &oak__cluster__v1__register_reply__descriptor, on_join, fx, &err),
        0);
    assert_int_equal(oak_grpc_server_add_stream(
                         fx->server, COMMANDS, &oak__cluster__v1__commands_request__descriptor,
                         &oak__cluster__v1__command__descriptor, on_commands, fx, &err),
                     0);
    assert_int_equal(
        oak_grpc_server_add_unary(fx->server, JOIN, &oak__cluster__v1__register_request__descriptor,
                                  &oak__cluster__v1__register_reply__descriptor, on_join, fx, &err),
        -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);
    oak_grpc_server_start(fx->server);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", oak_grpc_server_port(fx->server));
    fx->ch = oak_grpc_channel_new(target);
    assert_int_equal(pthread_create(&fx->loop_thread, NULL, loop_main, fx), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    oak_grpc_channel_free(fx->ch);
    if (read_counter(fx, &fx->shutdown_posted))
        wait_counter(fx, &fx->shutdown_done, 1, 60000); /* a failed test left it running */
    else
        oak_grpc_server_shutdown(fx->server); /* from the test thread, loop running */
    /* FIFO: close callbacks posted during shutdown run before the stop */
    oak_loop_post(fx->loop, stop_cb, NULL);
    pthread_join(fx->loop_thread, NULL);
    assert_int_equal(fx->streams_open, 0);
    assert_int_equal(fx->loop_failures, 0);
    oak_loop_free(fx->loop);
    pthread_cond_destroy(&fx->cv);
    pthread_mutex_destroy(&fx->mu);
    free(fx);
    return 0;
}

/* ---- client helpers ---- */

static int join(fixture_t *fx, const char *token, const char *name, long timeout_ms,
                register_reply_t **out, oak_err_t *err)
{
    register_req_t req = OAK__CLUSTER__V1__REGISTER_REQUEST__INIT;
    req.join_token = (char *)token;
    req.cluster_name = (char *)name;
    return oak_grpc_unary(fx->ch, JOIN, &req.base, &oak__cluster__v1__register_reply__descriptor,
                          timeout_ms, (ProtobufCMessage **)out, err);
}

static oak_grpc_client_stream_t *open_commands(fixture_t *fx, const char *cluster_id,
                                               uint64_t after_seq)
{
    oak_err_t err = OAK_ERR_INIT;
    commands_req_t req = OAK__CLUSTER__V1__COMMANDS_REQUEST__INIT;
    req.cluster_id = (char *)cluster_id;
    req.session_token = "session";
    req.after_seq = after_seq;
    oak_grpc_client_stream_t *s = oak_grpc_stream_open(
        fx->ch, COMMANDS, &req.base, &oak__cluster__v1__command__descriptor, &err);
    assert_non_null(s);
    return s;
}

/* Reads one command and checks its sequence number. */
static void expect_cmd(oak_grpc_client_stream_t *s, uint64_t seq)
{
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_pb_ command_t *cmd = NULL;
    assert_int_equal(oak_grpc_stream_read(s, 5000, (ProtobufCMessage **)&cmd, &err), 1);
    assert_int_equal(cmd->seq, seq);
    assert_string_equal(cmd->service_id, "svc-1");
}

static uint64_t now_ms(void)
{
    return oak_now_ms();
}

/* ---- tests ---- */

static void test_status_mapping(void **state)
{
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_UNAVAILABLE), OAK_E_UNAVAILABLE);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_DEADLINE_EXCEEDED), OAK_E_TIMEOUT);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_UNAUTHENTICATED), OAK_E_UNAUTH);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_PERMISSION_DENIED), OAK_E_FORBIDDEN);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_NOT_FOUND), OAK_E_NOT_FOUND);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_INVALID_ARGUMENT), OAK_E_INVALID);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_ALREADY_EXISTS), OAK_E_CONFLICT);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_ABORTED), OAK_E_CONFLICT);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_UNKNOWN), OAK_E_INTERNAL);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_DATA_LOSS), OAK_E_INTERNAL);
    assert_int_equal(oak_grpc_status_to_oak(GRPC_STATUS_OK), OAK_E_OK);
    for (oak_code_t c = OAK_E_OK; c <= OAK_E_NOT_IMPLEMENTED; c++) {
        if (c == OAK_E_IO)
            assert_int_equal(oak_grpc_status_from_oak(c), GRPC_STATUS_INTERNAL);
        else
            assert_int_equal(oak_grpc_status_to_oak(oak_grpc_status_from_oak(c)), c);
    }
}

static void test_join(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_pb_ register_reply_t *rep = NULL;
    assert_int_equal(join(fx, "good", "edge1", 5000, &rep, &err), 0);
    assert_string_equal(rep->cluster_id, "c-edge1");
    assert_string_equal(rep->session_token, "session");
    assert_int_equal(rep->last_seq, 42);
    pthread_mutex_lock(&fx->mu);
    assert_non_null(strstr(fx->peer, "127.0.0.1:"));
    pthread_mutex_unlock(&fx->mu);

    register_reply_t *bad = NULL;
    assert_int_equal(join(fx, "evil", "edge1", 5000, &bad, &err), -1);
    assert_null(bad);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    assert_string_equal(err.msg, "bad join token");
    assert_int_equal(read_counter(fx, &fx->join_calls), 2);
}

static void test_unary_1000(void **state)
{
    fixture_t *fx = *state;
    for (int i = 0; i < 1000; i++) {
        oak_err_t err = OAK_ERR_INIT;
        char name[32];
        snprintf(name, sizeof(name), "n%d", i);
        _cleanup_pb_ register_reply_t *rep = NULL;
        assert_int_equal(join(fx, "good", name, 5000, &rep, &err), 0);
        assert_int_equal(strncmp(rep->cluster_id, "c-", 2), 0);
        assert_string_equal(rep->cluster_id + 2, name);
    }
    assert_int_equal(read_counter(fx, &fx->join_calls), 1000);
}

static void *unary_worker(void *arg)
{
    fixture_t *fx = arg;
    long ok = 0;
    for (int i = 0; i < 100; i++) {
        oak_err_t err = OAK_ERR_INIT;
        _cleanup_pb_ register_reply_t *rep = NULL;
        if (join(fx, "good", "par", 5000, &rep, &err) == 0 && strcmp(rep->cluster_id, "c-par") == 0)
            ok++;
    }
    return (void *)ok;
}

static void test_unary_parallel(void **state)
{
    fixture_t *fx = *state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, unary_worker, fx), 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        assert_int_equal((long)ok, 100);
    }
}

static void test_unary_timeout_then_late_reply(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_pb_ register_reply_t *warm = NULL;
    assert_int_equal(join(fx, "good", "warm-up", 5000, &warm, &err), 0); /* connect first */
    register_reply_t *rep = NULL;
    uint64_t t0 = now_ms();
    assert_int_equal(join(fx, "good", "slow", 500, &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_TIMEOUT);
    assert_true(now_ms() - t0 < 3000);
    assert_int_equal(read_counter(fx, &fx->join_calls), 2);
    /* the handler replies after the deadline: a no-op that frees the call */
    assert_int_equal(wait_counter(fx, &fx->slow_replies, 1, 5000), 1);
    assert_int_equal(read_counter(fx, &fx->slow_reply_rc), -1);
}

static void test_unknown_method(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    register_req_t req = OAK__CLUSTER__V1__REGISTER_REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    assert_int_equal(oak_grpc_unary(fx->ch, "/oak.cluster.v1.ClusterService/Nope", &req.base,
                                    &oak__cluster__v1__register_reply__descriptor, 5000, &rep,
                                    &err),
                     -1);
    assert_null(rep);
    assert_int_equal(err.code, OAK_E_NOT_IMPLEMENTED);
    assert_int_equal(oak_grpc_unary(fx->ch, "/other.Service/Join", &req.base,
                                    &oak__cluster__v1__register_reply__descriptor, 5000, &rep,
                                    &err),
                     -1);
    assert_int_equal(err.code, OAK_E_NOT_IMPLEMENTED);
    assert_int_equal(read_counter(fx, &fx->join_calls), 0);
}

static void test_too_large(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    size_t n = 5u * 1024 * 1024;
    char *big = xmalloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    register_reply_t *rep = NULL;
    assert_int_equal(join(fx, big, "edge1", 10000, &rep, &err), -1);
    free(big);
    assert_null(rep);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    assert_int_equal(read_counter(fx, &fx->join_calls), 0);
    /* the server is still fine */
    _cleanup_pb_ register_reply_t *ok = NULL;
    assert_int_equal(join(fx, "good", "after", 5000, &ok, &err), 0);
}

static void test_stream_in_order(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_grpc_stream_ oak_grpc_client_stream_t *s = open_commands(fx, "edge1", 10);
    for (uint64_t seq = 11; seq <= 15; seq++)
        expect_cmd(s, seq);
    ProtobufCMessage *m = NULL;
    assert_int_equal(oak_grpc_stream_read(s, 5000, &m, &err), 0);
    assert_null(m);
    assert_int_equal(oak_grpc_stream_read(s, 5000, &m, &err), 0); /* stays at the end */
    assert_int_equal(wait_counter(fx, &fx->streams_opened, 1, 1000), 1);
    assert_int_equal(read_counter(fx, &fx->closes), 0);
}

static void test_stream_many(void **state)
{
    fixture_t *fx = *state;
    for (int i = 0; i < 50; i++) {
        oak_err_t err = OAK_ERR_INIT;
        _cleanup_grpc_stream_ oak_grpc_client_stream_t *s = open_commands(fx, "edge1", 100);
        for (uint64_t seq = 101; seq <= 105; seq++)
            expect_cmd(s, seq);
        ProtobufCMessage *m = NULL;
        assert_int_equal(oak_grpc_stream_read(s, 5000, &m, &err), 0);
    }
}

static void test_stream_error_status(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_grpc_stream_ oak_grpc_client_stream_t *s = open_commands(fx, "deny", 0);
    expect_cmd(s, 1);
    ProtobufCMessage *m = NULL;
    assert_int_equal(oak_grpc_stream_read(s, 5000, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_FORBIDDEN);
    assert_string_equal(err.msg, "cluster disabled");
}

static void test_stream_read_timeout(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    oak_grpc_client_stream_t *s = open_commands(fx, "drip", 0);
    expect_cmd(s, 1);
    ProtobufCMessage *m = NULL;
    uint64_t t0 = now_ms();
    assert_int_equal(oak_grpc_stream_read(s, 100, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_TIMEOUT);
    assert_true(now_ms() - t0 >= 90);
    assert_null(m);
    /* the next read picks up the receive the timed-out one started */
    expect_cmd(s, 2);
    assert_int_equal(oak_grpc_stream_read(s, 50, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_TIMEOUT);
    oak_grpc_stream_close(s); /* cancels: the server hears about it */
    assert_int_equal(wait_counter(fx, &fx->closes, 1, 5000), 1);
}

static void *cancel_later(void *arg)
{
    usleep(100 * 1000);
    oak_grpc_stream_cancel(arg);
    return NULL;
}

static void test_client_cancel(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    oak_grpc_client_stream_t *s = open_commands(fx, "hold", 5);
    expect_cmd(s, 6);
    expect_cmd(s, 7);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, s), 0);
    ProtobufCMessage *m = NULL;
    uint64_t t0 = now_ms();
    assert_int_equal(oak_grpc_stream_read(s, 10000, &m, &err), -1); /* unblocked by the cancel */
    assert_true(now_ms() - t0 < 5000);
    assert_null(m);
    pthread_join(t, NULL);
    oak_grpc_stream_close(s);
    assert_int_equal(wait_counter(fx, &fx->closes, 1, 5000), 1);
    assert_int_equal(read_counter(fx, &fx->streams_open), 0);
}

static void shutdown_on_loop(oak_loop_t *loop, void *data)
{
    fixture_t *fx = data;
    oak_grpc_server_shutdown(fx->server);
    fx->server = NULL;
    bump(fx, &fx->shutdown_done, 1);
}

static void test_server_shutdown_with_open_streams(void **state)
{
    fixture_t *fx = *state;
    oak_err_t err = OAK_ERR_INIT;
    oak_grpc_client_stream_t *s1 = open_commands(fx, "hold", 0);
    oak_grpc_client_stream_t *s2 = open_commands(fx, "hold", 100);
    expect_cmd(s1, 1);
    expect_cmd(s1, 2);
    expect_cmd(s2, 101);
    assert_int_equal(wait_counter(fx, &fx->streams_opened, 2, 5000), 2);
    /* as a daemon does it: from a loop callback (e.g. SIGTERM) */
    bump(fx, &fx->shutdown_posted, 1);
    oak_loop_post(fx->loop, shutdown_on_loop, fx);
    uint64_t t0 = now_ms();
    ProtobufCMessage *m = NULL;
    assert_int_equal(oak_grpc_stream_read(s1, 10000, &m, &err), -1);
    assert_null(m);
    assert_true(now_ms() - t0 < 5000);
    assert_int_equal(wait_counter(fx, &fx->shutdown_done, 1, 10000), 1);
    /* every stream the app held got its close callback */
    assert_int_equal(wait_counter(fx, &fx->closes, 2, 5000), 2);
    assert_int_equal(read_counter(fx, &fx->streams_open), 0);
    oak_grpc_stream_close(s1);
    oak_grpc_stream_close(s2);

    /* the server is gone: new calls fail fast */
    register_reply_t *rep = NULL;
    assert_int_equal(join(fx, "good", "x", 5000, &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
}

static void test_unreachable(void **state)
{
    /* a port that was just free */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", ntohs(sa.sin_port));
    _cleanup_grpc_channel_ oak_grpc_channel_t *ch = oak_grpc_channel_new(target);
    oak_err_t err = OAK_ERR_INIT;
    register_req_t req = OAK__CLUSTER__V1__REGISTER_REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    assert_int_equal(oak_grpc_unary(ch, JOIN, &req.base,
                                    &oak__cluster__v1__register_reply__descriptor, 5000, &rep,
                                    &err),
                     -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);

    _cleanup_grpc_stream_ oak_grpc_client_stream_t *s =
        oak_grpc_stream_open(ch, COMMANDS, &req.base, &oak__cluster__v1__command__descriptor, &err);
    assert_non_null(s);
    assert_int_equal(oak_grpc_stream_read(s, 5000, &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
}

static void test_port_in_use(void **state)
{
    fixture_t *fx = *state;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", oak_grpc_server_port(fx->server));
    oak_err_t err = OAK_ERR_INIT;
    assert_null(oak_grpc_server_new(fx->loop, addr, &err));
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
    /* a server that never started shuts down cleanly */
    oak_grpc_server_t *idle = oak_grpc_server_new(fx->loop, "127.0.0.1:0", &err);
    assert_non_null(idle);
    oak_grpc_server_shutdown(idle);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test_setup_teardown(test_join, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_1000, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_timeout_then_late_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_error_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_read_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_shutdown_with_open_streams, setup, teardown),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
