/* Benchmark: cluster scheduling decision time (sched_worker_pick) with N
 * random heterogeneous online workers (architectures, runtimes, cores,
 * load, memory, GPUs; a tenth offline), in process. Each of the decisions
 * is followed by worker_reserve on the picked worker, as the cluster
 * manager does, so the table fills up while it runs. Prints one line per
 * worker count and policy.
 * Usage: bench_cluster_sched [decisions] [workers...]  (default 5000 1000 10000)
 * Result lines: RESULT cluster_sched_<workers>_<bestfit|spread>_{p50,p99,max} <us> us,
 * RESULT cluster_sched_<workers>_<policy>_placed <n> count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_orchestrator/sched_worker.h"
#include "lib/oak_alloc.h"
#include "test/bench/bench.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static workers_t *make_workers(int n, unsigned seed)
{
    static const char *archs[] = {"amd64", "amd64", "amd64", "arm64"};
    static const char *virts[][2] = {
        {"docker", NULL}, {"container", "unikernel"}, {"container", NULL}, {"unikernel", NULL}};
    srand(seed);
    workers_t *ws = workers_new();
    char host[32];
    for (int i = 0; i < n; i++) {
        snprintf(host, sizeof(host), "worker-%05d", i);
        worker_t *w = workers_add(ws, NULL, host);
        int v = rand() % 4;
        json_t *virt = json_array();
        for (int k = 0; k < 2 && virts[v][k]; k++)
            json_array_append_new(virt, json_string(virts[v][k]));
        int mem_total = 1024 * (1 + rand() % 64);
        json_t *info = json_pack(
            "{s:s, s:o, s:i, s:f, s:i, s:i, s:i}", "architecture", archs[rand() % 4],
            "virtualization", virt, "cpu_cores", 1 << (rand() % 6), "cpu_percent",
            (double)(rand() % 90), "memory_total", mem_total, "memory",
            mem_total / 4 + rand() % (mem_total * 3 / 4), "gpus", rand() % 8 == 0 ? 1 : 0);
        worker_apply_info(w, info);
        json_decref(info);
        w->online = rand() % 10 != 0;
    }
    return ws;
}

static int run(int nworkers, int ndecisions, wsched_policy_t policy)
{
    workers_t *ws = make_workers(nworkers, 1234);
    uint64_t *lat = xcalloc((size_t)ndecisions, sizeof(uint64_t));
    json_t *arm = json_pack("[s]", "arm64");
    char st[64], det[512];
    int placed = 0;
    srand(99);
    for (int i = 0; i < ndecisions; i++) {
        wsched_req_t r = {0};
        r.cpu_millis = 100 * (1 + rand() % 20);
        r.mem_mb = 64 * (1 + rand() % 32);
        r.gpu = rand() % 50 == 0;
        r.virtualization = rand() % 5 == 0 ? "unikernel" : "container";
        r.arch = rand() % 10 == 0 ? arm : NULL;
        uint64_t t0 = now_ns();
        worker_t *w = sched_worker_pick(ws, &r, policy, st, sizeof(st), det, sizeof(det));
        lat[i] = now_ns() - t0;
        if (w) {
            worker_reserve(w, r.cpu_millis, r.mem_mb, r.gpu, +1);
            placed++;
        }
    }
    qsort(lat, (size_t)ndecisions, sizeof(uint64_t), cmp_u64);
    printf("cluster_sched_decision workers=%d policy=%s n=%d placed=%d p50_us=%.1f p99_us=%.1f "
           "max_us=%.1f\n",
           nworkers, policy == WSCHED_SPREAD ? "spread" : "bestfit", ndecisions, placed,
           (double)lat[ndecisions / 2] / 1000.0, (double)lat[ndecisions * 99 / 100] / 1000.0,
           (double)lat[ndecisions - 1] / 1000.0);
    const char *pname = policy == WSCHED_SPREAD ? "spread" : "bestfit";
    const char *qname[] = {"p50", "p99", "max"};
    size_t at[] = {(size_t)ndecisions / 2, (size_t)ndecisions * 99 / 100, (size_t)ndecisions - 1};
    char key[96];
    for (size_t k = 0; k < 3; k++) {
        snprintf(key, sizeof(key), "cluster_sched_%d_%s_%s", nworkers, pname, qname[k]);
        bench_result(key, (double)lat[at[k]] / 1000.0, "us");
    }
    snprintf(key, sizeof(key), "cluster_sched_%d_%s_placed", nworkers, pname);
    bench_result(key, placed, "count");
    json_decref(arm);
    free(lat);
    workers_free(ws);
    return placed > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    int ndecisions = argc > 1 ? atoi(argv[1]) : 5000;
    if (ndecisions < 1)
        ndecisions = 5000;
    int rc = 0;
    if (argc > 2) {
        for (int i = 2; i < argc; i++)
            for (int p = 0; p < 2; p++)
                rc |= run(atoi(argv[i]), ndecisions, (wsched_policy_t)p);
        return rc;
    }
    static const int sizes[] = {1000, 10000};
    for (size_t i = 0; i < 2; i++)
        for (int p = 0; p < 2; p++)
            rc |= run(sizes[i], ndecisions, (wsched_policy_t)p);
    return rc;
}
