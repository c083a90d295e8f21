/* Unit tests for lib/oak_loop: timer order (including equal deadlines),
 * cancellation, work posted from other threads waking a blocked loop, fd
 * callbacks on a pipe, signals through signalfd, and stopping the loop
 * from another thread. Every test arms a watchdog timer so a bug makes it
 * fail instead of hanging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_loop.h"

#define WATCHDOG_MS 5000

typedef struct {
    oak_loop_t *loop;
    int order[64];
    int n;
    bool watchdog_fired;
    pthread_t loop_thread;
    bool wrong_thread;
    uint64_t ids[64];
} ctx_t;

typedef struct {
    ctx_t *ctx;
    int tag;
} tagged_t;

static void on_watchdog(oak_loop_t *loop, void *data)
{
    ctx_t *c = data;
    c->watchdog_fired = true;
    oak_loop_stop(loop);
}

static void on_stop(oak_loop_t *loop, void *data)
{
    oak_loop_stop(loop);
}

static void record(oak_loop_t *loop, void *data)
{
    tagged_t *t = data;
    if (t->ctx->n < 64)
        t->ctx->order[t->ctx->n++] = t->tag;
    if (!pthread_equal(pthread_self(), t->ctx->loop_thread))
        t->ctx->wrong_thread = true;
}

static void ctx_init(ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->loop = oak_loop_new();
    c->loop_thread = pthread_self();
    oak_loop_add_timer(c->loop, WATCHDOG_MS, on_watchdog, c);
}

static void ctx_run(ctx_t *c)
{
    assert_int_equal(oak_loop_run(c->loop), 0);
    assert_false(c->watchdog_fired);
    assert_false(c->wrong_thread);
}

static void test_clock(void **state)
{
    uint64_t a = oak_now_ms(), ua = oak_now_us();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    uint64_t b = oak_now_ms(), ub = oak_now_us();
    assert_true(b >= a + 19);
    assert_true(ub >= ua + 19000);
    assert_true(oak_wall_time() > 1.6e9);
    (void)state;
}

static void test_timer_order(void **state)
{
    ctx_t c;
    ctx_init(&c);
    static const int delays[] = {30, 10, 20, 0, 25, 5};
    tagged_t t[6];
    uint64_t t0 = oak_now_ms();
    for (int i = 0; i < 6; i++) {
        t[i] = (tagged_t){&c, delays[i]};
        uint64_t id = oak_loop_add_timer(c.loop, (uint64_t)delays[i], record, &t[i]);
        assert_true(id > 0);
    }
    oak_loop_add_timer(c.loop, 40, on_stop, NULL);
    ctx_run(&c);
    assert_true(oak_now_ms() - t0 >= 40);
    assert_int_equal(c.n, 6);
    static const int want[] = {0, 5, 10, 20, 25, 30};
    for (int i = 0; i < 6; i++)
        assert_int_equal(c.order[i], want[i]);
    oak_loop_free(c.loop);
    (void)state;
}

static void test_timer_fifo(void **state)
{
    /* timers due at the same time fire in the order they were added */
    ctx_t c;
    ctx_init(&c);
    tagged_t t[40];
    for (int i = 0; i < 40; i++) {
        t[i] = (tagged_t){&c, i};
        oak_loop_add_timer(c.loop, i < 20 ? 0 : 10, record, &t[i]);
    }
    oak_loop_add_timer(c.loop, 20, on_stop, NULL);
    ctx_run(&c);
    assert_int_equal(c.n, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(c.order[i], i);
    oak_loop_free(c.loop);
    (void)state;
}

static void cancel_other(oak_loop_t *loop, void *data)
{
    tagged_t *t = data;
    record(loop, data);
    oak_loop_cancel_timer(loop, t->ctx->ids[0]);
}

static void test_cancel(void **state)
{
    ctx_t c;
    ctx_init(&c);
    tagged_t a = {&c, 1}, b = {&c, 2}, d = {&c, 3}, e = {&c, 4};
    uint64_t ida = oak_loop_add_timer(c.loop, 5, record, &a);
    oak_loop_add_timer(c.loop, 10, record, &b);
    c.ids[0] = oak_loop_add_timer(c.loop, 25, record, &d); /* cancelled by e */
    oak_loop_add_timer(c.loop, 15, cancel_other, &e);
    oak_loop_cancel_timer(c.loop, ida);
    oak_loop_cancel_timer(c.loop, ida);    /* twice: ignored */
    oak_loop_cancel_timer(c.loop, 999999); /* unknown: ignored */
    oak_loop_add_timer(c.loop, 40, on_stop, NULL);
    ctx_run(&c);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.order[0], 2);
    assert_int_equal(c.order[1], 4);
    oak_loop_free(c.loop);
    (void)state;
}

