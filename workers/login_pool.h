/* login_pool.h — a worker's password checks, off its event loop: a few
 * threads run crypt(3) (tens of milliseconds each, by design) on the jobs the
 * loop submits, and hand each result back to the loop through an eventfd, so
 * no other client of the worker waits for a login. The pool is bounded: a
 * full queue refuses the job and the login is answered 503.
 *
 * Ownership: a job is the pool's from login_pool_submit until on_done runs on
 * the loop thread, which then owns (and frees) it. Only the loop touches
 * job->owner: it clears it when the waiting client goes away, and on_done
 * then just frees the job. */
#ifndef WSN_LOGIN_POOL_H
#define WSN_LOGIN_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/password.h"
#include "src/common/users_file.h"

#define LOGIN_POOL_THREADS 2     /* per worker */
#define LOGIN_POOL_QUEUE 256     /* jobs waiting for a thread, per worker */

struct event_base;
struct event;

typedef struct login_job {
    struct login_job *next;
    void *owner;                 /* the client waiting for it; NULL once gone (loop only) */
    int64_t user_id;             /* 0: no such email (checked against a dummy hash) */
    char email[USERS_EMAIL_MAX + 1];
    char password[PASSWORD_MAX + 1];
    char hash[PASSWORD_HASH_MAX];
    bool ok;                     /* the result: the password matched (user_id != 0) */
} login_job;

typedef void (*login_done_fn)(login_job *job, void *arg);

typedef struct {
    pthread_t thread[LOGIN_POOL_THREADS];
    int started;
    pthread_mutex_t lock;        /* guards the lists, queued and stopping */
    pthread_cond_t work;
    login_job *todo, *todo_tail;
    login_job *done, *done_tail;
    size_t queued;
    bool stopping;
    int wake_fd;                 /* eventfd: results are waiting for the loop */
    struct event *wake_ev;
    login_done_fn on_done;
    void *arg;
} login_pool;

/* Start the threads and register the result event on base. Returns 0 or -1. */
int login_pool_start(login_pool *p, struct event_base *base, login_done_fn on_done, void *arg);

/* Queue a job. Returns 0, or -1 when the queue is full (the job stays the
 * caller's). */
int login_pool_submit(login_pool *p, login_job *job);

/* Stop the threads, free every job not handed back. A pool never started (all
 * zero) is a no-op. */
void login_pool_stop(login_pool *p);

#endif
