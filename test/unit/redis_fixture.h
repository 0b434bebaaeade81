/* A real redis-server for unit tests: started on a free loopback port,
 * stopped (and its process reaped) at the end. */
#ifndef TEST_REDIS_FIXTURE_H
#define TEST_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct redis_fixture {
    pid_t pid;
    int port;
};

static int fixture_free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int fixture_can_connect(int port)
{
    struct sockaddr_in a = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

static int redis_fixture_start(struct redis_fixture *f)
{
    char port[16];
    char *argv[] = {(char *)"redis-server", (char *)"--port", port, (char *)"--bind", (char *)"127.0.0.1",
                    (char *)"--save", (char *)"", (char *)"--appendonly", (char *)"no",
                    (char *)"--loglevel", (char *)"warning", NULL};
    struct timespec ts = {0, 20 * 1000 * 1000};

    f->port = fixture_free_port();
    snprintf(port, sizeof(port), "%d", f->port);
    if (posix_spawnp(&f->pid, "redis-server", NULL, NULL, argv, environ) != 0)
        return -1;
    for (int i = 0; i < 250; i++) {
        if (fixture_can_connect(f->port))
            return 0;
        nanosleep(&ts, NULL);
    }
    return -1;
}

static void redis_fixture_stop(struct redis_fixture *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

#endif
