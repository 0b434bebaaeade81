/*
 * Merging of configuration sources: defaults < file < environment < flags.
 *
 * Each scalar setting is carried as a string with the name it had in the
 * source that set it ("port", "HIGHLANDER_PORT", "--port"), so that an
 * error names exactly what the operator wrote.  Conversion and checking
 * happen once, after all sources are merged.
 */
#include "highlander/config.h"
#include "highlander/duration.h"
#include "highlander/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

enum setting {
    S_ID, S_TENANT, S_NAMESPACE, S_PORT, S_REMAINS_FOLLOWER, S_STORAGE_TYPE,
    S_REDIS_ADDR, S_REDIS_USERNAME, S_REDIS_PASSWORD, S_REDIS_DB, S_DATABASE_URL,
    S_CLUSTER_NAME, S_KUBECONFIG, S_TERMINATION_GRACE, S_HANDOVER,
    S_LEASE_DURATION, S_RENEW_DEADLINE, S_RETRY_PERIOD, S_LOG_LEVEL, S_LOG_FORMAT,
    S_API_TOKEN, S_BIND_ADDRESS, S_HTTP_MAX_CONNS, S_HTTP_OUTPUT, S_HTTP_BODIES, S_HTTP_WRITE_TIMEOUT,
    S_KUBE_QPS, S_KUBE_BURST, S_CRD_NAMESPACES, S_FENCING, S_COUNT
};

struct setting_desc {
    const char *file_key;   /* path in the YAML file, NULL if none */
    const char *env;        /* environment variable, NULL if none */
    const char *flag;       /* long flag without dashes, NULL if none */
    const char *def;        /* default, NULL for none */
};

/* The visible table of every scalar setting and where it may come from. */
static const struct setting_desc settings[S_COUNT] = {
    [S_ID] = {"id", "HIGHLANDER_ID", "id", NULL},
    [S_TENANT] = {"tenant", "HIGHLANDER_TENANT", "tenant", "default"},
    [S_NAMESPACE] = {"namespace", "HIGHLANDER_NAMESPACE", "namespace", "default"},
    [S_PORT] = {"port", "HIGHLANDER_PORT", "port", "8080"},
    [S_REMAINS_FOLLOWER] = {"remainsFollower", "HIGHLANDER_REMAINS_FOLLOWER", "remains-follower", "false"},
    [S_STORAGE_TYPE] = {"storageType", "HIGHLANDER_STORAGE_TYPE", "storage-type", "redis"},
    [S_REDIS_ADDR] = {"redis.addr", "HIGHLANDER_REDIS_ADDR", "redis-addr", "localhost:6379"},
    [S_REDIS_USERNAME] = {"redis.username", "HIGHLANDER_REDIS_USERNAME", "redis-username", NULL},
    [S_REDIS_PASSWORD] = {"redis.password", "HIGHLANDER_REDIS_PASSWORD", "redis-password", NULL},
    [S_REDIS_DB] = {"redis.db", "HIGHLANDER_REDIS_DB", "redis-db", "0"},
    [S_DATABASE_URL] = {"databaseURL", "HIGHLANDER_DATABASE_URL", "database-url", NULL},
    [S_CLUSTER_NAME] = {"cluster.name", "HIGHLANDER_CLUSTER_NAME", "cluster-name", "default"},
    [S_KUBECONFIG] = {"cluster.kubeconfig", "HIGHLANDER_KUBECONFIG", "kubeconfig", NULL},
    [S_TERMINATION_GRACE] = {"terminationGracePeriod", "HIGHLANDER_TERMINATION_GRACE_PERIOD",
                             "termination-grace-period", "30s"},
    [S_HANDOVER] = {"workloadHandover", "HIGHLANDER_WORKLOAD_HANDOVER", "workload-handover", "auto"},
    [S_LEASE_DURATION] = {"leaderElection.leaseDuration", "HIGHLANDER_LEADER_LOCK_TTL", "lease-duration", "15s"},
    [S_RENEW_DEADLINE] = {"leaderElection.renewDeadline", "HIGHLANDER_RENEW_DEADLINE", "renew-deadline", "10s"},
    [S_RETRY_PERIOD] = {"leaderElection.retryPeriod", "HIGHLANDER_LEADER_RENEW_INTERVAL", "retry-period", "2s"},
    [S_LOG_LEVEL] = {NULL, "HIGHLANDER_LOG_LEVEL", "log-level", "info"},
    [S_LOG_FORMAT] = {NULL, "HIGHLANDER_LOG_FORMAT", "log-format", "text"},
    [S_API_TOKEN] = {NULL, "HIGHLANDER_API_TOKEN", NULL, NULL},
    [S_BIND_ADDRESS] = {NULL, "HIGHLANDER_BIND_ADDRESS", "bind-address", "0.0.0.0"},
    [S_HTTP_MAX_CONNS] = {NULL, "HIGHLANDER_HTTP_MAX_CONNECTIONS", "http-max-connections", "4096"},
    [S_HTTP_OUTPUT] = {NULL, "HIGHLANDER_HTTP_MAX_OUTPUT_BYTES", "http-max-output-bytes", "1048576"},
    [S_HTTP_BODIES] = {NULL, "HIGHLANDER_HTTP_MAX_BODIES_BYTES", "http-max-bodies-bytes", "16777216"},
    [S_HTTP_WRITE_TIMEOUT] = {NULL, "HIGHLANDER_HTTP_WRITE_TIMEOUT", "http-write-timeout", "10s"},
    [S_KUBE_QPS] = {NULL, "HIGHLANDER_KUBE_QPS", "kube-qps", "20"},
    [S_KUBE_BURST] = {NULL, "HIGHLANDER_KUBE_BURST", "kube-burst", "30"},
    /* A list in the file; comma-separated in the variable and the flag. */
    [S_CRD_NAMESPACES] = {"crdNamespaces", "HIGHLANDER_CRD_NAMESPACES", "crd-namespaces", ""},
    [S_FENCING] = {"fencing.enabled", "HIGHLANDER_FENCING", "fencing", "true"},
};

