/*
 * kubeconfig and in-cluster configuration.  The file's shape is
 * Kubernetes', so it is read as a generic YAML tree (yaml_json.c) and
 * picked apart with json_unpack.  Relative file paths are resolved against
 * the kubeconfig's directory, as kubectl does.
 */
#include "highlander/kube.h"
#include "yaml_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kube_base64_decode(const char *in, size_t len, struct buf *out)
{
    unsigned acc = 0;
    int bits = 0, pad = 0;

    buf_reset(out);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;
        if (ch == '\n' || ch == '\r' || ch == ' ' || ch == '\t')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_putc(out, (char)((acc >> bits) & 0xff));
        }
    }
    if (pad > 2 || bits >= 6)
        return -1;
    return 0;
}

void kube_config_free(struct kube_config *c)
{
    free(c->server);
    free(c->ca_file);
    buf_free(&c->ca_data);
    free(c->cert_file);
    buf_free(&c->cert_data);
    free(c->key_file);
    buf_free(&c->key_data);
    free(c->token);
    free(c->token_file);
    free(c->namespace);
    free(c->context);
    memset(c, 0, sizeof(*c));
}

static json_t *find_named(json_t *list, const char *name)
{
    size_t i;
    json_t *e;

    if (!json_is_array(list) || name == NULL)
        return NULL;
    json_array_foreach(list, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return NULL;
}

static char *resolve_path(const char *base_dir, const char *p)
{
    if (p == NULL || *p == '\0')
        return NULL;
    if (p[0] == '/' || base_dir == NULL)
        return xstrdup(p);
    return xasprintf("%s/%s", base_dir, p);
}

static int decode_field(json_t *obj, const char *key, struct buf *out, const char *what, char *err, size_t errlen)
{
    const char *v = json_string_value(json_object_get(obj, key));

    if (v == NULL)
        return 0;
    if (kube_base64_decode(v, strlen(v), out) != 0) {
        snprintf(err, errlen, "%s: %s is not valid base64", what, key);
        return -1;
    }
    return 0;
}

/* The context to use: cluster.name as a context's name or as the cluster
 * it names, else the current context.  NULL and err set when none fits;
 * *ambiguous when guessing among several would be unsafe. */
static json_t *pick_context(json_t *root, const char *source, const char *context_name, int *ambiguous, char *err,
                            size_t errlen)
{
    json_t *contexts = json_object_get(root, "contexts"), *ctx = NULL, *e;
    const char *current = json_string_value(json_object_get(root, "current-context"));
    size_t i;

    *ambiguous = 0;
    if (context_name && *context_name) {
        ctx = find_named(contexts, context_name);
        /* cluster.name may name the kubeconfig's cluster instead. */
        json_array_foreach(contexts, i, e) {
            const char *cn = json_string_value(json_object_get(json_object_get(e, "context"), "cluster"));
            if (ctx == NULL && cn && strcmp(cn, context_name) == 0)
                ctx = e;
        }
        if (ctx == NULL && json_array_size(contexts) > 1) {
            /* With several clusters to choose from, the current context may
             * be another cluster than the one this replica is configured for:
             * never guess (the Go controller refuses too). */
            snprintf(err, errlen,
                     "%s: cluster.name \"%s\" is no context and no cluster of its %zu contexts: refusing to guess "
                     "(set cluster.name to one of them)",
                     source, context_name, json_array_size(contexts));
            *ambiguous = 1;
            return NULL;
        }
    }
    if (ctx == NULL)
        ctx = find_named(contexts, current);
    if (ctx == NULL)
        snprintf(err, errlen, "%s: no context named \"%s\" and no usable current-context", source,
                 context_name && *context_name ? context_name : (current ? current : ""));
    return ctx;
}

static int read_cluster(json_t *root, const char *source, const char *base_dir, const char *cluster_name,
                        struct kube_config *out, char *err, size_t errlen)
{
    json_t *cluster = find_named(json_object_get(root, "clusters"), cluster_name), *clusterv, *insecure;
    const char *server;
    char what[300];

    if (cluster == NULL) {
        snprintf(err, errlen, "%s: context \"%s\" names cluster \"%s\", which is not defined", source,
                 out->context, cluster_name ? cluster_name : "");
        return -1;
    }
    clusterv = json_object_get(cluster, "cluster");
    server = json_string_value(json_object_get(clusterv, "server"));
    if (server == NULL || (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)) {
        snprintf(err, errlen, "%s: cluster \"%s\" has no http(s) server", source, cluster_name);
        return -1;
    }
    out->server = xstrdup(server);
    while (strlen(out->server) > 8 && out->server[strlen(out->server) - 1] == '/')
        out->server[strlen(out->server) - 1] = '\0';
    out->ca_file = resolve_path(base_dir, json_string_value(json_object_get(clusterv, "certificate-authority")));
    snprintf(what, sizeof(what), "%s: cluster \"%s\"", source, cluster_name);
    if (decode_field(clusterv, "certificate-authority-data", &out->ca_data, what, err, errlen) != 0)
        return -1;
    insecure = json_object_get(clusterv, "insecure-skip-tls-verify");
    out->insecure = json_is_true(insecure) ||
                    (json_is_string(insecure) && strcmp(json_string_value(insecure), "true") == 0);
    return 0;
}

static int read_user(json_t *root, const char *source, const char *base_dir, const char *user_name,
                     struct kube_config *out, char *err, size_t errlen)
{
    json_t *user = find_named(json_object_get(root, "users"), user_name), *userv;
    const char *token;
    char what[300];

    if (user == NULL) {
        snprintf(err, errlen, "%s: context \"%s\" names user \"%s\", which is not defined", source,
                 out->context, user_name);
        return -1;
    }
    userv = json_object_get(user, "user");
    snprintf(what, sizeof(what), "%s: user \"%s\"", source, user_name);
    out->cert_file = resolve_path(base_dir, json_string_value(json_object_get(userv, "client-certificate")));
    out->key_file = resolve_path(base_dir, json_string_value(json_object_get(userv, "client-key")));
    if (decode_field(userv, "client-certificate-data", &out->cert_data, what, err, errlen) != 0 ||
        decode_field(userv, "client-key-data", &out->key_data, what, err, errlen) != 0)
        return -1;
    token = json_string_value(json_object_get(userv, "token"));
    if (token && *token)
        out->token = xstrdup(token);
    out->token_file = resolve_path(base_dir, json_string_value(json_object_get(userv, "tokenFile")));
    if ((out->cert_file || out->cert_data.len) != (out->key_file || out->key_data.len)) {
        snprintf(err, errlen, "%s: a client certificate needs its key (and the other way round)", what);
        return -1;
    }
    if (json_object_get(userv, "exec") || json_object_get(userv, "auth-provider")) {
        snprintf(err, errlen, "%s: exec and auth-provider credentials are not supported", what);
        return -1;
    }
    return 0;
}

int kube_config_parse(const char *data, size_t len, const char *source, const char *base_dir,
                      const char *context_name, struct kube_config *out, char *err, size_t errlen)
{
    char yerr[200];
    json_t *root = yaml_to_json(data, len, yerr, sizeof(yerr));
    json_t *ctx, *ctxv;
    const char *name, *user_name, *ns;
    int ambiguous;

    memset(out, 0, sizeof(*out));
    if (root == NULL) {
        snprintf(err, errlen, "%s: %s", source, yerr);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: not a kubeconfig (expected a mapping)", source);
        goto fail;
    }
    ctx = pick_context(root, source, context_name, &ambiguous, err, errlen);
    if (ctx == NULL) {
        json_decref(root);
        return ambiguous ? KUBE_CONFIG_AMBIGUOUS : -1;
    }
    ctxv = json_object_get(ctx, "context");
    user_name = json_string_value(json_object_get(ctxv, "user"));
    ns = json_string_value(json_object_get(ctxv, "namespace"));
    name = json_string_value(json_object_get(ctx, "name"));
    out->context = xstrdup(name ? name : "");
    if (read_cluster(root, source, base_dir, json_string_value(json_object_get(ctxv, "cluster")), out, err,
                     errlen) != 0)
        goto fail;
    if (user_name && read_user(root, source, base_dir, user_name, out, err, errlen) != 0)
        goto fail;
    out->namespace = xstrdup(ns && *ns ? ns : "default");
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    kube_config_free(out);
    return -1;
}

static int read_whole(const char *path, struct buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    buf_reset(out);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(out, chunk, n);
        if (out->len > (4u << 20)) {
            fclose(f);
            snprintf(err, errlen, "%s: larger than 4 MiB", path);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

int kube_config_load(const char *path, const char *context_name, struct kube_config *out, char *err,
                     size_t errlen)
{
    struct buf data;
    char *dir, *slash;
    int rc;

    buf_init(&data);
    memset(out, 0, sizeof(*out));
    if (read_whole(path, &data, err, errlen) != 0) {
        buf_free(&data);
        return -1;
    }
    dir = xstrdup(path);
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    rc = kube_config_parse(data.data ? data.data : "", data.len, path, dir, context_name, out, err, errlen);
    free(dir);
    buf_free(&data);
    return rc;
}

int kube_config_in_cluster(const char *dir, struct kube_config *out, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    char *p;
    struct buf ns;
    struct stat st;

    memset(out, 0, sizeof(*out));
    if (host == NULL || port == NULL || !*host || !*port) {
        snprintf(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST/PORT unset and no kubeconfig given");
        return -1;
    }
    out->server = strchr(host, ':') ? xasprintf("https://[%s]:%s", host, port) : xasprintf("https://%s:%s", host, port);
    out->token_file = xasprintf("%s/token", dir);
    if (stat(out->token_file, &st) != 0) {
        snprintf(err, errlen, "%s: %s", out->token_file, strerror(errno));
        kube_config_free(out);
        return -1;
    }
    out->ca_file = xasprintf("%s/ca.crt", dir);
    p = xasprintf("%s/namespace", dir);
    buf_init(&ns);
    if (read_whole(p, &ns, err, errlen) == 0 && ns.len) {
        while (ns.len && (ns.data[ns.len - 1] == '\n' || ns.data[ns.len - 1] == ' '))
            ns.data[--ns.len] = '\0';
        out->namespace = buf_steal(&ns);
    } else {
        out->namespace = xstrdup("default");
    }
    buf_free(&ns);
    free(p);
    out->context = xstrdup("in-cluster");
    return 0;
}
