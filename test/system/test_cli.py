"""Command line: --version, --help, --check-config and bad configuration."""
import json
import os
import subprocess
import tempfile

from conftest import BIN


def run(args, env=None, config=None):
    tmp = tempfile.mkdtemp(prefix="hl-cli-")
    e = {k: v for k, v in os.environ.items() if not k.startswith("HIGHLANDER_")}
    e["HOME"] = tmp
    e.update(env or {})
    cmd = [BIN]
    if config is not None:
        path = os.path.join(tmp, "c.yaml")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
    p = subprocess.run(cmd + list(args), env=e, cwd=tmp, capture_output=True, timeout=10)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_version_and_help_need_nothing():
    rc, out, err = run(["--version"], env={"HIGHLANDER_PORT": "not-a-port"})
    assert rc == 0 and out.startswith("highlander ")
    rc, out, err = run(["--help"], env={"HIGHLANDER_STORAGE_TYPE": "nope"})
    assert rc == 0 and "--check-config" in out and "--redis-addr" in out


def test_check_config_masks_secrets():
    rc, out, err = run(["--check-config", "--redis-password", "pw-flag-123"],
                       env={"HIGHLANDER_DATABASE_URL": "postgres://u:dbsecret@h/d",
                            "HIGHLANDER_API_TOKEN": "tok-456"},
                       config="redis:\n  addr: redis://:pw-file@r:1/2\n")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["redis"]["password"] == "****"
    assert doc["redis"]["addr"] == "r:1"
    assert doc["redis"]["db"] == 2
    assert doc["databaseURL"] == "user=u password=**** dbname=d host=h"
    for secret in ("pw-flag-123", "pw-file", "dbsecret", "tok-456"):
        assert secret not in out and secret not in err


BAD = """
port: 70000
storageType: redis
workloads:
  processes:
    - name: ok-one
      image: busybox
      script: {commands: [sleep 1]}
    - name: missing-image
      script: {commands: [sleep 1]}
  cronJobs:
    - name: cron
      image: busybox
      script: {commands: [date]}
      schedule: "every minute"
  services:
    - name: svc
      image: nginx
      script: {commands: [nginx]}
      replicas: 0
      ports: [{containerPort: 70000}]
  persistentSets:
    - name: db
      image: pg
      script: {commands: [pg]}
      persistentVolumes: [{name: data, mountPath: /data}]
"""


def test_bad_config_names_every_field():
    rc, out, err = run(["--check-config"], config=BAD)
    assert rc == 2
    for needle in ("port: 70000 is out of range 0-65535",
                   "workloads.processes[1].image: image is required",
                   "workloads.cronJobs[0].schedule: \"every minute\" is not a cron schedule",
                   "workloads.services[0].replicas: replicas must be at least 1",
                   "workloads.services[0].ports[0].containerPort: 70000 is not a port",
                   "workloads.persistentSets[0].persistentVolumes[0].size: size is required"):
        assert needle in err, err
    assert "6 problems" in err
    # Running (not just checking) fails the same way.
    rc, out, err2 = run([], config=BAD)
    assert rc == 2 and "image is required" in err2


def test_unknown_key_and_bad_yaml():
    # Ignored with a warning naming the key and its line, as Go ignores it;
    # --strict-config refuses it.
    rc, out, err = run(["--check-config"], config="tenant: t\ntennant: x\n")
    assert rc == 0, err
    assert "warning: tennant: unknown key, ignored (" in err and "line 2)" in err
    assert '"tenant": "t"' in out or '"tenant":"t"' in out
    rc, out, err = run(["--check-config", "--strict-config"], config="tennant: x\n")
    assert rc == 2 and "tennant: unknown key" in err
    rc, out, err = run([], config="port: [1,\n")
    assert rc == 2
    rc, out, err = run(["--config", "/no/such/file.yaml"])
    assert rc == 2 and "/no/such/file.yaml: cannot open config file" in err


def test_bad_env_and_flags():
    rc, out, err = run(["--nope"], env={"HIGHLANDER_PORT": "eighty"})
    assert rc == 2
    assert "--nope: unknown flag" in err
    assert "HIGHLANDER_PORT: \"eighty\" is not an integer" in err


KUBECONFIG_TWO = """apiVersion: v1
kind: Config
current-context: east
clusters:
- {name: east, cluster: {server: "https://127.0.0.1:1"}}
- {name: west, cluster: {server: "https://127.0.0.1:2"}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: east, context: {cluster: east, user: u}}
- {name: west, context: {cluster: west, user: u}}
"""


def test_cluster_name_not_in_a_multi_cluster_kubeconfig_is_fatal(tmp_path):
    """Go fails fast; using the current context instead could manage
    another cluster than the one configured."""
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG_TWO)
    rc, out, err = run(["--check-config"], env={"HIGHLANDER_KUBECONFIG": str(kc), "HIGHLANDER_CLUSTER_NAME": "north"})
    assert rc == 2, err
    assert 'cluster.name "north" is no context and no cluster of its 2 contexts: refusing to guess' in err
    rc, out, err = run([], env={"HIGHLANDER_KUBECONFIG": str(kc), "HIGHLANDER_CLUSTER_NAME": "north"})
    assert rc == 2 and "refusing to guess" in err
    # Naming one of them is fine.
    rc, out, err = run(["--check-config"], env={"HIGHLANDER_KUBECONFIG": str(kc), "HIGHLANDER_CLUSTER_NAME": "west"})
    assert rc == 0, err
