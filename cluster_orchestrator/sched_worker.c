/* Cluster scheduler. One linear pass over the worker table with cheap
 * checks and no allocation: filter on liveness, virtualization,
 * architecture, the `direct` node list and the caller's exclusion list,
 * then on free capacity net of reservations, and score the fitting workers
 * by the cpu and memory they would have left, normalised by their totals:
 * best fit packs (least left), spread balances (most left). The root
 * scheduler spreads between clusters; inside a cluster best fit is the
 * default so that large instances still find room. geo and latency
 * constraints are not used here. Loop thread only. */
#include "cluster_orchestrator/sched_worker.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_json.h"

#define MAX_MILLIS 1000000000LL /* 1e6 cores */
#define MAX_MB     1000000000000LL

static int64_t amount(const json_t *svc, const char *key, double scale, int64_t max)
{
    double d = oak_json_num(svc, key, 0) * scale;
    if (!isfinite(d) || d <= 0)
        return 0;
    return d >= (double)max ? max : (int64_t)llround(d);
}

void wsched_req_from_service(const json_t *svc, wsched_req_t *req)
{
    memset(req, 0, sizeof(*req));
    req->cpu_millis = amount(svc, "vcpus", 1000.0, MAX_MILLIS);
    req->mem_mb = amount(svc, "memory", 1.0, MAX_MB);
    req->gpu = (int)amount(svc, "vgpus", 1.0, 1000000);
    json_t *v = json_object_get(svc, "virtualization");
    if (json_is_array(v))
        v = json_array_get(v, 0);
    req->virtualization = json_string_value(v);
    json_t *arch = json_object_get(svc, "arch");
    if (json_is_array(arch) || json_is_string(arch))
        req->arch = arch;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(svc, "constraints"), i, c)
    {
        const char *type = oak_json_str(c, "type"), *node = oak_json_str(c, "node");
        if (type && strcmp(type, "direct") == 0 && node && strspn(node, " \t;") < strlen(node)) {
            req->direct_nodes = node;
            break;
        }
    }
}

int wsched_policy_parse(const char *name)
{
    if (!name)
        return -1;
    if (strcmp(name, "bestfit") == 0 || strcmp(name, "best_fit") == 0 ||
        strcmp(name, "best-fit") == 0)
        return WSCHED_BESTFIT;
    if (strcmp(name, "spread") == 0)
        return WSCHED_SPREAD;
    return -1;
}

static bool arch_ok(const json_t *arch, const worker_t *w)
{
    if (!arch)
        return true;
    if (json_is_string(arch))
        return strcmp(json_string_value(arch), w->arch) == 0;
    if (json_array_size(arch) == 0)
        return true;
    size_t i;
    json_t *a;
    json_array_foreach(arch, i, a)
    {
        const char *s = json_string_value(a);
        if (s && strcmp(s, w->arch) == 0)
            return true;
    }
    return false;
}

static bool tok_eq(const char *tok, size_t len, const char *s)
{
    return strncmp(tok, s, len) == 0 && s[len] == '\0';
}

/* True if one ';'-separated entry of list equals w's host or id. */
static bool direct_ok(const char *list, const worker_t *w)
{
    const char *p = list;
    while (*p) {
        while (*p == ';' || *p == ' ' || *p == '\t')
            p++;
        const char *end = p;
        while (*end && *end != ';')
            end++;
        size_t len = (size_t)(end - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && (tok_eq(p, len, w->host) || tok_eq(p, len, w->id)))
            return true;
        p = end;
    }
    return false;
}

static bool excluded(const json_t *ex, const worker_t *w)
{
    size_t i;
    json_t *e;
    json_array_foreach(ex, i, e)
    {
        const char *s = json_string_value(e);
        if (s && strcmp(s, w->id) == 0)
            return true;
    }
    return false;
}

static double left(int64_t free_, int64_t need, int64_t total)
{
    return total > 0 ? (double)(free_ - need) / (double)total : 0.0;
}

/* Writes a's string elements as "a, b" (or the one string) into buf. */
static void arch_text(const json_t *arch, char *buf, size_t len)
{
    buf[0] = '\0';
    if (json_is_string(arch)) {
        snprintf(buf, len, "%s", json_string_value(arch));
        return;
    }
    size_t i, off = 0;
    json_t *a;
    json_array_foreach(arch, i, a)
    {
        const char *s = json_string_value(a);
        if (!s || off >= len)
            continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", s);
        if (n > 0)
            off += (size_t)n;
    }
}

static void put(char *buf, size_t len, const char *s)
{
    if (buf && len > 0)
        snprintf(buf, len, "%s", s);
}

