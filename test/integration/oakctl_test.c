/* Integration tests of oakctl: the built binary ($OAK_BUILD_DIR/bin/oakctl)
 * run as a user would, with its own XDG_CONFIG_HOME, against the real
 * system-manager. Group "root": login refused (exit 3, message, no session
 * file) and accepted (session file 0600 in a 0700 directory), a session
 * refreshed with its refresh token, an expired session and no session
 * (exit 3), an unreachable API (exit 4), every invalid SLA of the shared
 * test data (exit 2, the field paths on stderr, nothing created), a valid
 * deploy, app list/show and service list as tables and as JSON, a deploy
 * --wait that cannot be placed (exit 5 with the status and detail), scaling
 * up and down, app delete, cluster token and list. Group "stack": the real
 * cluster-manager, mosquitto, registry (busybox test image) and
 * node-engine under the root: `app deploy --wait` to RUNNING, instance
 * list, logs with --tail and -f (every line once, in order), scale to 2
 * and back to 1, node list showing the worker, app delete. Each oakctl run
 * is checked for sanitizer reports. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "test/common/harness.h"
#include "test/common/mosquitto.h"
#include "test/common/nodeengine.h"
#include "test/common/registry.h"
#include "test/common/testimage.h"

#define ADMIN_PASSWORD "oakctl-admin-pw"
#define WORKER_TOKEN   "oakctl-worker-token-0123456789"
#define MQ_ADMIN       "oak-admin"
#define MQ_PASSWORD    "mq-admin-password"
#define RUN_TIMEOUT_S  90

typedef struct {
    char *dir;
    char xdg[300]; /* the logged-in session of the group */
    char api[64];
    th_daemon_t root;
    char *admin; /* token for direct API checks */
    /* stack group only */
    bool stack;
    th_daemon_t cm;
    th_mosquitto_t mq;
    th_registry_t reg;
    char env[16][160];
    const char *envp[17];
    char image[128];
    char tag[16];
    th_ne_t ne;
} fx_t;

typedef struct {
    int code; /* exit status, or 128+signal */
    char *out, *err;
} run_t;

