"""The container image, built and run (docs/deployment.md, "The image").

`make image` (scripts/image.sh) builds the Dockerfile with podman, Debian's
daemonless engine, the base image made by debootstrap when no registry can
serve it; the store lives in ~/.cache/highlander/image.  The image is then
run, not just inspected, with the rendered chart's pod settings: user and
group 65532, a read-only root file system, every capability dropped, no
new privileges, the config map (owned by root, with the chart's
defaultMode) and the service-account token mounted at their paths.

Host networking: the local control plane and the test Redis listen on the
host's loopback only, which a container on its own network cannot reach.

Skips only when this machine cannot run a container at all (podman absent,
or a trivial container -- /usr/bin/true on a root file system of its own --
refused by podman or runc), with podman's own words; everything after that
probe fails instead of skipping."""
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time

import pytest

from conftest import ASAN, ROOT, free_port, wait_until
from lease_helpers import RedisServer
from test_deployment import CHART, as_json, monitoring_crds, pod_env, render  # noqa: F401 (a fixture)

IMAGE_SH = os.path.join(ROOT, "scripts", "image.sh")
ROOTFS_SH = os.path.join(ROOT, "scripts", "image-rootfs.sh")
VERSION = re.search(r"^VERSION := (\S+)", open(os.path.join(ROOT, "Makefile")).read(), re.M).group(1)
IMAGE = "localhost/highlander:" + VERSION
BIN_IN_IMAGE = "/usr/local/bin/highlander"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

pytestmark = pytest.mark.skipif(ASAN, reason="the image is built from the sources by podman, not from the "
                                "sanitizer build; test-system runs these tests once")


def podman_env():
    out = subprocess.run(["bash", IMAGE_SH, "env"], capture_output=True, check=True).stdout.decode()
    env = dict(os.environ)
    for kv in out.split("export ", 1)[1].split():
        k, v = kv.split("=", 1)
        env[k] = v
    return env


