/*
 * Workload specs from custom resources and the objects built from them:
 * every field decoded (none silently ignored), unknown fields named,
 * labels, annotations, the token, and the spec hash that ignores
 * leader-specific values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/workload.h"

static const char spec_json[] =
    "{\"image\":\"nginx\",\"script\":{\"commands\":[\"a\",\"b\"],\"shell\":\"/bin/bash\"},"
    "\"env\":{\"K\":\"V\"},\"labels\":{\"team\":\"x\"},\"annotations\":{\"note\":\"y\"},"
    "\"nodeSelector\":{\"disk\":\"ssd\"},\"configMaps\":[\"cm\"],\"secrets\":[\"sec\"],"
    "\"resources\":{\"cpuRequest\":\"100m\",\"memoryLimit\":\"1Gi\"},"
    "\"ports\":[{\"name\":\"http\",\"containerPort\":80,\"servicePort\":8080}],"
    "\"sidecars\":[{\"name\":\"side\",\"image\":\"envoy\",\"env\":{\"S\":\"1\"},"
    "\"volumeMounts\":[{\"name\":\"v\",\"mountPath\":\"/v\",\"readOnly\":true}],\"securityContext\":{\"runAsUser\":7}}],"
    "\"replicas\":3,\"healthCheckPath\":\"/h\",\"healthCheckPort\":81,\"terminationGracePeriod\":\"10s\"}";

static struct config cfg;

static void setup_cfg(void)
{
    memset(&cfg, 0, sizeof(cfg));
    cfg.id = (char *)"replica-1";
    cfg.tenant = (char *)"t1";
    cfg.cluster_name = (char *)"east";
}

static void test_decode_and_build(void **state)
{
    struct config_errors errs = {0};
    json_t *spec = json_loads(spec_json, 0, NULL);
    struct workload_spec *w = workload_spec_from_json(WORKLOAD_SERVICE, spec, "web", "ns1", &errs);
    struct build_ctx b;
    struct desired d[MAX_DESIRED];
    char hash1[24], hash2[24];
    int n;
    json_t *dep, *c, *tmpl;
    (void)state;

    setup_cfg();
    config_validate_workload(WORKLOAD_SERVICE, w, "spec", &errs);
    assert_int_equal(errs.count, 0);
    assert_int_equal(w->sidecars_count, 1);
    assert_int_equal(*w->sidecars[0].security_context->run_as_user, 7);
    b = (struct build_ctx){&cfg, WORKLOAD_SERVICE, w, "ns1", "web", 5, NULL};
    n = workload_build(&b, d, hash1, sizeof(hash1));
    assert_int_equal(n, 2); /* Deployment + Service */
    dep = d[0].body;
    assert_string_equal(json_string_value(json_object_get(dep, "kind")), "Deployment");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(dep, "spec"), "replicas")), 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(dep, "metadata"), "annotations"),
                                                          ANN_TOKEN)), "5");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(dep, "metadata"), "annotations"),
                                                          ANN_LEADER)), "replica-1");
    tmpl = json_object_get(json_object_get(dep, "spec"), "template");
    assert_null(json_object_get(json_object_get(tmpl, "metadata"), "annotations"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(tmpl, "metadata"), "labels"),
                                                          "highlander.plexobject.io/tenant")), "t1");
    c = json_array_get(json_object_get(json_object_get(tmpl, "spec"), "containers"), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "command"), 0)), "/bin/bash");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "args"), 1)), "set -e\na\nb\n");
    {
        char *text = json_dumps(c, JSON_COMPACT);
        assert_non_null(strstr(text, "{\"name\":\"HIGHLANDER_FENCING_TOKEN\",\"value\":\"5\"}"));
        free(text);
    }
    assert_int_equal(json_array_size(json_object_get(json_object_get(tmpl, "spec"), "containers")), 2);
    assert_int_equal(json_array_size(json_object_get(json_object_get(tmpl, "spec"), "volumes")), 2);
    desired_free(d, n);
    /* Another leader, another token: the same hash (adopted untouched). */
    cfg.id = (char *)"replica-2";
    b.token = 9;
    n = workload_build(&b, d, hash2, sizeof(hash2));
    assert_string_equal(hash1, hash2);
    desired_free(d, n);
    /* A real change changes the hash. */
    *w->replicas = 4;
    n = workload_build(&b, d, hash2, sizeof(hash2));
    assert_string_not_equal(hash1, hash2);
    desired_free(d, n);
    config_workload_free(WORKLOAD_SERVICE, w);
    json_decref(spec);
    config_errors_free(&errs);
}

