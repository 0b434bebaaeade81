"""Fencing enforced by the API server (docs/lease.md), against the real
control plane: the policies of manifests/fencing.yaml bound to a tenant of
the test's own, the HighlanderFence in the controller's namespace (its
kubeconfig context's), real Redis as the lease store.

- a leader raises the fence to its token before writing, and its writes pass;
- a direct write with an older token, or lowering the fence, is refused
  with a message naming the policy;
- a leader paused (SIGSTOP) past its lease with a write in flight: its
  successor raises the fence, the held write reaches the API server and is
  refused (403 counted and shown in status), and nothing with the old token
  lands;
- an object carrying a newer token than the leader's makes it resign and
  lead again above that token; so does a fence that holds a newer token;
- a fence it may not read (RBAC): one clear error, no workload written;
  with fencing disabled the same rights run the workloads."""
import json
import os
import select
import signal
import socket
import threading
import time
import uuid

import subprocess

import pytest

from conftest import ROOT, wait_until
from lease_helpers import Cluster, RedisStore

pytestmark = pytest.mark.cluster

TOKEN = "k8-highlander.io/fencing-token"


def wait(pred, timeout=30, what="condition"):
    return wait_until(pred, timeout, what, interval=0.2, ignore=(AssertionError, KeyError, ValueError, IndexError,
                                                                 OSError))


def get(kube, ns, *what):
    return json.loads(kube.kubectl("-n", ns, "get", *what, "-o", "json"))


class HoldingProxy:
    """A TCP relay to the API server whose client-to-server direction can
    be held: bytes a paused leader already sent are kept back and delivered
    later, as a slow network or a stop right after a send would."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.holding = False
        self.held_bytes = 0
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopped:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            threading.Thread(target=self.relay, args=(c, s), daemon=True).start()

    def relay(self, c, s):
        pending = b""
        try:
            while not self.stopped:
                r, _, _ = select.select([c, s], [], [], 0.05)
                if c in r:
                    data = c.recv(65536)
                    if not data:
                        break
                    pending += data
                    with self.lock:
                        if self.holding:
                            self.held_bytes += len(data)
                if s in r:
                    data = s.recv(65536)
                    if not data:
                        break
                    c.sendall(data)
                if pending and not self.holding:
                    s.sendall(pending)
                    pending = b""
        except OSError:
            pass
        finally:
            c.close()
            s.close()

    def hold(self):
        with self.lock:
            self.holding = True
            self.held_bytes = 0

    def release(self):
        self.holding = False

    def stop(self):
        self.stopped = True
        self.lsock.close()


def kubeconfig_for(kube, tmp_path, ns, server=None, name="kubeconfig"):
    """The test cluster's kubeconfig with ns as the context namespace (the
    controller's namespace, where its fence lives), optionally through a
    different server address."""
    cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
    cfg["contexts"][0]["context"]["namespace"] = ns
    if server:
        cfg["clusters"][0]["cluster"]["server"] = server
    path = tmp_path / (name + ".json")
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture(scope="module")
def policies(kube):
    """manifests/fencing.yaml as shipped (its tenant binding is for tenant
    default in namespace highlander); each test binds its own tenant."""
    text = open(os.path.join(ROOT, "manifests", "fencing.yaml")).read()
    kube.kubectl("apply", "-f", "-", input=text.encode())
    yield text
    kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=text.encode(), check=False)


def bind(kube, text, tenant, ns):
    """manifests/fencing.yaml's tenant binding, made for tenant and ns."""
    docs = [d for d in text.split("\n---\n") if "name: highlander-fencing-default" in d]
    assert len(docs) == 1
    out = (docs[0].replace("highlander-fencing-default", "highlander-fencing-" + tenant)
           .replace("highlander-fence-default", "highlander-fence-" + tenant)
           .replace("namespace: highlander\n", "namespace: %s\n" % ns)
           .replace("highlander.plexobject.io/tenant: default", "highlander.plexobject.io/tenant: " + tenant))
    assert out.count(tenant) == 3 and ns in out
    kube.kubectl("apply", "-f", "-", input=out.encode())
    return out


