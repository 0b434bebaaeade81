"""No store secret in any output, in every spelling libpq (and redis://)
accepts: --check-config, the log, /status, /api/dbinfo, /api/dashboard,
/debug/status, /metrics and error messages.  The store is unreachable on
purpose: connection errors are printed too, and must be masked as well."""
import json
import time

import pytest

from conftest import free_port
from test_cli import run

SECRET = "Sup3rS3cret"


def pg_spellings(port):
    return [
        "postgres://u:%s@127.0.0.1:%d/d" % (SECRET, port),
        "postgresql://u@127.0.0.1:%d/d?password=%s&sslmode=disable" % (port, SECRET),
        "postgres://127.0.0.1:%d/d?pass%%77ord=%s" % (port, SECRET),
        "postgres://u:%s%%21@127.0.0.1:%d/d" % (SECRET, port),
        "host=127.0.0.1 port=%d password=%s user=u" % (port, SECRET),
        "host=127.0.0.1 port=%d password = %s user=u" % (port, SECRET),
        "host=127.0.0.1 port=%d password  =  '%s x' user=u" % (port, SECRET),
        "host=127.0.0.1 port=%d password='%s\\'q' user=u" % (port, SECRET),
        "host=127.0.0.1 port=%d passfile=/run/%s user=u" % (port, SECRET),
    ]


@pytest.mark.parametrize("i", range(9))
def test_database_url_never_printed(controller_factory, i):
    port = free_port()  # nothing listens there
    url = pg_spellings(port)[i]
    rc, out, err = run(["--check-config"], env={"HIGHLANDER_STORAGE_TYPE": "db", "HIGHLANDER_DATABASE_URL": url})
    assert rc == 0, err
    assert SECRET not in out + err
    assert "****" in json.loads(out)["databaseURL"]
    c = controller_factory(env={"HIGHLANDER_STORAGE_TYPE": "db", "HIGHLANDER_DATABASE_URL": url})
    time.sleep(1.5)  # a few failed connects, each logged
    seen = [c.log()]
    for path in ("/status", "/api/status", "/api/dbinfo", "/api/dashboard", "/debug/status", "/metrics"):
        status, _, body = c.get(path)
        assert status == 200, path
        seen.append(body.decode())
    db = c.get_json("/api/dbinfo")[1]["data"]
    assert db["failures"] >= 1 and db["address"], db
    text = "\n".join(seen)
    assert SECRET not in text, [line for line in text.splitlines() if SECRET in line][:5]


@pytest.mark.parametrize("url", ["postgres://u:%s%%zz@h/d" % SECRET, "host=h password='%s" % SECRET,
                                 "host=h pasword=%s" % SECRET])
def test_unreadable_database_url_is_refused_without_echo(url):
    rc, out, err = run(["--check-config"], env={"HIGHLANDER_STORAGE_TYPE": "db", "HIGHLANDER_DATABASE_URL": url})
    assert rc == 2, (rc, out, err)
    assert "databaseURL" in err
    assert SECRET not in out + err


@pytest.mark.parametrize("addr", ["redis://u:%s@127.0.0.1:1/0" % SECRET, "redis://:%s/x@127.0.0.1:1/0" % SECRET,
                                  "u:%s@127.0.0.1:1" % SECRET])
def test_redis_address_never_printed(controller_factory, addr):
    rc, out, err = run(["--check-config"], env={"HIGHLANDER_REDIS_ADDR": addr})
    assert SECRET not in out + err, out + err
    if rc != 0:
        return  # refused (not host:port), and the message is masked
    c = controller_factory(env={"HIGHLANDER_REDIS_ADDR": addr})
    time.sleep(1.0)
    text = c.log() + "".join(c.get(p)[2].decode() for p in ("/status", "/api/dbinfo", "/api/dashboard",
                                                             "/debug/status", "/metrics"))
    assert SECRET not in text
