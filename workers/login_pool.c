/* login_pool.c — the password-checking threads of a worker (see login_pool.h). */
#include "workers/login_pool.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "src/common/log.h"

static void *pool_main(void *arg)
{
    login_pool *p = arg;
    /* A name for top -H and perf; without one it is only unnamed. */
    (void)pthread_setname_np(pthread_self(), "wsn-login");
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->todo == NULL && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping)
            break;
        login_job *job = p->todo;
        p->todo = job->next;
        if (p->todo == NULL)
            p->todo_tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        /* An unknown email costs the same: its job carries a dummy hash. */
        bool match = password_verify(job->password, job->hash);
        job->ok = match && job->user_id != 0;
        OPENSSL_cleanse(job->password, sizeof job->password);
        pthread_mutex_lock(&p->lock);
        job->next = NULL;
        if (p->done_tail != NULL)
            p->done_tail->next = job;
        else
            p->done = job;
        p->done_tail = job;
        uint64_t one = 1;
        if (write(p->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
            log_error("login: cannot wake the worker's loop: %s", strerror(errno));
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* The loop: hand every finished job to on_done. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    login_pool *p = arg;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        log_error("login: reading the results' eventfd: %s", strerror(errno));
    pthread_mutex_lock(&p->lock);
    login_job *job = p->done;
    p->done = p->done_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (job != NULL) {
        login_job *next = job->next;
        p->on_done(job, p->arg);
        job = next;
    }
}

int login_pool_start(login_pool *p, struct event_base *base, login_done_fn on_done, void *arg)
{
    memset(p, 0, sizeof *p);
    p->wake_fd = -1;
    p->on_done = on_done;
    p->arg = arg;
    if (pthread_mutex_init(&p->lock, NULL) != 0 || pthread_cond_init(&p->work, NULL) != 0)
        return -1;
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wake_fd < 0)
        return -1;
    p->wake_ev = event_new(base, p->wake_fd, EV_READ | EV_PERSIST, on_wake, p);
    if (p->wake_ev == NULL || event_add(p->wake_ev, NULL) != 0)
        return -1;
    /* Signals belong to the loop's thread. */
    sigset_t all, old;
    sigfillset(&all);
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < LOGIN_POOL_THREADS && rc == 0; i++) {
        rc = pthread_create(&p->thread[i], NULL, pool_main, p);
        if (rc == 0)
            p->started++;
    }
    if (pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
        rc = -1;
    return rc == 0 ? 0 : -1;
}

int login_pool_submit(login_pool *p, login_job *job)
{
    pthread_mutex_lock(&p->lock);
    if (p->queued >= LOGIN_POOL_QUEUE || p->stopping || p->started == 0) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    job->next = NULL;
    if (p->todo_tail != NULL)
        p->todo_tail->next = job;
    else
        p->todo = job;
    p->todo_tail = job;
    p->queued++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static void free_list(login_job *job)
{
    while (job != NULL) {
        login_job *next = job->next;
        OPENSSL_cleanse(job, sizeof *job);
        free(job);
        job = next;
    }
}

void login_pool_stop(login_pool *p)
{
    if (p->on_done == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->thread[i], NULL);
    free_list(p->todo);
    free_list(p->done);
    if (p->wake_ev != NULL)
        event_free(p->wake_ev);
    if (p->wake_fd >= 0)
        close(p->wake_fd);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    memset(p, 0, sizeof *p);
    p->wake_fd = -1;
}
