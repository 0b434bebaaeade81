"""The Dockerfile, read (test_image.py builds and runs it): its build
stage's COPY set is enough for `make` to build the binary in an empty
directory, and the runtime root file system scripts/image-rootfs.sh makes
from a binary is enough to run it (chroot), with nothing but the binary,
its libraries and the loader."""
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


def test_runtime_stage_is_the_gathered_tree_alone_and_no_root():
    build, runtime = stages()
    assert runtime.startswith("scratch\n")
    assert re.findall(r"^(COPY|RUN|ADD) .*$", runtime, re.M) == ["COPY"]
    assert "COPY --from=build /rootfs/ /" in runtime
    assert "scripts/image-rootfs.sh /usr/local/bin/highlander /rootfs" in build
    assert re.search(r"^USER 65532:65532$", runtime, re.M)
    assert "/etc/k8-highlander/config.yaml" in runtime
    assert "-dev" not in runtime


def test_rootfs_script_gathers_what_the_binary_loads(tmp_path):
    """The tree holds the binary, the loader and exactly ldd's libraries,
    and the binary runs in it (chroot, as root)."""
    root = tmp_path / "rootfs"
    binary = os.path.realpath(os.path.join(ROOT, "build", "highlander"))
    p = subprocess.run(["sh", os.path.join(ROOT, "scripts", "image-rootfs.sh"), binary, str(root)],
                       capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    files = sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file() and not f.is_symlink())
    libs = re.findall(r"^\s*(\S+) => /", subprocess.run(["ldd", binary], capture_output=True,
                                                        check=True).stdout.decode(), re.M)
    assert sorted(os.path.basename(f) for f in files if "/lib" in "/" + f and f != binary.lstrip("/")) == \
        sorted(libs + [os.path.basename(f) for f in files if "ld-linux" in f]), files
    assert binary.lstrip("/") in files
    assert not [f for f in files if os.path.basename(f) in ("sh", "bash", "dash", "busybox")]
    if os.geteuid() == 0:
        p = subprocess.run(["chroot", str(root), binary, "--version"], capture_output=True)
        assert p.returncode == 0 and b"0.1.0" in p.stdout, p.stdout + p.stderr
