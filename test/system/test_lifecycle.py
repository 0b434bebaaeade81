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