static void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void dump(const char *path)
{
    char *log = th_read_file(path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- %s ----\n%s\n----\n", path, log ? log + (n > 6000 ? n - 6000 : 0) : "");
    free(log);
}

/* Forks oakctl with argv; stdout/stderr to files of the fixture, stdin from
 * input (or /dev/null); environment: XDG_CONFIG_HOME=xdg, OAK_API=api (when
 * api is non-NULL), no OAK_TOKEN unless token is non-NULL. */
static pid_t spawn(fx_t *f, const char *xdg, const char *api, const char *token, const char *input,
                   char *const *argv, const char *out_path, const char *err_path)
{
    char in_path[400];
    snprintf(in_path, sizeof(in_path), "%s/stdin", f->dir);
    if (input) {
        FILE *fp = fopen(in_path, "w");
        assert_non_null(fp);
        fputs(input, fp);
        fclose(fp);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(input ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        setenv("XDG_CONFIG_HOME", xdg, 1);
        if (api)
            setenv("OAK_API", api, 1);
        else
            unsetenv("OAK_API");
        if (token)
            setenv("OAK_TOKEN", token, 1);
        else
            unsetenv("OAK_TOKEN");
        char bin[512];
        snprintf(bin, sizeof(bin), "%s/bin/oakctl", th_build_dir());
        execv(bin, argv);
        perror(bin);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, int timeout_s)
{
    int status = 0;
    for (int t = 0; waitpid(pid, &status, WNOHANG) == 0; t += 20) {
        if (t >= timeout_s * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "oakctl did not finish within %d s\n", timeout_s);
            break;
        }
        sleep_ms(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void assert_sane(const char *err)
{
    bool bad = err && (strstr(err, "Sanitizer") || strstr(err, "runtime error:"));
    if (bad)
        fprintf(stderr, "oakctl stderr:\n%s\n", err);
    assert_false(bad);
}

/* Runs oakctl with the words of args (NULL-terminated) in session xdg. */
static run_t run_env(fx_t *f, const char *xdg, const char *api, const char *token,
                     const char *input, const char *const *args)
{
    char *argv[32];
    int n = 0;
    argv[n++] = "oakctl";
    for (; args[n - 1] && n < 31; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    char out_path[400], err_path[400];
    snprintf(out_path, sizeof(out_path), "%s/out", f->dir);
    snprintf(err_path, sizeof(err_path), "%s/err", f->dir);
    pid_t pid = spawn(f, xdg, api, token, input, argv, out_path, err_path);
    run_t r = {0};
    r.code = wait_exit(pid, RUN_TIMEOUT_S);
    r.out = th_read_file(out_path, NULL);
    r.err = th_read_file(err_path, NULL);
    if (!r.out)
        r.out = xstrdup("");
    if (!r.err)
        r.err = xstrdup("");
    if (getenv("OAKCTL_TEST_VERBOSE")) {
        fprintf(stderr, "$ oakctl");
        for (int i = 1; argv[i]; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "   (exit %d)\n%s%s", r.code, r.out, r.err);
    }
    assert_sane(r.err);
    return r;
}

#define OAKCTL(f, ...)                                                                             \
    run_env((f), (f)->xdg, (f)->api, NULL, NULL, (const char *const[]){__VA_ARGS__, NULL})

/* Fails the test with the run's output when its exit code is not want. */
static void expect_code(const run_t *r, int want)
{
    if (r->code != want)
        fprintf(stderr, "oakctl exited %d, expected %d\n--- stdout\n%s--- stderr\n%s---\n", r->code,
                want, r->out, r->err);
    assert_int_equal(r->code, want);
}

static json_t *parse(const char *s)
{
    json_t *j = json_loads(s, 0, NULL);
    if (!j)
        fprintf(stderr, "not JSON:\n%s\n", s);
    assert_non_null(j);
    return j;
}

static json_t *api_get(fx_t *f, const char *path)
{
    json_t *out = NULL;
    assert_int_equal(th_http(f->root.api_port, "GET", path, f->admin, NULL, &out), 200);
    return out;
}

static int start_root(fx_t *f)
{
    char sd[400];
    snprintf(sd, sizeof(sd), "%s/root", f->dir);
    const char *renv[] = {"OAK_ADMIN_PASSWORD=" ADMIN_PASSWORD, NULL};
    if (th_start_root(&f->root, sd, renv) < 0)
        return -1;
    f->admin = th_login(f->root.api_port, "Admin", ADMIN_PASSWORD);
    snprintf(f->api, sizeof(f->api), "http://127.0.0.1:%d", f->root.api_port);
    snprintf(f->xdg, sizeof(f->xdg), "%s/cfg", f->dir);
    return f->admin ? 0 : -1;
}

/* Logs the fixture's session in through oakctl (password on stdin). */
static void login(fx_t *f)
{
    run_t r =
        run_env(f, f->xdg, f->api, NULL, ADMIN_PASSWORD "\n", (const char *const[]){"login", NULL});
    expect_code(&r, 0);
    run_free(&r);
}

static int setup_done(void **state, int rc);

static int setup_root(void **state)
{
    fx_t *f = xcalloc(1, sizeof(*f));
    f->dir = th_tmpdir("oakctl-test");
    *state = f;
    return setup_done(state, start_root(f));
}

/* Stops everything f started and removes its directory; false when a
 * daemon did not exit cleanly or the node engine did not drain. */
static bool fx_destroy(fx_t *f)
{
    bool drained = true;
    if (f->stack && f->ne.pid > 0) {
        int st = -1;
        const char *args[] = {"stop", "--drain", NULL};
        free(th_ne_cmd(&f->ne, args, &st));
        st = th_ne_wait(&f->ne, 20000);
        if (f->ne.pid > 0)
            th_ne_stop(&f->ne, SIGKILL);
        drained = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!drained)
            th_ne_dump(&f->ne);
    }
    if (f->stack) {
        th_ne_cleanup(&f->ne);
        if (f->cm.pid > 0)
            th_stop(&f->cm, SIGTERM);
        if (f->mq.pid > 0)
            th_mosquitto_stop(&f->mq);
        if (f->reg.pid > 0)
            th_registry_stop(&f->reg);
    }
    int st_root = f->root.pid > 0 ? th_stop(&f->root, SIGTERM) : 0;
    bool clean = WIFEXITED(st_root) && WEXITSTATUS(st_root) == 0;
    if (!clean)
        dump(f->root.log_path);
    th_rmtree(f->dir);
    free(f->dir);
    free(f->admin);
    free(f);
    return clean && drained;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f)
        assert_true(fx_destroy(f));
    return 0;
}

/* A setup that failed half-way cleans up itself (cmocka then skips the
 * group's teardown). */
static int setup_done(void **state, int rc)
{
    if (rc < 0 && *state) {
        fx_destroy(*state);
        *state = NULL;
    }
    return rc;
}

/* ---- group "root" ---- */

static void test_login(void **state)
{
    fx_t *f = *state;
    char pwfile[400], tokpath[400], dirpath[400];
    snprintf(pwfile, sizeof(pwfile), "%s/wrong-pw", f->dir);
    FILE *fp = fopen(pwfile, "w");
    fputs("not-the-password\n", fp);
    fclose(fp);
    snprintf(tokpath, sizeof(tokpath), "%s/oak/token", f->xdg);
    snprintf(dirpath, sizeof(dirpath), "%s/oak", f->xdg);

    run_t r = OAKCTL(f, "login", "--user", "Admin", "--password-file", pwfile);
    expect_code(&r, 3);
    assert_non_null(strstr(r.err, "wrong username or password"));
    assert_int_not_equal(access(tokpath, F_OK), 0);
    run_free(&r);

    r = OAKCTL(f, "login", "--password", "also-wrong");
    expect_code(&r, 3);
    run_free(&r);

    /* the password from stdin, as a script pipes it */
    r = run_env(f, f->xdg, f->api, NULL, ADMIN_PASSWORD "\n", (const char *const[]){"login", NULL});
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "logged in"));
    run_free(&r);
    struct stat st;
    assert_int_equal(stat(tokpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dirpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    json_t *session = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_json_load_file(tokpath, 1 << 20, &session, &err), 0);
    assert_string_equal(oak_json_str(session, "api"), f->api);
    assert_non_null(oak_json_str(session, "token"));
    assert_non_null(oak_json_str(session, "refresh_token"));
    json_decref(session);

    /* the stored token works */
    r = OAKCTL(f, "app", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "NAME"));
    run_free(&r);
}

static void write_session(const char *xdg, const char *api, const char *token, const char *refresh)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/oak", xdg);
    mkdir(xdg, 0700);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/oak/token", xdg);
    json_t *s = json_pack("{s:s, s:s}", "api", api, "token", token);
    if (refresh)
        json_object_set_new(s, "refresh_token", json_string(refresh));
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_json_save_file(path, s, 0600, &err), 0);
    json_decref(s);
}