static void rearm(oak_loop_t *loop, void *data)
{
    tagged_t *t = data;
    record(loop, data);
    if (t->ctx->n < 5)
        oak_loop_add_timer(loop, 1, rearm, data);
    else
        oak_loop_stop(loop);
}

static void test_timer_rearm(void **state)
{
    ctx_t c;
    ctx_init(&c);
    tagged_t t = {&c, 7};
    oak_loop_add_timer(c.loop, 0, rearm, &t);
    ctx_run(&c);
    assert_int_equal(c.n, 5);
    oak_loop_free(c.loop);
    (void)state;
}

/* --- work posted from other threads --- */

#define POSTERS    4
#define PER_THREAD 500

typedef struct {
    ctx_t *ctx;
    int count;
    int delay_ms;
} post_ctx_t;

static void count_work(oak_loop_t *loop, void *data)
{
    post_ctx_t *p = data;
    if (!pthread_equal(pthread_self(), p->ctx->loop_thread))
        p->ctx->wrong_thread = true;
    if (++p->count == POSTERS * PER_THREAD)
        oak_loop_stop(loop);
}

static void *poster(void *arg)
{
    post_ctx_t *p = arg;
    struct timespec ts = {0, (long)p->delay_ms * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < PER_THREAD; i++)
        oak_loop_post(p->ctx->loop, count_work, p);
    return NULL;
}

static void test_post_threads(void **state)
{
    ctx_t c;
    ctx_init(&c);
    post_ctx_t p = {&c, 0, 30};
    pthread_t th[POSTERS];
    uint64_t t0 = oak_now_ms();
    for (int i = 0; i < POSTERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, poster, &p), 0);
    ctx_run(&c); /* blocked in epoll_wait (only the watchdog armed) until woken */
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(p.count, POSTERS * PER_THREAD);
    assert_true(oak_now_ms() - t0 < WATCHDOG_MS / 2);
    oak_loop_free(c.loop);
    (void)state;
}

static void *late_poster(void *arg)
{
    ctx_t *c = arg;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    oak_loop_post(c->loop, on_stop, NULL);
    return NULL;
}

static void test_post_wakes(void **state)
{
    ctx_t c;
    memset(&c, 0, sizeof(c));
    c.loop = oak_loop_new();
    c.loop_thread = pthread_self();
    /* no timer at all: epoll_wait blocks with an infinite timeout */
    pthread_t th;
    uint64_t t0 = oak_now_ms();
    assert_int_equal(pthread_create(&th, NULL, late_poster, &c), 0);
    alarm(10); /* SIGALRM kills the test rather than letting it hang */
    assert_int_equal(oak_loop_run(c.loop), 0);
    alarm(0);
    pthread_join(th, NULL);
    uint64_t dt = oak_now_ms() - t0;
    assert_true(dt >= 45 && dt < 2000);
    oak_loop_free(c.loop);
    (void)state;
}

static void test_free_drops_queue(void **state)
{
    oak_loop_t *l = oak_loop_new();
    int never = 0;
    oak_loop_post(l, on_stop, &never);
    oak_loop_post(l, on_stop, &never);
    oak_loop_add_timer(l, 1000, on_stop, NULL);
    oak_loop_free(l); /* no leak, no call */
    oak_loop_free(NULL);
    (void)state;
}

/* --- fds --- */

typedef struct {
    ctx_t *ctx;
    char buf[64];
    size_t len;
    int writable_calls;
    uint32_t last_events;
} fd_ctx_t;

static void on_readable(oak_loop_t *loop, int fd, uint32_t events, void *data)
{
    fd_ctx_t *f = data;
    f->last_events = events;
    ssize_t r = read(fd, f->buf + f->len, sizeof(f->buf) - 1 - f->len);
    if (r > 0)
        f->len += (size_t)r;
    f->buf[f->len] = '\0';
    if (r == 0 || (events & EPOLLHUP)) {
        oak_loop_del_fd(loop, fd);
        oak_loop_stop(loop);
    }
}

static void on_writable(oak_loop_t *loop, int fd, uint32_t events, void *data)
{
    fd_ctx_t *f = data;
    f->writable_calls++;
    static const char *parts[] = {"hello ", "from ", "the loop"};
    if (f->writable_calls <= 3) {
        assert_true(write(fd, parts[f->writable_calls - 1], strlen(parts[f->writable_calls - 1])) >
                    0);
    } else {
        oak_err_t err = OAK_ERR_INIT;
        /* stop watching, then close: the reader sees EOF */
        assert_int_equal(oak_loop_mod_fd(loop, fd, 0, &err), 0);
        oak_loop_del_fd(loop, fd);
        close(fd);
    }
}

