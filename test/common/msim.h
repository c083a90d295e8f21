/* Worker simulator: thousands of simulated workers in one process, speaking
 * the real cluster <-> worker protocol (docs/worker-protocol.md). Each
 * worker registers over HTTP (a few blocking registration threads, one
 * keep-alive libcurl handle each), then keeps one MQTT 3.1.1 connection on
 * the caller's event loop (non-blocking sockets, framing done here):
 * CONNECT with its credentials and last will, SUBSCRIBE to its control
 * topics, then status online, full information and state; every info
 * period an information report of the changed keys; job CREATED/RUNNING
 * for a deploy and UNDEPLOYED for a delete; PINGREQ at keepalive;
 * reconnects with backoff. Payloads are built and parsed with
 * cluster_orchestrator/worker_proto.
 *
 * Threading: every msim_* call and all worker state belong to the loop
 * thread; the registration threads only fill a worker's credentials before
 * handing it to the loop with oak_loop_post. */
#ifndef TEST_MSIM_H
#define TEST_MSIM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/oak_err.h"
#include "lib/oak_loop.h"

typedef struct msim msim_t;

typedef struct {
    const char *cluster_url;  /* "http://127.0.0.1:10100"; NULL with broker_admin_user */
    const char *token;        /* worker join token (Authorization: Bearer) */
    const char *mqtt_host;    /* broker address (IPv4 literal), default "127.0.0.1" */
    int mqtt_port;            /* 0: MQTT_BROKER_PORT of the registration answer */
    int workers;              /* number of simulated workers (1..100000) */
    const char *prefix;       /* host names "<prefix>-<n>", default "sim" */
    int cores;                /* cpu_cores of every worker, default 4 */
    long long memory_mb;      /* memory (available MB), default 8192 */
    int info_period_ms;       /* information report period, default 2000 */
    int register_concurrency; /* registration threads, default 16 */
    int connect_concurrency;  /* MQTT connects in progress at once, default 64 */
    /* Without a cluster: create each worker's broker client directly with
     * these admin credentials (cluster_orchestrator/broker.h); the node id
     * is then the host name "<prefix>-<n>" and keepalive is keepalive_s. */
    const char *broker_admin_user;
    const char *broker_admin_password;
    int keepalive_s; /* only without a cluster; default 2 */
    /* Without a cluster or credentials: a broker that lets anyone in (for
     * load tests of the simulator itself); node ids as above. */
    bool open_broker;
    int kill_after_ms; /* > 0: after this long, kill_count workers drop dead */
    int kill_count;
    unsigned seed; /* random seed (0: time based) */
} msim_opts_t;

typedef struct {
    int workers;           /* simulated */
    int registered;        /* registration answered 200 (or broker client made) */
    int register_failed;   /* gave up registering */
    bool register_done;    /* every registration finished (ok or failed) */
    uint64_t register_ms;  /* from msim_start until register_done */
    int connected;         /* MQTT session up (CONNACK and SUBACK) */
    int dead;              /* killed by kill_after_ms, not reconnecting */
    int running;           /* instances running across all workers */
    uint64_t msgs_in;      /* PUBLISHes received */
    uint64_t msgs_out;     /* PUBLISHes sent */
    uint64_t acks_in;      /* PUBACKs received */
    uint64_t reconnects;   /* connection losses and failed attempts */
    uint64_t refused;      /* CONNACK or SUBACK refusals */
    uint64_t bad_commands; /* control messages that failed to parse */
} msim_stats_t;

/* Creates the simulator on loop (borrowed; options copied). Raises
 * RLIMIT_NOFILE to fit the workers. Errors: OAK_E_INVALID for bad options,
 * OAK_E_UNAVAILABLE when the broker admin cannot connect. */
int msim_new(oak_loop_t *loop, const msim_opts_t *o, msim_t **out, oak_err_t *err);

/* Starts registering (in background threads) and connecting (on the loop,
 * as registrations complete). Returns at once. */
void msim_start(msim_t *s);

/* Current counters. */
void msim_stats(const msim_t *s, msim_stats_t *out);

/* Node id of worker i (0-based), or NULL while it is not registered.
 * Borrowed, valid until msim_free. */
const char *msim_node_id(const msim_t *s, int i);

/* Graceful stop: stops registering, publishes {"status":"offline"} and
 * DISCONNECTs every connected worker, then calls done(ctx) on the loop
 * once the packets are flushed (at most ~2 s). Connections are closed. */
void msim_shutdown(msim_t *s, void (*done)(void *ctx), void *ctx);

/* Joins the registration threads, closes every connection (without
 * DISCONNECT: the broker publishes the wills) and frees. NULL is ignored. */
void msim_free(msim_t *s);

/* Test helper: runs the worker_sim tool (<OAK_BUILD_DIR>/test/tools/
 * worker_sim) with args (NULL-terminated, without argv[0]), its stdout and
 * stderr appended to log_path; it gets SIGTERM if the caller dies. Returns
 * its pid, or -1 with a message on stderr. */
pid_t msim_spawn(const char *log_path, const char *const *args);

/* Test helper: the last "worker_sim t=..." status line of the log at
 * log_path parsed into *out (connected, registered, running, ... ; fields
 * missing from the line stay 0). Returns 0, or -1 when there is none. */
int msim_log_stats(const char *log_path, msim_stats_t *out);

#endif
