/* The cluster <-> worker protocol (docs/worker-protocol.md): MQTT topic
 * names, and strict parsers and builders for every payload, shared by the
 * cluster manager, the node engine and the worker simulator. A parser
 * either fills its output completely or leaves it zeroed and fails with
 * OAK_E_TOO_LARGE (payload over WP_MAX_PAYLOAD), OAK_E_INVALID (not JSON)
 * or OAK_E_UNPROCESSABLE, with one {"field", "rule"} entry in err->details
 * per broken rule (see "Payload validation" in the doc). Unknown members
 * are ignored everywhere. Parsers take the raw payload (p, len bytes, not
 * NUL-terminated). Builders return a new reference, never NULL, accepted
 * by the matching parser when their input satisfies the same rules (a
 * non-finite number is written as null, which the receiver rejects naming
 * the field). Pure functions, thread-safe. */
#ifndef WORKER_PROTO_H
#define WORKER_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/oak_err.h"

#define WP_MAX_PAYLOAD   (256 * 1024) /* bytes, every payload and the registration body */
#define WP_MAX_DEPTH     32           /* nesting levels of a payload */
#define WP_MAX_ERRORS    20           /* field errors listed in err->details */
#define WP_ID_LEN        24           /* service ids: 24 lowercase hex digits */
#define WP_NODE_ID_MAX   24           /* node ids: 1..24 of [A-Za-z0-9_-] */
#define WP_MAX_INSTANCE  1000000      /* instance_number 0..WP_MAX_INSTANCE */
#define WP_MAX_JOB_NAME  200
#define WP_MAX_DETAIL    1024
#define WP_MAX_HOST      64
#define WP_MAX_VIRT      16
#define WP_MAX_STATE     10000 /* entries of a state report */
#define WP_MAX_RESOURCES 10000 /* entries of a resources report */
#define WP_MAX_CORES     4096
#define WP_MAX_GPUS      1024
#define WP_MAX_MEMORY_MB 16777216LL /* 16 TiB, as the SLA's memory limit */
#define WP_MAX_VCPUS     1024       /* a deploy's vcpus, as the SLA's limit */
#define WP_MAX_TOKEN     512
#define WP_MAX_IMAGE     1024
#define WP_MAX_ARGS      256  /* entries of cmd and environment */
#define WP_MAX_ARG_LEN   4096 /* bytes of one cmd or environment entry */
#define WP_MAX_PORT_SPEC 256
#define WP_MAX_SYSINFO   32 /* members of a registration's system_info */
#define WP_MAX_LOAD      1e6
#define WP_MAX_REQ_ID    64           /* logs request ids: 1..64 of [A-Za-z0-9_-] */
#define WP_MAX_TAIL      10000        /* lines a logs request may ask for */
#define WP_MAX_LOGS      (128 * 1024) /* bytes of log text in a logs answer */
#define WP_MAX_REASON    200          /* bytes of a state request's reason */

/* ---- topics: nodes/<node id>/<suffix> ---- */

typedef enum {
    WP_STATUS,      /* status */
    WP_INFORMATION, /* information */
    WP_STATE,       /* state */
    WP_JOB,         /* job */
    WP_RESOURCES,   /* jobs/resources */
    WP_DEPLOY,      /* control/deploy */
    WP_DELETE,      /* control/delete */
    WP_LOGS_REQ,    /* control/logs */
    WP_LOGS,        /* logs */
    WP_STATE_REQ,   /* control/state */
    WP_UNKNOWN
} wp_kind_t;

/* Splits "nodes/<id>/<rest>": copies the node id (1..24 of [A-Za-z0-9_-])
 * into id and sets *kind from rest (WP_UNKNOWN for a well-formed topic
 * with an unknown non-empty rest). Returns 0, or -1 when topic is NULL or
 * malformed (then id is "" and *kind WP_UNKNOWN). */
int wp_topic_parse(const char *topic, char id[WP_NODE_ID_MAX + 1], wp_kind_t *kind);
/* "nodes/<id>/<suffix of kind>", owned by the caller; NULL when id is not
 * a valid node id or kind is WP_UNKNOWN. */
char *wp_topic(const char *id, wp_kind_t kind);
/* The topic suffix of kind ("jobs/resources", ...); "unknown" for WP_UNKNOWN. */
const char *wp_kind_name(wp_kind_t kind);
/* True when s is a valid node id (1..24 of [A-Za-z0-9_-]). */
bool wp_node_id_valid(const char *s);
/* True when s is a service id (24 lowercase hex digits). */
bool wp_service_id_valid(const char *s);

