/* Benchmark: REST read latency of the real system-manager under concurrent
 * keep-alive load. Starts the daemon (release build from OAK_BUILD_DIR),
 * creates an application, then T threads issue GET /api/application/<id>
 * for D seconds each over one keep-alive connection. The daemon's RSS is
 * read before the load (one application, no cluster: the system-manager
 * alone) and after it.
 * Usage: bench_api [threads] [seconds]
 * Result lines: RESULT api_read_{p50,p99} <us> us, api_read_rps <n> per_s,
 * api_read_errors <n> count, system_manager_alone_rss <kB> kB,
 * system_manager_after_load_rss <kB> kB. */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "test/bench/bench.h"
#include "test/common/harness.h"

typedef struct {
    const char *url;
    const char *auth;
    double seconds;
    uint64_t *lat;
    size_t n, cap;
    size_t errors;
} worker_t;

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    return s * n;
}

static void *run(void *arg)
{
    worker_t *w = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, w->auth);
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    uint64_t end = oak_now_us() + (uint64_t)(w->seconds * 1e6);
    while (oak_now_us() < end) {
        uint64_t t0 = oak_now_us();
        long code = 0;
        if (curl_easy_perform(c) != CURLE_OK ||
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK || code != 200) {
            w->errors++;
            continue;
        }
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = xrealloc(w->lat, w->cap * sizeof(uint64_t));
        }
        w->lat[w->n++] = oak_now_us() - t0;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    double secs = argc > 2 ? atof(argv[2]) : 5;
    th_daemon_t d;
    char *dir = th_tmpdir("bench-api");
    const char *env[] = {"OAK_ADMIN_PASSWORD=bench-password", "OAK_LOG_LEVEL=warn", NULL};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (th_start_root(&d, dir, env) < 0)
        return 1;
    char *tok = th_login(d.api_port, "Admin", "bench-password");
    char path[512];
    snprintf(path, sizeof(path), "%s/testdata/sla/valid/clientserver.json", th_shared_dir());
    size_t len;
    char *sla = th_read_file(path, &len);
    json_t *out = NULL;
    if (!tok || !sla ||
        th_http_raw(d.api_port, "POST", "/api/application/", tok, sla, len, &out) != 200) {
        fprintf(stderr, "bench_api: setup failed\n");
        th_stop(&d, SIGKILL);
        return 1;
    }
    long rss0 = bench_rss_kb(d.pid, NULL, NULL);
    printf("system_manager_idle_rss_kb=%ld\n", rss0);
    bench_result("system_manager_alone_rss", (double)rss0, "kB");
    const char *appid = oak_json_str(json_array_get(out, 0), "_id");
    char url[256], auth[1024];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/application/%s", d.api_port, appid);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
    worker_t *w = xcalloc((size_t)threads, sizeof(worker_t));
    pthread_t *th = xcalloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++) {
        w[i] = (worker_t){.url = url, .auth = auth, .seconds = secs};
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    size_t total = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        total += w[i].n;
        errors += w[i].errors;
    }
    uint64_t *all = xcalloc(total + 1, sizeof(uint64_t));
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(uint64_t));
        k += w[i].n;
        free(w[i].lat);
    }
    qsort(all, total, sizeof(uint64_t), cmp_u64);
    printf("api_read GET /api/application/<id> threads=%d seconds=%.0f requests=%zu errors=%zu "
           "rps=%.0f p50_us=%llu p99_us=%llu\n",
           threads, secs, total, errors, (double)total / secs,
           (unsigned long long)(total ? all[total / 2] : 0),
           (unsigned long long)(total ? all[total * 99 / 100] : 0));
    long rss1 = bench_rss_kb(d.pid, NULL, NULL);
    printf("system_manager_rss_after_load_kb=%ld\n", rss1);
    if (total > 0) {
        bench_result("api_read_p50", (double)all[total / 2], "us");
        bench_result("api_read_p99", (double)all[total * 99 / 100], "us");
        bench_result("api_read_rps", (double)total / secs, "per_s");
    }
    bench_result("api_read_errors", (double)errors, "count");
    bench_result("system_manager_after_load_rss", (double)rss1, "kB");
    th_stop(&d, SIGTERM);
    th_rmtree(dir);
    free(all);
    free(w);
    free(th);
    free(dir);
    free(tok);
    free(sla);
    json_decref(out);
    curl_global_cleanup();
    return total > 0 && errors == 0 ? 0 : 1;
}