static void test_fd_pipe(void **state)
{
    ctx_t c;
    ctx_init(&c);
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    fd_ctx_t f = {.ctx = &c};
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_loop_add_fd(c.loop, p[0], EPOLLIN, on_readable, &f, &err), 0);
    assert_int_equal(oak_loop_add_fd(c.loop, p[1], EPOLLOUT, on_writable, &f, &err), 0);
    /* one callback per fd */
    assert_int_equal(oak_loop_add_fd(c.loop, p[0], EPOLLIN, on_readable, &f, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(err.errnum, EEXIST);
    ctx_run(&c);
    assert_string_equal(f.buf, "hello from the loop");
    assert_int_equal(f.writable_calls, 4);
    close(p[0]);
    oak_loop_free(c.loop);
    (void)state;
}

static void test_fd_errors(void **state)
{
    oak_loop_t *l = oak_loop_new();
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_loop_add_fd(l, -1, EPOLLIN, NULL, NULL, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(oak_loop_mod_fd(l, 1000, EPOLLIN, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    int high = fcntl(p[0], F_DUPFD_CLOEXEC, 300); /* grows the fd table */
    assert_true(high >= 300);
    fd_ctx_t f = {0};
    assert_int_equal(oak_loop_add_fd(l, high, EPOLLIN, on_readable, &f, &err), 0);
    oak_loop_del_fd(l, high);
    oak_loop_del_fd(l, high); /* twice: ignored */
    oak_loop_del_fd(l, 5000); /* never added: ignored */
    oak_loop_del_fd(l, -3);
    /* re-adding after delete works */
    assert_int_equal(oak_loop_add_fd(l, high, EPOLLIN, on_readable, &f, &err), 0);
    oak_loop_del_fd(l, high);
    close(high);
    close(p[0]);
    oak_loop_free(l);
    (void)state;
}

/* --- signals --- */

typedef struct {
    int got[4];
    int n;
} sig_ctx_t;

static void on_signal(oak_loop_t *loop, int signo, void *data)
{
    sig_ctx_t *s = data;
    if (s->n < 4)
        s->got[s->n++] = signo;
    if (signo == SIGUSR2)
        oak_loop_stop(loop);
}

static void raise_usr1(oak_loop_t *loop, void *data)
{
    raise(SIGUSR1);
}

static void raise_usr2(oak_loop_t *loop, void *data)
{
    raise(SIGUSR2);
}

static void test_signals(void **state)
{
    ctx_t c;
    ctx_init(&c);
    sig_ctx_t s = {0};
    oak_err_t err = OAK_ERR_INIT;
    static const int sigs[] = {SIGUSR1, SIGUSR2};
    assert_int_equal(oak_loop_signals(c.loop, sigs, 2, on_signal, &s, &err), 0);
    /* blocked now: raising does not kill the process, it queues for signalfd */
    oak_loop_add_timer(c.loop, 5, raise_usr1, NULL);
    oak_loop_add_timer(c.loop, 30, raise_usr2, NULL);
    ctx_run(&c);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.got[0], SIGUSR1);
    assert_int_equal(s.got[1], SIGUSR2);
    oak_loop_free(c.loop);
    (void)state;
}

/* --- stop from another thread --- */

static void *stopper(void *arg)
{
    ctx_t *c = arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    oak_loop_stop(c->loop);
    return NULL;
}

static pthread_t stopper_thread;

static void start_stopper(oak_loop_t *loop, void *data)
{
    /* started once the loop runs, so the stop cannot precede oak_loop_run */
    assert_int_equal(pthread_create(&stopper_thread, NULL, stopper, data), 0);
}

static void test_stop_thread(void **state)
{
    ctx_t c;
    ctx_init(&c);
    oak_loop_add_timer(c.loop, 0, start_stopper, &c);
    uint64_t t0 = oak_now_ms();
    ctx_run(&c);
    pthread_join(stopper_thread, NULL);
    uint64_t dt = oak_now_ms() - t0;
    assert_true(dt >= 25 && dt < 2000);
    /* the loop can run again after a stop */
    oak_loop_add_timer(c.loop, 1, on_stop, NULL);
    ctx_run(&c);
    oak_loop_free(c.loop);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock),       cmocka_unit_test(test_timer_order),
        cmocka_unit_test(test_timer_fifo),  cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_timer_rearm), cmocka_unit_test(test_post_threads),
        cmocka_unit_test(test_post_wakes),  cmocka_unit_test(test_free_drops_queue),
        cmocka_unit_test(test_fd_pipe),     cmocka_unit_test(test_fd_errors),
        cmocka_unit_test(test_signals),     cmocka_unit_test(test_stop_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
