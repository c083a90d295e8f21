/* Worker simulator (see msim.h): registration threads, and every simulated
 * worker's MQTT 3.1.1 connection on the caller's event loop.
 *
 * Registration: register_concurrency threads take worker indexes from an
 * atomic counter and register each one (POST /api/node/register over one
 * keep-alive curl handle per thread, or broker_add_worker without a
 * cluster), fill the worker's id, password and keepalive, and post the
 * worker to the loop; from then on only the loop touches it.
 *
 * MQTT: one non-blocking socket per worker, registered with the loop. A
 * packet is sent straight away when the worker's output queue is empty;
 * what the socket does not take is queued and flushed on EPOLLOUT. Input is
 * read into one shared buffer and parsed in place; only a partial packet is
 * copied into the worker's own buffer, so an idle worker holds no buffers.
 * A tick every TICK_MS scans the workers: starts connects (at most
 * connect_concurrency in progress), times out stalled handshakes, sends
 * information and resources reports when due, and keeps the connection
 * alive (PINGREQ when nothing was sent or received for keepalive seconds;
 * no PINGRESP within keepalive + 1 s drops the connection). */
#include "test/common/msim.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster_orchestrator/broker.h"
#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "test/common/harness.h"

#define TICK_MS            50
#define HANDSHAKE_MS       10000 /* TCP connect + CONNACK + SUBACK */
#define BACKOFF_MIN_MS     500
#define BACKOFF_MAX_MS     10000
#define RESOURCES_MS       10000
#define MAX_PACKET         (WP_MAX_PAYLOAD + 64 * 1024)
#define MAX_QUEUED         (4 * 1024 * 1024) /* unsent bytes of one worker */
#define MAX_PENDING_JOBS   256               /* unacknowledged job reports kept */
#define REGISTER_ATTEMPTS  10
#define REGISTER_TIMEOUT_S 30L
#define SHUTDOWN_MS        2000
#define MAX_FAIL_LOGS      20

typedef enum {
    W_NEW,        /* not registered yet */
    W_FAILED,     /* registration given up */
    W_IDLE,       /* registered or backing off: connects at retry_at */
    W_CONNECTING, /* TCP connect in progress */
    W_CONNACK,    /* CONNECT sent */
    W_SUBACK,     /* SUBSCRIBE sent */
    W_UP,
    W_CLOSING, /* shutdown: DISCONNECT queued */
    W_DEAD     /* killed or shut down: stays down */
} wstate_t;

typedef struct {
    uint16_t pid;
    char *payload;
} pending_t;

typedef struct worker {
    msim_t *sim;
    int idx;
    wstate_t st;
    char host[WP_MAX_HOST + 1];
    /* filled by a registration thread before the hand-off */
    char id[WP_NODE_ID_MAX + 1];
    char *password;
    int keepalive_s;
    int mqtt_port;
    /* connection */
    int fd;
    bool epollout;
    unsigned char *in; /* partial packet */
    size_t in_len, in_cap;
    unsigned char *out; /* unsent bytes */
    size_t out_off, out_len, out_cap;
    uint16_t next_pid;
    uint64_t since, retry_at, last_tx, last_rx, ping_sent, next_info, next_res;
    int backoff_ms;
    /* simulated node */
    double cpu_percent, load1;
    long long mem_avail;
    wp_inst_t *inst;
    size_t ninst, cap_inst;
    pending_t *pend; /* job reports not acknowledged yet, resent on reconnect */
    size_t npend;
} worker_t;

struct msim {
    oak_loop_t *loop;
    msim_opts_t o;
    char *cluster_url, *token, *mqtt_host, *prefix, *admin_user, *admin_password;
    struct sockaddr_in broker_addr;
    broker_t *broker; /* without a cluster */
    worker_t *w;
    int n;
    /* registration threads */
    pthread_t *threads;
    int nthreads;
    atomic_int next_reg;
    atomic_bool stopping;
    atomic_int reg_logs;
    uint64_t started_ms;
    /* loop thread */
    msim_stats_t st;
    int connecting;
    int cursor; /* where start_more goes on */
    int fail_logs;
    uint64_t tick_timer, kill_at;
    bool killed;
    uint64_t rng;
    struct {
        unsigned char *p;
        size_t len, cap;
    } pkt; /* packet being built */
    unsigned char *rbuf;
    bool shutting_down;
    uint64_t shutdown_deadline;
    void (*done)(void *ctx);
    void *done_ctx;
};

/* ---- small helpers ---- */

static uint64_t rnd(msim_t *s)
{
    /* xorshift64* */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ULL;
}

static double rnd01(msim_t *s)
{
    return (double)(rnd(s) >> 11) / (double)(1ULL << 53);
}

/* ms +- 20 % */
static uint64_t jitter(msim_t *s, int ms)
{
    return (uint64_t)(ms * (0.8 + 0.4 * rnd01(s)));
}

static void fail_log(msim_t *s, const worker_t *w, const char *what)
{
    if (s->fail_logs >= MAX_FAIL_LOGS)
        return;
    if (++s->fail_logs == MAX_FAIL_LOGS)
        fprintf(stderr, "worker_sim: %s: %s (further failures not logged)\n", w->host, what);
    else
        fprintf(stderr, "worker_sim: %s: %s\n", w->host, what);
}

/* ---- packet building ---- */

static void pk_reset(msim_t *s)
{
    s->pkt.len = 0;
}

static void pk_put(msim_t *s, const void *p, size_t n)
{
    if (s->pkt.len + n > s->pkt.cap) {
        s->pkt.cap = (s->pkt.len + n) * 2 + 256;
        s->pkt.p = xrealloc(s->pkt.p, s->pkt.cap);
    }
    memcpy(s->pkt.p + s->pkt.len, p, n);
    s->pkt.len += n;
}

