/* The worker table: a dense array of worker pointers for iteration plus two
 * open-addressing hash maps (linear probing, backward-shift deletion) from
 * id and from host name to the worker. Host names are not unique keys: the
 * host map holds the head of a chain of the workers sharing a host name.
 * Also owns the interpretation of worker information payloads, the
 * reservation arithmetic, the "workers" store documents and the capacity
 * summary sent to the root. Everything here runs on the loop thread; no
 * function blocks except the store calls. */
#include "cluster_orchestrator/workers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define COLL "workers"

/* Upper bounds accepted from payloads (anything larger is ignored). */
#define MAX_CORES  1000000.0
#define MAX_MEM_MB 1e12
#define MAX_GPUS   1000000.0
#define MAX_VIRT   64

typedef struct {
    worker_t **slot;
    size_t cap, n; /* cap is 0 or a power of two */
    bool by_host;
} wmap_t;

struct workers {
    worker_t **v;
    size_t n, cap;
    wmap_t ids, hosts;
};

/* ---- hash maps ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static const char *map_key(const wmap_t *m, const worker_t *w)
{
    return m->by_host ? w->host : w->id;
}

/* Slot index holding key, or SIZE_MAX. */
static size_t map_find(const wmap_t *m, const char *key)
{
    if (m->cap == 0)
        return SIZE_MAX;
    size_t mask = m->cap - 1;
    for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
        if (!m->slot[i])
            return SIZE_MAX;
        if (strcmp(map_key(m, m->slot[i]), key) == 0)
            return i;
    }
}

static void map_put_raw(wmap_t *m, worker_t *w)
{
    size_t mask = m->cap - 1;
    size_t i = hash_str(map_key(m, w)) & mask;
    while (m->slot[i])
        i = (i + 1) & mask;
    m->slot[i] = w;
    m->n++;
}

/* Inserts w under its key, which must not be present. */
static void map_insert(wmap_t *m, worker_t *w)
{
    if ((m->n + 1) * 2 > m->cap) {
        worker_t **old = m->slot;
        size_t oldcap = m->cap;
        m->cap = oldcap ? oldcap * 2 : 16;
        m->slot = xcalloc(m->cap, sizeof(worker_t *));
        m->n = 0;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i])
                map_put_raw(m, old[i]);
        free(old);
    }
    map_put_raw(m, w);
}

/* Empties slot i and shifts the following probe run back over it. */
static void map_erase(wmap_t *m, size_t i)
{
    size_t mask = m->cap - 1;
    m->slot[i] = NULL;
    m->n--;
    for (size_t j = (i + 1) & mask; m->slot[j]; j = (j + 1) & mask) {
        size_t home = hash_str(map_key(m, m->slot[j])) & mask;
        /* move slot j to the hole at i if its home is not in (i, j] */
        bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slot[i] = m->slot[j];
            m->slot[j] = NULL;
            i = j;
        }
    }
}

static void host_link(workers_t *ws, worker_t *w)
{
    w->host_next_ = NULL;
    if (!w->host[0])
        return;
    size_t i = map_find(&ws->hosts, w->host);
    if (i == SIZE_MAX) {
        map_insert(&ws->hosts, w);
        return;
    }
    w->host_next_ = ws->hosts.slot[i];
    ws->hosts.slot[i] = w;
}

static void host_unlink(workers_t *ws, worker_t *w)
{
    if (!w->host[0])
        return;
    size_t i = map_find(&ws->hosts, w->host);
    if (i == SIZE_MAX)
        return;
    worker_t **pp = &ws->hosts.slot[i];
    while (*pp && *pp != w)
        pp = &(*pp)->host_next_;
    if (!*pp)
        return;
    *pp = w->host_next_;
    w->host_next_ = NULL;
    if (!ws->hosts.slot[i])
        map_erase(&ws->hosts, i);
}

/* ---- table ---- */

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void worker_destroy(worker_t *w)
{
    free(w->host);
    free(w->ip);
    free(w->arch);
    strv_free(w->virt, w->nvirt);
    free(w->mqtt_password_hash);
    free(w);
}

workers_t *workers_new(void)
{
    workers_t *ws = xcalloc(1, sizeof(*ws));
    ws->hosts.by_host = true;
    return ws;
}

