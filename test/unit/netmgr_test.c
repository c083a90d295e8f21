/* Unit tests of the net-manager hook (node_engine/netmgr): a fake
 * net-manager (lib/oak_http on a unix socket, run on its own loop thread)
 * receives the deploy and undeploy calls with their payloads; an error
 * answer is reported with net-manager's message; without a socket both
 * calls are no-ops that succeed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_http.h"
#include "lib/oak_json.h"
#include "lib/oak_loop.h"
#include "node_engine/netmgr.h"
#include "test/common/harness.h"

typedef struct {
    oak_loop_t *loop;
    oak_http_server_t *srv;
    pthread_t th;
    char *dir, *sock;
    /* what the fake received (written on the loop thread, read after a
     * round trip, which orders the accesses) */
    int deploys, undeploys;
    json_t *last;
    int answer; /* status to answer with */
} fx_t;

static void record(fx_t *f, const oak_http_req_t *req, oak_http_resp_t *resp)
{
    json_decref(f->last);
    f->last = json_loadb(req->body, req->body_len, 0, NULL);
    if (f->answer >= 300)
        oak_http_resp_json(resp, f->answer, json_pack("{s:s}", "message", "no free addresses"));
    else
        oak_http_resp_json(resp, f->answer, json_object());
}

static void h_deploy(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    fx_t *f = ctx;
    f->deploys++;
    record(f, req, resp);
}

static void h_undeploy(const oak_http_req_t *req, oak_http_resp_t *resp, void *ctx)
{
    fx_t *f = ctx;
    f->undeploys++;
    record(f, req, resp);
}

static const oak_http_route_t routes[] = {
    {"POST", "/container/deploy", h_deploy},
    {"POST", "/container/undeploy", h_undeploy},
};

static void *loop_main(void *arg)
{
    oak_loop_run(arg);
    return NULL;
}

static void mark_running(oak_loop_t *loop, void *data)
{
    __atomic_store_n((int *)data, 1, __ATOMIC_RELEASE);
}

static int setup(void **state)
{
    fx_t *f = xcalloc(1, sizeof(*f));
    oak_err_t err = OAK_ERR_INIT;
    f->dir = th_tmpdir("netmgr-test");
    f->sock = xasprintf("%s/netmanager.sock", f->dir);
    f->answer = 200;
    f->loop = oak_loop_new();
    _cleanup_free_ char *addr = xasprintf("unix:%s", f->sock);
    if (oak_http_server_start(f->loop, addr, 0, routes, 2, f, 65536, &f->srv, &err) < 0) {
        fprintf(stderr, "fake net-manager: %s\n", err.msg);
        return -1;
    }
    pthread_create(&f->th, NULL, loop_main, f->loop);
    int running = 0;
    oak_loop_post(f->loop, mark_running, &running);
    while (!__atomic_load_n(&running, __ATOMIC_ACQUIRE))
        usleep(1000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    oak_loop_stop(f->loop);
    pthread_join(f->th, NULL);
    oak_http_server_stop(f->srv);
    oak_loop_free(f->loop);
    json_decref(f->last);
    th_rmtree(f->dir);
    free(f->dir);
    free(f->sock);
    free(f);
    return 0;
}

static void test_attach_detach(void **state)
{
    fx_t *f = *state;
    oak_err_t err = OAK_ERR_INIT;
    bool done = false;
    assert_true(netmgr_present(f->sock));
    assert_int_equal(netmgr_attach(f->sock, 4242, "app.ns.svc.ns", 3, "8080:80/tcp", &done, &err),
                     0);
    assert_true(done);
    assert_int_equal(f->deploys, 1);
    assert_int_equal(oak_json_int(f->last, "pid", 0), 4242);
    assert_string_equal(oak_json_str(f->last, "serviceName"), "app.ns.svc.ns");
    assert_int_equal(oak_json_int(f->last, "instanceNumber", -1), 3);
    assert_string_equal(oak_json_str(f->last, "portMappings"), "8080:80/tcp");

    done = false;
    assert_int_equal(netmgr_detach(f->sock, "app.ns.svc.ns", 3, &done, &err), 0);
    assert_true(done);
    assert_int_equal(f->undeploys, 1);
    assert_string_equal(oak_json_str(f->last, "serviceName"), "app.ns.svc.ns");
    assert_int_equal(oak_json_int(f->last, "instanceNumber", -1), 3);
    assert_null(json_object_get(f->last, "pid"));
}

static void test_error_answer(void **state)
{
    fx_t *f = *state;
    oak_err_t err = OAK_ERR_INIT;
    bool done = true;
    f->answer = 500;
    assert_int_equal(netmgr_attach(f->sock, 1, "a.b.c.d", 0, "", &done, &err), -1);
    assert_false(done);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "500"));
    assert_non_null(strstr(err.msg, "no free addresses"));
    oak_err_clear(&err);
    assert_int_equal(f->deploys, 1);
}

/* No net-manager: nothing is called, the hook succeeds and says so. */
static void test_absent_is_noop(void **state)
{
    fx_t *f = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_free_ char *missing = xasprintf("%s/absent.sock", f->dir);
    bool done = true;
    assert_false(netmgr_present(missing));
    assert_int_equal(netmgr_attach(missing, 4242, "a.b.c.d", 0, "", &done, &err), 0);
    assert_false(done);
    done = true;
    assert_int_equal(netmgr_detach(missing, "a.b.c.d", 0, &done, &err), 0);
    assert_false(done);
    /* a regular file at the path is not a net-manager either */
    FILE *fp = fopen(missing, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_false(netmgr_present(missing));
    done = true;
    assert_int_equal(netmgr_attach(missing, 4242, "a.b.c.d", 0, "", &done, &err), 0);
    assert_false(done);
    assert_false(netmgr_present(NULL));
    assert_false(netmgr_present(""));
    assert_int_equal(f->deploys + f->undeploys, 0);
}

/* A socket file nobody listens on (net-manager crashed): an error, not a
 * silent no-op, since the instance would be left without its network. */
static void test_dead_socket(void **state)
{
    fx_t *f = *state;
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_free_ char *dead = xasprintf("%s/dead.sock", f->dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", dead);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd); /* bound, never listening: connect is refused */
    bool done = true;
    assert_true(netmgr_present(dead));
    assert_int_equal(netmgr_attach(dead, 1, "a.b.c.d", 0, "", &done, &err), -1);
    assert_false(done);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
    oak_err_clear(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attach_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_socket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