static void pk_u8(msim_t *s, unsigned v)
{
    unsigned char c = (unsigned char)v;
    pk_put(s, &c, 1);
}

static void pk_u16(msim_t *s, unsigned v)
{
    pk_u8(s, (v >> 8) & 0xff);
    pk_u8(s, v & 0xff);
}

static void pk_str(msim_t *s, const char *str, size_t n)
{
    pk_u16(s, (unsigned)n);
    pk_put(s, str, n);
}

/* Fixed header for a body of rem bytes. */
static void pk_header(msim_t *s, unsigned type, size_t rem)
{
    pk_u8(s, type);
    do {
        unsigned d = rem % 128;
        rem /= 128;
        pk_u8(s, rem ? d | 0x80 : d);
    } while (rem);
}

/* ---- connection ---- */

static void conn_fail(worker_t *w, const char *why);

static void set_epollout(worker_t *w, bool on)
{
    if (w->epollout == on)
        return;
    w->epollout = on;
    oak_loop_mod_fd(w->sim->loop, w->fd, EPOLLIN | (on ? EPOLLOUT : 0), NULL);
}

/* Sends what is queued. Returns 0, or -1 after failing the connection. */
static int flush_out(worker_t *w)
{
    while (w->out_off < w->out_len) {
        ssize_t n = send(w->fd, w->out + w->out_off, w->out_len - w->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_epollout(w, true);
            return 0;
        }
        if (n < 0) {
            conn_fail(w, strerror(errno));
            return -1;
        }
        w->out_off += (size_t)n;
    }
    free(w->out);
    w->out = NULL;
    w->out_off = w->out_len = w->out_cap = 0;
    set_epollout(w, false);
    return 0;
}

/* Sends the packet in s->pkt (or queues it behind earlier bytes). Returns
 * 0, or -1 after failing the connection. */