struct value {
    char *text;          /* owned */
    const char *origin;  /* name in the source that set it (static) */
};

struct merged {
    struct value v[S_COUNT];
};

const char *const config_usage =
    "Usage: highlander [flags]\n"
    "\n"
    "Keeps exactly one instance of each singleton workload running, with a leader\n"
    "elected through a lease in Redis, PostgreSQL or a Kubernetes Lease.\n"
    "\n"
    "Flags (each overrides the HIGHLANDER_* variable and the config file key):\n"
    "  --config PATH              config file (default: first of /etc/k8-highlander/config.yaml,\n"
    "                             $HOME/.k8-highlander/config.yaml, ./config.yaml)\n"
    "  --id ID                    this replica's identity (default: hostname)\n"
    "  --tenant NAME              leader election tenant (default: default)\n"
    "  --namespace NS             default namespace of workloads (default: default)\n"
    "  --port N                   HTTP port (default: 8080)\n"
    "  --storage-type TYPE        redis | db | lease (default: redis)\n"
    "  --redis-addr ADDR          host:port or redis://[user:pass@]host:port/db\n"
    "  --redis-username NAME      Redis ACL user\n"
    "  --redis-password PASS      Redis password\n"
    "  --redis-db N               Redis database index\n"
    "  --database-url URL         PostgreSQL URL (storage-type db)\n"
    "  --kubeconfig PATH          kubeconfig (default: in-cluster)\n"
    "  --cluster-name NAME        name of this cluster (default: default)\n"
    "  --remains-follower[=BOOL]  never try to lead\n"
    "  --workload-handover MODE   auto | adopt | stop (default: auto)\n"
    "  --lease-duration D         leader lease (default: 15s)\n"
    "  --renew-deadline D         leader self-fences after this (default: 10s)\n"
    "  --retry-period D           retry/renew period (default: 2s)\n"
    "  --termination-grace-period D  shutdown budget (default: 30s)\n"
    "  --log-level LEVEL          debug | info | warn | error (default: info)\n"
    "  --log-format FORMAT        text | json (default: text)\n"
    "  --bind-address ADDR        HTTP listen address (default: 0.0.0.0)\n"
    "  --http-max-connections N   HTTP connection cap (default: 4096)\n"
    "  --kube-qps N, --kube-burst N  Kubernetes client rate limit (default: 20, 30)\n"
    "  --crd-namespaces NS,...    watch custom resources only there (default: all namespaces)\n"
    "  --fencing[=BOOL]           raise the per-tenant fence object before writing (default: true)\n"
    "  --http-max-output-bytes N  unsent answers per connection (default: 1048576)\n"
    "  --http-max-bodies-bytes N  request bodies over all connections (default: 16777216)\n"
    "  --http-write-timeout D     close a connection whose answers make no progress (default: 10s)\n"
    "  --check-config             validate, print the effective config (secrets masked), exit 0 or 2;\n"
    "                             unknown keys of the file are listed on stderr\n"
    "  --strict-config            refuse unknown keys of the file instead of ignoring them\n"
    "  --version                  print the version and exit\n"
    "  --help                     print this help and exit\n";

