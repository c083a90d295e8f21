/* Services and instances: `service list|scale|delete`, `instance
 * list|logs`. Scaling computes the difference from the current instance
 * list: up with POST /api/service/<id>/instance {"replicas": k}, down with
 * DELETE /api/service/<id>/instance/<n> of the instances that are not up
 * first, then the highest numbers. `instance logs -f` polls the logs
 * endpoint every second and prints only the lines after the ones already
 * printed (see follow_new_lines). */
#include "cli/cli_service.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_args.h"
#include "cli/cli_table.h"
#include "cli/cli_wait.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define DEFAULT_TIMEOUT_S 120
#define MAX_INSTANCES     1000
#define LOGS_MAX_TAIL     10000
#define LOGS_DEFAULT_TAIL 100
#define FOLLOW_POLL_MS    1000

static const char service_usage[] =
    "usage: oakctl service COMMAND\n"
    "  list [--app ID]                 list services (of one application)\n"
    "  scale SERVICE_ID N [--wait] [--timeout S]\n"
    "                                  add or remove instances until there are N\n"
    "  delete SERVICE_ID               undeploy and delete a service\n";

static const char scale_usage[] =
    "usage: oakctl service scale SERVICE_ID N [--wait] [--timeout S]\n"
    "Adds instances, or removes them (those not running first, then the highest\n"
    "numbers), until the service has N (0-1000).\n"
    "  --wait       wait until every instance is RUNNING\n"
    "  --timeout S  give up waiting after S seconds (default 120); exit 5\n";

static const char instance_usage[] =
    "usage: oakctl instance COMMAND\n"
    "  list [--service ID]             list instances (of one service)\n"
    "  logs SERVICE_ID N [--tail N] [-f]\n"
    "                                  the output of instance N of a service\n";

static const char logs_usage[] =
    "usage: oakctl instance logs SERVICE_ID N [--tail LINES] [-f]\n"
    "Prints the output of instance N of a service, fetched from its worker.\n"
    "  --tail LINES  the last LINES lines (1-10000, default 100)\n"
    "  -f, --follow  keep printing new output (polls every second) until Ctrl-C\n";

static const char *str_or(const json_t *o, const char *key, const char *def)
{
    const char *s = oak_json_str(o, key);
    return s && *s ? s : def;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void cli_service_table(const json_t *services, FILE *out)
{
    const char *headers[] = {"ID", "NAME", "APPLICATION", "STATUS", "INSTANCES", "IMAGE", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i, k;
    json_t *s, *in;
    json_array_foreach(services, i, s)
    {
        size_t up = 0;
        json_t *list = json_object_get(s, "instance_list");
        json_array_foreach(list, k, in) up += cli_instance_ready(s, in);
        char inst[64], name[256], app[256];
        snprintf(inst, sizeof(inst), "%zu/%zu", up, json_array_size(list));
        snprintf(name, sizeof(name), "%s.%s", str_or(s, "service_name", "?"),
                 str_or(s, "service_ns", "?"));
        snprintf(app, sizeof(app), "%s.%s", str_or(s, "app_name", "?"), str_or(s, "app_ns", "?"));
        const char *cells[] = {oak_json_str(s, "_id"),    name, app,
                               oak_json_str(s, "status"), inst, oak_json_str(s, "image")};
        cli_table_add(t, cells, 6);
    }
    cli_table_print(t, out);
    cli_table_free(t);
}

static int get_service(cli_t *c, const char *id, json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *esc = cli_escape(id);
    _cleanup_free_ char *path = xasprintf("/api/service/%s", esc);
    return cli_get(c, path, JSON_OBJECT, out, err);
}

static int cmd_service_list(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *app = NULL;
    cli_opt_t opts[] = {{"app", 'a', "ID", &app, NULL}, CLI_OPT_END};
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs("usage: oakctl service list [--app ID]\n", stdout);
        return 0;
    }
    if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "usage: oakctl service list [--app ID]");
    _cleanup_free_ char *esc = app ? cli_escape(app) : NULL;
    _cleanup_free_ char *path =
        app ? xasprintf("/api/services/%s", esc) : xstrdup("/api/services/");
    json_auto_t *list = NULL;
    if (cli_get(c, path, JSON_ARRAY, &list, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON)
        cli_print_json(list);
    else
        cli_service_table(list, stdout);
    return 0;
}

/* Order of removal: instances not up first, then higher numbers first. */
static int victim_cmp(const void *a, const void *b)
{
    const long long *x = a, *y = b; /* {ready, number} */
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] > y[1] ? -1 : x[1] < y[1];
}

