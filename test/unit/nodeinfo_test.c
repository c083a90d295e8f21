/* Unit tests of node information (node_engine/nodeinfo): /proc parsers on
 * fixed text, architecture names, a real sample of this machine accepted
 * by the cluster's information parser, cpu_percent from two samples, and
 * the change filter (5 %, floors near zero, keys only when changed). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "node_engine/nodeinfo.h"

static void test_parse_stat(void **state)
{
    uint64_t busy = 0, total = 0;
    const char *t = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
    assert_int_equal(nodeinfo_parse_stat(t, &busy, &total), 0);
    assert_int_equal(total, 100 + 5 + 50 + 800 + 20 + 3 + 2);
    assert_int_equal(busy, 100 + 5 + 50 + 3 + 2);
    /* the aggregate line need not come first; "cpu0" is not it */
    assert_int_equal(nodeinfo_parse_stat("intr 1\ncpu  1 0 1 8\n", &busy, &total), 0);
    assert_int_equal(total, 10);
    assert_int_equal(busy, 2);
    assert_int_equal(nodeinfo_parse_stat("cpu0 1 2 3 4\n", &busy, &total), -1);
    assert_int_equal(nodeinfo_parse_stat("cpu  1 2\n", &busy, &total), -1);
    assert_int_equal(nodeinfo_parse_stat("", &busy, &total), -1);
}

static void test_parse_meminfo(void **state)
{
    long long a = 0, t = 0;
    assert_int_equal(nodeinfo_parse_meminfo("MemTotal:       2048000 kB\nMemFree:   100 kB\n"
                                            "MemAvailable:    1024000 kB\n",
                                            &a, &t),
                     0);
    assert_int_equal(t, 2000);
    assert_int_equal(a, 1000);
    /* old kernels without MemAvailable */
    assert_int_equal(nodeinfo_parse_meminfo("MemTotal: 10240 kB\nMemFree: 1024 kB\nBuffers: 1024 "
                                            "kB\nCached: 2048 kB\nSwapCached: 99999 kB\n",
                                            &a, &t),
                     0);
    assert_int_equal(t, 10);
    assert_int_equal(a, 4);
    assert_int_equal(nodeinfo_parse_meminfo("MemFree: 1 kB\n", &a, &t), -1);
}

static void test_arch(void **state)
{
    char b[32];
    nodeinfo_arch("x86_64", b, sizeof(b));
    assert_string_equal(b, "amd64");
    nodeinfo_arch("aarch64", b, sizeof(b));
    assert_string_equal(b, "arm64");
    nodeinfo_arch("armv7l", b, sizeof(b));
    assert_string_equal(b, "arm");
    nodeinfo_arch("Weird-CPU.9", b, sizeof(b));
    assert_string_equal(b, "weird_cpu_9");
    nodeinfo_arch("", b, sizeof(b));
    assert_string_equal(b, "_");
}

static void test_real_sample(void **state)
{
    nodeinfo_sampler_t s = {0};
    nodeinfo_t a, b;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(nodeinfo_read(&s, "/tmp", "/bin/sh", &a, &err), 0);
    assert_int_equal(a.cpu_cores, (int)sysconf(_SC_NPROCESSORS_ONLN));
    assert_true(a.cpu_percent == 0); /* no previous sample */
    assert_true(a.memory_total_mb > 0 && a.memory_mb <= a.memory_total_mb);
    assert_true(a.disk_percent >= 0 && a.disk_percent <= 100);
    assert_true(a.container);
    assert_true(a.architecture[0] && a.kernel_version[0]);
    /* burn some cpu so the second sample sees a delta */
    volatile double x = 0;
    for (long i = 0; i < 20000000; i++)
        x += (double)i * 1e-9;
    usleep(20000);
    assert_int_equal(nodeinfo_read(&s, "/tmp", "no-such-runtime-binary", &b, &err), 0);
    assert_true(b.cpu_percent > 0 && b.cpu_percent <= 100.0 * b.cpu_cores);
    assert_false(b.container);

    /* what the cluster's parser makes of it */
    a.container = true;
    json_auto_t *j = nodeinfo_json(&a);
    _cleanup_free_ char *s1 = oak_json_dump(j);
    json_t *parsed = NULL;
    assert_int_equal(wp_parse_information(s1, strlen(s1), 0, &parsed, &err), 0);
    assert_int_equal(oak_json_int(parsed, "cpu_cores", 0), a.cpu_cores);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(parsed, "virtualization"), 0)),
        "container");
    json_decref(parsed);
}