static void test_unknown_and_bad_fields(void **state)
{
    struct config_errors errs = {0};
    json_t *spec = json_loads("{\"image\":[7],\"schedule\":\"* * * * *\",\"replicass\":2,\"env\":[1],"
                              "\"script\":{\"commands\":[]}}", 0, NULL);
    struct workload_spec *w = workload_spec_from_json(WORKLOAD_PROCESS, spec, "p", "ns", &errs);
    int unknown = 0, image = 0, env = 0;
    (void)state;

    config_validate_workload(WORKLOAD_PROCESS, w, "spec", &errs);
    for (unsigned i = 0; i < errs.count; i++) {
        unknown += strstr(errs.items[i], "spec.replicass: unknown field") != NULL;
        unknown += strstr(errs.items[i], "spec.schedule: unknown field for process") != NULL;
        env += strstr(errs.items[i], "spec.env: must be a map") != NULL;
        image += strstr(errs.items[i], "spec.image") != NULL;
    }
    assert_int_equal(unknown, 2);
    assert_int_equal(env, 1);
    assert_true(image >= 1);
    config_workload_free(WORKLOAD_PROCESS, w);
    json_decref(spec);
    config_errors_free(&errs);
}

static void test_health(void **state)
{
    struct health h;
    json_t *pod = json_loads("{\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\",\"conditions\":"
                             "[{\"type\":\"Ready\",\"status\":\"True\"}],\"containerStatuses\":[{\"restartCount\":2}]},"
                             "\"spec\":{\"nodeName\":\"n1\"}}", 0, NULL);
    json_t *dep = json_loads("{\"metadata\":{\"generation\":3},\"spec\":{\"replicas\":2},"
                             "\"status\":{\"observedGeneration\":2,\"readyReplicas\":2}}", 0, NULL);
    (void)state;

    workload_health(WORKLOAD_PROCESS, pod, &h);
    assert_true(h.healthy);
    assert_int_equal(json_integer_value(json_object_get(h.details, "restarts")), 2);
    json_decref(h.details);
    workload_health(WORKLOAD_SERVICE, dep, &h);
    assert_false(h.healthy); /* generation not observed yet */
    json_decref(h.details);
    workload_health(WORKLOAD_CRONJOB, NULL, &h);
    assert_false(h.active);
    json_decref(h.details);
    json_decref(pod);
    json_decref(dep);
}

/* The Go controller's detail keys, beside ours, with Go's JSON types. */
static void test_go_detail_keys(void **state)
{
    struct health h;
    json_t *pod = json_loads("{\"status\":{\"phase\":\"Pending\",\"hostIP\":\"10.1.0.1\",\"conditions\":"
                             "[{\"type\":\"PodScheduled\",\"status\":\"False\",\"reason\":\"Unschedulable\","
                             "\"message\":\"0/1 nodes\"}],\"containerStatuses\":[{\"restartCount\":3,\"ready\":false,"
                             "\"state\":{\"running\":{\"startedAt\":\"2026-01-01T00:00:00Z\"}}}]},"
                             "\"spec\":{\"nodeName\":\"n1\"}}", 0, NULL);
    json_t *sts = json_loads("{\"metadata\":{\"generation\":1},\"spec\":{\"replicas\":2},\"status\":"
                             "{\"observedGeneration\":1,\"readyReplicas\":1,\"currentReplicas\":2,\"updatedReplicas\":2}}",
                             0, NULL);
    json_t *cj = json_loads("{\"spec\":{\"schedule\":\"* * * * *\",\"suspend\":false},\"status\":{\"active\":"
                            "[{\"name\":\"tick-1\"},{\"name\":\"tick-2\"}]}}", 0, NULL);
    json_t *d;
    (void)state;

    workload_health(WORKLOAD_PROCESS, pod, &h);
    d = h.details;
    assert_string_equal(json_string_value(json_object_get(d, "podPhase")), "Pending");
    assert_string_equal(json_string_value(json_object_get(d, "podIP")), ""); /* Go: a string, "" before one */
    assert_string_equal(json_string_value(json_object_get(d, "hostIP")), "10.1.0.1");
    assert_string_equal(json_string_value(json_object_get(d, "nodeName")), "n1");
    assert_true(json_is_false(json_object_get(d, "containerReady")));
    assert_int_equal(json_integer_value(json_object_get(d, "containerRestartCount")), 3);
    assert_string_equal(json_string_value(json_object_get(d, "containerStartTime")), "2026-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(d, "pendingReason")), "Unschedulable");
    assert_string_equal(json_string_value(json_object_get(d, "pendingMessage")), "0/1 nodes");
    json_decref(d);

    workload_health(WORKLOAD_PERSISTENT, sts, &h);
    d = h.details;
    assert_int_equal(json_integer_value(json_object_get(d, "readyReplicas")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "currentReplicas")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "updatedReplicas")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "replicas")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "ready")), 1); /* ours kept */
    json_decref(d);

    workload_health(WORKLOAD_CRONJOB, cj, &h);
    d = h.details;
    assert_int_equal(json_array_size(json_object_get(d, "activeJobNames")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "activeJobNames"), 1)), "tick-2");
    assert_int_equal(json_integer_value(json_object_get(d, "activeJobs")), 2);
    json_decref(d);
    json_decref(pod);
    json_decref(sts);
    json_decref(cj);
}