static int send_pkt(worker_t *w)
{
    msim_t *s = w->sim;
    const unsigned char *p = s->pkt.p;
    size_t n = s->pkt.len;
    w->last_tx = oak_now_ms();
    if (w->out_len == 0) {
        while (n > 0) {
            ssize_t k = send(w->fd, p, n, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (k < 0) {
                conn_fail(w, strerror(errno));
                return -1;
            }
            p += k;
            n -= (size_t)k;
        }
        if (n == 0)
            return 0;
    }
    if (w->out_len - w->out_off + n > MAX_QUEUED) {
        conn_fail(w, "broker does not read (output queue full)");
        return -1;
    }
    if (w->out_len + n > w->out_cap) {
        if (w->out_off > 0) {
            memmove(w->out, w->out + w->out_off, w->out_len - w->out_off);
            w->out_len -= w->out_off;
            w->out_off = 0;
        }
        if (w->out_len + n > w->out_cap) {
            w->out_cap = (w->out_len + n) * 2;
            w->out = xrealloc(w->out, w->out_cap);
        }
    }
    memcpy(w->out + w->out_len, p, n);
    w->out_len += n;
    set_epollout(w, true);
    return 0;
}

static uint16_t next_pid(worker_t *w)
{
    if (++w->next_pid == 0)
        w->next_pid = 1;
    return w->next_pid;
}

/* PUBLISH QoS 1 of payload on nodes/<id>/<kind>. */
static int publish_raw(worker_t *w, wp_kind_t kind, const char *payload, uint16_t pid, bool dup)
{
    msim_t *s = w->sim;
    char topic[128];
    int tlen = snprintf(topic, sizeof(topic), "nodes/%s/%s", w->id, wp_kind_name(kind));
    size_t plen = strlen(payload);
    pk_reset(s);
    pk_header(s, 0x32 | (dup ? 0x08 : 0), 2 + (size_t)tlen + 2 + plen);
    pk_str(s, topic, (size_t)tlen);
    pk_u16(s, pid);
    pk_put(s, payload, plen);
    s->st.msgs_out++;
    return send_pkt(w);
}

/* Publishes a payload (consumed). Job reports are kept until acknowledged. */
static int publish(worker_t *w, wp_kind_t kind, json_t *payload)
{
    char *text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    uint16_t pid = next_pid(w);
    if (kind == WP_JOB) {
        if (w->npend == MAX_PENDING_JOBS) {
            free(w->pend[0].payload);
            memmove(w->pend, w->pend + 1, (w->npend - 1) * sizeof(*w->pend));
            w->npend--;
        }
        if (!w->pend)
            w->pend = xcalloc(MAX_PENDING_JOBS, sizeof(*w->pend));
        w->pend[w->npend++] = (pending_t){pid, xstrdup(text)};
    }
    int rc = publish_raw(w, kind, text, pid, false);
    free(text);
    return rc;
}

static void drop_pending(worker_t *w, uint16_t pid)
{
    for (size_t i = 0; i < w->npend; i++)
        if (w->pend[i].pid == pid) {
            free(w->pend[i].payload);
            memmove(w->pend + i, w->pend + i + 1, (w->npend - i - 1) * sizeof(*w->pend));
            w->npend--;
            return;
        }
}

static void close_fd(worker_t *w)
{
    msim_t *s = w->sim;
    if (w->fd >= 0) {
        oak_loop_del_fd(s->loop, w->fd);
        close(w->fd);
        w->fd = -1;
    }
    if (w->st == W_CONNECTING || w->st == W_CONNACK || w->st == W_SUBACK)
        s->connecting--;
    if (w->st == W_UP || w->st == W_CLOSING)
        s->st.connected--;
    free(w->in);
    free(w->out);
    w->in = w->out = NULL;
    w->in_len = w->in_cap = w->out_off = w->out_len = w->out_cap = 0;
    w->epollout = false;
    w->ping_sent = 0;
}

/* Drops the connection and schedules a reconnect with backoff. */
static void conn_fail(worker_t *w, const char *why)
{
    msim_t *s = w->sim;
    if (w->st < W_CONNECTING || w->st > W_CLOSING)
        return;
    bool closing = w->st == W_CLOSING;
    close_fd(w);
    if (closing || s->shutting_down) {
        w->st = W_DEAD;
        return;
    }
    fail_log(s, w, why);
    s->st.reconnects++;
    w->st = W_IDLE;
    w->retry_at = oak_now_ms() + jitter(s, w->backoff_ms);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
}

static void on_io(oak_loop_t *loop, int fd, uint32_t events, void *data);

static void conn_start(worker_t *w)
{
    msim_t *s = w->sim;
    struct sockaddr_in a = s->broker_addr;
    a.sin_port = htons((uint16_t)w->mqtt_port);
    w->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    w->st = W_CONNECTING;
    w->since = w->last_tx = w->last_rx = oak_now_ms();
    s->connecting++;
    if (w->fd < 0) {
        conn_fail(w, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    oak_err_t err = OAK_ERR_INIT;
    if (connect(w->fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        conn_fail(w, strerror(errno));
        return;
    }
    if (oak_loop_add_fd(s->loop, w->fd, EPOLLIN | EPOLLOUT, on_io, w, &err) < 0) {
        close(w->fd);
        w->fd = -1;
        conn_fail(w, err.msg);
        oak_err_clear(&err);
        return;
    }
    w->epollout = true;
}

static int send_connect(worker_t *w)
{
    msim_t *s = w->sim;
    char will_topic[128];
    int tl = snprintf(will_topic, sizeof(will_topic), "nodes/%s/status", w->id);
    json_auto_t *will = wp_build_status(false);
    _cleanup_free_ char *will_text = json_dumps(will, JSON_COMPACT);
    size_t il = strlen(w->id), pl = strlen(w->password), wl = strlen(will_text);
    size_t rem = 10 + 2 + il + 2 + (size_t)tl + 2 + wl + 2 + il + 2 + pl;
    pk_reset(s);
    pk_header(s, 0x10, rem);
    pk_str(s, "MQTT", 4);
    pk_u8(s, 4);
    /* user name, password, will QoS 1, will, clean session false */
    pk_u8(s, 0x80 | 0x40 | 0x08 | 0x04);
    pk_u16(s, (unsigned)w->keepalive_s);
    pk_str(s, w->id, il);
    pk_str(s, will_topic, (size_t)tl);
    pk_str(s, will_text, wl);
    pk_str(s, w->id, il);
    pk_str(s, w->password, pl);
    return send_pkt(w);
}

static int send_subscribe(worker_t *w)
{
    msim_t *s = w->sim;
    char filter[128];
    int fl = snprintf(filter, sizeof(filter), "nodes/%s/control/#", w->id);
    pk_reset(s);
    pk_header(s, 0x82, 2 + 2 + (size_t)fl + 1);
    pk_u16(s, next_pid(w));
    pk_str(s, filter, (size_t)fl);
    pk_u8(s, 1);
    return send_pkt(w);
}

static int send_short(worker_t *w, unsigned type)
{
    pk_reset(w->sim);
    pk_header(w->sim, type, 0);
    return send_pkt(w);
}

static int send_puback(worker_t *w, uint16_t pid)
{
    pk_reset(w->sim);
    pk_header(w->sim, 0x40, 2);
    pk_u16(w->sim, pid);
    return send_pkt(w);
}

/* ---- the simulated node ---- */

static const char *const VIRT[] = {"container"};

static json_t *full_info(worker_t *w)
{
    msim_t *s = w->sim;
    wp_info_t i = {.cpu_cores = s->o.cores,
                   .cpu_percent = w->cpu_percent,
                   .memory_mb = w->mem_avail,
                   .memory_total_mb = s->o.memory_mb,
                   .disk_percent = 20.0,
                   .gpus = 0,
                   .load1 = w->load1,
                   .architecture = "amd64",
                   .virt = VIRT,
                   .nvirt = 1,
                   .kernel_version = "6.1.0-sim"};
    return wp_build_information(&i);
}

/* The changed keys of an idle node: cpu_percent and load1 drift a little,
 * available memory now and then. */
static json_t *delta_info(worker_t *w)
{
    msim_t *s = w->sim;
    double max = 100.0 * s->o.cores;
    w->cpu_percent += (rnd01(s) - 0.5) * 4.0;
    if (w->cpu_percent < 1.0)
        w->cpu_percent = 1.0;
    if (w->cpu_percent > max * 0.2)
        w->cpu_percent = max * 0.2;
    w->load1 = w->cpu_percent / 100.0;
    json_t *o = json_pack("{s:f, s:f}", "cpu_percent", w->cpu_percent, "load1", w->load1);
    if (rnd(s) % 5 == 0) {
        long long lo = s->o.memory_mb * 8 / 10;
        w->mem_avail += (long long)((rnd01(s) - 0.5) * (double)s->o.memory_mb * 0.02);
        if (w->mem_avail < lo)
            w->mem_avail = lo;
        if (w->mem_avail > s->o.memory_mb)
            w->mem_avail = s->o.memory_mb;
        json_object_set_new(o, "memory", json_integer(w->mem_avail));
    }
    return o;
}

static int report_job(worker_t *w, const char *sid, int n, uint64_t gen, const char *job_name,
                      wp_status_t st)
{
    wp_job_t j = {.instance_number = n, .generation = gen, .status = st};
    snprintf(j.service_id, sizeof(j.service_id), "%s", sid);
    snprintf(j.job_name, sizeof(j.job_name), "%s", job_name ? job_name : "");
    return publish(w, WP_JOB, wp_build_job(&j));
}

static wp_inst_t *find_inst(worker_t *w, const char *sid, int n)
{
    for (size_t i = 0; i < w->ninst; i++)
        if (w->inst[i].instance_number == n && strcmp(w->inst[i].service_id, sid) == 0)
            return &w->inst[i];
    return NULL;
}

static int on_deploy(worker_t *w, const void *p, size_t len)
{
    msim_t *s = w->sim;
    wp_deploy_t d = {0};
    oak_err_t err = OAK_ERR_INIT;
    if (wp_parse_deploy(p, len, &d, &err) < 0) {
        s->st.bad_commands++;
        fail_log(s, w, err.msg);
        oak_err_clear(&err);
        return 0;
    }
    int rc = 0;
    wp_inst_t *in = find_inst(w, d.service_id, d.instance_number);
    if (in && in->generation == d.generation) {
        rc = report_job(w, d.service_id, d.instance_number, d.generation, d.job_name, in->status);
    } else if (!in || d.generation > in->generation) {
        if (!in) {
            if (w->ninst == w->cap_inst) {
                w->cap_inst = w->cap_inst ? w->cap_inst * 2 : 4;
                w->inst = xrealloc(w->inst, w->cap_inst * sizeof(*w->inst));
            }
            in = &w->inst[w->ninst++];
            memset(in, 0, sizeof(*in));
            snprintf(in->service_id, sizeof(in->service_id), "%s", d.service_id);
            in->instance_number = d.instance_number;
            s->st.running++;
        }
        in->generation = d.generation;
        in->status = WP_ST_RUNNING;
        rc =
            report_job(w, d.service_id, d.instance_number, d.generation, d.job_name, WP_ST_CREATED);
        if (rc == 0)
            rc = report_job(w, d.service_id, d.instance_number, d.generation, d.job_name,
                            WP_ST_RUNNING);
        if (w->next_res == 0)
            w->next_res = oak_now_ms() + RESOURCES_MS;
    }
    /* an older generation than the one running is stale: ignored */
    wp_deploy_clear(&d);
    return rc;
}

static int on_delete(worker_t *w, const void *p, size_t len)
{
    msim_t *s = w->sim;
    wp_delete_t d = {0};
    oak_err_t err = OAK_ERR_INIT;
    if (wp_parse_delete(p, len, &d, &err) < 0) {
        s->st.bad_commands++;
        fail_log(s, w, err.msg);
        oak_err_clear(&err);
        return 0;
    }
    wp_inst_t *in = find_inst(w, d.service_id, d.instance_number);
    if (in && d.generation >= in->generation) {
        *in = w->inst[--w->ninst];
        s->st.running--;
    }
    return report_job(w, d.service_id, d.instance_number, d.generation, d.job_name,
                      WP_ST_UNDEPLOYED);
}

static int publish_resources(worker_t *w)
{
    msim_t *s = w->sim;
    wp_usage_t *u = xcalloc(w->ninst, sizeof(*u));
    for (size_t i = 0; i < w->ninst; i++) {
        memcpy(u[i].service_id, w->inst[i].service_id, sizeof(u[i].service_id));
        u[i].instance_number = w->inst[i].instance_number;
        u[i].generation = w->inst[i].generation;
        u[i].cpu_percent = 1.0 + rnd01(s) * 4.0;
        u[i].memory_mb = 40 + (long long)(rnd(s) % 20);
    }
    int rc = publish(w, WP_RESOURCES, wp_build_resources(u, w->ninst));
    free(u);
    return rc;
}

/* Starts connects of idle workers while fewer than connect_concurrency
 * are in progress (a bounded walk from where the last one stopped). */
static void start_more(msim_t *s)
{
    uint64_t now = oak_now_ms();
    for (int k = 0; k < 256 && s->connecting < s->o.connect_concurrency && !s->shutting_down; k++) {
        worker_t *w = &s->w[s->cursor];
        s->cursor = (s->cursor + 1) % s->n;
        if (w->st == W_IDLE && now >= w->retry_at)
            conn_start(w);
    }
}

/* Session established: announce the node. */
static int on_up(worker_t *w)
{
    msim_t *s = w->sim;
    uint64_t now = oak_now_ms();
    s->connecting--;
    w->st = W_UP;
    s->st.connected++;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->next_info = now + s->o.info_period_ms;
    if (publish(w, WP_STATUS, wp_build_status(true)) < 0 ||
        publish(w, WP_INFORMATION, full_info(w)) < 0 ||
        publish(w, WP_STATE, wp_build_state(w->inst, w->ninst)) < 0)
        return -1;
    for (size_t i = 0; i < w->npend; i++)
        if (publish_raw(w, WP_JOB, w->pend[i].payload, w->pend[i].pid, true) < 0)
            return -1;
    start_more(s);
    return 0;
}

/* ---- input ---- */

static int on_publish(worker_t *w, unsigned flags, const unsigned char *b, size_t len)
{
    msim_t *s = w->sim;
    unsigned qos = (flags >> 1) & 3;
    if (len < 2)
        return conn_fail(w, "malformed PUBLISH"), -1;
    size_t tlen = ((size_t)b[0] << 8) | b[1];
    size_t off = 2 + tlen + (qos ? 2 : 0);
    if (off > len)
        return conn_fail(w, "malformed PUBLISH"), -1;
    s->st.msgs_in++;
    if (qos == 1 && send_puback(w, (uint16_t)((b[2 + tlen] << 8) | b[3 + tlen])) < 0)
        return -1;
    char topic[160], id[WP_NODE_ID_MAX + 1];
    wp_kind_t kind = WP_UNKNOWN;
    if (tlen >= sizeof(topic))
        return 0;
    memcpy(topic, b + 2, tlen);
    topic[tlen] = 0;
    if (wp_topic_parse(topic, id, &kind) < 0 || strcmp(id, w->id) != 0)
        return 0;
    if (kind == WP_DEPLOY)
        return on_deploy(w, b + off, len - off);
    if (kind == WP_DELETE)
        return on_delete(w, b + off, len - off);
    return 0;
}

/* Handles one packet. Returns 0, or -1 after failing the connection. */
static int on_packet(worker_t *w, unsigned h, const unsigned char *b, size_t len)
{
    msim_t *s = w->sim;
    char why[64];
    switch (h >> 4) {
    case 2: /* CONNACK */
        if (w->st != W_CONNACK || len != 2)
            return conn_fail(w, "unexpected CONNACK"), -1;
        if (b[1] != 0) {
            s->st.refused++;
            snprintf(why, sizeof(why), "CONNACK refused (return code %u)", b[1]);
            return conn_fail(w, why), -1;
        }
        w->st = W_SUBACK;
        return send_subscribe(w);
    case 9: /* SUBACK */
        if (w->st != W_SUBACK || len != 3)
            return 0;
        if (b[2] == 0x80) {
            s->st.refused++;
            return conn_fail(w, "SUBSCRIBE refused"), -1;
        }
        return on_up(w);
    case 4: /* PUBACK */
        if (len >= 2) {
            s->st.acks_in++;
            if (w->npend)
                drop_pending(w, (uint16_t)((b[0] << 8) | b[1]));
        }
        return 0;
    case 3: /* PUBLISH */
        return on_publish(w, h & 0x0f, b, len);
    case 13: /* PINGRESP */
        w->ping_sent = 0;
        return 0;
    default:
        return 0;
    }
}

/* Parses the complete packets of p[0..n); *used gets the bytes consumed.
 * Returns 0, or -1 after failing the connection. */
static int parse(worker_t *w, const unsigned char *p, size_t n, size_t *used)
{
    size_t off = 0;
    while (off < n) {
        size_t rem = 0, mult = 1, i = off + 1;
        bool complete = false;
        for (int k = 0; k < 4 && i < n; k++, i++) {
            rem += (size_t)(p[i] & 0x7f) * mult;
            mult *= 128;
            if (!(p[i] & 0x80)) {
                complete = true;
                i++;
                break;
            }
            if (k == 3)
                return conn_fail(w, "malformed remaining length"), -1;
        }
        if (!complete)
            break;
        if (rem > MAX_PACKET)
            return conn_fail(w, "packet too large"), -1;
        if (n - i < rem)
            break;
        if (on_packet(w, p[off], p + i, rem) < 0)
            return -1;
        off = i + rem;
    }
    *used = off;
    return 0;
}

static void keep_partial(worker_t *w, const unsigned char *p, size_t n)
{
    if (n > w->in_cap) {
        w->in_cap = n < 4096 ? 4096 : n * 2;
        w->in = xrealloc(w->in, w->in_cap);
    }
    memmove(w->in, p, n);
    w->in_len = n;
    if (n == 0) {
        free(w->in);
        w->in = NULL;
        w->in_cap = 0;
    }
}

#define RBUF 65536

/* Reads what the socket has. Returns 0, or -1 after failing. */
static int read_in(worker_t *w)
{
    msim_t *s = w->sim;
    for (;;) {
        ssize_t n = recv(w->fd, s->rbuf, RBUF, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            conn_fail(w, n == 0 ? "connection closed by the broker" : strerror(errno));
            return -1;
        }
        w->last_rx = oak_now_ms();
        size_t used = 0;
        if (w->in_len == 0) {
            if (parse(w, s->rbuf, (size_t)n, &used) < 0)
                return -1;
            if (used < (size_t)n)
                keep_partial(w, s->rbuf + used, (size_t)n - used);
        } else {
            if (w->in_len + (size_t)n > w->in_cap) {
                w->in_cap = (w->in_len + (size_t)n) * 2;
                w->in = xrealloc(w->in, w->in_cap);
            }
            memcpy(w->in + w->in_len, s->rbuf, (size_t)n);
            w->in_len += (size_t)n;
            if (parse(w, w->in, w->in_len, &used) < 0)
                return -1;
            keep_partial(w, w->in + used, w->in_len - used);
        }
        if (n < RBUF)
            return 0;
    }
}

static void on_io(oak_loop_t *loop, int fd, uint32_t events, void *data)
{
    worker_t *w = data;
    if (w->st == W_CONNECTING) {
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e) {
            conn_fail(w, strerror(e));
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN)))
            return;
        w->st = W_CONNACK;
        w->epollout = true;
        if (send_connect(w) < 0 || flush_out(w) < 0)
            return;
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && read_in(w) < 0)
        return;
    if ((events & EPOLLOUT) && w->fd >= 0)
        flush_out(w);
}

/* ---- registration threads ---- */

typedef struct {
    char *buf;
    size_t len;
} resp_t;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    resp_t *r = ud;
    size_t n = size * nmemb;
    if (r->len + n > WP_MAX_PAYLOAD)
        return 0;
    r->buf = xrealloc(r->buf, r->len + n + 1);
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    r->buf[r->len] = 0;
    return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    msim_t *s = ud;
    return atomic_load(&s->stopping) ? 1 : 0;
}

