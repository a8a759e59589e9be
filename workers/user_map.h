/* user_map.h — a worker's own index of its open connections by user_id
 * (open addressing, linear probing, backward-shift delete; grows by doubling).
 * Single-threaded: only the worker's loop touches it. */
#ifndef WSN_USER_MAP_H
#define WSN_USER_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t user;   /* 0 = empty */
    void *value;
} user_map_entry;

typedef struct {
    user_map_entry *entries;
    size_t mask;    /* table size - 1 (size is a power of two), 0 when unallocated */
    size_t count;
} user_map;

void user_map_init(user_map *m);
void user_map_free(user_map *m);

/* Value for user, or NULL. */
void *user_map_get(const user_map *m, int64_t user);

/* Insert or replace. Returns 0, or -1 when memory ran out (map unchanged). */
int user_map_put(user_map *m, int64_t user, void *value);

/* Remove user if it maps to value. Returns 1 if removed. */
int user_map_remove(user_map *m, int64_t user, const void *value);

/* Walk the table in slot order from *pos: up to max values go into out
 * (their count is returned), and *pos moves past them (back to 0 after the
 * last slot). The map must not change between the call and the use of out. */
size_t user_map_scan(const user_map *m, size_t *pos, size_t max, void **out);

/* Slots in the table (the range of a scan position). */
size_t user_map_slots(const user_map *m);

#endif