void config_errors_add(struct config_errors *e, const char *fmt, ...)
{
    struct buf b;
    va_list ap;

    if (e->count >= 1000)
        return;
    buf_init(&b);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    e->items = xrealloc(e->items, (e->count + 1) * sizeof(*e->items));
    e->items[e->count++] = buf_steal(&b);
}

void config_errors_free(struct config_errors *e)
{
    for (unsigned i = 0; i < e->count; i++)
        free(e->items[i]);
    free(e->items);
    e->items = NULL;
    e->count = 0;
}

void kv_list_add(struct kv_list *l, const char *key, const char *value)
{
    l->items = xrealloc(l->items, (l->count + 1) * sizeof(*l->items));
    l->items[l->count].key = xstrdup(key);
    l->items[l->count].value = xstrdup(value);
    l->count++;
}

const char *kv_list_get(const struct kv_list *l, const char *key)
{
    for (unsigned i = 0; i < l->count; i++)
        if (strcmp(l->items[i].key, key) == 0)
            return l->items[i].value;
    return NULL;
}

void kv_list_free(struct kv_list *l)
{
    for (unsigned i = 0; i < l->count; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

const char *workload_type_name(enum workload_type t)
{
    static const char *const names[] = {"process", "cronJob", "service", "persistentSet"};
    return t < WORKLOAD_TYPE_COUNT ? names[t] : "unknown";
}

const char *storage_type_name(enum storage_type t)
{
    static const char *const names[] = {"redis", "db", "lease"};
    return names[t];
}

const char *handover_mode_name(enum handover_mode m)
{
    static const char *const names[] = {"auto", "adopt", "stop"};
    return names[m];
}

static void set_value(struct merged *m, enum setting s, const char *text, const char *origin)
{
    free(m->v[s].text);
    m->v[s].text = text ? xstrdup(text) : NULL;
    m->v[s].origin = origin;
}

/*
 * A redis:// URL sets address, credentials and database at the level it
 * appears in; keys given explicitly at the same level are applied after it
 * and win.  Returns -1 (with an error) when the URL is malformed.
 */
static int apply_redis_url(struct merged *m, const char *url, const char *origin,
                           struct config_errors *errs)
{
    const char *p, *at, *slash, *hostport;
    char *userinfo = NULL, *host = NULL;

    if (strncmp(url, "rediss://", 9) == 0) {
        config_errors_add(errs, "%s: rediss:// (TLS) is not supported", origin);
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        set_value(m, S_REDIS_ADDR, url, origin);
        return 0;
    }
    p = url + 8;
    /* The userinfo ends at the last '@': a password may hold '/' or '@'
     * unescaped, a host or a database number never does. */
    at = strrchr(p, '@');
    slash = strchr(at ? at + 1 : p, '/');
    if (at != NULL) {
        const char *colon;
        userinfo = xstrndup(p, (size_t)(at - p));
        colon = strchr(userinfo, ':');
        if (colon != NULL) {
            if (colon != userinfo) {
                char *user = xstrndup(userinfo, (size_t)(colon - userinfo));
                set_value(m, S_REDIS_USERNAME, user, origin);
                free(user);
            }
            set_value(m, S_REDIS_PASSWORD, colon + 1, origin);
        } else if (*userinfo) {
            /* redis://secret@host is the password alone, as redis-cli reads it. */
            set_value(m, S_REDIS_PASSWORD, userinfo, origin);
        }
        hostport = at + 1;
    } else {
        hostport = p;
    }
    host = slash ? xstrndup(hostport, (size_t)(slash - hostport)) : xstrdup(hostport);
    if (*host == '\0') {
        free(host);
        host = xstrdup("localhost:6379");
    } else if (strchr(host, ':') == NULL || host[0] == '[') {
        char *h = (host[0] == '[' && strstr(host, "]:")) ? xstrdup(host) : xasprintf("%s:6379", host);
        free(host);
        host = h;
    }
    set_value(m, S_REDIS_ADDR, host, origin);
    if (slash != NULL && slash[1] != '\0')
        set_value(m, S_REDIS_DB, slash + 1, origin);
    free(host);
    free(userinfo);
    return 0;
}

static void apply_file(struct merged *m, const struct config_file *f, struct config_errors *errs)
{
    char num[32];

    if (f->id && *f->id)
        set_value(m, S_ID, f->id, "id");
    if (f->tenant && *f->tenant)
        set_value(m, S_TENANT, f->tenant, "tenant");
    if (f->namespace && *f->namespace)
        set_value(m, S_NAMESPACE, f->namespace, "namespace");
    if (f->port) {
        snprintf(num, sizeof(num), "%lld", (long long)*f->port);
        set_value(m, S_PORT, num, "port");
    }
    if (f->remains_follower)
        set_value(m, S_REMAINS_FOLLOWER, "true", "remainsFollower");
    if (f->storage_type && *f->storage_type)
        set_value(m, S_STORAGE_TYPE, f->storage_type, "storageType");
    if (f->redis) {
        if (f->redis->addr && *f->redis->addr)
            apply_redis_url(m, f->redis->addr, "redis.addr", errs);
        if (f->redis->username && *f->redis->username)
            set_value(m, S_REDIS_USERNAME, f->redis->username, "redis.username");
        if (f->redis->password && *f->redis->password)
            set_value(m, S_REDIS_PASSWORD, f->redis->password, "redis.password");
        if (f->redis->db) {
            snprintf(num, sizeof(num), "%lld", (long long)*f->redis->db);
            set_value(m, S_REDIS_DB, num, "redis.db");
        }
    }
    if (f->database_url && *f->database_url)
        set_value(m, S_DATABASE_URL, f->database_url, "databaseURL");
    if (f->cluster) {
        if (f->cluster->name && *f->cluster->name)
            set_value(m, S_CLUSTER_NAME, f->cluster->name, "cluster.name");
        if (f->cluster->kubeconfig && *f->cluster->kubeconfig)
            set_value(m, S_KUBECONFIG, f->cluster->kubeconfig, "cluster.kubeconfig");
    }
    if (f->termination_grace_period && *f->termination_grace_period)
        set_value(m, S_TERMINATION_GRACE, f->termination_grace_period, "terminationGracePeriod");
    if (f->workload_handover && *f->workload_handover)
        set_value(m, S_HANDOVER, f->workload_handover, "workloadHandover");
    if (f->crd_namespaces_count) {
        struct buf b;
        buf_init(&b);
        for (unsigned i = 0; i < f->crd_namespaces_count; i++) {
            const char *ns = f->crd_namespaces[i] ? f->crd_namespaces[i] : "";
            /* Joined with commas below, so a comma inside one would split it. */
            if (strchr(ns, ','))
                config_errors_add(errs, "crdNamespaces[%u]: \"%s\" is not a valid namespace name", i, ns);
            else
                buf_printf(&b, "%s%s", b.len ? "," : "", ns);
        }
        set_value(m, S_CRD_NAMESPACES, b.data, "crdNamespaces");
        buf_free(&b);
    }
    if (f->fencing && f->fencing->enabled)
        set_value(m, S_FENCING, *f->fencing->enabled ? "true" : "false", "fencing.enabled");
    if (f->leader_election) {
        const struct leader_election_config *le = f->leader_election;
        if (le->lease_duration)
            set_value(m, S_LEASE_DURATION, le->lease_duration, "leaderElection.leaseDuration");
        if (le->renew_deadline)
            set_value(m, S_RENEW_DEADLINE, le->renew_deadline, "leaderElection.renewDeadline");
        if (le->retry_period)
            set_value(m, S_RETRY_PERIOD, le->retry_period, "leaderElection.retryPeriod");
    }
}

/* A variable's value, or NULL when it is unset or empty: as in the Go
 * controller, whose own Dockerfile sets HIGHLANDER_ID= and others empty,
 * an empty variable overrides nothing. */
static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);

    for (; envp && *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
            return (*envp)[n + 1] ? *envp + n + 1 : NULL;
    return NULL;
}

static void apply_env(struct merged *m, char **envp, struct config_errors *errs)
{
    for (int s = 0; s < S_COUNT; s++) {
        const char *v;
        if (settings[s].env == NULL || (v = env_get(envp, settings[s].env)) == NULL)
            continue;
        if (s == S_REDIS_ADDR)
            apply_redis_url(m, v, settings[s].env, errs);
        else
            set_value(m, (enum setting)s, v, settings[s].env);
    }
}

/* Flag names are kept as static strings so that values can point at them. */
static const char *flag_origin(int s)
{
    static char names[S_COUNT][40];

    if (names[s][0] == '\0')
        snprintf(names[s], sizeof(names[s]), "--%s", settings[s].flag);
    return names[s];
}

struct cli {
    const char *config_path;
    enum config_action action;
    int strict;                 /* --strict-config: unknown keys are errors */
    struct merged flags;
};

static int parse_args(int argc, char **argv, struct cli *cli, struct config_errors *errs)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *val = NULL;
        size_t nlen;
        int s, found = 0;

        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            config_errors_add(errs, "%s: unexpected argument (see --help)", arg);
            continue;
        }
        name = arg + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (eq)
            val = eq + 1;
