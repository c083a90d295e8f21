/* Unit tests for cluster_orchestrator/sched_worker: requests built from
 * service documents, every filter (online, virtualization, architecture,
 * direct list, exclusion, capacity, GPU), both policies and their
 * tie-break, failure statuses and details, reservations preventing
 * oversubscription, and a randomised check that the pick is optimal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_orchestrator/sched_worker.h"
#include "lib/oak_json.h"

static char st[64], det[512];

static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return j;
}

/* An online worker with cores at pct % load (of the whole worker; the
 * protocol's cpu_percent is summed over cores), mem MB free of mem_total. */
static worker_t *mk(workers_t *ws, const char *id, const char *host, const char *arch,
                    const char *virt, double cores, double pct, int mem_total, int mem, int gpus)
{
    worker_t *w = workers_add(ws, id, host);
    assert_non_null(w);
    json_t *virts = json_array();
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", virt);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(virts, json_string(t));
    json_t *info = json_pack("{s:s, s:o, s:f, s:f, s:i, s:i, s:i}", "architecture", arch,
                             "virtualization", virts, "cpu_cores", cores, "cpu_percent", pct * cores,
                             "memory_total", mem_total, "memory", mem, "gpus", gpus);
    worker_apply_info(w, info);
    json_decref(info);
    w->online = true;
    return w;
}

static wsched_req_t req_of(int64_t cpu, int64_t mem)
{
    wsched_req_t r = {0};
    r.cpu_millis = cpu;
    r.mem_mb = mem;
    return r;
}

static worker_t *pick(workers_t *ws, const wsched_req_t *r, wsched_policy_t p)
{
    st[0] = det[0] = '\0';
    return sched_worker_pick(ws, r, p, st, sizeof(st), det, sizeof(det));
}

static void expect_fail(workers_t *ws, const wsched_req_t *r, const char *status,
                        const char *detail_part)
{
    worker_t *w = pick(ws, r, WSCHED_BESTFIT);
    if (w)
        fail_msg("expected %s, got worker %s", status, w->host);
    assert_string_equal(st, status);
    if (!strstr(det, detail_part))
        fail_msg("detail '%s' lacks '%s'", det, detail_part);
}

static void test_req_from_service(void **state)
{
    json_t *svc = J("{\"vcpus\":2,\"memory\":512,\"vgpus\":1,\"virtualization\":\"unikernel\","
                    "\"arch\":[\"arm64\",\"amd64\"],\"constraints\":[{\"type\":\"geo\"},"
                    "{\"type\":\"direct\",\"cluster\":\"c1\"},"
                    "{\"type\":\"direct\",\"node\":\"a;b\"}]}");
    wsched_req_t r;
    wsched_req_from_service(svc, &r);
    assert_int_equal(r.cpu_millis, 2000);
    assert_int_equal(r.mem_mb, 512);
    assert_int_equal(r.gpu, 1);
    assert_string_equal(r.virtualization, "unikernel");
    assert_int_equal(json_array_size(r.arch), 2);
    assert_string_equal(r.direct_nodes, "a;b");
    assert_null(r.exclude);
    json_decref(svc);

    svc = J("{\"vcpus\":\"2\",\"memory\":-5,\"vgpus\":true,\"virtualization\":[\"docker\"],"
            "\"arch\":5,\"constraints\":[{\"type\":\"direct\",\"node\":\" ; \"}]}");
    wsched_req_from_service(svc, &r);
    assert_int_equal(r.cpu_millis, 0);
    assert_int_equal(r.mem_mb, 0);
    assert_int_equal(r.gpu, 0);
    assert_string_equal(r.virtualization, "docker");
    assert_null(r.arch);
    assert_null(r.direct_nodes);
    json_decref(svc);

    svc = J("{\"vcpus\":0.5,\"constraints\":\"bad\"}");
    wsched_req_from_service(svc, &r);
    assert_int_equal(r.cpu_millis, 500);
    assert_null(r.virtualization);
    json_decref(svc);

    assert_int_equal(wsched_policy_parse("bestfit"), WSCHED_BESTFIT);
    assert_int_equal(wsched_policy_parse("best_fit"), WSCHED_BESTFIT);
    assert_int_equal(wsched_policy_parse("spread"), WSCHED_SPREAD);
    assert_int_equal(wsched_policy_parse("random"), -1);
    assert_int_equal(wsched_policy_parse(NULL), -1);
}

