/* The worker's link to its cluster (docs/worker-protocol.md): registration
 * over HTTP (retried with backoff while the cluster is unreachable; a 401
 * is fatal), the node file <state_dir>/node.json (id and MQTT credentials,
 * mode 0600; the id is reused on every later registration so the cluster
 * keeps it), and the MQTT session with its last will: after each connect
 * it publishes status online, the full node information and the state of
 * every instance; then information changes (> 5 %, or every
 * info_period_s), resource usage every usage_period_s, every instance
 * status change, and a status heartbeat whenever nothing else was sent for
 * heartbeat_s (the cluster counts a silent worker as dead). Control
 * messages are parsed with worker_proto and handed to ninst. A broker that
 * refuses the credentials makes the agent register again.
 *
 * Runs on the loop thread; registration runs on its own thread and posts
 * its result. */
#ifndef AGENT_H
#define AGENT_H

#include <jansson.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_err.h"
#include "lib/oak_loop.h"
#include "node_engine/ninst.h"

typedef struct agent agent_t;

typedef struct {
    const char *cluster_address; /* host name or address of the cluster manager */
    int cluster_port;            /* its registration port */
    const char *worker_token;    /* the worker join token */
    const char *state_dir;       /* node.json lives here; its filesystem is reported */
    const char *node_name;       /* "host" of the registration */
    const char *node_ip;         /* NULL or "": the address used to reach the cluster */
    int node_port;               /* "port" of the registration */
    const char *runc_path;       /* to tell whether containers are supported */
    int info_period_s;           /* information at least this often when values change */
    int usage_period_s;          /* resources report period */
    int heartbeat_s;             /* longest silence on MQTT */
    int max_cpu_cores;           /* report at most this many cores (0: all) */
    long long max_memory_mb;     /* report at most this much memory (0: all) */
} agent_opts_t;

/* Called once, on the loop thread, when the agent cannot go on (the
 * cluster refused the worker token or the node description); msg says
 * why. */
typedef void (*agent_fatal_fn)(const char *msg, void *ctx);

/* Starts registering (in the background) and, once registered, the MQTT
 * session. Options are copied; ni is borrowed and must outlive the agent.
 * Errors: OAK_E_INVALID for missing options. */
int agent_start(oak_loop_t *loop, const agent_opts_t *o, ninst_t *ni, agent_fatal_fn fatal,
                void *ctx, agent_t **out, oak_err_t *err);

/* Publishes an instance status change on nodes/<id>/job (buffered while
 * the broker is unreachable; dropped, with a log line, before the first
 * registration: the state report after connecting carries it). */
void agent_report(agent_t *a, const wp_job_t *job);

/* Publishes {"status":"offline"} (used before a drained exit, since a
 * clean disconnect does not fire the last will). */
void agent_say_offline(agent_t *a);

/* The node id, or NULL before the first registration (from node.json when
 * one was stored). */
const char *agent_node_id(const agent_t *a);

/* Stops the registration thread and the MQTT session (clean disconnect:
 * the will is not published). Afterwards the loop may run posted work
 * safely; then call agent_free. */
void agent_stop(agent_t *a);
/* Frees the agent (after agent_stop). NULL is ignored. */
void agent_free(agent_t *a);

#endif