/* Why a worker does not qualify, for the failure detail. */
typedef enum { Q_OK, Q_OFFLINE, Q_VIRT, Q_ARCH, Q_DIRECT, Q_EXCLUDED } qual_t;

static qual_t qualify(const worker_t *w, const wsched_req_t *req, const char *virt,
                      const char *direct, const json_t *exclude)
{
    if (!w->online)
        return Q_OFFLINE;
    if (!worker_has_virt(w, virt))
        return Q_VIRT;
    if (!arch_ok(req->arch, w))
        return Q_ARCH;
    if (direct && !direct_ok(direct, w))
        return Q_DIRECT;
    if (exclude && excluded(exclude, w))
        return Q_EXCLUDED;
    return Q_OK;
}

/* Second pass after a failed pick: counts why workers were rejected and the
 * largest free capacity among the qualified ones, and explains. */
static void explain(workers_t *ws, const wsched_req_t *req, const char *virt, const char *direct,
                    const json_t *exclude, char *status, size_t status_len, char *detail,
                    size_t detail_len)
{
    size_t n = workers_count(ws), count[Q_EXCLUDED + 1] = {0};
    int64_t max_cpu = 0, max_mem = 0;
    int max_gpu = 0;
    for (size_t i = 0; i < n; i++) {
        worker_t *w = workers_at(ws, i);
        qual_t q = qualify(w, req, virt, direct, exclude);
        count[q]++;
        if (q != Q_OK)
            continue;
        int64_t fc = worker_free_cpu(w), fm = worker_free_mem(w);
        int fg = worker_free_gpu(w);
        max_cpu = fc > max_cpu ? fc : max_cpu;
        max_mem = fm > max_mem ? fm : max_mem;
        max_gpu = fg > max_gpu ? fg : max_gpu;
    }
    if (count[Q_OK] == 0) {
        char arch[256];
        arch_text(req->arch, arch, sizeof(arch));
        put(status, status_len, "NO_QUALIFIED_WORKER_FOUND");
        if (detail && detail_len > 0)
            snprintf(detail, detail_len,
                     "no online worker offers virtualization '%s'%s%s%s%s%s%s "
                     "(%zu of %zu worker(s) online; rejected: %zu virtualization, "
                     "%zu architecture, %zu direct list, %zu excluded)",
                     virt, arch[0] ? ", architecture [" : "", arch, arch[0] ? "]" : "",
                     direct ? ", direct list '" : "", direct ? direct : "", direct ? "'" : "",
                     n - count[Q_OFFLINE], n, count[Q_VIRT], count[Q_ARCH], count[Q_DIRECT],
                     count[Q_EXCLUDED]);
        return;
    }
    put(status, status_len, "NO_WORKER_CAPACITY");
    if (detail && detail_len > 0)
        snprintf(detail, detail_len,
                 "no worker has room for %lld mCPU, %lld MB memory, %d GPU of '%s': "
                 "%zu qualified worker(s), the largest free is %lld mCPU, %lld MB, %d GPU",
                 (long long)req->cpu_millis, (long long)req->mem_mb, req->gpu, virt, count[Q_OK],
                 (long long)max_cpu, (long long)max_mem, max_gpu);
}

worker_t *sched_worker_pick(workers_t *ws, const wsched_req_t *req, wsched_policy_t policy,
                            char *status, size_t status_len, char *detail, size_t detail_len)
{
    const char *virt = worker_norm_virt(req->virtualization);
    const char *direct = req->direct_nodes && *req->direct_nodes ? req->direct_nodes : NULL;
    const json_t *exclude = json_array_size(req->exclude) > 0 ? req->exclude : NULL;
    size_t n = workers_count(ws);
    worker_t *best = NULL;
    double best_score = 0;
    /* capacity first: it reads only the worker itself, the string filters
     * chase pointers */
    for (size_t i = 0; i < n; i++) {
        worker_t *w = workers_at(ws, i);
        if (!w->online)
            continue;
        int64_t fc = worker_free_cpu(w), fm = worker_free_mem(w);
        if (fc < req->cpu_millis || fm < req->mem_mb || worker_free_gpu(w) < req->gpu)
            continue;
        if (qualify(w, req, virt, direct, exclude) != Q_OK)
            continue;
        double s = left(fc, req->cpu_millis, w->cpu_total) + left(fm, req->mem_mb, w->mem_total);
        bool better = !best || (policy == WSCHED_SPREAD ? s > best_score : s < best_score) ||
                      (s == best_score && strcmp(w->id, best->id) < 0);
        if (better) {
            best = w;
            best_score = s;
        }
    }
    if (!best)
        explain(ws, req, virt, direct, exclude, status, status_len, detail, detail_len);
    return best;
}
