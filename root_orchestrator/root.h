/* The system manager's context: the objects every root module is handed.
 * Owned by main.c; used only on the event loop thread. */
#ifndef ROOT_H
#define ROOT_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/oak_loop.h"
#include "lib/oak_store.h"

typedef struct clusters clusters_t;
typedef struct logreq logreq_t;

typedef struct root {
    oak_loop_t *loop;
    oak_store_t *store;
    const char *state_dir;
    unsigned char jwt_key[32];
    long access_ttl_s;
    long refresh_ttl_s;
    long cluster_stale_s;  /* no report for this long: cluster inactive */
    long cluster_grace_s;  /* inactive for this long: its instances are rescheduled */
    long join_token_ttl_s; /* default lifetime of a cluster join token */
    size_t max_body;
    double started_at; /* wall time of start: clusters get a grace period after it */
    clusters_t *clusters;
    bool sched_dirty; /* capacity or constraints changed: retry pending instances */
    logreq_t *logreqs;    /* logs requests waiting for their cluster (relay.c) */
    uint64_t logreq_next; /* request id counter */
    long logs_timeout_ms; /* a logs request not answered by then gets 504 */
} root_t;

#endif