def config_for(ns):
    return """
workloads:
  processes:
    - name: proc
      namespace: {ns}
      image: busybox
      script: {{commands: ["sleep 3600"]}}
  services:
    - name: web
      namespace: {ns}
      image: nginx
      replicas: 1
      script: {{commands: [nginx]}}
      ports: [{{name: http, containerPort: 80, servicePort: 8080}}]
""".format(ns=ns)


@pytest.fixture
def env(kube, policies, tmp_path, request):
    """A namespace, a tenant, its bindings, a Redis and a config file."""
    ns = kube.namespace("fence-" + request.node.name.replace("_", "-")[5:28].strip("-"))
    tenant = "f" + uuid.uuid4().hex[:8]
    bindings = bind(kube, policies, tenant, ns)
    store = RedisStore()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_for(ns))
    e = {"kube": kube, "ns": ns, "tenant": tenant, "store": store, "cfg": str(cfg), "tmp": tmp_path,
         "kubeconfig": kubeconfig_for(kube, tmp_path, ns)}
    yield e
    store.stop()
    kube.kubectl("delete", "-f", "-", "--ignore-not-found", input=bindings.encode(), check=False)


def cluster(e, factory, n, kubeconfig=None):
    return Cluster(factory, None, n=n, store=e["store"], tenant=e["tenant"],
                   extra_env={"HIGHLANDER_KUBECONFIG": kubeconfig or e["kubeconfig"], "HIGHLANDER_CONFIG": e["cfg"]})


def fence(e):
    return get(e["kube"], e["ns"], "highlanderfence", "highlander-fence-" + e["tenant"])


def fence_token(e):
    return fence(e)["spec"]["token"]


def make_fence(e, token):
    e["kube"].kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "highlander.plexobject.io/v1", "kind": "HighlanderFence",
        "metadata": {"name": "highlander-fence-" + e["tenant"], "namespace": e["ns"]},
        "spec": {"token": token}}).encode())


def workloads(c, ns):
    return {w["name"]: w for w in c.get_json("/api/workloads?view=list")[1]["data"] if w["namespace"] == ns}


def healthy(c, ns):
    ws = workloads(c, ns)
    return len(ws) == 2 and all(w["healthy"] for w in ws.values())


def status(c):
    return c.get_json("/status")[1]["data"]


def metric(c, name):
    for line in c.get("/metrics")[2].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def denied(kube, ns, *args):
    """Runs kubectl args until the API server refuses them (a new binding
    takes a moment to reach the admission plugin); returns the refusal."""
    deadline = time.time() + 15
    while True:
        try:
            out = kube.kubectl("-n", ns, *args)
        except AssertionError as err:
            if "forbidden" in str(err).lower():
                return str(err)
            raise
        if time.time() > deadline:
            raise AssertionError("kubectl %s was never refused (%s)" % (" ".join(args), out))
        time.sleep(0.5)