static void test_sessions(void **state)
{
    fx_t *f = *state;
    char xdg[400];
    /* no session at all */
    snprintf(xdg, sizeof(xdg), "%s/cfg-none", f->dir);
    run_t r = run_env(f, xdg, f->api, NULL, NULL, (const char *const[]){"app", "list", NULL});
    expect_code(&r, 3);
    assert_non_null(strstr(r.err, "not logged in"));
    assert_non_null(strstr(r.err, "oakctl login"));
    run_free(&r);

    /* a stored token the server refuses, without a refresh token */
    snprintf(xdg, sizeof(xdg), "%s/cfg-expired", f->dir);
    write_session(xdg, f->api, "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", NULL);
    r = run_env(f, xdg, f->api, NULL, NULL, (const char *const[]){"service", "list", NULL});
    expect_code(&r, 3);
    assert_non_null(strstr(r.err, "not logged in or session expired: run oakctl login"));
    run_free(&r);

    /* a refused access token with a valid refresh token: refreshed, saved */
    char tokpath[400];
    snprintf(tokpath, sizeof(tokpath), "%s/oak/token", f->xdg);
    json_t *good = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_json_load_file(tokpath, 1 << 20, &good, &err), 0);
    snprintf(xdg, sizeof(xdg), "%s/cfg-refresh", f->dir);
    write_session(xdg, f->api, "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
                  oak_json_str(good, "refresh_token"));
    r = run_env(f, xdg, f->api, NULL, NULL, (const char *const[]){"app", "list", NULL});
    expect_code(&r, 0);
    run_free(&r);
    snprintf(tokpath, sizeof(tokpath), "%s/oak/token", xdg);
    json_t *now = NULL;
    assert_int_equal(oak_json_load_file(tokpath, 1 << 20, &now, &err), 0);
    assert_string_not_equal(oak_json_str(now, "token"), "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl");
    assert_string_equal(oak_json_str(now, "refresh_token"), oak_json_str(good, "refresh_token"));
    json_decref(now);
    json_decref(good);

    /* OAK_TOKEN overrides the session, and is refused here */
    r = run_env(f, f->xdg, f->api, "garbage", NULL, (const char *const[]){"app", "list", NULL});
    expect_code(&r, 3);
    assert_non_null(strstr(r.err, "OAK_TOKEN"));
    run_free(&r);
    r = run_env(f, xdg, f->api, f->admin, NULL, (const char *const[]){"app", "list", NULL});
    expect_code(&r, 0);
    run_free(&r);
}

static void test_unreachable(void **state)
{
    fx_t *f = *state;
    int port = th_free_port();
    char api[64];
    snprintf(api, sizeof(api), "http://127.0.0.1:%d", port);
    run_t r = run_env(f, f->xdg, api, NULL, NULL, (const char *const[]){"app", "list", NULL});
    expect_code(&r, 4);
    assert_non_null(strstr(r.err, "cannot reach"));
    run_free(&r);
    /* --api wins over OAK_API; login too */
    r = run_env(f, f->xdg, f->api, NULL, "x\n", (const char *const[]){"--api", api, "login", NULL});
    expect_code(&r, 4);
    run_free(&r);
    /* usage errors */
    r = OAKCTL(f, "app", "frobnicate");
    expect_code(&r, 1);
    run_free(&r);
    r = OAKCTL(f, "app", "list", "-o", "yaml");
    expect_code(&r, 1);
    run_free(&r);
    r = OAKCTL(f, "app", "deploy", "-f", "/nonexistent/sla.json");
    expect_code(&r, 1);
    assert_non_null(strstr(r.err, "/nonexistent/sla.json"));
    run_free(&r);
}

