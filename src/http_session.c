/*
 * The byte-level HTTP/1.1 session: llhttp callbacks assemble one request
 * at a time, enforce the header and body limits, and dispatch each request
 * as soon as it is complete, so that pipelined requests in one read are
 * answered in order and a request split across reads is assembled without
 * rescanning.  Responses are appended to s->out; the socket layer writes
 * them.
 */
#include "highlander/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static llhttp_settings_t settings;
static int settings_ready;

void http_limits_default(struct http_limits *l)
{
    l->max_header_bytes = 16 * 1024;
    l->max_body_bytes = 1024 * 1024;
    l->max_output_bytes = 1024 * 1024;
    l->max_bodies_bytes = 16 * 1024 * 1024;
    l->header_timeout_ms = 10 * 1000;
    l->idle_timeout_ms = 60 * 1000;
    l->write_timeout_ms = 10 * 1000;
    l->max_connections = 4096;
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

void http_respond_json(struct http_response *res, int status, const char *data_json)
{
    res->status = status;
    res->content_type = "application/json";
    buf_reset(&res->body);
    buf_printf(&res->body, "{\"status\":\"success\",\"data\":%s}", data_json);
}

void http_respond_error(struct http_response *res, int status, const char *message)
{
    res->status = status;
    res->content_type = "application/json";
    buf_reset(&res->body);
    buf_puts(&res->body, "{\"status\":\"error\",\"error\":");
    buf_json_string(&res->body, message);
    buf_putc(&res->body, '}');
}

void http_respond_text(struct http_response *res, int status, const char *text)
{
    res->status = status;
    res->content_type = "text/plain; charset=utf-8";
    buf_reset(&res->body);
    buf_puts(&res->body, text);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into a new string; '+' decodes to ' ' when
 * plus_is_space.  Returns NULL for malformed escapes or a decoded NUL. */
static char *pct_decode(const char *s, size_t n, int plus_is_space)
{
    char *out = xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            *o++ = ' ';
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

int http_query_get(const struct http_request *req, const char *name, char *out, size_t outlen)
{
    const char *p = req->query;
    size_t nlen = strlen(name);

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            char *v = pct_decode(p + nlen + 1, len - nlen - 1, 1);
            if (v == NULL)
                return -1;
            snprintf(out, outlen, "%s", v);
            free(v);
            return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

/* Gives this request's share of the shared body budget back. */
static void body_release(struct http_session *s)
{
    if (s->bodies_used && s->body_reserved) {
        *s->bodies_used -= s->body_reserved;
        s->body_reserved = 0;
    }
}

/* Takes n more bytes of the shared body budget; -1 when it is spent. */
static int body_reserve(struct http_session *s, size_t n)
{
    if (s->bodies_used == NULL)
        return 0;
    if (*s->bodies_used + n > s->limits->max_bodies_bytes)
        return -1;
    *s->bodies_used += n;
    s->body_reserved += n;
    return 0;
}

static void request_reset(struct http_request *r)
{
    free(r->path);
    free(r->query);
    r->path = NULL;
    r->query = NULL;
    r->authorization = NULL;
    r->if_none_match = NULL;
    r->method = 0;
    r->method_name = "";
    buf_reset(&r->body);
}

static void append_response(struct http_session *s, const struct http_response *res, int head_only, int close)
{
    buf_printf(&s->out, "HTTP/1.1 %d %s\r\n", res->status, status_text(res->status));
    if (res->content_type)
        buf_printf(&s->out, "Content-Type: %s\r\n", res->content_type);
    if (res->status != 304)
        buf_printf(&s->out, "Content-Length: %zu\r\n", res->body.len);
    buf_printf(&s->out, "Cache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n",
               res->cache_control ? res->cache_control : "no-store");
    if (res->headers.len)
        buf_append(&s->out, res->headers.data, res->headers.len);
    if (close)
        buf_puts(&s->out, "Connection: close\r\n");
    buf_puts(&s->out, "\r\n");
    if (!head_only && res->body.len)
        buf_append(&s->out, res->body.data, res->body.len);
}

static void queue_error(struct http_session *s, int status, const char *msg)
{
    struct http_response res;

    memset(&res, 0, sizeof(res));
    http_respond_error(&res, status, msg);
    append_response(s, &res, 0, 1);
    buf_free(&res.body);
    s->closing = 1;
}

static struct http_session *session_of(llhttp_t *p)
{
    return container_of(p, struct http_session, parser);
}

static int count_header_bytes(struct http_session *s, size_t n)
{
    s->header_bytes += n;
    if (s->header_bytes > s->limits->max_header_bytes) {
        s->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct http_session *s = session_of(p);

    s->in_message = 1;
    s->header_bytes = 0;
    s->hosts = 0;
    s->field_len = 0;
    s->value_target = NULL;
    buf_reset(&s->url);
    buf_reset(&s->auth_buf);
    buf_reset(&s->inm_buf);
    body_release(s);
    request_reset(&s->req);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_session *s = session_of(p);

    if (count_header_bytes(s, len) != 0)
        return -1;
    buf_append(&s->url, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_session *s = session_of(p);

    if (count_header_bytes(s, len + 4) != 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s->field_len < sizeof(s->field) - 1) {
            char c = at[i];
            s->field[s->field_len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        } else {
            s->field_overflow = 1;
        }
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_session *s = session_of(p);

    s->field[s->field_len] = '\0';
    s->value_target = NULL;
    s->value_spans = 0;
    if (!s->field_overflow) {
        if (strcmp(s->field, "host") == 0)
            s->hosts++;
        if (strcmp(s->field, "authorization") == 0) {
            buf_reset(&s->auth_buf);
            s->value_target = &s->auth_buf;
        } else if (strcmp(s->field, "if-none-match") == 0) {
            buf_reset(&s->inm_buf);
            s->value_target = &s->inm_buf;
        }
    }
    s->field_len = 0;
    s->field_overflow = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_session *s = session_of(p);

    if (count_header_bytes(s, len) != 0)
        return -1;
    /* llhttp hands a value over in pieces only where the input ended or
     * at an obs-fold (CRLF and whitespace): RFC 9112 5.2 lets a server
     * reject the fold with 400, and we do. */
    if (s->value_spans > 0 && !s->value_at_end) {
        s->error_status = 400;
        return -1;
    }
    s->value_spans++;
    s->value_at_end = at + len == s->feed_end;
    if (s->value_target)
        buf_append(s->value_target, at, len);
    return 0;
}

static unsigned method_bit(uint8_t m)
{
    switch (m) {
    case HTTP_GET: return HTTP_M_GET;
    case HTTP_HEAD: return HTTP_M_HEAD;
    case HTTP_POST: return HTTP_M_POST;
    case HTTP_PUT: return HTTP_M_PUT;
    case HTTP_DELETE: return HTTP_M_DELETE;
    default: return 0;
    }
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_session *s = session_of(p);
    const char *url = s->url.data ? s->url.data : "";
    const char *q;

    if (count_header_bytes(s, 0) != 0)
        return -1;
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one before. */
    if (s->hosts > 1 || (s->hosts == 0 && p->http_major == 1 && p->http_minor >= 1)) {
        s->error_status = 400;
        return -1;
    }
    if (p->content_length > s->limits->max_body_bytes && (p->flags & F_CONTENT_LENGTH)) {
        s->error_status = 413;
        return -1;
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
        /* The whole announced body is reserved before any of it is
         * kept, so that many slow senders cannot each hold a part. */
        if (body_reserve(s, (size_t)p->content_length) != 0) {
            s->error_status = 503;
            return -1;
        }
        buf_reserve(&s->req.body, (size_t)p->content_length);
    }
    s->req.method = method_bit(p->method);
    s->req.method_name = llhttp_method_name((llhttp_method_t)p->method);
    /* Absolute-form targets ("http://host/path") are reduced to the path. */
    if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        const char *slash = strchr(strstr(url, "//") + 2, '/');
        url = slash ? slash : "/";
    }
    q = strchr(url, '?');
    s->req.path = pct_decode(url, q ? (size_t)(q - url) : strlen(url), 0);
    if (s->req.path == NULL || s->req.path[0] != '/') {
        s->error_status = 400;
        return -1;
    }
    {
        char *f = strchr(s->req.path, '#');
        if (f)
            *f = '\0';
    }
    if (q)
        s->req.query = xstrdup(q + 1);
    if (s->auth_buf.len)
        s->req.authorization = s->auth_buf.data;
    if (s->inm_buf.len)
        s->req.if_none_match = s->inm_buf.data;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_session *s = session_of(p);

    if (s->req.body.len + len > s->limits->max_body_bytes) {
        s->error_status = 413;
        return -1;
    }
    if (s->req.body.len + len > s->body_reserved && s->bodies_used &&
        body_reserve(s, s->req.body.len + len - s->body_reserved) != 0) {
        s->error_status = 503;
        return -1;
    }
    buf_append(&s->req.body, at, len);
    return 0;
}

static int route_matches(const struct http_route *r, const char *path)
{
    if (r->prefix)
        return strncmp(path, r->path, strlen(r->path)) == 0;
    return strcmp(path, r->path) == 0;
}

static int token_ok(const struct http_router *r, const struct http_request *req)
{
    const char *h = req->authorization;

    if (r->token == NULL)
        return 1;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return const_time_equal(r->token, strlen(r->token), h, strlen(h));
}

/* True when the If-None-Match list names tag (or is "*"). */
static int etag_matches(const char *inm, const char *tag)
{
    size_t n = strlen(tag);

    for (const char *p = inm; p && *p;) {
        p += strspn(p, " \t,");
        if (p[0] == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, tag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
            return 1;
        p = strchr(p, ',');
    }
    return 0;
}

/*
 * Every 200 answer carries an ETag (a hash of its body): a client that
 * polls with If-None-Match gets 304 and no body while nothing changed.
 */
static void set_etag(const struct http_request *req, struct http_response *res)
{
    char tag[24];

    snprintf(tag, sizeof(tag), "\"%016llx\"", (unsigned long long)hash_words(res->body.data, res->body.len));
    buf_printf(&res->headers, "ETag: %s\r\n", tag);
    if (req->if_none_match && etag_matches(req->if_none_match, tag)) {
        res->status = 304;
        res->body.len = 0;
    }
}

void http_router_dispatch(const struct http_router *r, const struct http_request *req,
                          struct http_response *res)
{
    const struct http_route *match = NULL;
    unsigned allowed = 0;

    for (size_t i = 0; i < r->nroutes; i++) {
        const struct http_route *rt = &r->routes[i];
        unsigned m = rt->methods;
        if (!route_matches(rt, req->path))
            continue;
        if (m & HTTP_M_GET)
            m |= HTTP_M_HEAD;
        allowed |= m;
        if (req->method & m) {
            match = rt;
            break;
        }
    }
    if (match == NULL) {
        if (allowed == 0) {
            http_respond_error(res, 404, "not found");
            return;
        }
        http_respond_error(res, 405, "method not allowed");
        buf_puts(&res->headers, "Allow:");
        {
            static const char *const names[] = {"GET", "HEAD", "POST", "PUT", "DELETE"};
            int first = 1;
            for (int i = 0; i < 5; i++)
                if (allowed & (1u << i)) {
                    buf_printf(&res->headers, "%s %s", first ? "" : ",", names[i]);
                    first = 0;
                }
        }
        buf_puts(&res->headers, "\r\n");
        return;
    }
    if (match->protected && !token_ok(r, req)) {
        http_respond_error(res, 401, "unauthorized");
        buf_puts(&res->headers, "WWW-Authenticate: Bearer\r\n");
        return;
    }
    match->handler(r->ctx, req, res);
    if (res->status == 200)
        set_etag(req, res);
}

static int on_message_complete(llhttp_t *p)
{
    struct http_session *s = session_of(p);
    struct http_response res;
    int keep = llhttp_should_keep_alive(p);

    memset(&res, 0, sizeof(res));
    res.status = 200;
    http_router_dispatch(s->router, &s->req, &res);
    append_response(s, &res, s->req.method == HTTP_M_HEAD, !keep);
    buf_free(&res.body);
    buf_free(&res.headers);
    s->requests++;
    s->in_message = 0;
    body_release(s);
    request_reset(&s->req);
    if (!keep) {
        s->closing = 1;
        return HPE_PAUSED;
    }
    if (s->out.len + s->backlog >= s->limits->max_output_bytes) {
        /* The next request is answered only once the peer has read. */
        s->paused = 1;
        return HPE_PAUSED;
    }
    return 0;
}

void http_session_init(struct http_session *s, const struct http_router *router,
                       const struct http_limits *limits)
{
    if (!settings_ready) {
        llhttp_settings_init(&settings);
        settings.on_message_begin = on_message_begin;
        settings.on_url = on_url;
        settings.on_header_field = on_header_field;
        settings.on_header_field_complete = on_header_field_complete;
        settings.on_header_value = on_header_value;
        settings.on_headers_complete = on_headers_complete;
        settings.on_body = on_body;
        settings.on_message_complete = on_message_complete;
        settings_ready = 1;
    }
    memset(s, 0, sizeof(*s));
    llhttp_init(&s->parser, HTTP_REQUEST, &settings);
    s->router = router;
    s->limits = limits;
    s->req.method_name = "";
}

void http_session_free(struct http_session *s)
{
    body_release(s);
    request_reset(&s->req);
    buf_free(&s->req.body);
    buf_free(&s->url);
    buf_free(&s->auth_buf);
    buf_free(&s->inm_buf);
    buf_free(&s->out);
    buf_free(&s->held);
}

int http_session_feed(struct http_session *s, const char *data, size_t len)
{
    llhttp_errno_t err;

    if (s->closing)
        return -1;
    if (s->paused) {
        buf_append(&s->held, data, len);
        return 1;
    }
    s->feed_end = data + len;
    err = llhttp_execute(&s->parser, data, len);
    s->feed_end = NULL;
    if (err == HPE_OK)
        return 0;
    if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&s->parser);
        if (s->closing)
            return -1; /* after a response that closes the connection */
        /* Output budget full: keep the unparsed rest for resume. */
        if (pos && pos >= data && pos < data + len)
            buf_append(&s->held, pos, (size_t)(data + len - pos));
        return 1;
    }
    switch (s->error_status) {
    case 431:
        queue_error(s, 431, "request headers too large");
        break;
    case 413:
        queue_error(s, 413, "request body too large");
        break;
    case 503:
        queue_error(s, 503, "too many request bodies in flight, try again");
        break;
    default:
        queue_error(s, 400, "bad request");
        break;
    }
    return -1;
}

int http_session_resume(struct http_session *s)
{
    struct buf held;
    int rc;

    if (!s->paused)
        return s->closing ? -1 : 0;
    if (s->out.len + s->backlog >= s->limits->max_output_bytes)
        return 1;
    s->paused = 0;
    llhttp_resume(&s->parser);
    held = s->held;
    buf_init(&s->held);
    rc = held.len ? http_session_feed(s, held.data, held.len) : 0;
    buf_free(&held);
    return rc;
}

void http_session_timeout(struct http_session *s)
{
    if (s->in_message && !s->closing)
        queue_error(s, 408, "request timeout");
    s->closing = 1;
}
