/* Unit tests for node_engine/bundle.c without runc or root: the OCI
 * config.json of an instance (process, env defaults, hostname, user and
 * capabilities, rlimits within the process's own hard limit, default
 * mounts, namespaces with and without a netns path, cgroupsPath, memory
 * and cpu limits with the minimum quota), spec validation naming each
 * field, container id rules, and bundle removal keeping the logs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "node_engine/bundle.h"
#include "node_engine/runtime.h"
#include "test/common/harness.h"

static const char *layers[] = {"/var/lib/oak/layers/a", "/var/lib/oak/layers/b"};
static char *args[] = {"/bin/app", "--flag", "x y"};

static instance_spec_t base_spec(void)
{
    return (instance_spec_t){
        .id = "svc-1.0_a", .lowerdirs = layers, .nlower = 2, .args = args, .nargs = 3};
}

static bool has_string(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) if (json_is_string(v) &&
                                      strcmp(json_string_value(v), s) == 0) return true;
    return false;
}

static json_t *find_by(const json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = oak_json_str(v, key);
        if (s && strcmp(s, value) == 0)
            return v;
    }
    return NULL;
}

static void test_config_defaults(void **state)
{
    (void)state;
    instance_spec_t spec = base_spec();
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(bundle_check_spec(&spec, &err), 0);
    json_t *c = bundle_config(&spec, "oak-node/svc-1.0_a");
    assert_non_null(c);
    assert_string_equal(oak_json_str(c, "ociVersion"), "1.0.2");
    assert_string_equal(oak_json_str(c, "hostname"), "svc-1.0_a");
    json_t *root = json_object_get(c, "root");
    assert_string_equal(oak_json_str(root, "path"), "rootfs");
    assert_false(oak_json_bool(root, "readonly", true));

    json_t *p = json_object_get(c, "process");
    assert_false(oak_json_bool(p, "terminal", true));
    assert_string_equal(oak_json_str(p, "cwd"), "/");
    json_t *a = json_object_get(p, "args");
    assert_int_equal(json_array_size(a), 3);
    assert_string_equal(json_string_value(json_array_get(a, 2)), "x y");
    json_t *env = json_object_get(p, "env");
    assert_true(has_string(env, BUNDLE_DEFAULT_PATH));
    assert_true(has_string(env, "HOSTNAME=svc-1.0_a"));
    json_t *user = json_object_get(p, "user");
    assert_int_equal(oak_json_int(user, "uid", -1), 0);
    json_t *caps = json_object_get(p, "capabilities");
    assert_true(has_string(json_object_get(caps, "effective"), "CAP_CHOWN"));
    assert_true(has_string(json_object_get(caps, "bounding"), "CAP_NET_BIND_SERVICE"));
    assert_false(has_string(json_object_get(caps, "bounding"), "CAP_SYS_ADMIN"));

    json_t *rl = find_by(json_object_get(p, "rlimits"), "type", "RLIMIT_NOFILE");
    assert_non_null(rl);
    struct rlimit own;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &own), 0);
    long long hard = oak_json_int(rl, "hard", -1), soft = oak_json_int(rl, "soft", -1);
    assert_true(hard > 0 && soft > 0 && soft <= hard);
    if (own.rlim_max != RLIM_INFINITY)
        assert_true((unsigned long long)hard <= (unsigned long long)own.rlim_max);

    json_t *mounts = json_object_get(c, "mounts");
    const char *dests[] = {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"};
    for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++)
        assert_non_null(find_by(mounts, "destination", dests[i]));
    assert_true(
        has_string(json_object_get(find_by(mounts, "destination", "/sys"), "options"), "ro"));

    json_t *lin = json_object_get(c, "linux");
    assert_string_equal(oak_json_str(lin, "cgroupsPath"), "oak-node/svc-1.0_a");
    json_t *ns = json_object_get(lin, "namespaces");
    const char *types[] = {"pid", "ipc", "uts", "mount", "network"};
    for (size_t i = 0; i < 5; i++)
        assert_non_null(find_by(ns, "type", types[i]));
    assert_null(json_object_get(find_by(ns, "type", "network"), "path"));
    json_t *res = json_object_get(lin, "resources");
    assert_null(json_object_get(res, "memory"));
    assert_null(json_object_get(res, "cpu"));
    assert_true(json_array_size(json_object_get(lin, "maskedPaths")) > 0);
    json_decref(c);
}

static void test_config_spec_fields(void **state)
{
    (void)state;
    instance_spec_t spec = base_spec();
    char *env[] = {"PATH=/custom", "HOSTNAME=given", "A=b=c"};
    spec.env = env;
    spec.nenv = 3;
    spec.cwd = "/srv";
    spec.hostname = "web-1";
    spec.uid = 1000;
    spec.gid = 100;
    spec.memory_mb = 256;
    spec.vcpus = 1.5;
    spec.netns_path = "/run/netns/inst";
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(bundle_check_spec(&spec, &err), 0);
    json_t *c = bundle_config(&spec, "p/x");
    json_t *p = json_object_get(c, "process");
    json_t *envj = json_object_get(p, "env");
    assert_int_equal(json_array_size(envj), 3); /* nothing added */
    assert_true(has_string(envj, "A=b=c"));
    assert_string_equal(oak_json_str(p, "cwd"), "/srv");
    assert_string_equal(oak_json_str(c, "hostname"), "web-1");
    json_t *user = json_object_get(p, "user");
    assert_int_equal(oak_json_int(user, "uid", -1), 1000);
    assert_int_equal(oak_json_int(user, "gid", -1), 100);
    /* a non-root user gets no effective capabilities */
    json_t *caps = json_object_get(p, "capabilities");
    assert_int_equal(json_array_size(json_object_get(caps, "effective")), 0);
    assert_true(json_array_size(json_object_get(caps, "bounding")) > 0);

    json_t *lin = json_object_get(c, "linux");
    json_t *net = find_by(json_object_get(lin, "namespaces"), "type", "network");
    assert_string_equal(oak_json_str(net, "path"), "/run/netns/inst");
    json_t *res = json_object_get(lin, "resources");
    assert_int_equal(oak_json_int(json_object_get(res, "memory"), "limit", 0), 256LL << 20);
    json_t *cpu = json_object_get(res, "cpu");
    assert_int_equal(oak_json_int(cpu, "quota", 0), 150000);
    assert_int_equal(oak_json_int(cpu, "period", 0), BUNDLE_CPU_PERIOD);
    json_decref(c);

    /* a tiny share still gets the minimum quota */
    spec.vcpus = 0.001;
    c = bundle_config(&spec, "p/x");
    cpu = json_object_get(json_object_get(json_object_get(c, "linux"), "resources"), "cpu");
    assert_int_equal(oak_json_int(cpu, "quota", 0), BUNDLE_CPU_MIN_QUOTA);
    json_decref(c);
}

