"""Deployment artefacts (SPEC section 8): manifests/ and the Helm chart are
accepted by the real API server (server-side dry run, with the Prometheus
Operator's CRDs installed for ServiceMonitor and PrometheusRule), the chart
lints and renders with default, HA, multi-tenant and multi-cluster values,
the alert rules load in promtool and fire when they should, and the binary
runs as the rendered Deployment says: its args, env, mounted config map,
service-account token, user id and read-only root file system.

kwok pods run no processes, so the Deployment cannot run in the local
cluster; the last test plays the kubelet instead (a private mount namespace
with the pod's volumes bind-mounted at their mountPaths)."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT, free_port, wait_until
from lease_helpers import RedisServer

pytestmark = pytest.mark.cluster

CHART = os.path.join(ROOT, "helm", "highlander")
MANIFESTS = os.path.join(ROOT, "manifests")
VALUES = ["", "examples/ha-values.yaml", "examples/tenant-a-values.yaml", "examples/tenant-b-values.yaml",
          "examples/multi-cluster-values.yaml"]
PROM_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"


def helm():
    return subprocess.run(["bash", os.path.join(ROOT, "test/cluster/build-helm.sh")], capture_output=True,
                          check=True).stdout.decode().strip()


def render(*args):
    p = subprocess.run([helm(), "template"] + list(args), capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def as_json(kube, yaml_text):
    """YAML documents as JSON objects (kubectl's client-side conversion)."""
    out = kube.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", input=yaml_text.encode())
    dec, objs, i = json.JSONDecoder(), [], 0
    while i < len(out.rstrip()):
        doc, i = dec.raw_decode(out, i)
        objs += doc["items"] if doc.get("kind") == "List" else [doc]
        while i < len(out) and out[i].isspace():
            i += 1
    return objs


@pytest.fixture(scope="module")
def monitoring_crds(kube):
    """The ServiceMonitor and PrometheusRule CRDs, from the Prometheus
    Operator's Go module (pinned), installed for real."""
    p = subprocess.run(["go", "mod", "download", "-json", PROM_OPERATOR], capture_output=True, cwd="/tmp")
    assert p.returncode == 0, p.stderr.decode()
    crd_dir = os.path.join(json.loads(p.stdout)["Dir"], "example", "prometheus-operator-crd")
    for name in ("servicemonitors", "prometheusrules"):
        kube.kubectl("apply", "--server-side", "-f", os.path.join(crd_dir, "monitoring.coreos.com_%s.yaml" % name))
    kube.kubectl("wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com",
                 "crd/prometheusrules.monitoring.coreos.com", "--timeout=60s")


def test_manifests_server_dry_run(kube, monitoring_crds):
    kube.kubectl("apply", "-f", os.path.join(MANIFESTS, "namespace.yaml"))
    out = kube.kubectl("apply", "--dry-run=server", "-k", MANIFESTS)
    for obj in ("deployment.apps/highlander", "service/highlander", "configmap/highlander-config",
                "poddisruptionbudget.policy/highlander", "networkpolicy.networking.k8s.io/highlander",
                "clusterrole.rbac.authorization.k8s.io/highlander", "deployment.apps/redis"):
        assert obj in out, out
    out = kube.kubectl("apply", "--dry-run=server", "-k", os.path.join(MANIFESTS, "monitoring"))
    assert "servicemonitor.monitoring.coreos.com/highlander" in out
    assert "prometheusrule.monitoring.coreos.com/highlander" in out
    kube.kubectl("apply", "--dry-run=server", "-f", os.path.join(MANIFESTS, "samples.yaml"), check=False)


def test_deployment_manifest_is_hardened(kube):
    dep = as_json(kube, open(os.path.join(MANIFESTS, "deployment.yaml")).read())[0]
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert dep["spec"]["replicas"] == 3
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    assert spec["affinity"]["podAntiAffinity"]
    assert spec["terminationGracePeriodSeconds"] > 30


def check_rendered_config(kube, rendered, ns):
    """The config the rendered chart mounts, with the env its Deployment
    sets (the kubelet's resolution, secrets included), passes
    --check-config.  Returns the dumped config and the Deployment."""
    objs = as_json(kube, rendered)
    cm = [o for o in objs if o["kind"] == "ConfigMap"][0]
    dep = [o for o in objs if o["kind"] == "Deployment"][0]
    secrets = {o["metadata"]["name"]: o.get("stringData", {}) for o in objs if o["kind"] == "Secret"}
    path = "/tmp/hl-chart-%s.yaml" % ns
    with open(path, "w") as f:
        f.write(cm["data"]["config.yaml"])
    env = pod_env(dep["spec"]["template"]["spec"]["containers"][0], secrets, "pod-x", ns, external_secrets=True)
    env["PATH"] = os.environ["PATH"]
    p = subprocess.run([BIN, "--config", path, "--check-config"], capture_output=True, env=env)
    os.unlink(path)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    return p.stdout.decode(), dep


@pytest.mark.parametrize("values", VALUES)
def test_chart_lint_template_and_server_dry_run(kube, monitoring_crds, values):
    args = ["-f", os.path.join(CHART, values)] if values else []
    p = subprocess.run([helm(), "lint", "--strict", CHART] + args, capture_output=True)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    ns = "hl-chart-" + (os.path.basename(values).split("-values")[0] if values else "default")
    kube.kubectl("create", "namespace", ns, check=False)
    rendered = render("hl", CHART, "-n", ns, *args)
    out = kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=rendered.encode())
    assert "deployment.apps/hl" in out and "configmap/hl-config" in out, out
    if values == "examples/ha-values.yaml":
        assert "servicemonitor.monitoring.coreos.com/hl" in out and "prometheusrule.monitoring.coreos.com/hl" in out
        assert "networkpolicy.networking.k8s.io/hl" in out
    # The config the chart writes, with the env its Deployment sets (secrets
    # included), is valid for the binary.
    dumped, _ = check_rendered_config(kube, rendered, ns)
    assert "CHANGE-ME" not in dumped  # secrets masked