void workers_free(workers_t *ws)
{
    if (!ws)
        return;
    for (size_t i = 0; i < ws->n; i++)
        worker_destroy(ws->v[i]);
    free(ws->v);
    free(ws->ids.slot);
    free(ws->hosts.slot);
    free(ws);
}

size_t workers_count(const workers_t *ws)
{
    return ws->n;
}

worker_t *workers_at(const workers_t *ws, size_t i)
{
    return i < ws->n ? ws->v[i] : NULL;
}

worker_t *workers_get(const workers_t *ws, const char *id)
{
    if (!id)
        return NULL;
    size_t i = map_find(&ws->ids, id);
    return i == SIZE_MAX ? NULL : ws->ids.slot[i];
}

worker_t *workers_by_host(const workers_t *ws, const char *host)
{
    if (!host || !*host)
        return NULL;
    size_t i = map_find(&ws->hosts, host);
    if (i == SIZE_MAX)
        return NULL;
    for (worker_t *w = ws->hosts.slot[i]; w; w = w->host_next_)
        if (w->online)
            return w;
    return ws->hosts.slot[i];
}

worker_t *workers_add(workers_t *ws, const char *id_or_null, const char *host)
{
    char id[25];
    if (id_or_null && *id_or_null) {
        if (strlen(id_or_null) >= sizeof(id))
            return NULL;
        snprintf(id, sizeof(id), "%s", id_or_null);
        if (workers_get(ws, id))
            return NULL;
    } else {
        do
            oak_store_new_id(id);
        while (workers_get(ws, id));
    }
    worker_t *w = xcalloc(1, sizeof(*w));
    memcpy(w->id, id, sizeof(id));
    w->host = xstrdup(host ? host : "");
    w->ip = xstrdup("");
    w->arch = xstrdup("");
    w->virt = xcalloc(1, sizeof(char *));
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? ws->cap * 2 : 16;
        ws->v = xrealloc(ws->v, ws->cap * sizeof(worker_t *));
    }
    w->slot_ = ws->n;
    ws->v[ws->n++] = w;
    map_insert(&ws->ids, w);
    host_link(ws, w);
    return w;
}

void workers_set_host(workers_t *ws, worker_t *w, const char *host)
{
    host_unlink(ws, w);
    free(w->host);
    w->host = xstrdup(host ? host : "");
    host_link(ws, w);
}

void workers_remove(workers_t *ws, const char *id)
{
    worker_t *w = workers_get(ws, id);
    if (!w)
        return;
    map_erase(&ws->ids, map_find(&ws->ids, w->id));
    host_unlink(ws, w);
    size_t k = w->slot_;
    ws->v[k] = ws->v[--ws->n];
    ws->v[k]->slot_ = k;
    worker_destroy(w);
}

/* ---- information payloads ---- */

const char *worker_norm_virt(const char *virt)
{
    if (!virt || !*virt || strcmp(virt, "docker") == 0)
        return "container";
    return virt;
}

bool worker_has_virt(const worker_t *w, const char *virt)
{
    const char *nv = worker_norm_virt(virt);
    for (size_t i = 0; i < w->nvirt; i++)
        if (strcmp(w->virt[i], nv) == 0)
            return true;
    return false;
}

/* Number value of key when it is a finite number in [lo, hi]. */
static bool get_num(const json_t *o, const char *key, double lo, double hi, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        return false;
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return false;
    *out = d;
    return true;
}

/* Normalised, deduplicated copy of the string elements of arr (at most
 * MAX_VIRT). */
static char **virt_from_json(const json_t *arr, size_t *n)
{
    size_t cnt = json_array_size(arr), k = 0;
    if (cnt > MAX_VIRT)
        cnt = MAX_VIRT;
    char **v = xcalloc(cnt + 1, sizeof(char *));
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s)
            continue;
        s = worker_norm_virt(s);
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = strcmp(v[j], s) == 0;
        if (!dup)
            v[k++] = xstrdup(s);
    }
    *n = k;
    return v;
}

static bool strv_equal(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = xstrdup(s);
}

