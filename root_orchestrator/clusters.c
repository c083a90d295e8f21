/* Cluster registry of the root. Clusters live in collection "clusters"
 * ({_id, cluster_name, cluster_location, ip, manager_port,
 * network_component_port, session_hash, last_seq, capacity, last_seen}),
 * join tokens in "join_tokens" ({_id: sha256(token), cluster_name,
 * expires_at, created_by}) and unacknowledged commands in "commands"
 * ({_id: "<cluster>-<seq>", cluster_id, seq, kind, service_id,
 * instance_number, generation, service_json, cpu, mem, gpu}).
 * The in-memory table is what the scheduler reads. Loop thread only. */
#include "root_orchestrator/clusters.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_grpc.h"
#include "lib/oak_hash.h"
#include "lib/oak_json.h"
#include "lib/oak_jwt.h"
#include "lib/oak_log.h"
#include "lib/oak_loop.h"
#include "proto/cluster.pb-c.h"

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void cmd_free(cmd_t *c)
{
    if (!c)
        return;
    free(c->service_id);
    free(c->service_json);
    free(c);
}

static void capacity_clear(cluster_t *c)
{
    free_strv(c->virt, c->nvirt);
    c->virt = NULL;
    c->nvirt = 0;
    for (size_t i = 0; i < c->narch; i++) {
        free(c->arch[i].arch);
        free_strv(c->arch[i].virt, c->arch[i].nvirt);
    }
    free(c->arch);
    c->arch = NULL;
    c->narch = 0;
}

static void cluster_free(cluster_t *c)
{
    capacity_clear(c);
    json_decref(c->workers);
    free(c->name);
    free(c->location);
    free(c->ip);
    cmd_t *k = c->cmds;
    while (k) {
        cmd_t *n = k->next;
        cmd_free(k);
        k = n;
    }
    free(c);
}

void clusters_free(clusters_t *cs)
{
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n; i++)
        cluster_free(cs->v[i]);
    free(cs->v);
    free(cs);
}

static void add(clusters_t *cs, cluster_t *c)
{
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 16;
        cs->v = xrealloc(cs->v, sizeof(*cs->v) * cs->cap);
    }
    cs->v[cs->n++] = c;
}

cluster_t *clusters_by_id(clusters_t *cs, const char *id)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->v[i]->id, id) == 0)
            return cs->v[i];
    return NULL;
}

cluster_t *clusters_by_name(clusters_t *cs, const char *name)
{
    for (size_t i = 0; i < cs->n; i++)
        if (strcmp(cs->v[i]->name, name) == 0)
            return cs->v[i];
    return NULL;
}

bool cluster_active(const root_t *r, const cluster_t *c)
{
    if (c->stream)
        return true;
    return c->last_seen > 0 && oak_wall_time() - c->last_seen < (double)r->cluster_stale_s;
}

int64_t cluster_free_cpu(const cluster_t *c)
{
    return c->cpu_free - c->res_cpu;
}

int64_t cluster_free_mem(const cluster_t *c)
{
    return c->mem_free - c->res_mem;
}

int cluster_free_gpu(const cluster_t *c)
{
    return c->gpu_free - c->res_gpu;
}

static const char *norm_virt(const char *v)
{
    if (!v || !*v || strcmp(v, "docker") == 0)
        return "container";
    return v;
}

static bool strv_has(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(norm_virt(v[i]), s) == 0)
            return true;
    return false;
}

bool cluster_supports(const cluster_t *c, const char *virt, const char *arch)
{
    const char *nv = norm_virt(virt);
    if (!arch || !*arch)
        return strv_has(c->virt, c->nvirt, nv);
    for (size_t i = 0; i < c->narch; i++)
        if (strcmp(c->arch[i].arch, arch) == 0 && strv_has(c->arch[i].virt, c->arch[i].nvirt, nv))
            return true;
    return false;
}

static char **strv_from_json(const json_t *a, size_t *n)
{
    size_t cnt = json_is_array(a) ? json_array_size(a) : 0, k = 0;
    char **v = xcalloc(cnt + 1, sizeof(char *));
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s)
            v[k++] = xstrdup(s);
    }
    *n = k;
    return v;
}

