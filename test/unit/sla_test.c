/* Unit tests for root_orchestrator/sla: every descriptor in the shared and
 * local valid/ folders is accepted; every one in the invalid/ folders is
 * rejected with exactly the field paths listed in the table below (a file
 * without an entry fails the test); limits, for_service rules, the error
 * cap and the parse errors (400/413) are checked on generated documents.
 * Runs with cwd = repo root; the shared folder comes from OAK_SHARED_DIR
 * (default ../shared). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "root_orchestrator/sla.h"

#define MAX_BODY (1u << 20)
#define MS       "applications[0].microservices[0]."
#define MS1      "applications[0].microservices[1]."

typedef struct {
    bool shared; /* in $OAK_SHARED_DIR/testdata/sla/invalid, else test/data/sla/invalid */
    const char *file;
    oak_code_t code;
    const char *fields[48]; /* exactly the reported paths, NULL-terminated */
} invalid_case_t;

static const invalid_case_t invalid_cases[] = {
    {true,
     "bad-name.json",
     OAK_E_UNPROCESSABLE,
     {"applications[0].application_name", MS "microservice_name"}},
    {true, "wrong-types.json", OAK_E_UNPROCESSABLE, {MS "memory", MS "vcpus", MS "cmd"}},
    {true, "missing-code.json", OAK_E_UNPROCESSABLE, {MS "code"}},
    /* its applications array is also empty */
    {true, "old-version.json", OAK_E_UNPROCESSABLE, {"sla_version", "applications"}},
    {true, "truncated.json", OAK_E_INVALID, {NULL}},

    {false,
     "top-level.json",
     OAK_E_UNPROCESSABLE,
     {"sla_version", "customerID", "args[1]", "applications"}},
    {false, "not-an-object.json", OAK_E_UNPROCESSABLE, {"$"}},
    {false, "duplicate-key.json", OAK_E_INVALID, {NULL}},
    {false,
     "application.json",
     OAK_E_UNPROCESSABLE,
     {"applications[0].applicationID", "applications[0].application_name",
      "applications[0].application_namespace", "applications[0].application_desc",
      "applications[0].microservices", "applications[1].microservices", "applications[2]"}},
    {false,
     "microservice-types.json",
     OAK_E_UNPROCESSABLE,
     {MS "microserviceID",
      MS "virtualization",
      MS "code",
      MS "memory",
      MS "vcpus",
      MS "vgpus",
      MS "vtpus",
      MS "bandwidth_in",
      MS "bandwidth_out",
      MS "storage",
      MS "replicas",
      MS "one_shot",
      MS "privileged",
      MS "cmd[1]",
      MS "args",
      MS "arch",
      MS "environment[0]",
      MS "environment[1]",
      MS1 "virtualization",
      MS1 "code",
      MS1 "replicas",
      MS1 "port",
      "applications[0].microservices[2]"}},
    {false,
     "duplicate-names.json",
     OAK_E_UNPROCESSABLE,
     {"applications[0].microservices[2].microservice_name", "applications[1].application_name"}},
    {false,
     "addresses.json",
     OAK_E_UNPROCESSABLE,
     {MS "addresses.rr_ip", MS "addresses.closest_ip", MS "addresses.rr_ip_v6",
      MS "addresses.closest_ip_v6", MS1 "addresses.rr_ip", MS1 "addresses.closest_ip",
      MS1 "addresses.rr_ip_v6", "applications[0].microservices[2].addresses"}},
    {false,
     "ports.json",
     OAK_E_UNPROCESSABLE,
     {MS "port", MS1 "port", "applications[0].microservices[2].port",
      "applications[0].microservices[3].port", "applications[0].microservices[4].port"}},
    {false,
     "constraints.json",
     OAK_E_UNPROCESSABLE,
     {MS "constraints[0].type", MS "constraints[1].type", MS "constraints[2]", MS "constraints[3]",
      MS "constraints[4].cluster", MS "constraints[5].allowed", MS "constraints[6].allowed",
      MS "constraints[7].location", MS "constraints[7].rigidness", MS "constraints[7].threshold",
      MS "constraints[8].location", MS "constraints[8].threshold", MS "constraints[9].area",
      MS "constraints[9].threshold", MS "constraints[9].convergence_time",
      MS "constraints[10].needs", MS "constraints[11]", MS1 "constraints"}},
    {false,
     "connectivity.json",
     OAK_E_UNPROCESSABLE,
     {MS "connectivity[0].target_microservice_id",
      MS "connectivity[1].con_constraints[0].threshold",
      MS "connectivity[1].con_constraints[0].rigidness",
      MS "connectivity[1].con_constraints[0].convergence_time",
      MS "connectivity[1].con_constraints[1].type",
      MS "connectivity[1].con_constraints[1].threshold", MS "connectivity[2].con_constraints",
      MS1 "connectivity"}},
    {false,
     "volumes.json",
     OAK_E_UNPROCESSABLE,
     {MS "volumes[0].volume_id", MS "volumes[0].mount_path", MS "volumes[1].csi_driver",
      MS "volumes[1].config", MS "volumes[2].volume_id"}},
    {false, "unikernel.json", OAK_E_UNPROCESSABLE, {MS "arch", MS1 "code"}},
};
#define N_INVALID (sizeof(invalid_cases) / sizeof(invalid_cases[0]))

