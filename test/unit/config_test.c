/* Unit tests for lib/oak_config: defaults, JSON file, environment and flag
 * precedence, flag syntaxes, booleans, range/type errors naming the option,
 * unknown flags and file keys, --help / --dump-config and positional
 * arguments. Each test works on a fresh copy of one option table and
 * clears the environment variables it uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_config.h"

#define OPT(n, t, d, lo, hi, e, h)                                                                 \
    {                                                                                              \
        .name = (n), .type = (t), .def = (d), .min = (lo), .max = (hi), .env = (e), .help = (h)    \
    }

static const oak_cfg_opt_t template[] = {
    OPT("api_port", OAK_CFG_INT, "10000", 1, 65535, "OAKT_API_PORT|OAKT_PORT", "REST API port"),
    OPT("name", OAK_CFG_STR, "root", 0, 0, "OAKT_NAME", "installation name"),
    OPT("data_dir", OAK_CFG_STR, NULL, 0, 0, NULL, "state directory"),
    OPT("verbose", OAK_CFG_BOOL, "false", 0, 0, "OAKT_VERBOSE", "debug logging"),
    OPT("admin_password", OAK_CFG_STR, NULL, 0, 0, "OAKT_ADMIN_PASSWORD", "initial password"),
    OPT("offset", OAK_CFG_INT, "0", 1, 0, NULL, "any integer (no range)"),
    OAK_CFG_END,
};
#define NOPTS (sizeof(template) / sizeof(template[0]))

static const char *envs[] = {"OAKT_API_PORT", "OAKT_PORT",           "OAKT_NAME",
                             "OAKT_VERBOSE",  "OAKT_ADMIN_PASSWORD", "OAKT_CONFIG"};

typedef struct {
    oak_cfg_opt_t opts[NOPTS];
    char *out_buf;
    size_t out_len;
    FILE *out;
    char cfg_path[64];
    int rest_argc;
    char **rest_argv;
    oak_err_t err;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = xcalloc(1, sizeof(*f));
    memcpy(f->opts, template, sizeof(template));
    f->out = open_memstream(&f->out_buf, &f->out_len);
    snprintf(f->cfg_path, sizeof(f->cfg_path), "/tmp/oak-config-test-XXXXXX");
    int fd = mkstemp(f->cfg_path);
    if (fd < 0 || !f->out)
        return -1;
    close(fd);
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++)
        unsetenv(envs[i]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    oak_config_free(f->opts);
    fclose(f->out);
    free(f->out_buf);
    unlink(f->cfg_path);
    oak_err_clear(&f->err);
    free(f);
    for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++)
        unsetenv(envs[i]);
    return 0;
}

static void write_cfg(fixture_t *f, const char *json)
{
    FILE *fp = fopen(f->cfg_path, "w");
    assert_non_null(fp);
    fputs(json, fp);
    fclose(fp);
}

/* Runs oak_config_load over a NULL-terminated argument list (program name
 * first), allowing positional arguments when rest is true. */
static int load_args(fixture_t *f, bool rest, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    oak_config_free(f->opts);
    oak_err_clear(&f->err);
    return oak_config_load(f->opts, "oak-test", "OAKT_CONFIG", argc, argv, f->out, &f->rest_argc,
                           rest ? &f->rest_argv : NULL, &f->err);
}

#define LOAD(f, rest, ...) load_args((f), (rest), (char *[]){"oak-test", __VA_ARGS__, NULL})
#define LOAD0(f)           load_args((f), false, (char *[]){"oak-test", NULL})

static const oak_cfg_opt_t *opt(fixture_t *f, const char *name)
{
    for (const oak_cfg_opt_t *o = f->opts; o->name; o++)
        if (!strcmp(o->name, name))
            return o;
    fail_msg("no option %s", name);
    return NULL;
}

