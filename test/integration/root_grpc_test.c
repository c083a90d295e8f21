/* Integration tests of the system-manager's cluster protocol
 * (proto/cluster.proto): the real daemon on free ports, Admin driving it
 * over REST, and cluster stubs built on the generated protobuf-c code and
 * lib/oak_grpc's client playing cluster managers (Join, Report, the
 * Commands stream). Covers join tokens and sessions, automatic placement on
 * reported capacity, the sequenced command stream across reconnects and a
 * root restart, generation checks on status reports, reservations for
 * unacknowledged placements, hand-back to another cluster, and
 * rescheduling away from a lost cluster. Each test runs its own daemon in a
 * fresh state directory and requires it to exit cleanly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "lib/oak_alloc.h"
#include "lib/oak_grpc.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "proto/cluster.pb-c.h"
#include "test/common/harness.h"

#define SVC     "/oak.cluster.v1.ClusterService/"
#define POLL_MS 5000

typedef Oak__Cluster__V1__Command command_t;

/* ---- fixture ---- */

typedef struct stub stub_t;

typedef struct {
    th_daemon_t d;
    char *dir;
    char *admin;
    oak_grpc_channel_t *ch;
    bool keep;
    stub_t *stubs[16]; /* freed (streams closed) by teardown */
    int nstubs;
} fx_t;

static void stub_free(stub_t *s);
static void stub_close(stub_t *s);

static void dump_log(const fx_t *fx)
{
    char *log = th_read_file(fx->d.log_path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s (last 4000 bytes) ----\n%s\n----\n", fx->d.log_path,
            log ? log + (n > 4000 ? n - 4000 : 0) : "(none)");
    free(log);
}

static void fx_start(fx_t *fx, const char *const *env)
{
    if (th_start_root(&fx->d, fx->dir, env) < 0) {
        dump_log(fx);
        fail_msg("system-manager did not start");
    }
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", fx->d.grpc_port);
    fx->ch = oak_grpc_channel_new(target);
}

/* Stops the daemon (SIGTERM), then closes the stubs' streams and the
 * channel, and requires a clean exit. */
static void fx_stop(fx_t *fx)
{
    int st = th_stop(&fx->d, SIGTERM);
    for (int i = 0; i < fx->nstubs; i++)
        stub_close(fx->stubs[i]);
    oak_grpc_channel_free(fx->ch);
    fx->ch = NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fx->keep = true;
        dump_log(fx);
        fail_msg("system-manager did not exit cleanly (wait status %d)", st);
    }
}

static int setup(void **state)
{
    const char *const *env = *state;
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-root-grpc");
    fx_start(fx, env);
    fx->admin = th_login(fx->d.api_port, "Admin", fx->d.admin_password);
    if (!fx->admin) {
        th_stop(&fx->d, SIGKILL);
        dump_log(fx);
        fail_msg("Admin cannot log in");
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->d.pid > 0)
        fx_stop(fx);
    for (int i = 0; i < fx->nstubs; i++)
        stub_free(fx->stubs[i]);
    oak_grpc_channel_free(fx->ch);
    if (!fx->keep)
        th_rmtree(fx->dir);
    free(fx->dir);
    free(fx->admin);
    free(fx);
    return 0;
}

/* ---- REST helpers ---- */

static long httpf(fx_t *fx, const char *method, const json_t *body, json_t **out, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static long httpf(fx_t *fx, const char *method, const json_t *body, json_t **out, const char *fmt,
                  ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return th_http(fx->d.api_port, method, path, fx->admin, body, out);
}

static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = oak_json_str(v, key);
        if (s && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

/* Creates application <app> with one container service needing 1 vCPU
 * and 100 MB; returns the service id (owned). */
static char *create_service(fx_t *fx, const char *app)
{
    json_t *sla =
        json_pack("{s:s, s:s, s:[{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:i, s:i, s:[s]}]}]}",
                  "sla_version", "v2.0", "customerID", "Admin", "applications", "application_name",
                  app, "application_namespace", "test", "microservices", "microservice_name", "web",
                  "microservice_namespace", "test", "virtualization", "container", "code",
                  "docker.io/library/nginx:latest", "memory", 100, "vcpus", 1, "cmd", "nginx");
    json_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", sla, &out, "/api/application/"), 200);
    json_t *a = find_by(out, "application_name", app);
    assert_non_null(a);
    char *sid = xstrdup(json_string_value(json_array_get(json_object_get(a, "microservices"), 0)));
    json_decref(out);
    json_decref(sla);
    return sid;
}

/* Requests count instances of sid; returns the number of the first. */
static int request_instances(fx_t *fx, const char *sid, int count)
{
    json_t *b = json_pack("{s:i}", "replicas", count), *out = NULL;
    assert_int_equal(httpf(fx, "POST", b, &out, "/api/service/%s/instance", sid), 200);
    int first = (int)json_integer_value(json_array_get(json_object_get(out, "instances"), 0));
    json_decref(out);
    json_decref(b);
    return first;
}

static json_t *get_instance(fx_t *fx, const char *sid, int n)
{
    json_t *svc = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &svc, "/api/service/%s", sid), 200);
    size_t i;
    json_t *in, *found = NULL;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) == n)
            found = json_incref(in);
    }
    json_decref(svc);
    if (!found)
        fail_msg("service %s has no instance %d", sid, n);
    return found;
}