def test_leader_raises_fence_and_writes_pass_old_tokens_refused(env, controller_factory):
    kube, ns = env["kube"], env["ns"]
    cl = cluster(env, controller_factory, 1)
    leader = cl.wait_one_leader(timeout=15)
    wait(lambda: healthy(leader, ns), 60, "both workloads healthy")
    st = status(leader)
    token = st["fencingToken"]
    assert token > 10 ** 12  # at least the wall clock in ms
    assert fence_token(env) == token
    assert st["fence"]["state"] == "raised" and st["fence"]["object"] == "%s/highlander-fence-%s" % (ns, env["tenant"])
    assert st["fence"]["token"] == token
    assert fence(env)["metadata"]["labels"]["highlander.plexobject.io/tenant"] == env["tenant"]
    # The leader's writes all passed the policy.
    for kind, name in (("pod", "proc-pod"), ("deployment", "web"), ("service", "web")):
        assert get(kube, ns, kind, name)["metadata"]["annotations"][TOKEN] == str(token), (kind, name)
    assert st["fencingRejections"] == 0 and metric(leader, "k8_highlander_fencing_rejections_total") == 0
    # The log names refusals "HTTP 403"; a bare "403" also matches ports and tokens.
    assert "HTTP 403" not in leader.log() and "forbidden" not in leader.log().lower(), leader.log()[-3000:]

    # A direct write with an older token is refused, naming the policy.
    err = denied(kube, ns, "annotate", "pod", "proc-pod", "%s=%d" % (TOKEN, token - 1), "--overwrite")
    assert "ValidatingAdmissionPolicy 'highlander-fencing'" in err and str(token) in err, err
    err = denied(kube, ns, "annotate", "deployment", "web", "%s=1" % TOKEN, "--overwrite")
    assert "highlander-fencing" in err, err
    # Dropping the token is no way around it.
    err = denied(kube, ns, "annotate", "deployment", "web", TOKEN + "-")
    assert "highlander-fencing" in err, err
    # A write that keeps the current token passes.
    kube.kubectl("-n", ns, "label", "deployment", "web", "touched=yes")
    # The fence cannot be lowered.
    err = denied(kube, ns, "patch", "highlanderfence", "highlander-fence-" + env["tenant"], "--type=merge", "-p",
                 json.dumps({"spec": {"token": token - 1}}))
    # (Another install's copy of the policy, e.g. a chart's, may answer first: same message.)
    assert "ValidatingAdmissionPolicy '" in err and "highlander-fence-monotonic: " in err and str(token - 1) in err, err
    assert fence_token(env) == token
    assert get(kube, ns, "pod", "proc-pod")["metadata"]["annotations"][TOKEN] == str(token)
    assert get(kube, ns, "deployment", "web")["metadata"]["annotations"][TOKEN] == str(token)
    assert leader.terminate() == 0


def test_paused_leader_write_refused_after_successor_raises_fence(env, controller_factory, kube):
    """A leads through a relay that can hold its requests; B talks to the
    API server directly.  A's recreation of a deleted pod is held in the
    relay while A is stopped past its lease; B takes over, raises the
    fence and makes the pod; then A's held create reaches the API server."""
    ns = env["ns"]
    server = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))["clusters"][0]["cluster"]["server"]
    host, port = server.split("://")[1].rsplit(":", 1)
    proxy = HoldingProxy((host, int(port)))
    try:
        a_cfg = kubeconfig_for(kube, env["tmp"], ns, server="https://127.0.0.1:%d" % proxy.port, name="via-proxy")
        cl = cluster(env, controller_factory, 1, kubeconfig=a_cfg)
        a = cl.wait_one_leader(timeout=15)
        wait(lambda: healthy(a, ns), 60, "A's workloads healthy")
        ta = status(a)["fencingToken"]
        assert fence_token(env) == ta
        b = cl.add("b-" + env["tenant"], override={"HIGHLANDER_KUBECONFIG": env["kubeconfig"]})
        wait(lambda: b.get("/readyz")[0] == 200, 15, "B ready")

        proxy.hold()
        kube.kubectl("-n", ns, "delete", "pod", "proc-pod", "--grace-period=0", "--force", "--wait=false")
        wait(lambda: proxy.held_bytes > 0 and "proc-pod" not in kube.kubectl("-n", ns, "get", "pods", "-o", "name"),
             15, "A's create held in the relay")
        time.sleep(0.5)
        a.proc.send_signal(signal.SIGSTOP)
        try:
            wait(lambda: status(b)["isLeader"], 15, "B leading")
            tb = status(b)["fencingToken"]
            assert tb > ta
            wait(lambda: fence_token(env) == tb, 15, "B raised the fence")
            wait(lambda: get(kube, ns, "pod", "proc-pod")["metadata"]["annotations"][TOKEN] == str(tb), 30,
                 "B made the pod")
            proxy.release()
            time.sleep(1.0)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        wait(lambda: status(a)["fencingRejections"] >= 1, 15, "A's refused write counted")
        st = status(a)
        assert st["isLeader"] is False
        assert metric(a, "k8_highlander_fencing_rejections_total") >= 1
        assert "fencing policy refused" in a.log() and "highlander-fencing" in a.log(), a.log()[-3000:]
        assert "highlander-fencing" in (workloads(a, ns)["proc"]["lastError"] or ""), workloads(a, ns)["proc"]
        # Nothing with A's token landed after the fence went up: the pod is
        # B's, and B's writes all passed.
        time.sleep(1.0)
        pod = get(kube, ns, "pod", "proc-pod")
        assert pod["metadata"]["annotations"][TOKEN] == str(tb)
        assert pod["metadata"]["annotations"]["k8-highlander.io/leader-id"] == b.rid
        assert fence_token(env) == tb
        for kind, name in (("deployment", "web"), ("service", "web")):
            assert int(get(kube, ns, kind, name)["metadata"]["annotations"][TOKEN]) in (ta, tb)
        wait(lambda: healthy(b, ns), 30, "B's workloads healthy")
        assert status(b)["fencingRejections"] == 0
        assert "highlander-fencing" not in b.log(), b.log()[-3000:]
    finally:
        proxy.stop()


