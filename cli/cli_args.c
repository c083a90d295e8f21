/* Option parsing for oakctl commands (see cli_args.h): a per-command table
 * plus the global options, in any order with the positional words. */
#include "cli/cli_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_client.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

static const char *const output_names[] = {"table", "json"};

/* Applies a global option; returns 1 if name was one, 0 if not, -1 on a
 * bad value. */
static int apply_global(cli_t *c, const char *name, char short_name, const char *value,
                        oak_err_t *err)
{
    if ((name && !strcmp(name, "api"))) {
        c->api_flag = value;
        return 1;
    }
    if ((name && !strcmp(name, "output")) || short_name == 'o') {
        for (size_t i = 0; i < sizeof(output_names) / sizeof(output_names[0]); i++) {
            if (!strcmp(value, output_names[i])) {
                c->output = (cli_output_t)i;
                return 1;
            }
        }
        return oak_err_set(err, OAK_E_INVALID, "-o must be table or json, not '%s'", value);
    }
    return 0;
}

static bool global_takes_value(const char *name, char short_name)
{
    return (name && (!strcmp(name, "api") || !strcmp(name, "output"))) || short_name == 'o';
}

static bool is_help(const char *name, char short_name)
{
    return (name && !strcmp(name, "help")) || short_name == 'h';
}

static const cli_opt_t *find_opt(const cli_opt_t *opts, const char *name, char short_name)
{
    for (const cli_opt_t *o = opts; o && o->name; o++)
        if ((name && !strcmp(o->name, name)) || (short_name && o->short_name == short_name))
            return o;
    return NULL;
}

int cli_args_parse(cli_t *c, const cli_opt_t *opts, int argc, char **argv, bool stop_at_positional,
                   char **pos, int *npos, oak_err_t *err)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (++i < argc)
                pos[(*npos)++] = argv[i];
            break;
        }
        if (a[0] != '-' || a[1] == 0) {
            if (stop_at_positional) {
                while (i < argc)
                    pos[(*npos)++] = argv[i++];
                break;
            }
            pos[(*npos)++] = a;
            continue;
        }
        char namebuf[64];
        const char *name = NULL, *inline_value = NULL;
        char short_name = 0;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t n = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            if (n >= sizeof(namebuf))
                return oak_err_set(err, OAK_E_INVALID, "unknown option %s", a);
            memcpy(namebuf, a + 2, n);
            namebuf[n] = 0;
            name = namebuf;
            inline_value = eq ? eq + 1 : NULL;
        } else {
            short_name = a[1];
            inline_value = a[2] ? a + 2 : NULL;
        }
        if (is_help(name, short_name)) {
            c->help = true;
            continue;
        }
        const cli_opt_t *o = find_opt(opts, name, short_name);
        bool global = !o && global_takes_value(name, short_name);
        if (!o && !global)
            return oak_err_set(err, OAK_E_INVALID, "unknown option %s", a);
        bool takes_value = global || o->arg;
        const char *value = inline_value;
        if (!takes_value) {
            if (inline_value)
                return oak_err_set(err, OAK_E_INVALID, "option %s takes no value", a);
            *o->flag = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc)
                return oak_err_set(err, OAK_E_INVALID, "option %s needs a value", a);
            value = argv[++i];
        }
        if (global) {
            if (apply_global(c, name, short_name, value, err) < 0)
                return -1;
        } else {
            *o->value = value;
        }
    }
    return 0;
}

int cli_args_words(cli_t *c, int argc, char **argv, int want, const char *usage, char **pos,
                   oak_err_t *err)
{
    int npos = 0;
    if (cli_args_parse(c, NULL, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(usage, stdout);
        return 1;
    }
    if (npos != want)
        return oak_err_set(err, OAK_E_INVALID, "%s", usage);
    return 0;
}

int cli_args_int(const char *s, const char *what, long long min, long long max, long long *out,
                 oak_err_t *err)
{
    char *end = NULL;
    errno = 0;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max)
        return oak_err_set(err, OAK_E_INVALID,
                           "%s must be an integer between %lld and %lld, not '%s'", what, min, max,
                           s ? s : "");
    *out = v;
    return 0;
}

int cli_args_delete(cli_t *c, int argc, char **argv, const char *usage, const char *prefix,
                    const char *what, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int rc = cli_args_words(c, argc, argv, 1, usage, pos, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    _cleanup_free_ char *id = cli_escape(pos[0]);
    _cleanup_free_ char *path = xasprintf("%s%s", prefix, id);
    json_auto_t *reply = NULL;
    if (cli_request(c, "DELETE", path, NULL, &reply, err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON)
        cli_print_json(reply);
    else
        printf("%s %s deleted\n", what, pos[0]);
    return 0;
}