static const char *shared_dir(void)
{
    const char *d = getenv("OAK_SHARED_DIR");
    return d && *d ? d : "../shared";
}

static char *slurp(const char *path, size_t *len)
{
    _cleanup_fclose_ FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap)
            buf = xrealloc(buf, cap = cap * 2 + 8192);
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    *len = n;
    return buf;
}

/* The rule reported for field, or NULL. */
static const char *rule_of(const oak_err_t *err, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(err->details, i, e)
    {
        if (!strcmp(json_string_value(json_object_get(e, "field")), field))
            return json_string_value(json_object_get(e, "rule"));
    }
    return NULL;
}

static void dump_details(const char *what, const oak_err_t *err)
{
    char *s = err->details ? json_dumps(err->details, JSON_INDENT(1)) : NULL;
    print_error("%s: %s\n%s\n", what, err->msg, s ? s : "(no details)");
    free(s);
}

/* Calls fn(path, for each *.json file in dir); returns how many. */
static int each_json(const char *dir, void (*fn)(const char *path, const char *name))
{
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open directory %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
        fn(p, e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static void accept_file(const char *path, const char *name)
{
    size_t len = 0;
    _cleanup_free_ char *body = slurp(path, &len);
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    if (sla_parse(body, len, MAX_BODY, false, &doc, &err) != 0) {
        dump_details(path, &err);
        oak_err_clear(&err);
        fail_msg("%s rejected", path);
    }
    assert_true(json_is_object(doc));
    json_decref(doc);
    /* the same document sent to POST /api/service/ lacks the applicationID */
    doc = NULL;
    assert_int_equal(sla_parse(body, len, MAX_BODY, true, &doc, &err), -1);
    assert_null(doc);
    assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
    assert_non_null(rule_of(&err, "applications[0].applicationID"));
    oak_err_clear(&err);
    (void)name;
}

static void test_valid_shared(void **state)
{
    _cleanup_free_ char *dir = xasprintf("%s/testdata/sla/valid", shared_dir());
    assert_true(each_json(dir, accept_file) >= 2);
    (void)state;
}

static void test_valid_local(void **state)
{
    assert_true(each_json("test/data/sla/valid", accept_file) >= 3);
    (void)state;
}

static void check_invalid(const invalid_case_t *c, const char *path)
{
    size_t len = 0;
    _cleanup_free_ char *body = slurp(path, &len);
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    int rc = sla_parse(body, len, MAX_BODY, false, &doc, &err);
    if (rc == 0) {
        json_decref(doc);
        fail_msg("%s accepted", path);
    }
    assert_null(doc);
    if (err.code != c->code) {
        dump_details(path, &err);
        fail_msg("%s: code %s, expected %s", path, oak_err_code_name(err.code),
                 oak_err_code_name(c->code));
    }
    size_t want = 0;
    while (c->fields[want])
        want++;
    if (c->code == OAK_E_INVALID) {
        assert_null(err.details);
        assert_non_null(strstr(err.msg, "line"));
        oak_err_clear(&err);
        return;
    }
    bool ok = json_array_size(err.details) == want;
    for (size_t i = 0; i < want; i++) {
        const char *rule = rule_of(&err, c->fields[i]);
        if (!rule) {
            print_error("%s: no error for %s\n", path, c->fields[i]);
            ok = false;
        } else if (!*rule) {
            ok = false;
        }
    }
    char expect_msg[64];
    snprintf(expect_msg, sizeof(expect_msg), "SLA is invalid: %zu error%s", want,
             want == 1 ? "" : "s");
    if (!ok || strcmp(err.msg, expect_msg) != 0) {
        dump_details(path, &err);
        oak_err_clear(&err);
        fail_msg("%s: expected exactly %zu field errors", path, want);
    }
    oak_err_clear(&err);
}

static void test_invalid_table(void **state)
{
    for (size_t i = 0; i < N_INVALID; i++) {
        const invalid_case_t *c = &invalid_cases[i];
        _cleanup_free_ char *path =
            c->shared ? xasprintf("%s/testdata/sla/invalid/%s", shared_dir(), c->file)
                      : xasprintf("test/data/sla/invalid/%s", c->file);
        check_invalid(c, path);
    }
    (void)state;
}

static bool cover_shared;

static void covered(const char *path, const char *name)
{
    for (size_t i = 0; i < N_INVALID; i++)
        if (invalid_cases[i].shared == cover_shared && !strcmp(invalid_cases[i].file, name))
            return;
    fail_msg("%s has no expectations in the table of sla_test.c", path);
}

static void test_invalid_dirs_covered(void **state)
{
    _cleanup_free_ char *dir = xasprintf("%s/testdata/sla/invalid", shared_dir());
    cover_shared = true;
    assert_true(each_json(dir, covered) >= 5);
    cover_shared = false;
    assert_true(each_json("test/data/sla/invalid", covered) >= 10);
    (void)state;
}

static void test_rule_texts(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    size_t len;
    _cleanup_free_ char *p1 = xasprintf("%s/testdata/sla/invalid/old-version.json", shared_dir());
    _cleanup_free_ char *b1 = slurp(p1, &len);
    assert_int_equal(sla_parse(b1, len, MAX_BODY, false, &doc, &err), -1);
    assert_int_equal(oak_err_http_status(err.code), 422);
    assert_string_equal(rule_of(&err, "sla_version"), "v1.0 is deprecated; use v2.0");
    oak_err_clear(&err);

    _cleanup_free_ char *p2 = xasprintf("%s/testdata/sla/invalid/wrong-types.json", shared_dir());
    _cleanup_free_ char *b2 = slurp(p2, &len);
    assert_int_equal(sla_parse(b2, len, MAX_BODY, false, &doc, &err), -1);
    assert_string_equal(err.msg, "SLA is invalid: 3 errors");
    assert_string_equal(rule_of(&err, MS "memory"), "must be an integer >= 0");
    assert_string_equal(rule_of(&err, MS "vcpus"), "must be an integer >= 0");
    assert_string_equal(rule_of(&err, MS "cmd"), "must be an array of strings");
    /* the error body a client gets */
    json_auto_t *body = oak_err_to_json(&err);
    assert_string_equal(json_string_value(json_object_get(body, "error")), "validation_failed");
    assert_int_equal(json_array_size(json_object_get(body, "errors")), 3);
    oak_err_clear(&err);

    _cleanup_free_ char *b3 = slurp("test/data/sla/invalid/top-level.json", &len);
    assert_int_equal(sla_parse(b3, len, MAX_BODY, false, &doc, &err), -1);
    assert_string_equal(rule_of(&err, "sla_version"), "must be \"v2.0\"");
    assert_string_equal(rule_of(&err, "customerID"), "is required");
    oak_err_clear(&err);

    _cleanup_free_ char *b4 = slurp("test/data/sla/invalid/microservice-types.json", &len);
    assert_int_equal(sla_parse(b4, len, MAX_BODY, false, &doc, &err), -1);
    assert_string_equal(rule_of(&err, MS "memory"), "must be at most 16777216");
    assert_string_equal(rule_of(&err, MS "vcpus"), "must be at most 1024");
    assert_string_equal(rule_of(&err, MS "replicas"), "must be an integer between 0 and 1000");
    assert_string_equal(rule_of(&err, MS "one_shot"), "must be a boolean");
    assert_string_equal(rule_of(&err, MS "environment[1]"),
                        "must look like KEY=VALUE with a non-empty KEY");
    oak_err_clear(&err);
    (void)state;
}

/* A minimal valid document with n applications of m microservices each. */
static json_t *make_sla(size_t n, size_t m)
{
    json_t *apps = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *mss = json_array();
        for (size_t j = 0; j < m; j++) {
            char name[32];
            snprintf(name, sizeof(name), "svc%zu", j);
            json_array_append_new(mss,
                                  json_pack("{s:s, s:s, s:s, s:s}", "microservice_name", name,
                                            "microservice_namespace", "test", "virtualization",
                                            "container", "code", "docker.io/library/nginx:latest"));
        }
        char name[32];
        snprintf(name, sizeof(name), "app%zu", i);
        json_array_append_new(apps,
                              json_pack("{s:s, s:s, s:o}", "application_name", name,
                                        "application_namespace", "test", "microservices", mss));
    }
    return json_pack("{s:s, s:s, s:o}", "sla_version", "v2.0", "customerID", "Admin",
                     "applications", apps);
}

static json_t *ms_at(json_t *sla, size_t app, size_t ms)
{
    json_t *a = json_array_get(json_object_get(sla, "applications"), app);
    return json_array_get(json_object_get(a, "microservices"), ms);
}

static void expect_only(json_t *sla, bool for_service, const char *field, const char *rule_part)
{
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(sla_validate(sla, for_service, &err), -1);
    assert_int_equal(err.code, OAK_E_UNPROCESSABLE);
    const char *rule = rule_of(&err, field);
    if (json_array_size(err.details) != 1 || !rule || !strstr(rule, rule_part)) {
        dump_details(field, &err);
        oak_err_clear(&err);
        fail_msg("expected one error for %s containing '%s'", field, rule_part);
    }
    assert_string_equal(err.msg, "SLA is invalid: 1 error");
    oak_err_clear(&err);
}

static void expect_ok(json_t *sla, bool for_service)
{
    oak_err_t err = OAK_ERR_INIT;
    if (sla_validate(sla, for_service, &err) != 0) {
        dump_details("unexpected rejection", &err);
        oak_err_clear(&err);
        fail();
    }
}

static void test_limits(void **state)
{
    json_auto_t *ok = make_sla(64, 1);
    expect_ok(ok, false);
    json_auto_t *apps65 = make_sla(65, 1);
    expect_only(apps65, false, "applications", "1 to 64");
    json_auto_t *ms128 = make_sla(1, 128);
    expect_ok(ms128, false);
    json_auto_t *ms129 = make_sla(1, 129);
    expect_only(ms129, false, "applications[0].microservices", "1 to 128");

    json_auto_t *s = make_sla(1, 2);
    json_t *app = json_array_get(json_object_get(s, "applications"), 0);
    char *desc = xmalloc(4098);
    memset(desc, 'd', 4097);
    desc[4097] = '\0';
    json_object_set_new(app, "application_desc", json_string(desc));
    expect_only(s, false, "applications[0].application_desc", "at most 4096");
    desc[4096] = '\0';
    json_object_set_new(app, "application_desc", json_string(desc));
    expect_ok(s, false);
    free(desc);

    json_t *ms = ms_at(s, 0, 1);
    char *code = xmalloc(1026);
    memset(code, 'c', 1025);
    code[1025] = '\0';
    json_object_set_new(ms, "code", json_string(code));
    expect_only(s, false, MS1 "code", "at most 1024");
    code[1024] = '\0';
    json_object_set_new(ms, "code", json_string(code));
    expect_ok(s, false);
    free(code);

    json_object_set_new(ms, "memory", json_integer(16777216));
    json_object_set_new(ms, "vcpus", json_integer(1024));
    json_object_set_new(ms, "replicas", json_integer(1000));
    json_object_set_new(ms, "storage", json_integer(0));
    expect_ok(s, false);
    json_object_set_new(ms, "replicas", json_integer(0));
    expect_ok(s, false);
    json_object_set_new(ms, "memory", json_real(100.0));
    expect_only(s, false, MS1 "memory", "integer");
    json_object_set_new(ms, "memory", json_integer(100));

    /* names: 30 characters fine, 31 not, unicode letters not */
    json_object_set_new(ms, "microservice_name", json_string("abcdefghijklmnopqrstuvwxyz0123"));
    expect_ok(s, false);
    json_object_set_new(ms, "microservice_name", json_string("abcdefghijklmnopqrstuvwxyz01234"));
    expect_only(s, false, MS1 "microservice_name", "1 to 30 letters or digits");
    json_object_set_new(ms, "microservice_name", json_string("caf\xc3\xa9"));
    expect_only(s, false, MS1 "microservice_name", "letters or digits");
    json_object_set_new(ms, "microservice_name", json_string(""));
    expect_only(s, false, MS1 "microservice_name", "letters or digits");
    json_object_set_new(ms, "microservice_name", json_string("svc0"));
    expect_only(s, false, MS1 "microservice_name", "must be unique");
    json_object_set_new(ms, "microservice_name", json_stringn("svc\0x", 5));
    expect_only(s, false, MS1 "microservice_name", "NUL");
    json_object_del(ms, "microservice_name");
    expect_only(s, false, MS1 "microservice_name", "is required");
    json_object_set_new(ms, "microservice_name", json_string("svc1"));

    /* runtimes */
    static const char *good_rt[] = {"container",
                                    "docker",
                                    "unikernel",
                                    "crosvm",
                                    "runsc",
                                    "kata-qemu",
                                    "io_containerd_runc_v2"};
    for (size_t i = 0; i < sizeof(good_rt) / sizeof(good_rt[0]); i++) {
        json_object_set_new(ms, "virtualization", json_string(good_rt[i]));
        expect_ok(s, false);
    }
    static const char *bad_rt[] = {"", "Docker", "9p", "run sc",
                                   "a234567890123456789012345678901x"};
    for (size_t i = 0; i < sizeof(bad_rt) / sizeof(bad_rt[0]); i++) {
        json_object_set_new(ms, "virtualization", json_string(bad_rt[i]));
        expect_only(s, false, MS1 "virtualization", "runtime name");
    }
    json_object_set_new(ms, "virtualization", json_string("container"));

    /* extra members are allowed everywhere */
    json_object_set_new(s, "x_extra", json_pack("{s:[i]}", "anything", 1));
    json_object_set_new(app, "x_extra", json_null());
    json_object_set_new(ms, "platform", json_string("linux/arm64"));
    json_object_set_new(ms, "added_files", json_array());
    expect_ok(s, false);
    (void)state;
}

static void test_for_service(void **state)
{
    json_auto_t *s = make_sla(1, 1);
    json_t *app = json_array_get(json_object_get(s, "applications"), 0);
    expect_ok(s, false);
    expect_only(s, true, "applications[0].applicationID", "is required");
    json_object_set_new(app, "applicationID", json_string(""));
    expect_ok(s, false);
    expect_only(s, true, "applications[0].applicationID", "is required");
    json_object_set_new(app, "applicationID", json_string("64f0c0ffee0000000000abcd"));
    expect_ok(s, true);
    expect_only(s, false, "applications[0].applicationID", "must be empty");
    json_object_set_new(app, "applicationID", json_integer(5));
    expect_only(s, true, "applications[0].applicationID", "must be a string");
    expect_only(s, false, "applications[0].applicationID", "must be a string");
    (void)state;
}

static void test_error_cap(void **state)
{
    /* 2 applications x 100 microservices, each with a bad memory: 200 errors */
    json_auto_t *s = make_sla(2, 100);
    for (size_t a = 0; a < 2; a++)
        for (size_t m = 0; m < 100; m++)
            json_object_set_new(ms_at(s, a, m), "memory", json_string("lots"));
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(sla_validate(s, false, &err), -1);
    assert_int_equal(json_array_size(err.details), SLA_MAX_ERRORS);
    assert_string_equal(err.msg, "SLA is invalid: 200 errors (first 100 listed)");
    assert_non_null(rule_of(&err, "applications[0].microservices[99].memory"));
    assert_null(rule_of(&err, "applications[1].microservices[0].memory"));

    /* a second validation replaces, not appends to, the details */
    json_auto_t *one = make_sla(1, 1);
    json_object_set_new(ms_at(one, 0, 0), "vcpus", json_integer(-1));
    assert_int_equal(sla_validate(one, false, &err), -1);
    assert_int_equal(json_array_size(err.details), 1);
    oak_err_clear(&err);

    /* err may be NULL */
    assert_int_equal(sla_validate(one, false, NULL), -1);
    assert_int_equal(sla_validate(NULL, false, &err), -1);
    assert_non_null(rule_of(&err, "$"));
    oak_err_clear(&err);
    (void)state;
}

static void test_parse_errors(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    assert_int_equal(sla_parse("", 0, MAX_BODY, false, &doc, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    assert_int_equal(sla_parse("{\"sla_version\": v2.0}", 21, MAX_BODY, false, &doc, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_non_null(strstr(err.msg, "column"));
    assert_int_equal(oak_err_http_status(err.code), 400);
    oak_err_clear(&err);
    /* trailing garbage after the document */
    json_auto_t *v = make_sla(1, 1);
    _cleanup_free_ char *txt = json_dumps(v, 0);
    _cleanup_free_ char *trailing = xasprintf("%s }", txt);
    assert_int_equal(sla_parse(trailing, strlen(trailing), MAX_BODY, false, &doc, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* oversized body: 413 before anything is parsed */
    size_t big = MAX_BODY + 1;
    char *body = xmalloc(big);
    memset(body, ' ', big);
    memcpy(body, txt, strlen(txt));
    assert_int_equal(sla_parse(body, big, MAX_BODY, false, &doc, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    assert_int_equal(oak_err_http_status(err.code), 413);
    oak_err_clear(&err);
    /* the same bytes fit a limit one larger (JSON allows trailing spaces) */
    assert_int_equal(sla_parse(body, big, big, false, &doc, &err), 0);
    assert_true(json_is_object(doc));
    json_decref(doc);
    free(body);
    assert_null(err.details);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_shared),  cmocka_unit_test(test_valid_local),
        cmocka_unit_test(test_invalid_table), cmocka_unit_test(test_invalid_dirs_covered),
        cmocka_unit_test(test_rule_texts),    cmocka_unit_test(test_limits),
        cmocka_unit_test(test_for_service),   cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