static void expect_invalid(instance_spec_t *spec, const char *field)
{
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(bundle_check_spec(spec, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    if (strncmp(err.msg, field, strlen(field)) != 0)
        fail_msg("expected an error on %s, got: %s", field, err.msg);
}

static void test_spec_validation(void **state)
{
    (void)state;
    instance_spec_t s;
    const char *bad_ids[] = {"",
                             ".",
                             "..",
                             "a/b",
                             "a b",
                             "x;y",
                             "0123456789012345678901234567890123456789012345678901234567890123X"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        s = base_spec();
        s.id = bad_ids[i];
        expect_invalid(&s, "id");
    }
    s = base_spec();
    s.id = NULL;
    expect_invalid(&s, "id");
    s = base_spec();
    s.nlower = 0;
    expect_invalid(&s, "lowerdirs");
    const char *rel[] = {"relative/dir"};
    s = base_spec();
    s.lowerdirs = rel;
    s.nlower = 1;
    expect_invalid(&s, "lowerdirs[0]");
    const char *colon[] = {"/ok", "/has:colon"};
    s = base_spec();
    s.lowerdirs = colon;
    expect_invalid(&s, "lowerdirs[1]");
    s = base_spec();
    s.nargs = 0;
    expect_invalid(&s, "args");
    char *empty[] = {""};
    s = base_spec();
    s.args = empty;
    s.nargs = 1;
    expect_invalid(&s, "args");
    char *env[] = {"NOEQUALS"};
    s = base_spec();
    s.env = env;
    s.nenv = 1;
    expect_invalid(&s, "env[0]");
    char *env2[] = {"=x"};
    s.env = env2;
    expect_invalid(&s, "env[0]");
    s = base_spec();
    s.cwd = "srv";
    expect_invalid(&s, "cwd");
    s = base_spec();
    s.hostname = "bad host";
    expect_invalid(&s, "hostname");
    s = base_spec();
    s.memory_mb = -5;
    expect_invalid(&s, "memory_mb");
    s = base_spec();
    s.vcpus = -0.5;
    expect_invalid(&s, "vcpus");
    s = base_spec();
    s.netns_path = "netns";
    expect_invalid(&s, "netns_path");

    assert_true(runtime_id_valid("a"));
    assert_true(runtime_id_valid("svc_1-2.3"));
    assert_true(runtime_id_valid("..."));
    assert_false(runtime_id_valid(NULL));
}

static void touch(const char *dir, const char *name)
{
    char *p = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("x\n", f);
    fclose(f);
    free(p);
}

static bool exists(const char *dir, const char *name)
{
    char *p = xasprintf("%s/%s", dir, name);
    struct stat st;
    bool e = lstat(p, &st) == 0;
    free(p);
    return e;
}

static void test_remove_keeps_logs(void **state)
{
    (void)state;
    char *dir = th_tmpdir("oak-bundle");
    char *sub = xasprintf("%s/upper/deep/er", dir);
    char *up = xasprintf("%s/upper", dir);
    char *deep = xasprintf("%s/upper/deep", dir);
    assert_int_equal(mkdir(up, 0700), 0);
    assert_int_equal(mkdir(deep, 0700), 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    touch(sub, "file");
    touch(dir, "config.json");
    touch(dir, "log");
    touch(dir, "log.1");
    touch(dir, "runc.log");
    touch(deep, "log"); /* not a top-level log: removed */
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(bundle_remove(dir, true, &err), 0);
    assert_true(exists(dir, "log"));
    assert_true(exists(dir, "log.1"));
    assert_true(exists(dir, "runc.log"));
    assert_false(exists(dir, "config.json"));
    assert_false(exists(dir, "upper"));
    assert_int_equal(bundle_remove(dir, false, &err), 0);
    struct stat st;
    assert_int_equal(lstat(dir, &st), -1);
    /* a missing directory is fine */
    assert_int_equal(bundle_remove(dir, false, &err), 0);
    assert_false(bundle_is_mountpoint(dir));
    assert_true(bundle_is_mountpoint("/proc"));
    free(sub);
    free(up);
    free(deep);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_spec_fields),
        cmocka_unit_test(test_spec_validation),
        cmocka_unit_test(test_remove_keeps_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