static int cmd_scale(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *timeout_arg = NULL;
    bool wait = false;
    cli_opt_t opts[] = {
        {"wait", 'w', NULL, NULL, &wait},
        {"timeout", 0, "S", &timeout_arg, NULL},
        CLI_OPT_END,
    };
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(scale_usage, stdout);
        return 0;
    }
    if (npos != 2)
        return oak_err_set(err, OAK_E_INVALID, "%s", scale_usage);
    long long want = 0, timeout_s = DEFAULT_TIMEOUT_S;
    if (cli_args_int(pos[1], "the number of instances", 0, MAX_INSTANCES, &want, err) < 0 ||
        (timeout_arg && cli_args_int(timeout_arg, "--timeout", 1, 86400, &timeout_s, err) < 0))
        return -1;
    json_auto_t *svc = NULL;
    if (get_service(c, pos[0], &svc, err) < 0)
        return -1;
    const char *sid = str_or(svc, "_id", pos[0]);
    json_t *list = json_object_get(svc, "instance_list");
    long long have = (long long)json_array_size(list);
    FILE *out = cli_progress(c);
    _cleanup_free_ char *base = xasprintf("/api/service/%s/instance", sid);
    if (want > have) {
        json_auto_t *body = json_pack("{s:I}", "replicas", (json_int_t)(want - have));
        json_auto_t *reply = NULL;
        if (cli_request(c, "POST", base, body, &reply, err) < 0)
            return -1;
        fprintf(out, "service %s: %lld -> %lld instance(s), added",
                str_or(svc, "service_name", sid), have, want);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(reply, "instances"), i, v)
            fprintf(out, " %lld", (long long)json_integer_value(v));
        fputc('\n', out);
    } else if (want < have) {
        size_t n = json_array_size(list), i;
        _cleanup_free_ long long *order = xcalloc(n, 2 * sizeof(long long));
        json_t *in;
        json_array_foreach(list, i, in)
        {
            order[2 * i] = cli_instance_ready(svc, in);
            order[2 * i + 1] = oak_json_int(in, "instance_number", -1);
        }
        qsort(order, n, 2 * sizeof(long long), victim_cmp);
        fprintf(out, "service %s: %lld -> %lld instance(s), removing",
                str_or(svc, "service_name", sid), have, want);
        for (long long k = 0; k < have - want; k++) {
            _cleanup_free_ char *path = xasprintf("%s/%lld", base, order[2 * k + 1]);
            if (cli_request(c, "DELETE", path, NULL, NULL, err) < 0) {
                fputc('\n', out);
                return -1;
            }
            fprintf(out, " %lld", order[2 * k + 1]);
            fflush(out);
        }
        fputc('\n', out);
    } else {
        fprintf(out, "service %s already has %lld instance(s)\n", str_or(svc, "service_name", sid),
                have);
    }
    json_auto_t *final = NULL;
    int rc = 0;
    if (wait) {
        json_auto_t *ids = json_pack("[s]", sid);
        rc = cli_wait_running(c, ids, timeout_s, &final, err);
    } else {
        json_t *s = NULL;
        if (get_service(c, sid, &s, err) < 0)
            return -1;
        final = json_pack("[o]", s);
    }
    if (c->output == CLI_OUT_JSON && json_array_size(final) == 1)
        cli_print_json(json_array_get(final, 0));
    return rc;
}

static int cmd_service_delete(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    return cli_args_delete(c, argc, argv,
                           "usage: oakctl service delete SERVICE_ID\n"
                           "Undeploys every instance of the service and deletes it.\n",
                           "/api/service/", "service", err);
}

int cli_service_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    if (argc < 1) {
        if (c->help) {
            fputs(service_usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "%s", service_usage);
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "list") || !strcmp(sub, "ls"))
        return cmd_service_list(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "scale"))
        return cmd_scale(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "delete") || !strcmp(sub, "rm"))
        return cmd_service_delete(c, argc - 1, argv + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command 'service %s'\n%s", sub, service_usage);
}