static void expect_error(fixture_t *f, int rc, const char *part1, const char *part2)
{
    assert_int_equal(rc, -1);
    assert_int_equal(f->err.code, OAK_E_INVALID);
    if (!strstr(f->err.msg, part1) || (part2 && !strstr(f->err.msg, part2)))
        fail_msg("error '%s' should name '%s'%s%s", f->err.msg, part1, part2 ? " and " : "",
                 part2 ? part2 : "");
}

static void test_defaults(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(LOAD0(f), OAK_CFG_RUN);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 10000);
    assert_string_equal(oak_config_str(f->opts, "name"), "root");
    assert_null(oak_config_str(f->opts, "data_dir"));
    assert_false(oak_config_bool(f->opts, "verbose"));
    assert_int_equal(oak_config_int(f->opts, "offset"), 0);
    assert_string_equal(opt(f, "api_port")->source, "default");
    /* unknown names */
    assert_null(oak_config_str(f->opts, "nope"));
    assert_int_equal(oak_config_int(f->opts, "nope"), 0);
    assert_false(oak_config_bool(f->opts, "nope"));
    assert_int_equal(f->rest_argc, 0);
    (void)state;
}

static void test_file(void **state)
{
    fixture_t *f = *state;
    write_cfg(f, "{\"api_port\": 8080, \"name\": \"edge\", \"verbose\": true, "
                 "\"data_dir\": \"/var/lib/oak\", \"offset\": -5}");
    assert_int_equal(LOAD(f, false, "--config", f->cfg_path), OAK_CFG_RUN);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 8080);
    assert_string_equal(oak_config_str(f->opts, "name"), "edge");
    assert_string_equal(oak_config_str(f->opts, "data_dir"), "/var/lib/oak");
    assert_true(oak_config_bool(f->opts, "verbose"));
    assert_int_equal(oak_config_int(f->opts, "offset"), -5);
    assert_string_equal(opt(f, "name")->source, "file");
    assert_string_equal(opt(f, "admin_password")->source, "default");

    /* --config=FILE and the cfg_env variable name the file too */
    char *arg = xasprintf("--config=%s", f->cfg_path);
    assert_int_equal(LOAD(f, false, arg), OAK_CFG_RUN);
    free(arg);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 8080);
    setenv("OAKT_CONFIG", f->cfg_path, 1);
    assert_int_equal(LOAD0(f), OAK_CFG_RUN);
    assert_string_equal(oak_config_str(f->opts, "name"), "edge");
    (void)state;
}

static void test_file_errors(void **state)
{
    fixture_t *f = *state;
    write_cfg(f, "{\"api_port\": 8080, \"colour\": \"blue\"}");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), "colour", f->cfg_path);
    write_cfg(f, "{\"api_port\": \"8080\"}");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), "api_port", NULL);
    write_cfg(f, "{\"verbose\": 1}");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), "verbose", NULL);
    write_cfg(f, "{\"api_port\": 0}");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), "api_port", "1..65535");
    assert_non_null(strstr(f->err.msg, "file"));
    write_cfg(f, "[1, 2]");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), "object", NULL);
    write_cfg(f, "{\"api_port\": ");
    expect_error(f, LOAD(f, false, "--config", f->cfg_path), f->cfg_path, "line");
    assert_int_equal(f->err.code, OAK_E_INVALID);
    assert_int_equal(LOAD(f, false, "--config", "/nonexistent/oak.json"), -1);
    assert_int_equal(f->err.code, OAK_E_IO);
    expect_error(f, LOAD(f, false, "--config"), "--config", NULL);
    (void)state;
}

