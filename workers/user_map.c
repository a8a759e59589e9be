/* user_map.c — open-addressing map user_id → connection (see user_map.h). */
#include "workers/user_map.h"

#include <stdlib.h>

#include "shm/hash.h"

#define USER_MAP_MIN_SIZE 64

void user_map_init(user_map *m)
{
    m->entries = NULL;
    m->mask = 0;
    m->count = 0;
}

void user_map_free(user_map *m)
{
    free(m->entries);
    user_map_init(m);
}

static size_t find_slot(const user_map_entry *entries, size_t mask, int64_t user)
{
    size_t i = mix64((uint64_t)user) & mask;
    while (entries[i].user != 0 && entries[i].user != user)
        i = (i + 1) & mask;
    return i;
}

void *user_map_get(const user_map *m, int64_t user)
{
    if (m->entries == NULL)
        return NULL;
    size_t i = find_slot(m->entries, m->mask, user);
    return m->entries[i].user == user ? m->entries[i].value : NULL;
}

static int grow(user_map *m)
{
    size_t size = m->entries ? (m->mask + 1) * 2 : USER_MAP_MIN_SIZE;
    user_map_entry *entries = calloc(size, sizeof *entries);
    if (entries == NULL)
        return -1;
    if (m->entries != NULL) {
        for (size_t i = 0; i <= m->mask; i++) {
            if (m->entries[i].user != 0)
                entries[find_slot(entries, size - 1, m->entries[i].user)] = m->entries[i];
        }
        free(m->entries);
    }
    m->entries = entries;
    m->mask = size - 1;
    return 0;
}

int user_map_put(user_map *m, int64_t user, void *value)
{
    /* Keep the load under 1/2 so probes stay short. */
    if ((m->entries == NULL || (m->count + 1) * 2 > m->mask + 1) && grow(m) != 0)
        return -1;
    size_t i = find_slot(m->entries, m->mask, user);
    if (m->entries[i].user == 0)
        m->count++;
    m->entries[i].user = user;
    m->entries[i].value = value;
    return 0;
}

int user_map_remove(user_map *m, int64_t user, const void *value)
{
    if (m->entries == NULL)
        return 0;
    size_t i = find_slot(m->entries, m->mask, user);
    if (m->entries[i].user != user || m->entries[i].value != value)
        return 0;
    /* Backward-shift deletion: pull later entries of the probe run into the hole. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->entries[j].user == 0)
            break;
        size_t home = mix64((uint64_t)m->entries[j].user) & m->mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            m->entries[hole] = m->entries[j];
            hole = j;
        }
    }
    m->entries[hole].user = 0;
    m->entries[hole].value = NULL;
    m->count--;
    return 1;
}

size_t user_map_slots(const user_map *m)
{
    return m->entries != NULL ? m->mask + 1 : 0;
}

size_t user_map_scan(const user_map *m, size_t *pos, size_t max, void **out)
{
    size_t n = 0;
    size_t slots = user_map_slots(m);
    size_t i = *pos < slots ? *pos : 0;
    for (; i < slots && n < max; i++)
        if (m->entries[i].user != 0)
            out[n++] = m->entries[i].value;
    *pos = i < slots ? i : 0;
    return n;
}