/* Polls (every 50 ms, up to ms) until instance n of sid has status; returns
 * the instance. */
static json_t *wait_status(fx_t *fx, const char *sid, int n, const char *status, long ms)
{
    uint64_t end = oak_now_ms() + (uint64_t)ms;
    for (;;) {
        json_t *in = get_instance(fx, sid, n);
        const char *st = oak_json_str(in, "status");
        if (st && !strcmp(st, status))
            return in;
        if (oak_now_ms() > end)
            fail_msg("instance %s/%d: status %s after %ld ms, want %s (%s)", sid, n,
                     st ? st : "(none)", ms, status, oak_json_str(in, "status_detail"));
        json_decref(in);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void assert_status(fx_t *fx, const char *sid, int n, const char *status)
{
    json_t *in = get_instance(fx, sid, n);
    if (strcmp(oak_json_str(in, "status"), status) != 0)
        fail_msg("instance %s/%d: %s, want %s", sid, n, oak_json_str(in, "status"), status);
    json_decref(in);
}

/* The cluster's entry in GET /api/clusters/ (new reference). */
static json_t *cluster_entry(fx_t *fx, const char *id)
{
    json_t *list = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &list, "/api/clusters/"), 200);
    json_t *c = json_incref(find_by(list, "_id", id));
    json_decref(list);
    if (!c)
        fail_msg("cluster %s not listed", id);
    return c;
}

static char *join_token(fx_t *fx, const char *cluster_name)
{
    json_t *b = cluster_name ? json_pack("{s:s}", "cluster_name", cluster_name) : NULL;
    json_t *out = NULL;
    assert_int_equal(httpf(fx, "POST", b, &out, "/api/clusters/token"), 201);
    assert_non_null(oak_json_str(out, "token"));
    char *t = xstrdup(oak_json_str(out, "token"));
    json_decref(out);
    json_decref(b);
    return t;
}

/* ---- the cluster stub ---- */

struct stub {
    fx_t *fx;
    char name[32];
    char *id, *session;
    oak_grpc_client_stream_t *stream;
};

typedef struct {
    int64_t cpu_total, cpu_free, mem_total, mem_free;
    double cpu_percent; /* 0: a plausible value */
} cap_t;

typedef struct {
    const char *sid;
    int n;
    const char *status;
    uint64_t gen;
} inst_t;

static int join(fx_t *fx, const char *token, const char *name,
                Oak__Cluster__V1__RegisterReply **out, oak_err_t *err)
{
    Oak__Cluster__V1__RegisterRequest req = OAK__CLUSTER__V1__REGISTER_REQUEST__INIT;
    req.join_token = (char *)token;
    req.cluster_name = (char *)name;
    req.cluster_location = "48.1,11.6,1000";
    req.manager_port = 10100;
    req.network_component_port = 10101;
    req.version = "test";
    return oak_grpc_unary(fx->ch, SVC "Join", &req.base,
                          &oak__cluster__v1__register_reply__descriptor, 5000,
                          (ProtobufCMessage **)out, err);
}

/* A stub (owned by fx) for cluster id with session; no stream yet. */
static stub_t *stub_add(fx_t *fx, const char *name, const char *id, const char *session)
{
    assert_true(fx->nstubs < 16);
    stub_t *s = xcalloc(1, sizeof(*s));
    s->fx = fx;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->id = xstrdup(id);
    s->session = xstrdup(session);
    fx->stubs[fx->nstubs++] = s;
    return s;
}

/* Joins with a fresh token bound to name. */
static stub_t *stub_join(fx_t *fx, const char *name)
{
    char *tok = join_token(fx, name);
    Oak__Cluster__V1__RegisterReply *rep = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (join(fx, tok, name, &rep, &err) < 0)
        fail_msg("join %s: %s", name, err.msg);
    free(tok);
    assert_true(strlen(rep->cluster_id) > 0);
    assert_true(strlen(rep->session_token) >= 16);
    stub_t *s = stub_add(fx, name, rep->cluster_id, rep->session_token);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return s;
}

static void stub_close(stub_t *s)
{
    oak_grpc_stream_close(s->stream);
    s->stream = NULL;
}

static void stub_free(stub_t *s)
{
    stub_close(s);
    free(s->id);
    free(s->session);
    free(s);
}

