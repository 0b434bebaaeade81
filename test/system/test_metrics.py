"""/metrics is valid Prometheus text, and a real Prometheus scrapes it."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request


from conftest import free_port, wait_until


def test_promtool_check(controller):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is required: make deps"
    status, headers, body = controller.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    # The one lint finding allowed: a name the Go controller chose and that
    # dashboards written for it query (a gauge ending in _count).
    problems = [l for l in (p.stdout.decode() + p.stderr.decode()).splitlines()
                if l.strip() and not l.startswith("k8_highlander_goroutine_count non-histogram")]
    assert p.returncode in (0, 3) and not problems, (p.returncode, problems)
    text = body.decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "process_start_time_seconds", "k8_highlander_memory_usage_bytes", "k8_highlander_system_load",
                 'k8_highlander_controller_state{state="running"} 1', "k8_highlander_goroutine_count "):
        assert name in text


def metric_value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name + " missing")


def test_values_are_real(controller):
    text = controller.get("/metrics")[2].decode()
    rss = metric_value(text, "process_resident_memory_bytes")
    assert abs(rss - controller.rss()) < 4 * 1024 * 1024
    assert metric_value(text, "k8_highlander_memory_usage_bytes") > 0
    with open("/proc/loadavg") as f:
        load = float(f.read().split()[0])
    assert abs(metric_value(text, "k8_highlander_system_load") - load) < 2.0
    assert abs(metric_value(text, "process_start_time_seconds") - time.time()) < 120


def test_prometheus_scrapes(controller):
    prom = shutil.which("prometheus")
    assert prom, "prometheus (Debian package) is required: make deps"
    tmp = tempfile.mkdtemp(prefix="hl-prom-")
    port = free_port()
    with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: highlander\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % controller.port)
    log = open(os.path.join(tmp, "log"), "wb")
    p = subprocess.Popen([prom, "--config.file", os.path.join(tmp, "prometheus.yml"),
                          "--storage.tsdb.path", os.path.join(tmp, "data"),
                          "--web.listen-address", "127.0.0.1:%d" % port], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = "http://127.0.0.1:%d/api/v1/query?query=process_resident_memory_bytes" % port
        result = wait_until(lambda: json.load(urllib.request.urlopen(url, timeout=2))["data"]["result"], 60,
                            lambda: open(os.path.join(tmp, "log")).read()[-3000:], interval=0.5, ignore=(OSError,))
        assert result[0]["metric"]["job"] == "highlander"
        assert float(result[0]["value"][1]) > 0
    finally:
        p.terminate()
        p.wait(10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
