/* Applications: `app deploy` registers an SLA (POST /api/application/),
 * requests one instance of every service whose SLA has no `replicas`
 * (those with `replicas` get theirs from the server) and with --wait
 * follows them until they run; `app list`, `app show`, `app delete`. */
#include "cli/cli_app.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_args.h"
#include "cli/cli_service.h"
#include "cli/cli_table.h"
#include "cli/cli_wait.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define SLA_MAX           (16u * 1024u * 1024u)
#define DEFAULT_TIMEOUT_S 120

static const char app_usage[] =
    "usage: oakctl app COMMAND\n"
    "  deploy -f SLA.json [--wait] [--timeout S]\n"
    "                       register the applications of an SLA and start their services\n"
    "  list                 list applications\n"
    "  show ID              an application and its services\n"
    "  delete ID            undeploy and delete an application and its services\n";

static const char deploy_usage[] =
    "usage: oakctl app deploy -f SLA.json [--wait] [--timeout S]\n"
    "Registers the applications of an SLA v2.0 descriptor (FILE '-' is stdin) and\n"
    "requests one instance of each service without \"replicas\" in the SLA.\n"
    "  -f, --file FILE   the SLA\n"
    "  --wait            wait until every instance is RUNNING (COMPLETED for one_shot)\n"
    "  --timeout S       give up waiting after S seconds (default 120); exit 5\n";

static int read_file(const char *path, char **out, size_t *len, oak_err_t *err)
{
    _cleanup_fclose_ FILE *own = NULL;
    FILE *f = stdin;
    if (strcmp(path, "-") != 0) {
        own = fopen(path, "re");
        if (!own)
            return oak_err_errno(err, errno, "cannot open %s", path);
        f = own;
    }
    size_t cap = 64 * 1024, n = 0;
    _cleanup_free_ char *buf = xmalloc(cap + 1);
    for (;;) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            if (cap >= SLA_MAX)
                return oak_err_set(err, OAK_E_INVALID, "%s is larger than %u bytes", path, SLA_MAX);
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
    }
    if (ferror(f))
        return oak_err_errno(err, errno, "cannot read %s", path);
    buf[n] = 0;
    *len = n;
    *out = oak_steal(&buf);
    return 0;
}

/* Ids (object keys) of the applications the caller sees now. */
static int app_ids(cli_t *c, json_t **out, oak_err_t *err)
{
    json_auto_t *list = NULL;
    if (cli_get(c, "/api/applications/", JSON_ARRAY, &list, err) < 0)
        return -1;
    json_t *ids = json_object();
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a) if (oak_json_str(a, "_id"))
        json_object_set_new(ids, oak_json_str(a, "_id"), json_true());
    *out = ids;
    return 0;
}

/* Whether app (a server document) is one the SLA names; true when the SLA
 * could not be read locally (the server accepted it, so it is JSON now). */
static bool named_in_sla(const json_t *sla, const json_t *app)
{
    json_t *apps = json_object_get(sla, "applications");
    if (!json_is_array(apps))
        return true;
    size_t i;
    json_t *a;
    const char *n = oak_json_str(app, "application_name"),
               *ns = oak_json_str(app, "application_namespace");
    json_array_foreach(apps, i, a)
    {
        const char *an = oak_json_str(a, "application_name"),
                   *ans = oak_json_str(a, "application_namespace");
        if (n && ns && an && ans && !strcmp(n, an) && !strcmp(ns, ans))
            return true;
    }
    return false;
}

