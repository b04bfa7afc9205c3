/* Set-associative LRU cache over a trace of line addresses (sim_py/memory.py).
 * Counts the misses of counted accesses per trace "stream" (a table level); uncounted accesses
 * only warm the cache. Built by sim_py/memory.py with gcc. */
#include <stdint.h>
#include <stdlib.h>

int64_t lru_misses(const int64_t *lines, const int32_t *stream, const uint8_t *counted, int64_t n,
                   int64_t sets, int32_t ways, int64_t *misses_per_stream) {
    int64_t *tags = malloc(sizeof(int64_t) * sets * ways);
    uint64_t *used = malloc(sizeof(uint64_t) * sets * ways);
    if (!tags || !used) { free(tags); free(used); return -1; }
    for (int64_t i = 0; i < sets * ways; ++i) { tags[i] = -1; used[i] = 0; }
    uint64_t now = 0;
    int64_t misses = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t line = lines[i];
        const int64_t base = (line % sets) * ways;
        int32_t hit = -1, victim = 0;
        for (int32_t w = 0; w < ways; ++w) {
            if (tags[base + w] == line) { hit = w; break; }
            if (used[base + w] < used[base + victim]) victim = w;
        }
        ++now;
        if (hit >= 0) {
            used[base + hit] = now;
        } else {
            if (counted[i]) {
                ++misses;
                ++misses_per_stream[stream[i]];
            }
            tags[base + victim] = line;
            used[base + victim] = now;
        }
    }
    free(tags);
    free(used);
    return misses;
}
