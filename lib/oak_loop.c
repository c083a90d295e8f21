/* epoll event loop with a timer min-heap, signalfd and an eventfd work
 * queue. The loop struct is owned by the loop thread; the work queue is the
 * only part guarded by a mutex. */
#include "lib/oak_loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_log.h"

typedef struct {
    oak_loop_fd_cb cb;
    void *data;
    bool used;
} fd_slot_t;

typedef struct {
    uint64_t due;
    uint64_t id;
    oak_loop_cb cb;
    void *data;
} timer_t_;

typedef struct work {
    oak_loop_cb cb;
    void *data;
    struct work *next;
} work_t;

struct oak_loop {
    int epfd;
    int evfd;
    int sigfd;
    oak_loop_signal_cb sig_cb;
    void *sig_data;
    fd_slot_t *fds;
    int nfds;
    timer_t_ *timers;
    size_t ntimers, cap_timers;
    uint64_t next_timer_id;
    pthread_mutex_t lock;
    work_t *head, *tail;
    int stop; /* written by any thread: __atomic builtins only */
};

uint64_t oak_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t oak_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

double oak_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

oak_loop_t *oak_loop_new(void)
{
    oak_loop_t *l = xcalloc(1, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->sigfd = -1;
    if (l->epfd < 0 || l->evfd < 0) {
        log_error("event loop: cannot create epoll/eventfd: %s", strerror(errno));
        abort();
    }
    pthread_mutex_init(&l->lock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->evfd};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev);
    return l;
}

void oak_loop_free(oak_loop_t *l)
{
    if (!l)
        return;
    work_t *w = l->head;
    while (w) {
        work_t *n = w->next;
        free(w);
        w = n;
    }
    close(l->epfd);
    close(l->evfd);
    if (l->sigfd >= 0)
        close(l->sigfd);
    pthread_mutex_destroy(&l->lock);
    free(l->fds);
    free(l->timers);
    free(l);
}

int oak_loop_add_fd(oak_loop_t *l, int fd, uint32_t events, oak_loop_fd_cb cb, void *data,
                    oak_err_t *err)
{
    if (fd < 0)
        return oak_err_set(err, OAK_E_INVALID, "negative fd");
    if (fd >= l->nfds) {
        int n = fd + 64;
        l->fds = xrealloc(l->fds, sizeof(fd_slot_t) * (size_t)n);
        memset(l->fds + l->nfds, 0, sizeof(fd_slot_t) * (size_t)(n - l->nfds));
        l->nfds = n;
    }
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return oak_err_errno(err, errno, "epoll add fd %d", fd);
    l->fds[fd] = (fd_slot_t){.cb = cb, .data = data, .used = true};
    return 0;
}

int oak_loop_mod_fd(oak_loop_t *l, int fd, uint32_t events, oak_err_t *err)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return oak_err_errno(err, errno, "epoll mod fd %d", fd);
    return 0;
}

void oak_loop_del_fd(oak_loop_t *l, int fd)
{
    if (fd < 0 || fd >= l->nfds || !l->fds[fd].used)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    l->fds[fd].used = false;
}

static void heap_swap(timer_t_ *a, timer_t_ *b)
{
    timer_t_ t = *a;
    *a = *b;
    *b = t;
}

/* Earlier deadline first; ids break ties so that timers due at the same
 * millisecond fire in the order they were added. */
static bool timer_before(const timer_t_ *a, const timer_t_ *b)
{
    return a->due < b->due || (a->due == b->due && a->id < b->id);
}

static void heap_up(oak_loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_before(&l->timers[i], &l->timers[p]))
            break;
        heap_swap(&l->timers[p], &l->timers[i]);
        i = p;
    }
}

static void heap_down(oak_loop_t *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->ntimers && timer_before(&l->timers[a], &l->timers[m]))
            m = a;
        if (b < l->ntimers && timer_before(&l->timers[b], &l->timers[m]))
            m = b;
        if (m == i)
            return;
        heap_swap(&l->timers[m], &l->timers[i]);
        i = m;
    }
}

