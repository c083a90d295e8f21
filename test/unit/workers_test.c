/* Unit tests for cluster_orchestrator/workers: the table (ids, host index,
 * 10,000-worker add/lookup/remove), information payloads (full, partial,
 * mistyped), reservations, the capacity summary for the root, and
 * persistence through a real SQLite store in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_orchestrator/workers.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"
#include "test/common/harness.h"

static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return j;
}

static bool apply(worker_t *w, const char *text)
{
    json_t *j = J(text);
    bool r = worker_apply_info(w, j);
    json_decref(j);
    return r;
}

static json_t *find_arch(const json_t *cap, const char *arch)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(cap, "per_arch"), i, a)
    {
        if (strcmp(oak_json_str(a, "architecture"), arch) == 0)
            return a;
    }
    return NULL;
}

static bool strarr_is(const json_t *arr, const char *const *want, size_t n)
{
    if (json_array_size(arr) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(json_string_value(json_array_get(arr, k)), want[i]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static void test_add_get_remove(void **state)
{
    workers_t *ws = workers_new();
    worker_t *a = workers_add(ws, NULL, "host-a");
    assert_non_null(a);
    assert_int_equal(strlen(a->id), 24);
    assert_int_equal(strspn(a->id, "0123456789abcdef"), 24);
    assert_false(a->online);
    assert_string_equal(a->host, "host-a");
    assert_string_equal(a->ip, "");
    assert_string_equal(a->arch, "");
    assert_int_equal(a->nvirt, 0);

    worker_t *b = workers_add(ws, "worker-b-id", "host-b");
    assert_non_null(b);
    assert_string_equal(b->id, "worker-b-id");
    assert_null(workers_add(ws, "worker-b-id", "other"));               /* duplicate id */
    assert_null(workers_add(ws, "0123456789abcdef012345678", "long"));  /* 25 chars */
    assert_non_null(workers_add(ws, "012345678901234567890123", NULL)); /* 24 chars, no host */
    assert_int_equal(workers_count(ws), 3);

    assert_ptr_equal(workers_get(ws, a->id), a);
    assert_ptr_equal(workers_get(ws, "worker-b-id"), b);
    assert_null(workers_get(ws, "nope"));
    assert_null(workers_get(ws, NULL));
    assert_ptr_equal(workers_by_host(ws, "host-a"), a);
    assert_ptr_equal(workers_by_host(ws, "host-b"), b);
    assert_null(workers_by_host(ws, ""));
    assert_null(workers_by_host(ws, NULL));
    assert_null(workers_by_host(ws, "host-c"));

    workers_set_host(ws, b, "host-b2");
    assert_null(workers_by_host(ws, "host-b"));
    assert_ptr_equal(workers_by_host(ws, "host-b2"), b);

    workers_remove(ws, "worker-b-id");
    workers_remove(ws, "worker-b-id"); /* unknown: ignored */
    assert_int_equal(workers_count(ws), 2);
    assert_null(workers_get(ws, "worker-b-id"));
    assert_null(workers_by_host(ws, "host-b2"));
    size_t seen = 0;
    for (size_t i = 0; i < workers_count(ws); i++)
        seen += workers_at(ws, i) != NULL;
    assert_int_equal(seen, 2);
    assert_null(workers_at(ws, 2));
    workers_free(ws);
    workers_free(NULL);
}

static void test_shared_host(void **state)
{
    workers_t *ws = workers_new();
    worker_t *old = workers_add(ws, "old", "edge");
    worker_t *cur = workers_add(ws, "cur", "edge");
    worker_t *third = workers_add(ws, "third", "edge");
    /* none online: the most recently added */
    assert_ptr_equal(workers_by_host(ws, "edge"), third);
    old->online = true;
    assert_ptr_equal(workers_by_host(ws, "edge"), old);
    old->online = false;
    cur->online = true;
    assert_ptr_equal(workers_by_host(ws, "edge"), cur);
    workers_remove(ws, "cur");
    assert_ptr_equal(workers_by_host(ws, "edge"), third);
    workers_remove(ws, "third");
    assert_ptr_equal(workers_by_host(ws, "edge"), old);
    workers_set_host(ws, old, "elsewhere");
    assert_null(workers_by_host(ws, "edge"));
    assert_ptr_equal(workers_by_host(ws, "elsewhere"), old);
    workers_free(ws);
}

