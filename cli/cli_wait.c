/* --wait: polls GET /api/service/<id> every half second, prints each
 * instance whose status or status_detail changed, and decides when to
 * stop: everything up, the deadline, or failures that have settled (the
 * cluster restarts FAILED and DEAD instances up to its max_restarts, so a
 * FAILED seen once is not final; one that stays unchanged for SETTLE_S is).
 * Timing uses CLOCK_MONOTONIC. */
#include "cli/cli_wait.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli_table.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define POLL_MS  500
#define SETTLE_S 10.0

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *str_or(const json_t *o, const char *key, const char *def)
{
    const char *s = oak_json_str(o, key);
    return s && *s ? s : def;
}

bool cli_instance_ready(const json_t *svc, const json_t *instance)
{
    const char *st = str_or(instance, "status", "");
    return !strcmp(st, "RUNNING") ||
           (!strcmp(st, "COMPLETED") && oak_json_bool(svc, "one_shot", false));
}

static bool is_final_failure(const json_t *svc, const json_t *instance)
{
    const char *st = str_or(instance, "status", "");
    return !strcmp(st, "FAILED") || !strcmp(st, "DEAD") ||
           (!strcmp(st, "COMPLETED") && !oak_json_bool(svc, "one_shot", false));
}

/* Prints the instances that are not up, on stderr. */
static void print_not_up(const json_t *services)
{
    const char *headers[] = {"SERVICE", "INSTANCE", "STATUS", "DETAIL", NULL};
    cli_table_t *t = cli_table_new(headers);
    size_t i, k;
    json_t *svc, *in;
    json_array_foreach(services, i, svc)
    {
        json_array_foreach(json_object_get(svc, "instance_list"), k, in)
        {
            if (cli_instance_ready(svc, in))
                continue;
            char num[32];
            const char *cells[] = {str_or(svc, "service_name", "?"),
                                   cli_fmt(in, "instance_number", num, sizeof(num)),
                                   str_or(in, "status", "?"), str_or(in, "status_detail", "-")};
            cli_table_add(t, cells, 4);
        }
    }
    cli_table_print(t, stderr);
    cli_table_free(t);
}

int cli_wait_running(cli_t *c, const json_t *service_ids, long long timeout_s, json_t **final,
                     oak_err_t *err)
{
    FILE *out = cli_progress(c);
    double start = now_s(), last_change = start;
    json_auto_t *seen = json_object(); /* "<service id>/<n>" -> "status\ndetail" */
    json_auto_t *services = NULL;
    if (final)
        *final = NULL;
    for (;;) {
        json_decref(services);
        services = json_array();
        size_t i, k;
        json_t *id, *in;
        json_array_foreach(service_ids, i, id)
        {
            _cleanup_free_ char *path = xasprintf("/api/service/%s", json_string_value(id));
            json_t *svc = NULL;
            if (cli_get(c, path, JSON_OBJECT, &svc, err) < 0)
                return -1;
            json_array_append_new(services, svc);
        }
        double t = now_s();
        size_t total = 0, up = 0;
        bool all_failed_final = true;
        json_t *svc;
        json_array_foreach(services, i, svc)
        {
            json_array_foreach(json_object_get(svc, "instance_list"), k, in)
            {
                long long n = oak_json_int(in, "instance_number", -1);
                const char *st = str_or(in, "status", "?"), *det = str_or(in, "status_detail", "");
                _cleanup_free_ char *key = xasprintf("%s/%lld", str_or(svc, "_id", "?"), n);
                _cleanup_free_ char *sig = xasprintf("%s\n%s", st, det);
                const char *old = oak_json_str(seen, key);
                if (!old || strcmp(old, sig) != 0) {
                    fprintf(out, "[%4.0fs] %s instance %lld: %s%s%s\n", t - start,
                            str_or(svc, "service_name", "?"), n, st, *det ? " - " : "", det);
                    fflush(out);
                    json_object_set_new(seen, key, json_string(sig));
                    last_change = t;
                }
                total++;
                if (cli_instance_ready(svc, in))
                    up++;
                else if (!is_final_failure(svc, in))
                    all_failed_final = false;
            }
        }
        if (up == total) {
            fprintf(out, "[%4.0fs] %zu of %zu instance(s) up\n", t - start, up, total);
            if (final)
                *final = oak_steal(&services);
            return 0;
        }
        bool settled = all_failed_final && t - last_change >= SETTLE_S;
        if (settled || t - start >= (double)timeout_s) {
            print_not_up(services);
            if (final)
                *final = oak_steal(&services);
            if (settled)
                return oak_err_set(err, OAK_E_TIMEOUT,
                                   "gave up after %.0f s: %zu of %zu instance(s) failed and are "
                                   "not being restarted (listed above)",
                                   t - start, total - up, total);
            return oak_err_set(err, OAK_E_TIMEOUT,
                               "timed out after %lld s: %zu of %zu instance(s) are not running "
                               "(listed above); --timeout S waits longer",
                               timeout_s, total - up, total);
        }
        sleep_ms(POLL_MS);
    }
}
