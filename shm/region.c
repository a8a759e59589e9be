/* region.c — create and map the shared region (see region.h). */
#include "shm/region.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REGION_MAGIC 0x57534e31u /* "WSN1" */

static size_t page_round(size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t p = page > 0 ? (size_t)page : 4096;
    return (n + p - 1) / p * p;
}

int region_create(shm_region *r, int slots, uint32_t capacity)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    size_t dir_size = directory_size(capacity);
    size_t rl_size = ratelimit_size(capacity);
    /* Logins are counted per email in a table of their own, so that a flood of
     * one kind of attempt cannot push the other kind's counts out. */
    uint32_t login_capacity = capacity < REGION_LOGIN_CAPACITY ? capacity : REGION_LOGIN_CAPACITY;
    size_t login_size = ratelimit_size(login_capacity);
    if (slots < 1 || slots > REGION_MAX_SLOTS || dir_size == 0 || rl_size == 0 ||
        login_size == 0) {
        errno = EINVAL;
        return -1;
    }
    size_t dir_offset = page_round(sizeof(region_header));
    size_t rl_offset = dir_offset + page_round(dir_size);
    size_t login_offset = rl_offset + page_round(rl_size);
    size_t size = login_offset + page_round(login_size);
    int fd = memfd_create("wsnotifyd-shm", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    region_header *hdr = mem;
    hdr->slots = (uint32_t)slots;
    hdr->size = size;
    hdr->directory_offset = dir_offset;
    hdr->ratelimit_offset = rl_offset;
    hdr->login_ratelimit_offset = login_offset;
    if (directory_init((char *)mem + dir_offset, capacity) != 0 ||
        ratelimit_init((char *)mem + rl_offset, capacity) != 0 ||
        ratelimit_init((char *)mem + login_offset, login_capacity) != 0) {
        munmap(mem, size);
        close(fd);
        errno = EINVAL;
        return -1;
    }
    /* Ids start from microseconds since the epoch, so a restart does not reuse
     * numbers handed out before it (at under a million ids per second). */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_store(&hdr->next_notification_id,
                 (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000);
    hdr->magic = REGION_MAGIC;
    r->hdr = hdr;
    r->dir = directory_attach((char *)mem + dir_offset);
    r->rl = ratelimit_attach((char *)mem + rl_offset);
    r->login_rl = ratelimit_attach((char *)mem + login_offset);
    r->size = size;
    r->fd = fd;
    return 0;
}

int region_attach(shm_region *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if ((size_t)st.st_size < sizeof(region_header)) {
        errno = EINVAL;
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        return -1;
    region_header *hdr = mem;
    if (hdr->magic != REGION_MAGIC || hdr->size != size || hdr->directory_offset >= size ||
        hdr->ratelimit_offset >= size || hdr->login_ratelimit_offset >= size ||
        ratelimit_attach((char *)mem + hdr->ratelimit_offset) == NULL ||
        ratelimit_attach((char *)mem + hdr->login_ratelimit_offset) == NULL) {
        munmap(mem, size);
        errno = EINVAL;
        return -1;
    }
    r->hdr = hdr;
    r->dir = directory_attach((char *)mem + hdr->directory_offset);
    r->rl = ratelimit_attach((char *)mem + hdr->ratelimit_offset);
    r->login_rl = ratelimit_attach((char *)mem + hdr->login_ratelimit_offset);
    r->size = size;
    r->fd = fd;
    return 0;
}

void region_detach(shm_region *r)
{
    if (r->hdr != NULL)
        munmap(r->hdr, r->size);
    if (r->fd >= 0)
        close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

int64_t region_total_connections(const shm_region *r)
{
    int64_t total = 0;
    for (uint32_t i = 0; i < r->hdr->slots; i++)
        total += atomic_load_explicit(&r->hdr->slot[i].connections, memory_order_relaxed);
    return total < 0 ? 0 : total;
}

int region_ready_workers(const shm_region *r)
{
    int n = 0;
    for (uint32_t i = 0; i < r->hdr->slots; i++)
        n += atomic_load_explicit(&r->hdr->slot[i].ready, memory_order_relaxed) != 0;
    return n;
}

int64_t region_next_notification_id(shm_region *r)
{
    return atomic_fetch_add_explicit(&r->hdr->next_notification_id, 1, memory_order_relaxed);
}

uint64_t region_marks_pending_upto(const region_slot *s)
{
    uint64_t word = atomic_load_explicit(&s->marks_sent, memory_order_acquire);
    return (word >> 1) + (word & 1);
}

void region_count_notification(shm_region *r, notify_outcome outcome)
{
    atomic_fetch_add_explicit(&r->hdr->notifications[outcome], 1, memory_order_relaxed);
}

uint64_t region_begin_reload(shm_region *r)
{
    return atomic_fetch_add_explicit(&r->hdr->reload_generation, 1, memory_order_acq_rel) + 1;
}

uint64_t region_reload_generation(const shm_region *r)
{
    return atomic_load_explicit(&r->hdr->reload_generation, memory_order_acquire);
}

void region_ack_reload(region_slot *slot, uint64_t generation)
{
    atomic_store_explicit(&slot->reload_ack, generation, memory_order_release);
}

bool region_reload_pending(const shm_region *r, int slot, uint64_t generation)
{
    const region_slot *s = &r->hdr->slot[slot];
    return atomic_load_explicit(&s->pid, memory_order_relaxed) != 0 &&
           atomic_load_explicit(&s->ready, memory_order_relaxed) != 0 &&
           atomic_load_explicit(&s->reload_ack, memory_order_acquire) < generation;
}
