/* The cluster's worker table: every worker (node engine) registered with
 * this cluster manager, its capacity as last reported over MQTT, the
 * reservations of the instances placed on it, liveness, and persistence in
 * the store (collection "workers", one document per worker, _id = id).
 * Lookup by id and by host name is O(1) (hash maps). Loop thread only. */
#ifndef WORKERS_H
#define WORKERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"
#include "lib/oak_store.h"

typedef struct worker {
    char id[25];
    char *host, *ip, *arch; /* never NULL ("" when unknown); arch: amd64, arm64, ... */
    char **virt;            /* normalised ("docker" -> "container"), deduplicated */
    size_t nvirt;
    int64_t cpu_total;    /* millicores (cores * 1000) */
    int64_t cpu_free;     /* millicores free as last reported: cpu_total*(100-cpu_percent)/100 */
    double cpu_percent;   /* as last reported, 0..100 */
    int64_t mem_total;    /* MB */
    int64_t mem_free;     /* MB available as last reported */
    bool mem_total_known; /* memory_total was reported (else mem_total follows mem_free) */
    int gpu_total, gpu_free;
    int64_t res_cpu, res_mem; /* reserved by instances placed on this worker */
    int res_gpu;
    /* part of res_cpu / res_mem reserved since the last cpu_percent / memory
     * report, i.e. not yet visible in cpu_free / mem_free */
    int64_t res_cpu_new, res_mem_new;
    bool online;
    /* loaded from the store and not heard from since this manager started:
     * its instances are moved if it stays silent for worker_dead_s */
    bool unconfirmed;
    double last_seen;         /* wall time */
    char *mqtt_password_hash; /* opaque here: kept and persisted; NULL when none */
    /* internal to workers.c */
    size_t slot_;
    struct worker *host_next_;
} worker_t;

typedef struct workers workers_t;

/* An empty table, owned by the caller (workers_free). */
workers_t *workers_new(void);
/* Frees the table and every worker in it. NULL is a no-op. */
void workers_free(workers_t *ws);
size_t workers_count(const workers_t *ws);
/* The i-th worker, i < workers_count(), for iteration; NULL past the end.
 * The order is unspecified and changes when a worker is removed. */
worker_t *workers_at(const workers_t *ws, size_t i);
/* Worker by id, or NULL. The pointer stays valid until the worker is
 * removed. */
worker_t *workers_get(const workers_t *ws, const char *id);
/* Worker by host name, or NULL. When several workers share a host name
 * (a stale offline entry and a new one), an online one is preferred, then
 * the most recently added or renamed. "" and NULL never match. */
worker_t *workers_by_host(const workers_t *ws, const char *host);
/* Adds a worker, offline and with no capacity, under id_or_null (1..24
 * bytes) or a fresh store id when NULL or "". host may be NULL (""). Returns
 * the worker (owned by the table), or NULL when the id is invalid or already
 * in the table. */
worker_t *workers_add(workers_t *ws, const char *id_or_null, const char *host);
/* Changes a worker's host name, keeping the host index consistent. */
void workers_set_host(workers_t *ws, worker_t *w, const char *host);
/* Removes and frees the worker with that id; unknown ids are ignored. */
void workers_remove(workers_t *ws, const char *id);

/* Applies a (partial) information or registration payload
 * (docs/worker-protocol.md): cpu_cores (alias vcpus), cpu_percent, memory
 * (available MB), memory_total, gpus (alias vgpus), architecture,
 * virtualization, ip. Missing keys leave values unchanged; keys with a wrong
 * type, an out-of-range or non-finite value, or an empty string are
 * ignored. When memory_total was never reported, mem_total follows the
 * largest of itself and memory. Returns true if scheduling-relevant capacity
 * (cpu, memory, gpu, architecture, virtualization) changed. */
bool worker_apply_info(worker_t *w, const json_t *info);
/* Reserves (sign > 0) or releases (sign < 0) resources of an instance
 * placed on w (negative amounts count as 0). Reservations never go below 0.
 * A reservation also counts as "new" until the worker next reports its
 * usage (cpu_percent, memory). */
void worker_reserve(worker_t *w, int64_t cpu, int64_t mem, int gpu, int sign);
/* Free capacity usable for a new placement: the smaller of (a) what the
 * worker last reported free minus the reservations made since that report
 * and (b) its total minus all reservations. Reported usage already includes
 * the instances running at the time, so older reservations are not
 * subtracted from it again; (b) keeps the sum of reservations within the
 * worker's totals whatever the reports say. Never negative. */
int64_t worker_free_cpu(const worker_t *w);
int64_t worker_free_mem(const worker_t *w);
int worker_free_gpu(const worker_t *w);
/* Normalises a virtualization name: NULL, "" and "docker" are "container". */
const char *worker_norm_virt(const char *virt);
/* True if w offers virtualization virt (normalised). */
bool worker_has_virt(const worker_t *w, const char *virt);

/* Loads every document of collection "workers" into ws as offline workers
 * (reservations are not persisted: the owner of the instances re-applies
 * them). Documents with a bad id or an id already in ws are skipped.
 * Errors: those of oak_store_find. */
int workers_load(workers_t *ws, oak_store_t *st, oak_err_t *err);
/* Upserts w's document. Errors: those of oak_store_upsert. */
int workers_save(oak_store_t *st, const worker_t *w, oak_err_t *err);
/* Deletes a worker's document; a missing document is not an error. */
int workers_delete(oak_store_t *st, const char *id, oak_err_t *err);

/* Aggregated capacity of the ONLINE workers for the root, a new JSON object
 * with the keys of Capacity in proto/cluster.proto: cpu_millis_total,
 * cpu_millis_free, memory_mb_total, memory_mb_free, gpu_total, gpu_free,
 * active_workers, virtualization[] (deduplicated), per_arch[{architecture,
 * virtualization[], cpu_millis_total, cpu_millis_free, memory_mb_total,
 * memory_mb_free, gpu_total, gpu_free, workers, max_worker_cpu_free,
 * max_worker_mem_free}], cpu_percent and memory_percent (averages over the
 * online workers, finite), plus max_worker_cpu_free, max_worker_mem_free and
 * max_worker_gpu_free (the largest single worker's free capacity, so the
 * root can avoid sending an instance that no single worker can hold).
 * "free" values are those of worker_free_*(), i.e. net of reservations. */
json_t *workers_capacity(const workers_t *ws);

#endif