static void test_diff(void **state)
{
    nodeinfo_t a = {.cpu_cores = 4,
                    .cpu_percent = 0,
                    .load1 = 0.1,
                    .memory_mb = 1000,
                    .memory_total_mb = 2000,
                    .disk_percent = 50,
                    .architecture = "amd64",
                    .kernel_version = "6.1.0",
                    .container = true};
    nodeinfo_t b = a;
    json_auto_t *d0 = nodeinfo_diff(&a, &b, false);
    assert_int_equal(json_object_size(d0), 0);
    /* below the thresholds: cpu 0 -> 4 (floor 100: 5 points), load 0.1 -> 0.12
     * (floor 1.0), memory 1000 -> 1040 (4 %), disk 50 -> 52 (4 %) */
    b.cpu_percent = 4;
    b.load1 = 0.12;
    b.memory_mb = 1040;
    b.disk_percent = 52;
    json_auto_t *d1 = nodeinfo_diff(&a, &b, false);
    assert_int_equal(json_object_size(d1), 0);
    /* the periodic report sends every change, however small */
    json_auto_t *d2 = nodeinfo_diff(&a, &b, true);
    assert_int_equal(json_object_size(d2), 4);
    /* above: cpu +6 points, memory -6 % */
    b.cpu_percent = 6;
    b.memory_mb = 940;
    json_auto_t *d3 = nodeinfo_diff(&a, &b, false);
    assert_int_equal(json_object_size(d3), 2);
    assert_true(oak_json_num(d3, "cpu_percent", -1) == 6);
    assert_int_equal(oak_json_int(d3, "memory", -1), 940);
    /* strings on any change; a partial report must still parse */
    snprintf(b.kernel_version, sizeof(b.kernel_version), "6.2.0");
    json_auto_t *d4 = nodeinfo_diff(&a, &b, false);
    assert_string_equal(oak_json_str(d4, "kernel_version"), "6.2.0");
    _cleanup_free_ char *s = oak_json_dump(d4);
    json_t *parsed = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(wp_parse_information(s, strlen(s), 4, &parsed, &err), 0);
    json_decref(parsed);
}

static void test_limit(void **state)
{
    nodeinfo_t i = {.cpu_cores = 8, .cpu_percent = 400, .memory_mb = 6000, .memory_total_mb = 16000};
    nodeinfo_limit(&i, 0, 0); /* no limits */
    assert_int_equal(i.cpu_cores, 8);
    assert_true(i.cpu_percent == 400);
    assert_int_equal(i.memory_total_mb, 16000);
    nodeinfo_limit(&i, 2, 4096); /* half busy stays half busy */
    assert_int_equal(i.cpu_cores, 2);
    assert_true(i.cpu_percent == 100);
    assert_int_equal(i.memory_total_mb, 4096);
    assert_int_equal(i.memory_mb, 4096);
    nodeinfo_limit(&i, 16, 1 << 20); /* limits above the machine change nothing */
    assert_int_equal(i.cpu_cores, 2);
    assert_int_equal(i.memory_total_mb, 4096);
    nodeinfo_t j = {.cpu_cores = 4, .memory_mb = 500, .memory_total_mb = 8000};
    nodeinfo_limit(&j, 0, 1000); /* less available than the limit: kept */
    assert_int_equal(j.memory_mb, 500);
    assert_int_equal(j.memory_total_mb, 1000);

    /* through the sampler, on this machine */
    nodeinfo_sampler_t smp = {.max_cores = 1, .max_memory_mb = 64};
    nodeinfo_t r;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(nodeinfo_read(&smp, "/tmp", "/bin/sh", &r, &err), 0);
    assert_int_equal(r.cpu_cores, 1);
    assert_int_equal(r.memory_total_mb, 64);
    assert_true(r.memory_mb <= 64);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat), cmocka_unit_test(test_parse_meminfo),
        cmocka_unit_test(test_arch),       cmocka_unit_test(test_real_sample),
        cmocka_unit_test(test_diff),       cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
