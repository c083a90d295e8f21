/* Real mosquitto for tests, and a minimal MQTT test client (see
 * mosquitto.h). The port is found by binding 127.0.0.1:0 and closing it
 * again; if another process takes it before the broker binds, the broker
 * exits and the start is retried on a new port. */
#include "test/common/mosquitto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster_orchestrator/broker.h"
#include "test/common/harness.h"
#include "lib/oak_alloc.h"
#include "lib/oak_err.h"

#define MOSQUITTO_BIN "/usr/sbin/mosquitto"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bool th_mosquitto_available(void)
{
    if (access(MOSQUITTO_BIN, X_OK) != 0) {
        printf("SKIPPED: %s is not installed\n", MOSQUITTO_BIN);
        return false;
    }
    if (!broker_dynsec_plugin_path()) {
        printf("SKIPPED: mosquitto's dynamic-security plugin is not installed\n");
        return false;
    }
    return true;
}

static void dump_log(const th_mosquitto_t *m)
{
    FILE *f = fopen(m->log_path, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "---- %s ----\n", m->log_path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "----\n");
    fclose(f);
}

/* Writes the config for m->port and runs the broker until it accepts
 * connections: 0, -1 on failure, 1 when it exited early (port taken?). */
static int launch(th_mosquitto_t *m)
{
    oak_err_t err = OAK_ERR_INIT;
    char *conf = NULL;
    if (broker_write_config(m->dir, "127.0.0.1", m->port, m->admin_user, m->admin_password, &conf,
                            &err) < 0) {
        fprintf(stderr, "broker_write_config: %s\n", err.msg);
        oak_err_clear(&err);
        return -1;
    }
    snprintf(m->uri, sizeof(m->uri), "tcp://127.0.0.1:%d", m->port);
    pid_t pid = fork();
    if (pid < 0) {
        free(conf);
        return -1;
    }
    if (pid == 0) {
        int fd = open(m->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* never outlive the test, even when it crashes */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl(MOSQUITTO_BIN, MOSQUITTO_BIN, "-c", conf, (char *)NULL);
        perror(MOSQUITTO_BIN);
        _exit(127);
    }
    free(conf);
    m->pid = pid;
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            m->pid = 0;
            return 1;
        }
        if (th_port_accepts(m->port))
            return 0;
        sleep_ms(10);
    }
    fprintf(stderr, "mosquitto did not accept connections on port %d within 5 s\n", m->port);
    dump_log(m);
    th_mosquitto_stop(m);
    return -1;
}

int th_mosquitto_start(th_mosquitto_t *m, const char *dir, const char *admin_user,
                       const char *admin_password)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->dir, sizeof(m->dir), "%s", dir);
    snprintf(m->admin_user, sizeof(m->admin_user), "%s", admin_user);
    snprintf(m->admin_password, sizeof(m->admin_password), "%s", admin_password);
    mkdir(dir, 0700);
    snprintf(m->log_path, sizeof(m->log_path), "%s/mosquitto.log", dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        m->port = th_free_port();
        if (m->port < 0)
            return -1;
        int rc = launch(m);
        if (rc <= 0)
            return rc;
    }
    fprintf(stderr, "mosquitto exited at start 5 times\n");
    dump_log(m);
    return -1;
}

void th_mosquitto_stop(th_mosquitto_t *m)
{
    if (m->pid <= 0)
        return;
    kill(m->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
            m->pid = 0;
            return;
        }
        sleep_ms(10);
    }
    kill(m->pid, SIGKILL);
    waitpid(m->pid, NULL, 0);
    m->pid = 0;
}

int th_mosquitto_restart(th_mosquitto_t *m)
{
    th_mosquitto_stop(m);
    /* the old listening socket is gone once the process is reaped; retry
     * briefly in case the port is still held */
    for (int attempt = 0; attempt < 20; attempt++) {
        int rc = launch(m);
        if (rc <= 0)
            return rc;
        sleep_ms(50);
    }
    fprintf(stderr, "mosquitto could not restart on port %d\n", m->port);
    dump_log(m);
    return -1;
}

/* ---- minimal MQTT 3.1.1 test client ---- */

typedef struct {
    char *topic, *payload;
} th_msg_t;

struct th_mqtt {
    int fd;
    bool closed;
    uint16_t next_id;
    th_msg_t *msgs;
    size_t nmsgs, cap;
};

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put8(buf_t *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}

static void put16(buf_t *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v & 0xff);
}

