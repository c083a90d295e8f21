/* Table-driven configuration: defaults, JSON file, environment, flags. */
#include "lib/oak_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

static oak_cfg_opt_t *find(oak_cfg_opt_t *opts, const char *name)
{
    for (oak_cfg_opt_t *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static void flag_name(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s", name);
    for (char *p = buf; *p; p++)
        if (*p == '_')
            *p = '-';
}

static int set_value(oak_cfg_opt_t *o, const char *val, const char *source, oak_err_t *err)
{
    switch (o->type) {
    case OAK_CFG_STR:
        free(o->str);
        o->str = val ? xstrdup(val) : NULL;
        break;
    case OAK_CFG_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || !end || end == val || *end)
            return oak_err_set(err, OAK_E_INVALID, "option %s (%s): '%s' is not an integer",
                               o->name, source, val);
        if (o->min <= o->max && (v < o->min || v > o->max))
            return oak_err_set(err, OAK_E_INVALID,
                               "option %s (%s): %lld is outside the range %lld..%lld", o->name,
                               source, v, o->min, o->max);
        o->num = v;
        break;
    }
    case OAK_CFG_BOOL:
        if (!strcasecmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
            !strcasecmp(val, "on"))
            o->flag = true;
        else if (!strcasecmp(val, "0") || !strcasecmp(val, "false") || !strcasecmp(val, "no") ||
                 !strcasecmp(val, "off"))
            o->flag = false;
        else
            return oak_err_set(err, OAK_E_INVALID, "option %s (%s): '%s' is not a boolean", o->name,
                               source, val);
        break;
    }
    o->source = source;
    return 0;
}

static int load_file(oak_cfg_opt_t *opts, const char *path, oak_err_t *err)
{
    json_t *root = NULL;
    if (oak_json_load_file(path, 1 << 20, &root, err) < 0)
        return -1;
    json_auto_t *j = root;
    if (!json_is_object(j))
        return oak_err_set(err, OAK_E_INVALID, "%s: a JSON object is expected", path);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        oak_cfg_opt_t *o = find(opts, key);
        if (!o)
            return oak_err_set(err, OAK_E_INVALID, "%s: unknown option '%s'", path, key);
        char buf[64];
        const char *val = NULL;
        if (json_is_string(v) && o->type == OAK_CFG_STR)
            val = json_string_value(v);
        else if (json_is_integer(v) && o->type == OAK_CFG_INT) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
            val = buf;
        } else if (json_is_boolean(v) && o->type == OAK_CFG_BOOL)
            val = json_is_true(v) ? "true" : "false";
        else
            return oak_err_set(err, OAK_E_INVALID, "%s: option '%s' has the wrong type", path, key);
        if (set_value(o, val, "file", err) < 0)
            return -1;
    }
    return 0;
}

static void usage(const oak_cfg_opt_t *opts, const char *prog, FILE *out)
{
    fprintf(out, "Usage: %s [--config FILE] [OPTIONS]\n\nOptions:\n", prog);
    for (const oak_cfg_opt_t *o = opts; o->name; o++) {
        char fl[64];
        flag_name(o->name, fl, sizeof(fl));
        fprintf(out, "  --%-22s %s", fl, o->help ? o->help : "");
        if (o->def)
            fprintf(out, " (default: %s)", o->def);
        if (o->env)
            fprintf(out, " [env: %s]", o->env);
        fputc('\n', out);
    }
    fprintf(out, "  --%-22s %s\n  --%-22s %s\n  --%-22s %s\n", "config FILE",
            "JSON file with any of the options above", "dump-config",
            "print the effective configuration and exit", "help", "print this help and exit");
}