static void heap_remove(oak_loop_t *l, size_t i)
{
    l->ntimers--;
    if (i == l->ntimers)
        return;
    l->timers[i] = l->timers[l->ntimers];
    heap_down(l, i);
    heap_up(l, i);
}

uint64_t oak_loop_add_timer(oak_loop_t *l, uint64_t ms, oak_loop_cb cb, void *data)
{
    if (l->ntimers == l->cap_timers) {
        l->cap_timers = l->cap_timers ? l->cap_timers * 2 : 16;
        l->timers = xrealloc(l->timers, sizeof(timer_t_) * l->cap_timers);
    }
    uint64_t id = ++l->next_timer_id;
    l->timers[l->ntimers] = (timer_t_){.due = oak_now_ms() + ms, .id = id, .cb = cb, .data = data};
    heap_up(l, l->ntimers++);
    return id;
}

void oak_loop_cancel_timer(oak_loop_t *l, uint64_t id)
{
    for (size_t i = 0; i < l->ntimers; i++) {
        if (l->timers[i].id == id) {
            heap_remove(l, i);
            return;
        }
    }
}

void oak_loop_post(oak_loop_t *l, oak_loop_cb cb, void *data)
{
    work_t *w = xmalloc(sizeof(*w));
    w->cb = cb;
    w->data = data;
    w->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    pthread_mutex_unlock(&l->lock);
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof(one)) < 0) {
        /* EAGAIN: counter saturated, the loop is awake anyway */
    }
}

int oak_loop_signals(oak_loop_t *l, const int *signals, int n, oak_loop_signal_cb cb, void *data,
                     oak_err_t *err)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, signals[i]);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return oak_err_set(err, OAK_E_INTERNAL, "cannot block signals");
    l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (l->sigfd < 0)
        return oak_err_errno(err, errno, "signalfd");
    l->sig_cb = cb;
    l->sig_data = data;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l->sigfd};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->sigfd, &ev) < 0)
        return oak_err_errno(err, errno, "epoll add signalfd");
    return 0;
}

void oak_loop_stop(oak_loop_t *l)
{
    __atomic_store_n(&l->stop, 1, __ATOMIC_SEQ_CST);
    uint64_t one = 1;
    if (write(l->evfd, &one, sizeof(one)) < 0) {
    }
}

static void run_work(oak_loop_t *l)
{
    uint64_t v;
    if (read(l->evfd, &v, sizeof(v)) < 0) {
    }
    pthread_mutex_lock(&l->lock);
    work_t *w = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->lock);
    while (w) {
        work_t *n = w->next;
        w->cb(l, w->data);
        free(w);
        w = n;
    }
}

static void run_timers(oak_loop_t *l)
{
    uint64_t now = oak_now_ms();
    while (l->ntimers > 0 && l->timers[0].due <= now) {
        timer_t_ t = l->timers[0];
        heap_remove(l, 0);
        t.cb(l, t.data);
    }
}

int oak_loop_run(oak_loop_t *l)
{
    struct epoll_event evs[64];
    /* a stop requested before run started is honoured; the flag is reset on
     * the way out so the loop can be run again (e.g. to drain callbacks) */
    while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        int timeout = -1;
        if (l->ntimers > 0) {
            uint64_t now = oak_now_ms(), due = l->timers[0].due;
            /* clamped: a timer more than ~24 days away must not wrap to "forever" */
            timeout = due <= now ? 0 : due - now > INT_MAX ? INT_MAX : (int)(due - now);
        }
        int n = epoll_wait(l->epfd, evs, 64, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == l->evfd) {
                run_work(l);
            } else if (fd == l->sigfd) {
                struct signalfd_siginfo si;
                while (read(l->sigfd, &si, sizeof(si)) == sizeof(si))
                    if (l->sig_cb)
                        l->sig_cb(l, (int)si.ssi_signo, l->sig_data);
            } else if (fd < l->nfds && l->fds[fd].used) {
                l->fds[fd].cb(l, fd, evs[i].events, l->fds[fd].data);
            }
        }
        run_timers(l);
    }
    __atomic_store_n(&l->stop, 0, __ATOMIC_SEQ_CST);
    return 0;
}
