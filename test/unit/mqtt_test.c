/* lib/oak_mqtt against a real mosquitto (/usr/sbin/mosquitto, or env
 * OAK_MOSQUITTO) that the test starts on a free port of 127.0.0.1 with its
 * own minimal config in a temporary directory: QoS 1 round trip, 5,000
 * messages in order, buffering across a broker restart, the will on
 * oak_mqtt_kill (and not on oak_mqtt_free), a refused password, freeing
 * while disconnected or with events still queued, 1,000 clients in one
 * process. The loop runs on the test thread (run_until), so every callback
 * runs here too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_loop.h"
#include "lib/oak_mqtt.h"
#include "test/common/harness.h"

/* ---- broker ---- */

typedef struct {
    char *dir;
    int port;
    pid_t pid;
    bool persistence;
    const char *user, *password; /* password_file with this one user; else anonymous */
    char uri[64];
} broker_t;

static const char *mosquitto_bin(void)
{
    const char *b = getenv("OAK_MOSQUITTO");
    return b && *b ? b : "/usr/sbin/mosquitto";
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* (Re)starts the broker of b on b->port (picking one if 0). */
static int broker_run(broker_t *b)
{
    if (!b->port)
        b->port = th_free_port();
    snprintf(b->uri, sizeof(b->uri), "tcp://127.0.0.1:%d", b->port);
    char *conf = xasprintf("%s/mosquitto.conf", b->dir);
    char *passwd = xasprintf("%s/passwd", b->dir);
    /* running as root, mosquitto would switch to user "mosquitto", which
     * cannot write our temporary directory */
    const char *user = geteuid() == 0 ? "user root\n" : "";
    char *auth = b->user ? xasprintf("allow_anonymous false\npassword_file %s\n", passwd)
                         : xstrdup("allow_anonymous true\n");
    char *text = xasprintf("listener %d 127.0.0.1\n"
                           "%s%s"
                           "persistence %s\n"
                           "persistence_location %s/\n"
                           "max_queued_messages 100000\n"
                           "log_dest file %s/mosquitto.log\n",
                           b->port, user, auth, b->persistence ? "true" : "false", b->dir, b->dir);
    int rc = write_file(conf, text);
    free(text);
    free(auth);
    if (rc == 0 && b->user) {
        char *cmd =
            xasprintf("mosquitto_passwd -b -c '%s' '%s' '%s'", passwd, b->user, b->password);
        rc = system(cmd) == 0 ? 0 : -1;
        free(cmd);
        chmod(passwd, 0600);
    }
    free(passwd);
    if (rc < 0) {
        free(conf);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* the broker's own output goes to its log; it dies with the test */
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl(mosquitto_bin(), "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    free(conf);
    if (pid < 0)
        return -1;
    b->pid = pid;
    for (int i = 0; i < 500; i++) {
        if (port_open(b->port))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "mosquitto exited; see %s/mosquitto.log\n", b->dir);
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

static int broker_start(broker_t *b, bool persistence, const char *user, const char *password)
{
    memset(b, 0, sizeof(*b));
    b->dir = th_tmpdir("oak-mqtt-test");
    b->persistence = persistence;
    b->user = user;
    b->password = password;
    return broker_run(b);
}

static void broker_halt(broker_t *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
}

static void broker_stop(broker_t *b)
{
    broker_halt(b);
    th_rmtree(b->dir);
    free(b->dir);
    b->dir = NULL;
}

/* ---- running the loop on the test thread ---- */

typedef bool (*pred_fn)(void *arg);

typedef struct {
    pred_fn pred;
    void *arg;
    uint64_t deadline;
    bool ok;
} waiter_t;

static void tick(oak_loop_t *loop, void *data)
{
    waiter_t *w = data;
    if (w->pred && w->pred(w->arg)) {
        w->ok = true;
        oak_loop_stop(loop);
    } else if (oak_now_ms() >= w->deadline) {
        oak_loop_stop(loop);
    } else {
        oak_loop_add_timer(loop, 2, tick, w);
    }
}

/* Runs the loop until pred(arg) holds (true) or ms pass (false). pred NULL:
 * just runs for ms. */
static bool run_until(oak_loop_t *loop, pred_fn pred, void *arg, long ms)
{
    waiter_t w = {pred, arg, oak_now_ms() + (uint64_t)ms, false};
    oak_loop_add_timer(loop, 0, tick, &w);
    oak_loop_run(loop);
    return w.ok;
}

/* ---- a client and what it saw ---- */

#define MAX_CONN_EVENTS 32

typedef struct {
    const char *name;
    oak_mqtt_t *m;
    bool freed; /* callbacks after this are a bug */
    int after_free;
    int conn_events;
    bool conn_log[MAX_CONN_EVENTS];
    char last_reason[256];
    int msgs;
    char last_topic[128];
    char last_payload[256];
    size_t last_len;
    long next_seq; /* sequence check for "seq <n>" payloads */
    int out_of_order;
    int target; /* for predicates */
} peer_t;

static void peer_on_conn(bool connected, const char *reason, void *ctx)
{
    peer_t *p = ctx;
    if (p->freed)
        p->after_free++;
    if (p->conn_events < MAX_CONN_EVENTS)
        p->conn_log[p->conn_events] = connected;
    p->conn_events++;
    snprintf(p->last_reason, sizeof(p->last_reason), "%s", reason ? reason : "");
    if (connected && reason)
        p->out_of_order++; /* contract: NULL reason when connected */
}

static void peer_on_msg(const char *topic, const void *payload, size_t len, void *ctx)
{
    peer_t *p = ctx;
    if (p->freed)
        p->after_free++;
    p->msgs++;
    snprintf(p->last_topic, sizeof(p->last_topic), "%s", topic);
    size_t n = len < sizeof(p->last_payload) ? len : sizeof(p->last_payload) - 1;
    memcpy(p->last_payload, payload, n);
    p->last_payload[n] = '\0';
    p->last_len = len;
    long seq;
    if (len > 4 && memcmp(payload, "seq ", 4) == 0 &&
        sscanf(p->last_payload, "seq %ld", &seq) == 1) {
        if (seq != p->next_seq)
            p->out_of_order++;
        p->next_seq = seq + 1;
    }
}

static oak_mqtt_opts_t opts_for(const broker_t *b, const char *client_id)
{
    oak_mqtt_opts_t o = {0};
    o.uri = b->uri;
    o.client_id = client_id;
    o.keepalive_s = 2;
    o.clean_session = true;
    return o;
}

static void peer_new(oak_loop_t *loop, peer_t *p, const oak_mqtt_opts_t *o)
{
    oak_err_t err = OAK_ERR_INIT;
    p->name = o->client_id;
    int rc = oak_mqtt_new(loop, o, peer_on_msg, peer_on_conn, p, &p->m, &err);
    if (rc < 0)
        fail_msg("oak_mqtt_new(%s): %s", o->client_id, err.msg);
}

static void peer_free(peer_t *p)
{
    p->freed = true;
    oak_mqtt_free(p->m);
    p->m = NULL;
}

static bool is_connected(void *arg)
{
    peer_t *p = arg;
    return p->m && oak_mqtt_connected(p->m);
}

static bool both_connected(void *arg)
{
    peer_t **pp = arg;
    return is_connected(pp[0]) && is_connected(pp[1]);
}

static bool got_target_msgs(void *arg)
{
    peer_t *p = arg;
    return p->msgs >= p->target;
}

/* At least p->target connection attempts started. */
static bool attempts_reach(void *arg)
{
    peer_t *p = arg;
    return oak_mqtt_attempts(p->m) >= (unsigned)p->target;
}

/* The connection log is: up, one or more downs, up. */
static bool flapped_once(const peer_t *p)
{
    int n = p->conn_events;
    if (n < 3 || n > MAX_CONN_EVENTS || !p->conn_log[0] || !p->conn_log[n - 1])
        return false;
    for (int i = 1; i < n - 1; i++)
        if (p->conn_log[i])
            return false;
    return true;
}

static bool got_target_conn_events(void *arg)
{
    peer_t *p = arg;
    return p->conn_events >= p->target;
}

static void publish_ok(peer_t *p, const char *topic, const char *payload, int qos)
{
    oak_err_t err = OAK_ERR_INIT;
    int rc = oak_mqtt_publish(p->m, topic, payload, strlen(payload), qos, false, &err);
    if (rc < 0)
        fail_msg("publish from %s to %s: %s", p->name, topic, err.msg);
}

/* Drains events still queued for freed clients, then frees the loop. */
static void loop_done(oak_loop_t *loop)
{
    run_until(loop, NULL, NULL, 20);
    oak_loop_free(loop);
}

/* ---- fixture: one anonymous broker shared by most tests ---- */

static broker_t shared_broker;
static bool have_broker;

static int group_setup(void **state)
{
    if (access(mosquitto_bin(), X_OK) != 0) {
        printf("SKIPPED: %s not found (apt-get install mosquitto)\n", mosquitto_bin());
        return 0;
    }
    if (broker_start(&shared_broker, false, NULL, NULL) < 0) {
        fprintf(stderr, "cannot start mosquitto\n");
        return -1;
    }
    have_broker = true;
    return 0;
}

static int group_teardown(void **state)
{
    if (have_broker)
        broker_stop(&shared_broker);
    return 0;
}

#define NEED_BROKER()                                                                              \
    do {                                                                                           \
        if (!have_broker)                                                                          \
            skip();                                                                                \
    } while (0)

/* ---- tests ---- */

static void test_invalid_args(void **state)
{
    oak_loop_t *loop = oak_loop_new();
    oak_err_t err = OAK_ERR_INIT;
    oak_mqtt_t *m = NULL;
    oak_mqtt_opts_t o = {.uri = "bogus://127.0.0.1:1", .client_id = "x"};
    assert_int_equal(oak_mqtt_new(loop, &o, NULL, NULL, NULL, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_null(m);
    o.uri = NULL;
    assert_int_equal(oak_mqtt_new(loop, &o, NULL, NULL, NULL, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    o.uri = "tcp://127.0.0.1:1";
    o.client_id = "";
    assert_int_equal(oak_mqtt_new(loop, &o, NULL, NULL, NULL, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    /* publish argument checks need a client, not a broker */
    o.client_id = "args";
    assert_int_equal(oak_mqtt_new(loop, &o, NULL, NULL, NULL, &m, &err), 0);
    assert_int_equal(oak_mqtt_publish(m, "a/+/b", "x", 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_mqtt_publish(m, "a/#", "x", 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_mqtt_publish(m, "", "x", 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_mqtt_publish(m, "a", "x", 1, 3, false, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_mqtt_publish(m, "a\xff", "x", 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(
        oak_mqtt_publish(m, "a", NULL, (size_t)OAK_MQTT_MAX_PAYLOAD + 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    oak_mqtt_free(m);
    oak_mqtt_free(NULL);
    oak_mqtt_kill(NULL);
    loop_done(loop);
}

static void test_roundtrip(void **state)
{
    NEED_BROKER();
    oak_loop_t *loop = oak_loop_new();
    peer_t a = {0}, b = {0};
    const char *subs[] = {"rt/#", "other/x", NULL};
    oak_mqtt_opts_t oa = opts_for(&shared_broker, "rt-a");
    oa.subscriptions = subs;
    peer_new(loop, &a, &oa);
    oak_mqtt_opts_t ob = opts_for(&shared_broker, "rt-b");
    peer_new(loop, &b, &ob);
    peer_t *both[] = {&a, &b};
    assert_true(run_until(loop, both_connected, both, 5000));
    assert_int_equal(a.conn_events, 1);
    assert_true(a.conn_log[0]);
    assert_int_equal(b.conn_events, 1);
    assert_true(oak_mqtt_attempts(a.m) == 1);

    /* binary payload with a NUL, QoS 1, from b to a */
    static const char bin[] = {'h', 'i', 0, 'x', (char)0xff};
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_mqtt_publish(b.m, "rt/one", bin, sizeof(bin), 1, false, &err), 0);
    a.target = 1;
    assert_true(run_until(loop, got_target_msgs, &a, 5000));
    assert_string_equal(a.last_topic, "rt/one");
    assert_int_equal(a.last_len, sizeof(bin));
    assert_memory_equal(a.last_payload, bin, sizeof(bin));

    /* second filter, QoS 0, empty payload */
    assert_int_equal(oak_mqtt_publish(b.m, "other/x", NULL, 0, 0, false, &err), 0);
    a.target = 2;
    assert_true(run_until(loop, got_target_msgs, &a, 5000));
    assert_string_equal(a.last_topic, "other/x");
    assert_int_equal(a.last_len, 0);
    assert_int_equal(b.msgs, 0);

    peer_free(&a);
    peer_free(&b);
    loop_done(loop);
    assert_int_equal(a.after_free + b.after_free, 0);
    assert_int_equal(a.out_of_order, 0);
}

#define MANY 5000

static void test_many_in_order(void **state)
{
    NEED_BROKER();
    oak_loop_t *loop = oak_loop_new();
    peer_t a = {0}, b = {0};
    const char *subs[] = {"many/#", NULL};
    oak_mqtt_opts_t oa = opts_for(&shared_broker, "many-a");
    oa.subscriptions = subs;
    peer_new(loop, &a, &oa);
    oak_mqtt_opts_t ob = opts_for(&shared_broker, "many-b");
    peer_new(loop, &b, &ob);
    peer_t *both[] = {&a, &b};
    assert_true(run_until(loop, both_connected, both, 5000));

    uint64_t t0 = oak_now_ms();
    for (int i = 0; i < MANY; i++) {
        char payload[32];
        snprintf(payload, sizeof(payload), "seq %d", i);
        publish_ok(&b, "many/t", payload, 1);
    }
    a.target = MANY;
    bool ok = run_until(loop, got_target_msgs, &a, 30000);
    printf("%d messages in %llu ms\n", a.msgs, (unsigned long long)(oak_now_ms() - t0));
    assert_true(ok);
    assert_int_equal(a.msgs, MANY);
    assert_int_equal(a.next_seq, MANY);
    assert_int_equal(a.out_of_order, 0);
    peer_free(&a);
    peer_free(&b);
    loop_done(loop);
}

#define DOWN_MSGS 100

static bool both_down(void *arg)
{
    peer_t **pp = arg;
    return pp[0]->conn_events >= 2 && pp[1]->conn_events >= 2;
}

static void test_reconnect_buffers(void **state)
{
    NEED_BROKER();
    broker_t br;
    assert_int_equal(broker_start(&br, true, NULL, NULL), 0);
    oak_loop_t *loop = oak_loop_new();
    peer_t a = {0}, b = {0};
    const char *subs[] = {"buf/#", NULL};
    oak_mqtt_opts_t oa = opts_for(&br, "buf-a");
    oa.subscriptions = subs;
    oa.clean_session = false; /* the broker keeps a's session across its restart */
    peer_new(loop, &a, &oa);
    oak_mqtt_opts_t ob = opts_for(&br, "buf-b");
    peer_new(loop, &b, &ob);
    peer_t *both[] = {&a, &b};
    assert_true(run_until(loop, both_connected, both, 5000));

    broker_halt(&br);
    assert_true(run_until(loop, both_down, both, 5000));
    assert_false(a.conn_log[1]);
    assert_false(b.conn_log[1]);
    assert_true(b.last_reason[0] != '\0');
    assert_false(oak_mqtt_connected(b.m));
    printf("down: %s\n", b.last_reason);

    for (int i = 0; i < DOWN_MSGS; i++) {
        char payload[32];
        snprintf(payload, sizeof(payload), "seq %d", i);
        publish_ok(&b, "buf/t", payload, 1);
    }
    /* a failed attempt while the broker is down: still down, no message */
    unsigned tries = oak_mqtt_attempts(b.m);
    b.target = (int)tries + 1;
    assert_true(run_until(loop, attempts_reach, &b, 3000));
    assert_false(oak_mqtt_connected(b.m));
    assert_int_equal(a.msgs, 0);

    assert_int_equal(broker_run(&br), 0);
    a.target = DOWN_MSGS;
    assert_true(run_until(loop, got_target_msgs, &a, 15000));
    assert_true(run_until(loop, both_connected, both, 5000));
    assert_int_equal(a.msgs, DOWN_MSGS);
    assert_int_equal(a.out_of_order, 0);
    printf("a saw %d connection events, b %d; b's last: %s\n", a.conn_events, b.conn_events,
           b.last_reason[0] ? b.last_reason : "(connected)");
    assert_true(flapped_once(&a));
    assert_true(flapped_once(&b));

    peer_free(&a);
    peer_free(&b);
    loop_done(loop);
    broker_stop(&br);
}

static void test_buffer_limit_and_free_while_down(void **state)
{
    /* nobody listens on this port */
    broker_t none = {.port = th_free_port()};
    snprintf(none.uri, sizeof(none.uri), "tcp://127.0.0.1:%d", none.port);
    oak_loop_t *loop = oak_loop_new();
    peer_t p = {0};
    oak_mqtt_opts_t o = opts_for(&none, "limit");
    o.max_buffered = 5;
    peer_new(loop, &p, &o);
    oak_err_t err = OAK_ERR_INIT;
    for (int i = 0; i < 5; i++)
        publish_ok(&p, "limit/t", "x", 1);
    assert_int_equal(oak_mqtt_publish(p.m, "limit/t", "x", 1, 1, false, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);

    p.target = 1;
    assert_true(run_until(loop, got_target_conn_events, &p, 3000));
    assert_false(p.conn_log[0]);
    printf("refused: %s\n", p.last_reason);
    assert_non_null(strstr(p.last_reason, "connect"));
    /* keeps trying, reports the same failure once */
    p.target = 2;
    assert_true(run_until(loop, attempts_reach, &p, 3000));
    assert_int_equal(p.conn_events, 1);
    peer_free(&p);
    run_until(loop, NULL, NULL, 1000); /* the retry timer must be gone */
    assert_int_equal(p.after_free, 0);

    /* freed right away, while the first attempt is in progress */
    peer_t q = {0};
    oak_mqtt_opts_t oq = opts_for(&shared_broker, "quick");
    if (!have_broker)
        oq = opts_for(&none, "quick");
    peer_new(loop, &q, &oq);
    peer_free(&q);
    run_until(loop, NULL, NULL, 200);
    assert_int_equal(q.after_free + q.conn_events, 0);
    loop_done(loop);
}

static void test_free_drops_queued_events(void **state)
{
    NEED_BROKER();
    oak_loop_t *loop = oak_loop_new();
    peer_t a = {0}, b = {0};
    const char *subs[] = {"drop/#", NULL};
    oak_mqtt_opts_t oa = opts_for(&shared_broker, "drop-a");
    oa.subscriptions = subs;
    peer_new(loop, &a, &oa);
    oak_mqtt_opts_t ob = opts_for(&shared_broker, "drop-b");
    peer_new(loop, &b, &ob);
    peer_t *both[] = {&a, &b};
    assert_true(run_until(loop, both_connected, both, 5000));
    for (int i = 0; i < 500; i++)
        publish_ok(&b, "drop/t", "payload", 1);
    a.target = 1;
    assert_true(run_until(loop, got_target_msgs, &a, 5000));
    /* let paho post more without running the loop, then free a */
    sleep_ms(100);
    int before = a.msgs;
    peer_free(&a);
    run_until(loop, NULL, NULL, 300);
    assert_int_equal(a.msgs, before);
    assert_int_equal(a.after_free, 0);
    peer_free(&b);
    loop_done(loop);
}

static void test_will_on_kill_not_on_free(void **state)
{
    NEED_BROKER();
    oak_loop_t *loop = oak_loop_new();
    peer_t w = {0}, dying = {0}, polite = {0};
    const char *subs[] = {"nodes/+/status", NULL};
    oak_mqtt_opts_t ow = opts_for(&shared_broker, "watcher");
    ow.subscriptions = subs;
    peer_new(loop, &w, &ow);
    oak_mqtt_opts_t od = opts_for(&shared_broker, "dying");
    od.will_topic = "nodes/dying/status";
    od.will_payload = "{\"status\":\"offline\"}";
    od.keepalive_s = 30; /* the will must come from the closed socket, not the keepalive */
    peer_new(loop, &dying, &od);
    oak_mqtt_opts_t op = opts_for(&shared_broker, "polite");
    op.will_topic = "nodes/polite/status";
    op.will_payload = "{\"status\":\"offline\"}";
    peer_new(loop, &polite, &op);
    peer_t *ws[] = {&w, &dying};
    assert_true(run_until(loop, both_connected, ws, 5000));
    assert_true(run_until(loop, is_connected, &polite, 5000));

    peer_free(&polite); /* clean DISCONNECT: no will */
    uint64_t t0 = oak_now_ms();
    dying.freed = true;
    oak_mqtt_kill(dying.m);
    w.target = 1;
    assert_true(run_until(loop, got_target_msgs, &w, 1500));
    printf("will after %llu ms\n", (unsigned long long)(oak_now_ms() - t0));
    assert_string_equal(w.last_topic, "nodes/dying/status");
    assert_string_equal(w.last_payload, "{\"status\":\"offline\"}");
    run_until(loop, NULL, NULL, 300);
    assert_int_equal(w.msgs, 1); /* nothing from polite */
    assert_int_equal(dying.after_free + polite.after_free, 0);
    peer_free(&w);
    loop_done(loop);
}

static void test_bad_password(void **state)
{
    NEED_BROKER();
    broker_t br;
    assert_int_equal(broker_start(&br, false, "node1", "s3cret"), 0);
    oak_loop_t *loop = oak_loop_new();
    peer_t bad = {0}, good = {0}, anon = {0};
    oak_mqtt_opts_t ob = opts_for(&br, "node1-bad");
    ob.username = "node1";
    ob.password = "wrong";
    peer_new(loop, &bad, &ob);
    oak_mqtt_opts_t og = opts_for(&br, "node1");
    og.username = "node1";
    og.password = "s3cret";
    const char *subs[] = {"allowed/#", NULL};
    og.subscriptions = subs;
    peer_new(loop, &good, &og);
    oak_mqtt_opts_t oa = opts_for(&br, "anon");
    peer_new(loop, &anon, &oa);

    assert_true(run_until(loop, is_connected, &good, 5000));
    publish_ok(&good, "allowed/x", "through", 1);
    good.target = 1;
    assert_true(run_until(loop, got_target_msgs, &good, 5000));
    assert_string_equal(good.last_payload, "through");
    bad.target = 1;
    assert_true(run_until(loop, got_target_conn_events, &bad, 5000));
    assert_false(bad.conn_log[0]);
    printf("bad password: %s\n", bad.last_reason);
    assert_true(strstr(bad.last_reason, "not authorized") ||
                strstr(bad.last_reason, "bad user name or password"));
    anon.target = 1;
    assert_true(run_until(loop, got_target_conn_events, &anon, 5000));
    assert_false(anon.conn_log[0]); /* anonymous access is off on this broker */
    /* keeps retrying (paho adds up to ~1 s to each attempt), reports the
     * same refusal once */
    bad.target = 3;
    assert_true(run_until(loop, attempts_reach, &bad, 6000));
    run_until(loop, NULL, NULL, 100);
    assert_true(oak_mqtt_attempts(bad.m) >= 3);
    assert_int_equal(bad.conn_events, 1);
    assert_false(oak_mqtt_connected(bad.m));
    assert_true(oak_mqtt_connected(good.m));
    peer_free(&bad);
    peer_free(&good);
    peer_free(&anon);
    loop_done(loop);
    assert_int_equal(bad.after_free + good.after_free + anon.after_free, 0);
    broker_stop(&br);
}

#define NCLIENTS 1000

typedef struct {
    int distinct;
    unsigned char seen[NCLIENTS];
    int dups;
} census_t;

static void census_on_msg(const char *topic, const void *payload, size_t len, void *ctx)
{
    census_t *c = ctx;
    int i;
    if (sscanf(topic, "sim/%d/hello", &i) != 1 || i < 0 || i >= NCLIENTS)
        return;
    if (c->seen[i]++)
        c->dups++;
    else
        c->distinct++;
}

static bool census_done(void *arg)
{
    census_t *c = arg;
    return c->distinct >= NCLIENTS;
}

typedef struct {
    int up;
} counter_t;

static void count_up(bool connected, const char *reason, void *ctx)
{
    counter_t *c = ctx;
    if (connected)
        c->up++;
}

static bool all_up(void *arg)
{
    counter_t *c = arg;
    return c->up >= NCLIENTS;
}

static void test_thousand_clients(void **state)
{
    NEED_BROKER();
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4 * NCLIENTS) {
        rlim_t want =
            rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 8 * NCLIENTS ? 8 * NCLIENTS : rl.rlim_max;
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < 3 * NCLIENTS) {
        printf("SKIPPED: thousand_clients: RLIMIT_NOFILE %llu too low\n",
               (unsigned long long)rl.rlim_cur);
        skip();
    }
    /* its own broker, started after raising the limit it inherits */
    broker_t br;
    assert_int_equal(broker_start(&br, false, NULL, NULL), 0);
    oak_loop_t *loop = oak_loop_new();
    census_t census = {0};
    counter_t counter = {0};
    const char *subs[] = {"sim/+/hello", NULL};
    oak_mqtt_opts_t oc = opts_for(&br, "census");
    oc.subscriptions = subs;
    oc.keepalive_s = 10;
    oak_mqtt_t *cm = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_mqtt_new(loop, &oc, census_on_msg, NULL, &census, &cm, &err), 0);
    peer_t cp = {.m = cm};
    assert_true(run_until(loop, is_connected, &cp, 5000));

    uint64_t t0 = oak_now_ms();
    oak_mqtt_t **clients = xcalloc(NCLIENTS, sizeof(*clients));
    for (int i = 0; i < NCLIENTS; i++) {
        char id[32], topic[48];
        snprintf(id, sizeof(id), "sim-%d", i);
        snprintf(topic, sizeof(topic), "sim/%d/hello", i);
        oak_mqtt_opts_t o = opts_for(&br, id);
        o.keepalive_s = 30;
        if (oak_mqtt_new(loop, &o, NULL, count_up, &counter, &clients[i], &err) < 0)
            fail_msg("client %d: %s", i, err.msg);
        /* published before the connection is up: buffered until it is */
        if (oak_mqtt_publish(clients[i], topic, "hi", 2, 1, false, &err) < 0)
            fail_msg("publish %d: %s", i, err.msg);
    }
    bool ok = run_until(loop, census_done, &census, 30000);
    uint64_t t1 = oak_now_ms();
    bool ups = run_until(loop, all_up, &counter, 10000);
    printf("%d clients: %d messages received in %llu ms, %d connected\n", NCLIENTS, census.distinct,
           (unsigned long long)(t1 - t0), counter.up);
    assert_true(ok);
    assert_true(ups);
    assert_int_equal(census.dups, 0);
    uint64_t t2 = oak_now_ms();
    for (int i = 0; i < NCLIENTS; i++)
        oak_mqtt_free(clients[i]);
    printf("freed %d clients in %llu ms\n", NCLIENTS, (unsigned long long)(oak_now_ms() - t2));
    free(clients);
    oak_mqtt_free(cm);
    loop_done(loop);
    broker_stop(&br);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("OAK_TEST_FILTER"))
        cmocka_set_test_filter(getenv("OAK_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_many_in_order),
        cmocka_unit_test(test_reconnect_buffers),
        cmocka_unit_test(test_buffer_limit_and_free_while_down),
        cmocka_unit_test(test_free_drops_queued_events),
        cmocka_unit_test(test_will_on_kill_not_on_free),
        cmocka_unit_test(test_bad_password),
        cmocka_unit_test(test_thousand_clients),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