/* The main container of spec (JSON) built as kind t; *d holds the objects. */
static json_t *main_of(enum workload_type t, const char *spec_text, struct desired *d, int *n)
{
    struct config_errors errs = {0};
    json_t *spec = json_loads(spec_text, 0, NULL), *top, *ps;
    struct workload_spec *w = workload_spec_from_json(t, spec, "w", "ns1", &errs);
    struct build_ctx b = {&cfg, t, w, "ns1", "w", 5, NULL};
    char hash[24];

    for (unsigned i = 0; i < errs.count; i++)
        print_error("%s\n", errs.items[i]);
    assert_int_equal(errs.count, 0);
    *n = workload_build(&b, d, hash, sizeof(hash));
    top = d[0].body;
    ps = json_object_get(top, "spec");
    if (t == WORKLOAD_CRONJOB)
        ps = json_object_get(json_object_get(ps, "jobTemplate"), "spec");
    if (t != WORKLOAD_PROCESS)
        ps = json_object_get(json_object_get(ps, "template"), "spec");
    config_workload_free(t, w);
    json_decref(spec);
    config_errors_free(&errs);
    return json_object_get(ps, "containers");
}

static int probe_int(json_t *c, const char *probe, const char *key)
{
    return (int)json_integer_value(json_object_get(json_object_get(c, probe), key));
}

static const char *probe_str(json_t *c, const char *probe, const char *handler, const char *key)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(c, probe), handler), key));
}

/* The Go controller's container shapes: "main", IfNotPresent, and its
 * probes per kind, so Go-made objects and ours differ in nothing that
 * matters and alerts keyed on container "main" keep working. */
