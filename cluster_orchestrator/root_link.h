/* The cluster manager's link to the root (system-manager): joins with the
 * configured join token, keeps the Commands stream open and hands each new
 * command to the app on the loop thread, and sends the app's reports
 * (capacity, instance statuses, acknowledgements) in order, queueing them
 * while the root is unreachable. Protocol: docs/cluster-protocol.md; design
 * and threading: docs/cluster-manager.md, "Link to the root". */
#ifndef ROOT_LINK_H
#define ROOT_LINK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/oak_err.h"
#include "lib/oak_loop.h"
#include "lib/oak_store.h"
#include "proto/cluster.pb-c.h"

typedef struct root_link root_link_t;

typedef struct {
    const char *target; /* root gRPC "host:port" */
    const char *join_token;
    const char *cluster_name, *cluster_location; /* location may be NULL */
    int manager_port, network_port;
    long report_interval_ms; /* heartbeat report when idle; <= 0: 5000 */
    long backoff_max_ms;     /* reconnect/retry backoff cap; <= 0: 10000 */
} root_link_opts_t;

typedef struct {
    /* A new command, on the loop thread, in seq order, never one with seq <=
     * the last applied (nor one already delivered on the current command
     * stream). cmd is borrowed for the call. The callee applies it (persists
     * its effect) and then calls root_link_applied(l, cmd->seq), possibly
     * inside the same store transaction. A command not marked applied is
     * delivered again after the next reconnect. */
    void (*on_command)(const Oak__Cluster__V1__Command *cmd, void *ctx);
    /* Connection state (joined + command stream open) changes, on the loop
     * thread. While disconnected it is called again when the kind of failure
     * changes (e.g. root unreachable -> join token refused). detail is a
     * human-readable reason, borrowed. May be NULL. */
    void (*on_state)(bool connected, const char *detail, void *ctx);
    /* Loop thread, right after every (re)connect: the app should queue a
     * full-state report (root_link_report with full_state=true) so the root
     * can reconcile. May be NULL. */
    void (*on_resync)(void *ctx);
    /* Loop thread: the root asks for an instance's logs (kind LOGS: seq 0,
     * request_id, service_id, instance_number, tail). Not sequenced, never
     * resent; the app answers with root_link_logs_result. May be NULL. */
    void (*on_logs)(const Oak__Cluster__V1__Command *cmd, void *ctx);
} root_link_cb_t;

/* Starts the link: loads {cluster_id, applied_seq} from store (collection
 * "meta", document "root_link"), creates the gRPC channel and starts the
 * link's two threads (commands, reports); connecting happens in the
 * background, with exponential backoff (0.5 s -> backoff_max_ms, jittered) while the
 * root is unreachable or refuses the join. Loop thread. o's strings are
 * copied; cb and ctx must outlive the link; store stays the caller's and is
 * used on the loop thread only. Errors: OAK_E_INVALID (missing target,
 * join token or cluster name), store errors from reading the meta document,
 * OAK_E_INTERNAL if a thread cannot be started. On success *out is released
 * with root_link_stop(). */
int root_link_start(oak_loop_t *loop, oak_store_t *store, const root_link_opts_t *o,
                    const root_link_cb_t *cb, void *ctx, root_link_t **out, oak_err_t *err);

/* Loop thread: marks every command up to seq applied (a seq not above the
 * current one is ignored) and persists applied_seq in the store document
 * meta/root_link {cluster_id, session_token, applied_seq} with a plain
 * upsert, so it joins the caller's transaction if one is open. A failing
 * write is logged. The next report acknowledges it. */
void root_link_applied(root_link_t *l, uint64_t seq);

/* Loop thread: the highest applied command sequence. */
uint64_t root_link_applied_seq(const root_link_t *l);

/* Loop thread: queues a report; both JSON arguments are stolen (NULL: none).
 * capacity: an object with the keys of Capacity in cluster.proto
 * (cpu_millis_total, cpu_millis_free, memory_mb_total, memory_mb_free,
 * gpu_total, gpu_free, active_workers, virtualization[], per_arch[{
 * architecture, virtualization[], cpu_millis_total, cpu_millis_free,
 * memory_mb_total, memory_mb_free, gpu_total, gpu_free, workers}],
 * cpu_percent, memory_percent). instances: an array of {service_id,
 * instance_number, status, status_detail, generation, worker_id, host_ip,
 * cpu_percent, memory_mb, timestamp}; a missing timestamp is set to now.
 * Missing keys are zero/empty; a capacity that is not an object or
 * instances that are not an array are dropped with a warning.
 * Reports are delivered in order, each carrying the applied sequence at the
 * time it is sent as ack_seq. Reports queued while one is on its way or the
 * root is unreachable are merged: the newest capacity wins, statuses keep
 * their order, a full-state report replaces the statuses queued before it. */
void root_link_report(root_link_t *l, json_t *capacity, json_t *instances, bool full_state);

/* Loop thread: queues the answer to a LOGS command (stolen): an object
 * {request_id, ok, error?, error_code?, node_id?, logs (UTF-8 string),
 * truncated}. It goes with the next report; a report that cannot be
 * delivered keeps at most the newest MAX_QUEUED_LOGS answers. */
void root_link_logs_result(root_link_t *l, json_t *result);
/* Loop thread: queues the whole worker list (stolen array of {node_id,
 * name, ip, active, architecture, cpu_cores, cpu_percent, memory_mb,
 * memory_free_mb, instances, last_seen}); the next report carries it
 * (newer lists replace older queued ones). */
void root_link_workers(root_link_t *l, json_t *workers);
/* Loop thread: joined and the command stream is open. */
bool root_link_connected(const root_link_t *l);

/* Loop thread: the cluster id the root gave (stored from an earlier run
 * until the first join), "" if the cluster never joined. Borrowed, valid
 * until the next loop iteration. */
const char *root_link_cluster_id(const root_link_t *l);

/* Loop thread: stops the threads (cancels the stream, waits for a Join or
 * Report in flight, at most its 5 s deadline), frees the link. Commands and
 * state changes already posted to the loop are dropped when they run; run
 * the loop once more before oak_loop_free so they are freed. NULL is
 * ignored. */
void root_link_stop(root_link_t *l);

#endif
