/* The event loop that owns a daemon's state: epoll for fds, a timer heap,
 * signalfd for signals and an eventfd-woken work queue through which library
 * threads (libmicrohttpd, gRPC completion queue, paho, worker threads) hand
 * work to the loop thread. Only oak_loop_post() and oak_loop_stop() may be
 * called from other threads. */
#ifndef OAK_LOOP_H
#define OAK_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

#include "lib/oak_err.h"

typedef struct oak_loop oak_loop_t;
typedef void (*oak_loop_fd_cb)(oak_loop_t *loop, int fd, uint32_t events, void *data);
typedef void (*oak_loop_cb)(oak_loop_t *loop, void *data);
typedef void (*oak_loop_signal_cb)(oak_loop_t *loop, int signo, void *data);

/* Monotonic clock in milliseconds / microseconds. */
uint64_t oak_now_ms(void);
uint64_t oak_now_us(void);
/* Wall clock in seconds since the epoch, with fraction. */
double oak_wall_time(void);

oak_loop_t *oak_loop_new(void);
/* Frees the loop; queued work items that never ran are dropped (their data
 * is not freed: callers drain with oak_loop_run before freeing). */
void oak_loop_free(oak_loop_t *loop);

/* Watches fd for events (EPOLLIN/EPOLLOUT...). One callback per fd. */
int oak_loop_add_fd(oak_loop_t *loop, int fd, uint32_t events, oak_loop_fd_cb cb, void *data,
                    oak_err_t *err);
int oak_loop_mod_fd(oak_loop_t *loop, int fd, uint32_t events, oak_err_t *err);
void oak_loop_del_fd(oak_loop_t *loop, int fd);

/* One-shot timer after ms milliseconds; returns its id (> 0). */
uint64_t oak_loop_add_timer(oak_loop_t *loop, uint64_t ms, oak_loop_cb cb, void *data);
/* Cancels a pending timer; unknown or fired ids are ignored. */
void oak_loop_cancel_timer(oak_loop_t *loop, uint64_t id);

/* Thread-safe: queues cb(data) to run on the loop thread and wakes it. */
void oak_loop_post(oak_loop_t *loop, oak_loop_cb cb, void *data);

/* Blocks the given signals in the calling thread (call before starting
 * library threads so they inherit the mask) and delivers them to cb. */
int oak_loop_signals(oak_loop_t *loop, const int *signals, int n, oak_loop_signal_cb cb, void *data,
                     oak_err_t *err);

/* Runs until oak_loop_stop(). Returns 0. */
int oak_loop_run(oak_loop_t *loop);
/* Thread-safe: makes oak_loop_run return after the current iteration. */
void oak_loop_stop(oak_loop_t *loop);

#endif
