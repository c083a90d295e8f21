/* The clusters known to the root: registration with join tokens, sessions,
 * reported capacity, reservations for placements not yet acknowledged,
 * liveness, and the per-cluster command queue that is streamed to each
 * cluster (persisted in collection "commands" before it is sent).
 * Loop thread only. */
#ifndef CLUSTERS_H
#define CLUSTERS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/oak_err.h"
#include "root_orchestrator/root.h"

typedef struct oak_grpc_stream oak_grpc_stream_t;

typedef struct {
    char *arch;
    char **virt;
    size_t nvirt;
    int64_t cpu_free, mem_free;
    int gpu_free;
    int workers;
} arch_cap_t;

typedef enum { CMD_PLACE = 0, CMD_REMOVE = 1 } cmd_kind_t;

typedef struct cmd {
    uint64_t seq;
    cmd_kind_t kind;
    char *service_id;
    int instance_number;
    uint64_t generation;
    char *service_json;
    int64_t cpu, mem;
    int gpu;
    bool sent; /* sent on the current stream */
    struct cmd *next;
} cmd_t;

typedef struct cluster {
    char id[25];
    char *name, *location, *ip;
    int manager_port, network_port;
    char session_hash[65];
    uint64_t last_seq;
    /* capacity as last reported */
    int64_t cpu_total, cpu_free, mem_total, mem_free;
    int gpu_total, gpu_free, active_workers;
    char **virt;
    size_t nvirt;
    arch_cap_t *arch;
    size_t narch;
    double cpu_percent, memory_percent;
    /* reserved by placements the cluster has not acknowledged yet */
    int64_t res_cpu, res_mem;
    int res_gpu;
    double last_seen; /* wall time of the last report or stream activity */
    bool reported;
    bool lost; /* inactive past the grace period: its instances were moved */
    oak_grpc_stream_t *stream;
    cmd_t *cmds, *cmds_tail; /* unacknowledged commands in seq order */
    json_t *workers;         /* last worker list the cluster reported (relay.c), or NULL */
} cluster_t;

struct clusters {
    cluster_t **v;
    size_t n, cap;
};

/* Loads clusters and their pending commands from the store. */
int clusters_load(root_t *r, oak_err_t *err);
void clusters_free(clusters_t *cs);
cluster_t *clusters_by_id(clusters_t *cs, const char *id);
cluster_t *clusters_by_name(clusters_t *cs, const char *name);
/* Active: reported within cluster_stale_s or holds an open command stream. */
bool cluster_active(const root_t *r, const cluster_t *c);
/* Free capacity minus reservations. */
int64_t cluster_free_cpu(const cluster_t *c);
int64_t cluster_free_mem(const cluster_t *c);
int cluster_free_gpu(const cluster_t *c);
bool cluster_supports(const cluster_t *c, const char *virt, const char *arch);

/* Issues a join token (stored hashed). *token_out owned. */
int clusters_issue_token(root_t *r, const char *cluster_name, long ttl_s, const char *by,
                         char **token_out, double *expires_out, oak_err_t *err);
/* Registers (or re-registers, keeping the id) a cluster presenting a join
 * token. Returns the cluster and a fresh session token (owned). */
int clusters_join(root_t *r, const char *token, const char *name, const char *location,
                  const char *ip, int manager_port, int network_port, cluster_t **out,
                  char **session_out, oak_err_t *err);
/* Checks a session token; OAK_E_UNAUTH when wrong. */
int clusters_auth(root_t *r, const char *cluster_id, const char *session, cluster_t **out,
                  oak_err_t *err);

/* Stores a command inside the caller's store transaction and returns it
 * (not yet visible in memory). After commit call clusters_cmd_commit, after
 * rollback clusters_cmd_abort. */
int clusters_cmd_prepare(root_t *r, cluster_t *c, cmd_kind_t kind, const char *service_id,
                         int instance_number, uint64_t generation, const char *service_json,
                         int64_t cpu, int64_t mem, int gpu, cmd_t **out, oak_err_t *err);
void clusters_cmd_commit(root_t *r, cluster_t *c, cmd_t *cmd);
void clusters_cmd_abort(root_t *r, cluster_t *c, cmd_t *cmd);
/* Drops acknowledged commands (store and memory) and their reservations. */
int clusters_ack(root_t *r, cluster_t *c, uint64_t ack_seq, oak_err_t *err);
/* Attaches a command stream and sends every command after after_seq. */
void clusters_attach_stream(root_t *r, cluster_t *c, oak_grpc_stream_t *s, uint64_t after_seq);
void clusters_detach_stream(root_t *r, cluster_t *c, oak_grpc_stream_t *s);
/* Sends unsent commands on the cluster's stream, if one is attached. */
void clusters_flush(root_t *r, cluster_t *c);
/* Applies a capacity report (protobuf-free representation in JSON). */
void clusters_set_capacity(root_t *r, cluster_t *c, const json_t *cap);
/* Persists the cluster document (capacity, last_seq...). */
int clusters_save(root_t *r, cluster_t *c, oak_err_t *err);
/* JSON view for the REST API (Oakestra's alias keys included). */
json_t *cluster_to_json(const root_t *r, const cluster_t *c);

#endif