/* ---- instance statuses a worker reports ---- */

typedef enum {
    WP_ST_CREATED,
    WP_ST_RUNNING,
    WP_ST_FAILED,
    WP_ST_DEAD,
    WP_ST_COMPLETED,
    WP_ST_UNDEPLOYED
} wp_status_t;

/* Oakestra's status string ("RUNNING", ...) of s. */
const char *wp_status_name(wp_status_t s);
/* Sets *out from an exact status string; -1 when it is none of them. */
int wp_status_parse(const char *name, wp_status_t *out);

/* ---- registration (HTTP body of POST /api/node/register) ---- */

typedef struct {
    char *host;    /* 1..64 of [A-Za-z0-9._-] */
    char *ip;      /* IPv4 or IPv6 literal */
    char *node_id; /* NULL on a first registration ("" or absent) */
    char *token;   /* the body's "token", NULL when absent or "" */
    char *arch;    /* "architecture" */
    char **virt;   /* "virtualization": 1..16 runtime names */
    size_t nvirt;
    int port;            /* 1..65535 */
    int cpu_cores;       /* 1..WP_MAX_CORES */
    long long memory_mb; /* "memory": available MB */
    int gpus;            /* 0 when absent */
    json_t *system_info; /* NULL when absent; else an object of scalars */
} wp_register_t;

/* Parses a registration body of len bytes into *out (owned, release with
 * wp_register_clear). Errors: 413, 400, 422 with field paths. */
int wp_parse_register(const char *body, size_t len, wp_register_t *out, oak_err_t *err);
/* Frees the members of r and zeroes it; r may be zeroed already. */
void wp_register_clear(wp_register_t *r);
/* The registration body of r (node_id NULL -> "", token and system_info
 * only when set); new reference. */
json_t *wp_build_register(const wp_register_t *r);

/* ---- nodes/<id>/status ---- */

/* {"status": "online"|"offline"} -> *online (false on failure). */
int wp_parse_status(const void *p, size_t len, bool *online, oak_err_t *err);
/* {"status": "online"} or the last will's {"status": "offline"}. */
json_t *wp_build_status(bool online);

/* ---- nodes/<id>/information ---- */

typedef struct {
    int cpu_cores;
    double cpu_percent;        /* 0..100 * cpu_cores */
    long long memory_mb;       /* "memory": available MB */
    long long memory_total_mb; /* "memory_total" */
    double disk_percent;
    int gpus;
    double load1;
    const char *architecture;
    const char *const *virt; /* "virtualization" */
    size_t nvirt;
    const char *kernel_version;
} wp_info_t;

/* Validates an information report (full or partial) and sets *out to a new
 * object holding only its known members (unknown ones are dropped).
 * cpu_percent is bounded by 100 x the payload's cpu_cores, else by 100 x
 * cores (the worker's known core count; <= 0 when unknown: WP_MAX_CORES). */
int wp_parse_information(const void *p, size_t len, int cores, json_t **out, oak_err_t *err);
/* A full information report of every member of i; new reference. */
json_t *wp_build_information(const wp_info_t *i);

/* ---- nodes/<id>/job ---- */

typedef struct {
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    uint64_t generation;
    char job_name[WP_MAX_JOB_NAME + 1]; /* "" when absent */
    wp_status_t status;
    char status_detail[WP_MAX_DETAIL + 1]; /* "" when absent */
    int exit_code;                         /* 0..255, when has_exit_code */
    bool has_exit_code;
} wp_job_t;

/* An instance status change. Oakestra's "sname" and "instance" are read as
 * job_name and instance_number (when both spellings are given they must
 * agree); "publicip" is ignored. */
int wp_parse_job(const void *p, size_t len, wp_job_t *out, oak_err_t *err);
/* The job payload of j (job_name omitted when "", exit_code only when
 * has_exit_code). */
json_t *wp_build_job(const wp_job_t *j);

/* ---- nodes/<id>/state ---- */

typedef struct {
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    uint64_t generation;
    wp_status_t status;
} wp_inst_t;

/* {"instances": [...]} -> *out (n entries, owned, free() it; NULL when
 * n == 0). An instance (service_id, instance_number) appears at most once. */
int wp_parse_state(const void *p, size_t len, wp_inst_t **out, size_t *n, oak_err_t *err);
/* {"instances": [n entries of v]} (v may be NULL when n == 0). About 100
 * bytes per entry: more than ~2,500 exceed WP_MAX_PAYLOAD. */
json_t *wp_build_state(const wp_inst_t *v, size_t n);

/* ---- nodes/<id>/jobs/resources ---- */