static void test_ten_thousand(void **state)
{
    enum { N = 10000 };
    workers_t *ws = workers_new();
    char id[32], host[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "w%06d", i);
        snprintf(host, sizeof(host), "host-%06d", i);
        worker_t *w = workers_add(ws, i % 2 ? NULL : id, host);
        assert_non_null(w);
    }
    assert_int_equal(workers_count(ws), N);
    for (int i = 0; i < N; i++) {
        snprintf(host, sizeof(host), "host-%06d", i);
        worker_t *w = workers_by_host(ws, host);
        assert_non_null(w);
        assert_string_equal(w->host, host);
        assert_ptr_equal(workers_get(ws, w->id), w);
        if (i % 2 == 0) {
            snprintf(id, sizeof(id), "w%06d", i);
            assert_string_equal(w->id, id);
        }
    }
    /* remove every third worker, by id */
    for (int i = 0; i < N; i += 3) {
        snprintf(host, sizeof(host), "host-%06d", i);
        char wid[25];
        snprintf(wid, sizeof(wid), "%s", workers_by_host(ws, host)->id);
        workers_remove(ws, wid);
        assert_null(workers_get(ws, wid));
    }
    size_t left = N - (N + 2) / 3;
    assert_int_equal(workers_count(ws), left);
    for (int i = 0; i < N; i++) {
        snprintf(host, sizeof(host), "host-%06d", i);
        worker_t *w = workers_by_host(ws, host);
        if (i % 3 == 0) {
            assert_null(w);
        } else {
            assert_non_null(w);
            assert_ptr_equal(workers_get(ws, w->id), w);
        }
    }
    for (size_t i = 0; i < workers_count(ws); i++)
        assert_ptr_equal(workers_get(ws, workers_at(ws, i)->id), workers_at(ws, i));
    while (workers_count(ws) > 0) {
        char wid[25];
        snprintf(wid, sizeof(wid), "%s", workers_at(ws, 0)->id);
        workers_remove(ws, wid);
    }
    snprintf(host, sizeof(host), "host-%06d", 1);
    assert_null(workers_by_host(ws, host));
    /* the emptied maps still work */
    assert_non_null(workers_add(ws, "again", "host-again"));
    assert_non_null(workers_by_host(ws, "host-again"));
    workers_free(ws);
}

static void test_apply_info_full_and_partial(void **state)
{
    workers_t *ws = workers_new();
    worker_t *w = workers_add(ws, NULL, "worker-a");
    assert_true(apply(w, "{\"host\":\"worker-a\",\"ip\":\"10.0.0.5\",\"port\":50103,"
                         "\"architecture\":\"amd64\",\"virtualization\":[\"docker\",\"unikernel\","
                         "\"container\"],\"cpu_cores\":4,\"memory\":7800,\"gpus\":1,"
                         "\"system_info\":{\"kernel_version\":\"6.1.0\"},\"node_id\":\"\"}"));
    assert_string_equal(w->ip, "10.0.0.5");
    assert_string_equal(w->arch, "amd64");
    assert_int_equal(w->nvirt, 2);
    assert_string_equal(w->virt[0], "container");
    assert_string_equal(w->virt[1], "unikernel");
    assert_true(worker_has_virt(w, "docker"));
    assert_true(worker_has_virt(w, NULL));
    assert_false(worker_has_virt(w, "wasm"));
    assert_int_equal(w->cpu_total, 4000);
    assert_int_equal(w->cpu_free, 4000);
    assert_int_equal(w->mem_free, 7800);
    assert_int_equal(w->mem_total, 7800); /* follows memory until memory_total is known */
    assert_int_equal(w->gpu_total, 1);
    assert_int_equal(w->gpu_free, 1);

    /* same payload again: nothing changed */
    assert_false(apply(w, "{\"cpu_cores\":4,\"memory\":7800,\"gpus\":1,\"architecture\":\"amd64\","
                          "\"virtualization\":[\"container\",\"unikernel\"]}"));

    /* partial: only cpu_percent, summed over cores (100 = one busy core) */
    assert_true(apply(w, "{\"cpu_percent\":25}"));
    assert_int_equal(w->cpu_total, 4000);
    assert_int_equal(w->cpu_free, 3750);
    assert_true(apply(w, "{\"cpu_percent\":100}"));
    assert_int_equal(w->cpu_free, 3000);
    assert_int_equal(w->mem_free, 7800);
    assert_string_equal(w->arch, "amd64");
    assert_int_equal(w->nvirt, 2);

    /* cores change keeps the last reading (one busy core) */
    assert_true(apply(w, "{\"cpu_cores\":8}"));
    assert_int_equal(w->cpu_free, 7000);
    assert_true(apply(w, "{\"cpu_percent\":250}")); /* two and a half cores busy */
    assert_int_equal(w->cpu_free, 5500);
    assert_true(apply(w, "{\"cpu_percent\":900}")); /* clamped to 8 cores */
    assert_int_equal(w->cpu_free, 0);
    assert_true(w->cpu_percent == 800.0);
    assert_true(apply(w, "{\"cpu_percent\":0, \"vcpus\":2}")); /* Oakestra alias */
    assert_int_equal(w->cpu_total, 2000);
    assert_int_equal(w->cpu_free, 2000);

    /* memory_total, then memory above it is clamped */
    assert_true(apply(w, "{\"memory_total\":16000, \"memory\":9000}"));
    assert_int_equal(w->mem_total, 16000);
    assert_int_equal(w->mem_free, 9000);
    assert_true(apply(w, "{\"memory\":20000}"));
    assert_int_equal(w->mem_free, 16000);
    assert_int_equal(w->mem_total, 16000);

    /* keys the scheduler does not use change nothing relevant */
    assert_false(apply(w, "{\"disk_percent\":50, \"load1\":0.3, \"kernel_version\":\"6.2\"}"));
    assert_false(apply(w, "{}"));
    workers_free(ws);
}