static int cmd_instance_list(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *service = NULL;
    cli_opt_t opts[] = {{"service", 's', "ID", &service, NULL}, CLI_OPT_END};
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs("usage: oakctl instance list [--service ID]\n"
              "-o json: an array of the instances, each with service_id and service_name.\n",
              stdout);
        return 0;
    }
    if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "usage: oakctl instance list [--service ID]");
    json_auto_t *services = NULL;
    if (service) {
        json_t *s = NULL;
        if (get_service(c, service, &s, err) < 0)
            return -1;
        services = json_pack("[o]", s);
    } else if (cli_get(c, "/api/services/", JSON_ARRAY, &services, err) < 0) {
        return -1;
    }
    json_auto_t *all = json_array();
    const char *headers[] = {"SERVICE_ID", "SERVICE", "N",      "STATUS", "CLUSTER",
                             "NODE",       "IP",      "DETAIL", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i, k;
    json_t *s, *in;
    json_array_foreach(services, i, s)
    {
        json_array_foreach(json_object_get(s, "instance_list"), k, in)
        {
            json_t *copy = json_deep_copy(in);
            json_object_set_new(copy, "service_id", json_string(str_or(s, "_id", "")));
            json_object_set_new(copy, "service_name", json_string(str_or(s, "service_name", "")));
            json_array_append_new(all, copy);
            char b[4][256];
            const char *cells[] = {oak_json_str(s, "_id"),
                                   oak_json_str(s, "service_name"),
                                   cli_fmt(in, "instance_number", b[0], sizeof(b[0])),
                                   oak_json_str(in, "status"),
                                   cli_fmt(in, "cluster_name", b[1], sizeof(b[1])),
                                   cli_fmt(in, "worker_id", b[2], sizeof(b[2])),
                                   cli_fmt(in, "host_ip", b[3], sizeof(b[3])),
                                   str_or(in, "status_detail", "-")};
            cli_table_add(t, cells, 8);
        }
    }
    if (c->output == CLI_OUT_JSON)
        cli_print_json(all);
    else
        cli_table_print(t, stdout);
    cli_table_free(t);
    return 0;
}

/* The complete lines of text ('\n'-terminated; a trailing fragment is not
 * yet a line) as offsets into text, with a hash each. */
typedef struct {
    char *text;
    size_t n;
    size_t *start, *len;
    uint64_t *hash;
} lines_t;

static void lines_free(lines_t *l)
{
    free(l->text);
    free(l->start);
    free(l->len);
    free(l->hash);
    *l = (lines_t){0};
}

static void lines_split(lines_t *l, const char *text)
{
    lines_free(l);
    l->text = xstrdup(text);
    size_t cap = 64;
    l->start = xmalloc(cap * sizeof(size_t));
    l->len = xmalloc(cap * sizeof(size_t));
    l->hash = xmalloc(cap * sizeof(uint64_t));
    const char *p = l->text, *nl;
    while ((nl = strchr(p, '\n'))) {
        if (l->n == cap) {
            cap *= 2;
            l->start = xrealloc(l->start, cap * sizeof(size_t));
            l->len = xrealloc(l->len, cap * sizeof(size_t));
            l->hash = xrealloc(l->hash, cap * sizeof(uint64_t));
        }
        uint64_t h = 1469598103934665603ULL; /* FNV-1a */
        for (const char *q = p; q < nl; q++)
            h = (h ^ (unsigned char)*q) * 1099511628211ULL;
        l->start[l->n] = (size_t)(p - l->text);
        l->len[l->n] = (size_t)(nl - p);
        l->hash[l->n] = h;
        l->n++;
        p = nl + 1;
    }
}

static bool line_eq(const lines_t *a, size_t i, const lines_t *b, size_t j)
{
    return a->hash[i] == b->hash[j] && a->len[i] == b->len[j] &&
           !memcmp(a->text + a->start[i], b->text + b->start[j], a->len[i]);
}