typedef struct {
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    uint64_t generation;
    double cpu_percent; /* of one core: 0..100 x the worker's cores */
    long long memory_mb;
} wp_usage_t;

/* {"services": [...]} -> *out (as wp_parse_state); cpu_percent is bounded
 * by 100 x cores (<= 0: WP_MAX_CORES). */
int wp_parse_resources(const void *p, size_t len, int cores, wp_usage_t **out, size_t *n,
                       oak_err_t *err);
/* {"services": [n entries of v]}; about 130 bytes per entry. */
json_t *wp_build_resources(const wp_usage_t *v, size_t n);

/* ---- nodes/<id>/control/deploy ---- */

typedef struct {
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    uint64_t generation;
    char *job_name;
    char *image;
    char **cmd; /* ncmd entries, NULL when none */
    size_t ncmd;
    char **env; /* "environment": KEY=VALUE entries */
    size_t nenv;
    int vcpus;
    long long memory_mb; /* "memory" */
    int vgpus;
    bool one_shot;
    char *port;           /* "" when none */
    char *virtualization; /* runtime name */
    json_t *service;      /* the whole service document */
} wp_deploy_t;

/* Parses a deploy command into *out (release with wp_deploy_clear). */
int wp_parse_deploy(const void *p, size_t len, wp_deploy_t *out, oak_err_t *err);
/* Frees the members of d and zeroes it; d may be zeroed already. */
void wp_deploy_clear(wp_deploy_t *d);
/* The deploy payload of instance instance_number (generation) of a service
 * document (borrowed; copied into "service"): service_id = _id, image =
 * image or else code, cmd, environment, vcpus, memory, vgpus, one_shot,
 * port, virtualization, defaults for absent optional members. Fails with
 * 422 (paths of the payload) when the result would not parse, 413 when it
 * would exceed WP_MAX_PAYLOAD. On success *out is a new reference. */
int wp_build_deploy(const json_t *service_doc, int instance_number, uint64_t generation,
                    json_t **out, oak_err_t *err);

/* ---- nodes/<id>/control/delete ---- */

typedef struct {
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    uint64_t generation;
    char job_name[WP_MAX_JOB_NAME + 1]; /* "" when absent */
} wp_delete_t;

/* An undeploy command (Oakestra's form, without service_id and generation,
 * is refused). */
int wp_parse_delete(const void *p, size_t len, wp_delete_t *out, oak_err_t *err);
/* The delete payload of d (job_name omitted when ""). */
json_t *wp_build_delete(const wp_delete_t *d);

/* ---- nodes/<id>/control/state ---- */

/* The cluster asks the worker to publish its state report again: after the
 * worker comes back from being considered offline, and after the cluster
 * manager restarts, so that both sides agree on what runs where. */
typedef struct {
    char reason[WP_MAX_REASON + 1]; /* printable, may be "" */
} wp_state_req_t;

int wp_parse_state_req(const void *p, size_t len, wp_state_req_t *out, oak_err_t *err);
/* The payload of r ("reason" omitted when ""). */
json_t *wp_build_state_req(const wp_state_req_t *r);

/* ---- nodes/<id>/control/logs and nodes/<id>/logs ---- */

typedef struct {
    char request_id[WP_MAX_REQ_ID + 1];
    char service_id[WP_ID_LEN + 1];
    int instance_number;
    int tail; /* 1..WP_MAX_TAIL */
} wp_logs_req_t;

/* A request for the last lines of an instance's output. */
int wp_parse_logs_req(const void *p, size_t len, wp_logs_req_t *out, oak_err_t *err);
json_t *wp_build_logs_req(const wp_logs_req_t *r);

typedef struct {
    char request_id[WP_MAX_REQ_ID + 1];
    bool ok;
    int error_code;                /* when !ok: 404 (no such instance), 500, ... */
    char error[WP_MAX_DETAIL + 1]; /* when !ok */
    char *logs;                    /* when ok: text (NUL-terminated), at most WP_MAX_LOGS bytes */
    size_t logs_len;
    bool truncated; /* older lines were left out */
} wp_logs_t;

/* The worker's answer: {"request_id", "ok": true, "logs", "truncated"} or
 * {"request_id", "ok": false, "error_code", "error"}. Release with
 * wp_logs_clear. */
int wp_parse_logs(const void *p, size_t len, wp_logs_t *out, oak_err_t *err);
void wp_logs_clear(wp_logs_t *l);
/* The answer payload of l; logs may hold any bytes (invalid UTF-8 is
 * replaced by U+FFFD). */
json_t *wp_build_logs(const wp_logs_t *l);

#endif