/* Sends a Report; cap NULL leaves capacity unchanged. */
static int report_as(stub_t *s, const char *session, const cap_t *cap, const inst_t *insts,
                     size_t ninsts, uint64_t ack, uint64_t *last_seq, oak_err_t *err)
{
    Oak__Cluster__V1__ReportRequest req = OAK__CLUSTER__V1__REPORT_REQUEST__INIT;
    Oak__Cluster__V1__Capacity c = OAK__CLUSTER__V1__CAPACITY__INIT;
    Oak__Cluster__V1__ArchCapacity a = OAK__CLUSTER__V1__ARCH_CAPACITY__INIT;
    Oak__Cluster__V1__ArchCapacity *ap = &a;
    char *virt[] = {"container"};
    Oak__Cluster__V1__InstanceStatus st[8];
    Oak__Cluster__V1__InstanceStatus *stp[8];
    req.cluster_id = s->id;
    req.session_token = (char *)session;
    req.ack_seq = ack;
    if (cap) {
        c.cpu_millis_total = cap->cpu_total;
        c.cpu_millis_free = cap->cpu_free;
        c.memory_mb_total = cap->mem_total;
        c.memory_mb_free = cap->mem_free;
        c.active_workers = 1;
        c.n_virtualization = 1;
        c.virtualization = virt;
        c.cpu_percent = cap->cpu_percent != 0 ? cap->cpu_percent : 12.5;
        c.memory_percent = 30;
        a.architecture = "amd64";
        a.n_virtualization = 1;
        a.virtualization = virt;
        a.cpu_millis_total = cap->cpu_total;
        a.cpu_millis_free = cap->cpu_free;
        a.memory_mb_total = cap->mem_total;
        a.memory_mb_free = cap->mem_free;
        a.workers = 1;
        c.n_per_arch = 1;
        c.per_arch = &ap;
        req.capacity = &c;
    }
    assert_true(ninsts <= 8);
    for (size_t i = 0; i < ninsts; i++) {
        Oak__Cluster__V1__InstanceStatus init = OAK__CLUSTER__V1__INSTANCE_STATUS__INIT;
        st[i] = init;
        st[i].service_id = (char *)insts[i].sid;
        st[i].instance_number = insts[i].n;
        st[i].status = (char *)insts[i].status;
        st[i].status_detail = "";
        st[i].generation = insts[i].gen;
        st[i].worker_id = "worker-a";
        st[i].host_ip = "10.0.0.7";
        st[i].timestamp = (double)time(NULL);
        stp[i] = &st[i];
    }
    req.n_instances = ninsts;
    req.instances = stp;
    Oak__Cluster__V1__ReportReply *rep = NULL;
    int rc = oak_grpc_unary(s->fx->ch, SVC "Report", &req.base,
                            &oak__cluster__v1__report_reply__descriptor, 5000,
                            (ProtobufCMessage **)&rep, err);
    if (rc == 0) {
        if (last_seq)
            *last_seq = rep->last_seq;
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    return rc;
}

static void report(stub_t *s, const cap_t *cap, const inst_t *insts, size_t ninsts, uint64_t ack)
{
    oak_err_t err = OAK_ERR_INIT;
    if (report_as(s, s->session, cap, insts, ninsts, ack, NULL, &err) < 0)
        fail_msg("report from %s: %s", s->name, err.msg);
}

static void report_one(stub_t *s, const char *sid, int n, const char *status, uint64_t gen,
                       uint64_t ack)
{
    inst_t in = {sid, n, status, gen};
    report(s, NULL, &in, 1, ack);
}

static oak_grpc_client_stream_t *open_stream_as(stub_t *s, const char *session, uint64_t after)
{
    Oak__Cluster__V1__CommandsRequest req = OAK__CLUSTER__V1__COMMANDS_REQUEST__INIT;
    oak_err_t err = OAK_ERR_INIT;
    req.cluster_id = s->id;
    req.session_token = (char *)session;
    req.after_seq = after;
    oak_grpc_client_stream_t *st = oak_grpc_stream_open(
        s->fx->ch, SVC "Commands", &req.base, &oak__cluster__v1__command__descriptor, &err);
    if (!st)
        fail_msg("open stream: %s", err.msg);
    return st;
}

static void stub_open(stub_t *s, uint64_t after)
{
    stub_close(s);
    s->stream = open_stream_as(s, s->session, after);
}

/* Reads the next command (fails the test after ms). Owned by the caller. */
static command_t *next_cmd(stub_t *s, long ms)
{
    command_t *c = NULL;
    oak_err_t err = OAK_ERR_INIT;
    int rc = oak_grpc_stream_read(s->stream, ms, (ProtobufCMessage **)&c, &err);
    if (rc != 1)
        fail_msg("%s: no command within %ld ms (rc %d: %s)", s->name, ms, rc, err.msg);
    return c;
}

/* Reads the next command and checks it. */
static void expect_cmd(stub_t *s, long ms, uint64_t seq, int kind, const char *sid, int n,
                       uint64_t gen)
{
    command_t *c = next_cmd(s, ms);
    if (c->seq != seq || (int)c->kind != kind || strcmp(c->service_id, sid) != 0 ||
        c->instance_number != n || c->generation != gen)
        fail_msg("%s: got command seq %llu kind %d %s/%d gen %llu; want seq %llu kind %d %s/%d "
                 "gen %llu",
                 s->name, (unsigned long long)c->seq, (int)c->kind, c->service_id,
                 c->instance_number, (unsigned long long)c->generation, (unsigned long long)seq,
                 kind, sid, n, (unsigned long long)gen);
    protobuf_c_message_free_unpacked(&c->base, NULL);
}

/* Nothing arrives within ms. */
static void expect_no_cmd(stub_t *s, long ms)
{
    command_t *c = NULL;
    oak_err_t err = OAK_ERR_INIT;
    int rc = oak_grpc_stream_read(s->stream, ms, (ProtobufCMessage **)&c, &err);
    if (rc == 1)
        fail_msg("%s: unexpected command seq %llu kind %d %s/%d", s->name,
                 (unsigned long long)c->seq, (int)c->kind, c->service_id, c->instance_number);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, OAK_E_TIMEOUT);
}