static void test_apply_info_bad_types(void **state)
{
    workers_t *ws = workers_new();
    worker_t *w = workers_add(ws, NULL, "h");
    assert_true(apply(w, "{\"architecture\":\"arm64\",\"virtualization\":[\"container\"],"
                         "\"cpu_cores\":2,\"cpu_percent\":100,\"memory\":1000,"
                         "\"memory_total\":2000,\"gpus\":0,\"ip\":\"10.1.1.1\"}"));
    assert_false(apply(w, "{\"cpu_cores\":\"4\",\"cpu_percent\":\"10\",\"memory\":-5,"
                          "\"memory_total\":null,\"gpus\":true,\"architecture\":5,"
                          "\"virtualization\":\"unikernel\",\"ip\":[]}"));
    assert_false(apply(w, "{\"cpu_cores\":-1,\"cpu_percent\":-3,\"memory\":1e300,\"gpus\":-2,"
                          "\"architecture\":\"\",\"ip\":\"\"}"));
    assert_false(apply(w, "{\"cpu_cores\":{},\"memory\":[1],\"gpus\":1.5e30}"));
    assert_int_equal(w->cpu_total, 2000);
    assert_int_equal(w->cpu_free, 1000);
    assert_int_equal(w->mem_free, 1000);
    assert_int_equal(w->mem_total, 2000);
    assert_int_equal(w->gpu_total, 0);
    assert_string_equal(w->arch, "arm64");
    assert_string_equal(w->ip, "10.1.1.1");
    assert_int_equal(w->nvirt, 1);

    /* non-string elements of virtualization are dropped; docker dedups */
    assert_true(apply(w, "{\"virtualization\":[1,null,\"docker\",\"container\",\"unikernel\"]}"));
    assert_int_equal(w->nvirt, 2);
    /* an empty list is a valid report: no runtime */
    assert_true(apply(w, "{\"virtualization\":[]}"));
    assert_int_equal(w->nvirt, 0);

    json_t *arr = J("[1,2]");
    assert_false(worker_apply_info(w, arr));
    assert_false(worker_apply_info(w, NULL));
    json_decref(arr);
    workers_free(ws);
}

