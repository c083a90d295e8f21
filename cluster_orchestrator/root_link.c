/* The cluster manager's link to the root. It owns the gRPC channel to the
 * system-manager, the cluster's session, the command stream and the queue
 * of reports not yet delivered.
 *
 * Threads. Two link threads talk to the root with the blocking gRPC client;
 * everything the app sees happens on the loop thread:
 *  - the command thread joins (a fresh session on every (re)connect), opens
 *    Commands with after_seq = the applied sequence, and posts the join, the
 *    connection state and every command to the loop; it reconnects with
 *    exponential backoff (0.5 s -> 10 s, +-20 % jitter);
 *  - the report thread sends the queued report, or a heartbeat with the last
 *    capacity every report_interval_ms, with unary Report calls, retrying
 *    the same report on transport failures and asking the command thread for
 *    a new join on UNAUTHENTICATED.
 * The loop thread owns the store and the app-facing state (applied and
 * delivered sequences, cluster id, connection state). The fields the threads
 * share sit under `mu`. Events posted to the loop hold a reference on the
 * link, so they may run after root_link_stop (they are then dropped). */
#include "cluster_orchestrator/root_link.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_grpc.h"
#include "lib/oak_json.h"
#include "lib/oak_log.h"

#define SVC              "/oak.cluster.v1.ClusterService/"
#define META_COLL        "meta"
#define META_ID          "root_link"
#define LINK_VERSION     "oak-cluster-manager/1"
#define CALL_TIMEOUT_MS  5000L
#define PROBE_MS         300L  /* a fresh stream alive this long counts as open */
#define READ_MS          1000L /* stream read slice between checks of the flags */
#define BACKOFF_MIN_MS   500L
#define BACKOFF_MAX_MS   10000L
#define DEFAULT_INTERVAL 5000L
/* Statuses kept while the root is unreachable before older statuses of the
 * same instance are dropped (the newest of each instance is kept). */
#define MAX_QUEUED_STATUSES 4096
#define MAX_QUEUED_LOGS     64

typedef Oak__Cluster__V1__Command command_t;

/* A report not yet delivered: reports merge into one (see merge()). */
typedef struct {
    json_t *cap;   /* object or NULL */
    json_t *insts; /* array, never NULL */
    bool full;
    json_t *logs;    /* array of LogsResult objects, or NULL */
    json_t *workers; /* the whole worker list, or NULL: unchanged */
} report_t;

struct root_link {
    /* set at start, read-only afterwards */
    oak_loop_t *loop;
    oak_store_t *store;
    root_link_cb_t cb;
    void *ctx;
    char *target, *token, *name, *location;
    int manager_port, network_port;
    long interval_ms, backoff_max_ms;
    oak_grpc_channel_t *ch;
    pthread_t cmd_thread, rep_thread;
    bool cmd_started, rep_started;
    int refs; /* atomic: the app's, plus one per event posted to the loop */

    /* loop thread only */
    bool dead; /* root_link_stop was called */
    bool connected;
    bool state_known; /* on_state was called at least once */
    oak_code_t state_code;
    uint64_t applied;
    uint64_t delivered, delivered_gen; /* last seq delivered on stream of join delivered_gen */
    char cluster_id[OAK_STORE_ID_MAX + 1];
    char *session;

    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; signalled on any change below */
    bool stopping;
    char s_cluster_id[OAK_STORE_ID_MAX + 1];
    char *s_session;
    uint64_t join_gen;  /* bumped by every successful join */
    uint64_t ready_gen; /* the join the loop has taken in (reports may use it) */
    bool rejoin;        /* the report thread found the session refused */
    uint64_t s_applied;
    oak_grpc_client_stream_t *stream;
    report_t *pending;
};

/* ---------------------------------------------------------------- helpers */

static long next_backoff(const root_link_t *l, long cur)
{
    long n = cur <= 0 ? BACKOFF_MIN_MS : cur * 2;
    return n > l->backoff_max_ms ? l->backoff_max_ms : n;
}

static long jitter(long ms, unsigned *seed)
{
    return ms * (80 + (long)(rand_r(seed) % 41)) / 100;
}

/* Waits on l->cond until the monotonic time until_ms (0: until signalled).
 * Called with mu held. */
static void wait_until(root_link_t *l, uint64_t until_ms)
{
    if (until_ms == 0) {
        pthread_cond_wait(&l->cond, &l->mu);
        return;
    }
    uint64_t now = oak_now_ms();
    if (until_ms <= now)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (until_ms - now) * 1000000ULL;
    ts.tv_sec += (time_t)(ns / 1000000000ULL);
    ts.tv_nsec = (long)(ns % 1000000000ULL);
    pthread_cond_timedwait(&l->cond, &l->mu, &ts);
}