static void test_invalid_sla(void **state)
{
    fx_t *f = *state;
    static const struct {
        const char *file, *needle;
    } cases[] = {
        {"bad-name.json", "applications[0].application_name"},
        {"bad-name.json", "applications[0].microservices[0].microservice_name"},
        {"missing-code.json", "applications[0].microservices[0].code"},
        {"old-version.json", "sla_version"},
        {"wrong-types.json", "applications[0].microservices[0].memory"},
        {"wrong-types.json", "applications[0].microservices[0].vcpus"},
        {"wrong-types.json", "applications[0].microservices[0].cmd"},
        {"truncated.json", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/testdata/sla/invalid/%s", th_shared_dir(), cases[i].file);
        run_t r = OAKCTL(f, "app", "deploy", "-f", path);
        expect_code(&r, 2);
        if (!strstr(r.err, cases[i].needle))
            fprintf(stderr, "%s: '%s' not in:\n%s\n", cases[i].file, cases[i].needle, r.err);
        assert_non_null(strstr(r.err, cases[i].needle));
        run_free(&r);
    }
    json_t *apps = api_get(f, "/api/applications/");
    json_t *svcs = api_get(f, "/api/services/");
    assert_int_equal(json_array_size(apps), 0);
    assert_int_equal(json_array_size(svcs), 0);
    json_decref(apps);
    json_decref(svcs);
}

static void test_deploy_list_show(void **state)
{
    fx_t *f = *state;
    char path[600];
    snprintf(path, sizeof(path), "%s/testdata/sla/valid/clientserver.json", th_shared_dir());
    run_t r = OAKCTL(f, "app", "deploy", "-f", path);
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "clientsrvr"));
    run_free(&r);

    /* the same again: a conflict */
    r = OAKCTL(f, "app", "deploy", "-f", path);
    expect_code(&r, 2);
    assert_non_null(strstr(r.err, "already exists"));
    run_free(&r);

    r = OAKCTL(f, "app", "list", "-o", "json");
    expect_code(&r, 0);
    json_t *apps = parse(r.out);
    run_free(&r);
    assert_int_equal(json_array_size(apps), 1);
    json_t *app = json_array_get(apps, 0);
    assert_string_equal(oak_json_str(app, "application_name"), "clientsrvr");
    char *app_id = xstrdup(oak_json_str(app, "_id"));
    json_decref(apps);

    r = OAKCTL(f, "app", "list");
    expect_code(&r, 0);
    assert_true(strncmp(r.out, "ID ", 3) == 0);
    assert_non_null(strstr(r.out, app_id));
    assert_non_null(strstr(r.out, "clientsrvr"));
    run_free(&r);

    r = OAKCTL(f, "app", "show", app_id);
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "curl.test"));
    assert_non_null(strstr(r.out, "nginx.test"));
    assert_non_null(strstr(r.out, "Simple demo"));
    run_free(&r);
    r = OAKCTL(f, "-o", "json", "app", "show", app_id);
    expect_code(&r, 0);
    app = parse(r.out);
    assert_string_equal(oak_json_str(app, "_id"), app_id);
    json_decref(app);
    run_free(&r);
    r = OAKCTL(f, "app", "show", "0123456789abcdef01234567");
    expect_code(&r, 2);
    assert_non_null(strstr(r.err, "not found"));
    run_free(&r);

    /* each service got the one instance the CLI requested */
    r = OAKCTL(f, "service", "list", "--app", app_id, "-o", "json");
    expect_code(&r, 0);
    json_t *svcs = parse(r.out);
    run_free(&r);
    assert_int_equal(json_array_size(svcs), 2);
    size_t i;
    json_t *s;
    json_array_foreach(svcs, i, s)
        assert_int_equal(json_array_size(json_object_get(s, "instance_list")), 1);
    char *sid = xstrdup(oak_json_str(json_array_get(svcs, 0), "_id"));
    json_decref(svcs);
    r = OAKCTL(f, "service", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, sid));
    assert_non_null(strstr(r.out, "0/1"));
    run_free(&r);
    r = OAKCTL(f, "instance", "list", "--service", sid);
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "NO_CLUSTER_CAPACITY"));
    run_free(&r);

    /* scaling without a cluster changes the requested instances */
    r = OAKCTL(f, "service", "scale", sid, "3");
    expect_code(&r, 0);
    run_free(&r);
    char spath[128];
    snprintf(spath, sizeof(spath), "/api/service/%s", sid);
    json_t *svc = api_get(f, spath);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 3);
    json_decref(svc);
    r = OAKCTL(f, "service", "scale", sid, "1", "-o", "json");
    expect_code(&r, 0);
    svc = parse(r.out);
    run_free(&r);
    json_t *list = json_object_get(svc, "instance_list");
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(oak_json_int(json_array_get(list, 0), "instance_number", -1), 0);
    json_decref(svc);
    /* --wait while nothing can be placed: exit 5, with status and detail */
    r = OAKCTL(f, "service", "scale", sid, "1", "--wait", "--timeout", "1");
    expect_code(&r, 5);
    assert_non_null(strstr(r.err, "timed out"));
    assert_non_null(strstr(r.err, "NO_CLUSTER_CAPACITY"));
    assert_non_null(strstr(r.err, "waiting for capacity"));
    run_free(&r);
    /* logs of an instance that is on no worker */
    r = OAKCTL(f, "instance", "logs", sid, "0");
    expect_code(&r, 2);
    run_free(&r);

    r = OAKCTL(f, "service", "delete", sid);
    expect_code(&r, 0);
    run_free(&r);
    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 0);
    run_free(&r);
    apps = api_get(f, "/api/applications/");
    assert_int_equal(json_array_size(apps), 0);
    json_decref(apps);
    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 2);
    run_free(&r);
    free(sid);
    free(app_id);
}

