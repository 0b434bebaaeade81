/* Readings of this process and the machine from /proc. */
#ifndef HIGHLANDER_PROCSTAT_H
#define HIGHLANDER_PROCSTAT_H

#include <stdint.h>

struct procstat {
    uint64_t rss_bytes;
    uint64_t peak_rss_bytes;
    uint64_t vsize_bytes;
    double cpu_seconds;
    double start_time;      /* seconds since the epoch */
    long open_fds;
    long max_fds;
    int threads;
    double load1;
};

/* Fills what it can read; fields it cannot read are left zero.
 * Returns 0, or -1 when /proc/self is not readable at all. */
int procstat_read(struct procstat *ps);

#endif