static void test_env(void **state)
{
    fixture_t *f = *state;
    write_cfg(f, "{\"api_port\": 8080, \"name\": \"edge\"}");
    setenv("OAKT_PORT", "9090", 1); /* second name of the list */
    setenv("OAKT_NAME", "fromenv", 1);
    setenv("OAKT_VERBOSE", "yes", 1);
    assert_int_equal(LOAD(f, false, "--config", f->cfg_path), OAK_CFG_RUN);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 9090);
    assert_string_equal(oak_config_str(f->opts, "name"), "fromenv");
    assert_true(oak_config_bool(f->opts, "verbose"));
    assert_string_equal(opt(f, "api_port")->source, "environment");

    /* the first name in the list wins; an empty variable counts as unset */
    setenv("OAKT_API_PORT", "7070", 1);
    setenv("OAKT_NAME", "", 1);
    setenv("OAKT_VERBOSE", "off", 1);
    assert_int_equal(LOAD(f, false, "--config", f->cfg_path), OAK_CFG_RUN);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 7070);
    assert_string_equal(oak_config_str(f->opts, "name"), "edge");
    assert_false(oak_config_bool(f->opts, "verbose"));

    setenv("OAKT_API_PORT", "70000", 1);
    expect_error(f, LOAD0(f), "api_port", "environment");
    setenv("OAKT_API_PORT", "80x", 1);
    expect_error(f, LOAD0(f), "api_port", "not an integer");
    unsetenv("OAKT_API_PORT");
    setenv("OAKT_VERBOSE", "maybe", 1);
    expect_error(f, LOAD0(f), "verbose", "not a boolean");
    (void)state;
}

static void test_flags(void **state)
{
    fixture_t *f = *state;
    write_cfg(f, "{\"api_port\": 8080, \"name\": \"edge\"}");
    setenv("OAKT_API_PORT", "7070", 1);
    setenv("OAKT_NAME", "fromenv", 1);
    assert_int_equal(LOAD(f, false, "--config", f->cfg_path, "--api-port", "6060",
                          "--name=fromflag", "--data_dir", "/srv", "--offset=-3"),
                     OAK_CFG_RUN);
    assert_int_equal(oak_config_int(f->opts, "api_port"), 6060);
    assert_string_equal(oak_config_str(f->opts, "name"), "fromflag");
    assert_string_equal(oak_config_str(f->opts, "data_dir"), "/srv");
    assert_int_equal(oak_config_int(f->opts, "offset"), -3);
    assert_string_equal(opt(f, "api_port")->source, "flag");
    /* the last occurrence wins; a value may be empty or start with '-' */
    assert_int_equal(LOAD(f, false, "--name", "a", "--name", "b", "--data-dir=", "--offset", "-7"),
                     OAK_CFG_RUN);
    assert_string_equal(oak_config_str(f->opts, "name"), "b");
    assert_string_equal(oak_config_str(f->opts, "data_dir"), "");
    assert_int_equal(oak_config_int(f->opts, "offset"), -7);
    (void)state;
}

static void test_bool_flags(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(LOAD(f, false, "--verbose"), OAK_CFG_RUN);
    assert_true(oak_config_bool(f->opts, "verbose"));
    static const char *truthy[] = {"--verbose=true", "--verbose=1", "--verbose=YES",
                                   "--verbose=on"};
    static const char *falsy[] = {"--verbose=false", "--verbose=0", "--verbose=no",
                                  "--verbose=Off"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(LOAD(f, false, (char *)truthy[i]), OAK_CFG_RUN);
        assert_true(oak_config_bool(f->opts, "verbose"));
        assert_int_equal(LOAD(f, false, (char *)falsy[i]), OAK_CFG_RUN);
        assert_false(oak_config_bool(f->opts, "verbose"));
    }
    setenv("OAKT_VERBOSE", "true", 1);
    assert_int_equal(LOAD(f, false, "--verbose=false"), OAK_CFG_RUN);
    assert_false(oak_config_bool(f->opts, "verbose"));
    expect_error(f, LOAD(f, false, "--verbose=2"), "verbose", "not a boolean");
    (void)state;
}

