/* The cluster's MQTT broker (mosquitto 2.0 with its dynamic-security
 * plugin): the configuration the cluster manager starts it with, and the
 * per-worker credentials and ACLs it manages at run time over the plugin's
 * $CONTROL/dynamic-security/v1 topic. See docs/broker.md.
 *
 * A broker_t is one admin connection. Its calls block the caller (a few ms
 * on a local broker, at most BROKER_TIMEOUT_MS) and are serialised, so it
 * may be used from the loop thread or from several threads. */
#ifndef BROKER_H
#define BROKER_H

#include "lib/oak_err.h"

/* Upper bound on one blocking call (connect, or one batch of commands). */
#define BROKER_TIMEOUT_MS 5000
/* Roles in the dynamic-security configuration. */
#define BROKER_ROLE_ADMIN   "admin"
#define BROKER_ROLE_MANAGER "cluster-manager"
/* Workers get role BROKER_ROLE_NODE_PREFIX "<node id>". */
#define BROKER_ROLE_NODE_PREFIX "node-"

typedef struct broker broker_t;

/* Writes <dir>/mosquitto.conf for the cluster's broker: a listener on port
 * (bind_addr, or every interface when NULL), allow_anonymous false,
 * per_listener_settings false, persistence in dir, and the dynamic-security
 * plugin with its configuration <dir>/dynamic-security.json. That file is
 * created if absent, and otherwise kept (it holds the workers' clients):
 * either way it is made to hold the default ACL access (everything denied
 * unless a role grants it), role "admin" (the plugin's control topics),
 * role "cluster-manager" (subscribe and receive nodes/#, publish
 * nodes/+/control/#), and client admin_user with both roles whose password
 * is admin_password (re-hashed if it changed). Call it while the broker is
 * stopped: the plugin rewrites the file on every change. Both files are
 * 0600. *conf_path gets the config path (owned). Errors: OAK_E_INVALID
 * (bad argument, or an existing file that is not a dynsec configuration),
 * OAK_E_UNAVAILABLE (the plugin is not installed), OAK_E_IO. */
int broker_write_config(const char *dir, const char *bind_addr, int port, const char *admin_user,
                        const char *admin_password, char **conf_path, oak_err_t *err);

/* Path of mosquitto's dynamic-security plugin on this system, or NULL when
 * it is not installed. Borrowed, static. */
const char *broker_dynsec_plugin_path(void);

/* Connects to the broker at uri ("tcp://host:port") as the admin and
 * subscribes to the plugin's response topic. Errors: OAK_E_UNAUTH (refused
 * credentials), OAK_E_UNAVAILABLE (no broker there), OAK_E_TIMEOUT. A
 * broker that goes away later is reconnected to by the next call. */
int broker_open(const char *uri, const char *admin_user, const char *admin_password, broker_t **out,
                oak_err_t *err);

/* Creates client node_id (username and required MQTT client id node_id)
 * with password and role "node-<node_id>", which allows exactly: publish
 * nodes/<id>/# except nodes/<id>/control/#, and subscribe to and receive
 * nodes/<id>/control/#. Idempotent: an existing worker client gets the new
 * password and its role back (the plugin disconnects a client whose
 * settings change). node_id: 1-128 of [A-Za-z0-9._-]. Errors: OAK_E_INVALID,
 * OAK_E_CONFLICT (a client of that name exists with other roles, e.g. the
 * admin), the connection errors of broker_open, OAK_E_INTERNAL (the plugin
 * refused a command; the message quotes it). */
int broker_add_worker(broker_t *b, const char *node_id, const char *password, oak_err_t *err);

/* Deletes client node_id and its role; the plugin disconnects the client
 * (without publishing its will). Idempotent: removing an unknown worker
 * succeeds. Refuses (OAK_E_CONFLICT) a client that is not a worker's. */
int broker_remove_worker(broker_t *b, const char *node_id, oak_err_t *err);

/* Creates client username (any client id) with password and role
 * "cluster-manager". Idempotent like broker_add_worker. */
int broker_add_manager(broker_t *b, const char *username, const char *password, oak_err_t *err);

/* Disconnects and frees. NULL is ignored. */
void broker_close(broker_t *b);

#endif
