"""The RBAC in manifests/ and in the Helm chart is enough for what the code
does: a controller running with only the service account's token (from
manifests/rbac.yaml, then from the rendered chart) leads through a
Kubernetes Lease and raises its tenant's fence in its namespace."""
import os
import subprocess

import pytest

from conftest import ROOT, wait_until

pytestmark = pytest.mark.cluster


def token_kubeconfig(kube, tmp_path, sa, ns):
    import json
    cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
    cluster = cfg["clusters"][0]["cluster"]
    token = kube.kubectl("-n", ns, "create", "token", sa, "--duration=1h").strip()
    path = tmp_path / ("%s.kubeconfig" % sa)
    ca = cluster.get("certificate-authority")
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: c\n  cluster:\n"
                    "    server: %s\n    certificate-authority: %s\nusers:\n- name: u\n  user:\n    token: %s\n"
                    "contexts:\n- name: sa\n  context: {cluster: c, user: u, namespace: %s}\n"
                    % (cluster["server"], ca, token, ns))
    return str(path)


def lead_with(controller_factory, kubeconfig, ns):
    c = controller_factory(env={"HIGHLANDER_STORAGE_TYPE": "lease", "HIGHLANDER_KUBECONFIG": kubeconfig,
                                "HIGHLANDER_NAMESPACE": ns, "HIGHLANDER_ID": "rbac-test",
                                "HIGHLANDER_TENANT": "rbac-" + os.path.basename(kubeconfig).split(".")[0]})
    wait_until(lambda: c.get_json("/status")[1]["data"]["isLeader"], 15, lambda: c.log()[-3000:])
    wait_until(lambda: (c.get_json("/status")[1]["data"]["fence"] or {}).get("state") == "raised", 10,
               lambda: c.log()[-3000:])
    st = c.get_json("/status")[1]["data"]
    assert st["fence"]["token"] == st["fencingToken"], st
    assert "forbidden" not in c.log().lower(), c.log()[-3000:]
    assert c.terminate() == 0
    assert "released the lease" in c.log()


def test_manifest_rbac_allows_the_lease_store(kube, controller_factory, tmp_path):
    kube.kubectl("apply", "-f", os.path.join(ROOT, "manifests/namespace.yaml"))
    kube.kubectl("apply", "-f", os.path.join(ROOT, "manifests/rbac.yaml"))
    lead_with(controller_factory, token_kubeconfig(kube, tmp_path, "highlander", "highlander"), "highlander")


def test_chart_rbac_allows_the_lease_store(kube, controller_factory, tmp_path):
    helm = subprocess.run(["bash", os.path.join(ROOT, "test/cluster/build-helm.sh")], capture_output=True,
                          check=True).stdout.decode().strip()
    subprocess.run([helm, "lint", os.path.join(ROOT, "helm/highlander")], check=True, capture_output=True)
    kube.kubectl("create", "namespace", "hl-chart", check=False)
    # Rendered for the tenant it runs: the chart's fence Role names that tenant's fence.
    rendered = subprocess.run([helm, "template", "hlchart", os.path.join(ROOT, "helm/highlander"), "-n", "hl-chart",
                               "--set", "tenant=rbac-hlchart"],
                              check=True, capture_output=True).stdout
    kube.kubectl("apply", "-f", "-", input=rendered)
    lead_with(controller_factory, token_kubeconfig(kube, tmp_path, "hlchart", "hl-chart"), "hl-chart")


def test_without_rbac_the_lease_store_is_refused(kube, controller_factory, tmp_path):
    kube.kubectl("create", "namespace", "hl-norbac", check=False)
    kube.kubectl("-n", "hl-norbac", "create", "serviceaccount", "nobody", check=False)
    kc = token_kubeconfig(kube, tmp_path, "nobody", "hl-norbac")
    c = controller_factory(env={"HIGHLANDER_STORAGE_TYPE": "lease", "HIGHLANDER_KUBECONFIG": kc,
                                "HIGHLANDER_NAMESPACE": "hl-norbac", "HIGHLANDER_ID": "x"})
    # The refusal itself: the API server's 403 reaches the store status and
    # the log (a controller merely still starting shows neither).
    db = wait_until(lambda: (lambda d: d if "forbidden" in (d["lastError"] or "").lower() else None)(
        c.get_json("/api/dbinfo")[1]["data"]), 10, lambda: c.log()[-3000:])
    assert db["failures"] >= 1, db
    assert "forbidden" in c.log().lower()
    assert c.get_json("/status")[1]["data"]["isLeader"] is False
    assert c.get("/readyz")[0] == 503