bool worker_apply_info(worker_t *w, const json_t *info)
{
    if (!json_is_object(info))
        return false;
    const worker_t old = *w;
    double d;
    bool cpu = false;
    if (get_num(info, "cpu_cores", 0, MAX_CORES, &d) || get_num(info, "vcpus", 0, MAX_CORES, &d)) {
        w->cpu_total = (int64_t)llround(d * 1000.0);
        cpu = true;
    }
    if (get_num(info, "cpu_percent", 0, 1e9, &d)) {
        w->cpu_percent = d; /* summed over cores: 100 is one busy core */
        w->res_cpu_new = 0;
        cpu = true;
    }
    if (cpu) {
        /* 1 % of one core is 10 millicores */
        double cap = (double)w->cpu_total / 10.0;
        if (w->cpu_percent > cap)
            w->cpu_percent = cap;
        w->cpu_free = w->cpu_total - (int64_t)llround(w->cpu_percent * 10.0);
    }

    if (get_num(info, "memory_total", 0, MAX_MEM_MB, &d)) {
        w->mem_total = (int64_t)d;
        w->mem_total_known = true;
    }
    if (get_num(info, "memory", 0, MAX_MEM_MB, &d)) {
        w->mem_free = (int64_t)d;
        w->res_mem_new = 0;
    }
    if (w->mem_free > w->mem_total) {
        if (w->mem_total_known)
            w->mem_free = w->mem_total;
        else
            w->mem_total = w->mem_free;
    }

    if (get_num(info, "gpus", 0, MAX_GPUS, &d) || get_num(info, "vgpus", 0, MAX_GPUS, &d))
        w->gpu_total = w->gpu_free = (int)d;

    bool changed = w->cpu_total != old.cpu_total || w->mem_total != old.mem_total ||
                   w->gpu_total != old.gpu_total || worker_free_cpu(w) != worker_free_cpu(&old) ||
                   worker_free_mem(w) != worker_free_mem(&old) ||
                   worker_free_gpu(w) != worker_free_gpu(&old);

    const char *s = oak_json_str(info, "architecture");
    if (s && *s && strcmp(s, w->arch) != 0) {
        set_str(&w->arch, s);
        changed = true;
    }
    s = oak_json_str(info, "ip");
    if (s && *s)
        set_str(&w->ip, s);

    json_t *virt = json_object_get(info, "virtualization");
    if (json_is_array(virt)) {
        size_t n;
        char **v = virt_from_json(virt, &n);
        if (strv_equal(v, n, w->virt, w->nvirt)) {
            strv_free(v, n);
        } else {
            strv_free(w->virt, w->nvirt);
            w->virt = v;
            w->nvirt = n;
            changed = true;
        }
    }
    return changed;
}

static int64_t clamp_add(int64_t cur, int64_t delta, int sign)
{
    if (delta < 0)
        delta = 0;
    int64_t r = sign >= 0 ? cur + delta : cur - delta;
    return r < 0 ? 0 : r;
}

void worker_reserve(worker_t *w, int64_t cpu, int64_t mem, int gpu, int sign)
{
    w->res_cpu = clamp_add(w->res_cpu, cpu, sign);
    w->res_mem = clamp_add(w->res_mem, mem, sign);
    w->res_gpu = (int)clamp_add(w->res_gpu, gpu, sign);
    w->res_cpu_new = clamp_add(w->res_cpu_new, cpu, sign);
    w->res_mem_new = clamp_add(w->res_mem_new, mem, sign);
}

static int64_t free_of(int64_t reported, int64_t reserved_since, int64_t total, int64_t reserved)
{
    int64_t a = reported - reserved_since, b = total - reserved;
    int64_t f = a < b ? a : b;
    return f < 0 ? 0 : f;
}

int64_t worker_free_cpu(const worker_t *w)
{
    return free_of(w->cpu_free, w->res_cpu_new, w->cpu_total, w->res_cpu);
}

int64_t worker_free_mem(const worker_t *w)
{
    return free_of(w->mem_free, w->res_mem_new, w->mem_total, w->res_mem);
}

int worker_free_gpu(const worker_t *w)
{
    /* no GPU usage is reported: gpu_free is gpu_total */
    return (int)free_of(w->gpu_free, 0, w->gpu_total, w->res_gpu);
}

/* ---- persistence ---- */