static json_t *strv_to_json(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

void clusters_set_capacity(root_t *r, cluster_t *c, const json_t *cap)
{
    capacity_clear(c);
    c->cpu_total = oak_json_int(cap, "cpu_millis_total", 0);
    c->cpu_free = oak_json_int(cap, "cpu_millis_free", 0);
    c->mem_total = oak_json_int(cap, "memory_mb_total", 0);
    c->mem_free = oak_json_int(cap, "memory_mb_free", 0);
    c->gpu_total = (int)oak_json_int(cap, "gpu_total", 0);
    c->gpu_free = (int)oak_json_int(cap, "gpu_free", 0);
    c->active_workers = (int)oak_json_int(cap, "active_workers", 0);
    c->cpu_percent = oak_json_num(cap, "cpu_percent", 0);
    c->memory_percent = oak_json_num(cap, "memory_percent", 0);
    c->virt = strv_from_json(json_object_get(cap, "virtualization"), &c->nvirt);
    json_t *pa = json_object_get(cap, "per_arch");
    c->narch = json_is_array(pa) ? json_array_size(pa) : 0;
    c->arch = xcalloc(c->narch + 1, sizeof(arch_cap_t));
    for (size_t i = 0; i < c->narch; i++) {
        json_t *a = json_array_get(pa, i);
        const char *name = oak_json_str(a, "architecture");
        c->arch[i].arch = xstrdup(name ? name : "");
        c->arch[i].virt = strv_from_json(json_object_get(a, "virtualization"), &c->arch[i].nvirt);
        c->arch[i].cpu_free = oak_json_int(a, "cpu_millis_free", 0);
        c->arch[i].mem_free = oak_json_int(a, "memory_mb_free", 0);
        c->arch[i].gpu_free = (int)oak_json_int(a, "gpu_free", 0);
        c->arch[i].workers = (int)oak_json_int(a, "workers", 0);
    }
    c->reported = true;
    (void)r;
}

static json_t *capacity_to_json(const cluster_t *c)
{
    json_t *pa = json_array();
    for (size_t i = 0; i < c->narch; i++)
        json_array_append_new(
            pa, json_pack("{s:s, s:o, s:I, s:I, s:i, s:i}", "architecture", c->arch[i].arch,
                          "virtualization", strv_to_json(c->arch[i].virt, c->arch[i].nvirt),
                          "cpu_millis_free", (json_int_t)c->arch[i].cpu_free, "memory_mb_free",
                          (json_int_t)c->arch[i].mem_free, "gpu_free", c->arch[i].gpu_free,
                          "workers", c->arch[i].workers));
    return json_pack("{s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:o, s:o, s:f, s:f}", "cpu_millis_total",
                     (json_int_t)c->cpu_total, "cpu_millis_free", (json_int_t)c->cpu_free,
                     "memory_mb_total", (json_int_t)c->mem_total, "memory_mb_free",
                     (json_int_t)c->mem_free, "gpu_total", c->gpu_total, "gpu_free", c->gpu_free,
                     "active_workers", c->active_workers, "virtualization",
                     strv_to_json(c->virt, c->nvirt), "per_arch", pa, "cpu_percent", c->cpu_percent,
                     "memory_percent", c->memory_percent);
}

static json_t *cluster_doc(const cluster_t *c)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:I, s:o, s:f, s:b}", "_id", c->id,
                     "cluster_name", c->name, "cluster_location", c->location ? c->location : "",
                     "ip", c->ip ? c->ip : "", "manager_port", c->manager_port,
                     "network_component_port", c->network_port, "session_hash", c->session_hash,
                     "last_seq", (json_int_t)c->last_seq, "capacity", capacity_to_json(c),
                     "last_seen", c->last_seen, "lost", c->lost);
}

int clusters_save(root_t *r, cluster_t *c, oak_err_t *err)
{
    json_auto_t *d = cluster_doc(c);
    return oak_store_upsert(r->store, "clusters", d, err);
}

