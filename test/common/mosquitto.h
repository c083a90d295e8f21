/* Test helper: a real mosquitto broker configured exactly as the cluster
 * manager configures its own (cluster_orchestrator/broker.c's
 * broker_write_config: no anonymous access, dynamic-security plugin with an
 * admin client), on a free port of 127.0.0.1, with its files in a directory
 * of the caller's. Single-threaded use. */
#ifndef TEST_MOSQUITTO_H
#define TEST_MOSQUITTO_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char dir[256];
    char uri[64];       /* "tcp://127.0.0.1:<port>" */
    char log_path[300]; /* the broker's output, appended across restarts */
    char admin_user[128];
    char admin_password[128];
} th_mosquitto_t;

/* True when /usr/sbin/mosquitto and the dynamic-security plugin are
 * installed; otherwise prints a line with SKIPPED and the reason. */
bool th_mosquitto_available(void);

/* Writes the config into dir (created if needed) and starts
 * /usr/sbin/mosquitto -c <dir>/mosquitto.conf on a free port; waits up to
 * 5 s until it accepts TCP connections. Fills m (port, pid, dir, uri, ...).
 * Returns 0, or -1 with a message (and the broker's log) on stderr. */
int th_mosquitto_start(th_mosquitto_t *m, const char *dir, const char *admin_user,
                       const char *admin_password);
/* Stops the broker (SIGTERM, SIGKILL after 5 s) and reaps it. Keeps dir. */
void th_mosquitto_stop(th_mosquitto_t *m);
/* Stops and starts again on the same port with the same dir (its
 * persisted state and dynamic-security file). Returns 0 or -1. */
int th_mosquitto_restart(th_mosquitto_t *m);

/* A minimal synchronous MQTT 3.1.1 client for tests (plain TCP, clean
 * session, keepalive 60 s, no threads): packets are read only inside the
 * calls below, and every PUBLISH read on the way is kept (QoS 1 ones are
 * acknowledged). Independent of paho, whose MQTTAsync adds 1-2 s to each
 * connect once a process has a second client. */
typedef struct th_mqtt th_mqtt_t;

/* Connects to 127.0.0.1:port. Returns the CONNACK return code (0 accepted,
 * 4 bad user name or password, 5 not authorised) or -1 on a transport
 * error; *out is set only on 0. user/password may be NULL. */
int th_mqtt_connect(int port, const char *client_id, const char *user, const char *password,
                    th_mqtt_t **out);
/* As th_mqtt_connect with a keepalive and a last will (QoS 1, not
 * retained) on will_topic (NULL: none). */
int th_mqtt_connect_will(int port, const char *client_id, const char *user, const char *password,
                         int keepalive_s, const char *will_topic, const char *will_payload,
                         th_mqtt_t **out);
/* Removes and returns (owned) the payload of the oldest received message
 * whose topic starts with prefix, waiting up to ms; *topic_out (owned) gets
 * its topic when non-NULL. NULL on timeout. */
char *th_mqtt_take(th_mqtt_t *c, const char *prefix, char **topic_out, int ms);
/* Closes the connection abruptly (no DISCONNECT, so the broker publishes
 * the will) and frees. */
void th_mqtt_abort(th_mqtt_t *c);
/* Subscribes at QoS 1 and returns the SUBACK code (0-2 granted, 0x80
 * refused), or -1 on a transport error. */
int th_mqtt_subscribe(th_mqtt_t *c, const char *topic);
/* Publishes at QoS 1 and waits for the PUBACK (which a broker also sends
 * for a message its ACL drops). Returns 0 or -1. */
int th_mqtt_publish(th_mqtt_t *c, const char *topic, const char *payload);
/* Waits up to ms for a message on topic (and with payload, unless NULL),
 * counting the ones already received. */
bool th_mqtt_received(th_mqtt_t *c, const char *topic, const char *payload, int ms);
/* Reads what is pending and returns how many messages arrived on topics
 * starting with prefix. */
int th_mqtt_count(th_mqtt_t *c, const char *prefix);
/* Waits up to ms for the broker to close the connection. */
bool th_mqtt_closed(th_mqtt_t *c, int ms);
/* Sends DISCONNECT (unless closed), closes and frees. NULL is ignored. */
void th_mqtt_close(th_mqtt_t *c);

#endif