#define IS(lit) (nlen == strlen(lit) && strncmp(name, lit, nlen) == 0)
        if (IS("help") || IS("version") || IS("check-config")) {
            if (val != NULL) {
                config_errors_add(errs, "--%.*s: takes no value", (int)nlen, name);
                continue;
            }
            enum config_action a = IS("help") ? CONFIG_HELP : IS("version") ? CONFIG_VERSION : CONFIG_CHECK;
            /* --help wins over --version, which wins over --check-config. */
            if (a > cli->action)
                cli->action = a;
            continue;
        }
        if (IS("strict-config")) {
            if (val != NULL)
                config_errors_add(errs, "--strict-config: takes no value");
            cli->strict = 1;
            continue;
        }
        if (IS("config")) {
            if (val == NULL) {
                if (i + 1 >= argc) {
                    config_errors_add(errs, "--config: needs a value");
                    continue;
                }
                val = argv[++i];
            }
            cli->config_path = val;
            continue;
        }
        for (s = 0; s < S_COUNT; s++) {
            if (settings[s].flag && IS(settings[s].flag)) {
                found = 1;
                break;
            }
        }
#undef IS
        if (!found) {
            config_errors_add(errs, "--%.*s: unknown flag (see --help)", (int)nlen, name);
            continue;
        }
        if (val == NULL) {
            if (s == S_REMAINS_FOLLOWER || s == S_FENCING) {
                val = "true";
            } else if (i + 1 >= argc) {
                config_errors_add(errs, "%s: needs a value", flag_origin(s));
                continue;
            } else {
                val = argv[++i];
            }
        }
        if (s == S_REDIS_ADDR)
            apply_redis_url(&cli->flags, val, flag_origin(s), errs);
        else
            set_value(&cli->flags, (enum setting)s, val, flag_origin(s));
    }
    return errs->count ? -1 : 0;
}