json_t *cluster_to_json(const root_t *r, const cluster_t *c)
{
    bool active = cluster_active(r, c);
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:b, s:b, s:o, s:f, s:f, s:I, s:I, s:i, s:i, s:I}",
        "_id", c->id, "id", c->id, "cluster_name", c->name, "candidate_name", c->name,
        "cluster_location", c->location ? c->location : "", "ip", c->ip ? c->ip : "", "port",
        c->manager_port, "active", active, "connected", c->stream != NULL, "capacity",
        capacity_to_json(c), "aggregated_cpu_percent", c->cpu_percent, "last_seen", c->last_seen,
        "memory_in_mb", (json_int_t)c->mem_free, "total_cpu_cores",
        (json_int_t)(c->cpu_total / 1000), "total_gpu_cores", c->gpu_total, "active_nodes",
        c->active_workers, "pending_commands", (json_int_t)0);
    size_t pending = 0;
    for (cmd_t *k = c->cmds; k; k = k->next)
        pending++;
    json_object_set_new(o, "pending_commands", json_integer((json_int_t)pending));
    json_object_set_new(o, "reserved",
                        json_pack("{s:I, s:I, s:i}", "cpu_millis", (json_int_t)c->res_cpu,
                                  "memory_mb", (json_int_t)c->res_mem, "gpu", c->res_gpu));
    return o;
}

static cmd_t *cmd_from_json(const json_t *d)
{
    cmd_t *k = xcalloc(1, sizeof(*k));
    k->seq = (uint64_t)oak_json_int(d, "seq", 0);
    k->kind = oak_json_int(d, "kind", 0) == 1 ? CMD_REMOVE : CMD_PLACE;
    k->service_id = xstrdup(oak_json_str(d, "service_id"));
    k->instance_number = (int)oak_json_int(d, "instance_number", 0);
    k->generation = (uint64_t)oak_json_int(d, "generation", 0);
    const char *sj = oak_json_str(d, "service_json");
    k->service_json = sj ? xstrdup(sj) : NULL;
    k->cpu = oak_json_int(d, "cpu", 0);
    k->mem = oak_json_int(d, "mem", 0);
    k->gpu = (int)oak_json_int(d, "gpu", 0);
    return k;
}

static void cmd_append(cluster_t *c, cmd_t *k)
{
    k->next = NULL;
    if (c->cmds_tail)
        c->cmds_tail->next = k;
    else
        c->cmds = k;
    c->cmds_tail = k;
    if (k->kind == CMD_PLACE) {
        c->res_cpu += k->cpu;
        c->res_mem += k->mem;
        c->res_gpu += k->gpu;
    }
}

int clusters_load(root_t *r, oak_err_t *err)
{
    json_t *all = NULL;
    r->clusters = xcalloc(1, sizeof(clusters_t));
    if (oak_store_find(r->store, "clusters", NULL, NULL, &all, err) < 0)
        return -1;
    json_auto_t *docs = all;
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        cluster_t *c = xcalloc(1, sizeof(*c));
        snprintf(c->id, sizeof(c->id), "%s", oak_json_str(d, "_id"));
        c->name = xstrdup(oak_json_str(d, "cluster_name"));
        c->location = xstrdup(oak_json_str(d, "cluster_location"));
        c->ip = xstrdup(oak_json_str(d, "ip"));
        c->manager_port = (int)oak_json_int(d, "manager_port", 0);
        c->network_port = (int)oak_json_int(d, "network_component_port", 0);
        snprintf(c->session_hash, sizeof(c->session_hash), "%s",
                 oak_json_str(d, "session_hash") ? oak_json_str(d, "session_hash") : "");
        c->last_seq = (uint64_t)oak_json_int(d, "last_seq", 0);
        c->last_seen = oak_json_num(d, "last_seen", 0);
        c->lost = oak_json_bool(d, "lost", false);
        clusters_set_capacity(r, c, json_object_get(d, "capacity"));
        add(r->clusters, c);
    }
    json_t *cmds = NULL;
    if (oak_store_find(r->store, "commands", NULL, NULL, &cmds, err) < 0)
        return -1;
    json_auto_t *cm = cmds;
    /* ids sort by cluster then zero-padded seq, so appends stay in order */
    json_array_foreach(cm, i, d)
    {
        cluster_t *c = clusters_by_id(r->clusters, oak_json_str(d, "cluster_id"));
        if (c)
            cmd_append(c, cmd_from_json(d));
    }
    return 0;
}