def test_newer_token_on_an_object_makes_the_leader_resign_and_lead_above_it(env, controller_factory):
    kube, ns = env["kube"], env["ns"]
    cl = cluster(env, controller_factory, 1)
    leader = cl.wait_one_leader(timeout=15)
    wait(lambda: healthy(leader, ns), 60, "both workloads healthy")
    t1 = status(leader)["fencingToken"]
    newer = t1 + 10 ** 7  # a few hours ahead of the wall clock
    kube.kubectl("-n", ns, "annotate", "deployment", "web", "%s=%d" % (TOKEN, newer), "--overwrite")
    wait(lambda: status(leader)["isLeader"] and status(leader)["fencingToken"] > newer, 20,
         "leading again above the newer token")
    t2 = status(leader)["fencingToken"]
    assert "carries fencing token %d, newer than ours (%d)" % (newer, t1) in leader.log(), leader.log()[-3000:]
    wait(lambda: fence_token(env) == t2, 10, "the fence raised to the new token")
    wait(lambda: healthy(leader, ns), 30, "healthy again")
    # Its spec matches, so it is adopted as it is; the pod is untouched too.
    assert int(get(kube, ns, "deployment", "web")["metadata"]["annotations"][TOKEN]) in (newer, t2)
    assert get(kube, ns, "pod", "proc-pod")["metadata"]["annotations"][TOKEN] == str(t1)
    assert status(leader)["fencingRejections"] == 0
    assert leader.terminate() == 0


def test_fence_newer_than_ours_makes_the_new_leader_resign(env, controller_factory):
    """The fence already holds a token above anything the store would hand
    out (a store that forgot): the leader notes it, resigns, and its next
    acquisition starts above it; no workload is written before that."""
    kube, ns = env["kube"], env["ns"]
    ahead = int(time.time() * 1000) + 10 ** 7
    make_fence(env, ahead)
    cl = cluster(env, controller_factory, 1)
    c = cl.replicas[0]
    wait(lambda: status(c)["isLeader"] and status(c)["fencingToken"] > ahead and
         status(c)["fence"]["state"] == "raised", 20, "leading above the fence")
    assert "holds token %d >= ours" % ahead in c.log(), c.log()[-3000:]
    assert fence_token(env) == status(c)["fencingToken"]
    wait(lambda: healthy(c, ns), 60, "workloads healthy")
    assert status(c)["fencingRejections"] == 0
    assert c.terminate() == 0


def sa_kubeconfig(kube, tmp_path, ns, sa):
    """A kubeconfig with nothing but the token of service account ns/sa."""
    cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
    cluster = cfg["clusters"][0]["cluster"]
    token = kube.kubectl("-n", ns, "create", "token", sa, "--duration=1h").strip()
    path = tmp_path / ("%s.kubeconfig.json" % sa)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": cluster["server"],
                                               "certificate-authority": cluster["certificate-authority"]}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "u", "namespace": ns}}]}))
    return str(path)


