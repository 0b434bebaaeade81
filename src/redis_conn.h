/*
 * One asynchronous Redis connection on the loop (hiredis + its libuv
 * adapter), with the states  idle -> resolving -> connecting -> auth ->
 * ready, and backoff between attempts.
 *
 * Host names are resolved with uv_getaddrinfo first, because hiredis would
 * resolve them synchronously.  Every command has a deadline: replies on one
 * connection come back in order, so one timer armed for the oldest pending
 * command suffices; when it fires the connection is dropped and every
 * pending command completes with an error.  Reconnection backs off
 * exponentially with jitter from 100 ms to 5 s.
 */
#ifndef HIGHLANDER_REDIS_CONN_H
#define HIGHLANDER_REDIS_CONN_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

struct redis_conn;

/* reply is NULL on error (err then says why); it is owned by hiredis and
 * valid only during the call. */
typedef void (*redis_reply_cb)(struct redis_conn *c, redisReply *reply, const char *err, void *arg);
typedef void (*redis_state_cb)(struct redis_conn *c, int up, const char *reason);
/* Returns the address to connect to next ("host:port"), into out. */
typedef int (*redis_target_cb)(struct redis_conn *c, char *host, size_t hostlen, int *port);

/* Optional asynchronous discovery (Sentinel) before every connect: fills
 * c->host/c->port and calls redis_conn_discovered(c, ok) later. */
typedef void (*redis_discover_cb)(struct redis_conn *c);

enum redis_conn_state {
    RC_IDLE, RC_DISCOVERING, RC_RESOLVING, RC_CONNECTING, RC_AUTH, RC_READY, RC_BACKOFF, RC_CLOSING, RC_CLOSED
};

struct redis_pending {
    redis_reply_cb cb;
    void *arg;
    uint64_t deadline_ms;
    int done;
    struct redis_pending *next;
    struct redis_conn *conn;
};

struct redis_conn {
    uv_loop_t *loop;
    const char *name;
    enum redis_conn_state state;
    redisAsyncContext *ac;
    uv_getaddrinfo_t gai;
    int gai_active;
    uv_timer_t timer;          /* backoff, and deadline of the head command */
    int timer_open;
    uint64_t backoff_ms;
    uint64_t timeout_ms;       /* per command and for connecting */
    char host[256];
    int port;
    const char *username;
    const char *password;
    int db;
    struct redis_pending *head, *tail;
    redis_state_cb on_state;
    redis_target_cb target;
    redis_discover_cb discover;
    void *data;                /* owner */
    int subscriber;            /* pub/sub: replies are pushed, no deadline */
    redis_reply_cb on_push;
    void (*closed_cb)(struct redis_conn *c);
    char last_error[160];
};

void redis_conn_init(struct redis_conn *c, uv_loop_t *loop, const char *name, uint64_t timeout_ms);
/* Starts connecting to the address the target callback gives. */
void redis_conn_start(struct redis_conn *c);
/* Sends a command; cb runs exactly once.  Returns 0, or -1 when not
 * connected (cb is not called then). */
int redis_conn_command(struct redis_conn *c, redis_reply_cb cb, void *arg, int argc, const char **argv,
                       const size_t *argvlen);
/* Drops the connection (pending commands fail) and reconnects after backoff. */
void redis_conn_reset(struct redis_conn *c, const char *reason);
/* Ends a discovery started by the discover hook. */
void redis_conn_discovered(struct redis_conn *c, int ok, const char *reason);
/* Subscribes (on a connection set up with on_push); every message goes to
 * on_push.  Returns 0 or -1 when not connected. */
int redis_conn_subscribe(struct redis_conn *c, const char *channel);
void redis_conn_close(struct redis_conn *c, void (*closed_cb)(struct redis_conn *c));

#endif
