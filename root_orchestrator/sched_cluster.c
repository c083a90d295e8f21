/* Root scheduler. Filters clusters on activity, virtualization,
 * architecture, cpu, memory, gpu and the `direct` / `clusters`
 * constraints, then picks the cluster with the most free capacity relative
 * to the request (spreading load between clusters); the cluster scheduler
 * does best-fit packing inside a cluster. geo and latency constraints are
 * recorded with the service and not yet used here. */
#include "root_orchestrator/sched_cluster.h"

#include <stdio.h>
#include <string.h>

#include "lib/oak_json.h"

void sched_req_from_service(const json_t *svc, sched_req_t *req)
{
    memset(req, 0, sizeof(*req));
    req->cpu_millis = oak_json_int(svc, "vcpus", 0) * 1000;
    req->mem_mb = oak_json_int(svc, "memory", 0);
    req->gpu = (int)oak_json_int(svc, "vgpus", 0);
    req->virtualization = oak_json_str(svc, "virtualization");
    req->arch = json_object_get(svc, "arch");
    req->constraints = json_object_get(svc, "constraints");
}

static bool in_list(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

static bool fits(const cluster_t *c, const sched_req_t *req)
{
    if (cluster_free_cpu(c) < req->cpu_millis || cluster_free_mem(c) < req->mem_mb ||
        cluster_free_gpu(c) < req->gpu)
        return false;
    if (json_array_size(req->arch) == 0)
        return cluster_supports(c, req->virtualization, NULL);
    size_t i;
    json_t *a;
    json_array_foreach(req->arch, i, a)
    {
        const char *an = json_string_value(a);
        if (!an || !cluster_supports(c, req->virtualization, an))
            continue;
        for (size_t k = 0; k < c->narch; k++)
            if (strcmp(c->arch[k].arch, an) == 0 && c->arch[k].cpu_free >= req->cpu_millis &&
                c->arch[k].mem_free >= req->mem_mb && c->arch[k].gpu_free >= req->gpu)
                return true;
    }
    return false;
}

static double score(const cluster_t *c, const sched_req_t *req)
{
    double cpu = c->cpu_total > 0
                     ? (double)(cluster_free_cpu(c) - req->cpu_millis) / (double)c->cpu_total
                     : 0;
    double mem =
        c->mem_total > 0 ? (double)(cluster_free_mem(c) - req->mem_mb) / (double)c->mem_total : 0;
    return cpu + mem;
}

cluster_t *sched_pick(root_t *r, const sched_req_t *req, char *status, size_t status_len,
                      char *detail, size_t detail_len)
{
    const char *direct = NULL;
    const json_t *allowed = NULL;
    size_t i;
    json_t *k;
    json_array_foreach(req->constraints, i, k)
    {
        const char *type = oak_json_str(k, "type");
        if (!type)
            continue;
        if (strcmp(type, "direct") == 0 && oak_json_str(k, "cluster") &&
            *oak_json_str(k, "cluster"))
            direct = oak_json_str(k, "cluster");
        else if (strcmp(type, "clusters") == 0)
            allowed = json_object_get(k, "allowed");
    }
    clusters_t *cs = r->clusters;
    if (direct) {
        cluster_t *c = clusters_by_name(cs, direct);
        if (!c) {
            snprintf(status, status_len, "TargetClusterNotFound");
            snprintf(detail, detail_len, "no cluster named '%s' is registered", direct);
            return NULL;
        }
        if (!cluster_active(r, c) || c->lost) {
            snprintf(status, status_len, "TargetClusterNotActive");
            snprintf(detail, detail_len, "cluster '%s' is not active", direct);
            return NULL;
        }
        if (in_list(req->excluded, c->id) || !fits(c, req)) {
            snprintf(status, status_len, "TargetClusterNoCapacity");
            snprintf(detail, detail_len,
                     "cluster '%s' lacks capacity: needs %lld mCPU, %lld MB, %d GPU of '%s'; "
                     "free %lld mCPU, %lld MB, %d GPU",
                     direct, (long long)req->cpu_millis, (long long)req->mem_mb, req->gpu,
                     req->virtualization ? req->virtualization : "container",
                     (long long)cluster_free_cpu(c), (long long)cluster_free_mem(c),
                     cluster_free_gpu(c));
            return NULL;
        }
        return c;
    }
    cluster_t *best = NULL;
    double best_score = 0;
    size_t active = 0;
    for (size_t n = 0; n < cs->n; n++) {
        cluster_t *c = cs->v[n];
        if (!cluster_active(r, c) || c->lost)
            continue;
        if (allowed && !in_list(allowed, c->name))
            continue;
        if (req->excluded && in_list(req->excluded, c->id))
            continue;
        active++;
        if (!fits(c, req))
            continue;
        double s = score(c, req);
        if (!best || s > best_score) {
            best = c;
            best_score = s;
        }
    }
    if (!best) {
        snprintf(status, status_len, "NO_CLUSTER_CAPACITY");
        snprintf(detail, detail_len,
                 "no %scluster can host %lld mCPU, %lld MB memory, %d GPU of '%s' "
                 "(%zu candidate cluster(s) active); waiting for capacity",
                 allowed ? "allowed " : "", (long long)req->cpu_millis, (long long)req->mem_mb,
                 req->gpu, req->virtualization ? req->virtualization : "container", active);
    }
    return best;
}