int oak_config_load(oak_cfg_opt_t *opts, const char *prog, const char *cfg_env, int argc,
                    char **argv, FILE *out, int *rest_argc, char ***rest_argv, oak_err_t *err)
{
    const char *cfg_file = cfg_env ? getenv(cfg_env) : NULL;
    bool dump = false;
    int nrest = 0;

    for (oak_cfg_opt_t *o = opts; o->name; o++) {
        o->str = NULL;
        o->num = 0;
        o->flag = false;
        o->source = "default";
        if (o->def && set_value(o, o->def, "default", err) < 0)
            return -1;
    }
    /* first pass: --config, --help, --dump-config */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(opts, prog, out);
            return OAK_CFG_EXIT_OK;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return oak_err_set(err, OAK_E_INVALID, "--config needs a file name");
            cfg_file = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            cfg_file = argv[i] + 9;
        } else if (!strcmp(argv[i], "--dump-config")) {
            dump = true;
        }
    }
    if (cfg_file && *cfg_file && load_file(opts, cfg_file, err) < 0)
        return -1;
    for (oak_cfg_opt_t *o = opts; o->name; o++) {
        if (!o->env)
            continue;
        _cleanup_free_ char *names = xstrdup(o->env);
        char *save = NULL;
        for (char *n = strtok_r(names, "|", &save); n; n = strtok_r(NULL, "|", &save)) {
            const char *v = getenv(n);
            if (v && *v) {
                if (set_value(o, v, "environment", err) < 0)
                    return -1;
                break;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9) || !strcmp(a, "--dump-config"))
            continue;
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (rest_argv) {
                argv[1 + nrest++] = argv[i];
                continue;
            }
            return oak_err_set(err, OAK_E_INVALID, "unexpected argument '%s'", a);
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof(name))
            return oak_err_set(err, OAK_E_INVALID, "unknown option '%s'", a);
        memcpy(name, a + 2, len);
        name[len] = 0;
        for (char *p = name; *p; p++)
            if (*p == '-')
                *p = '_';
        oak_cfg_opt_t *o = find(opts, name);
        if (!o)
            return oak_err_set(err, OAK_E_INVALID, "unknown option '%s' (see --help)", a);
        const char *val = eq ? eq + 1 : NULL;
        if (!val && o->type == OAK_CFG_BOOL)
            val = "true";
        if (!val) {
            if (i + 1 >= argc)
                return oak_err_set(err, OAK_E_INVALID, "option '%s' needs a value", a);
            val = argv[++i];
        }
        if (set_value(o, val, "flag", err) < 0)
            return -1;
    }
    if (rest_argc)
        *rest_argc = nrest;
    if (rest_argv)
        *rest_argv = argv + 1;
    if (dump) {
        oak_config_dump(opts, out);
        return OAK_CFG_EXIT_OK;
    }
    return OAK_CFG_RUN;
}

const char *oak_config_str(const oak_cfg_opt_t *opts, const char *name)
{
    const oak_cfg_opt_t *o = find((oak_cfg_opt_t *)opts, name);
    return o ? o->str : NULL;
}

long long oak_config_int(const oak_cfg_opt_t *opts, const char *name)
{
    const oak_cfg_opt_t *o = find((oak_cfg_opt_t *)opts, name);
    return o ? o->num : 0;
}

bool oak_config_bool(const oak_cfg_opt_t *opts, const char *name)
{
    const oak_cfg_opt_t *o = find((oak_cfg_opt_t *)opts, name);
    return o ? o->flag : false;
}

void oak_config_dump(const oak_cfg_opt_t *opts, FILE *out)
{
    json_auto_t *j = json_object();
    for (const oak_cfg_opt_t *o = opts; o->name; o++) {
        bool secret =
            strstr(o->name, "password") || strstr(o->name, "secret") || strstr(o->name, "token");
        if (o->type == OAK_CFG_STR)
            json_object_set_new(j, o->name,
                                o->str ? json_string(secret ? "***" : o->str) : json_null());
        else if (o->type == OAK_CFG_INT)
            json_object_set_new(j, o->name, json_integer(o->num));
        else
            json_object_set_new(j, o->name, json_boolean(o->flag));
    }
    json_dumpf(j, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
}

void oak_config_free(oak_cfg_opt_t *opts)
{
    for (oak_cfg_opt_t *o = opts; o->name; o++) {
        free(o->str);
        o->str = NULL;
    }
}