def test_chart_rbac_and_alerts_match_manifests(kube):
    chart = as_json(kube, render("hl", CHART, "-n", "x", "--set", "monitoring.enabled=true",
                                 "--set", "monitoring.prometheusRule.enabled=true"))
    manifest_rbac = as_json(kube, open(os.path.join(MANIFESTS, "rbac.yaml")).read())
    role = lambda objs: [o for o in objs if o["kind"] == "ClusterRole"][0]["rules"]  # noqa: E731
    assert role(chart) == role(manifest_rbac)
    rule = lambda objs: [o for o in objs if o["kind"] == "PrometheusRule"][0]["spec"]  # noqa: E731
    assert rule(chart) == rule(as_json(kube, open(os.path.join(MANIFESTS, "monitoring/prometheusrule.yaml")).read()))


PROMTOOL_TESTS = """
rule_files: [rules.json]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'k8_highlander_is_leader{namespace="hl",job="hl",pod="a"}'
        values: '1x4 0x10'
      - series: 'k8_highlander_is_leader{namespace="hl",job="hl",pod="b"}'
        values: '0x14'
    alert_rule_test:
      - {eval_time: 30s, alertname: HighlanderNoLeader, exp_alerts: []}
      - eval_time: 3m
        alertname: HighlanderNoLeader
        exp_alerts:
          - exp_labels: {severity: critical, namespace: hl, job: hl}
            exp_annotations:
              summary: "No highlander leader in hl/hl"
              description: "No replica has held the lease for a minute: singleton workloads are not being kept."
  - interval: 15s
    input_series:
      - series: 'k8_highlander_is_leader{namespace="hl",job="hl",pod="a"}'
        values: '1x10'
      - series: 'k8_highlander_is_leader{namespace="hl",job="hl",pod="b"}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 1m
        alertname: HighlanderMultipleLeaders
        exp_alerts:
          - exp_labels: {severity: critical, namespace: hl, job: hl}
            exp_annotations:
              summary: "More than one highlander leader in hl/hl"
              description: "2 replicas report leadership at once; check the lease store and clocks."
  - interval: 1m
    input_series:
      - series: 'k8_highlander_workload_status{namespace="hl",job="hl",type="process",name="p"}'
        values: '1 0x10'
      - series: 'k8_highlander_db_errors_total{namespace="hl",job="hl",operation="expire",error_type="timeout"}'
        values: '0+1x15'
    alert_rule_test:
      - eval_time: 8m
        alertname: HighlanderWorkloadUnhealthy
        exp_alerts:
          - exp_labels: {severity: warning, namespace: hl, job: hl, type: process, name: p}
            exp_annotations:
              summary: "Workload process p is unhealthy"
              description: "The workload has not been healthy for 5 minutes; see its resource's status and Events."
      - eval_time: 12m
        alertname: HighlanderStoreErrors
        exp_alerts:
          - exp_labels: {severity: warning, namespace: hl, job: hl}
            exp_annotations:
              summary: "Lease store errors in hl/hl"
              description: "Operations on the lease store fail (0.016666666666666666/s); leadership may be lost."
"""