def test_fence_it_may_not_read_blocks_writes(env, controller_factory, kube):
    """A service account with the ClusterRole of manifests/rbac.yaml but not
    its fence Role (that one is for namespace highlander): the fence cannot
    be read, which is said once, naming the object; no workload is written
    while it retries.  With fencing disabled the same account runs them."""
    ns, tenant = env["ns"], env["tenant"]
    kube.kubectl("apply", "-f", os.path.join(ROOT, "manifests", "namespace.yaml"), "-f",
                 os.path.join(ROOT, "manifests", "rbac.yaml"))
    kube.kubectl("-n", ns, "create", "serviceaccount", "nofence")
    kube.kubectl("create", "clusterrolebinding", "nofence-" + tenant, "--clusterrole=highlander",
                 "--serviceaccount=%s:nofence" % ns)
    try:
        kc = sa_kubeconfig(kube, env["tmp"], ns, "nofence")
        cl = cluster(env, controller_factory, 1, kubeconfig=kc)
        c = cl.replicas[0]
        wait(lambda: status(c)["isLeader"] and status(c)["fence"]["state"] == "error", 20, "fence error")
        time.sleep(3.0)  # several retries
        log = c.log()
        assert log.count("cannot raise the fence") == 1, log[-3000:]
        line = [ln for ln in log.splitlines() if "cannot raise the fence" in ln][0]
        assert "HighlanderFence %s/highlander-fence-%s" % (ns, tenant) in line and "HTTP 403" in line, line
        assert "403" in status(c)["fence"]["lastError"]
        assert status(c)["isLeader"] is True
        assert kube.kubectl("-n", ns, "get", "pods,deployments,services", "-o", "name").strip() == ""
        assert c.terminate() == 0
        off = cl.add("off-" + tenant, override={"HIGHLANDER_FENCING": "false"})
        wait(lambda: healthy(off, ns), 60, "workloads healthy without fencing")
        assert status(off)["fence"] is None
        assert "fencing is disabled" in off.log()
        assert "forbidden" not in off.log().lower(), off.log()[-3000:]
    finally:
        kube.kubectl("delete", "clusterrolebinding", "nofence-" + tenant, check=False)


def test_chart_policies_match_the_manifests(kube):
    """The chart renders the policies of manifests/fencing.yaml (their specs
    equal), a binding for its tenant and release namespace, and the fence
    Role limited to that tenant's fence; fencing.enabled=false renders none."""
    helm = subprocess.run(["bash", os.path.join(ROOT, "test/cluster/build-helm.sh")], capture_output=True,
                          check=True).stdout.decode().strip()
    chart = os.path.join(ROOT, "helm", "highlander")

    def as_objs(text):
        out = kube.kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", input=text.encode()).rstrip()
        dec, objs, i = json.JSONDecoder(), [], 0
        while i < len(out):
            doc, i = dec.raw_decode(out, i)
            objs += doc["items"] if doc.get("kind") == "List" else [doc]
            while i < len(out) and out[i].isspace():
                i += 1
        return objs

    def render(*args):
        return as_objs(subprocess.run([helm, "template", "hl", chart, "-n", "team-a", "--set", "tenant=a"] + list(args),
                                      check=True, capture_output=True).stdout.decode())

    def policies(objs):
        return {o["metadata"]["name"].split("-", 1)[1]: o["spec"] for o in objs
                if o["kind"] == "ValidatingAdmissionPolicy"}

    rendered = render()
    shipped = as_objs(open(os.path.join(ROOT, "manifests", "fencing.yaml")).read())
    assert set(policies(rendered)) == {"fencing", "fence-monotonic"}
    assert policies(rendered) == policies(shipped)
    binding = [o for o in rendered if o["kind"] == "ValidatingAdmissionPolicyBinding" and "paramRef" in o["spec"]][0]
    assert binding["spec"]["paramRef"] == {"name": "highlander-fence-a", "namespace": "team-a",
                                           "parameterNotFoundAction": "Allow"}
    assert binding["spec"]["matchResources"]["objectSelector"]["matchLabels"] == {
        "managed-by": "k8-highlander", "highlander.plexobject.io/tenant": "a"}
    role = [o for o in rendered if o["kind"] == "Role"][0]
    assert role["metadata"]["namespace"] == "team-a"
    assert role["rules"][1]["resourceNames"] == ["highlander-fence-a"] and role["rules"][1]["verbs"] == ["get", "update"]
    cm = [o for o in rendered if o["kind"] == "ConfigMap"][0]
    assert "fencing:\n  enabled: true" in cm["data"]["config.yaml"]
    off = render("--set", "fencing.enabled=false")
    assert not [o for o in off if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                                                "Role")]
    assert "fencing:\n  enabled: false" in [o for o in off if o["kind"] == "ConfigMap"][0]["data"]["config.yaml"]