enum {
    PLACE = OAK__CLUSTER__V1__COMMAND__KIND__PLACE,
    REMOVE = OAK__CLUSTER__V1__COMMAND__KIND__REMOVE
};

static const cap_t big = {4000, 4000, 8192, 8192};

/* A service of application `app` (*sid, owned) with one instance, placed
 * (generation 1) on the only cluster, edge1, which has room and its command
 * stream open. */
static stub_t *placed_on_edge1(fx_t *fx, const char *app, char **sid)
{
    *sid = create_service(fx, app);
    stub_t *c1 = stub_join(fx, "edge1");
    report(c1, &big, NULL, 0, 0);
    stub_open(c1, 0);
    assert_int_equal(request_instances(fx, *sid, 1), 0);
    expect_cmd(c1, 5000, 1, PLACE, *sid, 0, 1);
    return c1;
}


/* ---- tests ---- */

static void test_join_place_and_stream(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app1");
    assert_int_equal(request_instances(fx, sid, 1), 0);
    json_t *in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "NO_CLUSTER_CAPACITY");
    json_decref(in);

    /* join: bad token, token bound to another name, good */
    char *tok = join_token(fx, "edge1");
    Oak__Cluster__V1__RegisterReply *rep = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(join(fx, "not-a-token", "edge1", &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    assert_int_equal(join(fx, tok, "edge2", &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_FORBIDDEN);
    oak_err_clear(&err);
    assert_int_equal(join(fx, tok, "", &rep, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    assert_int_equal(join(fx, tok, "edge1", &rep, &err), 0);
    stub_t *c1 = stub_add(fx, "edge1", rep->cluster_id, rep->session_token);
    assert_int_equal(rep->last_seq, 0);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    free(tok);

    json_t *ce = cluster_entry(fx, c1->id);
    assert_string_equal(oak_json_str(ce, "cluster_name"), "edge1");
    assert_string_equal(oak_json_str(ce, "cluster_location"), "48.1,11.6,1000");
    assert_string_equal(oak_json_str(ce, "ip"), "127.0.0.1");
    json_decref(ce);

    /* wrong session / unknown cluster */
    assert_int_equal(report_as(c1, "wrong-session", &big, NULL, 0, 0, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    stub_t *ghost = stub_add(fx, "ghost", "000000000000000000000000", c1->session);
    assert_int_equal(report_as(ghost, c1->session, &big, NULL, 0, 0, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    stub_t *bad = stub_add(fx, "bad", c1->id, "wrong-session");
    stub_open(bad, 0);
    command_t *cmd = NULL;
    assert_int_equal(oak_grpc_stream_read(bad->stream, 5000, (ProtobufCMessage **)&cmd, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    stub_close(bad);
    /* nothing was placed on the strength of the rejected reports */
    assert_status(fx, sid, 0, "NO_CLUSTER_CAPACITY");

    /* capacity: the waiting instance is placed without further requests */
    report(c1, &big, NULL, 0, 0);
    in = wait_status(fx, sid, 0, "CLUSTER_SCHEDULED", POLL_MS);
    assert_string_equal(oak_json_str(in, "cluster_id"), c1->id);
    assert_int_equal(oak_json_int(in, "generation", 0), 1);
    json_decref(in);
    ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 1);
    assert_int_equal(oak_json_int(json_object_get(ce, "reserved"), "cpu_millis", -1), 1000);
    assert_int_equal(oak_json_int(json_object_get(ce, "capacity"), "cpu_millis_free", -1), 4000);
    assert_true(oak_json_bool(ce, "active", false));
    json_decref(ce);

    /* the command stream delivers the placement */
    stub_open(c1, 0);
    cmd = next_cmd(c1, 5000);
    assert_int_equal(cmd->seq, 1);
    assert_int_equal(cmd->kind, PLACE);
    assert_string_equal(cmd->service_id, sid);
    assert_int_equal(cmd->instance_number, 0);
    assert_int_equal(cmd->generation, 1);
    json_t *spec = json_loads(cmd->service_json, 0, NULL);
    assert_non_null(spec);
    assert_string_equal(oak_json_str(spec, "image"), "docker.io/library/nginx:latest");
    assert_string_equal(oak_json_str(spec, "_id"), sid);
    assert_int_equal(oak_json_int(spec, "vcpus", 0), 1);
    json_decref(spec);
    protobuf_c_message_free_unpacked(&cmd->base, NULL);
    expect_no_cmd(c1, 200);
    ce = cluster_entry(fx, c1->id);
    assert_true(oak_json_bool(ce, "connected", false));
    json_decref(ce);

    /* status reports for the current generation show in the REST API */
    report_one(c1, sid, 0, "NODE_SCHEDULED", 1, 0);
    assert_status(fx, sid, 0, "NODE_SCHEDULED");
    report_one(c1, sid, 0, "RUNNING", 1, 0);
    in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "RUNNING");
    assert_string_equal(oak_json_str(in, "worker_id"), "worker-a");
    assert_string_equal(oak_json_str(in, "host_ip"), "10.0.0.7");
    json_decref(in);
    json_t *svc = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &svc, "/api/service/%s", sid), 200);
    assert_string_equal(oak_json_str(svc, "status"), "RUNNING");
    json_decref(svc);

    /* reconnect: seq 2 is queued while no stream is open */
    stub_close(c1);
    assert_int_equal(request_instances(fx, sid, 1), 1);
    in = wait_status(fx, sid, 1, "CLUSTER_SCHEDULED", POLL_MS);
    assert_string_equal(oak_json_str(in, "cluster_id"), c1->id);
    json_decref(in);
    ce = cluster_entry(fx, c1->id);
    assert_false(oak_json_bool(ce, "connected", true));
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 2);
    json_decref(ce);
    stub_open(c1, 1);
    expect_cmd(c1, 5000, 2, PLACE, sid, 1, 1);
    expect_no_cmd(c1, 300); /* no duplicate of seq 1 */

    /* acknowledgement clears the queue and the reservations */
    uint64_t last = 0;
    assert_int_equal(report_as(c1, c1->session, NULL, NULL, 0, 2, &last, &err), 0);
    assert_int_equal(last, 2);
    ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 0);
    assert_int_equal(oak_json_int(json_object_get(ce, "reserved"), "cpu_millis", -1), 0);
    json_decref(ce);
    /* acknowledging beyond what was issued is refused */
    assert_int_equal(report_as(c1, c1->session, NULL, NULL, 0, 3, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* a report about an older generation changes nothing; the root may
     * ask the cluster to drop that stale copy, never the current one */
    report_one(c1, sid, 0, "FAILED", 0, 2);
    assert_status(fx, sid, 0, "RUNNING");
    in = get_instance(fx, sid, 0);
    assert_int_equal(oak_json_int(in, "generation", 0), 1);
    json_decref(in);
    command_t *extra = NULL;
    if (oak_grpc_stream_read(c1->stream, 500, (ProtobufCMessage **)&extra, &err) == 1) {
        assert_int_equal(extra->kind, REMOVE);
        assert_int_equal(extra->generation, 0);
        protobuf_c_message_free_unpacked(&extra->base, NULL);
    }
    oak_err_clear(&err);

    /* undeploying a placed instance sends REMOVE for its generation */
    assert_int_equal(httpf(fx, "DELETE", NULL, NULL, "/api/service/%s/instance/1", sid), 200);
    command_t *rm = next_cmd(c1, 5000);
    assert_int_equal(rm->kind, REMOVE);
    assert_string_equal(rm->service_id, sid);
    assert_int_equal(rm->instance_number, 1);
    assert_int_equal(rm->generation, 1);
    protobuf_c_message_free_unpacked(&rm->base, NULL);

    /* deleting the application removes the remaining instance */
    json_t *sdoc = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &sdoc, "/api/service/%s", sid), 200);
    assert_int_equal(
        httpf(fx, "DELETE", NULL, NULL, "/api/application/%s", oak_json_str(sdoc, "applicationID")),
        200);
    json_decref(sdoc);
    rm = next_cmd(c1, 5000);
    assert_int_equal(rm->kind, REMOVE);
    assert_string_equal(rm->service_id, sid);
    assert_int_equal(rm->instance_number, 0);
    assert_int_equal(rm->generation, 1);
    protobuf_c_message_free_unpacked(&rm->base, NULL);
    expect_no_cmd(c1, 200);
    assert_int_equal(httpf(fx, "GET", NULL, NULL, "/api/service/%s", sid), 404);
    /* the cluster still reporting it gets no PLACE, and the root stays sane */
    report_one(c1, sid, 0, "RUNNING", 1, 0);
    expect_no_cmd(c1, 200); /* its REMOVE is already queued */

    free(sid);
}

static int count_status(fx_t *fx, const char *sid, const char *status)
{
    json_t *svc = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &svc, "/api/service/%s", sid), 200);
    size_t i;
    json_t *in;
    int n = 0;
    json_array_foreach(json_object_get(svc, "instance_list"), i, in)
    {
        const char *st = oak_json_str(in, "status");
        n += st && !strcmp(st, status);
    }
    json_decref(svc);
    return n;
}

static void test_reservations(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app2");
    stub_t *c1 = stub_join(fx, "small");
    const cap_t two = {2000, 2000, 8192, 8192};
    report(c1, &two, NULL, 0, 0);
    stub_open(c1, 0);
    /* wait until the cluster counts as a candidate (capacity applied) */
    json_t *ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(json_object_get(ce, "capacity"), "cpu_millis_free", -1), 2000);
    json_decref(ce);

    assert_int_equal(request_instances(fx, sid, 3), 0);
    assert_int_equal(count_status(fx, sid, "CLUSTER_SCHEDULED"), 2);
    assert_int_equal(count_status(fx, sid, "NO_CLUSTER_CAPACITY"), 1);
    ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(json_object_get(ce, "reserved"), "cpu_millis", -1), 2000);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 2);
    json_decref(ce);
    command_t *a = next_cmd(c1, 5000), *b = next_cmd(c1, 5000);
    assert_int_equal(a->seq, 1);
    assert_int_equal(b->seq, 2);
    assert_int_equal(a->kind, PLACE);
    assert_int_equal(b->kind, PLACE);
    assert_int_not_equal(a->instance_number, b->instance_number);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    protobuf_c_message_free_unpacked(&b->base, NULL);

    /* the same free capacity reported again, before the placements are
     * acknowledged, does not make room: the reservations still hold it */
    report(c1, &two, NULL, 0, 0);
    uint64_t end = oak_now_ms() + 1500; /* longer than a scheduler tick */
    while (oak_now_ms() < end) {
        assert_int_equal(count_status(fx, sid, "CLUSTER_SCHEDULED"), 2);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    expect_no_cmd(c1, 10);

    /* the placements are applied (ack) and a worker joined: room for one */
    const cap_t three = {3000, 1000, 12288, 12088};
    report(c1, &three, NULL, 0, 2);
    uint64_t t0 = oak_now_ms();
    while (count_status(fx, sid, "CLUSTER_SCHEDULED") != 3) {
        if (oak_now_ms() - t0 > POLL_MS)
            fail_msg("third instance not placed after the ack");
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(count_status(fx, sid, "NO_CLUSTER_CAPACITY"), 0);
    command_t *c = next_cmd(c1, 5000);
    assert_int_equal(c->seq, 3);
    assert_int_equal(c->kind, PLACE);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(json_object_get(ce, "reserved"), "cpu_millis", -1), 1000);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 1);
    json_decref(ce);
    /* a fourth instance does not fit */
    assert_int_equal(request_instances(fx, sid, 1), 3);
    assert_status(fx, sid, 3, "NO_CLUSTER_CAPACITY");
    free(sid);
}