static void merge_into(struct merged *dst, struct merged *src)
{
    for (int s = 0; s < S_COUNT; s++) {
        if (src->v[s].origin != NULL) {
            set_value(dst, (enum setting)s, src->v[s].text, src->v[s].origin);
        }
    }
}

static void merged_free(struct merged *m)
{
    for (int s = 0; s < S_COUNT; s++)
        free(m->v[s].text);
    memset(m, 0, sizeof(*m));
}

static char *read_file(const char *path, size_t *len, struct config_errors *errs)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        config_errors_add(errs, "%s: cannot open config file: %s", path, strerror(errno));
        return NULL;
    }
    buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&b, chunk, n);
        if (b.len > 16u << 20) {
            config_errors_add(errs, "%s: config file larger than 16 MiB", path);
            fclose(f);
            buf_free(&b);
            return NULL;
        }
    }
    if (ferror(f)) {
        config_errors_add(errs, "%s: cannot read config file: %s", path, strerror(errno));
        fclose(f);
        buf_free(&b);
        return NULL;
    }
    fclose(f);
    *len = b.len;
    return buf_steal(&b);
}

static char *find_config_file(char **envp)
{
    const char *home = env_get(envp, "HOME");
    char *candidates[3];
    char *found = NULL;
    struct stat st;

    candidates[0] = xstrdup("/etc/k8-highlander/config.yaml");
    candidates[1] = home ? xasprintf("%s/.k8-highlander/config.yaml", home) : NULL;
    candidates[2] = xstrdup("./config.yaml");
    for (int i = 0; i < 3; i++) {
        if (found == NULL && candidates[i] && stat(candidates[i], &st) == 0 && S_ISREG(st.st_mode))
            found = xstrdup(candidates[i]);
        free(candidates[i]);
    }
    return found;
}