static void putstr(buf_t *b, const char *s)
{
    put16(b, (unsigned)strlen(s));
    put(b, s, strlen(s));
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_pkt(th_mqtt_t *c, unsigned type, const buf_t *body)
{
    buf_t w = {0};
    size_t rem = body ? body->len : 0;
    put8(&w, type);
    do {
        unsigned char d = rem % 128;
        rem /= 128;
        put8(&w, rem ? d | 0x80 : d);
    } while (rem);
    if (body)
        put(&w, body->p, body->len);
    size_t off = 0;
    while (off < w.len) {
        ssize_t n = send(c->fd, w.p + off, w.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(w.p);
            return -1;
        }
        off += (size_t)n;
    }
    free(w.p);
    return 0;
}

/* Reads exactly n bytes before deadline: 0, -1 closed/error, -2 timeout. */
static int recv_full(th_mqtt_t *c, unsigned char *p, size_t n, long long deadline)
{
    while (n > 0) {
        long long left = deadline - mono_ms();
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pf, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -2;
        ssize_t got = r > 0 ? recv(c->fd, p, n, 0) : -1;
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            c->closed = true;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* Reads one packet; keeps PUBLISHes (acknowledging QoS 1). Returns 0 with
 * *type and *body (owned) set, -1 closed, -2 timeout. */
static int recv_pkt(th_mqtt_t *c, long long deadline, unsigned *type, unsigned char **body,
                    size_t *len)
{
    unsigned char h, d;
    int rc = recv_full(c, &h, 1, deadline);
    if (rc < 0)
        return rc;
    size_t rem = 0, mult = 1;
    do {
        /* once a packet has started, let it finish even past deadline */
        if ((rc = recv_full(c, &d, 1, mono_ms() + 2000)) < 0)
            return -1;
        rem += (d & 0x7fu) * mult;
        mult *= 128;
    } while ((d & 0x80) && mult <= 128 * 128 * 128);
    unsigned char *b = xmalloc(rem + 1);
    if (recv_full(c, b, rem, mono_ms() + 2000) < 0) {
        free(b);
        return -1;
    }
    b[rem] = 0;
    if ((h & 0xf0) == 0x30 && rem >= 2) {
        size_t tlen = ((size_t)b[0] << 8) | b[1];
        unsigned qos = (h >> 1) & 3;
        size_t off = 2 + tlen + (qos ? 2 : 0);
        if (off <= rem) {
            if (qos == 1) {
                buf_t ack = {0};
                put(&ack, b + 2 + tlen, 2);
                send_pkt(c, 0x40, &ack);
                free(ack.p);
            }
            if (c->nmsgs == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 16;
                c->msgs = xrealloc(c->msgs, c->cap * sizeof(*c->msgs));
            }
            c->msgs[c->nmsgs].topic = xstrndup((const char *)b + 2, tlen);
            c->msgs[c->nmsgs].payload = xstrndup((const char *)b + off, rem - off);
            c->nmsgs++;
        }
    }
    *type = h;
    *body = b;
    *len = rem;
    return 0;
}

/* Reads packets until one of type (with packet id id) arrives; returns
 * its body (owned) or NULL on close/timeout. */
static unsigned char *await(th_mqtt_t *c, unsigned want, int id, size_t *len, int ms)
{
    long long deadline = mono_ms() + ms;
    for (;;) {
        unsigned type;
        unsigned char *b = NULL;
        if (recv_pkt(c, deadline, &type, &b, len) < 0)
            return NULL;
        if (type == want && (id < 0 || (*len >= 2 && ((b[0] << 8) | b[1]) == id)))
            return b;
        free(b);
    }
}

int th_mqtt_connect_will(int port, const char *client_id, const char *user, const char *password,
                         int keepalive_s, const char *will_topic, const char *will_payload,
                         th_mqtt_t **out)
{
    th_mqtt_t *c = xcalloc(1, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        th_mqtt_close(c);
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    buf_t w = {0};
    putstr(&w, "MQTT");
    put8(&w, 4);
    /* clean session; will at QoS 1 (flag bits 3-4 = 01) when given */
    put8(&w, 0x02 | (user ? 0x80 : 0) | (password ? 0x40 : 0) | (will_topic ? 0x04 | 0x08 : 0));
    put16(&w, (uint16_t)keepalive_s);
    putstr(&w, client_id);
    if (will_topic) {
        putstr(&w, will_topic);
        putstr(&w, will_payload ? will_payload : "");
    }
    if (user)
        putstr(&w, user);
    if (password)
        putstr(&w, password);
    int rc = send_pkt(c, 0x10, &w);
    free(w.p);
    size_t len = 0;
    unsigned char *ack = rc == 0 ? await(c, 0x20, -1, &len, 5000) : NULL;
    rc = ack && len == 2 ? ack[1] : -1;
    free(ack);
    if (rc != 0) {
        c->closed = true;
        th_mqtt_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int th_mqtt_connect(int port, const char *client_id, const char *user, const char *password,
                    th_mqtt_t **out)
{
    return th_mqtt_connect_will(port, client_id, user, password, 60, NULL, NULL, out);
}

int th_mqtt_subscribe(th_mqtt_t *c, const char *topic)
{
    uint16_t id = ++c->next_id ? c->next_id : ++c->next_id;
    buf_t w = {0};
    put16(&w, id);
    putstr(&w, topic);
    put8(&w, 1);
    int rc = send_pkt(c, 0x82, &w);
    free(w.p);
    size_t len = 0;
    unsigned char *ack = rc == 0 ? await(c, 0x90, id, &len, 5000) : NULL;
    rc = ack && len == 3 ? ack[2] : -1;
    free(ack);
    return rc;
}

int th_mqtt_publish(th_mqtt_t *c, const char *topic, const char *payload)
{
    uint16_t id = ++c->next_id ? c->next_id : ++c->next_id;
    buf_t w = {0};
    putstr(&w, topic);
    put16(&w, id);
    put(&w, payload, strlen(payload));
    int rc = send_pkt(c, 0x32, &w);
    free(w.p);
    size_t len = 0;
    unsigned char *ack = rc == 0 ? await(c, 0x40, id, &len, 5000) : NULL;
    rc = ack ? 0 : -1;
    free(ack);
    return rc;
}

static bool have(th_mqtt_t *c, const char *topic, const char *payload)
{
    for (size_t i = 0; i < c->nmsgs; i++)
        if (strcmp(c->msgs[i].topic, topic) == 0 &&
            (!payload || strcmp(c->msgs[i].payload, payload) == 0))
            return true;
    return false;
}

bool th_mqtt_received(th_mqtt_t *c, const char *topic, const char *payload, int ms)
{
    long long deadline = mono_ms() + ms;
    while (!have(c, topic, payload)) {
        unsigned type;
        unsigned char *b = NULL;
        size_t len;
        if (c->closed || recv_pkt(c, deadline, &type, &b, &len) < 0)
            return have(c, topic, payload);
        free(b);
    }
    return true;
}

int th_mqtt_count(th_mqtt_t *c, const char *prefix)
{
    unsigned type;
    unsigned char *b = NULL;
    size_t len;
    while (!c->closed && recv_pkt(c, mono_ms(), &type, &b, &len) == 0)
        free(b);
    int n = 0;
    for (size_t i = 0; i < c->nmsgs; i++)
        if (strncmp(c->msgs[i].topic, prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

bool th_mqtt_closed(th_mqtt_t *c, int ms)
{
    long long deadline = mono_ms() + ms;
    while (!c->closed) {
        unsigned type;
        unsigned char *b = NULL;
        size_t len;
        if (recv_pkt(c, deadline, &type, &b, &len) == -2)
            break;
        if (!c->closed)
            free(b);
    }
    return c->closed;
}

void th_mqtt_close(th_mqtt_t *c)
{
    if (!c)
        return;
    if (c->fd >= 0) {
        if (!c->closed)
            send_pkt(c, 0xe0, NULL);
        close(c->fd);
    }
    for (size_t i = 0; i < c->nmsgs; i++) {
        free(c->msgs[i].topic);
        free(c->msgs[i].payload);
    }
    free(c->msgs);
    free(c);
}

char *th_mqtt_take(th_mqtt_t *c, const char *prefix, char **topic_out, int ms)
{
    long long deadline = mono_ms() + ms;
    for (;;) {
        for (size_t i = 0; i < c->nmsgs; i++) {
            if (strncmp(c->msgs[i].topic, prefix, strlen(prefix)) != 0)
                continue;
            char *payload = c->msgs[i].payload;
            if (topic_out)
                *topic_out = c->msgs[i].topic;
            else
                free(c->msgs[i].topic);
            memmove(&c->msgs[i], &c->msgs[i + 1], (c->nmsgs - i - 1) * sizeof(th_msg_t));
            c->nmsgs--;
            return payload;
        }
        unsigned type;
        unsigned char *b = NULL;
        size_t len;
        if (c->closed || recv_pkt(c, deadline, &type, &b, &len) < 0)
            return NULL;
        free(b);
    }
}

void th_mqtt_abort(th_mqtt_t *c)
{
    if (!c)
        return;
    if (!c->closed && c->fd >= 0) {
        close(c->fd); /* no DISCONNECT: the broker publishes the will */
        c->fd = -1;
    }
    c->closed = true;
    th_mqtt_close(c);
}