/* Where the lines already seen (prev, the last window fetched) end in the
 * new window cur: the largest e such that the lines of cur before e are
 * the last lines of prev (as many as both have); 0 when no such overlap
 * exists (the log was rotated or more than a window was written). Lines
 * from e on are new. Identical repeated lines are ambiguous: the largest
 * consistent e is taken, so such output may be under-reported, never
 * repeated. */
static size_t follow_new_lines(const lines_t *prev, const lines_t *cur)
{
    if (prev->n == 0)
        return 0;
    for (size_t e = cur->n; e > 0; e--) {
        size_t overlap = e < prev->n ? e : prev->n;
        bool ok = true;
        for (size_t k = 1; k <= overlap && ok; k++)
            ok = line_eq(prev, prev->n - k, cur, e - k);
        if (ok)
            return e;
    }
    return 0;
}

static void print_lines(const lines_t *l, size_t from)
{
    for (size_t i = from; i < l->n; i++) {
        fwrite(l->text + l->start[i], 1, l->len[i], stdout);
        fputc('\n', stdout);
    }
    fflush(stdout);
}

static int fetch_logs(cli_t *c, const char *sid, const char *num, long long tail, json_t **out,
                      oak_err_t *err)
{
    _cleanup_free_ char *path =
        xasprintf("/api/service/%s/instance/%s/logs?tail=%lld", sid, num, tail);
    return cli_get(c, path, JSON_OBJECT, out, err);
}

static int cmd_logs(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *tail_arg = NULL;
    bool follow = false;
    cli_opt_t opts[] = {
        {"tail", 'n', "LINES", &tail_arg, NULL},
        {"follow", 'f', NULL, NULL, &follow},
        CLI_OPT_END,
    };
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(logs_usage, stdout);
        return 0;
    }
    if (npos != 2)
        return oak_err_set(err, OAK_E_INVALID, "%s", logs_usage);
    long long tail = LOGS_DEFAULT_TAIL, num = 0;
    if (cli_args_int(pos[1], "the instance number", 0, 1000000000, &num, err) < 0 ||
        (tail_arg && cli_args_int(tail_arg, "--tail", 1, LOGS_MAX_TAIL, &tail, err) < 0))
        return -1;
    if (follow && c->output == CLI_OUT_JSON)
        return oak_err_set(err, OAK_E_INVALID, "-f prints text: it cannot be used with -o json");
    _cleanup_free_ char *sid = cli_escape(pos[0]);
    _cleanup_free_ char *n = xasprintf("%lld", num);
    json_auto_t *first = NULL;
    if (fetch_logs(c, sid, n, tail, &first, err) < 0)
        return -1;
    const char *text = str_or(first, "logs", "");
    if (!follow) {
        if (c->output == CLI_OUT_JSON) {
            cli_print_json(first);
        } else {
            fputs(text, stdout);
            if (*text && text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
        }
        return 0;
    }
    lines_t prev = {0}, cur = {0};
    lines_split(&prev, text);
    print_lines(&prev, 0);
    bool warned = false;
    for (;;) {
        sleep_ms(FOLLOW_POLL_MS);
        json_auto_t *j = NULL;
        if (fetch_logs(c, sid, n, LOGS_MAX_TAIL, &j, err) < 0) {
            /* a worker restarting, a cluster reconnecting: keep following */
            if (err->code == OAK_E_UNAUTH || err->code == OAK_E_FORBIDDEN ||
                err->code == OAK_E_NOT_FOUND || err->code == OAK_E_INVALID) {
                lines_free(&prev);
                lines_free(&cur);
                return -1;
            }
            if (!warned)
                fprintf(stderr, "oakctl: %s (still trying)\n", err->msg);
            warned = true;
            oak_err_clear(err);
            continue;
        }
        warned = false;
        lines_split(&cur, str_or(j, "logs", ""));
        print_lines(&cur, follow_new_lines(&prev, &cur));
        lines_t t = prev;
        prev = cur;
        cur = t;
    }
}

int cli_instance_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    if (argc < 1) {
        if (c->help) {
            fputs(instance_usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "%s", instance_usage);
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "list") || !strcmp(sub, "ls"))
        return cmd_instance_list(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "logs") || !strcmp(sub, "log"))
        return cmd_logs(c, argc - 1, argv + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command 'instance %s'\n%s", sub,
                       instance_usage);
}