static void test_reserve(void **state)
{
    workers_t *ws = workers_new();
    worker_t *w = workers_add(ws, NULL, "h");
    apply(w, "{\"cpu_cores\":4,\"cpu_percent\":0,\"memory_total\":8000,\"memory\":8000,"
             "\"gpus\":2}");
    assert_int_equal(worker_free_cpu(w), 4000);
    worker_reserve(w, 1500, 3000, 1, +1);
    assert_int_equal(worker_free_cpu(w), 2500);
    assert_int_equal(worker_free_mem(w), 5000);
    assert_int_equal(worker_free_gpu(w), 1);
    /* reported usage below the reservations' claim: the reservations rule */
    apply(w, "{\"cpu_percent\":40,\"memory\":7500}");
    assert_int_equal(worker_free_cpu(w), 2500);
    assert_int_equal(worker_free_mem(w), 5000);
    /* reported usage above it (other load): the report rules */
    apply(w, "{\"cpu_percent\":300,\"memory\":2000}");
    assert_int_equal(worker_free_cpu(w), 1000);
    assert_int_equal(worker_free_mem(w), 2000);
    /* over-reservation never goes negative */
    worker_reserve(w, 10000, 10000, 5, +1);
    assert_int_equal(worker_free_cpu(w), 0);
    assert_int_equal(worker_free_mem(w), 0);
    assert_int_equal(worker_free_gpu(w), 0);
    worker_reserve(w, 10000, 10000, 5, -1);
    worker_reserve(w, 1500, 3000, 1, -1);
    assert_int_equal(w->res_cpu, 0);
    assert_int_equal(w->res_mem, 0);
    assert_int_equal(w->res_gpu, 0);
    /* a reservation made after the last report counts against it until the
     * next report shows the usage */
    apply(w, "{\"cpu_percent\":200,\"memory\":4000}");
    assert_int_equal(worker_free_cpu(w), 2000);
    worker_reserve(w, 500, 1000, 0, +1);
    assert_int_equal(worker_free_cpu(w), 1500);
    assert_int_equal(worker_free_mem(w), 3000);
    /* usage now visible in the report: the same free capacity */
    assert_false(apply(w, "{\"cpu_percent\":250,\"memory\":3000}"));
    assert_int_equal(worker_free_cpu(w), 1500);
    assert_int_equal(worker_free_mem(w), 3000);
    assert_false(apply(w, "{\"cpu_percent\":250}"));
    worker_reserve(w, 500, 1000, 0, -1);
    assert_int_equal(worker_free_cpu(w), 1500); /* the report still shows the usage */
    worker_reserve(w, 100, 100, 1, -1);         /* release of nothing stays at 0 */
    assert_int_equal(w->res_cpu, 0);
    assert_int_equal(w->res_mem, 0);
    assert_int_equal(w->res_gpu, 0);
    worker_reserve(w, -5, -5, -1, +1); /* negative amounts are ignored */
    assert_int_equal(w->res_cpu, 0);
    workers_free(ws);
}