static void test_online_and_virtualization(void **state)
{
    workers_t *ws = workers_new();
    wsched_req_t r = req_of(100, 100);
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "0 of 0 worker(s) online");

    worker_t *off = mk(ws, "off", "off", "amd64", "container", 8, 0, 8000, 8000, 0);
    off->online = false;
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "0 of 1 worker(s) online");

    worker_t *c = mk(ws, "c", "c", "amd64", "docker", 1, 0, 1000, 1000, 0);
    worker_t *u = mk(ws, "u", "u", "amd64", "unikernel", 1, 0, 1000, 1000, 0);
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), c); /* NULL virtualization = container */
    r.virtualization = "docker";
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), c);
    r.virtualization = "container";
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), c);
    r.virtualization = "unikernel";
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), u);
    r.virtualization = "wasm";
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "virtualization 'wasm'");
    assert_non_null(strstr(det, "rejected: 2 virtualization"));

    /* the only container worker goes offline */
    r.virtualization = NULL;
    c->online = false;
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "1 of 3 worker(s) online");
    off->online = true;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), off);
    workers_free(ws);
}

static void test_arch(void **state)
{
    workers_t *ws = workers_new();
    worker_t *x86 = mk(ws, "x", "x", "amd64", "container", 4, 0, 4000, 4000, 0);
    worker_t *arm = mk(ws, "a", "a", "arm64", "container", 1, 0, 1000, 1000, 0);
    wsched_req_t r = req_of(100, 100);
    json_t *arch = J("[\"arm64\"]");
    r.arch = arch;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), arm);
    json_decref(arch);
    arch = J("[\"riscv64\", \"amd64\"]");
    r.arch = arch;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), x86);
    json_decref(arch);
    arch = json_string("arm64"); /* a single string is accepted */
    r.arch = arch;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), arm);
    json_decref(arch);
    arch = J("[]"); /* empty: any */
    r.arch = arch;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), x86);
    json_decref(arch);
    arch = J("[\"riscv64\", 7]");
    r.arch = arch;
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "architecture [riscv64]");
    assert_non_null(strstr(det, "2 architecture"));
    json_decref(arch);
    workers_free(ws);
}

static void test_direct(void **state)
{
    workers_t *ws = workers_new();
    worker_t *a = mk(ws, "aaaa", "worker-a", "amd64", "container", 8, 0, 8000, 8000, 0);
    worker_t *b = mk(ws, "bbbb", "worker-b", "amd64", "container", 2, 0, 2000, 2000, 0);
    worker_t *c = mk(ws, "cccc", "worker-c", "amd64", "container", 4, 0, 4000, 4000, 0);
    wsched_req_t r = req_of(1000, 100);
    r.direct_nodes = "worker-b;worker-c";
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), b);
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), c);
    r.direct_nodes = " worker-a ; bbbb ;";
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), a);
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), b);
    r.direct_nodes = "cccc";
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), c);
    /* exact match only: no prefixes */
    r.direct_nodes = "worker;worker-a-2;ccc;worker-";
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "direct list 'worker;worker-a-2;ccc;worker-'");
    assert_non_null(strstr(det, "3 direct list"));
    /* a named worker that is offline */
    r.direct_nodes = "worker-b";
    b->online = false;
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "direct list 'worker-b'");
    /* a named worker without room */
    b->online = true;
    r.cpu_millis = 3000;
    expect_fail(ws, &r, "NO_WORKER_CAPACITY", "1 qualified worker(s)");
    /* empty list: no constraint */
    r.direct_nodes = "";
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), c);
    workers_free(ws);
}

static void test_exclude(void **state)
{
    workers_t *ws = workers_new();
    worker_t *a = mk(ws, "aaaa", "worker-a", "amd64", "container", 8, 0, 8000, 8000, 0);
    worker_t *b = mk(ws, "bbbb", "worker-b", "amd64", "container", 2, 0, 2000, 2000, 0);
    wsched_req_t r = req_of(1000, 100);
    json_t *ex = J("[\"bbbb\", 3, null]");
    r.exclude = ex;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), a);
    json_decref(ex);
    ex = J("[\"aaaa\"]");
    r.exclude = ex;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), b);
    json_decref(ex);
    ex = J("[\"worker-a\", \"bbbb\"]"); /* ids, not host names */
    r.exclude = ex;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), a);
    json_decref(ex);
    ex = J("[\"aaaa\", \"bbbb\"]");
    r.exclude = ex;
    expect_fail(ws, &r, "NO_QUALIFIED_WORKER_FOUND", "2 excluded");
    json_decref(ex);
    workers_free(ws);
}