static int cmd_deploy(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *file = NULL, *timeout_arg = NULL;
    bool wait = false;
    cli_opt_t opts[] = {
        {"file", 'f', "FILE", &file, NULL},
        {"wait", 'w', NULL, NULL, &wait},
        {"timeout", 0, "S", &timeout_arg, NULL},
        CLI_OPT_END,
    };
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(deploy_usage, stdout);
        return 0;
    }
    if (!file && npos == 1)
        file = pos[0]; /* `oakctl app deploy sla.json` */
    else if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "unexpected argument '%s'\n%s", pos[0],
                           deploy_usage);
    if (!file)
        return oak_err_set(err, OAK_E_INVALID, "the SLA is missing: -f SLA.json\n%s", deploy_usage);
    long long timeout_s = DEFAULT_TIMEOUT_S;
    if (timeout_arg && cli_args_int(timeout_arg, "--timeout", 1, 86400, &timeout_s, err) < 0)
        return -1;
    _cleanup_free_ char *body = NULL;
    size_t len = 0;
    if (read_file(file, &body, &len, err) < 0)
        return -1;
    /* the server is the judge of the SLA; it is read here only to tell the
     * created applications from the existing ones */
    json_auto_t *sla = NULL;
    oak_json_parse(body, len, 0, &sla, NULL);

    json_auto_t *before = NULL;
    if (app_ids(c, &before, err) < 0)
        return -1;
    json_auto_t *reply = NULL;
    if (cli_request_raw(c, "POST", "/api/application/", body, len, false, &reply, err) < 0) {
        if (err->code == OAK_E_UNPROCESSABLE) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s was rejected: %s", file, err->msg);
            snprintf(err->msg, sizeof(err->msg), "%s", msg);
        }
        return -1;
    }
    FILE *out = cli_progress(c);
    json_auto_t *apps = json_array(), *service_ids = json_array(), *services = json_array();
    size_t i, k;
    json_t *a, *s;
    json_array_foreach(reply, i, a)
    {
        const char *id = oak_json_str(a, "_id");
        if (id && !json_object_get(before, id) && named_in_sla(sla, a))
            json_array_append(apps, a);
    }
    if (json_array_size(apps) == 0)
        return oak_err_set(err, OAK_E_INTERNAL,
                           "the server accepted the SLA but its reply lists no new application");
    json_array_foreach(apps, i, a)
    {
        const char *app_id = oak_json_str(a, "_id");
        _cleanup_free_ char *path = xasprintf("/api/services/%s", app_id);
        json_auto_t *svcs = NULL;
        if (cli_get(c, path, JSON_ARRAY, &svcs, err) < 0)
            return -1;
        fprintf(out, "application %s.%s created: %s\n", oak_json_str(a, "application_name"),
                oak_json_str(a, "application_namespace"), app_id);
        json_array_foreach(svcs, k, s)
        {
            const char *sid = oak_json_str(s, "_id");
            json_t *replicas = json_object_get(s, "replicas");
            long long n = json_is_integer(replicas) ? json_integer_value(replicas) : 1;
            if (!replicas) {
                _cleanup_free_ char *ipath = xasprintf("/api/service/%s/instance", sid);
                if (cli_request(c, "POST", ipath, NULL, NULL, err) < 0) {
                    char msg[sizeof(err->msg)];
                    snprintf(msg, sizeof(msg),
                             "application %s was created, but requesting an instance of "
                             "service %s failed: %s",
                             app_id, oak_json_str(s, "service_name"), err->msg);
                    snprintf(err->msg, sizeof(err->msg), "%s", msg);
                    return -1;
                }
            }
            fprintf(out, "  service %s: %s, %lld instance(s) requested\n",
                    oak_json_str(s, "service_name"), sid, n);
            json_array_append_new(service_ids, json_string(sid));
            json_array_append(services, s);
        }
    }
    fflush(out);
    int rc = 0;
    if (wait) {
        json_t *final = NULL;
        rc = cli_wait_running(c, service_ids, timeout_s, &final, err);
        if (final) {
            json_decref(services);
            services = final;
        }
    } else {
        /* the documents as they are now, with the requested instances */
        json_array_clear(services);
        json_t *id;
        json_array_foreach(service_ids, i, id)
        {
            _cleanup_free_ char *path = xasprintf("/api/service/%s", json_string_value(id));
            json_t *svc = NULL;
            if (cli_get(c, path, JSON_OBJECT, &svc, err) < 0)
                return -1;
            json_array_append_new(services, svc);
        }
    }
    if (c->output == CLI_OUT_JSON) {
        json_auto_t *doc = json_pack("{s:O, s:O}", "applications", apps, "services", services);
        cli_print_json(doc);
    }
    return rc;
}

static void app_table(const json_t *apps)
{
    const char *headers[] = {"ID", "NAME", "NAMESPACE", "SERVICES", "OWNER", "DESCRIPTION", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i;
    json_t *a;
    json_array_foreach(apps, i, a)
    {
        char b[5][256];
        snprintf(b[0], sizeof(b[0]), "%zu", json_array_size(json_object_get(a, "microservices")));
        const char *cells[] = {cli_fmt(a, "_id", b[1], sizeof(b[1])),
                               cli_fmt(a, "application_name", b[2], sizeof(b[2])),
                               cli_fmt(a, "application_namespace", b[3], sizeof(b[3])),
                               b[0],
                               oak_json_str(a, "userId"),
                               cli_fmt(a, "application_desc", b[4], sizeof(b[4]))};
        cli_table_add(t, cells, 6);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

static int cmd_list(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int rc = cli_args_words(c, argc, argv, 0, "usage: oakctl app list\n", pos, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    json_auto_t *apps = NULL;
    if (cli_get(c, "/api/applications/", JSON_ARRAY, &apps, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON)
        cli_print_json(apps);
    else
        app_table(apps);
    return 0;
}

static int cmd_show(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int rc = cli_args_words(c, argc, argv, 1,
                            "usage: oakctl app show ID\n"
                            "An application and its services (-o json: the application).\n",
                            pos, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    _cleanup_free_ char *id = cli_escape(pos[0]);
    _cleanup_free_ char *path = xasprintf("/api/application/%s", id);
    json_auto_t *app = NULL;
    if (cli_get(c, path, JSON_OBJECT, &app, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON) {
        cli_print_json(app);
        return 0;
    }
    _cleanup_free_ char *spath = xasprintf("/api/services/%s", id);
    json_auto_t *svcs = NULL;
    if (cli_get(c, spath, JSON_ARRAY, &svcs, err) < 0)
        return -1;
    char b[256];
    printf("Application:  %s\n", cli_fmt(app, "application_name", b, sizeof(b)));
    printf("Namespace:    %s\n", cli_fmt(app, "application_namespace", b, sizeof(b)));
    printf("ID:           %s\n", cli_fmt(app, "_id", b, sizeof(b)));
    printf("Owner:        %s\n", cli_fmt(app, "userId", b, sizeof(b)));
    printf("Description:  %s\n", cli_fmt(app, "application_desc", b, sizeof(b)));
    printf("Services:\n");
    cli_service_table(svcs, stdout);
    return 0;
}

static int cmd_delete(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    return cli_args_delete(c, argc, argv,
                           "usage: oakctl app delete ID\n"
                           "Undeploys every instance, deletes the application and its "
                           "services.\n",
                           "/api/application/", "application", err);
}

int cli_app_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    if (argc < 1) {
        if (c->help) {
            fputs(app_usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "%s", app_usage);
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "deploy") || !strcmp(sub, "create"))
        return cmd_deploy(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "list") || !strcmp(sub, "ls"))
        return cmd_list(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "show") || !strcmp(sub, "get"))
        return cmd_show(c, argc - 1, argv + 1, err);
    if (!strcmp(sub, "delete") || !strcmp(sub, "rm"))
        return cmd_delete(c, argc - 1, argv + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command 'app %s'\n%s", sub, app_usage);
}
