/* net-manager hook (see netmgr.h): JSON over HTTP on net-manager's unix
 * socket with lib/oak_httpc. Blocking; called from worker threads. */
#include "node_engine/netmgr.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/oak_httpc.h"
#include "lib/oak_json.h"

bool netmgr_present(const char *socket_path)
{
    struct stat st;
    return socket_path && *socket_path && stat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static int call(const char *socket_path, const char *path, json_t *body, oak_err_t *err)
{
    long status = 0;
    json_t *out = NULL;
    char url[128];
    snprintf(url, sizeof(url), "http://localhost%s", path);
    int rc = oak_httpc_json_unix(socket_path, "POST", url, NULL, body, NETMGR_TIMEOUT_MS, &status,
                                 &out, err);
    json_decref(body);
    if (rc < 0) {
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "");
        oak_err_clear(err);
        return oak_err_set(err, OAK_E_UNAVAILABLE, "net-manager at %s: %s", socket_path, msg);
    }
    if (status < 200 || status > 299) {
        const char *m = oak_json_str(out, "message");
        if (!m)
            m = oak_json_str(out, "error");
        oak_err_set(err, OAK_E_UNAVAILABLE, "net-manager %s answered %ld%s%s", path, status,
                    m ? ": " : "", m ? m : "");
        json_decref(out);
        return -1;
    }
    json_decref(out);
    return 0;
}

int netmgr_attach(const char *socket_path, pid_t pid, const char *service_name, int instance_number,
                  const char *port_mappings, bool *attached, oak_err_t *err)
{
    *attached = false;
    if (!netmgr_present(socket_path))
        return 0;
    json_t *body = json_pack("{s:i, s:s, s:i, s:s}", "pid", (int)pid, "serviceName",
                             service_name ? service_name : "", "instanceNumber", instance_number,
                             "portMappings", port_mappings ? port_mappings : "");
    if (call(socket_path, "/container/deploy", body, err) < 0)
        return -1;
    *attached = true;
    return 0;
}

int netmgr_detach(const char *socket_path, const char *service_name, int instance_number,
                  bool *detached, oak_err_t *err)
{
    *detached = false;
    if (!netmgr_present(socket_path))
        return 0;
    json_t *body = json_pack("{s:s, s:i}", "serviceName", service_name ? service_name : "",
                             "instanceNumber", instance_number);
    if (call(socket_path, "/container/undeploy", body, err) < 0)
        return -1;
    *detached = true;
    return 0;
}