static void test_root_restart(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app3");
    stub_t *c1 = stub_join(fx, "edge1");
    report(c1, &big, NULL, 0, 0);
    stub_open(c1, 0);
    assert_int_equal(request_instances(fx, sid, 2), 0);
    expect_cmd(c1, 5000, 1, PLACE, sid, 0, 1);
    expect_cmd(c1, 5000, 2, PLACE, sid, 1, 1);
    report_one(c1, sid, 0, "RUNNING", 1, 1); /* applied seq 1 only */
    json_t *ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 1);
    json_decref(ce);

    /* stop with the stream open: the root exits cleanly, the stream ends */
    oak_grpc_client_stream_t *old_stream = c1->stream;
    c1->stream = NULL;
    int st = th_stop(&fx->d, SIGTERM);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fx->keep = true;
        dump_log(fx);
        fail_msg("system-manager did not exit cleanly with an open stream (%d)", st);
    }
    command_t *none = NULL;
    oak_err_t rerr = OAK_ERR_INIT;
    assert_int_equal(oak_grpc_stream_read(old_stream, 5000, (ProtobufCMessage **)&none, &rerr), -1);
    assert_int_not_equal(rerr.code, OAK_E_TIMEOUT);
    oak_err_clear(&rerr);
    oak_grpc_stream_close(old_stream);
    oak_grpc_channel_free(fx->ch);
    fx->ch = NULL;
    fx_start(fx, NULL);

    /* state survived: statuses, the cluster, its unacknowledged command */
    assert_status(fx, sid, 0, "RUNNING");
    assert_status(fx, sid, 1, "CLUSTER_SCHEDULED");
    ce = cluster_entry(fx, c1->id);
    assert_string_equal(oak_json_str(ce, "cluster_name"), "edge1");
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 1);
    assert_int_equal(oak_json_int(json_object_get(ce, "reserved"), "cpu_millis", -1), 1000);
    json_decref(ce);
    /* the session survived too */
    uint64_t last = 0;
    oak_err_t err = OAK_ERR_INIT;
    if (report_as(c1, c1->session, NULL, NULL, 0, 1, &last, &err) < 0)
        fail_msg("report after restart: %s", err.msg);
    assert_int_equal(last, 2);
    /* the unacknowledged command is redelivered, exactly once */
    stub_open(c1, 1);
    expect_cmd(c1, 5000, 2, PLACE, sid, 1, 1);
    expect_no_cmd(c1, 300);
    /* new commands continue the sequence */
    assert_int_equal(request_instances(fx, sid, 1), 2);
    expect_cmd(c1, 5000, 3, PLACE, sid, 2, 1);

    /* joining again keeps the id and replaces the session */
    stub_close(c1);
    char *tok = join_token(fx, "edge1");
    Oak__Cluster__V1__RegisterReply *rep = NULL;
    assert_int_equal(join(fx, tok, "edge1", &rep, &err), 0);
    assert_string_equal(rep->cluster_id, c1->id);
    assert_int_equal(rep->last_seq, 3);
    assert_int_equal(report_as(c1, c1->session, NULL, NULL, 0, 0, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    free(c1->session);
    c1->session = xstrdup(rep->session_token);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    free(tok);
    report(c1, NULL, NULL, 0, 3);
    ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 0);
    json_decref(ce);
    free(sid);
}