static void reg_log(msim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reg_log(msim_t *s, const char *fmt, ...)
{
    if (atomic_fetch_add(&s->reg_logs, 1) >= MAX_FAIL_LOGS)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "worker_sim: %s\n", line);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One POST /api/node/register. Returns 0 (w filled), 1 to retry, -1 to
 * give up. */
static int register_http(msim_t *s, CURL *c, worker_t *w, const char *body)
{
    resp_t r = {0};
    char url[512], auth[WP_MAX_TOKEN + 64];
    snprintf(url, sizeof(url), "%s/api/node/register", s->cluster_url);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", s->token ? s->token : "");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    int rc;
    if (cc != CURLE_OK) {
        if (!atomic_load(&s->stopping))
            reg_log(s, "register %s: %s", w->host, curl_easy_strerror(cc));
        rc = 1;
    } else if (status != 200) {
        reg_log(s, "register %s: HTTP %ld %s", w->host, status, r.buf ? r.buf : "");
        rc = status >= 500 || status == 429 ? 1 : -1;
    } else {
        json_auto_t *j = json_loadb(r.buf ? r.buf : "", r.len, 0, NULL);
        const char *id = oak_json_str(j, "id");
        const char *pw = oak_json_str(j, "mqtt_password");
        const char *user = oak_json_str(j, "mqtt_username");
        json_t *port = json_object_get(j, "MQTT_BROKER_PORT");
        if (!id || !wp_node_id_valid(id) || !pw || (user && strcmp(user, id) != 0)) {
            reg_log(s, "register %s: unexpected answer %s", w->host, r.buf ? r.buf : "");
            rc = -1;
        } else {
            snprintf(w->id, sizeof(w->id), "%s", id);
            w->password = xstrdup(pw);
            w->keepalive_s = (int)oak_json_int(j, "mqtt_keepalive_s", 2);
            if (w->keepalive_s < 1)
                w->keepalive_s = 1;
            if (s->o.mqtt_port > 0)
                w->mqtt_port = s->o.mqtt_port;
            else if (json_is_string(port))
                w->mqtt_port = atoi(json_string_value(port));
            else
                w->mqtt_port = (int)json_integer_value(port);
            rc = w->mqtt_port > 0 && w->mqtt_port < 65536 ? 0 : -1;
            if (rc < 0)
                reg_log(s, "register %s: no usable MQTT_BROKER_PORT", w->host);
        }
    }
    free(r.buf);
    return rc;
}

static int register_broker(msim_t *s, worker_t *w)
{
    if (s->o.open_broker) {
        snprintf(w->id, sizeof(w->id), "%s", w->host);
        w->password = xstrdup("open");
        w->keepalive_s = s->o.keepalive_s;
        w->mqtt_port = s->o.mqtt_port;
        return 0;
    }
    unsigned char raw[16];
    char pw[33];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -1;
    for (int i = 0; i < 16; i++)
        snprintf(pw + 2 * i, 3, "%02x", raw[i]);
    oak_err_t err = OAK_ERR_INIT;
    if (broker_add_worker(s->broker, w->host, pw, &err) < 0) {
        reg_log(s, "broker_add_worker %s: %s", w->host, err.msg);
        int rc = err.code == OAK_E_TIMEOUT || err.code == OAK_E_UNAVAILABLE ? 1 : -1;
        oak_err_clear(&err);
        return rc;
    }
    snprintf(w->id, sizeof(w->id), "%s", w->host);
    w->password = xstrdup(pw);
    w->keepalive_s = s->o.keepalive_s;
    w->mqtt_port = s->o.mqtt_port;
    return 0;
}

static void on_registered(oak_loop_t *loop, void *data);
static void on_register_failed(oak_loop_t *loop, void *data);

static void *reg_thread(void *arg)
{
    msim_t *s = arg;
    CURL *c = NULL;
    if (s->cluster_url) {
        c = curl_easy_init();
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, REGISTER_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    }
    for (;;) {
        int i = atomic_fetch_add(&s->next_reg, 1);
        if (i >= s->n || atomic_load(&s->stopping))
            break;
        worker_t *w = &s->w[i];
        char *body = NULL;
        if (c) {
            char ip[32];
            unsigned v = (unsigned)i + 1;
            snprintf(ip, sizeof(ip), "10.%u.%u.%u", (v >> 16) & 255, (v >> 8) & 255, v & 255);
            char *virt[] = {(char *)"container"};
            wp_register_t r = {.host = w->host,
                               .ip = ip,
                               .arch = (char *)"amd64",
                               .virt = virt,
                               .nvirt = 1,
                               .port = 50103,
                               .cpu_cores = s->o.cores,
                               .memory_mb = s->o.memory_mb,
                               .system_info = json_pack("{s:s, s:s}", "kernel_version", "6.1.0-sim",
                                                        "os_version", "Debian 12")};
            json_auto_t *j = wp_build_register(&r);
            json_decref(r.system_info);
            body = json_dumps(j, JSON_COMPACT);
        }
        int rc = 1, backoff = 200;
        for (int attempt = 0; rc == 1 && attempt < REGISTER_ATTEMPTS; attempt++) {
            if (attempt > 0) {
                sleep_ms(backoff);
                backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            }
            if (atomic_load(&s->stopping))
                break;
            rc = c ? register_http(s, c, w, body) : register_broker(s, w);
        }
        free(body);
        oak_loop_post(s->loop, rc == 0 ? on_registered : on_register_failed, w);
    }
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

static void reg_progress(msim_t *s)
{
    if (s->st.registered + s->st.register_failed == s->n && !s->st.register_done) {
        s->st.register_done = true;
        s->st.register_ms = oak_now_ms() - s->started_ms;
    }
}

static void on_registered(oak_loop_t *loop, void *data)
{
    worker_t *w = data;
    msim_t *s = w->sim;
    s->st.registered++;
    reg_progress(s);
    if (s->shutting_down) {
        w->st = W_DEAD;
        return;
    }
    w->st = W_IDLE;
    w->retry_at = 0;
    if (s->connecting < s->o.connect_concurrency)
        conn_start(w);
}

static void on_register_failed(oak_loop_t *loop, void *data)
{
    worker_t *w = data;
    msim_t *s = w->sim;
    w->st = W_FAILED;
    s->st.register_failed++;
    reg_progress(s);
}

/* ---- tick ---- */

static void kill_some(msim_t *s)
{
    int left = s->o.kill_count, up = s->st.connected;
    for (int i = 0; i < s->n && left > 0 && up > 0; i++) {
        worker_t *w = &s->w[i];
        if (w->st != W_UP)
            continue;
        /* pick left of the remaining up workers uniformly */
        if ((int)(rnd(s) % (uint64_t)up) < left) {
            close_fd(w);
            w->st = W_DEAD;
            s->st.dead++;
            left--;
        }
        up--;
    }
}

static void finish_shutdown(msim_t *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->w[i].fd >= 0) {
            close_fd(&s->w[i]);
            s->w[i].st = W_DEAD;
        }
    void (*done)(void *) = s->done;
    s->done = NULL;
    if (done)
        done(s->done_ctx);
}

static void tick_worker(msim_t *s, worker_t *w, uint64_t now)
{
    switch (w->st) {
    case W_IDLE:
        if (now >= w->retry_at && s->connecting < s->o.connect_concurrency)
            conn_start(w);
        break;
    case W_CONNECTING:
    case W_CONNACK:
    case W_SUBACK:
        if (now - w->since > HANDSHAKE_MS)
            conn_fail(w, "handshake timed out");
        break;
    case W_UP: {
        uint64_t ka = (uint64_t)w->keepalive_s * 1000;
        if (now >= w->next_info) {
            w->next_info += (uint64_t)s->o.info_period_ms;
            if (w->next_info <= now)
                w->next_info = now + (uint64_t)s->o.info_period_ms;
            if (publish(w, WP_INFORMATION, delta_info(w)) < 0)
                return;
        }
        if (w->ninst > 0 && now >= w->next_res) {
            w->next_res = now + RESOURCES_MS;
            if (publish_resources(w) < 0)
                return;
        }
        if (w->ping_sent) {
            if (now - w->ping_sent > ka + 1000)
                conn_fail(w, "no PINGRESP");
        } else if (now - w->last_tx >= ka || now - w->last_rx >= ka) {
            if (send_short(w, 0xc0) == 0)
                w->ping_sent = now;
        }
        break;
    }
    default:
        break;
    }
}

static void on_tick(oak_loop_t *loop, void *data)
{
    msim_t *s = data;
    uint64_t now = oak_now_ms();
    s->tick_timer = 0;
    if (s->shutting_down) {
        bool flushed = true;
        for (int i = 0; i < s->n; i++)
            if (s->w[i].fd >= 0 && s->w[i].out_len > s->w[i].out_off)
                flushed = false;
        if (flushed || now >= s->shutdown_deadline) {
            finish_shutdown(s);
            return;
        }
    } else {
        if (s->kill_at && !s->killed && now >= s->kill_at) {
            s->killed = true;
            kill_some(s);
        }
        for (int i = 0; i < s->n; i++)
            tick_worker(s, &s->w[i], now);
    }
    s->tick_timer = oak_loop_add_timer(s->loop, TICK_MS, on_tick, s);
}

/* ---- API ---- */

static void raise_nofile(int workers)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)workers + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int msim_new(oak_loop_t *loop, const msim_opts_t *o, msim_t **out, oak_err_t *err)
{
    msim_opts_t d = *o;
    if (!d.prefix)
        d.prefix = "sim";
    if (!d.mqtt_host)
        d.mqtt_host = "127.0.0.1";
    if (d.cores <= 0)
        d.cores = 4;
    if (d.memory_mb <= 0)
        d.memory_mb = 8192;
    if (d.info_period_ms <= 0)
        d.info_period_ms = 2000;
    if (d.register_concurrency <= 0)
        d.register_concurrency = 16;
    if (d.connect_concurrency <= 0)
        d.connect_concurrency = 64;
    if (d.keepalive_s <= 0)
        d.keepalive_s = 2;
    if (d.workers < 1 || d.workers > 100000)
        return oak_err_set(err, OAK_E_INVALID, "workers must be 1..100000");
    if (d.cores > WP_MAX_CORES || d.memory_mb > WP_MAX_MEMORY_MB)
        return oak_err_set(err, OAK_E_INVALID, "cores or memory out of range");
    if (!!d.cluster_url + !!d.broker_admin_user + d.open_broker != 1)
        return oak_err_set(err, OAK_E_INVALID,
                           "need one of a cluster URL, broker admin credentials, open broker");
    if (!d.cluster_url && d.mqtt_port <= 0)
        return oak_err_set(err, OAK_E_INVALID, "without a cluster the MQTT port is required");
    char host[WP_MAX_HOST + 16];
    snprintf(host, sizeof(host), "%s-%d", d.prefix, d.workers - 1);
    size_t max_len = d.cluster_url ? WP_MAX_HOST : WP_NODE_ID_MAX;
    for (const char *p = d.prefix; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", *p))
            return oak_err_set(err, OAK_E_INVALID, "prefix may hold only [A-Za-z0-9_-]");
    if (!*d.prefix || strlen(host) > max_len)
        return oak_err_set(err, OAK_E_INVALID, "prefix too long: '%s' exceeds %zu characters", host,
                           max_len);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, d.mqtt_host, &a.sin_addr) != 1)
        return oak_err_set(err, OAK_E_INVALID, "MQTT host must be an IPv4 literal: %s",
                           d.mqtt_host);

    msim_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->o = d;
    s->broker_addr = a;
    s->cluster_url = dup_or_null(d.cluster_url);
    s->token = dup_or_null(d.token);
    s->mqtt_host = xstrdup(d.mqtt_host);
    s->prefix = xstrdup(d.prefix);
    s->admin_user = dup_or_null(d.broker_admin_user);
    s->admin_password = dup_or_null(d.broker_admin_password);
    s->o.cluster_url = s->cluster_url;
    s->o.token = s->token;
    s->o.mqtt_host = s->mqtt_host;
    s->o.prefix = s->prefix;
    s->o.broker_admin_user = s->admin_user;
    s->o.broker_admin_password = s->admin_password;
    s->rng = d.seed ? d.seed : (oak_now_us() ^ ((uint64_t)getpid() << 32));
    if (!s->rng)
        s->rng = 1;
    if (d.broker_admin_user) {
        char uri[64];
        snprintf(uri, sizeof(uri), "tcp://%s:%d", d.mqtt_host, d.mqtt_port);
        if (broker_open(uri, d.broker_admin_user,
                        d.broker_admin_password ? d.broker_admin_password : "", &s->broker,
                        err) < 0) {
            msim_free(s);
            return -1;
        }
    }
    raise_nofile(d.workers);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s->n = d.workers;
    s->st.workers = d.workers;
    s->w = xcalloc((size_t)s->n, sizeof(worker_t));
    for (int i = 0; i < s->n; i++) {
        worker_t *w = &s->w[i];
        w->sim = s;
        w->idx = i;
        w->fd = -1;
        w->st = W_NEW;
        w->backoff_ms = BACKOFF_MIN_MS;
        snprintf(w->host, sizeof(w->host), "%s-%d", s->prefix, i);
        w->cpu_percent = 2.0 + rnd01(s) * 8.0;
        w->load1 = w->cpu_percent / 100.0;
        w->mem_avail = d.memory_mb * 9 / 10;
    }
    s->rbuf = xmalloc(RBUF);
    *out = s;
    return 0;
}