static json_t *strv_to_json(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *worker_doc(const worker_t *w)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:f, s:I, s:I, s:b, s:i, s:i, s:f, s:o}",
                     "_id", w->id, "host", w->host, "ip", w->ip, "architecture", w->arch,
                     "virtualization", strv_to_json(w->virt, w->nvirt), "cpu_millis_total",
                     (json_int_t)w->cpu_total, "cpu_millis_free", (json_int_t)w->cpu_free,
                     "cpu_percent", w->cpu_percent, "memory_mb_total", (json_int_t)w->mem_total,
                     "memory_mb_free", (json_int_t)w->mem_free, "memory_total_known",
                     w->mem_total_known, "gpu_total", w->gpu_total, "gpu_free", w->gpu_free,
                     "last_seen", w->last_seen, "mqtt_password_hash",
                     w->mqtt_password_hash ? json_string(w->mqtt_password_hash) : json_null());
}

static int64_t nonneg(const json_t *d, const char *key)
{
    long long v = oak_json_int(d, key, 0);
    return v < 0 ? 0 : (int64_t)v;
}

int workers_load(workers_t *ws, oak_store_t *st, oak_err_t *err)
{
    json_t *docs = NULL;
    if (oak_store_find(st, COLL, NULL, NULL, &docs, err) < 0)
        return -1;
    json_auto_t *all = docs;
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d)
    {
        const char *id = oak_json_str(d, "_id");
        if (!id || !*id)
            continue;
        worker_t *w = workers_add(ws, id, oak_json_str(d, "host"));
        if (!w)
            continue;
        const char *s = oak_json_str(d, "ip");
        if (s)
            set_str(&w->ip, s);
        if ((s = oak_json_str(d, "architecture")))
            set_str(&w->arch, s);
        strv_free(w->virt, w->nvirt);
        w->virt = virt_from_json(json_object_get(d, "virtualization"), &w->nvirt);
        w->cpu_total = nonneg(d, "cpu_millis_total");
        w->cpu_free = nonneg(d, "cpu_millis_free");
        double pct = oak_json_num(d, "cpu_percent", 0);
        w->cpu_percent = isfinite(pct) && pct >= 0 && pct * 10.0 <= (double)w->cpu_total ? pct : 0;
        w->mem_total = nonneg(d, "memory_mb_total");
        w->mem_free = nonneg(d, "memory_mb_free");
        w->mem_total_known = oak_json_bool(d, "memory_total_known", false);
        w->gpu_total = (int)nonneg(d, "gpu_total");
        w->gpu_free = (int)nonneg(d, "gpu_free");
        w->last_seen = oak_json_num(d, "last_seen", 0);
        if ((s = oak_json_str(d, "mqtt_password_hash")))
            w->mqtt_password_hash = xstrdup(s);
        w->online = false;
        w->unconfirmed = true;
    }
    return 0;
}

int workers_save(oak_store_t *st, const worker_t *w, oak_err_t *err)
{
    json_auto_t *doc = worker_doc(w);
    return oak_store_upsert(st, COLL, doc, err);
}

int workers_delete(oak_store_t *st, const char *id, oak_err_t *err)
{
    oak_err_t e = OAK_ERR_INIT;
    if (oak_store_delete(st, COLL, id, 0, &e) == 0 || e.code == OAK_E_NOT_FOUND) {
        oak_err_clear(&e);
        return 0;
    }
    int rc = oak_err_set(err, e.code, "%s", e.msg);
    if (err)
        err->errnum = e.errnum;
    oak_err_clear(&e);
    return rc;
}

/* ---- capacity summary ---- */

typedef struct {
    const char *arch;
    const char *virt[MAX_VIRT];
    size_t nvirt;
    int64_t cpu_total, cpu_free, mem_total, mem_free, max_cpu, max_mem;
    int64_t gpu_total, gpu_free;
    int workers;
} arch_acc_t;

static void virt_union(const char **set, size_t *n, const worker_t *w)
{
    for (size_t i = 0; i < w->nvirt && *n < MAX_VIRT; i++) {
        bool dup = false;
        for (size_t j = 0; j < *n && !dup; j++)
            dup = strcmp(set[j], w->virt[i]) == 0;
        if (!dup)
            set[(*n)++] = w->virt[i];
    }
}

static json_t *virt_json(const char **set, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(set[i]));
    return a;
}

static int clamp_int(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int)v;
}