static void test_hand_back(void **state)
{
    fx_t *fx = *state;
    char *sid = NULL;
    stub_t *c1 = placed_on_edge1(fx, "app4", &sid);

    stub_t *c2 = stub_join(fx, "edge2");
    report(c2, &big, NULL, 0, 0);
    stub_open(c2, 0);
    expect_no_cmd(c2, 100);

    /* cluster 1 has no worker for it: the root moves it to cluster 2 */
    report_one(c1, sid, 0, "NO_WORKER_CAPACITY", 1, 1);
    expect_cmd(c2, 5000, 1, PLACE, sid, 0, 2);
    json_t *in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "CLUSTER_SCHEDULED");
    assert_string_equal(oak_json_str(in, "cluster_id"), c2->id);
    assert_int_equal(oak_json_int(in, "generation", 0), 2);
    json_decref(in);

    /* cluster 1 later reports the old generation running: it must drop it */
    report_one(c1, sid, 0, "RUNNING", 1, 1);
    expect_cmd(c1, 5000, 2, REMOVE, sid, 0, 1);
    in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "CLUSTER_SCHEDULED");
    assert_string_equal(oak_json_str(in, "cluster_id"), c2->id);
    json_decref(in);
    /* once queued, repeating the stale report does not queue it again */
    report_one(c1, sid, 0, "RUNNING", 1, 1);
    expect_no_cmd(c1, 300);

    /* cluster 2 runs generation 2 */
    report_one(c2, sid, 0, "RUNNING", 2, 1);
    assert_status(fx, sid, 0, "RUNNING");
    free(sid);
}

