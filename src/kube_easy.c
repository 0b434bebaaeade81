/*
 * One request's curl easy handle (kube_core.h): URL, TLS from the
 * kubeconfig, headers and bearer token, body, and the response callbacks
 * (Retry-After, a capped body, or a stream handed on chunk by chunk).
 */
#include "kube_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#ifndef HIGHLANDER_VERSION
#define HIGHLANDER_VERSION "dev"
#endif

/* Service-account tokens rotate: re-read the file when it changed, looked
 * at most every 10 s (a stat is cheap and never blocks on the network). */
void kube_token_refresh(struct kube_core *k, int force)
{
    struct stat st;
    uint64_t now = time_mono_ms();
    FILE *f;
    char buf[16384];
    size_t n;

    if (k->cfg.token_file == NULL)
        return;
    if (!force && now - k->token_checked_ms < 10000 && k->token)
        return;
    k->token_checked_ms = now;
    if (stat(k->cfg.token_file, &st) != 0)
        return;
    if (!force && k->token && st.st_mtime == k->token_mtime)
        return;
    f = fopen(k->cfg.token_file, "rb");
    if (f == NULL)
        return;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    free(k->token);
    k->token = xstrdup(buf);
    k->token_mtime = st.st_mtime;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    struct kube_req *r = userp;
    size_t len = size * n;

    if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
        r->retry_after_s = strtol(data + 12, NULL, 10);
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *userp)
{
    struct kube_req *r = userp;
    size_t len = size * n;

    if (r->cancelled)
        return 0;
    if (r->on_chunk && !r->stream_error) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200 && code < 300)
            return r->on_chunk(r->arg, data, len) == 0 ? len : 0;
        r->stream_error = 1; /* keep the Status body */
    }
    if (r->resp.len + len > RESPONSE_CAP)
        return 0;
    buf_append(&r->resp, data, len);
    return len;
}


/* One TLS item: PEM data from the kubeconfig (curl reads it in place; the
 * config outlives the request) or a file; type_opt 0 when there is none. */
static void set_pem(CURL *e, const struct buf *data, const char *file, CURLoption blob_opt, CURLoption file_opt,
                    CURLoption type_opt)
{
    if (data->len) {
        struct curl_blob b = {data->data, data->len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, blob_opt, &b);
        if (type_opt)
            curl_easy_setopt(e, type_opt, "PEM");
    } else if (file) {
        curl_easy_setopt(e, file_opt, file);
    }
}

int kube_easy_prepare(struct kube_core *k, struct kube_req *r)
{
    struct buf url, auth;
    CURL *e;

    e = curl_easy_init();
    if (e == NULL)
        return -1;
    r->easy = e;
    buf_init(&url);
    buf_printf(&url, "%s%s", k->cfg.server, r->path);
    curl_easy_setopt(e, CURLOPT_URL, url.data);
    buf_free(&url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "highlander/" HIGHLANDER_VERSION);
    if (strcmp(r->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    /* TLS: verified unless the kubeconfig says otherwise. */
    if (k->cfg.insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    set_pem(e, &k->cfg.ca_data, k->cfg.ca_file, CURLOPT_CAINFO_BLOB, CURLOPT_CAINFO, 0);
    set_pem(e, &k->cfg.cert_data, k->cfg.cert_file, CURLOPT_SSLCERT_BLOB, CURLOPT_SSLCERT, CURLOPT_SSLCERTTYPE);
    set_pem(e, &k->cfg.key_data, k->cfg.key_file, CURLOPT_SSLKEY_BLOB, CURLOPT_SSLKEY, CURLOPT_SSLKEYTYPE);
    r->headers = curl_slist_append(NULL, "Accept: application/json");
    if (r->body) {
        const char *ct = "Content-Type: application/json";
        if (r->patch == KUBE_PATCH_MERGE)
            ct = "Content-Type: application/merge-patch+json";
        else if (r->patch == KUBE_PATCH_APPLY)
            ct = "Content-Type: application/apply-patch+yaml";
        else if (r->patch == KUBE_PATCH_JSON)
            ct = "Content-Type: application/json-patch+json";
        r->headers = curl_slist_append(r->headers, ct);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    }
    kube_token_refresh(k, 0);
    if (k->token || k->cfg.token) {
        buf_init(&auth);
        buf_printf(&auth, "Authorization: Bearer %s", k->token ? k->token : k->cfg.token);
        r->headers = curl_slist_append(r->headers, auth.data);
        buf_free(&auth);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    buf_reset(&r->resp);
    r->retry_after_s = 0;
    r->stream_error = 0;
    return 0;
}