def test_alert_rules_load_and_fire(kube, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is required: make deps"
    spec = as_json(kube, open(os.path.join(MANIFESTS, "monitoring/prometheusrule.yaml")).read())[0]["spec"]
    (tmp_path / "rules.json").write_text(json.dumps(spec))
    p = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.json")], capture_output=True)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    (tmp_path / "tests.yaml").write_text(PROMTOOL_TESTS)
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], capture_output=True, cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


# ---- the binary as the rendered Deployment runs it ----------------------------

def pod_env(container, secrets, pod_name, namespace, external_secrets=False):
    """The container's env as the kubelet resolves it.  external_secrets:
    Secrets the chart does not render (existingSecret) get a stand-in."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            env[e["name"]] = {"metadata.name": pod_name, "metadata.namespace": namespace}[src["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            data = secrets.get(ref["name"], {})
            if ref["key"] in data:
                env[e["name"]] = data[ref["key"]]
            elif external_secrets and ref["name"] not in secrets:
                env[e["name"]] = "stand-in-for-" + ref["name"]
            else:
                assert ref.get("optional"), "secret %s/%s missing" % (ref["name"], ref["key"])
    return env


def run_as_pod(kube, objs, tmp_path, pod_name, factory, edit_config=None):
    """Starts the binary the way the kubelet would run the Deployment in
    objs: its args and env, each volume bind-mounted read-only at its
    mountPath, the service account's token at the standard path, the pod's
    user id, a read-only root file system, and KUBERNETES_SERVICE_HOST/PORT."""
    dep = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] != "redis"][0]
    cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o.get("stringData", {}) for o in objs if o["kind"] == "Secret"}
    ns = dep["metadata"]["namespace"]
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    mounts = []
    for vm in c.get("volumeMounts", []):
        vol = [v for v in spec["volumes"] if v["name"] == vm["name"]][0]
        d = tmp_path / ("vol-" + vm["name"])
        d.mkdir()
        for key, value in cms[vol["configMap"]["name"]]["data"].items():
            (d / key).write_text(edit_config(value) if edit_config else value)
            os.chmod(d / key, 0o644)
        os.chmod(d, 0o755)
        mounts.append((str(d), vm["mountPath"]))
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
    server = cfg["clusters"][0]["cluster"]["server"]
    shutil.copy(cfg["clusters"][0]["cluster"]["certificate-authority"], sa_dir / "ca.crt")
    (sa_dir / "token").write_text(kube.kubectl("-n", ns, "create", "token", spec["serviceAccountName"],
                                               "--duration=1h").strip())
    (sa_dir / "namespace").write_text(ns)
    for f in sa_dir.iterdir():
        os.chmod(f, 0o644)
    os.chmod(sa_dir, 0o755)
    mounts.append((str(sa_dir), "/var/run/secrets/kubernetes.io/serviceaccount"))
    host, port = server.split("://")[1].rsplit(":", 1)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOSTNAME": pod_name,
           "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    env.update(pod_env(c, secrets, pod_name, ns))
    sc = dict(spec.get("securityContext", {}))
    sc.update(c.get("securityContext", {}))
    assert sc.get("runAsNonRoot") and sc.get("runAsUser"), sc
    made = []  # mount points created here (the top-most new directory of each), removed after
    for _, dst in mounts:
        top = dst
        while not os.path.exists(os.path.dirname(top)):
            top = os.path.dirname(top)
        if not os.path.exists(top):
            made.append(top)
        os.makedirs(dst, exist_ok=True)
    script = ["set -e"]
    for src, dst in mounts:
        script.append("mount --bind '%s' '%s' && mount -o remount,bind,ro '%s'" % (src, dst, dst))
    if sc.get("readOnlyRootFilesystem"):
        script.append("mount -o remount,bind,ro /")
    script.append('exec setpriv --reuid %d --regid %d --clear-groups --no-new-privs "$@"'
                  % (sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"])))
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), "pod"]
    http_port = [p["containerPort"] for p in c["ports"] if p["name"] == "http"][0]
    try:
        # Made through the test's controller_factory, so it is killed even
        # if the test fails before its own clean-up.
        ctl = factory(args=c.get("args", []), env=env, port=http_port, wrap=wrap, exact_env=True, wait=False)
    except Exception:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
        raise
    ctl.made_dirs = made
    return ctl


def check_pod_run(kube, ctl, ns, name, token=None, stop_mode=False):
    auth = {"Authorization": "Bearer " + token} if token else None
    try:
        ctl.wait_healthy(timeout=15)
        with open("/proc/%d/status" % ctl.proc.pid) as f:
            uid = [line.split()[1] for line in f if line.startswith("Uid:")][0]
        assert uid != "0", "running as root"
        with open("/proc/%d/mounts" % ctl.proc.pid) as f:
            mounts = {line.split()[1]: line.split()[3].split(",") for line in f}
        assert "ro" in mounts["/"], mounts["/"]  # readOnlyRootFilesystem
        for path in ("/etc/k8-highlander", "/var/run/secrets/kubernetes.io/serviceaccount"):
            assert "ro" in mounts[os.path.realpath(path)], path
        st = wait_until(lambda: (lambda d: d["isLeader"] and d)(ctl.get_json("/status")[1]["data"]), 35,
                        lambda: ctl.log()[-3000:], interval=0.2)
        assert st["leaderID"] == "pod-" + name, (st, ctl.log()[-3000:])
        # In-cluster access with the service account: a resource becomes a pod.
        kube.kubectl("apply", "-f", "-", input=("""
apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {name: %s, namespace: %s}
spec: {image: busybox, script: {commands: ["sleep 3600"]}}
---
apiVersion: highlander.plexobject.io/v1
kind: WorkloadCronJob
metadata: {name: %s-cron, namespace: %s}
spec: {image: busybox, schedule: "0 * * * *", script: {commands: [date]}}
""" % (name, ns, name, ns)).encode())
        def both_healthy():
            ws = [w for w in ctl.get_json("/api/workloads?view=list", auth)[1]["data"] if w["name"].startswith(name)]
            return len(ws) == 2 and all(w["healthy"] for w in ws) and ws
        wait_until(both_healthy, 60, lambda: ctl.log()[-3000:], interval=0.3)
        assert "forbidden" not in ctl.log().lower(), ctl.log()[-3000:]
        if token:  # it reached the binary from the chart's Secret through the env
            assert ctl.get("/api/workloads")[0] == 401
        assert ctl.terminate() == 0, ctl.log()[-4000:]
        assert "released the lease" in ctl.log()
        assert ("workloadHandover stop" in ctl.log()) == stop_mode
        if stop_mode:  # the stop path ran with the same rights
            assert "every workload object stopped" in ctl.log()
            assert get_pod_gone(kube, ns, name + "-pod")
        assert "forbidden" not in ctl.log().lower(), ctl.log()[-3000:]
    finally:
        if ctl.proc.poll() is None:
            ctl.kill()
        for d in ctl.made_dirs:
            shutil.rmtree(d, ignore_errors=True)
        kube.kubectl("-n", ns, "delete", "workloadprocess,workloadcronjob", name, name + "-cron", "--wait=false",
                     check=False)


def get_pod_gone(kube, ns, pod):
    wait_until(lambda: pod not in kube.kubectl("-n", ns, "get", "pods", "-o", "name"), 20, pod + " still exists",
               interval=0.3)
    return True


def test_rendered_chart_deployment_runs(kube, tmp_path, controller_factory):
    redis = RedisServer()
    ns = "hl-chart-run"
    kube.kubectl("create", "namespace", ns, check=False)
    port = free_port()
    rendered = render("hl", CHART, "-n", ns, "--set", "redis.addr=127.0.0.1:%d" % redis.port,
                      "--set", "port=%d" % port, "--set", "tenant=chart-run", "--set", "namespace=" + ns,
                      "--set", "redis.password=", "--set", "apiToken=s3cret",
                      "--set", "workloadHandover=stop")
    kube.kubectl("apply", "-n", ns, "-f", "-", input=rendered.encode())  # service account, RBAC, ...
    objs = as_json(kube, rendered)
    try:
        ctl = run_as_pod(kube, objs, tmp_path, "pod-chart-run", controller_factory)
        check_pod_run(kube, ctl, ns, "chart-run", token="s3cret", stop_mode=True)
    finally:
        redis.stop()


def test_manifest_deployment_runs(kube, tmp_path, controller_factory):
    """manifests/ as they are, but for the Redis address and port in the
    config map (no cluster DNS here), which the test points at its Redis."""
    redis = RedisServer()
    port = free_port()
    kube.kubectl("apply", "-f", os.path.join(MANIFESTS, "namespace.yaml"), "-f", os.path.join(MANIFESTS, "rbac.yaml"))
    objs = []
    for f in ("configmap.yaml", "deployment.yaml"):
        objs += as_json(kube, open(os.path.join(MANIFESTS, f)).read())
    for o in objs:
        if o["kind"] == "Deployment":
            o["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = port

    def edit(text):
        assert "redis.highlander.svc.cluster.local:6379" in text and "port: 8080" in text
        return (text.replace("redis.highlander.svc.cluster.local:6379", "127.0.0.1:%d" % redis.port)
                .replace("port: 8080", "port: %d" % port).replace("namespace: default", "namespace: highlander")
                .replace("tenant: default", "tenant: manifest-run"))
    try:
        ctl = run_as_pod(kube, objs, tmp_path, "pod-manifest-run", controller_factory, edit_config=edit)
        check_pod_run(kube, ctl, "highlander", "manifest-run")
    finally:
        redis.stop()


# ---- GitOps examples (docs/deployment.md, "GitOps") -------------------------

GITOPS = os.path.join(MANIFESTS, "gitops")
GITOPS_FILES = ["flux-kustomization.yaml", "flux-helmrelease.yaml", "argocd-application.yaml"]
GITOPS_CRDS = ["kustomizations.kustomize.toolkit.fluxcd.io", "gitrepositories.source.toolkit.fluxcd.io",
               "helmrepositories.source.toolkit.fluxcd.io", "ocirepositories.source.toolkit.fluxcd.io",
               "helmreleases.helm.toolkit.fluxcd.io", "applications.argoproj.io", "appprojects.argoproj.io"]


@pytest.fixture(scope="module")
def gitops_crds(kube):
    """Flux's and Argo CD's CRDs from their Go modules (test/cluster/gitops-crds.sh), installed for real."""
    p = subprocess.run(["bash", os.path.join(ROOT, "test/cluster/gitops-crds.sh")], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    crd_dir = p.stdout.decode().strip()
    for f in sorted(os.listdir(crd_dir)):
        if f.endswith(".yaml"):
            kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", os.path.join(crd_dir, f))
    kube.kubectl("wait", "--for=condition=Established", *["crd/" + c for c in GITOPS_CRDS], "--timeout=60s")
    for ns in ("flux-system", "argocd", "highlander"):
        kube.kubectl("create", "namespace", ns, check=False)


def gitops_objects(kube, name):
    return as_json(kube, open(os.path.join(GITOPS, name)).read())


def test_gitops_examples_are_the_documented_ones():
    doc = open(os.path.join(ROOT, "docs", "deployment.md")).read()
    for name in GITOPS_FILES:
        text = open(os.path.join(GITOPS, name)).read()
        assert "```yaml\n" + text + "```" in doc, "docs/deployment.md does not show manifests/gitops/" + name


def dry_run(kube, text, ns=None):
    args = ["apply", "--dry-run=server", "-f", "-"] + (["-n", ns] if ns else [])
    return kube.kubectl(*args, input=text.encode())


def test_flux_kustomization_and_what_it_applies(kube, gitops_crds, monitoring_crds):
    out = kube.kubectl("apply", "--dry-run=server", "-f", os.path.join(GITOPS, "flux-kustomization.yaml"))
    assert "gitrepository.source.toolkit.fluxcd.io/highlander" in out, out
    assert "kustomization.kustomize.toolkit.fluxcd.io/highlander" in out, out
    ks = [o for o in gitops_objects(kube, "flux-kustomization.yaml") if o["kind"] == "Kustomization"][0]
    # What Flux builds from spec.path: this repository's kustomization.
    kube.kubectl("apply", "-f", os.path.join(MANIFESTS, "namespace.yaml"))
    out = kube.kubectl("apply", "--dry-run=server", "-k", os.path.join(ROOT, ks["spec"]["path"]))
    assert "deployment.apps/highlander" in out and "customresourcedefinition" in out, out


def chart_values_file(values, tag):
    path = "/tmp/hl-gitops-%s.json" % tag
    with open(path, "w") as f:
        json.dump(values, f)   # JSON is YAML
    return path


def test_flux_helmrelease_and_what_it_installs(kube, gitops_crds, monitoring_crds):
    out = kube.kubectl("apply", "--dry-run=server", "-f", os.path.join(GITOPS, "flux-helmrelease.yaml"))
    for obj in ("gitrepository.source.toolkit.fluxcd.io/highlander-chart",
                "gitrepository.source.toolkit.fluxcd.io/highlander-crds",
                "kustomization.kustomize.toolkit.fluxcd.io/highlander-crds", "helmrelease.helm.toolkit.fluxcd.io/highlander"):
        assert obj in out, out
    objs = gitops_objects(kube, "flux-helmrelease.yaml")
    hr = [o for o in objs if o["kind"] == "HelmRelease"][0]
    src = [o for o in objs if o["metadata"]["name"] == hr["spec"]["chart"]["spec"]["sourceRef"]["name"]][0]
    assert src["kind"] == "GitRepository"
    # The chart the source keeps, rendered as helm-controller does (release
    # name = the HelmRelease's, its namespace, its values).
    chart = os.path.join(ROOT, hr["spec"]["chart"]["spec"]["chart"])
    ns = hr["metadata"]["namespace"]
    path = chart_values_file(hr["spec"]["values"], "flux")
    rendered = render(hr["metadata"]["name"], chart, "-n", ns, "-f", path)
    os.unlink(path)
    out = dry_run(kube, rendered, ns)
    assert "deployment.apps/highlander" in out and "poddisruptionbudget.policy/highlander" in out, out
    dumped, dep = check_rendered_config(kube, rendered, ns)
    assert json.loads(dumped)["tenant"] == hr["spec"]["values"]["tenant"]
    assert dep["spec"]["replicas"] == hr["spec"]["values"]["replicas"]
    # The CRD source keeps exactly manifests/crds.yaml, which holds the CRDs.
    crd_src = [o for o in objs if o["metadata"]["name"] == "highlander-crds" and o["kind"] == "GitRepository"][0]
    assert crd_src["spec"]["ignore"].split() == ["/*", "!/manifests/crds.yaml"]
    kinds = {o["kind"] for o in as_json(kube, open(os.path.join(MANIFESTS, "crds.yaml")).read())}
    assert kinds == {"CustomResourceDefinition"}


def test_argocd_applications_and_what_they_sync(kube, gitops_crds, monitoring_crds):
    out = kube.kubectl("apply", "--dry-run=server", "-f", os.path.join(GITOPS, "argocd-application.yaml"))
    assert "application.argoproj.io/highlander-crds" in out and "application.argoproj.io/highlander" in out, out
    apps = {o["metadata"]["name"]: o for o in gitops_objects(kube, "argocd-application.yaml")}
    crds = apps["highlander-crds"]["spec"]["source"]
    assert crds["directory"]["include"] == "crds.yaml"
    out = kube.kubectl("apply", "--dry-run=server", "-f", os.path.join(ROOT, crds["path"], "crds.yaml"))
    assert "customresourcedefinition.apiextensions.k8s.io/workloadprocesses.highlander.plexobject.io" in out, out
    app = apps["highlander"]["spec"]
    ns = app["destination"]["namespace"]
    path = chart_values_file(app["source"]["helm"]["valuesObject"], "argo")
    rendered = render(app["source"]["helm"]["releaseName"], os.path.join(ROOT, app["source"]["path"]), "-n", ns,
                      "-f", path)
    os.unlink(path)
    out = dry_run(kube, rendered, ns)
    assert "deployment.apps/highlander" in out and "configmap/highlander-config" in out, out
    dumped, dep = check_rendered_config(kube, rendered, ns)
    assert json.loads(dumped)["tenant"] == app["source"]["helm"]["valuesObject"]["tenant"]
    assert dep["spec"]["replicas"] == app["source"]["helm"]["valuesObject"]["replicas"]
