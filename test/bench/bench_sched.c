/* Benchmark: root scheduling decision time with N registered clusters
 * (default 1,000), in process. Measures sched_pick alone and the full
 * placement (decision + store transaction with the command + in-memory
 * commit) on an embedded SQLite store in a temporary directory.
 * Usage: bench_sched [clusters] [placements] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "lib/oak_store.h"
#include "root_orchestrator/clusters.h"
#include "root_orchestrator/instances.h"
#include "root_orchestrator/sched_cluster.h"
#include "test/bench/bench.h"
#include "test/common/harness.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int nclusters = argc > 1 ? atoi(argv[1]) : 1000;
    int nplace = argc > 2 ? atoi(argv[2]) : 2000;
    oak_err_t err = OAK_ERR_INIT;
    root_t r = {0};
    char *dir = th_tmpdir("bench-sched");
    char *uri = xasprintf("sqlite:%s/root.db", dir);
    oak_log_init("bench_sched", OAK_LOG_WARN, false);
    r.loop = oak_loop_new();
    r.cluster_stale_s = 3600;
    r.cluster_grace_s = 3600;
    if (oak_store_open(uri, &r.store, &err) < 0 || clusters_load(&r, &err) < 0) {
        fprintf(stderr, "bench_sched: %s\n", err.msg);
        return 1;
    }
    json_t *cap = json_pack(
        "{s:I, s:I, s:I, s:I, s:i, s:[s], s:[{s:s, s:[s], s:I, s:I}]}", "cpu_millis_total",
        (json_int_t)64000, "cpu_millis_free", (json_int_t)64000, "memory_mb_total",
        (json_int_t)262144, "memory_mb_free", (json_int_t)262144, "active_workers", 16,
        "virtualization", "container", "per_arch", "architecture", "amd64", "virtualization",
        "container", "cpu_millis_free", (json_int_t)64000, "memory_mb_free", (json_int_t)262144);
    char tok_name[64];
    for (int i = 0; i < nclusters; i++) {
        char *tok = NULL, *sess = NULL;
        double exp;
        cluster_t *c = NULL;
        snprintf(tok_name, sizeof(tok_name), "cluster%05d", i);
        if (clusters_issue_token(&r, tok_name, 3600, "bench", &tok, &exp, &err) < 0 ||
            clusters_join(&r, tok, tok_name, "0,0,0", "127.0.0.1", 10100, 10110, &c, &sess, &err) <
                0) {
            fprintf(stderr, "bench_sched: %s\n", err.msg);
            return 1;
        }
        /* vary free capacity so the scoring has work to do */
        json_object_set_new(cap, "cpu_millis_free", json_integer(8000 + (i * 7919) % 56000));
        clusters_set_capacity(&r, c, cap);
        c->last_seen = oak_wall_time();
        free(tok);
        free(sess);
    }
    json_decref(cap);

    json_t *svc = json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:s, s:i, s:[]}", "_id", "000000000000000000000001", "job_name",
        "bench.bench.svc.svc", "virtualization", "container", "vcpus", 1, "memory", 64, "image",
        "registry:5000/bench:1", "next_instance_progressive_number", 0, "instance_list");
    if (oak_store_insert(r.store, "services", svc, &err) < 0) {
        fprintf(stderr, "bench_sched: %s\n", err.msg);
        return 1;
    }
    sched_req_t req;
    sched_req_from_service(svc, &req);
    char st[64], det[512];
    uint64_t *lat = xcalloc((size_t)nplace, sizeof(uint64_t));
    for (int i = 0; i < nplace; i++) {
        uint64_t t0 = oak_now_us();
        cluster_t *c = sched_pick(&r, &req, st, sizeof(st), det, sizeof(det));
        lat[i] = oak_now_us() - t0;
        if (!c) {
            fprintf(stderr, "bench_sched: no cluster: %s\n", det);
            return 1;
        }
    }
    qsort(lat, (size_t)nplace, sizeof(uint64_t), cmp_u64);
    printf("root_sched_decision clusters=%d n=%d p50_us=%llu p99_us=%llu\n", nclusters, nplace,
           (unsigned long long)lat[nplace / 2], (unsigned long long)lat[nplace * 99 / 100]);
    char key[64];
    snprintf(key, sizeof(key), "root_sched_%d_p50", nclusters);
    bench_result(key, (double)lat[nplace / 2], "us");
    snprintf(key, sizeof(key), "root_sched_%d_p99", nclusters);
    bench_result(key, (double)lat[nplace * 99 / 100], "us");

    int nfull = nplace > 500 ? 500 : nplace;
    uint64_t t0 = oak_now_us();
    if (inst_request(&r, svc, nfull, &err) < 0) {
        fprintf(stderr, "bench_sched: %s\n", err.msg);
        return 1;
    }
    uint64_t dt = oak_now_us() - t0;
    size_t placed = 0, i;
    json_t *in;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in) placed +=
        strcmp(oak_json_str(in, "status"), "CLUSTER_SCHEDULED") == 0;
    printf("root_place_persisted clusters=%d n=%d placed=%zu mean_us=%llu\n", nclusters, nfull,
           placed, (unsigned long long)(dt / (uint64_t)nfull));
    if (placed == (size_t)nfull) {
        snprintf(key, sizeof(key), "root_place_persisted_%d_mean", nclusters);
        bench_result(key, (double)(dt / (uint64_t)nfull), "us");
    }
    free(lat);
    json_decref(svc);
    clusters_free(r.clusters);
    oak_store_close(r.store);
    oak_loop_free(r.loop);
    th_rmtree(dir);
    free(dir);
    free(uri);
    return placed == (size_t)nfull ? 0 : 1;
}