/* The only cluster hands an instance back (a `direct` node it does not
 * have): the root does not bounce it straight back there, and says why. */
static void test_hand_back_no_other_cluster(void **state)
{
    fx_t *fx = *state;
    char *sid = NULL;
    stub_t *c1 = placed_on_edge1(fx, "app8", &sid);
    report_one(c1, sid, 0, "NO_NODE_FOUND", 1, 1);
    /* reports keep coming; none of them brings the instance back to c1 */
    for (int i = 0; i < 4; i++) {
        report(c1, &big, NULL, 0, 0);
        command_t *c = NULL;
        oak_err_t err = OAK_ERR_INIT;
        if (oak_grpc_stream_read(c1->stream, 300, (ProtobufCMessage **)&c, &err) == 1) {
            dump_log(fx);
            fail_msg("instance placed on edge1 again after it handed it back: generation %llu",
                     (unsigned long long)c->generation);
        }
        assert_int_equal(err.code, OAK_E_TIMEOUT);
        oak_err_clear(&err);
    }
    json_t *in = get_instance(fx, sid, 0);
    assert_int_equal(oak_json_int(in, "generation", 0), 1);
    const char *st = oak_json_str(in, "status"), *det = oak_json_str(in, "status_detail");
    assert_true(st && strcmp(st, "CLUSTER_SCHEDULED") != 0);
    assert_non_null(strstr(det, "handed it back: NO_NODE_FOUND"));
    assert_non_null(strstr(det, "asked again after 30 s"));
    json_decref(in);
    free(sid);
}

/* A cluster without workers may average its load over zero of them. */
static void test_nan_load_keeps_capacity(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app7");
    stub_t *c1 = stub_join(fx, "edge1");
    const cap_t nan_load = {4000, 4000, 8192, 8192, NAN};
    report(c1, &nan_load, NULL, 0, 0);
    json_t *ce = cluster_entry(fx, c1->id);
    assert_int_equal(oak_json_int(json_object_get(ce, "capacity"), "cpu_millis_free", -1), 4000);
    json_decref(ce);
    assert_int_equal(request_instances(fx, sid, 1), 0);
    assert_status(fx, sid, 0, "CLUSTER_SCHEDULED");
    free(sid);
}

static const char *const env_fast_loss[] = {"OAK_CLUSTER_STALE_S=2", "OAK_CLUSTER_GRACE_S=2", NULL};

static void test_cluster_lost(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app5");
    stub_t *c1 = stub_join(fx, "edge1");
    report(c1, &big, NULL, 0, 0);
    stub_open(c1, 0);
    assert_int_equal(request_instances(fx, sid, 2), 0);
    expect_cmd(c1, 5000, 1, PLACE, sid, 0, 1);
    expect_cmd(c1, 5000, 2, PLACE, sid, 1, 1);
    inst_t running[] = {{sid, 0, "RUNNING", 1}, {sid, 1, "RUNNING", 1}};
    report(c1, NULL, running, 2, 2);
    assert_status(fx, sid, 0, "RUNNING");
    assert_status(fx, sid, 1, "RUNNING");

    stub_t *c2 = stub_join(fx, "edge2");
    report(c2, &big, NULL, 0, 0);
    stub_open(c2, 0);

    /* cluster 1 goes silent: its instances are placed on cluster 2 */
    uint64_t t0 = oak_now_ms();
    stub_close(c1);
    expect_cmd(c2, 10000, 1, PLACE, sid, 0, 2);
    uint64_t took = oak_now_ms() - t0;
    assert_true(took >= 3000); /* not before stale + grace */
    expect_cmd(c2, 5000, 2, PLACE, sid, 1, 2);
    json_t *in;
    for (int n = 0; n < 2; n++) {
        in = get_instance(fx, sid, n);
        assert_string_equal(oak_json_str(in, "cluster_id"), c2->id);
        assert_string_equal(oak_json_str(in, "status"), "CLUSTER_SCHEDULED");
        assert_int_equal(oak_json_int(in, "generation", 0), 2);
        json_decref(in);
    }
    json_t *ce = cluster_entry(fx, c1->id);
    assert_false(oak_json_bool(ce, "active", true));
    json_decref(ce);

    /* cluster 1 comes back: its stream carries REMOVE for the old copies */
    stub_open(c1, 2);
    expect_cmd(c1, 5000, 3, REMOVE, sid, 0, 1);
    expect_cmd(c1, 5000, 4, REMOVE, sid, 1, 1);
    expect_no_cmd(c1, 200);
    /* its report about the old generation (before it applied the REMOVE)
     * changes nothing and queues no second REMOVE */
    report(c1, NULL, running, 2, 2);
    in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "cluster_id"), c2->id);
    assert_string_equal(oak_json_str(in, "status"), "CLUSTER_SCHEDULED");
    json_decref(in);
    expect_no_cmd(c1, 200);
    report(c1, NULL, NULL, 0, 4); /* REMOVEs applied */
    ce = cluster_entry(fx, c1->id);
    assert_true(oak_json_bool(ce, "active", false));
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 0);
    json_decref(ce);
    free(sid);
}

