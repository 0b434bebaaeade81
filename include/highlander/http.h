/*
 * HTTP/1.1 server on the loop: llhttp parses, a static route table
 * dispatches, handlers answer synchronously from in-memory state.
 *
 * The byte-level part (struct http_session) is independent of sockets so
 * that unit tests and the fuzzer feed it directly; http_server wraps it
 * with libuv: accept, timeouts, connection cap and write back-pressure.
 */
#ifndef HIGHLANDER_HTTP_H
#define HIGHLANDER_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "llhttp.h"
#include "highlander/util.h"

#define HTTP_M_GET (1u << 0)
#define HTTP_M_HEAD (1u << 1)
#define HTTP_M_POST (1u << 2)
#define HTTP_M_PUT (1u << 3)
#define HTTP_M_DELETE (1u << 4)

struct http_request {
    unsigned method;          /* one HTTP_M_* bit; 0 for methods we never route */
    const char *method_name;
    char *path;               /* percent-decoded path, no query */
    char *query;              /* raw query string without '?', or NULL */
    char *authorization;
    char *if_none_match;
    struct buf body;
};

struct http_response {
    int status;
    const char *content_type;
    const char *cache_control; /* NULL: no-store */
    struct buf body;
    struct buf headers;       /* extra "Name: value\r\n" lines */
};

/* Handlers fill res; ctx is the router's context. */
typedef void (*http_handler_fn)(void *ctx, const struct http_request *req, struct http_response *res);

struct http_route {
    const char *path;         /* exact path, or a prefix when prefix is set */
    unsigned methods;         /* HTTP_M_* bits; HEAD is implied by GET */
    int prefix;
    int protected;            /* needs the bearer token when one is configured */
    http_handler_fn handler;
};

struct http_router {
    const struct http_route *routes;
    size_t nroutes;
    void *ctx;
    const char *token;        /* bearer token for protected routes, or NULL */
};

struct http_limits {
    size_t max_header_bytes;  /* 16 KiB -> 431 */
    size_t max_body_bytes;    /* 1 MiB -> 413 */
    size_t max_output_bytes;  /* 1 MiB of unsent answers per connection: no
                               * further request is answered (or read) */
    size_t max_bodies_bytes;  /* 16 MiB of request bodies over all
                               * connections together -> 503 */
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t write_timeout_ms; /* unsent output makes no progress -> close */
    unsigned max_connections;
};

void http_limits_default(struct http_limits *l);

/* Writes a JSON envelope: {"status":"success","data":<data_json>} */
void http_respond_json(struct http_response *res, int status, const char *data_json);
void http_respond_error(struct http_response *res, int status, const char *message);
void http_respond_text(struct http_response *res, int status, const char *text);
/* Value of query parameter name (decoded) into out; returns 0 if present. */
int http_query_get(const struct http_request *req, const char *name, char *out, size_t outlen);

/* ---- byte-level session ------------------------------------------------- */

struct http_session {
    llhttp_t parser;
    const struct http_router *router;
    const struct http_limits *limits;
    struct http_request req;
    struct buf url;
    char field[32];           /* current header name, lower-cased, truncated */
    size_t field_len;
    int field_overflow;
    struct buf *value_target; /* header value being collected, or NULL */
    struct buf auth_buf, inm_buf;
    size_t header_bytes;
    unsigned hosts;           /* Host fields in this request */
    unsigned value_spans;     /* pieces of the current header value */
    int value_at_end;         /* the last piece ended where the input did */
    const char *feed_end;     /* end of the input being parsed */
    size_t backlog;           /* answers queued in the socket, unsent (set
                               * by the socket layer before each feed) */
    int paused;               /* output budget full: parsing stopped */
    struct buf held;          /* input read but not parsed while paused */
    size_t *bodies_used;      /* shared body budget, or NULL for none */
    size_t body_reserved;     /* this request's share of it */
    int in_message;           /* between first byte and message complete */
    int error_status;         /* status to answer a parse failure with */
    int closing;              /* no more requests are read */
    struct buf out;           /* responses waiting to be written */
    uint64_t requests;
};

void http_session_init(struct http_session *s, const struct http_router *router,
                       const struct http_limits *limits);
void http_session_free(struct http_session *s);
/*
 * Parses data, dispatching every complete request and appending responses
 * to s->out.  Returns 0 to keep reading; 1 when the output budget is full
 * (the rest of data is held: stop reading, write, then call
 * http_session_resume); or -1 when the connection must be closed once
 * s->out is written (an error response may have been queued).
 */
int http_session_feed(struct http_session *s, const char *data, size_t len);
/* Once output has drained (s->backlog updated): parses what was held.
 * Returns as http_session_feed; 1 again while the budget is still full. */
int http_session_resume(struct http_session *s);
/* Queues a 408 for a request that timed out (or nothing when idle). */
void http_session_timeout(struct http_session *s);

/* Dispatches one parsed request through the router (exposed for tests). */
void http_router_dispatch(const struct http_router *r, const struct http_request *req,
                          struct http_response *res);

/* ---- libuv server ------------------------------------------------------- */

struct http_server;

struct http_server_stats {
    uint64_t accepted;
    uint64_t rejected;        /* over the connection cap */
    uint64_t requests;
    uint64_t timeouts;        /* header, idle and write timeouts */
    uint64_t shed;            /* least recently active closed at the cap */
    unsigned open;
};

/* The router and limits must outlive the server. */
struct http_server *http_server_new(uv_loop_t *loop, const struct http_router *router,
                                    const struct http_limits *limits);
/* Binds and listens; returns 0 or a negative libuv error. */
int http_server_listen(struct http_server *srv, const char *host, int port) HL_MUST_CHECK;
/* Closes the listener and every connection; cb runs once all handles are
 * closed, after which the server is freed. */
void http_server_close(struct http_server *srv, void (*cb)(void *arg), void *arg);
void http_server_stats(const struct http_server *srv, struct http_server_stats *out);
int http_server_port(const struct http_server *srv);

#endif