json_t *workers_capacity(const workers_t *ws)
{
    const char *virt[MAX_VIRT];
    size_t nvirt = 0, narch = 0, archcap = 0;
    _cleanup_free_ arch_acc_t *acc = NULL;
    int64_t cpu_total = 0, cpu_free = 0, mem_total = 0, mem_free = 0, gpu_total = 0, gpu_free = 0;
    int64_t max_cpu = 0, max_mem = 0;
    int max_gpu = 0, online = 0;
    double cpu_pct = 0, mem_pct = 0;
    for (size_t i = 0; i < ws->n; i++) {
        const worker_t *w = ws->v[i];
        if (!w->online)
            continue;
        int64_t fc = worker_free_cpu(w), fm = worker_free_mem(w);
        int fg = worker_free_gpu(w);
        online++;
        cpu_total += w->cpu_total;
        cpu_free += fc;
        mem_total += w->mem_total;
        mem_free += fm;
        gpu_total += w->gpu_total;
        gpu_free += fg;
        max_cpu = fc > max_cpu ? fc : max_cpu;
        max_mem = fm > max_mem ? fm : max_mem;
        max_gpu = fg > max_gpu ? fg : max_gpu;
        /* the cluster's figure is Oakestra's: the average busy share of a worker */
        if (w->cpu_total > 0)
            cpu_pct += w->cpu_percent * 10.0 / (double)w->cpu_total * 100.0;
        if (w->mem_total > 0)
            mem_pct += 100.0 * (double)(w->mem_total - w->mem_free) / (double)w->mem_total;
        virt_union(virt, &nvirt, w);

        arch_acc_t *a = NULL;
        for (size_t k = 0; k < narch && !a; k++)
            if (strcmp(acc[k].arch, w->arch) == 0)
                a = &acc[k];
        if (!a) {
            if (narch == archcap) {
                archcap = archcap ? archcap * 2 : 4;
                acc = xrealloc(acc, archcap * sizeof(*acc));
            }
            a = &acc[narch++];
            memset(a, 0, sizeof(*a));
            a->arch = w->arch;
        }
        a->cpu_total += w->cpu_total;
        a->cpu_free += fc;
        a->mem_total += w->mem_total;
        a->mem_free += fm;
        a->gpu_total += w->gpu_total;
        a->gpu_free += fg;
        a->max_cpu = fc > a->max_cpu ? fc : a->max_cpu;
        a->max_mem = fm > a->max_mem ? fm : a->max_mem;
        a->workers++;
        virt_union(a->virt, &a->nvirt, w);
    }
    json_t *per_arch = json_array();
    for (size_t k = 0; k < narch; k++) {
        arch_acc_t *a = &acc[k];
        json_array_append_new(
            per_arch,
            json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:I, s:I}", "architecture",
                      a->arch, "virtualization", virt_json(a->virt, a->nvirt), "cpu_millis_total",
                      (json_int_t)a->cpu_total, "cpu_millis_free", (json_int_t)a->cpu_free,
                      "memory_mb_total", (json_int_t)a->mem_total, "memory_mb_free",
                      (json_int_t)a->mem_free, "gpu_total", clamp_int(a->gpu_total), "gpu_free",
                      clamp_int(a->gpu_free), "workers", a->workers, "max_worker_cpu_free",
                      (json_int_t)a->max_cpu, "max_worker_mem_free", (json_int_t)a->max_mem));
    }
    double n = online > 0 ? (double)online : 1.0;
    cpu_pct /= n;
    mem_pct /= n;
    return json_pack("{s:I, s:I, s:I, s:I, s:i, s:i, s:i, s:o, s:o, s:f, s:f, s:I, s:I, s:i}",
                     "cpu_millis_total", (json_int_t)cpu_total, "cpu_millis_free",
                     (json_int_t)cpu_free, "memory_mb_total", (json_int_t)mem_total,
                     "memory_mb_free", (json_int_t)mem_free, "gpu_total", clamp_int(gpu_total),
                     "gpu_free", clamp_int(gpu_free), "active_workers", online, "virtualization",
                     virt_json(virt, nvirt), "per_arch", per_arch, "cpu_percent",
                     isfinite(cpu_pct) ? cpu_pct : 0.0, "memory_percent",
                     isfinite(mem_pct) ? mem_pct : 0.0, "max_worker_cpu_free", (json_int_t)max_cpu,
                     "max_worker_mem_free", (json_int_t)max_mem, "max_worker_gpu_free", max_gpu);
}
