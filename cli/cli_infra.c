/* Infrastructure: `cluster list` (GET /api/clusters/), `cluster token`
 * (POST /api/clusters/token: a join token for a new cluster manager) and
 * `node list` (GET /api/nodes/, the workers of every cluster). */
#include "cli/cli_infra.h"

#include <string.h>

#include "cli/cli_args.h"
#include "cli/cli_table.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

static const char cluster_usage[] =
    "usage: oakctl cluster COMMAND\n"
    "  list                          list clusters\n"
    "  token [--name NAME] [--ttl S] print a join token for a new cluster\n";

static const char token_usage[] =
    "usage: oakctl cluster token [--name NAME] [--ttl S]\n"
    "Prints a join token for a cluster manager (OAK_JOIN_TOKEN); Admin or\n"
    "Infrastructure_Provider only.\n"
    "  --name NAME  the only cluster name the token admits (default: any)\n"
    "  --ttl S      lifetime in seconds (60-31536000; default: the server's)\n";

static const char node_usage[] = "usage: oakctl node COMMAND\n"
                                 "  list [--cluster ID]   list worker nodes (of one cluster)\n";

/* "-" or the "ago" form of a time given as a number; a string as is. */
static const char *fmt_time(const json_t *o, const char *key, char *buf, size_t len)
{
    if (json_is_string(json_object_get(o, key)))
        return cli_fmt(o, key, buf, len);
    return cli_fmt_ago(o, key, buf, len);
}

static int cmd_cluster_list(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int rc = cli_args_words(c, argc, argv, 0, "usage: oakctl cluster list\n", pos, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    json_auto_t *list = NULL;
    if (cli_get(c, "/api/clusters/", JSON_ARRAY, &list, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON) {
        cli_print_json(list);
        return 0;
    }
    const char *headers[] = {"ID",       "NAME",        "ACTIVE",   "CONNECTED", "NODES", "CPU%",
                             "CPU_FREE", "MEM_FREE_MB", "LOCATION", "LAST_SEEN", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i;
    json_t *cl;
    json_array_foreach(list, i, cl)
    {
        json_t *cap = json_object_get(cl, "capacity");
        char b[10][128], cpu[64];
        long long free_m = oak_json_int(cap, "cpu_millis_free", -1);
        if (free_m >= 0)
            snprintf(cpu, sizeof(cpu), "%.1f", (double)free_m / 1000.0);
        else
            snprintf(cpu, sizeof(cpu), "-");
        const char *cells[] = {cli_fmt(cl, "_id", b[0], sizeof(b[0])),
                               cli_fmt(cl, "cluster_name", b[1], sizeof(b[1])),
                               cli_fmt(cl, "active", b[2], sizeof(b[2])),
                               cli_fmt(cl, "connected", b[3], sizeof(b[3])),
                               cli_fmt(cl, "active_nodes", b[4], sizeof(b[4])),
                               cli_fmt(cl, "aggregated_cpu_percent", b[5], sizeof(b[5])),
                               cpu,
                               cli_fmt(cl, "memory_in_mb", b[6], sizeof(b[6])),
                               cli_fmt(cl, "cluster_location", b[7], sizeof(b[7])),
                               fmt_time(cl, "last_seen", b[8], sizeof(b[8]))};
        cli_table_add(t, cells, 10);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

static int cmd_token(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *name = NULL, *ttl_arg = NULL;
    cli_opt_t opts[] = {
        {"name", 0, "NAME", &name, NULL},
        {"ttl", 0, "S", &ttl_arg, NULL},
        CLI_OPT_END,
    };
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(token_usage, stdout);
        return 0;
    }
    if (!name && npos == 1)
        name = pos[0]; /* `oakctl cluster token edge1` */
    else if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "%s", token_usage);
    long long ttl = 0;
    if (ttl_arg && cli_args_int(ttl_arg, "--ttl", 60, 365LL * 86400, &ttl, err) < 0)
        return -1;
    json_auto_t *body = json_object();
    if (name)
        json_object_set_new(body, "cluster_name", json_string(name));
    if (ttl_arg)
        json_object_set_new(body, "ttl_s", json_integer(ttl));
    json_auto_t *reply = NULL;
    if (cli_request(c, "POST", "/api/clusters/token", body, &reply, err) < 0)
        return -1;
    const char *token = oak_json_str(reply, "token");
    if (!token)
        return oak_err_set(err, OAK_E_INTERNAL, "the server's reply carries no token");
    if (c->output == CLI_OUT_JSON)
        cli_print_json(reply);
    else
        printf("%s\n", token);
    return 0;
}

int cli_cluster_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    if (argc < 1) {
        if (c->help) {
            fputs(cluster_usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "%s", cluster_usage);
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "list") || !strcmp(sub, "ls"))
        return cmd_cluster_list(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "token"))
        return cmd_token(c, argc - 1, argv + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command 'cluster %s'\n%s", sub, cluster_usage);
}

static int cmd_node_list(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *cluster = NULL;
    cli_opt_t opts[] = {{"cluster", 0, "ID", &cluster, NULL}, CLI_OPT_END};
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs("usage: oakctl node list [--cluster ID]\n", stdout);
        return 0;
    }
    if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "usage: oakctl node list [--cluster ID]");
    _cleanup_free_ char *esc = cluster ? cli_escape(cluster) : NULL;
    _cleanup_free_ char *path =
        cluster ? xasprintf("/api/nodes/?cluster=%s", esc) : xstrdup("/api/nodes/");
    json_auto_t *list = NULL;
    if (cli_get(c, path, JSON_ARRAY, &list, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON) {
        cli_print_json(list);
        return 0;
    }
    const char *headers[] = {"ID",        "NAME",      "CLUSTER", "STATUS", "IP",
                             "ARCH",      "CPUS",      "CPU%",    "MEM_MB", "MEM_FREE_MB",
                             "INSTANCES", "LAST_SEEN", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i;
    json_t *n;
    json_array_foreach(list, i, n)
    {
        char b[12][128];
        json_t *inst = json_object_get(n, "instances");
        if (json_is_array(inst))
            snprintf(b[10], sizeof(b[10]), "%zu", json_array_size(inst));
        else
            cli_fmt(n, "instances", b[10], sizeof(b[10]));
        const char *cells[] = {cli_fmt(n, "node_id", b[0], sizeof(b[0])),
                               cli_fmt(n, "name", b[1], sizeof(b[1])),
                               cli_fmt(n, "cluster_name", b[2], sizeof(b[2])),
                               cli_fmt(n, "status", b[3], sizeof(b[3])),
                               cli_fmt(n, "ip", b[4], sizeof(b[4])),
                               cli_fmt(n, "architecture", b[5], sizeof(b[5])),
                               cli_fmt(n, "cpu_cores", b[6], sizeof(b[6])),
                               cli_fmt(n, "cpu_percent", b[7], sizeof(b[7])),
                               cli_fmt(n, "memory_mb", b[8], sizeof(b[8])),
                               cli_fmt(n, "memory_free_mb", b[9], sizeof(b[9])),
                               b[10],
                               fmt_time(n, "last_seen", b[11], sizeof(b[11]))};
        cli_table_add(t, cells, 12);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

int cli_node_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    if (argc < 1) {
        if (c->help) {
            fputs(node_usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "%s", node_usage);
    }
    if (!strcmp(argv[0], "list") || !strcmp(argv[0], "ls"))
        return cmd_node_list(c, argc - 1, argv + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command 'node %s'\n%s", argv[0], node_usage);
}
