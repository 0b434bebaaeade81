/*
 * /proc readings.  These are small files read with plain read(2); /proc
 * never blocks on I/O, so reading them on the loop thread is fine.
 */
#include "highlander/procstat.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static ssize_t read_small(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n, total = 0;

    if (fd < 0)
        return -1;
    while ((size_t)total < cap - 1 && (n = read(fd, out + total, cap - 1 - (size_t)total)) > 0)
        total += n;
    close(fd);
    out[total] = '\0';
    return total;
}

static uint64_t status_kb(const char *status, const char *key)
{
    const char *p = strstr(status, key);

    if (p == NULL)
        return 0;
    return strtoull(p + strlen(key), NULL, 10) * 1024u;
}

int procstat_read(struct procstat *ps)
{
    char buf[4096];
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;

    memset(ps, 0, sizeof(*ps));
    if (read_small("/proc/self/status", buf, sizeof(buf)) < 0)
        return -1;
    ps->rss_bytes = status_kb(buf, "VmRSS:");
    ps->peak_rss_bytes = status_kb(buf, "VmHWM:");
    ps->vsize_bytes = status_kb(buf, "VmSize:");
    {
        const char *t = strstr(buf, "Threads:");
        if (t)
            ps->threads = atoi(t + 8);
    }
    if (read_small("/proc/self/stat", buf, sizeof(buf)) > 0) {
        /* Fields after the command name, which may hold spaces and ')'. */
        const char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        unsigned long long starttime = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu",
                        &utime, &stime, &starttime) == 3 && ticks > 0) {
            ps->cpu_seconds = (double)(utime + stime) / (double)ticks;
            char up[128];
            if (read_small("/proc/stat", buf, sizeof(buf)) > 0) {
                const char *bt = strstr(buf, "btime ");
                if (bt)
                    ps->start_time = (double)strtoull(bt + 6, NULL, 10) + (double)starttime / (double)ticks;
            }
            (void)up;
        }
    }
    (void)page;
    {
        DIR *d = opendir("/proc/self/fd");
        if (d) {
            struct dirent *e;
            long n = 0;
            while ((e = readdir(d)) != NULL)
                if (e->d_name[0] != '.')
                    n++;
            closedir(d);
            ps->open_fds = n > 0 ? n - 1 : 0; /* the directory's own fd */
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        ps->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
    if (read_small("/proc/loadavg", buf, sizeof(buf)) > 0)
        ps->load1 = strtod(buf, NULL);
    return 0;
}