static void test_capacity(void **state)
{
    workers_t *ws = workers_new();
    json_t *cap = workers_capacity(ws);
    assert_non_null(cap);
    assert_int_equal(oak_json_int(cap, "active_workers", -1), 0);
    assert_int_equal(oak_json_int(cap, "cpu_millis_total", -1), 0);
    assert_int_equal(json_array_size(json_object_get(cap, "per_arch")), 0);
    assert_true(json_is_real(json_object_get(cap, "cpu_percent")));
    assert_true(oak_json_num(cap, "memory_percent", -1) == 0.0);
    json_decref(cap);

    worker_t *a = workers_add(ws, "a", "a");
    worker_t *b = workers_add(ws, "b", "b");
    worker_t *c = workers_add(ws, "c", "c");
    worker_t *off = workers_add(ws, "off", "off");
    apply(a, "{\"architecture\":\"amd64\",\"virtualization\":[\"container\"],\"cpu_cores\":4,"
             "\"cpu_percent\":200,\"memory_total\":8000,\"memory\":4000,\"gpus\":1}");
    apply(b, "{\"architecture\":\"amd64\",\"virtualization\":[\"docker\",\"unikernel\"],"
             "\"cpu_cores\":2,\"cpu_percent\":0,\"memory_total\":2000,\"memory\":2000}");
    apply(c, "{\"architecture\":\"arm64\",\"virtualization\":[\"container\"],\"cpu_cores\":1,"
             "\"cpu_percent\":10,\"memory_total\":1000,\"memory\":500}");
    apply(off, "{\"architecture\":\"riscv64\",\"virtualization\":[\"wasm\"],\"cpu_cores\":64,"
               "\"cpu_percent\":0,\"memory_total\":100000,\"memory\":100000,\"gpus\":8}");
    a->online = b->online = c->online = true;
    worker_reserve(b, 500, 1000, 0, +1);

    cap = workers_capacity(ws);
    assert_int_equal(oak_json_int(cap, "active_workers", -1), 3);
    assert_int_equal(oak_json_int(cap, "cpu_millis_total", -1), 7000);
    assert_int_equal(oak_json_int(cap, "cpu_millis_free", -1), 2000 + 1500 + 900);
    assert_int_equal(oak_json_int(cap, "memory_mb_total", -1), 11000);
    assert_int_equal(oak_json_int(cap, "memory_mb_free", -1), 4000 + 1000 + 500);
    assert_int_equal(oak_json_int(cap, "gpu_total", -1), 1);
    assert_int_equal(oak_json_int(cap, "gpu_free", -1), 1);
    assert_int_equal(oak_json_int(cap, "max_worker_cpu_free", -1), 2000);
    assert_int_equal(oak_json_int(cap, "max_worker_mem_free", -1), 4000);
    assert_int_equal(oak_json_int(cap, "max_worker_gpu_free", -1), 1);
    const char *const all_virt[] = {"container", "unikernel"};
    assert_true(strarr_is(json_object_get(cap, "virtualization"), all_virt, 2));
    assert_int_equal(json_array_size(json_object_get(cap, "per_arch")), 2);
    json_t *amd = find_arch(cap, "amd64"), *arm = find_arch(cap, "arm64");
    assert_non_null(amd);
    assert_non_null(arm);
    assert_null(find_arch(cap, "riscv64"));
    assert_int_equal(oak_json_int(amd, "workers", -1), 2);
    assert_true(strarr_is(json_object_get(amd, "virtualization"), all_virt, 2));
    assert_int_equal(oak_json_int(amd, "cpu_millis_total", -1), 6000);
    assert_int_equal(oak_json_int(amd, "cpu_millis_free", -1), 3500);
    assert_int_equal(oak_json_int(amd, "memory_mb_free", -1), 5000);
    assert_int_equal(oak_json_int(amd, "gpu_free", -1), 1);
    assert_int_equal(oak_json_int(arm, "workers", -1), 1);
    const char *const arm_virt[] = {"container"};
    assert_true(strarr_is(json_object_get(arm, "virtualization"), arm_virt, 1));
    assert_int_equal(oak_json_int(arm, "cpu_millis_free", -1), 900);
    assert_int_equal(oak_json_int(arm, "max_worker_mem_free", -1), 500);
    double cpu_pct = oak_json_num(cap, "cpu_percent", -1);
    double mem_pct = oak_json_num(cap, "memory_percent", -1);
    assert_true(fabs(cpu_pct - 20.0) < 1e-9);                  /* (50 + 0 + 10) / 3 */
    assert_true(fabs(mem_pct - (50.0 + 0 + 50.0) / 3) < 1e-9); /* reported, not reserved */
    json_decref(cap);

    /* going offline removes a worker from the summary */
    a->online = false;
    cap = workers_capacity(ws);
    assert_int_equal(oak_json_int(cap, "active_workers", -1), 2);
    assert_int_equal(oak_json_int(cap, "gpu_total", -1), 0);
    assert_int_equal(oak_json_int(find_arch(cap, "amd64"), "workers", -1), 1);
    const char *const b_virt[] = {"container", "unikernel"};
    assert_true(strarr_is(json_object_get(find_arch(cap, "amd64"), "virtualization"), b_virt, 2));
    json_decref(cap);
    workers_free(ws);
}

