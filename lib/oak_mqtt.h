/* MQTT 3.1.1 client over paho.mqtt.c's MQTTAsync API, integrated with the
 * event loop: paho's threads only copy what arrives and post it to the loop,
 * so the message and connection callbacks run on the loop thread. The client
 * connects in the background, reconnects with backoff forever, re-subscribes
 * after every connect and buffers publishes while disconnected. Threading
 * and buffering are described in docs/mqtt.md. */
#ifndef OAK_MQTT_H
#define OAK_MQTT_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/oak_err.h"
#include "lib/oak_loop.h"

/* Default number of publishes paho may hold (unsent or waiting for the
 * broker's acknowledgement) before oak_mqtt_publish refuses more. */
#define OAK_MQTT_MAX_BUFFERED 10000
/* Reconnect backoff bounds (milliseconds); each failed attempt doubles the
 * delay, a successful connect resets it. */
#define OAK_MQTT_BACKOFF_MIN_MS 500
#define OAK_MQTT_BACKOFF_MAX_MS 10000
/* Largest payload MQTT can carry (remaining length limit minus headers). */
#define OAK_MQTT_MAX_PAYLOAD (256 * 1024 * 1024 - 1 - 65536)

typedef struct oak_mqtt oak_mqtt_t;
/* Message callback, on the loop thread; topic/payload valid during the call.
 * The payload is followed by a NUL byte (not counted in len). */
typedef void (*oak_mqtt_msg_fn)(const char *topic, const void *payload, size_t len, void *ctx);
/* Connection state changes, on the loop thread. reason: NULL when connected,
 * else why not. */
typedef void (*oak_mqtt_conn_fn)(bool connected, const char *reason, void *ctx);

typedef struct {
    const char *uri; /* "tcp://127.0.0.1:10003" */
    const char *client_id;
    const char *username, *password; /* may be NULL */
    int keepalive_s;                 /* default 5 if 0 */
    const char *will_topic;          /* may be NULL; the will is QoS 1, not retained */
    const char *will_payload;
    bool clean_session;
    const char *const *subscriptions; /* NULL-terminated filters, QoS 1, (re)subscribed after
                                         every connect */
    int max_inflight;                 /* 0 = paho default */
    int max_buffered;                 /* 0 = OAK_MQTT_MAX_BUFFERED */
} oak_mqtt_opts_t;

/* Creates the client and starts connecting in the background; reconnects
 * with backoff (OAK_MQTT_BACKOFF_MIN_MS .. OAK_MQTT_BACKOFF_MAX_MS, with
 * jitter) forever until freed. Options are copied. on_msg and on_conn may be
 * NULL.
 *
 * on_conn(true, NULL) runs once per connection, after the broker has
 * acknowledged the subscriptions (a refused filter is logged, the connection
 * still counts as up). on_conn(false, reason) runs when a connection is lost
 * and when an attempt fails, but repeated failures with the same reason are
 * reported once. Messages of a resumed session (clean_session false) may
 * arrive before on_conn(true).
 *
 * Call on the loop thread (or before the loop runs). Errors: OAK_E_INVALID
 * for a missing uri/client_id or a URI paho rejects, OAK_E_INTERNAL if paho
 * refuses to create the client. */
int oak_mqtt_new(oak_loop_t *loop, const oak_mqtt_opts_t *o, oak_mqtt_msg_fn on_msg,
                 oak_mqtt_conn_fn on_conn, void *ctx, oak_mqtt_t **out, oak_err_t *err);

/* Publishes a copy of payload (thread-safe; not concurrently with or after
 * oak_mqtt_free). While disconnected, messages are buffered by paho and sent
 * in order after reconnect. Errors: OAK_E_INVALID for an empty topic, a topic
 * with wildcards or invalid UTF-8, or qos outside 0..2; OAK_E_TOO_LARGE
 * beyond OAK_MQTT_MAX_PAYLOAD; OAK_E_UNAVAILABLE when max_buffered messages
 * are already waiting (or paho ran out of message ids). */
int oak_mqtt_publish(oak_mqtt_t *m, const char *topic, const void *payload, size_t len, int qos,
                     bool retain, oak_err_t *err);

/* Whether the last state reported to on_conn was "connected". Thread-safe. */
bool oak_mqtt_connected(const oak_mqtt_t *m);

/* Number of connection attempts started so far. Thread-safe. */
unsigned oak_mqtt_attempts(const oak_mqtt_t *m);

/* Disconnects cleanly (the will is NOT published) and frees; no callback
 * runs afterwards, including ones already posted to the loop. Blocks the
 * loop thread until the DISCONNECT is sent (at most ~2 s; in-flight QoS>0
 * messages get up to 1 s to be acknowledged); buffered messages not yet sent
 * are dropped. Call on the loop thread; NULL is a no-op. */
void oak_mqtt_free(oak_mqtt_t *m);

/* For tests and tools: simulates an abrupt death so the broker publishes the
 * will, then frees as oak_mqtt_free does. The broker is made to drop the
 * connection without a DISCONNECT by a protocol violation (a PUBLISH to a
 * wildcard topic, [MQTT-3.3.2-2]); waits up to 2 s for it to close. Call on
 * the loop thread; NULL is a no-op. */
void oak_mqtt_kill(oak_mqtt_t *m);

#endif
