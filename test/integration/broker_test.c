/* Integration tests of cluster_orchestrator/broker.c against a real
 * mosquitto 2.0 with the dynamic-security plugin (test/common/mosquitto.h),
 * with MQTT test clients playing the cluster manager and workers:
 * anonymous access refused, the admin managing clients, each worker
 * confined to its own topics (publish, subscribe, receive, client id),
 * removal disconnecting a worker, idempotent re-adds, the admin password
 * following the configuration, and clients surviving a broker restart.
 * Each test runs its own broker in a fresh directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cluster_orchestrator/broker.h"
#include "lib/oak_alloc.h"
#include "test/common/harness.h"
#include "test/common/mosquitto.h"

#define ADMIN    "admin"
#define ADMIN_PW "admin-secret-1"
#define WAIT_MS  3000
/* how long a dropped message is waited for before its absence counts */
#define QUIET_MS 500

typedef struct fx fx_t;

/* ---- MQTT clients (test/common/mosquitto.h) ---- */

#define BAD_SUB 0x80

/* ---- fixture ---- */

struct fx {
    char *dir;
    th_mosquitto_t m;
    broker_t *b;
    th_mqtt_t *clients[8];
    int nclients;
};

static int try_connect(fx_t *fx, const char *client_id, const char *user, const char *pw)
{
    th_mqtt_t *c = NULL;
    int rc = th_mqtt_connect(fx->m.port, client_id, user, pw, &c);
    th_mqtt_close(c);
    return rc;
}

/* Connects a client that must be accepted; closed by teardown. */
static th_mqtt_t *fx_client(fx_t *fx, const char *client_id, const char *user, const char *pw)
{
    th_mqtt_t *c = NULL;
    int rc = th_mqtt_connect(fx->m.port, client_id, user, pw, &c);
    if (rc != 0)
        fail_msg("%s (client id %s) could not connect: %d", user, client_id, rc);
    assert_true(fx->nclients < 8);
    fx->clients[fx->nclients++] = c;
    return c;
}