static int parse_int(const struct value *v, long min, long max, long *out, struct config_errors *errs)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v->text, &end, 10);
    if (errno || end == v->text || *end != '\0') {
        config_errors_add(errs, "%s: \"%s\" is not an integer", v->origin, v->text);
        return -1;
    }
    if (n < min || n > max) {
        config_errors_add(errs, "%s: %ld is out of range %ld-%ld", v->origin, n, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

static int parse_bool(const struct value *v, bool *out, struct config_errors *errs)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
        if (strcasecmp(v->text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v->text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    config_errors_add(errs, "%s: \"%s\" is not a boolean (true or false)", v->origin, v->text);
    return -1;
}

static int parse_duration(const struct value *v, int64_t *out, struct config_errors *errs)
{
    if (duration_parse(v->text, out) != 0) {
        config_errors_add(errs, "%s: \"%s\" is not a duration (for example 500ms, 15s, 1m30s)",
                          v->origin, v->text);
        return -1;
    }
    return 0;
}

static char *take(struct merged *m, enum setting s)
{
    char *t = m->v[s].text;
    m->v[s].text = NULL;
    return t;
}

/* Converts the merged strings into the typed configuration. */
static void convert_store(struct merged *m, struct config *c, struct config_errors *errs)
{
    const struct value *v = &m->v[S_STORAGE_TYPE];
    long n;

    if (strcmp(v->text, "redis") == 0)
        c->storage_type = STORAGE_REDIS;
    else if (strcmp(v->text, "db") == 0)
        c->storage_type = STORAGE_DB;
    else if (strcmp(v->text, "lease") == 0)
        c->storage_type = STORAGE_LEASE;
    else if (strcmp(v->text, "spanner") == 0)
        config_errors_add(errs, "%s: \"spanner\" (Cloud Spanner) is not supported by this build; use redis, db "
                          "or lease", v->origin);
    else
        config_errors_add(errs, "%s: \"%s\" is not one of redis, db, lease", v->origin, v->text);
    c->redis_addr = take(m, S_REDIS_ADDR);
    c->redis_username = take(m, S_REDIS_USERNAME);
    c->redis_password = take(m, S_REDIS_PASSWORD);
    if (parse_int(&m->v[S_REDIS_DB], 0, INT_MAX, &n, errs) == 0)
        c->redis_db = (int)n;
    c->database_url = take(m, S_DATABASE_URL);
}

static void convert_timing(struct merged *m, struct config *c, struct config_errors *errs)
{
    const struct value *v = &m->v[S_HANDOVER];
    int ok;

    if (parse_duration(&m->v[S_TERMINATION_GRACE], &c->termination_grace_ms, errs) == 0 &&
        c->termination_grace_ms < 1000)
        config_errors_add(errs, "%s: must be at least 1s", m->v[S_TERMINATION_GRACE].origin);
    if (strcmp(v->text, "auto") == 0)
        c->handover = HANDOVER_AUTO;
    else if (strcmp(v->text, "adopt") == 0)
        c->handover = HANDOVER_ADOPT;
    else if (strcmp(v->text, "stop") == 0)
        c->handover = HANDOVER_STOP;
    else
        config_errors_add(errs, "%s: \"%s\" is not one of auto, adopt, stop", v->origin, v->text);
    ok = parse_duration(&m->v[S_LEASE_DURATION], &c->lease_duration_ms, errs) == 0;
    ok &= parse_duration(&m->v[S_RENEW_DEADLINE], &c->renew_deadline_ms, errs) == 0;
    ok &= parse_duration(&m->v[S_RETRY_PERIOD], &c->retry_period_ms, errs) == 0;
    if (ok) {
        if (c->retry_period_ms < 10)
            config_errors_add(errs, "%s: must be at least 10ms", m->v[S_RETRY_PERIOD].origin);
        if (c->lease_duration_ms <= c->renew_deadline_ms)
            config_errors_add(errs, "%s: lease duration (%s) must be longer than the renew deadline (%s)",
                              m->v[S_LEASE_DURATION].origin, m->v[S_LEASE_DURATION].text,
                              m->v[S_RENEW_DEADLINE].text);
        if (c->renew_deadline_ms * 10 <= c->retry_period_ms * 12)
            config_errors_add(errs, "%s: renew deadline (%s) must be longer than 1.2 x the retry period (%s)",
                              m->v[S_RENEW_DEADLINE].origin, m->v[S_RENEW_DEADLINE].text,
                              m->v[S_RETRY_PERIOD].text);
    }
}

static void convert_http(struct merged *m, struct config *c, struct config_errors *errs)
{
    enum log_level l;
    enum log_format f;
    long n;

    if (log_level_parse(m->v[S_LOG_LEVEL].text, &l) != 0)
        config_errors_add(errs, "%s: \"%s\" is not one of debug, info, warn, error",
                          m->v[S_LOG_LEVEL].origin, m->v[S_LOG_LEVEL].text);
    if (log_format_parse(m->v[S_LOG_FORMAT].text, &f) != 0)
        config_errors_add(errs, "%s: \"%s\" is not one of json, text", m->v[S_LOG_FORMAT].origin,
                          m->v[S_LOG_FORMAT].text);
    c->log_level = take(m, S_LOG_LEVEL);
    c->log_format = take(m, S_LOG_FORMAT);
    c->api_token = take(m, S_API_TOKEN);
    c->bind_address = take(m, S_BIND_ADDRESS);
    if (parse_int(&m->v[S_HTTP_MAX_CONNS], 1, 1000000, &n, errs) == 0)
        c->http_max_connections = (unsigned)n;
    /* At least one answer of the largest kind (a dashboard file, a full
     * /api/dashboard) must fit, or every pipelined request waits. */
    if (parse_int(&m->v[S_HTTP_OUTPUT], 65536, 1L << 30, &n, errs) == 0)
        c->http_max_output_bytes = (size_t)n;
    if (parse_int(&m->v[S_HTTP_BODIES], 1048576, 1L << 32, &n, errs) == 0)
        c->http_max_bodies_bytes = (size_t)n;
    if (parse_duration(&m->v[S_HTTP_WRITE_TIMEOUT], &c->http_write_timeout_ms, errs) == 0 &&
        c->http_write_timeout_ms < 100)
        config_errors_add(errs, "%s: must be at least 100ms", m->v[S_HTTP_WRITE_TIMEOUT].origin);
    if (parse_int(&m->v[S_KUBE_QPS], 1, 100000, &n, errs) == 0)
        c->kube_qps = (int)n;
    if (parse_int(&m->v[S_KUBE_BURST], 1, 100000, &n, errs) == 0)
        c->kube_burst = (int)n;
}

static void convert_crd_namespaces(struct merged *m, struct config *c, struct config_errors *errs)
{
    const struct value *v = &m->v[S_CRD_NAMESPACES];
    char *list = xstrdup(v->text ? v->text : ""), *save = NULL;

    for (char *ns = strtok_r(list, ",", &save); ns; ns = strtok_r(NULL, ",", &save)) {
        size_t len;
        ns += strspn(ns, " ");
        for (len = strlen(ns); len > 0 && ns[len - 1] == ' '; len--)
            ns[len - 1] = '\0';
        if (!config_is_dns1123_label(ns)) {
            config_errors_add(errs, "%s: \"%s\" is not a valid namespace name", v->origin, ns);
            continue;
        }
        c->crd_namespaces = xrealloc(c->crd_namespaces, (c->crd_namespaces_count + 1) * sizeof(char *));
        c->crd_namespaces[c->crd_namespaces_count++] = xstrdup(ns);
    }
    free(list);
}

static void convert(struct merged *m, struct config *c, struct config_errors *errs)
{
    long n;

    if (m->v[S_ID].text == NULL || *m->v[S_ID].text == '\0') {
        char host[256];
        if (gethostname(host, sizeof(host)) == 0) {
            host[sizeof(host) - 1] = '\0';
            set_value(m, S_ID, host, "hostname");
        } else {
            config_errors_add(errs, "id: not set and the hostname cannot be read");
        }
    }
    c->id = take(m, S_ID);
    c->tenant = take(m, S_TENANT);
    c->namespace = take(m, S_NAMESPACE);
    /* 0 is the Go controller's "not set": its default port. */
    if (parse_int(&m->v[S_PORT], 0, 65535, &n, errs) == 0)
        c->port = n ? (int)n : 8080;
    parse_bool(&m->v[S_REMAINS_FOLLOWER], &c->remains_follower, errs);
    parse_bool(&m->v[S_FENCING], &c->fencing, errs);
    convert_store(m, c, errs);
    c->cluster_name = take(m, S_CLUSTER_NAME);
    c->kubeconfig = take(m, S_KUBECONFIG);
    convert_timing(m, c, errs);
    convert_http(m, c, errs);
    convert_crd_namespaces(m, c, errs);
    if (c->api_token && *c->api_token == '\0') {
        free(c->api_token);
        c->api_token = NULL;
    }
    if (c->storage_type == STORAGE_DB && (c->database_url == NULL || *c->database_url == '\0'))
        config_errors_add(errs, "databaseURL: required when storageType is db");
}

int config_load(int argc, char **argv, char **envp, enum config_action *action,
                struct config **out, struct config_errors *errs)
{
    struct cli cli;
    struct merged m;
    struct config *c = xcalloc(1, sizeof(*c));
    char *path = NULL, *data = NULL;
    size_t len = 0;

    *out = NULL;
    memset(&cli, 0, sizeof(cli));
    memset(&m, 0, sizeof(m));
    parse_args(argc, argv, &cli, errs);
    *action = cli.action;
    if (cli.action == CONFIG_HELP || cli.action == CONFIG_VERSION) {
        /* Neither needs a valid configuration. */
        merged_free(&cli.flags);
        free(c);
        config_errors_free(errs);
        return 0;
    }
    for (int s = 0; s < S_COUNT; s++)
        if (settings[s].def)
            set_value(&m, (enum setting)s, settings[s].def, settings[s].file_key ? settings[s].file_key
                                                                               : settings[s].env);
    {
        const char *env_path = env_get(envp, "HIGHLANDER_CONFIG");
        if (cli.config_path)
            path = xstrdup(cli.config_path);
        else if (env_path && *env_path)
            path = xstrdup(env_path);
        else
            path = find_config_file(envp);
    }
    if (path != NULL) {
        data = read_file(path, &len, errs);
        if (data != NULL && config_file_parse(data, len, path, &c->file, errs, cli.strict ? NULL : &c->warnings) == 0)
            apply_file(&m, c->file, errs);
        free(data);
        c->config_path = path;
    }
    if (c->file == NULL)
        c->file = xcalloc(1, sizeof(*c->file));
    apply_env(&m, envp, errs);
    merge_into(&m, &cli.flags);
    merged_free(&cli.flags);
    convert(&m, c, errs);
    merged_free(&m);
    if (c->file->redis && c->file->redis->sentinel) {
        struct redis_sentinel_config *s = c->file->redis->sentinel;
        if (s->master_name && *s->master_name)
            c->sentinel_master = xstrdup(s->master_name);
        if (s->addrs_count) {
            c->sentinel_addrs = xcalloc(s->addrs_count, sizeof(char *));
            for (unsigned i = 0; i < s->addrs_count; i++)
                c->sentinel_addrs[i] = xstrdup(s->addrs[i] ? s->addrs[i] : "");
            c->sentinel_addrs_count = s->addrs_count;
        }
    }
    config_validate(c, errs);
    if (errs->count) {
        config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    config_errors_free(&c->warnings);
    free(c->config_path);
    free(c->id);
    free(c->tenant);
    free(c->namespace);
    free(c->redis_addr);
    free(c->redis_username);
    free(c->redis_password);
    free(c->sentinel_master);
    for (unsigned i = 0; i < c->sentinel_addrs_count; i++)
        free(c->sentinel_addrs[i]);
    free(c->sentinel_addrs);
    for (unsigned i = 0; i < c->crd_namespaces_count; i++)
        free(c->crd_namespaces[i]);
    free(c->crd_namespaces);
    free(c->database_url);
    free(c->cluster_name);
    free(c->kubeconfig);
    free(c->log_level);
    free(c->log_format);
    free(c->api_token);
    free(c->bind_address);
    config_file_free(c->file);
    free(c);
}