static void test_deploy_wait_unplaced(void **state)
{
    fx_t *f = *state;
    char path[600];
    snprintf(path, sizeof(path), "%s/testdata/sla/valid/direct-oneshot.json", th_shared_dir());
    run_t r = OAKCTL(f, "app", "deploy", "-f", path, "--wait", "--timeout", "2", "-o", "json");
    expect_code(&r, 5);
    assert_non_null(strstr(r.err, "timed out after 2 s"));
    assert_non_null(strstr(r.err, "report")); /* the service, listed as not up */
    /* stdout is the JSON document even so */
    json_t *doc = parse(r.out);
    run_free(&r);
    json_t *svc = json_array_get(json_object_get(doc, "services"), 0);
    const char *st =
        oak_json_str(json_array_get(json_object_get(svc, "instance_list"), 0), "status");
    assert_non_null(st);
    assert_string_not_equal(st, "RUNNING");
    const char *app_id =
        oak_json_str(json_array_get(json_object_get(doc, "applications"), 0), "_id");
    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 0);
    run_free(&r);
    json_decref(doc);
}

/* A service with "replicas" in the SLA gets those from the server, and no
 * extra one from the CLI; the SLA may come from stdin. */
static void test_deploy_replicas(void **state)
{
    fx_t *f = *state;
    const char *sla =
        "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
        "\"applicationID\":\"\",\"application_name\":\"reps\",\"application_namespace\":"
        "\"test\",\"microservices\":[{\"microserviceID\":\"\",\"microservice_name\":\"a\","
        "\"microservice_namespace\":\"test\",\"virtualization\":\"container\",\"code\":"
        "\"registry.local/a:1\",\"replicas\":2},{\"microserviceID\":\"\",\"microservice_name\":"
        "\"b\",\"microservice_namespace\":\"test\",\"virtualization\":\"container\",\"code\":"
        "\"registry.local/b:1\",\"replicas\":0}]}]}";
    run_t r = run_env(f, f->xdg, f->api, NULL, sla,
                      (const char *const[]){"app", "deploy", "-f", "-", "-o", "json", NULL});
    expect_code(&r, 0);
    json_t *doc = parse(r.out);
    run_free(&r);
    json_t *svcs = json_object_get(doc, "services");
    assert_int_equal(json_array_size(svcs), 2);
    size_t i;
    json_t *s;
    json_array_foreach(svcs, i, s)
    {
        size_t n = json_array_size(json_object_get(s, "instance_list"));
        assert_int_equal(n, !strcmp(oak_json_str(s, "service_name"), "a") ? 2 : 0);
    }
    const char *app_id =
        oak_json_str(json_array_get(json_object_get(doc, "applications"), 0), "_id");
    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 0);
    run_free(&r);
    json_decref(doc);
}

static void test_clusters(void **state)
{
    fx_t *f = *state;
    run_t r = OAKCTL(f, "cluster", "token", "--name", "edge9");
    expect_code(&r, 0);
    size_t n = strlen(r.out);
    assert_true(n > 20);
    assert_int_equal(strcspn(r.out, "\n"), n - 1); /* one line: the token */
    run_free(&r);
    r = OAKCTL(f, "cluster", "token", "edge8", "--ttl", "3600", "-o", "json");
    expect_code(&r, 0);
    json_t *j = parse(r.out);
    run_free(&r);
    assert_string_equal(oak_json_str(j, "cluster_name"), "edge8");
    assert_non_null(oak_json_str(j, "token"));
    json_decref(j);
    r = OAKCTL(f, "cluster", "token", "--ttl", "5");
    expect_code(&r, 1);
    run_free(&r);
    r = OAKCTL(f, "cluster", "list", "-o", "json");
    expect_code(&r, 0);
    j = parse(r.out);
    assert_true(json_is_array(j));
    json_decref(j);
    run_free(&r);
    r = OAKCTL(f, "node", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "NAME"));
    run_free(&r);
}