int clusters_issue_token(root_t *r, const char *cluster_name, long ttl_s, const char *by,
                         char **token_out, double *expires_out, oak_err_t *err)
{
    _cleanup_free_ char *tok = oak_random_token(24);
    char hash[65];
    oak_sha256_hex(tok, strlen(tok), hash);
    double exp = oak_wall_time() + (double)ttl_s;
    json_auto_t *d =
        json_pack("{s:s, s:s, s:f, s:s}", "_id", hash, "cluster_name",
                  cluster_name ? cluster_name : "", "expires_at", exp, "created_by", by);
    if (oak_store_insert(r->store, "join_tokens", d, err) < 0)
        return -1;
    *token_out = oak_steal(&tok);
    *expires_out = exp;
    return 0;
}

int clusters_join(root_t *r, const char *token, const char *name, const char *location,
                  const char *ip, int manager_port, int network_port, cluster_t **out,
                  char **session_out, oak_err_t *err)
{
    char hash[65];
    json_t *tokdoc = NULL;
    if (!name || !*name || strlen(name) > 64)
        return oak_err_set(err, OAK_E_INVALID, "cluster_name is required (1-64 characters)");
    if (!token || !*token)
        return oak_err_set(err, OAK_E_UNAUTH, "a join token is required");
    oak_sha256_hex(token, strlen(token), hash);
    if (oak_store_get(r->store, "join_tokens", hash, &tokdoc, err) < 0) {
        oak_err_clear(err);
        return oak_err_set(err, OAK_E_UNAUTH, "the join token is not valid");
    }
    json_auto_t *td = tokdoc;
    if (oak_json_num(td, "expires_at", 0) < oak_wall_time())
        return oak_err_set(err, OAK_E_UNAUTH, "the join token has expired");
    const char *bound = oak_json_str(td, "cluster_name");
    if (bound && *bound && strcmp(bound, name) != 0)
        return oak_err_set(err, OAK_E_FORBIDDEN, "the join token is for cluster '%s', not '%s'",
                           bound, name);
    cluster_t *c = clusters_by_name(r->clusters, name);
    bool fresh = !c;
    if (fresh) {
        c = xcalloc(1, sizeof(*c));
        oak_store_new_id(c->id);
        c->name = xstrdup(name);
    }
    _cleanup_free_ char *session = oak_random_token(24);
    char old_hash[65];
    memcpy(old_hash, c->session_hash, sizeof(old_hash));
    char *old_loc = c->location, *old_ip = c->ip;
    int old_mp = c->manager_port, old_np = c->network_port;
    oak_sha256_hex(session, strlen(session), c->session_hash);
    c->location = xstrdup(location ? location : "");
    c->ip = xstrdup(ip ? ip : "");
    c->manager_port = manager_port;
    c->network_port = network_port;
    if (clusters_save(r, c, err) < 0) {
        if (fresh) {
            cluster_free(c);
        } else {
            free(c->location);
            free(c->ip);
            c->location = old_loc;
            c->ip = old_ip;
            c->manager_port = old_mp;
            c->network_port = old_np;
            memcpy(c->session_hash, old_hash, sizeof(old_hash));
        }
        return -1;
    }
    free(old_loc);
    free(old_ip);
    if (fresh)
        add(r->clusters, c);
    c->last_seen = oak_wall_time();
    log_info("cluster %s (%s) joined from %s", c->name, c->id, c->ip);
    *out = c;
    *session_out = oak_steal(&session);
    return 0;
}

int clusters_auth(root_t *r, const char *cluster_id, const char *session, cluster_t **out,
                  oak_err_t *err)
{
    char hash[65];
    cluster_t *c = cluster_id ? clusters_by_id(r->clusters, cluster_id) : NULL;
    if (!c || !session)
        return oak_err_set(err, OAK_E_UNAUTH, "unknown cluster or missing session token");
    oak_sha256_hex(session, strlen(session), hash);
    if (strcmp(hash, c->session_hash) != 0)
        return oak_err_set(err, OAK_E_UNAUTH,
                           "session token is not valid (the cluster must join again)");
    *out = c;
    return 0;
}