static int setup(void **state)
{
    if (!th_mosquitto_available()) {
        *state = NULL;
        return 0;
    }
    fx_t *fx = xcalloc(1, sizeof(*fx));
    fx->dir = th_tmpdir("oak-broker");
    if (th_mosquitto_start(&fx->m, fx->dir, ADMIN, ADMIN_PW) < 0)
        fail_msg("mosquitto did not start");
    oak_err_t err = OAK_ERR_INIT;
    if (broker_open(fx->m.uri, ADMIN, ADMIN_PW, &fx->b, &err) < 0) {
        th_mosquitto_stop(&fx->m);
        fail_msg("broker_open: %s", err.msg);
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    for (int i = 0; i < fx->nclients; i++)
        th_mqtt_close(fx->clients[i]);
    broker_close(fx->b);
    th_mosquitto_stop(&fx->m);
    th_rmtree(fx->dir);
    free(fx->dir);
    free(fx);
    return 0;
}

#define FX()                                                                                       \
    fx_t *fx = *state;                                                                             \
    if (!fx)                                                                                       \
        skip();

static void ok(int rc, oak_err_t *err)
{
    if (rc < 0)
        fail_msg("unexpected error: %s", err->msg);
}

/* ---- tests ---- */

static void test_anonymous_refused(void **state)
{
    FX();
    assert_int_equal(try_connect(fx, "anon", NULL, NULL), 5);
    assert_int_equal(try_connect(fx, "nobody", "nobody", "x"), 5);
    assert_int_equal(try_connect(fx, "admin2", ADMIN, "wrong"), 5);

    /* the admin has the plugin's topics and nodes/#, nothing else */
    th_mqtt_t *c = fx_client(fx, "adm", ADMIN, ADMIN_PW);
    assert_int_equal(th_mqtt_subscribe(c, "#"), BAD_SUB);
    assert_int_equal(th_mqtt_subscribe(c, "other/topic"), BAD_SUB);
    assert_int_equal(th_mqtt_subscribe(c, "nodes/#"), 1);
    assert_int_equal(th_mqtt_subscribe(c, "$CONTROL/dynamic-security/v1/response"), 1);
}

static void test_open_errors(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    broker_t *b = NULL;
    assert_int_equal(broker_open(fx->m.uri, ADMIN, "wrong", &b, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    assert_null(b);
    oak_err_clear(&err);

    /* a manager's credentials cannot drive the plugin */
    ok(broker_add_manager(fx->b, "cm", "cm-pw", &err), &err);
    assert_int_equal(broker_open(fx->m.uri, "cm", "cm-pw", &b, &err), -1);
    assert_int_equal(err.code, OAK_E_FORBIDDEN);
    oak_err_clear(&err);

    /* nothing listening */
    th_mosquitto_t other;
    char *dir = th_tmpdir("oak-broker-closed");
    assert_int_equal(th_mosquitto_start(&other, dir, ADMIN, ADMIN_PW), 0);
    th_mosquitto_stop(&other);
    assert_int_equal(broker_open(other.uri, ADMIN, ADMIN_PW, &b, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAVAILABLE);
    oak_err_clear(&err);
    th_rmtree(dir);
    free(dir);
    assert_int_equal(broker_open("ssl://127.0.0.1:1", ADMIN, ADMIN_PW, &b, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* argument validation */
    const char *bad_ids[] = {"a/b", "w+", "#", "", "nodes/w1/#", "w 1"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        assert_int_equal(broker_add_worker(fx->b, bad_ids[i], "pw", &err), -1);
        assert_int_equal(err.code, OAK_E_INVALID);
        oak_err_clear(&err);
        assert_int_equal(broker_remove_worker(fx->b, bad_ids[i], &err), -1);
        assert_int_equal(err.code, OAK_E_INVALID);
        oak_err_clear(&err);
    }
    assert_int_equal(broker_add_worker(fx->b, "w1", "", &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* names of other clients are not workers' */
    assert_int_equal(broker_add_worker(fx->b, ADMIN, "pw", &err), -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);
    oak_err_clear(&err);
    assert_int_equal(broker_add_worker(fx->b, "cm", "pw", &err), -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);
    oak_err_clear(&err);
    assert_int_equal(broker_remove_worker(fx->b, ADMIN, &err), -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);
    oak_err_clear(&err);
    ok(broker_add_worker(fx->b, "w9", "pw9", &err), &err);
    assert_int_equal(broker_add_manager(fx->b, "w9", "pw", &err), -1);
    assert_int_equal(err.code, OAK_E_CONFLICT);
    oak_err_clear(&err);
    /* and nothing was changed by the refusals */
    assert_int_equal(try_connect(fx, "adm", ADMIN, ADMIN_PW), 0);
    assert_int_equal(try_connect(fx, "cm", "cm", "cm-pw"), 0);
    assert_int_equal(try_connect(fx, "w9", "w9", "pw9"), 0);
}

static void test_worker_acl(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    ok(broker_add_manager(fx->b, "cm", "cm-pw", &err), &err);
    ok(broker_add_worker(fx->b, "w1", "pw-1", &err), &err);
    ok(broker_add_worker(fx->b, "w2", "pw-2", &err), &err);

    th_mqtt_t *mgr = fx_client(fx, "cluster-manager", "cm", "cm-pw");
    assert_int_equal(th_mqtt_subscribe(mgr, "nodes/#"), 1);
    th_mqtt_t *w1 = fx_client(fx, "w1", "w1", "pw-1");
    th_mqtt_t *w2 = fx_client(fx, "w2", "w2", "pw-2");

    /* w1's own topics reach the manager */
    const char *own[] = {"nodes/w1/status", "nodes/w1/information",    "nodes/w1/state",
                         "nodes/w1/job",    "nodes/w1/jobs/resources", "nodes/w1/logs"};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        assert_int_equal(th_mqtt_publish(w1, own[i], "{}"), 0);
        assert_true(th_mqtt_received(mgr, own[i], "{}", WAIT_MS));
    }

    /* w1 impersonating w2, or publishing on any control topic or outside
     * nodes/, is dropped (3.1.1: PUBACK, no delivery): a message published
     * after them on w1's own topic arrives, the forged ones never do */
    assert_int_equal(th_mqtt_publish(w1, "nodes/w2/information", "forged"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w2/status", "{\"status\":\"offline\"}"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/control/deploy", "self-deploy"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/control", "self"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w2/control/deploy", "for-w2-forged"), 0);
    assert_int_equal(th_mqtt_publish(w1, "other/topic", "stray"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/state", "marker"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w1/state", "marker", WAIT_MS));
    assert_false(th_mqtt_received(mgr, "nodes/w2/information", NULL, QUIET_MS));
    assert_int_equal(th_mqtt_count(mgr, "nodes/w2/"), 0);
    assert_int_equal(th_mqtt_count(mgr, "nodes/w1/control"), 0);

    /* subscriptions: only w1's own control topics */
    const char *foreign[] = {"nodes/w2/control/#",
                             "nodes/+/control/#",
                             "nodes/#",
                             "#",
                             "nodes/w1/information",
                             "nodes/w1/#",
                             "+/w1/control/#",
                             "$CONTROL/dynamic-security/#",
                             "$SYS/#"};
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++)
        if (th_mqtt_subscribe(w1, foreign[i]) != BAD_SUB)
            fail_msg("w1 may subscribe to %s", foreign[i]);
    assert_int_equal(th_mqtt_subscribe(w1, "nodes/w1/control/#"), 1);
    assert_int_equal(th_mqtt_subscribe(w1, "nodes/w1/control/deploy"), 1);
    assert_int_equal(th_mqtt_subscribe(w2, "nodes/w2/control/#"), 1);

    /* control messages reach only their worker: w2's is sent first, so by
     * the time w1 has its own it would have had w2's */
    assert_int_equal(th_mqtt_publish(mgr, "nodes/w2/control/deploy", "for-w2"), 0);
    assert_int_equal(th_mqtt_publish(mgr, "nodes/w1/control/delete", "for-w1"), 0);
    assert_true(th_mqtt_received(w2, "nodes/w2/control/deploy", "for-w2", WAIT_MS));
    assert_true(th_mqtt_received(w1, "nodes/w1/control/delete", "for-w1", WAIT_MS));
    assert_int_equal(th_mqtt_count(w1, "nodes/w2/"), 0);
    assert_int_equal(th_mqtt_count(w2, "nodes/w1/"), 0);
    /* neither got the control messages w1 forged */
    assert_false(th_mqtt_received(w1, "nodes/w1/control/deploy", "self-deploy", 0));
    assert_false(th_mqtt_received(w2, "nodes/w2/control/deploy", "for-w2-forged", 0));

    /* the manager may only publish control messages */
    assert_int_equal(th_mqtt_publish(mgr, "nodes/w1/information", "fake"), 0);
    assert_int_equal(th_mqtt_publish(mgr, "nodes/w1/control/x", "mgr-marker"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w1/control/x", "mgr-marker", WAIT_MS));
    assert_false(th_mqtt_received(mgr, "nodes/w1/information", "fake", 0));

    /* the worker's client id is tied to its name: w1 cannot take over w2's
     * session (which would disconnect w2); wrong passwords are refused */
    assert_int_equal(try_connect(fx, "w2", "w1", "pw-1"), 5);
    assert_int_equal(try_connect(fx, "w1x", "w1", "pw-1"), 5);
    assert_int_equal(try_connect(fx, "w1", "w1", "pw-2"), 5);
    assert_int_equal(try_connect(fx, "w1", "w1", NULL), 5);
    assert_false(th_mqtt_closed(w2, 100));
    assert_int_equal(th_mqtt_publish(w2, "nodes/w2/status", "{\"status\":\"online\"}"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w2/status", "{\"status\":\"online\"}", WAIT_MS));
}

static void test_remove_worker(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    ok(broker_add_worker(fx->b, "w1", "pw-1", &err), &err);
    ok(broker_add_worker(fx->b, "w2", "pw-2", &err), &err);
    th_mqtt_t *w1 = fx_client(fx, "w1", "w1", "pw-1");
    th_mqtt_t *w2 = fx_client(fx, "w2", "w2", "pw-2");

    ok(broker_remove_worker(fx->b, "w1", &err), &err);
    assert_true(th_mqtt_closed(w1, WAIT_MS));
    assert_false(th_mqtt_closed(w2, 100));
    assert_int_equal(try_connect(fx, "w1", "w1", "pw-1"), 5);

    /* idempotent; the role went with the client and comes back with it */
    ok(broker_remove_worker(fx->b, "w1", &err), &err);
    ok(broker_remove_worker(fx->b, "never-added", &err), &err);
    ok(broker_add_worker(fx->b, "w1", "pw-1b", &err), &err);
    th_mqtt_t *back = fx_client(fx, "w1", "w1", "pw-1b");
    assert_int_equal(th_mqtt_subscribe(back, "nodes/w1/control/#"), 1);
    assert_int_equal(th_mqtt_subscribe(back, "nodes/w2/control/#"), BAD_SUB);
}

static void test_readd_changes_password(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    ok(broker_add_manager(fx->b, "cm", "cm-pw", &err), &err);
    ok(broker_add_manager(fx->b, "cm", "cm-pw2", &err), &err);
    ok(broker_add_worker(fx->b, "w1", "old", &err), &err);
    th_mqtt_t *old = fx_client(fx, "w1", "w1", "old");
    ok(broker_add_worker(fx->b, "w1", "new", &err), &err);
    /* the plugin disconnects a client whose settings changed */
    assert_true(th_mqtt_closed(old, WAIT_MS));
    assert_int_equal(try_connect(fx, "w1", "w1", "old"), 5);
    assert_int_equal(try_connect(fx, "cm", "cm", "cm-pw"), 5);

    /* the new passwords work, with the same roles */
    th_mqtt_t *mgr = fx_client(fx, "cm", "cm", "cm-pw2");
    assert_int_equal(th_mqtt_subscribe(mgr, "nodes/#"), 1);
    th_mqtt_t *w1 = fx_client(fx, "w1", "w1", "new");
    assert_int_equal(th_mqtt_subscribe(w1, "nodes/w1/control/#"), 1);
    assert_int_equal(th_mqtt_subscribe(w1, "nodes/#"), BAD_SUB);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/control/x", "dropped"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/status", "{\"status\":\"online\"}"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w1/status", NULL, WAIT_MS));
    assert_int_equal(th_mqtt_count(mgr, "nodes/w1/control"), 0);
    assert_int_equal(try_connect(fx, "w1-again", "w1", "new"), 5);
}

static void test_restart_keeps_clients(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    ok(broker_add_manager(fx->b, "cm", "cm-pw", &err), &err);
    ok(broker_add_worker(fx->b, "w1", "pw-1", &err), &err);

    assert_int_equal(th_mosquitto_restart(&fx->m), 0);

    /* the admin connection is reopened by the next call */
    ok(broker_add_worker(fx->b, "w2", "pw-2", &err), &err);

    th_mqtt_t *mgr = fx_client(fx, "cm", "cm", "cm-pw");
    assert_int_equal(th_mqtt_subscribe(mgr, "nodes/#"), 1);
    th_mqtt_t *w1 = fx_client(fx, "w1", "w1", "pw-1");
    assert_int_equal(th_mqtt_publish(w1, "nodes/w2/information", "forged"), 0);
    assert_int_equal(th_mqtt_publish(w1, "nodes/w1/information", "after-restart"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w1/information", "after-restart", WAIT_MS));
    assert_int_equal(th_mqtt_count(mgr, "nodes/w2/"), 0);
    th_mqtt_t *w2 = fx_client(fx, "w2", "w2", "pw-2");
    assert_int_equal(th_mqtt_publish(w2, "nodes/w2/information", "w2-up"), 0);
    assert_true(th_mqtt_received(mgr, "nodes/w2/information", "w2-up", WAIT_MS));
}

static void test_config_rewrite(void **state)
{
    FX();
    oak_err_t err = OAK_ERR_INIT;
    char *conf = NULL, *path = xasprintf("%s/dynamic-security.json", fx->dir);
    ok(broker_add_worker(fx->b, "w1", "pw-1", &err), &err);
    broker_close(fx->b);
    fx->b = NULL;
    th_mosquitto_stop(&fx->m);

    /* files are private */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    char *cpath = xasprintf("%s/mosquitto.conf", fx->dir);
    assert_int_equal(stat(cpath, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    char *text = th_read_file(cpath, NULL);
    assert_non_null(strstr(text, "allow_anonymous false"));
    assert_non_null(strstr(text, "per_listener_settings false"));
    free(text);
    free(cpath);

    /* the same settings leave the plugin's file untouched */
    char *before = th_read_file(path, NULL);
    ok(broker_write_config(fx->dir, "127.0.0.1", fx->m.port, ADMIN, ADMIN_PW, &conf, &err), &err);
    free(conf);
    char *after = th_read_file(path, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* bad arguments */
    assert_int_equal(broker_write_config(fx->dir, NULL, 0, ADMIN, ADMIN_PW, &conf, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    assert_int_equal(broker_write_config("/tmp/a b", NULL, 1883, ADMIN, ADMIN_PW, &conf, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    assert_int_equal(broker_write_config(fx->dir, NULL, 1883, "ad min", ADMIN_PW, &conf, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);

    /* a new admin password replaces the old one; workers are kept */
    snprintf(fx->m.admin_password, sizeof(fx->m.admin_password), "%s", "admin-secret-2");
    assert_int_equal(th_mosquitto_restart(&fx->m), 0);
    broker_t *b = NULL;
    assert_int_equal(broker_open(fx->m.uri, ADMIN, ADMIN_PW, &b, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    oak_err_clear(&err);
    ok(broker_open(fx->m.uri, ADMIN, "admin-secret-2", &fx->b, &err), &err);
    assert_int_equal(try_connect(fx, "w1", "w1", "pw-1"), 0);
    th_mosquitto_stop(&fx->m);

    /* a damaged file is reported, not replaced */
    FILE *f = fopen(path, "w");
    fputs("{\"clients\": 3", f);
    fclose(f);
    assert_int_equal(
        broker_write_config(fx->dir, "127.0.0.1", fx->m.port, ADMIN, ADMIN_PW, &conf, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    oak_err_clear(&err);
    char *damaged = th_read_file(path, NULL);
    assert_string_equal(damaged, "{\"clients\": 3");
    free(damaged);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_anonymous_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_acl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readd_changes_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_rewrite, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
