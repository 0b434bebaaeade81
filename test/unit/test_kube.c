/*
 * Kubernetes client pieces that need no server: kubeconfig variants,
 * in-cluster configuration, base64, Status errors, paths, the watch framer
 * (torn frames, huge lines, garbage) and watch event decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "highlander/informer.h"
#include "highlander/kube.h"

static const char kc_certs[] =
    "apiVersion: v1\nkind: Config\ncurrent-context: main\n"
    "clusters:\n"
    "- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority-data: Q0EtUEVN\n"
    "- name: c2\n  cluster:\n    server: https://10.0.0.2:6443\n    certificate-authority: ca.crt\n"
    "    insecure-skip-tls-verify: true\n"
    "users:\n"
    "- name: u1\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n"
    "- name: u2\n  user:\n    token: abc.def\n"
    "- name: u3\n  user:\n    tokenFile: /var/tok\n    client-certificate: certs/me.crt\n    client-key: /abs/me.key\n"
    "- name: u4\n  user:\n    exec: {command: aws}\n"
    "contexts:\n"
    "- name: main\n  context: {cluster: c1, user: u1, namespace: team}\n"
    "- name: other\n  context: {cluster: c2, user: u2}\n"
    "- name: files\n  context: {cluster: c2, user: u3}\n"
    "- name: execy\n  context: {cluster: c1, user: u4}\n"
    "- name: broken\n  context: {cluster: nope, user: u1}\n";

static int parse(const char *text, const char *ctx, struct kube_config *c, char *err)
{
    return kube_config_parse(text, strlen(text), "kc.yaml", "/home/me/.kube", ctx, c, err, 300);
}

static void test_kubeconfig_variants(void **state)
{
    struct kube_config c;
    char err[300];
    (void)state;

    /* current-context, data fields decoded, namespace, trailing slash */
    assert_int_equal(parse(kc_certs, NULL, &c, err), 0);
    assert_string_equal(c.server, "https://10.0.0.1:6443");
    assert_int_equal(c.ca_data.len, 6);
    assert_memory_equal(c.ca_data.data, "CA-PEM", 6);
    assert_memory_equal(c.cert_data.data, "CERT", 4);
    assert_memory_equal(c.key_data.data, "KEY", 3);
    assert_string_equal(c.namespace, "team");
    assert_false(c.insecure);
    kube_config_free(&c);

    /* named context, token, insecure, relative CA resolved */
    assert_int_equal(parse(kc_certs, "other", &c, err), 0);
    assert_string_equal(c.server, "https://10.0.0.2:6443");
    assert_string_equal(c.token, "abc.def");
    assert_true(c.insecure);
    assert_string_equal(c.ca_file, "/home/me/.kube/ca.crt");
    assert_string_equal(c.namespace, "default");
    kube_config_free(&c);

    /* a name that is no context and no cluster, among several: refused */
    assert_int_equal(parse(kc_certs, "elsewhere", &c, err), KUBE_CONFIG_AMBIGUOUS);
    assert_non_null(strstr(err, "cluster.name \"elsewhere\" is no context and no cluster of its 5 contexts"));
    /* ... but with one context there is nothing to mix up */
    assert_int_equal(parse("apiVersion: v1\ncurrent-context: only\nclusters:\n- name: k\n  cluster: {server: "
                           "\"https://h:1\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: only\n"
                           "  context: {cluster: k, user: u}\n", "elsewhere", &c, err), 0);
    assert_string_equal(c.context, "only");
    kube_config_free(&c);

    /* a cluster name instead of a context name picks a context using it */
    assert_int_equal(parse(kc_certs, "c2", &c, err), 0);
    assert_string_equal(c.context, "other");
    kube_config_free(&c);

    /* files and token file */
    assert_int_equal(parse(kc_certs, "files", &c, err), 0);
    assert_string_equal(c.token_file, "/var/tok");
    assert_string_equal(c.cert_file, "/home/me/.kube/certs/me.crt");
    assert_string_equal(c.key_file, "/abs/me.key");
    kube_config_free(&c);

    /* errors name what is wrong */
    assert_int_equal(parse(kc_certs, "execy", &c, err), -1);
    assert_non_null(strstr(err, "exec and auth-provider credentials are not supported"));
    assert_int_equal(parse(kc_certs, "broken", &c, err), -1);
    assert_non_null(strstr(err, "names cluster \"nope\""));
    assert_int_equal(parse("current-context: x\n", NULL, &c, err), -1);
    assert_non_null(strstr(err, "no context named"));
    assert_int_equal(parse("- a\n- b\n", NULL, &c, err), -1);
    assert_non_null(strstr(err, "not a kubeconfig"));
    assert_int_equal(parse("a: [\n", NULL, &c, err), -1);
    assert_int_equal(parse("clusters:\n- name: c\n  cluster: {server: https://x, certificate-authority-data: '@@'}\n"
                           "contexts:\n- name: k\n  context: {cluster: c}\ncurrent-context: k\n", NULL, &c, err), -1);
    assert_non_null(strstr(err, "not valid base64"));
    assert_int_equal(parse("clusters:\n- name: c\n  cluster: {server: ftp://x}\ncontexts:\n- name: k\n"
                           "  context: {cluster: c}\ncurrent-context: k\n", NULL, &c, err), -1);
    assert_non_null(strstr(err, "has no http(s) server"));
    assert_int_equal(parse("clusters:\n- name: c\n  cluster: {server: https://x}\nusers:\n- name: u\n"
                           "  user: {client-certificate-data: QQ==}\ncontexts:\n- name: k\n"
                           "  context: {cluster: c, user: u}\ncurrent-context: k\n", NULL, &c, err), -1);
    assert_non_null(strstr(err, "needs its key"));
}