static void test_capacity_and_gpu(void **state)
{
    workers_t *ws = workers_new();
    worker_t *a = mk(ws, "a", "a", "amd64", "container", 4, 50, 8000, 1000, 0); /* 2000m free */
    worker_t *g = mk(ws, "g", "g", "amd64", "container", 2, 0, 4000, 3000, 2);
    wsched_req_t r = req_of(2000, 1000);
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), a); /* both fit exactly in cpu */
    r.mem_mb = 1001;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), g);
    r.cpu_millis = 2001;
    expect_fail(ws, &r, "NO_WORKER_CAPACITY", "2001 mCPU, 1001 MB memory, 0 GPU");
    assert_non_null(strstr(det, "2 qualified worker(s), the largest free is 2000 mCPU, 3000 MB, "
                                "2 GPU"));
    r = req_of(100, 100);
    r.gpu = 1;
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), g);
    r.gpu = 3;
    expect_fail(ws, &r, "NO_WORKER_CAPACITY", "3 GPU");
    r.gpu = 2;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), g);
    worker_reserve(g, 100, 100, 2, +1);
    expect_fail(ws, &r, "NO_WORKER_CAPACITY", "largest free is 2000 mCPU, 2900 MB, 0 GPU");
    worker_reserve(g, 100, 100, 2, -1);
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), g);
    /* a zero request fits anywhere online */
    r = req_of(0, 0);
    assert_non_null(pick(ws, &r, WSCHED_BESTFIT));
    workers_free(ws);
}

static void test_policies(void **state)
{
    workers_t *ws = workers_new();
    /* left after 1000m/500MB, normalised: big 0.875+0.9375, small 0.5+0.75,
     * busy 0.25+0.125 */
    worker_t *big = mk(ws, "big", "big", "amd64", "container", 8, 0, 8000, 8000, 0);
    worker_t *small = mk(ws, "small", "small", "amd64", "container", 2, 0, 2000, 2000, 0);
    worker_t *busy = mk(ws, "busy", "busy", "amd64", "container", 4, 50, 4000, 1000, 0);
    wsched_req_t r = req_of(1000, 500);
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), busy);
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), big);
    /* normalisation: small has more left relative to its size than busy */
    busy->online = false;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), small);
    busy->online = true;
    /* only big has 3 cores */
    r.cpu_millis = 3000;
    assert_ptr_equal(pick(ws, &r, WSCHED_BESTFIT), big);
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), big);

    /* best fit packs busy until it is full, then small, then big */
    r = req_of(1000, 500);
    const char *want[] = {"busy", "busy", "small", "small", "big"};
    for (size_t i = 0; i < 5; i++) {
        worker_t *w = pick(ws, &r, WSCHED_BESTFIT);
        assert_non_null(w);
        assert_string_equal(w->host, want[i]);
        worker_reserve(w, r.cpu_millis, r.mem_mb, r.gpu, +1);
    }
    /* spread now prefers big, which has the most left */
    assert_ptr_equal(pick(ws, &r, WSCHED_SPREAD), big);
    workers_free(ws);
}

static void test_tie_by_id(void **state)
{
    workers_t *ws = workers_new();
    mk(ws, "m", "h3", "amd64", "container", 2, 0, 2000, 2000, 0);
    mk(ws, "z", "h1", "amd64", "container", 2, 0, 2000, 2000, 0);
    mk(ws, "b", "h2", "amd64", "container", 2, 0, 2000, 2000, 0);
    mk(ws, "q", "h4", "amd64", "container", 2, 0, 2000, 2000, 0);
    wsched_req_t r = req_of(500, 500);
    assert_string_equal(pick(ws, &r, WSCHED_BESTFIT)->id, "b");
    assert_string_equal(pick(ws, &r, WSCHED_SPREAD)->id, "b");
    workers_remove(ws, "b"); /* reorders the table */
    assert_string_equal(pick(ws, &r, WSCHED_BESTFIT)->id, "m");
    assert_string_equal(pick(ws, &r, WSCHED_SPREAD)->id, "m");
    workers_free(ws);
}