/* ---- group "stack" ---- */

static bool cluster_active(fx_t *f)
{
    json_t *l = NULL;
    th_http(f->root.api_port, "GET", "/api/clusters/active", f->admin, NULL, &l);
    bool ok = json_array_size(l) == 1 && oak_json_bool(json_array_get(l, 0), "connected", false);
    json_decref(l);
    return ok;
}

static int setup_stack_steps(fx_t *f);

static int setup_stack(void **state)
{
    if (!th_mosquitto_available() || !th_ne_available() || !th_registry_available() ||
        !th_testimage_available())
        return 0; /* *state stays NULL: the group skips */
    fx_t *f = xcalloc(1, sizeof(*f));
    f->dir = th_tmpdir("oakctl-stack");
    f->stack = true;
    *state = f;
    return setup_done(state, setup_stack_steps(f));
}

static int setup_stack_steps(fx_t *f)
{
    snprintf(f->tag, sizeof(f->tag), "%d", (int)getpid());
    if (start_root(f) < 0)
        return -1;
    json_t *b = json_pack("{s:s}", "cluster_name", "c1"), *out = NULL;
    long st = th_http(f->root.api_port, "POST", "/api/clusters/token", f->admin, b, &out);
    json_decref(b);
    if (st != 201) {
        json_decref(out);
        return -1;
    }
    char join[128];
    snprintf(join, sizeof(join), "%s", oak_json_str(out, "token"));
    json_decref(out);
    char sd[400];
    snprintf(sd, sizeof(sd), "%s/mq", f->dir);
    if (th_mosquitto_start(&f->mq, sd, MQ_ADMIN, MQ_PASSWORD) < 0)
        return -1;
    int k = 0;
    snprintf(f->env[k++], 160, "CLUSTER_NAME=c1");
    snprintf(f->env[k++], 160, "SYSTEM_MANAGER_URL=127.0.0.1");
    snprintf(f->env[k++], 160, "SYSTEM_MANAGER_GRPC_PORT=%d", f->root.grpc_port);
    snprintf(f->env[k++], 160, "OAK_JOIN_TOKEN=%s", join);
    snprintf(f->env[k++], 160, "MQTT_BROKER_URL=127.0.0.1");
    snprintf(f->env[k++], 160, "MQTT_BROKER_PORT=%d", f->mq.port);
    snprintf(f->env[k++], 160, "OAK_MQTT_ADMIN_USER=%s", MQ_ADMIN);
    snprintf(f->env[k++], 160, "OAK_MQTT_ADMIN_PASSWORD=%s", MQ_PASSWORD);
    snprintf(f->env[k++], 160, "OAK_WORKER_TOKEN=%s", WORKER_TOKEN);
    snprintf(f->env[k++], 160, "OAK_REPORT_INTERVAL_MS=500");
    snprintf(f->env[k++], 160, "OAK_MAX_RESTARTS=0");
    for (int i = 0; i < k; i++)
        f->envp[i] = f->env[i];
    f->envp[k] = NULL;
    snprintf(sd, sizeof(sd), "%s/cluster", f->dir);
    if (th_start_cluster(&f->cm, sd, f->envp) < 0) {
        dump(f->cm.log_path);
        return -1;
    }
    for (int t = 0; t < 10000 && !cluster_active(f); t += 50)
        sleep_ms(50);
    if (!cluster_active(f))
        return -1;
    snprintf(sd, sizeof(sd), "%s/registry", f->dir);
    if (th_registry_start(&f->reg, sd, TH_REGISTRY_OPEN, NULL, NULL) < 0 ||
        th_testimage_push(f->reg.port, "v1", "test/busybox", "v1", false) < 0)
        return -1;
    snprintf(f->image, sizeof(f->image), "127.0.0.1:%d/test/busybox:v1", f->reg.port);

    char name[64], insecure[64], images[400], sock[400];
    snprintf(name, sizeof(name), "ne-oakctl-%s", f->tag);
    snprintf(sd, sizeof(sd), "%s/ne", f->dir);
    th_ne_init(&f->ne, name, sd, f->cm.api_port, WORKER_TOKEN);
    snprintf(insecure, sizeof(insecure), "127.0.0.1:%d", f->reg.port);
    snprintf(images, sizeof(images), "%s/images", f->dir);
    snprintf(sock, sizeof(sock), "%s/no-net-manager.sock", f->dir);
    th_ne_setenv(&f->ne, "OAK_INSECURE_REGISTRIES", insecure);
    th_ne_setenv(&f->ne, "OAK_IMAGE_DIR", images);
    th_ne_setenv(&f->ne, "OAK_USAGE_PERIOD_S", "1");
    th_ne_setenv(&f->ne, "OAK_STOP_TIMEOUT_S", "1");
    th_ne_setenv(&f->ne, "OAK_NETMANAGER_SOCKET", sock);
    if (th_ne_start(&f->ne, true, 20000) < 0)
        return -1;
    login(f);
    return 0;
}

