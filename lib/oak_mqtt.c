/* MQTT client wrapper over paho's MQTTAsync. Owns one paho client per
 * oak_mqtt_t, its copied options, the reconnect state machine and the
 * hand-off of paho callbacks to the event loop.
 *
 * Threading: paho runs every callback on its own (process-wide) threads,
 * holding its global mutex. Those callbacks never touch app state and never
 * call paho: they look the client up in a registry of live clients (so a
 * callback racing with oak_mqtt_free finds nothing instead of freed memory),
 * take a reference, copy what they got and oak_loop_post it. The loop thread
 * owns the state machine (DOWN -> CONNECTING -> SUBSCRIBING -> UP), the
 * reconnect timer and every paho call except MQTTAsync_send, which is
 * thread-safe. A posted event holds a reference; when it runs on a client
 * that was freed meanwhile (the `dead` flag) it only drops that reference.
 * Locks (registry, per-client mutex) are never held while calling paho, so
 * paho's mutex and ours cannot be taken in opposite orders. */
#include "lib/oak_mqtt.h"

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/oak_alloc.h"
#include "lib/oak_log.h"

#define DEFAULT_KEEPALIVE_S   5
#define CONNECT_TIMEOUT_S     5
#define DISCONNECT_TIMEOUT_MS 1000 /* in-flight messages get this long to be acknowledged */
#define DISCONNECT_WAIT_MS    2000
#define KILL_WAIT_MS          2000

typedef enum { ST_DOWN, ST_CONNECTING, ST_SUBSCRIBING, ST_UP } state_t;

struct oak_mqtt {
    oak_loop_t *loop;
    MQTTAsync cli;
    void *handle; /* registry key, paho's context for every callback */
    char *uri, *client_id, *username, *password, *will_topic, *will_payload;
    char **subs;
    int *sub_qos;
    int nsubs;
    int keepalive_s, max_inflight;
    bool clean_session;
    oak_mqtt_msg_fn on_msg;
    oak_mqtt_conn_fn on_conn;
    void *ctx;
    int refs; /* __atomic: the owner's + one per paho callback or posted event */

    /* loop thread only */
    bool dead;
    state_t state;
    bool reported, reported_up; /* anything reported yet; last report was "up" */
    char *last_reason;          /* last "down" reason reported */
    uint64_t retry_timer;
    uint64_t backoff_ms;
    unsigned seed;

    /* __atomic: read from any thread */
    bool up;
    unsigned attempts;

    /* under mu: what oak_mqtt_free/kill wait for */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool disc_done;
    unsigned losses;
};

typedef enum { EV_CONNECTED, EV_CONNECT_FAILED, EV_SUBACK, EV_LOST, EV_MESSAGE } ev_kind_t;

typedef struct {
    oak_mqtt_t *m; /* holds a reference */
    ev_kind_t kind;
    char *text; /* reason, warning, or the message topic */
    void *payload;
    size_t len;
} event_t;

/* ---- registry of live clients ---- */

_Static_assert(sizeof(uintptr_t) >= 8, "registry handles need 64-bit pointers");
#define SLOT_BITS 24

typedef struct {
    oak_mqtt_t *m;
    uint32_t gen;
} slot_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static slot_t *reg_slots;
static uint32_t reg_n, reg_cap, reg_live;
static uint32_t reg_gen; /* never reset, so a stale handle never matches a new client */
static uint32_t *reg_free;
static uint32_t reg_nfree;

static void ref(oak_mqtt_t *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
}

static void unref(oak_mqtt_t *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < m->nsubs; i++)
        free(m->subs[i]);
    free(m->subs);
    free(m->sub_qos);
    free(m->uri);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->will_topic);
    free(m->will_payload);
    free(m->last_reason);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}