static void test_persistence(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_free_ char *dir = th_tmpdir("workers-test");
    _cleanup_free_ char *uri = xasprintf("sqlite:%s/x.db", dir);
    oak_store_t *st = NULL;
    assert_int_equal(oak_store_open(uri, &st, &err), 0);

    workers_t *ws = workers_new();
    worker_t *a = workers_add(ws, NULL, "host-a");
    worker_t *b = workers_add(ws, "bbbbbbbbbbbbbbbbbbbbbbbb", "host-b");
    apply(a, "{\"ip\":\"10.0.0.1\",\"architecture\":\"arm64\",\"virtualization\":[\"docker\","
             "\"unikernel\"],\"cpu_cores\":4,\"cpu_percent\":100,\"memory_total\":8000,"
             "\"memory\":6000,\"gpus\":2}");
    a->online = true;
    a->last_seen = 1700000000.5;
    a->mqtt_password_hash = xstrdup("5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d");
    worker_reserve(a, 1000, 1000, 1, +1);
    apply(b, "{\"cpu_cores\":1,\"memory\":512}");
    assert_int_equal(workers_save(st, a, &err), 0);
    assert_int_equal(workers_save(st, b, &err), 0);
    /* a second save replaces the document */
    apply(b, "{\"cpu_cores\":2}");
    assert_int_equal(workers_save(st, b, &err), 0);
    oak_store_close(st);

    st = NULL;
    assert_int_equal(oak_store_open(uri, &st, &err), 0);
    workers_t *ws2 = workers_new();
    assert_int_equal(workers_load(ws2, st, &err), 0);
    assert_int_equal(workers_count(ws2), 2);
    worker_t *a2 = workers_get(ws2, a->id), *b2 = workers_by_host(ws2, "host-b");
    assert_non_null(a2);
    assert_non_null(b2);
    assert_string_equal(b2->id, b->id);
    assert_false(a2->online);
    assert_string_equal(a2->host, "host-a");
    assert_string_equal(a2->ip, "10.0.0.1");
    assert_string_equal(a2->arch, "arm64");
    assert_int_equal(a2->nvirt, 2);
    assert_string_equal(a2->virt[0], "container");
    assert_string_equal(a2->virt[1], "unikernel");
    assert_int_equal(a2->cpu_total, 4000);
    assert_int_equal(a2->cpu_free, 3000);
    assert_true(a2->cpu_percent == 100.0);
    assert_int_equal(a2->mem_total, 8000);
    assert_int_equal(a2->mem_free, 6000);
    assert_true(a2->mem_total_known);
    assert_int_equal(a2->gpu_total, 2);
    assert_int_equal(a2->gpu_free, 2);
    assert_true(a2->last_seen == 1700000000.5);
    assert_string_equal(a2->mqtt_password_hash, a->mqtt_password_hash);
    assert_int_equal(a2->res_cpu, 0); /* reservations are re-applied by their owner */
    assert_null(b2->mqtt_password_hash);
    assert_int_equal(b2->cpu_total, 2000);
    assert_false(b2->mem_total_known);
    assert_int_equal(b2->mem_total, 512);

    /* loading again skips ids already present */
    assert_int_equal(workers_load(ws2, st, &err), 0);
    assert_int_equal(workers_count(ws2), 2);

    assert_int_equal(workers_delete(st, a->id, &err), 0);
    assert_int_equal(workers_delete(st, a->id, &err), 0); /* missing: not an error */
    workers_t *ws3 = workers_new();
    assert_int_equal(workers_load(ws3, st, &err), 0);
    assert_int_equal(workers_count(ws3), 1);
    assert_non_null(workers_get(ws3, b->id));

    /* a malformed document loads with safe defaults */
    json_t *bad =
        J("{\"_id\":\"zzz\",\"host\":7,\"virtualization\":\"x\",\"cpu_millis_total\":-4}");
    assert_int_equal(oak_store_insert(st, "workers", bad, &err), 0);
    json_decref(bad);
    workers_t *ws4 = workers_new();
    assert_int_equal(workers_load(ws4, st, &err), 0);
    worker_t *z = workers_get(ws4, "zzz");
    assert_non_null(z);
    assert_string_equal(z->host, "");
    assert_int_equal(z->nvirt, 0);
    assert_int_equal(z->cpu_total, 0);

    workers_free(ws);
    workers_free(ws2);
    workers_free(ws3);
    workers_free(ws4);
    oak_store_close(st);
    th_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_get_remove),
        cmocka_unit_test(test_shared_host),
        cmocka_unit_test(test_ten_thousand),
        cmocka_unit_test(test_apply_info_full_and_partial),
        cmocka_unit_test(test_apply_info_bad_types),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_persistence),
    };
    return cmocka_run_group_tests_name("workers", tests, NULL, NULL);
}