static void test_go_container_shapes(void **state)
{
    static const char health[] = "{\"image\":\"nginx\",\"healthCheckPath\":\"/h\",\"healthCheckPort\":81,"
                                 "\"sidecars\":[{\"name\":\"s\",\"image\":\"envoy\"}]}";
    struct desired d[MAX_DESIRED];
    json_t *cs, *c;
    int n;
    (void)state;

    setup_cfg();
    cs = main_of(WORKLOAD_SERVICE, health, d, &n);
    c = json_array_get(cs, 0);
    assert_string_equal(json_string_value(json_object_get(c, "name")), "main");
    assert_string_equal(json_string_value(json_object_get(c, "imagePullPolicy")), "IfNotPresent");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cs, 1), "imagePullPolicy")), "IfNotPresent");
    assert_string_equal(probe_str(c, "readinessProbe", "httpGet", "path"), "/h");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(c, "livenessProbe"),
                                                                        "httpGet"), "port")), 81);
    assert_int_equal(probe_int(c, "readinessProbe", "initialDelaySeconds"), 10);
    assert_int_equal(probe_int(c, "livenessProbe", "initialDelaySeconds"), 15);
    assert_int_equal(probe_int(c, "livenessProbe", "periodSeconds"), 15);
    assert_int_equal(probe_int(c, "livenessProbe", "failureThreshold"), 3);
    desired_free(d, n);

    c = json_array_get(main_of(WORKLOAD_PERSISTENT, health, d, &n), 0);
    assert_int_equal(probe_int(c, "livenessProbe", "initialDelaySeconds"), 12);
    assert_int_equal(probe_int(c, "livenessProbe", "periodSeconds"), 30);
    assert_int_equal(probe_int(c, "readinessProbe", "periodSeconds"), 10);
    desired_free(d, n);

    /* No healthCheckPath: no HTTP probes. */
    c = json_array_get(main_of(WORKLOAD_SERVICE, "{\"image\":\"nginx\"}", d, &n), 0);
    assert_null(json_object_get(c, "readinessProbe"));
    assert_null(json_object_get(c, "livenessProbe"));
    desired_free(d, n);

    /* A restarting process: liveness checks the first command, quoted
     * for sh whatever it holds. */
    c = json_array_get(main_of(WORKLOAD_PROCESS, "{\"image\":\"busybox\",\"restartPolicy\":\"Always\","
                                                 "\"script\":{\"commands\":[\"echo 'hi'\",\"sleep 9\"]}}", d, &n), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(json_object_get(c,
                            "livenessProbe"), "exec"), "command"), 2)), "pgrep -f 'echo '\\''hi'\\''' || exit 1");
    assert_int_equal(probe_int(c, "livenessProbe", "timeoutSeconds"), 5);
    desired_free(d, n);
    /* One that never restarts (the default) has none; nor a cronJob. */
    c = json_array_get(main_of(WORKLOAD_PROCESS, "{\"image\":\"busybox\",\"script\":{\"commands\":[\"sleep 9\"]}}", d,
                               &n), 0);
    assert_null(json_object_get(c, "livenessProbe"));
    assert_string_equal(json_string_value(json_object_get(c, "name")), "main");
    desired_free(d, n);
    c = json_array_get(main_of(WORKLOAD_CRONJOB, "{\"image\":\"busybox\",\"schedule\":\"* * * * *\","
                                                 "\"restartPolicy\":\"OnFailure\",\"script\":{\"commands\":"
                                                 "[\"true\"]}}", d, &n), 0);
    assert_string_equal(json_string_value(json_object_get(c, "name")), "main");
    assert_null(json_object_get(c, "livenessProbe"));
    desired_free(d, n);
}

/* A config file's entry and a custom resource's spec of the same text go
 * through one schema: the same struct, field for field (compared through
 * the one encoder), and the same refusals, under their own paths. */
static void test_one_schema_for_file_and_resource(void **state)
{
    struct config_errors errs = {0};
    struct config_file *f = NULL;
    json_t *spec = json_loads(spec_json, 0, NULL), *from_file, *from_cr;
    struct workload_spec *w;
    char *doc;
    (void)state;

    /* JSON is YAML: the spec, with a name, as the one entry of a file. */
    doc = xasprintf("workloads: {services: [%.*s, \"name\": \"web\", \"namespace\": \"ns1\"}]}",
                    (int)strlen(spec_json) - 1, spec_json);
    assert_int_equal(config_file_parse(doc, strlen(doc), "f.yaml", &f, &errs, NULL), 0);
    assert_int_equal(errs.count, 0);
    assert_int_equal(f->workloads->services_count, 1);
    w = workload_spec_from_json(WORKLOAD_SERVICE, spec, "web", "ns1", &errs);
    assert_int_equal(errs.count, 0);
    from_file = config_workload_to_json(WORKLOAD_SERVICE, &f->workloads->services[0]);
    from_cr = config_workload_to_json(WORKLOAD_SERVICE, w);
    assert_true(json_equal(from_file, from_cr));
    assert_int_equal(w->sidecars[0].env.count, 1);
    assert_string_equal(w->node_selector.items[0].value, "ssd");
    json_decref(from_file);
    json_decref(from_cr);
    config_workload_free(WORKLOAD_SERVICE, w);
    config_file_free(f);
    free(doc);

    /* A list where a map belongs is refused in both, naming the field. */
    doc = xstrdup("workloads:\n  processes:\n  - name: p\n    image: x\n    env: [1]\n");
    assert_int_not_equal(config_file_parse(doc, strlen(doc), "f.yaml", &f, &errs, NULL), 0);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0], "workloads.processes[0].env: must be a map of strings");
    config_errors_free(&errs);
    free(doc);
    json_decref(spec);
    spec = json_loads("{\"image\":\"x\",\"labels\":\"a=b\"}", 0, NULL);
    w = workload_spec_from_json(WORKLOAD_PROCESS, spec, "p", "ns", &errs);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.items[0], "spec.labels: must be a map of strings");
    /* The invalid spec keeps its identity, and frees the one way. */
    assert_string_equal(w->name, "p");
    assert_string_equal(w->namespace, "ns");
    assert_null(w->image);
    config_workload_free(WORKLOAD_PROCESS, w);
    config_errors_free(&errs);
    json_decref(spec);
}

