"""Graceful shutdown."""
import signal
import time


def test_sigterm_exits_cleanly(controller):
    t0 = time.time()
    rc = controller.terminate(timeout=5)
    took = time.time() - t0
    assert rc == 0, controller.log()
    assert took < 2.0
    log = controller.log()
    assert "all handles closed" in log
    assert "state running -> stopping (SIGTERM)" in log


def test_sigint_exits_cleanly(controller):
    controller.proc.send_signal(signal.SIGINT)
    assert controller.proc.wait(5) == 0
    assert "all handles closed" in controller.log()


def test_json_logs(controller_factory):
    import json
    c = controller_factory(env={"HIGHLANDER_LOG_FORMAT": "json", "HIGHLANDER_LOG_LEVEL": "debug",
                                "HIGHLANDER_REDIS_PASSWORD": "hunter2-secret"})
    c.terminate()
    lines = [l for l in c.log().splitlines() if l.strip()]
    assert lines
    for l in lines:
        doc = json.loads(l)
        assert {"ts", "level", "module", "msg"} <= set(doc)
    assert "hunter2-secret" not in c.log()


def test_port_in_use_fails_clearly(controller_factory):
    a = controller_factory()
    b = controller_factory(port=a.port, wait=False)
    rc = b.proc.wait(5)
    assert rc == 1
    assert "cannot listen on 127.0.0.1:%d" % a.port in b.log()


def test_start_up_failures_close_everything(tmp_path):
    """A module that fails to start stops the process with status 1, and
    what the modules after it had made (timers, the Kubernetes client, the
    fence) is freed too: every handle closed, no leak under ASan (exit 23)."""
    import os
    import socket
    import subprocess
    from conftest import BIN, ASAN

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "
                          "'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\n"
                          "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    env = dict(os.environ, HIGHLANDER_ID="x", HIGHLANDER_BIND_ADDRESS="127.0.0.1",
               HIGHLANDER_REDIS_ADDR="127.0.0.1:1", HIGHLANDER_KUBECONFIG=str(kubeconfig))
    if ASAN:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:exitcode=23"
    cases = [
        # the HTTP port taken: nothing after it starts
        ({"HIGHLANDER_PORT": str(busy.getsockname()[1])}, "cannot listen on"),
        # storageType lease without a readable kubeconfig: the lease fails, the workloads never start
        ({"HIGHLANDER_PORT": "0", "HIGHLANDER_STORAGE_TYPE": "lease",
          "HIGHLANDER_KUBECONFIG": str(tmp_path / "missing")}, "storageType lease: "),
    ]
    try:
        for extra, said in cases:
            p = subprocess.run([BIN], env=dict(env, **extra), capture_output=True, timeout=30)
            err = p.stderr.decode()
            assert p.returncode == 1, (extra, p.returncode, err[-2000:])
            assert said in err and "all handles closed" in err and "open at exit" not in err, err[-2000:]
    finally:
        busy.close()
