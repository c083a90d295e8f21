/* The hook that hands an instance's network namespace to net-manager, the
 * worker's overlay-network daemon, over its unix-socket HTTP API (as in
 * Oakestra): `POST /container/deploy {"pid", "serviceName",
 * "instanceNumber", "portMappings"}` once the container's init process
 * exists (so net-manager finds the namespace at /proc/<pid>/ns/net) and
 * before the workload starts, and `POST /container/undeploy
 * {"serviceName", "instanceNumber"}` when it is removed.
 *
 * When no socket exists at the configured path (net-manager is not
 * installed or not running) both calls are a no-op that succeeds with
 * *attached false: the instance keeps the fresh, empty network namespace
 * the runtime gave it (loopback only). The calls block (HTTP over the
 * socket, at most NETMGR_TIMEOUT_MS): run them off the event loop thread.
 * Thread-safe. */
#ifndef NETMGR_H
#define NETMGR_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/oak_err.h"

#define NETMGR_DEFAULT_SOCKET "/etc/netmanager/netmanager.sock"
#define NETMGR_TIMEOUT_MS     10000

/* True when socket_path names an existing unix socket. */
bool netmgr_present(const char *socket_path);

/* Asks net-manager to connect the network namespace of process pid (the
 * container's init) for instance instance_number of service_name (the job
 * name), with the SLA's port mappings ("" for none). Sets *attached to
 * whether net-manager took it (false: no socket, nothing done). Errors:
 * OAK_E_UNAVAILABLE when the socket exists but the request fails or
 * net-manager answers with a non-2xx status (its message included). */
int netmgr_attach(const char *socket_path, pid_t pid, const char *service_name, int instance_number,
                  const char *port_mappings, bool *attached, oak_err_t *err);

/* Tells net-manager that the instance is gone. *detached as *attached
 * above; errors as for netmgr_attach. */
int netmgr_detach(const char *socket_path, const char *service_name, int instance_number,
                  bool *detached, oak_err_t *err);

#endif