/* The pod cache's trimming keeps what is read: health and the Go detail
 * keys of a trimmed pod are those of the whole one, in each phase, and the
 * containers' spec is gone. */
static void test_pod_cache_keeps_what_is_read(void **state)
{
    static const char *const pods[] = {
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p-pod\",\"namespace\":\"ns\","
        "\"uid\":\"u1\",\"resourceVersion\":\"7\",\"creationTimestamp\":\"2026-12-01T00:00:00Z\","
        "\"labels\":{\"app\":\"p\"},\"annotations\":{\"k8-highlander.io/spec-hash\":\"h\"},"
        "\"ownerReferences\":[{\"kind\":\"WorkloadProcess\"}],\"finalizers\":[\"x\"]},"
        "\"spec\":{\"nodeName\":\"n1\",\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"main\","
        "\"image\":\"busybox\",\"env\":[{\"name\":\"A\",\"value\":\"1\"}]}],\"volumes\":[{\"name\":\"v\"}]},"
        "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\",\"hostIP\":\"10.1.0.1\","
        "\"startTime\":\"2026-12-01T00:00:01Z\",\"qosClass\":\"BestEffort\",\"conditions\":[{\"type\":\"Ready\","
        "\"status\":\"True\",\"lastTransitionTime\":\"t\"}],\"containerStatuses\":[{\"name\":\"main\","
        "\"image\":\"busybox\",\"imageID\":\"sha\",\"ready\":true,\"restartCount\":2,"
        "\"state\":{\"running\":{\"startedAt\":\"2026-12-01T00:00:02Z\"}}}]}}",
        "{\"metadata\":{\"name\":\"q-pod\"},\"spec\":{\"containers\":[]},\"status\":{\"phase\":\"Pending\","
        "\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"False\",\"reason\":\"Unschedulable\","
        "\"message\":\"0/3 nodes are available\"}]}}",
    };
    const struct workload_kind *k = workload_kind_of(WORKLOAD_PROCESS);
    (void)state;

    assert_non_null(k->keep);
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        json_t *whole = json_loads(pods[i], 0, NULL), *kept = json_deep_copy(whole);
        struct health a, b;
        assert_non_null(whole);
        k->keep(kept);
        workload_health(WORKLOAD_PROCESS, whole, &a);
        workload_health(WORKLOAD_PROCESS, kept, &b);
        assert_int_equal(a.healthy, b.healthy);
        assert_string_equal(a.phase, b.phase);
        assert_true(json_equal(a.details, b.details));
        assert_null(json_object_get(json_object_get(kept, "spec"), "containers"));
        assert_null(json_object_get(json_object_get(kept, "metadata"), "finalizers"));
        for (int j = 0; j < 2; j++) {
            const char *key = j ? "annotations" : "labels";
            json_t *x = json_object_get(json_object_get(whole, "metadata"), key);
            json_t *y = json_object_get(json_object_get(kept, "metadata"), key);
            assert_true(x == NULL ? y == NULL : json_equal(x, y));
        }
        json_decref(a.details);
        json_decref(b.details);
        json_decref(whole);
        json_decref(kept);
    }
    /* The replicated kinds keep everything: an update merges into it. */
    assert_null(workload_kind_of(WORKLOAD_SERVICE)->keep);
    assert_null(workload_kind_of(WORKLOAD_PERSISTENT)->keep);
    assert_null(workload_kind_of(WORKLOAD_CRONJOB)->keep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_and_build),
        cmocka_unit_test(test_unknown_and_bad_fields),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_go_detail_keys),
        cmocka_unit_test(test_go_container_shapes),
        cmocka_unit_test(test_one_schema_for_file_and_resource),
        cmocka_unit_test(test_pod_cache_keeps_what_is_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