int clusters_cmd_prepare(root_t *r, cluster_t *c, cmd_kind_t kind, const char *service_id,
                         int instance_number, uint64_t generation, const char *service_json,
                         int64_t cpu, int64_t mem, int gpu, cmd_t **out, oak_err_t *err)
{
    cmd_t *k = xcalloc(1, sizeof(*k));
    k->seq = c->last_seq + 1;
    k->kind = kind;
    k->service_id = xstrdup(service_id);
    k->instance_number = instance_number;
    k->generation = generation;
    k->service_json = service_json ? xstrdup(service_json) : NULL;
    k->cpu = cpu;
    k->mem = mem;
    k->gpu = gpu;
    char id[64];
    snprintf(id, sizeof(id), "%s-%016" PRIu64, c->id, k->seq);
    json_auto_t *d =
        json_pack("{s:s, s:s, s:I, s:i, s:s, s:i, s:I, s:I, s:I, s:i}", "_id", id, "cluster_id",
                  c->id, "seq", (json_int_t)k->seq, "kind", (int)kind, "service_id", service_id,
                  "instance_number", instance_number, "generation", (json_int_t)generation, "cpu",
                  (json_int_t)cpu, "mem", (json_int_t)mem, "gpu", gpu);
    if (service_json)
        json_object_set_new(d, "service_json", json_string(service_json));
    c->last_seq++;
    if (oak_store_insert(r->store, "commands", d, err) < 0 || clusters_save(r, c, err) < 0) {
        c->last_seq--;
        cmd_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void clusters_cmd_commit(root_t *r, cluster_t *c, cmd_t *k)
{
    cmd_append(c, k);
    clusters_flush(r, c);
}

void clusters_cmd_abort(root_t *r, cluster_t *c, cmd_t *k)
{
    if (c->last_seq == k->seq)
        c->last_seq--;
    cmd_free(k);
    (void)r;
}

int clusters_ack(root_t *r, cluster_t *c, uint64_t ack_seq, oak_err_t *err)
{
    while (c->cmds && c->cmds->seq <= ack_seq) {
        cmd_t *k = c->cmds;
        char id[64];
        snprintf(id, sizeof(id), "%s-%016" PRIu64, c->id, k->seq);
        if (oak_store_delete(r->store, "commands", id, 0, err) < 0 && err->code != OAK_E_NOT_FOUND)
            return -1;
        oak_err_clear(err);
        if (k->kind == CMD_PLACE) {
            c->res_cpu -= k->cpu;
            c->res_mem -= k->mem;
            c->res_gpu -= k->gpu;
        }
        c->cmds = k->next;
        if (!c->cmds)
            c->cmds_tail = NULL;
        cmd_free(k);
    }
    return 0;
}

static int send_cmd(cluster_t *c, cmd_t *k)
{
    Oak__Cluster__V1__Command m = OAK__CLUSTER__V1__COMMAND__INIT;
    m.seq = k->seq;
    m.kind = k->kind == CMD_PLACE ? OAK__CLUSTER__V1__COMMAND__KIND__PLACE
                                  : OAK__CLUSTER__V1__COMMAND__KIND__REMOVE;
    m.service_id = k->service_id;
    m.instance_number = k->instance_number;
    m.service_json = k->service_json ? k->service_json : (char *)"";
    m.generation = k->generation;
    return oak_grpc_stream_send(c->stream, &m.base);
}

void clusters_flush(root_t *r, cluster_t *c)
{
    if (!c->stream)
        return;
    for (cmd_t *k = c->cmds; k; k = k->next) {
        if (k->sent)
            continue;
        if (send_cmd(c, k) < 0) {
            log_warn("cluster %s: cannot send command %" PRIu64 "; will resend on reconnect",
                     c->name, k->seq);
            return;
        }
        k->sent = true;
    }
    (void)r;
}

void clusters_attach_stream(root_t *r, cluster_t *c, oak_grpc_stream_t *s, uint64_t after_seq)
{
    if (c->stream && c->stream != s)
        oak_grpc_stream_finish(c->stream, GRPC_STATUS_ABORTED, "superseded by a newer stream");
    c->stream = s;
    c->last_seen = oak_wall_time();
    for (cmd_t *k = c->cmds; k; k = k->next)
        k->sent = k->seq <= after_seq; /* the cluster has these already */
    clusters_flush(r, c);
}

void clusters_detach_stream(root_t *r, cluster_t *c, oak_grpc_stream_t *s)
{
    if (c->stream != s)
        return;
    c->stream = NULL;
    c->last_seen = oak_wall_time();
    for (cmd_t *k = c->cmds; k; k = k->next)
        k->sent = false;
    (void)r;
}
