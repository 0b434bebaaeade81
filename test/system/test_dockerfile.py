"""The Dockerfile, checked without a Docker engine (none runs here): its
build stage's COPY set is enough for `make` to build the binary in an empty
directory, and its runtime stage installs the package of every shared
library the binary links directly."""
import os
import re
import shutil
import subprocess

from conftest import ROOT

DOCKERFILE = open(os.path.join(ROOT, "Dockerfile")).read()


def stages():
    parts = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
    assert len(parts) == 2, "two stages expected"
    return parts


def apt_packages(stage):
    m = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)\n \&\&", stage, re.S)
    return set(m.group(1).replace("\\", " ").split())


def test_build_stage_builds_from_its_copy_set(tmp_path):
    build, _ = stages()
    assert build.startswith("debian:bookworm AS build")
    for line in re.findall(r"^COPY (.+)$", build, re.M):
        *srcs, _dst = line.split()
        for src in srcs:
            src = src.rstrip("/")
            path = os.path.join(ROOT, src)
            if os.path.isdir(path):
                shutil.copytree(path, tmp_path / src, ignore=shutil.ignore_patterns("*.o", "*.d"))
            else:
                os.makedirs(tmp_path / os.path.dirname(src), exist_ok=True)
                shutil.copy(path, tmp_path / src)
    assert not (tmp_path / "test").exists() and not (tmp_path / ".git").exists()
    p = subprocess.run(["make", "-j2", "build/highlander"], cwd=tmp_path, capture_output=True)
    assert p.returncode == 0, p.stdout.decode()[-3000:] + p.stderr.decode()[-3000:]
    p = subprocess.run([str(tmp_path / "build/highlander"), "--version"], capture_output=True)
    assert p.returncode == 0 and b"0.1.0" in p.stdout + p.stderr
    # Every build dependency is a Debian package this machine also uses.
    for pkg in apt_packages(build) - {"build-essential", "git", "ca-certificates"}:
        assert subprocess.run(["dpkg-query", "-W", pkg], capture_output=True).returncode == 0, pkg


def test_runtime_stage_has_every_linked_library_and_no_root():
    build, runtime = stages()
    assert runtime.startswith("debian:bookworm-slim")
    wanted = apt_packages(runtime)
    binary = os.path.join(ROOT, "build", "highlander")
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", subprocess.run(["readelf", "-d", binary], capture_output=True,
                                                                  check=True).stdout.decode())
    assert needed
    for lib in needed:
        path = subprocess.run(["sh", "-c", "ldconfig -p | awk '$1 == \"%s\" {print $NF; exit}'" % lib],
                              capture_output=True).stdout.decode().strip()
        owner = ""
        for candidate in (path, os.path.realpath(path), os.path.realpath(path).replace("/usr/lib/", "/lib/")):
            owner = owner or subprocess.run(["dpkg", "-S", candidate], capture_output=True).stdout.decode()
        pkg = owner.split(":")[0]
        assert pkg == "libc6" or pkg in wanted, "%s (%s) is not installed by the runtime stage" % (lib, pkg)
    assert re.search(r"^USER 65532:65532$", runtime, re.M)
    assert "/etc/k8-highlander/config.yaml" in runtime
    assert "-dev" not in " ".join(wanted)