void msim_start(msim_t *s)
{
    s->started_ms = oak_now_ms();
    if (s->o.kill_after_ms > 0 && s->o.kill_count > 0)
        s->kill_at = s->started_ms + (uint64_t)s->o.kill_after_ms;
    s->nthreads = s->o.register_concurrency < s->n ? s->o.register_concurrency : s->n;
    s->threads = xcalloc((size_t)s->nthreads, sizeof(pthread_t));
    for (int i = 0; i < s->nthreads; i++)
        pthread_create(&s->threads[i], NULL, reg_thread, s);
    s->tick_timer = oak_loop_add_timer(s->loop, TICK_MS, on_tick, s);
}

void msim_stats(const msim_t *s, msim_stats_t *out)
{
    *out = s->st;
}

const char *msim_node_id(const msim_t *s, int i)
{
    if (i < 0 || i >= s->n)
        return NULL;
    const worker_t *w = &s->w[i];
    return w->st == W_NEW || w->st == W_FAILED ? NULL : w->id;
}

void msim_shutdown(msim_t *s, void (*done)(void *ctx), void *ctx)
{
    atomic_store(&s->stopping, true);
    s->done = done;
    s->done_ctx = ctx;
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    s->shutdown_deadline = oak_now_ms() + SHUTDOWN_MS;
    for (int i = 0; i < s->n; i++) {
        worker_t *w = &s->w[i];
        if (w->st == W_UP) {
            w->st = W_CLOSING;
            if (publish(w, WP_STATUS, wp_build_status(false)) == 0)
                send_short(w, 0xe0);
        } else if (w->fd >= 0) {
            close_fd(w);
            w->st = W_DEAD;
        } else if (w->st == W_IDLE) {
            w->st = W_DEAD;
        }
    }
    if (!s->tick_timer)
        s->tick_timer = oak_loop_add_timer(s->loop, TICK_MS, on_tick, s);
}