/* The root's own downtime is no cluster's fault: after a restart that
 * took longer than stale + grace, a cluster that reconnects promptly keeps
 * its instances. */
static void test_root_downtime_is_not_cluster_loss(void **state)
{
    fx_t *fx = *state;
    char *sid = NULL;
    stub_t *c1 = placed_on_edge1(fx, "app8", &sid);
    report_one(c1, sid, 0, "RUNNING", 1, 1);
    assert_status(fx, sid, 0, "RUNNING");

    fx_stop(fx);
    struct timespec ts = {4, 500 * 1000 * 1000}; /* > stale (2 s) + grace (2 s) */
    nanosleep(&ts, NULL);
    fx_start(fx, env_fast_loss);
    /* the cluster reconnects at once */
    stub_open(c1, 1);
    report(c1, &big, NULL, 0, 1);
    /* ... and keeps its instance: no REMOVE, no move */
    expect_no_cmd(c1, 2500);
    json_t *in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "RUNNING");
    assert_string_equal(oak_json_str(in, "cluster_id"), c1->id);
    assert_int_equal(oak_json_int(in, "generation", 0), 1);
    json_decref(in);
    json_t *ce = cluster_entry(fx, c1->id);
    assert_true(oak_json_bool(ce, "active", false));
    assert_int_equal(oak_json_int(ce, "pending_commands", -1), 0);
    json_decref(ce);
    free(sid);
}

static void test_hostile_cluster(void **state)
{
    fx_t *fx = *state;
    char *sid = create_service(fx, "app6");
    stub_t *c1 = stub_join(fx, "edge1");
    report(c1, &big, NULL, 0, 0);
    oak_err_t err = OAK_ERR_INIT;

    /* a stream asking for commands that were never issued */
    stub_open(c1, 7);
    command_t *cmd = NULL;
    assert_int_equal(oak_grpc_stream_read(c1->stream, 5000, (ProtobufCMessage **)&cmd, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* statuses for instances the root never placed there */
    stub_open(c1, 0);
    inst_t odd[] = {
        {"000000000000000000000000", 0, "RUNNING", 1}, /* no such service */
        {sid, 5, "RUNNING", 1},                        /* no such instance */
        {"\xff\xfe-not-utf8", 0, "RUNNING", 1},
        {sid, 0, "\xc3(", 1},
        {"", -1, "", 0},
    };
    assert_int_equal(
        report_as(c1, c1->session, &big, odd, sizeof(odd) / sizeof(odd[0]), 0, NULL, &err), 0);
    /* the root asks the cluster to drop what it should not run */
    command_t *rm = next_cmd(c1, 5000);
    assert_int_equal(rm->kind, REMOVE);
    assert_string_equal(rm->service_id, "000000000000000000000000");
    protobuf_c_message_free_unpacked(&rm->base, NULL);
    rm = next_cmd(c1, 5000);
    assert_int_equal(rm->kind, REMOVE);
    assert_string_equal(rm->service_id, sid);
    assert_int_equal(rm->instance_number, 5);
    protobuf_c_message_free_unpacked(&rm->base, NULL);
    /* drain whatever else the root chose to send; it must stay healthy */
    while (oak_grpc_stream_read(c1->stream, 300, (ProtobufCMessage **)&cmd, &err) == 1) {
        assert_int_equal(cmd->kind, REMOVE);
        protobuf_c_message_free_unpacked(&cmd->base, NULL);
    }
    oak_err_clear(&err);
    json_t *h = NULL;
    assert_int_equal(httpf(fx, "GET", NULL, &h, "/api/health"), 200);
    assert_int_equal(oak_json_int(h, "clusters", -1), 1);
    json_decref(h);
    /* the real service is untouched and can still be placed */
    assert_int_equal(request_instances(fx, sid, 1), 0);
    json_t *in = get_instance(fx, sid, 0);
    assert_string_equal(oak_json_str(in, "status"), "CLUSTER_SCHEDULED");
    json_decref(in);
    free(sid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_place_and_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_back_no_other_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_load_keeps_capacity, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_cluster_lost, setup, teardown,
                                                 (void *)env_fast_loss),
        cmocka_unit_test_prestate_setup_teardown(test_root_downtime_is_not_cluster_loss, setup,
                                                 teardown, (void *)env_fast_loss),
        cmocka_unit_test_setup_teardown(test_hostile_cluster, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