static void test_no_oversubscription(void **state)
{
    srand(42);
    for (int policy = 0; policy < 2; policy++) {
        workers_t *ws = workers_new();
        char id[16];
        for (int i = 0; i < 40; i++) {
            snprintf(id, sizeof(id), "w%02d", i);
            mk(ws, id, id, i % 3 ? "amd64" : "arm64", i % 4 ? "container" : "container,unikernel",
               1 + rand() % 8, rand() % 60, 16000, 500 + rand() % 8000, rand() % 3);
        }
        int placed = 0;
        char status_seen[64] = "";
        for (int k = 0; k < 10000; k++) {
            wsched_req_t r = req_of(100 + rand() % 1500, 64 + rand() % 1024);
            r.gpu = rand() % 5 == 0;
            worker_t *w = pick(ws, &r, (wsched_policy_t)policy);
            if (!w) {
                assert_string_equal(st, "NO_WORKER_CAPACITY");
                snprintf(status_seen, sizeof(status_seen), "%s", st);
                continue;
            }
            worker_reserve(w, r.cpu_millis, r.mem_mb, r.gpu, +1);
            placed++;
        }
        assert_true(placed > 40);
        assert_string_equal(status_seen, "NO_WORKER_CAPACITY");
        for (size_t i = 0; i < workers_count(ws); i++) {
            worker_t *w = workers_at(ws, i);
            /* no report arrived during the placements: reservations stay
             * within what was reported free, and within the totals */
            assert_true(w->res_cpu <= w->cpu_free);
            assert_true(w->res_mem <= w->mem_free);
            assert_true(w->res_gpu <= w->gpu_total);
            assert_true(w->res_cpu <= w->cpu_total);
        }
        /* release everything: the reported free capacity is back */
        for (size_t i = 0; i < workers_count(ws); i++) {
            worker_t *w = workers_at(ws, i);
            worker_reserve(w, w->res_cpu, w->res_mem, w->res_gpu, -1);
            assert_int_equal(worker_free_cpu(w), w->cpu_free);
            assert_int_equal(worker_free_mem(w), w->mem_free);
            assert_int_equal(worker_free_gpu(w), w->gpu_total);
        }
        wsched_req_t r = req_of(100, 64);
        assert_non_null(pick(ws, &r, (wsched_policy_t)policy));
        workers_free(ws);
    }
}

/* The score the scheduler is documented to use. */
static double score(const worker_t *w, const wsched_req_t *r)
{
    double c = w->cpu_total ? (double)(worker_free_cpu(w) - r->cpu_millis) / w->cpu_total : 0;
    double m = w->mem_total ? (double)(worker_free_mem(w) - r->mem_mb) / w->mem_total : 0;
    return c + m;
}

static void test_pick_is_optimal(void **state)
{
    srand(7);
    workers_t *ws = workers_new();
    char id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "w%03d", (i * 37) % 300);
        worker_t *w = mk(ws, id, id, i % 2 ? "amd64" : "arm64", "container", 1 + rand() % 16,
                         rand() % 100, 32000, 256 + rand() % 30000, rand() % 2);
        w->online = rand() % 10 != 0;
    }
    json_t *arch = J("[\"arm64\"]");
    for (int k = 0; k < 400; k++) {
        wsched_req_t r = req_of(rand() % 4000, rand() % 8000);
        r.gpu = rand() % 4 == 0;
        r.arch = k % 3 == 0 ? arch : NULL;
        wsched_policy_t p = (wsched_policy_t)(k % 2);
        worker_t *w = pick(ws, &r, p);
        for (size_t i = 0; i < workers_count(ws); i++) {
            worker_t *o = workers_at(ws, i);
            bool fits = o->online && worker_free_cpu(o) >= r.cpu_millis &&
                        worker_free_mem(o) >= r.mem_mb && worker_free_gpu(o) >= r.gpu &&
                        (!r.arch || strcmp(o->arch, "arm64") == 0);
            if (!w) {
                assert_false(fits);
                continue;
            }
            if (!fits || o == w)
                continue;
            double so = score(o, &r), sw = score(w, &r);
            if (p == WSCHED_BESTFIT)
                assert_true(sw < so || (sw == so && strcmp(w->id, o->id) < 0));
            else
                assert_true(sw > so || (sw == so && strcmp(w->id, o->id) < 0));
        }
        if (w)
            worker_reserve(w, r.cpu_millis, r.mem_mb, r.gpu, +1);
    }
    json_decref(arch);
    workers_free(ws);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_req_from_service),
        cmocka_unit_test(test_online_and_virtualization),
        cmocka_unit_test(test_arch),
        cmocka_unit_test(test_direct),
        cmocka_unit_test(test_exclude),
        cmocka_unit_test(test_capacity_and_gpu),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_tie_by_id),
        cmocka_unit_test(test_no_oversubscription),
        cmocka_unit_test(test_pick_is_optimal),
    };
    return cmocka_run_group_tests_name("sched_worker", tests, NULL, NULL);
}