/* Instance n of service sid as the root reports it (new reference). */
static json_t *root_instance(fx_t *f, const char *sid, int n)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/service/%s", sid);
    json_t *s = api_get(f, path), *found = NULL;
    size_t i;
    json_t *in;
    json_array_foreach(json_object_get(s, "instance_list"), i, in)
    {
        if (oak_json_int(in, "instance_number", -1) == n)
            found = json_incref(in);
    }
    json_decref(s);
    return found;
}

/* Checks that text holds "line K" lines with K consecutive (no line twice,
 * none skipped); returns how many. */
static int consecutive_lines(const char *text)
{
    int count = 0;
    long last = -1;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        long k = -1;
        if (len > 5 && !strncmp(p, "line ", 5))
            k = strtol(p + 5, NULL, 10);
        if (k < 0 || (last >= 0 && k != last + 1)) {
            fprintf(stderr, "line %d of the followed output breaks the sequence:\n%s\n", count,
                    text);
            fail();
        }
        last = k;
        count++;
        p += len + (nl ? 1 : 0);
    }
    return count;
}

static void test_stack(void **state)
{
    fx_t *f = *state;
    if (!f) {
        printf("SKIPPED: %s needs root, mosquitto, runc, docker-registry, umoci and skopeo\n",
               __func__);
        return;
    }
    char sla_path[400], sla[2048];
    snprintf(sla_path, sizeof(sla_path), "%s/ticker.json", f->dir);
    snprintf(sla, sizeof(sla),
             "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
             "\"applicationID\":\"\",\"application_name\":\"ticker\",\"application_namespace\":"
             "\"test\",\"application_desc\":\"counts\",\"microservices\":[{\"microserviceID\":\"\","
             "\"microservice_name\":\"tick\",\"microservice_namespace\":\"test\","
             "\"virtualization\":\"container\",\"code\":\"%s\",\"cmd\":[\"sh\",\"-c\","
             "\"i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done\"]}]}]}",
             f->image);
    FILE *fp = fopen(sla_path, "w");
    assert_non_null(fp);
    fputs(sla, fp);
    fclose(fp);

    run_t r = OAKCTL(f, "app", "deploy", "-f", sla_path, "--wait", "--timeout", "40");
    if (r.code != 0)
        th_ne_dump(&f->ne);
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "RUNNING"));
    assert_non_null(strstr(r.out, "1 of 1 instance(s) up"));
    run_free(&r);

    r = OAKCTL(f, "service", "list", "-o", "json");
    expect_code(&r, 0);
    json_t *svcs = parse(r.out);
    run_free(&r);
    assert_int_equal(json_array_size(svcs), 1);
    char *sid = xstrdup(oak_json_str(json_array_get(svcs, 0), "_id"));
    char *app_id = xstrdup(oak_json_str(json_array_get(svcs, 0), "applicationID"));
    json_decref(svcs);

    r = OAKCTL(f, "instance", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "RUNNING"));
    assert_non_null(strstr(r.out, sid));
    run_free(&r);
    r = OAKCTL(f, "instance", "list", "--service", sid, "-o", "json");
    expect_code(&r, 0);
    json_t *insts = parse(r.out);
    run_free(&r);
    assert_int_equal(json_array_size(insts), 1);
    assert_string_equal(oak_json_str(json_array_get(insts, 0), "status"), "RUNNING");
    assert_string_equal(oak_json_str(json_array_get(insts, 0), "service_id"), sid);
    json_decref(insts);

    /* logs: the container's output through root, cluster and worker */
    r = OAKCTL(f, "instance", "logs", sid, "0", "--tail", "3");
    expect_code(&r, 0);
    int n = consecutive_lines(r.out);
    assert_true(n >= 1 && n <= 3);
    run_free(&r);
    r = OAKCTL(f, "instance", "logs", sid, "0", "-o", "json");
    expect_code(&r, 0);
    json_t *lj = parse(r.out);
    run_free(&r);
    assert_non_null(strstr(oak_json_str(lj, "logs"), "line 0\n"));
    assert_int_equal(oak_json_int(lj, "instance_number", -1), 0);
    json_decref(lj);

    /* -f: every line once and in order, across several polls */
    char out_path[400], err_path[400];
    snprintf(out_path, sizeof(out_path), "%s/follow.out", f->dir);
    snprintf(err_path, sizeof(err_path), "%s/follow.err", f->dir);
    char *fargv[] = {"oakctl", "instance", "logs", sid, "0", "--tail", "2", "-f", NULL};
    pid_t pid = spawn(f, f->xdg, f->api, NULL, NULL, fargv, out_path, err_path);
    sleep_ms(3500);
    kill(pid, SIGINT);
    int code = wait_exit(pid, 10);
    assert_int_equal(code, 128 + SIGINT);
    char *followed = th_read_file(out_path, NULL), *ferr = th_read_file(err_path, NULL);
    assert_sane(ferr);
    n = consecutive_lines(followed);
    assert_true(n >= 6); /* the 2 of the tail and more than one poll (~5 lines/s) */
    free(followed);
    free(ferr);

    /* scale to 2 and back to 1 */
    r = OAKCTL(f, "service", "scale", sid, "2", "--wait", "--timeout", "40");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "2 of 2 instance(s) up"));
    run_free(&r);
    json_t *in1 = root_instance(f, sid, 1);
    assert_non_null(in1);
    assert_string_equal(oak_json_str(in1, "status"), "RUNNING");
    json_decref(in1);
    r = OAKCTL(f, "service", "scale", sid, "1");
    expect_code(&r, 0);
    run_free(&r);
    char spath[128];
    snprintf(spath, sizeof(spath), "/api/service/%s", sid);
    json_t *svc = api_get(f, spath);
    assert_int_equal(json_array_size(json_object_get(svc, "instance_list")), 1);
    json_decref(svc);

    /* the worker and its cluster */
    r = OAKCTL(f, "node", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, f->ne.name));
    assert_non_null(strstr(r.out, "active"));
    run_free(&r);
    r = OAKCTL(f, "node", "list", "-o", "json");
    expect_code(&r, 0);
    json_t *nodes = parse(r.out);
    run_free(&r);
    assert_int_equal(json_array_size(nodes), 1);
    assert_string_equal(oak_json_str(json_array_get(nodes, 0), "name"), f->ne.name);
    assert_string_equal(oak_json_str(json_array_get(nodes, 0), "cluster_name"), "c1");
    json_decref(nodes);
    r = OAKCTL(f, "cluster", "list");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "c1"));
    run_free(&r);

    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 0);
    run_free(&r);
    r = OAKCTL(f, "app", "list", "-o", "json");
    expect_code(&r, 0);
    assert_non_null(strstr(r.out, "[]"));
    run_free(&r);
    free(sid);
    free(app_id);
}