static void *registry_add(oak_mqtt_t *m)
{
    pthread_mutex_lock(&reg_mu);
    uint32_t idx;
    if (reg_nfree > 0) {
        idx = reg_free[--reg_nfree];
    } else {
        if (reg_n == reg_cap) {
            reg_cap = reg_cap ? reg_cap * 2 : 64;
            if (reg_cap > (1u << SLOT_BITS))
                abort();
            reg_slots = xrealloc(reg_slots, reg_cap * sizeof(*reg_slots));
            reg_free = xrealloc(reg_free, reg_cap * sizeof(*reg_free));
        }
        idx = reg_n++;
    }
    if (++reg_gen == 0)
        reg_gen = 1;
    uint32_t gen = reg_gen;
    reg_slots[idx].m = m;
    reg_slots[idx].gen = gen;
    reg_live++;
    pthread_mutex_unlock(&reg_mu);
    return (void *)(((uintptr_t)gen << SLOT_BITS) | idx);
}

static void registry_remove(void *handle)
{
    uintptr_t h = (uintptr_t)handle;
    uint32_t idx = (uint32_t)(h & ((1u << SLOT_BITS) - 1));
    pthread_mutex_lock(&reg_mu);
    reg_slots[idx].m = NULL;
    reg_free[reg_nfree++] = idx;
    if (--reg_live == 0) {
        free(reg_slots);
        free(reg_free);
        reg_slots = NULL;
        reg_free = NULL;
        reg_n = reg_cap = reg_nfree = 0;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* The live client for a paho context, with a reference taken, or NULL. */
static oak_mqtt_t *registry_get(void *handle)
{
    uintptr_t h = (uintptr_t)handle;
    uint32_t idx = (uint32_t)(h & ((1u << SLOT_BITS) - 1));
    uint32_t gen = (uint32_t)(h >> SLOT_BITS);
    oak_mqtt_t *m = NULL;
    pthread_mutex_lock(&reg_mu);
    if (idx < reg_n && reg_slots[idx].gen == gen && reg_slots[idx].m) {
        m = reg_slots[idx].m;
        ref(m);
    }
    pthread_mutex_unlock(&reg_mu);
    return m;
}

/* ---- loop side ---- */

static int start_attempt(oak_mqtt_t *m);
static void go_down(oak_mqtt_t *m, const char *reason);

static void set_up(oak_mqtt_t *m, bool up)
{
    __atomic_store_n(&m->up, up, __ATOMIC_RELEASE);
}

static void report_up(oak_mqtt_t *m)
{
    m->state = ST_UP;
    m->backoff_ms = OAK_MQTT_BACKOFF_MIN_MS;
    free(m->last_reason);
    m->last_reason = NULL;
    m->reported = m->reported_up = true;
    set_up(m, true);
    if (m->on_conn)
        m->on_conn(true, NULL, m->ctx);
}

static void retry_fire(oak_loop_t *loop, void *data)
{
    oak_mqtt_t *m = data;
    m->retry_timer = 0;
    int rc = start_attempt(m);
    if (rc != MQTTASYNC_SUCCESS) {
        char *why = xasprintf("connect not started: %s (%d)", MQTTAsync_strerror(rc), rc);
        go_down(m, why);
        free(why);
    }
}

/* Enters DOWN, reports why unless it repeats the last report, and arms the
 * reconnect timer. */
static void go_down(oak_mqtt_t *m, const char *reason)
{
    m->state = ST_DOWN;
    set_up(m, false);
    bool tell =
        !m->reported || m->reported_up || !m->last_reason || strcmp(m->last_reason, reason) != 0;
    if (tell) {
        free(m->last_reason);
        m->last_reason = xstrdup(reason);
        m->reported = true;
        m->reported_up = false;
    }
    /* jitter of +-20 % spreads the reconnects of many clients */
    uint64_t delay = m->backoff_ms * (80 + (uint64_t)(rand_r(&m->seed) % 41)) / 100;
    m->backoff_ms =
        m->backoff_ms * 2 > OAK_MQTT_BACKOFF_MAX_MS ? OAK_MQTT_BACKOFF_MAX_MS : m->backoff_ms * 2;
    if (m->retry_timer)
        oak_loop_cancel_timer(m->loop, m->retry_timer);
    m->retry_timer = oak_loop_add_timer(m->loop, delay, retry_fire, m);
    if (tell && m->on_conn)
        m->on_conn(false, reason, m->ctx);
}

static void on_suback_ok(void *context, MQTTAsync_successData *resp);
static void on_suback_fail(void *context, MQTTAsync_failureData *resp);

static void subscribe_all(oak_mqtt_t *m)
{
    if (m->nsubs == 0) {
        report_up(m);
        return;
    }
    m->state = ST_SUBSCRIBING;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_suback_ok;
    ro.onFailure = on_suback_fail;
    ro.context = m->handle;
    int rc = MQTTAsync_subscribeMany(m->cli, m->nsubs, m->subs, m->sub_qos, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        /* the connection counts as up without them; if it is already gone,
         * EV_LOST follows and takes it down again */
        log_warn("mqtt %s: subscriptions not sent: %s (%d)", m->client_id, MQTTAsync_strerror(rc),
                 rc);
        report_up(m);
    }
}

static void on_event(oak_loop_t *loop, void *data)
{
    event_t *ev = data;
    oak_mqtt_t *m = ev->m;
    if (m->dead)
        goto out;
    switch (ev->kind) {
    case EV_CONNECTED:
        if (m->state == ST_CONNECTING)
            subscribe_all(m);
        break;
    case EV_SUBACK:
        if (m->state != ST_SUBSCRIBING)
            break;
        if (ev->text)
            log_warn("mqtt %s: %s", m->client_id, ev->text);
        report_up(m);
        break;
    case EV_CONNECT_FAILED:
        if (m->state == ST_CONNECTING)
            go_down(m, ev->text);
        break;
    case EV_LOST:
        if (m->state == ST_SUBSCRIBING || m->state == ST_UP)
            go_down(m, ev->text);
        break;
    case EV_MESSAGE:
        if (m->on_msg)
            m->on_msg(ev->text, ev->payload, ev->len, m->ctx);
        break;
    }
out:
    unref(m);
    free(ev->text);
    free(ev->payload);
    free(ev);
}

/* Posts an event; takes over the caller's reference on m and text. */
static void post(oak_mqtt_t *m, ev_kind_t kind, char *text, void *payload, size_t len)
{
    event_t *ev = xcalloc(1, sizeof(*ev));
    ev->m = m;
    ev->kind = kind;
    ev->text = text;
    ev->payload = payload;
    ev->len = len;
    oak_loop_post(m->loop, on_event, ev);
}

/* ---- paho callbacks (paho threads) ---- */

static const char *connack_text(int code)
{
    switch (code) {
    case 1:
        return "connection refused: unacceptable protocol version";
    case 2:
        return "connection refused: identifier rejected";
    case 3:
        return "connection refused: server unavailable";
    case 4:
        return "connection refused: bad user name or password";
    case 5:
        return "connection refused: not authorized";
    }
    return NULL;
}

static char *failure_text(const char *what, MQTTAsync_failureData *resp)
{
    int code = resp ? resp->code : MQTTASYNC_FAILURE;
    const char *msg = resp ? resp->message : NULL;
    const char *known = connack_text(code);
    if (known)
        return xstrdup(known);
    if (msg && *msg)
        return xasprintf("%s: %s", what, msg);
    const char *s = MQTTAsync_strerror(code);
    return xasprintf("%s: %s (%d)", what, s ? s : "error", code);
}

static void on_connect_ok(void *context, MQTTAsync_successData *resp)
{
    oak_mqtt_t *m = registry_get(context);
    if (m)
        post(m, EV_CONNECTED, NULL, NULL, 0);
}

static void on_connect_fail(void *context, MQTTAsync_failureData *resp)
{
    oak_mqtt_t *m = registry_get(context);
    if (m)
        post(m, EV_CONNECT_FAILED, failure_text("connect failed", resp), NULL, 0);
}

static void on_suback_ok(void *context, MQTTAsync_successData *resp)
{
    oak_mqtt_t *m = registry_get(context);
    if (!m)
        return;
    char *warning = NULL;
    /* MQTT 3.1.1: a granted QoS of 0x80 means that filter was refused */
    for (int i = 0; i < m->nsubs && !warning; i++) {
        int q = m->nsubs == 1 ? resp->alt.qos : (resp->alt.qosList ? resp->alt.qosList[i] : 0);
        if (q == 0x80)
            warning = xasprintf("broker refused subscription to %s", m->subs[i]);
    }
    post(m, EV_SUBACK, warning, NULL, 0);
}

static void on_suback_fail(void *context, MQTTAsync_failureData *resp)
{
    /* interrupted by a lost connection: EV_LOST handles it */
    if (resp &&
        (resp->code == MQTTASYNC_OPERATION_INCOMPLETE || resp->code == MQTTASYNC_DISCONNECTED))
        return;
    oak_mqtt_t *m = registry_get(context);
    if (!m)
        return;
    char *warning = resp && resp->code == 0x80
                        ? xasprintf("broker refused subscription to %s", m->subs[0])
                        : failure_text("subscribe failed", resp);
    post(m, EV_SUBACK, warning, NULL, 0);
}

static void on_connection_lost(void *context, char *cause)
{
    oak_mqtt_t *m = registry_get(context);
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->losses++;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    char *text =
        cause && *cause ? xasprintf("connection lost: %s", cause) : xstrdup("connection lost");
    post(m, EV_LOST, text, NULL, 0);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *msg)
{
    oak_mqtt_t *m = registry_get(context);
    if (m) {
        size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
        size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
        void *payload = xmalloc(len + 1);
        if (len)
            memcpy(payload, msg->payload, len);
        ((char *)payload)[len] = '\0';
        post(m, EV_MESSAGE, xstrndup(topic, tlen), payload, len);
    }
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    return 1;
}

static void on_disconnect_done(oak_mqtt_t *m)
{
    pthread_mutex_lock(&m->mu);
    m->disc_done = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    unref(m);
}

static void on_disconnect_ok(void *context, MQTTAsync_successData *resp)
{
    oak_mqtt_t *m = registry_get(context);
    if (m)
        on_disconnect_done(m);
}

static void on_disconnect_fail(void *context, MQTTAsync_failureData *resp)
{
    oak_mqtt_t *m = registry_get(context);
    if (m)
        on_disconnect_done(m);
}

/* ---- attempts ---- */

/* Starts a connection attempt (state CONNECTING); returns paho's code for
 * starting it, the outcome arrives as EV_CONNECTED / EV_CONNECT_FAILED. */
static int start_attempt(oak_mqtt_t *m)
{
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    co.keepAliveInterval = m->keepalive_s;
    co.cleansession = m->clean_session;
    if (m->max_inflight > 0)
        co.maxInflight = m->max_inflight;
    co.username = m->username;
    co.password = m->password;
    co.connectTimeout = CONNECT_TIMEOUT_S;
    co.automaticReconnect = 0; /* our own backoff on the loop: paho's is whole seconds */
    co.onSuccess = on_connect_ok;
    co.onFailure = on_connect_fail;
    co.context = m->handle;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    if (m->will_topic) {
        will.topicName = m->will_topic;
        will.message = m->will_payload ? m->will_payload : "";
        will.qos = 1;
        will.retained = 0;
        co.will = &will;
    }
    m->state = ST_CONNECTING;
    __atomic_add_fetch(&m->attempts, 1, __ATOMIC_RELAXED);
    return MQTTAsync_connect(m->cli, &co);
}

/* ---- public API ---- */

static void stop(oak_mqtt_t *m);
static void release(oak_mqtt_t *m);

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    /* OpenSSL 3 initializes itself; other libraries in the process use it too */
    MQTTAsync_init_options io = MQTTAsync_init_options_initializer;
    io.do_openssl_init = 0;
    MQTTAsync_global_init(&io);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int oak_mqtt_new(oak_loop_t *loop, const oak_mqtt_opts_t *o, oak_mqtt_msg_fn on_msg,
                 oak_mqtt_conn_fn on_conn, void *ctx, oak_mqtt_t **out, oak_err_t *err)
{
    *out = NULL;
    if (!o || !o->uri || !*o->uri)
        return oak_err_set(err, OAK_E_INVALID, "mqtt: uri is required");
    if (!o->client_id || !*o->client_id)
        return oak_err_set(err, OAK_E_INVALID, "mqtt: client_id is required");
    if (o->keepalive_s < 0 || o->max_inflight < 0 || o->max_buffered < 0)
        return oak_err_set(err, OAK_E_INVALID, "mqtt: negative keepalive or limit");
    for (const char *const *s = o->subscriptions; s && *s; s++)
        if (!**s)
            return oak_err_set(err, OAK_E_INVALID, "mqtt: empty subscription filter");
    pthread_once(&global_once, global_init);

    MQTTAsync_createOptions cr = MQTTAsync_createOptions_initializer;
    cr.MQTTVersion = MQTTVERSION_3_1_1;
    cr.sendWhileDisconnected = 1;
    cr.maxBufferedMessages = o->max_buffered ? o->max_buffered : OAK_MQTT_MAX_BUFFERED;
    cr.allowDisconnectedSendAtAnyTime = 1;
    cr.deleteOldestMessages = 0;
    MQTTAsync cli = NULL;
    int rc = MQTTAsync_createWithOptions(&cli, o->uri, o->client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                         NULL, &cr);
    if (rc != MQTTASYNC_SUCCESS) {
        oak_code_t code = rc == MQTTASYNC_BAD_PROTOCOL || rc == MQTTASYNC_BAD_UTF8_STRING
                              ? OAK_E_INVALID
                              : OAK_E_INTERNAL;
        return oak_err_set(err, code, "mqtt: cannot create client for %s: %s", o->uri,
                           MQTTAsync_strerror(rc));
    }

    oak_mqtt_t *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->cli = cli;
    m->refs = 1;
    m->uri = xstrdup(o->uri);
    m->client_id = xstrdup(o->client_id);
    m->username = dup_or_null(o->username);
    m->password = dup_or_null(o->password);
    m->will_topic = o->will_topic && *o->will_topic ? xstrdup(o->will_topic) : NULL;
    m->will_payload = dup_or_null(o->will_payload);
    m->keepalive_s = o->keepalive_s ? o->keepalive_s : DEFAULT_KEEPALIVE_S;
    m->max_inflight = o->max_inflight;
    m->clean_session = o->clean_session;
    for (const char *const *s = o->subscriptions; s && *s; s++)
        m->nsubs++;
    m->subs = xcalloc((size_t)m->nsubs + 1, sizeof(*m->subs));
    m->sub_qos = xcalloc((size_t)m->nsubs + 1, sizeof(*m->sub_qos));
    for (int i = 0; i < m->nsubs; i++) {
        m->subs[i] = xstrdup(o->subscriptions[i]);
        m->sub_qos[i] = 1;
    }
    m->on_msg = on_msg;
    m->on_conn = on_conn;
    m->ctx = ctx;
    m->backoff_ms = OAK_MQTT_BACKOFF_MIN_MS;
    m->seed = (unsigned)oak_now_us() ^ (unsigned)(uintptr_t)m;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->handle = registry_add(m);

    rc = MQTTAsync_setCallbacks(cli, m->handle, on_connection_lost, on_message, NULL);
    if (rc == MQTTASYNC_SUCCESS)
        rc = start_attempt(m);
    if (rc != MQTTASYNC_SUCCESS) {
        stop(m);
        release(m);
        return oak_err_set(err, OAK_E_INVALID, "mqtt: cannot start client %s: %s (%d)",
                           o->client_id, MQTTAsync_strerror(rc), rc);
    }
    *out = m;
    return 0;
}

int oak_mqtt_publish(oak_mqtt_t *m, const char *topic, const void *payload, size_t len, int qos,
                     bool retain, oak_err_t *err)
{
    if (!topic || !*topic)
        return oak_err_set(err, OAK_E_INVALID, "mqtt: empty topic");
    if (strpbrk(topic, "+#"))
        return oak_err_set(err, OAK_E_INVALID, "mqtt: wildcard in topic %s", topic);
    if (qos < 0 || qos > 2)
        return oak_err_set(err, OAK_E_INVALID, "mqtt: qos %d out of range", qos);
    if (len > OAK_MQTT_MAX_PAYLOAD)
        return oak_err_set(err, OAK_E_TOO_LARGE, "mqtt: payload of %zu bytes is too large", len);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc = MQTTAsync_send(m->cli, topic, (int)len, payload ? payload : "", qos, retain, &ro);
    switch (rc) {
    case MQTTASYNC_SUCCESS:
        return 0;
    case MQTTASYNC_MAX_BUFFERED_MESSAGES:
        return oak_err_set(err, OAK_E_UNAVAILABLE,
                           "mqtt: %s: too many messages waiting for the broker", m->client_id);
    case MQTTASYNC_NO_MORE_MSGIDS:
        return oak_err_set(err, OAK_E_UNAVAILABLE, "mqtt: %s: no free message ids", m->client_id);
    case MQTTASYNC_BAD_UTF8_STRING:
        return oak_err_set(err, OAK_E_INVALID, "mqtt: topic is not valid UTF-8");
    case MQTTASYNC_DISCONNECTED:
        return oak_err_set(err, OAK_E_UNAVAILABLE, "mqtt: %s: not connected", m->client_id);
    default:
        return oak_err_set(err, OAK_E_INTERNAL, "mqtt: %s: publish failed: %s (%d)", m->client_id,
                           MQTTAsync_strerror(rc), rc);
    }
}

bool oak_mqtt_connected(const oak_mqtt_t *m)
{
    return __atomic_load_n(&m->up, __ATOMIC_ACQUIRE);
}

unsigned oak_mqtt_attempts(const oak_mqtt_t *m)
{
    return __atomic_load_n(&m->attempts, __ATOMIC_RELAXED);
}

/* Waits on m->cv until *flag changes from `from` (unsigned counter) or
 * *done is set, at most ms. */
static void wait_until(oak_mqtt_t *m, const bool *done, const unsigned *counter, unsigned from,
                       long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    while (!(done && *done) && !(counter && *counter != from))
        if (pthread_cond_timedwait(&m->cv, &m->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&m->mu);
}

/* Marks m dead for posted events and stops the reconnect timer. */
static void stop(oak_mqtt_t *m)
{
    m->dead = true;
    set_up(m, false);
    if (m->retry_timer) {
        oak_loop_cancel_timer(m->loop, m->retry_timer);
        m->retry_timer = 0;
    }
}

/* Unregisters (no paho callback reaches m afterwards), destroys the paho
 * client and drops the owner's reference. */
static void release(oak_mqtt_t *m)
{
    registry_remove(m->handle);
    MQTTAsync_destroy(&m->cli);
    unref(m);
}

void oak_mqtt_free(oak_mqtt_t *m)
{
    if (!m)
        return;
    stop(m);
    if (MQTTAsync_isConnected(m->cli)) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = DISCONNECT_TIMEOUT_MS;
        d.onSuccess = on_disconnect_ok;
        d.onFailure = on_disconnect_fail;
        d.context = m->handle;
        pthread_mutex_lock(&m->mu);
        m->disc_done = false;
        pthread_mutex_unlock(&m->mu);
        if (MQTTAsync_disconnect(m->cli, &d) == MQTTASYNC_SUCCESS)
            wait_until(m, &m->disc_done, NULL, 0, DISCONNECT_WAIT_MS);
    }
    release(m);
}

void oak_mqtt_kill(oak_mqtt_t *m)
{
    if (!m)
        return;
    stop(m);
    if (MQTTAsync_isConnected(m->cli)) {
        pthread_mutex_lock(&m->mu);
        unsigned losses = m->losses;
        pthread_mutex_unlock(&m->mu);
        /* A wildcard in a PUBLISH topic is a protocol violation: the broker
         * closes the connection without a DISCONNECT, so it sends the will. */
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        int rc = MQTTAsync_send(m->cli, "+", 0, "", 0, 0, &ro);
        if (rc == MQTTASYNC_SUCCESS)
            wait_until(m, NULL, &m->losses, losses, KILL_WAIT_MS);
        else
            log_warn("mqtt %s: kill: %s", m->client_id, MQTTAsync_strerror(rc));
    }
    release(m);
}