static bool stopping(root_link_t *l)
{
    pthread_mutex_lock(&l->mu);
    bool s = l->stopping;
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void report_free(report_t *r)
{
    if (!r)
        return;
    json_decref(r->cap);
    json_decref(r->insts);
    json_decref(r->logs);
    json_decref(r->workers);
    free(r);
}

/* Keeps the last status of each (service_id, instance_number), in the order
 * of those last statuses. */
static void compact(report_t *r)
{
    json_auto_t *seen = json_object();
    json_auto_t *rev = json_array();
    for (size_t i = json_array_size(r->insts); i-- > 0;) {
        json_t *s = json_array_get(r->insts, i);
        _cleanup_free_ char *key = xasprintf("%s/%lld", oak_json_str(s, "service_id") ?: "",
                                             oak_json_int(s, "instance_number", 0));
        if (json_object_get(seen, key))
            continue;
        json_object_set_new(seen, key, json_true());
        json_array_append(rev, s);
    }
    json_t *out = json_array();
    for (size_t i = json_array_size(rev); i-- > 0;)
        json_array_append(out, json_array_get(rev, i));
    json_decref(r->insts);
    r->insts = out;
}

/* Folds src (consumed) into dst, which was queued earlier: the newest
 * capacity wins, statuses keep their order, a full state replaces the
 * statuses before it. */
static void merge(report_t *dst, report_t *src)
{
    if (src->cap) {
        json_decref(dst->cap);
        dst->cap = oak_steal(&src->cap);
    }
    if (src->full) {
        json_decref(dst->insts);
        dst->insts = oak_steal(&src->insts);
        dst->full = true;
    } else {
        json_array_extend(dst->insts, src->insts);
    }
    if (json_array_size(dst->insts) > MAX_QUEUED_STATUSES)
        compact(dst);
    if (src->workers) {
        json_decref(dst->workers);
        dst->workers = oak_steal(&src->workers);
    }
    if (src->logs) {
        if (!dst->logs)
            dst->logs = json_array();
        json_array_extend(dst->logs, src->logs);
        /* answers nobody can wait for any more are dropped first */
        while (json_array_size(dst->logs) > MAX_QUEUED_LOGS)
            json_array_remove(dst->logs, 0);
    }
    report_free(src);
}

static void link_ref(root_link_t *l)
{
    __atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
}

static void link_unref(root_link_t *l)
{
    if (__atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    oak_grpc_channel_free(l->ch);
    report_free(l->pending);
    free(l->s_session);
    free(l->session);
    free(l->target);
    free(l->token);
    free(l->name);
    free(l->location);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Writes meta/root_link. Loop thread. */
static void persist(root_link_t *l)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *d = json_pack("{s:s, s:s, s:s, s:I}", "_id", META_ID, "cluster_id", l->cluster_id,
                               "session_token", l->session ? l->session : "", "applied_seq",
                               (json_int_t)l->applied);
    if (oak_store_upsert(l->store, META_COLL, d, &err) < 0) {
        log_warn("root link: cannot save the applied command sequence %" PRIu64 ": %s", l->applied,
                 err.msg);
        oak_err_clear(&err);
    }
}

/* ---------------------------------------------------------------- events */

typedef enum { EV_JOINED, EV_STATE, EV_COMMAND } ev_kind_t;

typedef struct {
    root_link_t *l;
    ev_kind_t kind;
    uint64_t gen; /* EV_JOINED, EV_COMMAND: the join it belongs to */
    /* EV_JOINED */
    char cluster_id[OAK_STORE_ID_MAX + 1];
    char *session;
    bool reset; /* the applied sequence is ahead of the root or of another cluster id */
    uint64_t reset_to;
    /* EV_STATE */
    bool connected;
    oak_code_t code;
    char *detail;
    /* EV_COMMAND */
    command_t *cmd;
} event_t;

static void ev_joined(root_link_t *l, event_t *ev)
{
    if (strcmp(l->cluster_id, ev->cluster_id) != 0 && l->cluster_id[0])
        log_warn("root link: the root now knows this cluster as %s (was %s)", ev->cluster_id,
                 l->cluster_id);
    snprintf(l->cluster_id, sizeof(l->cluster_id), "%s", ev->cluster_id);
    free(l->session);
    l->session = oak_steal(&ev->session);
    if (ev->reset && l->applied != ev->reset_to) {
        log_warn("root link: applied command sequence %" PRIu64 " reset to %" PRIu64
                 " (the root does not know the later ones)",
                 l->applied, ev->reset_to);
        l->applied = ev->reset_to;
        l->delivered = 0;
    }
    persist(l);
    pthread_mutex_lock(&l->mu);
    l->s_applied = l->applied;
    l->ready_gen = ev->gen;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

static void ev_state(root_link_t *l, event_t *ev)
{
    bool changed = !l->state_known || ev->connected != l->connected ||
                   (!ev->connected && ev->code != l->state_code);
    l->state_known = true;
    l->connected = ev->connected;
    l->state_code = ev->code;
    if (!changed)
        return;
    if (ev->connected)
        log_info("root link: %s", ev->detail);
    else
        log_warn("root link: %s", ev->detail);
    if (l->cb.on_state)
        l->cb.on_state(ev->connected, ev->detail, l->ctx);
    if (ev->connected && !l->dead && l->cb.on_resync)
        l->cb.on_resync(l->ctx);
}

static void ev_command(root_link_t *l, event_t *ev)
{
    const command_t *c = ev->cmd;
    if (c->kind == OAK__CLUSTER__V1__COMMAND__KIND__LOGS) { /* not sequenced */
        if (l->cb.on_logs)
            l->cb.on_logs(c, l->ctx);
        return;
    }
    if (ev->gen != l->delivered_gen) {
        l->delivered_gen = ev->gen;
        l->delivered = 0;
    }
    if (c->seq <= l->applied || c->seq <= l->delivered) {
        log_debug("root link: command %" PRIu64 " already applied or delivered", c->seq);
        return;
    }
    l->delivered = c->seq;
    if (l->cb.on_command)
        l->cb.on_command(c, l->ctx);
}

static void on_event(oak_loop_t *loop, void *data)
{
    event_t *ev = data;
    root_link_t *l = ev->l;
    if (!l->dead) {
        switch (ev->kind) {
        case EV_JOINED:
            ev_joined(l, ev);
            break;
        case EV_STATE:
            ev_state(l, ev);
            break;
        case EV_COMMAND:
            ev_command(l, ev);
            break;
        }
    }
    free(ev->session);
    free(ev->detail);
    if (ev->cmd)
        protobuf_c_message_free_unpacked(&ev->cmd->base, NULL);
    free(ev);
    link_unref(l);
}

static event_t *ev_new(root_link_t *l, ev_kind_t kind)
{
    event_t *ev = xcalloc(1, sizeof(*ev));
    ev->l = l;
    ev->kind = kind;
    return ev;
}

static void ev_post(event_t *ev)
{
    link_ref(ev->l);
    oak_loop_post(ev->l->loop, on_event, ev);
}

static void post_state(root_link_t *l, bool connected, oak_code_t code, char *detail)
{
    event_t *ev = ev_new(l, EV_STATE);
    ev->connected = connected;
    ev->code = code;
    ev->detail = detail;
    ev_post(ev);
}

/* ---------------------------------------------------------------- command thread */

/* Sleeps about ms (jittered); false once the link is stopping. */
static bool backoff_wait(root_link_t *l, long ms, unsigned *seed)
{
    pthread_mutex_lock(&l->mu);
    if (ms > 0) {
        uint64_t until = oak_now_ms() + (uint64_t)jitter(ms, seed);
        while (!l->stopping && oak_now_ms() < until)
            wait_until(l, until);
    }
    bool go = !l->stopping;
    pthread_mutex_unlock(&l->mu);
    return go;
}

/* Joins; on success posts EV_JOINED and returns the join's generation and
 * the sequence to resume the command stream after. */
static int join(root_link_t *l, uint64_t *gen_out, uint64_t *after_out, oak_err_t *err)
{
    Oak__Cluster__V1__RegisterRequest req = OAK__CLUSTER__V1__REGISTER_REQUEST__INIT;
    req.join_token = l->token;
    req.cluster_name = l->name;
    req.cluster_location = l->location;
    req.manager_port = l->manager_port;
    req.network_component_port = l->network_port;
    req.version = LINK_VERSION;
    _cleanup_pb_ Oak__Cluster__V1__RegisterReply *rep = NULL;
    if (oak_grpc_unary(l->ch, SVC "Join", &req.base, &oak__cluster__v1__register_reply__descriptor,
                       CALL_TIMEOUT_MS, (ProtobufCMessage **)&rep, err) < 0)
        return -1;
    if (!rep->cluster_id || !*rep->cluster_id || strlen(rep->cluster_id) > OAK_STORE_ID_MAX ||
        !rep->session_token || !*rep->session_token)
        return oak_err_set(err, OAK_E_INTERNAL,
                           "the root's join reply lacks a cluster id or a "
                           "session token");
    event_t *ev = ev_new(l, EV_JOINED);
    pthread_mutex_lock(&l->mu);
    bool other = l->s_cluster_id[0] && strcmp(l->s_cluster_id, rep->cluster_id) != 0;
    uint64_t after = other ? 0 : l->s_applied;
    ev->reset = other;
    if (after > rep->last_seq) {
        after = rep->last_seq;
        ev->reset = true;
    }
    snprintf(l->s_cluster_id, sizeof(l->s_cluster_id), "%s", rep->cluster_id);
    free(l->s_session);
    l->s_session = xstrdup(rep->session_token);
    ev->gen = ++l->join_gen;
    l->rejoin = false;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    snprintf(ev->cluster_id, sizeof(ev->cluster_id), "%s", rep->cluster_id);
    ev->session = xstrdup(rep->session_token);
    ev->reset_to = after;
    *gen_out = ev->gen;
    *after_out = after;
    ev_post(ev);
    return 0;
}

/* Runs one command stream until it fails, the link stops or a rejoin is
 * requested. *opened: the stream was up (see PROBE_MS). err: why it ended. */
static void run_stream(root_link_t *l, uint64_t gen, uint64_t after, bool *opened, oak_err_t *err)
{
    Oak__Cluster__V1__CommandsRequest req = OAK__CLUSTER__V1__COMMANDS_REQUEST__INIT;
    char id[OAK_STORE_ID_MAX + 1];
    *opened = false;
    pthread_mutex_lock(&l->mu);
    snprintf(id, sizeof(id), "%s", l->s_cluster_id);
    _cleanup_free_ char *session = xstrdup(l->s_session);
    pthread_mutex_unlock(&l->mu);
    req.cluster_id = id;
    req.session_token = session;
    req.after_seq = after;
    oak_grpc_client_stream_t *s = oak_grpc_stream_open(l->ch, SVC "Commands", &req.base,
                                                       &oak__cluster__v1__command__descriptor, err);
    if (!s)
        return;
    pthread_mutex_lock(&l->mu);
    bool quit = l->stopping || l->rejoin;
    if (!quit)
        l->stream = s;
    pthread_mutex_unlock(&l->mu);
    if (quit) {
        oak_grpc_stream_close(s);
        oak_err_set(err, OAK_E_UNAVAILABLE, "the session must be renewed");
        return;
    }
    for (;;) {
        command_t *cmd = NULL;
        int rc =
            oak_grpc_stream_read(s, *opened ? READ_MS : PROBE_MS, (ProtobufCMessage **)&cmd, err);
        if (rc == 0) {
            oak_err_set(err, OAK_E_UNAVAILABLE, "the root ended the command stream");
            break;
        }
        if (rc < 0 && err->code != OAK_E_TIMEOUT)
            break;
        oak_err_clear(err);
        if (!*opened) {
            *opened = true;
            post_state(l, true, OAK_E_OK,
                       xasprintf("connected to %s as cluster %s (commands after %" PRIu64 ")",
                                 l->target, id, after));
        }
        if (rc == 1) {
            event_t *ev = ev_new(l, EV_COMMAND);
            ev->gen = gen;
            ev->cmd = cmd;
            ev_post(ev);
        }
        pthread_mutex_lock(&l->mu);
        quit = l->stopping || l->rejoin;
        pthread_mutex_unlock(&l->mu);
        if (quit) {
            oak_err_set(err, OAK_E_UNAVAILABLE, "the root refused the session; joining again");
            break;
        }
    }
    pthread_mutex_lock(&l->mu);
    l->stream = NULL;
    pthread_mutex_unlock(&l->mu);
    oak_grpc_stream_close(s);
}

static bool join_refused(oak_code_t code)
{
    return code == OAK_E_UNAUTH || code == OAK_E_FORBIDDEN || code == OAK_E_INVALID;
}

static void *cmd_main(void *arg)
{
    root_link_t *l = arg;
    unsigned seed = (unsigned)oak_now_us() ^ (unsigned)(uintptr_t)l;
    long backoff = 0;
    while (backoff_wait(l, backoff, &seed)) {
        oak_err_t err = OAK_ERR_INIT;
        uint64_t gen = 0, after = 0;
        log_debug("root link: joining %s", l->target);
        if (join(l, &gen, &after, &err) < 0) {
            char *detail =
                join_refused(err.code)
                    ? xasprintf("the root at %s refused cluster '%s' (check the join token): %s",
                                l->target, l->name, err.msg)
                    : xasprintf("cannot join the root at %s: %s", l->target, err.msg);
            log_debug("root link: join failed: %s", err.msg);
            post_state(l, false, err.code, detail);
            oak_err_clear(&err);
            backoff = next_backoff(l, backoff);
            continue;
        }
        bool opened = false;
        run_stream(l, gen, after, &opened, &err);
        if (stopping(l))
            break;
        post_state(l, false, err.code, xasprintf("command stream from %s: %s", l->target, err.msg));
        oak_err_clear(&err);
        backoff = opened ? BACKOFF_MIN_MS : next_backoff(l, backoff);
    }
    return NULL;
}

/* ---------------------------------------------------------------- report thread */

static char *jstr(const json_t *o, const char *key)
{
    const char *s = oak_json_str(o, key);
    return (char *)(s ? s : "");
}

/* The strings of a JSON array (others skipped); borrowed from it. */
static char **str_array(const json_t *a, size_t *n)
{
    *n = 0;
    size_t cap = json_array_size(a);
    if (!cap)
        return NULL;
    char **v = xcalloc(cap, sizeof(*v));
    size_t i;
    json_t *s;
    json_array_foreach(a, i, s)
    {
        if (json_is_string(s))
            v[(*n)++] = (char *)json_string_value(s);
    }
    return v;
}

/* A ReportRequest whose strings are borrowed from the report's JSON. */
typedef struct {
    Oak__Cluster__V1__ReportRequest req;
    Oak__Cluster__V1__Capacity cap;
    Oak__Cluster__V1__ArchCapacity *arch;
    Oak__Cluster__V1__ArchCapacity **archp;
    Oak__Cluster__V1__InstanceStatus *st;
    Oak__Cluster__V1__InstanceStatus **stp;
    Oak__Cluster__V1__LogsResult *lg;
    Oak__Cluster__V1__LogsResult **lgp;
    Oak__Cluster__V1__Worker *wk;
    Oak__Cluster__V1__Worker **wkp;
} msg_t;

/* Logs results and the worker list of r into m (pointers into r). */
static void msg_build_extra(msg_t *m, const report_t *r)
{
    size_t n = json_array_size(r->logs);
    if (n) {
        m->lg = xcalloc(n, sizeof(*m->lg));
        m->lgp = xcalloc(n, sizeof(*m->lgp));
        size_t i;
        json_t *o;
        json_array_foreach(r->logs, i, o)
        {
            Oak__Cluster__V1__LogsResult init = OAK__CLUSTER__V1__LOGS_RESULT__INIT;
            Oak__Cluster__V1__LogsResult *x = &m->lg[m->req.n_logs];
            *x = init;
            x->request_id = jstr(o, "request_id");
            x->ok = json_is_true(json_object_get(o, "ok"));
            x->error = jstr(o, "error");
            x->error_code = (int32_t)oak_json_int(o, "error_code", 0);
            x->node_id = jstr(o, "node_id");
            const json_t *lv = json_object_get(o, "logs");
            x->logs.data = (uint8_t *)(json_is_string(lv) ? json_string_value(lv) : "");
            x->logs.len = json_is_string(lv) ? json_string_length(lv) : 0;
            x->truncated = json_is_true(json_object_get(o, "truncated"));
            m->lgp[m->req.n_logs++] = x;
        }
        m->req.logs = m->lgp;
    }
    if (r->workers) {
        m->req.workers_included = true;
        n = json_array_size(r->workers);
        m->wk = xcalloc(n ? n : 1, sizeof(*m->wk));
        m->wkp = xcalloc(n ? n : 1, sizeof(*m->wkp));
        size_t i;
        json_t *o;
        json_array_foreach(r->workers, i, o)
        {
            Oak__Cluster__V1__Worker init = OAK__CLUSTER__V1__WORKER__INIT;
            Oak__Cluster__V1__Worker *x = &m->wk[m->req.n_workers];
            *x = init;
            x->node_id = jstr(o, "node_id");
            x->name = jstr(o, "name");
            x->ip = jstr(o, "ip");
            x->active = json_is_true(json_object_get(o, "active"));
            x->architecture = jstr(o, "architecture");
            x->cpu_cores = (int32_t)oak_json_int(o, "cpu_cores", 0);
            x->cpu_percent = oak_json_num(o, "cpu_percent", 0);
            x->memory_mb = oak_json_int(o, "memory_mb", 0);
            x->memory_free_mb = oak_json_int(o, "memory_free_mb", 0);
            x->instances = (int32_t)oak_json_int(o, "instances", 0);
            x->last_seen = oak_json_num(o, "last_seen", 0);
            m->wkp[m->req.n_workers++] = x;
        }
        m->req.workers = m->wkp;
    }
}

static void msg_build(msg_t *m, const json_t *cap, const json_t *insts, bool full)
{
    Oak__Cluster__V1__ReportRequest rinit = OAK__CLUSTER__V1__REPORT_REQUEST__INIT;
    Oak__Cluster__V1__Capacity cinit = OAK__CLUSTER__V1__CAPACITY__INIT;
    memset(m, 0, sizeof(*m));
    m->req = rinit;
    m->cap = cinit;
    m->req.full_state = full;
    if (json_is_object(cap)) {
        Oak__Cluster__V1__Capacity *c = &m->cap;
        c->cpu_millis_total = oak_json_int(cap, "cpu_millis_total", 0);
        c->cpu_millis_free = oak_json_int(cap, "cpu_millis_free", 0);
        c->memory_mb_total = oak_json_int(cap, "memory_mb_total", 0);
        c->memory_mb_free = oak_json_int(cap, "memory_mb_free", 0);
        c->gpu_total = (int32_t)oak_json_int(cap, "gpu_total", 0);
        c->gpu_free = (int32_t)oak_json_int(cap, "gpu_free", 0);
        c->active_workers = (int32_t)oak_json_int(cap, "active_workers", 0);
        c->virtualization = str_array(json_object_get(cap, "virtualization"), &c->n_virtualization);
        c->cpu_percent = oak_json_num(cap, "cpu_percent", 0);
        c->memory_percent = oak_json_num(cap, "memory_percent", 0);
        const json_t *pa = json_object_get(cap, "per_arch");
        size_t n = json_array_size(pa);
        if (n) {
            m->arch = xcalloc(n, sizeof(*m->arch));
            m->archp = xcalloc(n, sizeof(*m->archp));
            size_t i;
            json_t *a;
            json_array_foreach(pa, i, a)
            {
                Oak__Cluster__V1__ArchCapacity ainit = OAK__CLUSTER__V1__ARCH_CAPACITY__INIT;
                Oak__Cluster__V1__ArchCapacity *x = &m->arch[c->n_per_arch];
                if (!json_is_object(a))
                    continue;
                *x = ainit;
                x->architecture = jstr(a, "architecture");
                x->virtualization =
                    str_array(json_object_get(a, "virtualization"), &x->n_virtualization);
                x->cpu_millis_total = oak_json_int(a, "cpu_millis_total", 0);
                x->cpu_millis_free = oak_json_int(a, "cpu_millis_free", 0);
                x->memory_mb_total = oak_json_int(a, "memory_mb_total", 0);
                x->memory_mb_free = oak_json_int(a, "memory_mb_free", 0);
                x->gpu_total = (int32_t)oak_json_int(a, "gpu_total", 0);
                x->gpu_free = (int32_t)oak_json_int(a, "gpu_free", 0);
                x->workers = (int32_t)oak_json_int(a, "workers", 0);
                m->archp[c->n_per_arch++] = x;
            }
            c->per_arch = m->archp;
        }
        m->req.capacity = c;
    }
    size_t n = json_array_size(insts);
    if (n) {
        m->st = xcalloc(n, sizeof(*m->st));
        m->stp = xcalloc(n, sizeof(*m->stp));
        size_t i;
        json_t *s;
        json_array_foreach(insts, i, s)
        {
            Oak__Cluster__V1__InstanceStatus sinit = OAK__CLUSTER__V1__INSTANCE_STATUS__INIT;
            Oak__Cluster__V1__InstanceStatus *x = &m->st[m->req.n_instances];
            if (!json_is_object(s))
                continue;
            *x = sinit;
            x->service_id = jstr(s, "service_id");
            x->instance_number = (int32_t)oak_json_int(s, "instance_number", 0);
            x->status = jstr(s, "status");
            x->status_detail = jstr(s, "status_detail");
            x->generation = (uint64_t)oak_json_int(s, "generation", 0);
            x->worker_id = jstr(s, "worker_id");
            x->host_ip = jstr(s, "host_ip");
            x->cpu_percent = oak_json_num(s, "cpu_percent", 0);
            x->memory_mb = oak_json_int(s, "memory_mb", 0);
            x->timestamp = oak_json_num(s, "timestamp", 0);
            m->stp[m->req.n_instances++] = x;
        }
        m->req.instances = m->stp;
    }
}

static void msg_free(msg_t *m)
{
    free(m->cap.virtualization);
    for (size_t i = 0; i < m->cap.n_per_arch; i++)
        free(m->arch[i].virtualization);
    free(m->arch);
    free(m->archp);
    free(m->st);
    free(m->stp);
    free(m->lg);
    free(m->lgp);
    free(m->wk);
    free(m->wkp);
}

static int send_report(root_link_t *l, const char *id, const char *session, const json_t *cap,
                       const report_t *r, uint64_t ack, oak_err_t *err)
{
    msg_t m;
    msg_build(&m, cap, r ? r->insts : NULL, r ? r->full : false);
    if (r)
        msg_build_extra(&m, r);
    m.req.cluster_id = (char *)id;
    m.req.session_token = (char *)session;
    m.req.ack_seq = ack;
    _cleanup_pb_ Oak__Cluster__V1__ReportReply *rep = NULL;
    int rc = oak_grpc_unary(l->ch, SVC "Report", &m.req.base,
                            &oak__cluster__v1__report_reply__descriptor, CALL_TIMEOUT_MS,
                            (ProtobufCMessage **)&rep, err);
    msg_free(&m);
    return rc;
}

static void *rep_main(void *arg)
{
    root_link_t *l = arg;
    unsigned seed = (unsigned)oak_now_us() ^ (unsigned)(uintptr_t)arg ^ 0x5bd1e995u;
    report_t *cur = NULL; /* the report on its way, merged with newer ones before a retry */
    json_t *last_cap = NULL;
    uint64_t next_beat = oak_now_ms() + (uint64_t)l->interval_ms, retry_at = 0;
    uint64_t tried_gen = 0;
    long backoff = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        for (;;) {
            if (l->stopping)
                break;
            bool ready = l->ready_gen != 0 && l->ready_gen == l->join_gen && !l->rejoin;
            if (ready && l->ready_gen != tried_gen)
                retry_at = 0; /* a new session: send at once */
            bool have = cur || l->pending;
            uint64_t due = have ? retry_at : (next_beat > retry_at ? next_beat : retry_at);
            if (ready && oak_now_ms() >= due)
                break;
            wait_until(l, ready ? due : 0);
        }
        if (l->stopping) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        if (l->pending) {
            report_t *p = oak_steal(&l->pending);
            if (cur)
                merge(cur, p);
            else
                cur = p;
        }
        char id[OAK_STORE_ID_MAX + 1];
        snprintf(id, sizeof(id), "%s", l->s_cluster_id);
        _cleanup_free_ char *session = xstrdup(l->s_session);
        uint64_t gen = l->ready_gen, ack = l->s_applied;
        pthread_mutex_unlock(&l->mu);

        tried_gen = gen;
        oak_err_t err = OAK_ERR_INIT;
        int rc = cur ? send_report(l, id, session, cur->cap, cur, ack, &err)
                     : send_report(l, id, session, last_cap, NULL, ack, &err);
        uint64_t now = oak_now_ms();
        if (rc == 0) {
            if (cur && cur->cap) {
                json_decref(last_cap);
                last_cap = json_incref(cur->cap);
            }
            report_free(oak_steal(&cur));
            backoff = 0;
            retry_at = 0;
            next_beat = now + (uint64_t)l->interval_ms;
        } else if (err.code == OAK_E_UNAUTH || err.code == OAK_E_INVALID) {
            /* the session was replaced or expired, or the root lost the
             * commands we acknowledge: a new join sorts both out */
            log_debug("root link: report refused (%s); joining again", err.msg);
            pthread_mutex_lock(&l->mu);
            if (gen == l->join_gen) {
                l->rejoin = true;
                if (l->stream)
                    oak_grpc_stream_cancel(l->stream);
            }
            pthread_mutex_unlock(&l->mu);
        } else {
            log_debug("root link: report failed (%s); retrying", err.msg);
            backoff = next_backoff(l, backoff);
            retry_at = now + (uint64_t)jitter(backoff, &seed);
        }
        oak_err_clear(&err);
    }
    report_free(cur);
    json_decref(last_cap);
    return NULL;
}

/* ---------------------------------------------------------------- API */

static void stop_threads(root_link_t *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    if (l->stream)
        oak_grpc_stream_cancel(l->stream);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    if (l->cmd_started)
        pthread_join(l->cmd_thread, NULL);
    if (l->rep_started)
        pthread_join(l->rep_thread, NULL);
    l->cmd_started = l->rep_started = false;
}

int root_link_start(oak_loop_t *loop, oak_store_t *store, const root_link_opts_t *o,
                    const root_link_cb_t *cb, void *ctx, root_link_t **out, oak_err_t *err)
{
    *out = NULL;
    if (!o->target || !*o->target)
        return oak_err_set(err, OAK_E_INVALID, "the root's gRPC address is not set");
    if (!o->join_token || !*o->join_token)
        return oak_err_set(err, OAK_E_INVALID, "the join token is not set");
    if (!o->cluster_name || !*o->cluster_name)
        return oak_err_set(err, OAK_E_INVALID, "the cluster name is not set");
    json_t *meta = NULL;
    if (oak_store_get(store, META_COLL, META_ID, &meta, err) < 0) {
        if (err->code != OAK_E_NOT_FOUND)
            return -1;
        oak_err_clear(err);
    }
    json_auto_t *m = meta;

    root_link_t *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->store = store;
    if (cb)
        l->cb = *cb;
    l->ctx = ctx;
    l->target = xstrdup(o->target);
    l->token = xstrdup(o->join_token);
    l->name = xstrdup(o->cluster_name);
    l->location = xstrdup(o->cluster_location ? o->cluster_location : "");
    l->manager_port = o->manager_port;
    l->network_port = o->network_port;
    l->interval_ms = o->report_interval_ms > 0 ? o->report_interval_ms : DEFAULT_INTERVAL;
    l->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : BACKOFF_MAX_MS;
    if (l->backoff_max_ms < BACKOFF_MIN_MS)
        l->backoff_max_ms = BACKOFF_MIN_MS;
    l->refs = 1;
    const char *id = oak_json_str(m, "cluster_id");
    if (id && strlen(id) <= OAK_STORE_ID_MAX) {
        snprintf(l->cluster_id, sizeof(l->cluster_id), "%s", id);
        snprintf(l->s_cluster_id, sizeof(l->s_cluster_id), "%s", id);
    }
    long long applied = oak_json_int(m, "applied_seq", 0);
    l->applied = l->s_applied = applied > 0 ? (uint64_t)applied : 0;
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    l->ch = oak_grpc_channel_new(l->target);

    int e = pthread_create(&l->cmd_thread, NULL, cmd_main, l);
    l->cmd_started = e == 0;
    if (e == 0) {
        e = pthread_create(&l->rep_thread, NULL, rep_main, l);
        l->rep_started = e == 0;
    }
    if (e != 0) {
        stop_threads(l);
        link_unref(l);
        return oak_err_set(err, OAK_E_INTERNAL, "root link: cannot start a thread: %s",
                           strerror(e));
    }
    *out = l;
    return 0;
}

void root_link_applied(root_link_t *l, uint64_t seq)
{
    if (seq <= l->applied)
        return;
    l->applied = seq;
    pthread_mutex_lock(&l->mu);
    l->s_applied = seq;
    pthread_mutex_unlock(&l->mu);
    persist(l);
}

uint64_t root_link_applied_seq(const root_link_t *l)
{
    return l->applied;
}

void root_link_report(root_link_t *l, json_t *capacity, json_t *instances, bool full_state)
{
    json_auto_t *cap = capacity, *insts = instances;
    if (cap && !json_is_object(cap)) {
        log_warn("root link: dropping a capacity report that is not a JSON object");
        json_decref(oak_steal(&cap));
    }
    if (insts && !json_is_array(insts)) {
        log_warn("root link: dropping instance statuses that are not a JSON array");
        json_decref(oak_steal(&insts));
    }
    /* deep copies: the report thread must own every node it touches */
    report_t *r = xcalloc(1, sizeof(*r));
    r->cap = cap ? json_deep_copy(cap) : NULL;
    r->insts = insts ? json_deep_copy(insts) : json_array();
    r->full = full_state;
    double now = oak_wall_time();
    size_t i;
    json_t *s;
    json_array_foreach(r->insts, i, s)
    {
        if (json_is_object(s) && !json_is_number(json_object_get(s, "timestamp")))
            json_object_set_new(s, "timestamp", json_real(now));
    }
    pthread_mutex_lock(&l->mu);
    if (l->pending)
        merge(l->pending, r);
    else
        l->pending = r;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

static void enqueue(root_link_t *l, report_t *r)
{
    pthread_mutex_lock(&l->mu);
    if (l->pending)
        merge(l->pending, r);
    else
        l->pending = r;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

void root_link_logs_result(root_link_t *l, json_t *result)
{
    json_auto_t *res = result;
    if (!json_is_object(res))
        return;
    report_t *r = xcalloc(1, sizeof(*r));
    r->insts = json_array();
    r->logs = json_array();
    json_array_append_new(r->logs, json_deep_copy(res));
    enqueue(l, r);
}

void root_link_workers(root_link_t *l, json_t *workers)
{
    json_auto_t *w = workers;
    if (!json_is_array(w))
        return;
    report_t *r = xcalloc(1, sizeof(*r));
    r->insts = json_array();
    r->workers = json_incref(w); /* the caller gave it up: no copy */
    enqueue(l, r);
}

bool root_link_connected(const root_link_t *l)
{
    return l->connected;
}

const char *root_link_cluster_id(const root_link_t *l)
{
    return l->cluster_id;
}

void root_link_stop(root_link_t *l)
{
    if (!l)
        return;
    stop_threads(l);
    oak_grpc_channel_free(l->ch);
    l->ch = NULL;
    l->dead = true;
    l->connected = false;
    link_unref(l);
}