class Podman:
    def __init__(self):
        self.exe = shutil.which("podman")
        self.env = podman_env()

    def run(self, *args, check=True, timeout=120, input=None):
        p = subprocess.run([self.exe] + list(args), env=self.env, capture_output=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError("podman %s (exit %d): %s" % (" ".join(args), p.returncode, p.stderr.decode()))
        return p


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (make deps installs podman, runc and debootstrap)")
    pm = Podman()
    # The probe: a container of /usr/bin/true and its libraries, run with
    # the chart's restrictions.  Needs no image, no registry, no network.
    root = str(tmp_path_factory.mktemp("probe-rootfs"))
    subprocess.run(["sh", ROOTFS_SH, "/usr/bin/true", root], check=True)
    os.chmod(root, 0o755)  # the container's / (mkdtemp makes it 0700, closed to 65532)
    p = pm.run("run", "--rm", "--network", "host", "--user", "65532:65532", "--read-only", "--cap-drop", "all",
               "--security-opt", "no-new-privileges", "--rootfs", root, "/usr/bin/true", check=False)
    if p.returncode != 0:
        pytest.skip("podman cannot run a container on this machine: " + p.stderr.decode().strip())
    return pm


@pytest.fixture(scope="module")
def image(podman):
    """`make image`'s script, as make runs it (cold: makes the base image;
    warm: cached layers).  The revision is pinned here, so that a commit
    landing during the build cannot make the check below race."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode().strip()
    t0 = time.time()
    p = subprocess.run(["bash", IMAGE_SH, "build"], env=dict(os.environ, GIT_REV=rev), capture_output=True,
                       timeout=1800)
    assert p.returncode == 0, p.stderr.decode()[-4000:]
    print("image build: %.1f s" % (time.time() - t0))
    out = p.stdout.decode()
    m = re.search(r"^image (\S+)\nid +(\w+)\nsize +(\d+) bytes \(([\d.]+) MB\)$", out, re.M)
    assert m, out
    return {"name": m.group(1), "id": m.group(2), "size": int(m.group(3)), "rev": rev, "out": out}


def test_make_image_prints_name_id_and_size(podman, image):
    assert image["name"] == IMAGE
    info = json.loads(podman.run("image", "inspect", IMAGE).stdout)[0]
    assert info["Id"].startswith(image["id"]) and info["Size"] == image["size"], (info["Id"], info["Size"], image)
    assert info["Config"]["User"] == "65532:65532"
    assert info["Config"]["Entrypoint"] == [BIN_IN_IMAGE]
    assert info["Config"]["Cmd"] == ["--config", "/etc/k8-highlander/config.yaml"]
    assert info["Labels"]["org.opencontainers.image.revision"] == image["rev"]
    # The Makefile target is this script.
    make = subprocess.run(["make", "-n", "-C", ROOT, "image"], capture_output=True).stdout.decode()
    assert "scripts/image.sh build" in make, make


def test_version_in_the_image_names_the_git_revision(podman, image):
    p = podman.run("run", "--rm", "--network", "none", IMAGE, "--version")
    assert p.stdout.decode().strip() == "highlander %s (%s)" % (VERSION, image["rev"]), p.stdout


def elf_info(path):
    """(interpreter or None, [NEEDED]) of an ELF file, or None if it is not one."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return None
    dyn = subprocess.run(["readelf", "-d", "-l", "-W", path], capture_output=True).stdout.decode()
    interp = re.search(r"Requesting program interpreter: (\S+)\]", dyn)
    return (interp.group(1) if interp else None), re.findall(r"\(NEEDED\).*\[(.+)\]", dyn)


def test_image_holds_only_what_the_binary_needs(podman, image, tmp_path):
    """From the image's own file system: the binary, the loader, the NEEDED
    closure (each resolved in the image, as the loader would), CA
    certificates and the user database; no shell, compiler or package
    manager, and no other program or library."""
    cid = podman.run("create", IMAGE).stdout.decode().strip()
    try:
        tar = tmp_path / "fs.tar"
        podman.run("export", "-o", str(tar), cid)
    finally:
        podman.run("rm", "-f", cid, check=False)
    fs = tmp_path / "fs"
    fs.mkdir()
    with tarfile.open(tar) as t:
        names = t.getnames()
        t.extractall(fs)
    files = {"/" + n.lstrip("./") for n in names}

    def resolve(path):  # inside the image (its symlinks, never the host's)
        parts, done = [x for x in path.split("/") if x], []
        for _ in range(200):
            if not parts:
                return "/" + "/".join(done)
            part = parts.pop(0)
            if part == "..":
                done = done[:-1]
                continue
            cand = os.path.join(str(fs), *(done + [part]))
            if os.path.islink(cand):
                target = os.readlink(cand)
                if target.startswith("/"):
                    done = []
                parts = [x for x in target.split("/") if x] + parts
            elif part != ".":
                done.append(part)
        raise AssertionError("symlink loop at " + path)

    def host_path(path):
        return os.path.join(str(fs), resolve(path).lstrip("/"))

    interp, needed = elf_info(host_path(BIN_IN_IMAGE))
    assert interp and os.path.isfile(host_path(interp)), ("no loader in the image", interp)
    search = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    multiarch = os.path.basename(os.path.dirname(os.path.realpath(host_path(interp))))
    if multiarch not in ("lib64", "lib"):
        search = ["/lib/" + multiarch, "/usr/lib/" + multiarch] + search
    reached, todo = {resolve(BIN_IN_IMAGE), resolve(interp)}, list(needed)
    seen = set()
    while todo:
        lib = todo.pop()
        if lib in seen:
            continue
        seen.add(lib)
        found = [d + "/" + lib for d in search if os.path.isfile(host_path(d + "/" + lib))]
        assert found, "%s (NEEDED) is not in the image" % lib
        reached.add(resolve(found[0]))
        todo += elf_info(host_path(found[0]))[1]
    assert {"libc.so.6", "libuv.so.1", "libhiredis.so.0.14", "libcurl.so.4", "libpq.so.5"} <= seen, seen
    elves, others = set(), set()
    for f in files:
        hp = os.path.join(str(fs), f.lstrip("/"))
        if os.path.islink(hp) or not os.path.isfile(hp):
            continue
        (elves if elf_info(hp) is not None else others).add(f)
    assert elves == reached, ("programs or libraries the binary does not load", sorted(elves - reached))
    assert others == {"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/ssl/certs/ca-certificates.crt"}, \
        sorted(others)
    basenames = {os.path.basename(f) for f in files}
    for tool in ("sh", "bash", "dash", "ash", "busybox", "cc", "gcc", "cpp", "ld", "as", "make", "apt", "dpkg",
                 "perl", "python3"):
        assert tool not in basenames, tool
    assert not [f for f in files if re.search(r"/(gcc|clang|cc1)[^/]*$", f)]
    p = podman.run("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", IMAGE, "-c", "true", check=False)
    assert p.returncode != 0 and "/bin/sh" in p.stderr.decode(), p.stderr
    users = open(host_path("/etc/passwd")).read()
    assert re.search(r"^highlander:x:65532:65532:", users, re.M), users


# ---- run as the chart's pod ---------------------------------------------------

class Pod:
    """The rendered chart's Deployment as a container: the kubelet's part
    (volumes, env, security context) played with podman's flags."""

    def __init__(self, podman, kube, objs, tmp_path, pod_name, args=None, service_account=True,
                 external_secrets=False):
        dep = [o for o in objs if o["kind"] == "Deployment"][0]
        cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
        secrets = {o["metadata"]["name"]: o.get("stringData", {}) for o in objs if o["kind"] == "Secret"}
        self.podman, self.name, self.ns = podman, pod_name, dep["metadata"]["namespace"]
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert c["image"].rsplit(":", 1)[1] == VERSION, c["image"]  # the chart's tag is the image built here
        self.http_port = [p["containerPort"] for p in c["ports"] if p["name"] == "http"][0]
        sc = dict(spec.get("securityContext", {}))
        csc = c.get("securityContext", {})
        flags = ["--name", pod_name, "--hostname", pod_name, "--network", "host",
                 "--user", "%d:%d" % (sc["runAsUser"], sc.get("runAsGroup", sc["runAsUser"]))]
        assert sc.get("runAsNonRoot") is True and sc["runAsUser"] == 65532, sc
        if csc.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        for cap in csc.get("capabilities", {}).get("drop", []):
            flags += ["--cap-drop", cap.lower()]
        if csc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"  # podman's default profile
        # Volumes as the kubelet writes them: files owned by root with the
        # volume's defaultMode (Kubernetes' default 0644 when unset).
        for vm in c.get("volumeMounts", []):
            vol = [v for v in spec["volumes"] if v["name"] == vm["name"]][0]
            d = tmp_path / ("vol-" + vm["name"])
            d.mkdir()
            for key, value in cms[vol["configMap"]["name"]]["data"].items():
                (d / key).write_text(value)
                os.chown(d / key, 0, 0)
                os.chmod(d / key, vol["configMap"].get("defaultMode", 0o644))
            os.chmod(d, 0o755)
            flags += ["-v", "%s:%s:%s" % (d, vm["mountPath"], "ro" if vm.get("readOnly") else "rw")]
        env = pod_env(c, secrets, pod_name, self.ns, external_secrets=external_secrets)
        if service_account:
            sa = tmp_path / "serviceaccount"
            sa.mkdir()
            cfg = json.loads(kube.kubectl("config", "view", "--raw", "-o", "json"))
            server = cfg["clusters"][0]["cluster"]["server"]
            shutil.copy(cfg["clusters"][0]["cluster"]["certificate-authority"], sa / "ca.crt")
            (sa / "token").write_text(kube.kubectl("-n", self.ns, "create", "token", spec["serviceAccountName"],
                                                   "--duration=1h").strip())
            (sa / "namespace").write_text(self.ns)
            for f in sa.iterdir():
                os.chmod(f, 0o644)
            os.chmod(sa, 0o755)
            flags += ["-v", "%s:%s:ro" % (sa, SA_DIR)]
            host, port = server.split("://")[1].rsplit(":", 1)
            env.update({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port})
        for k, v in env.items():
            flags += ["-e", "%s=%s" % (k, v)]
        self.flags = flags
        self.args = c.get("args", []) if args is None else args

    def run_once(self, *extra):
        """The container run to completion: (exit code, output)."""
        p = self.podman.run("run", "--rm", *self.flags, IMAGE, *self.args, *extra, check=False, timeout=60)
        return p.returncode, p.stdout.decode() + p.stderr.decode()

    def start(self):
        self.podman.run("rm", "-f", self.name, check=False)
        self.podman.run("run", "-d", *self.flags, IMAGE, *self.args)
        self.pid = wait_until(lambda: int(self.inspect("{{.State.Pid}}") or 0), 20, "container pid")

    def inspect(self, fmt):
        return self.podman.run("inspect", "--format", fmt, self.name, check=False).stdout.decode().strip()

    def log(self):
        p = self.podman.run("logs", self.name, check=False)
        return p.stdout.decode() + p.stderr.decode()

    def request(self, path, headers=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stop(self):
        """SIGTERM (podman stop, as the kubelet does), then the exit code."""
        self.podman.run("stop", "-t", "40", self.name, timeout=60)
        return int(self.inspect("{{.State.ExitCode}}"))

    def remove(self):
        self.podman.run("rm", "-f", self.name, check=False)


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_check_config_of_the_rendered_chart_in_the_image(podman, image, kube, monitoring_crds, tmp_path):
    objs = as_json(kube, render("hl", CHART, "-n", "hl-image", "-f",
                                os.path.join(CHART, "examples/ha-values.yaml")))
    pod = Pod(podman, kube, objs, tmp_path, "hl-image-check", service_account=False, external_secrets=True)
    rc, out = pod.run_once("--check-config")
    assert rc == 0, out
    assert "CHANGE-ME" not in out
    # The chart's mode is what makes it readable by 65532: the same file
    # owned by root, 0600 (a Secret-like mode), is refused.
    cfg = tmp_path / "vol-config" / "config.yaml"
    assert os.stat(cfg).st_mode & stat.S_IROTH, oct(os.stat(cfg).st_mode)
    os.chmod(cfg, 0o600)
    rc, out = pod.run_once("--check-config")
    assert rc != 0 and "config.yaml" in out, out


def test_image_runs_a_leader_as_the_chart_says(podman, image, kube, tmp_path):
    redis = RedisServer()
    ns = "hl-image-run"
    kube.kubectl("create", "namespace", ns, check=False)
    rendered = render("hl", CHART, "-n", ns, "--set", "redis.addr=127.0.0.1:%d" % redis.port,
                      "--set", "port=%d" % free_port(), "--set", "tenant=image-run", "--set", "namespace=" + ns,
                      "--set", "redis.password=", "--set", "apiToken=s3cret",
                      # Short leases: a replica new to an empty store waits one lease.
                      "--set", "leaderElection.leaseDuration=2s", "--set", "leaderElection.renewDeadline=1200ms",
                      "--set", "leaderElection.retryPeriod=400ms")
    kube.kubectl("apply", "-n", ns, "-f", "-", input=rendered.encode())  # service account, RBAC, fence...
    objs = as_json(kube, rendered)
    pod = Pod(podman, kube, objs, tmp_path, "pod-image-run")
    auth = {"Authorization": "Bearer s3cret"}
    try:
        pod.start()
        st = proc_status(pod.pid)
        assert st["Uid"].split() == ["65532"] * 4 and st["Gid"].split() == ["65532"] * 4, st["Uid"]
        assert set(st["Groups"].split()) <= {"65532"}, st["Groups"]  # no group but its own (as the CRI does)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, (cap, st[cap])
        assert st["NoNewPrivs"].strip() == "1"
        assert st["Seccomp"].strip() == "2"  # a filter (podman's default profile)
        with open("/proc/%d/mounts" % pod.pid) as f:
            mounts = {line.split()[1]: line.split()[3].split(",") for line in f}
        for path in ("/", "/etc/k8-highlander", SA_DIR):
            assert "ro" in mounts[path], (path, mounts.get(path))
        def up():
            try:
                return pod.request("/healthz")[0] == 200
            except OSError:
                assert pod.inspect("{{.State.Running}}") == "true", pod.log()[-3000:]
                return False
        wait_until(up, 20, lambda: pod.log()[-3000:])
        wait_until(lambda: json.loads(pod.request("/status")[1])["data"]["isLeader"], 35,
                   lambda: pod.log()[-3000:])
        st = json.loads(pod.request("/status")[1])["data"]
        assert st["leaderID"] == "pod-image-run", st
        # The service account's rights, in-cluster: a resource becomes a pod.
        kube.kubectl("apply", "-f", "-", input=("""
apiVersion: highlander.plexobject.io/v1
kind: WorkloadProcess
metadata: {name: image-run, namespace: %s}
spec: {image: busybox, script: {commands: ["sleep 3600"]}}
""" % ns).encode())

        def healthy():
            ws = json.loads(pod.request("/api/workloads?view=list", auth)[1])["data"]
            return [w for w in ws if w["name"] == "image-run" and w["healthy"]]
        wait_until(healthy, 60, lambda: pod.log()[-3000:])
        assert pod.request("/api/workloads")[0] == 401  # the token came from the chart's Secret
        assert "forbidden" not in pod.log().lower(), pod.log()[-3000:]
        assert pod.stop() == 0, pod.log()[-4000:]
        assert "released the lease" in pod.log()
    finally:
        pod.remove()
        redis.stop()
        kube.kubectl("-n", ns, "delete", "workloadprocess", "image-run", "--wait=false", check=False)