/* An image the registry does not have: FAILED, which the cluster does not
 * retry (OAK_MAX_RESTARTS=0): --wait gives up once that has settled, long
 * before its timeout, with the reason. */
static void test_stack_failed(void **state)
{
    fx_t *f = *state;
    if (!f) {
        printf("SKIPPED: %s needs root, mosquitto, runc, docker-registry, umoci and skopeo\n",
               __func__);
        return;
    }
    char sla_path[400], sla[2048];
    snprintf(sla_path, sizeof(sla_path), "%s/broken.json", f->dir);
    snprintf(sla, sizeof(sla),
             "{\"sla_version\":\"v2.0\",\"customerID\":\"Admin\",\"applications\":[{"
             "\"applicationID\":\"\",\"application_name\":\"broken\",\"application_namespace\":"
             "\"test\",\"microservices\":[{\"microserviceID\":\"\",\"microservice_name\":"
             "\"nope\",\"microservice_namespace\":\"test\",\"virtualization\":\"container\","
             "\"code\":\"127.0.0.1:%d/test/absent:v1\"}]}]}",
             f->reg.port);
    FILE *fp = fopen(sla_path, "w");
    assert_non_null(fp);
    fputs(sla, fp);
    fclose(fp);
    time_t t0 = time(NULL);
    run_t r = OAKCTL(f, "app", "deploy", "-f", sla_path, "--wait", "--timeout", "60", "-o", "json");
    expect_code(&r, 5);
    assert_true(time(NULL) - t0 < 40);
    assert_non_null(strstr(r.err, "gave up"));
    assert_non_null(strstr(r.err, "FAILED"));
    json_t *doc = parse(r.out);
    run_free(&r);
    json_t *in = json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "services"), 0), "instance_list"), 0);
    assert_string_equal(oak_json_str(in, "status"), "FAILED");
    const char *app_id =
        oak_json_str(json_array_get(json_object_get(doc, "applications"), 0), "_id");
    r = OAKCTL(f, "app", "delete", app_id);
    expect_code(&r, 0);
    run_free(&r);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest root_tests[] = {
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_invalid_sla),
        cmocka_unit_test(test_deploy_list_show),
        cmocka_unit_test(test_deploy_wait_unplaced),
        cmocka_unit_test(test_deploy_replicas),
        cmocka_unit_test(test_clusters),
    };
    const struct CMUnitTest stack_tests[] = {
        cmocka_unit_test(test_stack),
        cmocka_unit_test(test_stack_failed),
    };
    int failed = cmocka_run_group_tests_name("oakctl_root", root_tests, setup_root, teardown);
    failed += cmocka_run_group_tests_name("oakctl_stack", stack_tests, setup_stack, teardown);
    return failed ? 1 : 0;
}