static void test_in_cluster(void **state)
{
    char dir[] = "/tmp/hl-sa-XXXXXX", path[256], err[300];
    struct kube_config c;
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(dir));
    unsetenv("KUBERNETES_SERVICE_HOST");
    assert_int_equal(kube_config_in_cluster(dir, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kube_config_in_cluster(dir, &c, err, sizeof(err)), -1); /* no token */
    snprintf(path, sizeof(path), "%s/token", dir);
    f = fopen(path, "w");
    fputs("tok\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/namespace", dir);
    f = fopen(path, "w");
    fputs("highlander\n", f);
    fclose(f);
    assert_int_equal(kube_config_in_cluster(dir, &c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://10.96.0.1:443");
    assert_string_equal(c.namespace, "highlander");
    assert_non_null(strstr(c.token_file, "/token"));
    assert_non_null(strstr(c.ca_file, "/ca.crt"));
    kube_config_free(&c);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    assert_int_equal(kube_config_in_cluster(dir, &c, err, sizeof(err)), 0);
    assert_string_equal(c.server, "https://[fd00::1]:443");
    kube_config_free(&c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

static void test_base64(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b);
    assert_int_equal(kube_base64_decode("aGVsbG8gd29ybGQ=", 16, &b), 0);
    assert_string_equal(b.data, "hello world");
    assert_int_equal(kube_base64_decode("aGVs\nbG8=", 9, &b), 0);
    assert_string_equal(b.data, "hello");
    assert_int_equal(kube_base64_decode("a$==", 4, &b), -1);
    assert_int_equal(kube_base64_decode("aGVsbG8=x", 9, &b), -1);
    buf_free(&b);
}

static void test_status_errors(void **state)
{
    struct kube_status st;
    const char conflict[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"the object "
                            "has been modified\",\"reason\":\"Conflict\",\"code\":409}";
    (void)state;
    kube_status_from_body(409, conflict, strlen(conflict), &st);
    assert_int_equal(st.code, 409);
    assert_string_equal(st.reason, "Conflict");
    assert_string_equal(st.message, "the object has been modified");
    kube_status_from_body(502, "<html>bad gateway</html>", 24, &st);
    assert_int_equal(st.code, 502);
    assert_string_equal(st.reason, "");
    assert_string_equal(st.message, "<html>bad gateway</html>");
    kube_status_from_body(500, NULL, 0, &st);
    assert_string_equal(st.message, "HTTP 500");
    kube_status_from_body(404, "{\"reason\": 7}", 13, &st);
    assert_int_equal(st.code, 404);
}

static void test_paths(void **state)
{
    char *p;
    struct buf b;
    (void)state;
    p = kube_path("", "v1", "ns", "pods", "p", "status");
    assert_string_equal(p, "/api/v1/namespaces/ns/pods/p/status");
    free(p);
    p = kube_path("apps", "v1", NULL, "deployments", NULL, NULL);
    assert_string_equal(p, "/apis/apps/v1/deployments");
    free(p);
    buf_init(&b);
    kube_query_escape(&b, "app=x,managed-by in (a b)");
    assert_string_equal(b.data, "app%3Dx%2Cmanaged-by%20in%20%28a%20b%29");
    buf_free(&b);
}

struct lines {
    int n;
    char last[64];
    size_t total;
};

static int on_line(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    l->n++;
    l->total += len;
    snprintf(l->last, sizeof(l->last), "%.*s", (int)(len < 63 ? len : 63), line);
    return 0;
}

static void test_framer(void **state)
{
    struct watch_framer f;
    struct lines l = {0};
    const char *stream = "{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}\n";
    char *big;
    (void)state;

    /* torn: every byte separately */
    watch_framer_init(&f, 1024);
    for (size_t i = 0; i < strlen(stream); i++)
        assert_int_equal(watch_framer_feed(&f, stream + i, 1, on_line, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.last, "{\"c\":3}");
    /* a partial line stays buffered */
    assert_int_equal(watch_framer_feed(&f, "{\"d\"", 4, on_line, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(watch_framer_feed(&f, ":4}\n", 4, on_line, &l), 0);
    assert_int_equal(l.n, 4);
    watch_framer_free(&f);

    /* a 10 MiB line against a 4 MiB cap: refused, memory released */
    watch_framer_init(&f, 4u << 20);
    big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    memset(&l, 0, sizeof(l));
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++)
        rc = watch_framer_feed(&f, big, 1 << 20, on_line, &l);
    assert_int_equal(rc, -1);
    assert_int_equal(f.overflow, 1);
    assert_true(f.buf.cap == 0);
    assert_int_equal(watch_framer_feed(&f, "\n", 1, on_line, &l), -1);
    assert_int_equal(l.n, 0);
    watch_framer_free(&f);

    /* a 10 MiB line under a larger cap arrives whole */
    watch_framer_init(&f, 16u << 20);
    for (int i = 0; i < 10; i++)
        assert_int_equal(watch_framer_feed(&f, big, 1 << 20, on_line, &l), 0);
    assert_int_equal(watch_framer_feed(&f, "\n", 1, on_line, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.total, 10u << 20);
    watch_framer_free(&f);
    free(big);
}

static void test_event_decode(void **state)
{
    char type[32], err[200];
    json_t *obj;
    const char ok[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"5\"}}}";
    static const char *const bad[] = {"{", "[]", "{\"type\":\"ADDED\"}", "{\"type\":1,\"object\":{}}",
                                      "{\"type\":\"ADDED\",\"object\":[]}", "{\"type\":\"ADDED\",\"object\":{} trailing",
                                      NULL};
    (void)state;

    assert_int_equal(watch_event_decode(ok, strlen(ok), type, sizeof(type), &obj, err, sizeof(err)), 0);
    assert_string_equal(type, "ADDED");
    assert_string_equal(json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")), "a");
    json_decref(obj);
    for (int i = 0; bad[i]; i++) {
        if (watch_event_decode(bad[i], strlen(bad[i]), type, sizeof(type), &obj, err, sizeof(err)) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_null(obj);
        assert_true(strlen(err) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubeconfig_variants),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_status_errors),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_framer),
        cmocka_unit_test(test_event_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