void msim_free(msim_t *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    if (s->tick_timer)
        oak_loop_cancel_timer(s->loop, s->tick_timer);
    for (int i = 0; s->w && i < s->n; i++) {
        worker_t *w = &s->w[i];
        if (w->fd >= 0)
            close_fd(w);
        free(w->password);
        free(w->inst);
        for (size_t k = 0; k < w->npend; k++)
            free(w->pend[k].payload);
        free(w->pend);
    }
    broker_close(s->broker);
    if (s->w)
        curl_global_cleanup();
    free(s->w);
    free(s->threads);
    free(s->rbuf);
    free(s->pkt.p);
    free(s->cluster_url);
    free(s->token);
    free(s->mqtt_host);
    free(s->prefix);
    free(s->admin_user);
    free(s->admin_password);
    free(s);
}

/* ---- test helpers ---- */

pid_t msim_spawn(const char *log_path, const char *const *args)
{
    size_t n = 0;
    while (args[n])
        n++;
    _cleanup_free_ char *bin = xasprintf("%s/test/tools/worker_sim", th_build_dir());
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s: %s\n", bin, strerror(errno));
        return -1;
    }
    _cleanup_free_ char **argv = xcalloc(n + 2, sizeof(char *));
    argv[0] = bin;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execv(bin, argv);
        perror(bin);
        _exit(127);
    }
    return pid;
}

int msim_log_stats(const char *log_path, msim_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    _cleanup_free_ char *log = th_read_file(log_path, NULL);
    const char *line = NULL;
    for (const char *p = log; p && (p = strstr(p, "worker_sim t=")); p++)
        line = p;
    if (!line)
        return -1;
    const char *end = strchr(line, '\n');
    _cleanup_free_ char *l = xstrndup(line, end ? (size_t)(end - line) : strlen(line));
    unsigned long long in = 0, outn = 0, acks = 0, rec = 0, ref = 0;
    sscanf(l,
           "worker_sim t=%*f registered=%d/%d connected=%d dead=%d running=%d msgs_in=%llu "
           "msgs_out=%llu acks_in=%llu reconnects=%llu refused=%llu",
           &out->registered, &out->workers, &out->connected, &out->dead, &out->running, &in, &outn,
           &acks, &rec, &ref);
    out->msgs_in = in;
    out->msgs_out = outn;
    out->acks_in = acks;
    out->reconnects = rec;
    out->refused = ref;
    return 0;
}