static void test_flag_errors(void **state)
{
    fixture_t *f = *state;
    expect_error(f, LOAD(f, false, "--api-port", "0"), "api_port", "1..65535");
    expect_error(f, LOAD(f, false, "--api-port=65536"), "api_port", "65536");
    assert_non_null(strstr(f->err.msg, "flag"));
    expect_error(f, LOAD(f, false, "--api-port", "12ab"), "api_port", "not an integer");
    expect_error(f, LOAD(f, false, "--api-port="), "api_port", "not an integer");
    expect_error(f, LOAD(f, false, "--api-port", "99999999999999999999"), "api_port",
                 "not an integer");
    expect_error(f, LOAD(f, false, "--colour", "blue"), "--colour", NULL);
    expect_error(f, LOAD(f, false, "--colour=blue"), "--colour", NULL);
    expect_error(f, LOAD(f, false, "--name"), "--name", "needs a value");
    expect_error(f, LOAD(f, false, "stray"), "stray", NULL);
    char *longname = xmalloc(200);
    memset(longname, 'x', 199);
    memcpy(longname, "--", 2);
    longname[199] = '\0';
    expect_error(f, LOAD(f, false, longname), "unknown option", NULL);
    free(longname);
    assert_int_equal(f->err.code, OAK_E_INVALID);
    (void)state;
}

static void test_help(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(LOAD(f, false, "--api-port", "5", "--help"), OAK_CFG_EXIT_OK);
    fflush(f->out);
    assert_non_null(strstr(f->out_buf, "Usage: oak-test"));
    assert_non_null(strstr(f->out_buf, "--api-port"));
    assert_non_null(strstr(f->out_buf, "REST API port"));
    assert_non_null(strstr(f->out_buf, "(default: 10000)"));
    assert_non_null(strstr(f->out_buf, "[env: OAKT_API_PORT|OAKT_PORT]"));
    assert_non_null(strstr(f->out_buf, "--data-dir"));
    assert_non_null(strstr(f->out_buf, "--dump-config"));
    /* -h too, and even after an unknown flag */
    assert_int_equal(LOAD(f, false, "--colour", "-h"), OAK_CFG_EXIT_OK);
    (void)state;
}

static void test_dump_config(void **state)
{
    fixture_t *f = *state;
    setenv("OAKT_ADMIN_PASSWORD", "hunter2", 1);
    assert_int_equal(LOAD(f, false, "--dump-config", "--api-port=1234"), OAK_CFG_EXIT_OK);
    fflush(f->out);
    json_error_t jerr;
    json_auto_t *j = json_loads(f->out_buf, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "api_port")), 1234);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "root");
    assert_true(json_is_null(json_object_get(j, "data_dir")));
    assert_true(json_is_false(json_object_get(j, "verbose")));
    assert_string_equal(json_string_value(json_object_get(j, "admin_password")), "***");
    assert_null(strstr(f->out_buf, "hunter2"));
    /* the value itself is still available to the program */
    assert_string_equal(oak_config_str(f->opts, "admin_password"), "hunter2");
    /* errors are still reported with --dump-config */
    expect_error(f, LOAD(f, false, "--dump-config", "--api-port=0"), "api_port", NULL);
    (void)state;
}

static void test_positional(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(LOAD(f, true, "deploy", "--name", "x", "app.json", "--verbose", "-"),
                     OAK_CFG_RUN);
    assert_int_equal(f->rest_argc, 3);
    assert_string_equal(f->rest_argv[0], "deploy");
    assert_string_equal(f->rest_argv[1], "app.json");
    assert_string_equal(f->rest_argv[2], "-");
    assert_string_equal(oak_config_str(f->opts, "name"), "x");
    assert_true(oak_config_bool(f->opts, "verbose"));
    assert_int_equal(LOAD(f, true, "--name", "y"), OAK_CFG_RUN);
    assert_int_equal(f->rest_argc, 0);
    /* rejected when the caller takes none */
    expect_error(f, LOAD(f, false, "deploy"), "deploy", NULL);
    (void)state;
}

static void test_bad_default(void **state)
{
    fixture_t *f = *state;
    oak_config_free(f->opts);
    f->opts[0].def = "not-a-number";
    expect_error(f, LOAD0(f), "api_port", "default");
    (void)state;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),    T(test_file),       T(test_file_errors), T(test_env),
        T(test_flags),       T(test_bool_flags), T(test_flag_errors), T(test_help),
        T(test_dump_config), T(test_positional), T(test_bad_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
