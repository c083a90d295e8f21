/* worker_sim: runs N simulated workers in one process against a real
 * cluster manager and its broker (test/common/msim.h), for load tests and
 * integration tests. Prints one status line per second on stderr and a
 * registration summary once every worker has registered; SIGTERM or SIGINT
 * (or --run-seconds) makes every worker publish "offline" and disconnect,
 * then the process exits 0. Single-threaded apart from msim's registration
 * threads.
 *
 *   worker_sim --cluster http://127.0.0.1:PORT --token TOKEN
 *              --mqtt 127.0.0.1:PORT --workers N [options]
 *   worker_sim --broker-admin USER:PASSWORD --mqtt 127.0.0.1:PORT
 *              --workers N [options]     (no cluster: broker clients only)
 *   worker_sim --open-broker --mqtt 127.0.0.1:PORT --workers N [options]
 *                                        (a broker without authentication)
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_loop.h"
#include "test/common/msim.h"

typedef struct {
    oak_loop_t *loop;
    msim_t *sim;
    uint64_t t0;
    bool reg_reported;
    bool stopping;
} app_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: worker_sim --cluster URL --token TOKEN --mqtt HOST:PORT --workers N\n"
            "                  [--prefix sim] [--cores 4] [--memory 8192] [--info-period-ms 2000]\n"
            "                  [--run-seconds S] [--register-concurrency 16]\n"
            "                  [--connect-concurrency 64] [--kill-after-ms MS --kill-count K]\n"
            "                  [--seed N]\n"
            "       worker_sim --broker-admin USER:PASSWORD --mqtt HOST:PORT --workers N\n"
            "                  [--keepalive 2] [same options]\n"
            "       worker_sim --open-broker --mqtt HOST:PORT --workers N [--keepalive 2] ...\n"
            "                  (a broker without authentication)\n"
            "Without --mqtt the broker port of the registration answer is used.\n");
}

static void on_done(void *ctx)
{
    app_t *a = ctx;
    oak_loop_stop(a->loop);
}

static void stop(app_t *a)
{
    if (a->stopping)
        return;
    a->stopping = true;
    msim_shutdown(a->sim, on_done, a);
}

static void on_signal(oak_loop_t *loop, int signo, void *data)
{
    stop(data);
}

static void on_run_timeout(oak_loop_t *loop, void *data)
{
    stop(data);
}

static void on_second(oak_loop_t *loop, void *data)
{
    app_t *a = data;
    msim_stats_t st;
    msim_stats(a->sim, &st);
    double t = (double)(oak_now_ms() - a->t0) / 1000.0;
    if (st.register_done && !a->reg_reported) {
        a->reg_reported = true;
        double secs = (double)st.register_ms / 1000.0;
        fprintf(stderr,
                "worker_sim registration workers=%d ok=%d failed=%d seconds=%.2f "
                "rate_per_s=%.0f\n",
                st.workers, st.registered, st.register_failed, secs,
                secs > 0 ? st.registered / secs : 0.0);
    }
    fprintf(stderr,
            "worker_sim t=%.0f registered=%d/%d connected=%d dead=%d running=%d msgs_in=%llu "
            "msgs_out=%llu acks_in=%llu reconnects=%llu refused=%llu\n",
            t, st.registered, st.workers, st.connected, st.dead, st.running,
            (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
            (unsigned long long)st.acks_in, (unsigned long long)st.reconnects,
            (unsigned long long)st.refused);
    oak_loop_add_timer(loop, 1000, on_second, a);
}

static int parse_int(const char *s, const char *name, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        fprintf(stderr, "worker_sim: --%s must be an integer %ld..%ld\n", name, lo, hi);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    enum {
        O_CLUSTER = 1,
        O_TOKEN,
        O_MQTT,
        O_WORKERS,
        O_PREFIX,
        O_CORES,
        O_MEMORY,
        O_INFO,
        O_RUN,
        O_REGC,
        O_CONNC,
        O_KILL_MS,
        O_KILL_N,
        O_ADMIN,
        O_KEEPALIVE,
        O_SEED,
        O_OPEN,
        O_HELP
    };
    static const struct option opts[] = {{"cluster", required_argument, NULL, O_CLUSTER},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"mqtt", required_argument, NULL, O_MQTT},
                                         {"workers", required_argument, NULL, O_WORKERS},
                                         {"prefix", required_argument, NULL, O_PREFIX},
                                         {"cores", required_argument, NULL, O_CORES},
                                         {"memory", required_argument, NULL, O_MEMORY},
                                         {"info-period-ms", required_argument, NULL, O_INFO},
                                         {"run-seconds", required_argument, NULL, O_RUN},
                                         {"register-concurrency", required_argument, NULL, O_REGC},
                                         {"connect-concurrency", required_argument, NULL, O_CONNC},
                                         {"kill-after-ms", required_argument, NULL, O_KILL_MS},
                                         {"kill-count", required_argument, NULL, O_KILL_N},
                                         {"broker-admin", required_argument, NULL, O_ADMIN},
                                         {"keepalive", required_argument, NULL, O_KEEPALIVE},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"open-broker", no_argument, NULL, O_OPEN},
                                         {"help", no_argument, NULL, O_HELP},
                                         {NULL, 0, NULL, 0}};
    msim_opts_t o = {0};
    int run_seconds = 0;
    _cleanup_free_ char *mqtt_host = NULL, *admin_user = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_CLUSTER:
            o.cluster_url = optarg;
            break;
        case O_TOKEN:
            o.token = optarg;
            break;
        case O_MQTT: {
            const char *colon = strrchr(optarg, ':');
            if (!colon) {
                fprintf(stderr, "worker_sim: --mqtt must be HOST:PORT\n");
                return 2;
            }
            free(mqtt_host);
            mqtt_host = xstrndup(optarg, (size_t)(colon - optarg));
            o.mqtt_host = mqtt_host;
            o.mqtt_port = parse_int(colon + 1, "mqtt port", 1, 65535);
            break;
        }
        case O_WORKERS:
            o.workers = parse_int(optarg, "workers", 1, 100000);
            break;
        case O_PREFIX:
            o.prefix = optarg;
            break;
        case O_CORES:
            o.cores = parse_int(optarg, "cores", 1, 4096);
            break;
        case O_MEMORY:
            o.memory_mb = parse_int(optarg, "memory", 1, 16777216);
            break;
        case O_INFO:
            o.info_period_ms = parse_int(optarg, "info-period-ms", 10, 3600000);
            break;
        case O_RUN:
            run_seconds = parse_int(optarg, "run-seconds", 1, 86400 * 365);
            break;
        case O_REGC:
            o.register_concurrency = parse_int(optarg, "register-concurrency", 1, 1024);
            break;
        case O_CONNC:
            o.connect_concurrency = parse_int(optarg, "connect-concurrency", 1, 100000);
            break;
        case O_KILL_MS:
            o.kill_after_ms = parse_int(optarg, "kill-after-ms", 1, 86400000);
            break;
        case O_KILL_N:
            o.kill_count = parse_int(optarg, "kill-count", 0, 100000);
            break;
        case O_ADMIN: {
            const char *colon = strchr(optarg, ':');
            if (!colon) {
                fprintf(stderr, "worker_sim: --broker-admin must be USER:PASSWORD\n");
                return 2;
            }
            free(admin_user);
            admin_user = xstrndup(optarg, (size_t)(colon - optarg));
            o.broker_admin_user = admin_user;
            o.broker_admin_password = colon + 1;
            break;
        }
        case O_KEEPALIVE:
            o.keepalive_s = parse_int(optarg, "keepalive", 1, 65535);
            break;
        case O_SEED:
            o.seed = (unsigned)parse_int(optarg, "seed", 0, 2147483647);
            break;
        case O_OPEN:
            o.open_broker = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc || o.workers <= 0 ||
        !!o.cluster_url + !!o.broker_admin_user + o.open_broker != 1) {
        usage(stderr);
        return 2;
    }
    if (o.kill_after_ms > 0 && o.kill_count == 0)
        o.kill_count = 1;

    app_t a = {.loop = oak_loop_new(), .t0 = oak_now_ms()};
    oak_err_t err = OAK_ERR_INIT;
    /* block the signals before msim starts its registration threads */
    static const int sigs[] = {SIGTERM, SIGINT};
    if (oak_loop_signals(a.loop, sigs, 2, on_signal, &a, &err) < 0 ||
        msim_new(a.loop, &o, &a.sim, &err) < 0) {
        fprintf(stderr, "worker_sim: %s\n", err.msg);
        oak_err_clear(&err);
        oak_loop_free(a.loop);
        return 1;
    }
    msim_start(a.sim);
    oak_loop_add_timer(a.loop, 1000, on_second, &a);
    if (run_seconds > 0)
        oak_loop_add_timer(a.loop, (uint64_t)run_seconds * 1000, on_run_timeout, &a);
    oak_loop_run(a.loop);
    msim_stats_t st;
    msim_stats(a.sim, &st);
    fprintf(stderr,
            "worker_sim exit registered=%d msgs_in=%llu msgs_out=%llu acks_in=%llu "
            "reconnects=%llu\n",
            st.registered, (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
            (unsigned long long)st.acks_in, (unsigned long long)st.reconnects);
    msim_free(a.sim);
    oak_loop_free(a.loop);
    return 0;
}
