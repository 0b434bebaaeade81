"""The PostgreSQL lease store: leader_locks is shared with the Go
controller and may lose rows (the Go controller deletes them on release,
an operator truncates the table); our epoch and state live in tables of our
own, so no two leaderships overlap and tokens keep increasing
(docs/lease.md)."""
import re
import time

from conftest import holds_for, wait_until
from lease_helpers import (LEASE_S, Cluster, PgStore, check_no_overlap, mono_ns, read_intervals, starts_after,
                           token_of)

KEY = "highlander-leader-lock:default"

# The Go controller's table as gorm creates it (pkg/storage/db_storage.go).
GO_SCHEMA = ("CREATE TABLE leader_locks (key text PRIMARY KEY, value text, cluster_name text, metadata text,"
             " created_at timestamptz, updated_at timestamptz, expires_at timestamptz, version bigint);"
             "CREATE INDEX idx_leader_locks_expires_at ON leader_locks(expires_at);"
             "CREATE INDEX idx_leader_locks_created_at ON leader_locks(created_at);")
COLUMNS = ("SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)"
           " FROM information_schema.columns WHERE table_name = 'leader_locks'")


def wait_start_after(cl, t_ns, timeout=LEASE_S + 8):
    return wait_until(lambda: (starts_after(cl.log_path, t_ns) or [None])[0], timeout,
                      "no leadership began after the fault")


def left_s(out):
    """Seconds left of the lease the state row vouched for (psql -tA)."""
    vals = [v for v in out.split("\n") if re.match(r"^-?[0-9.]+$", v.strip())]
    assert vals, "the state row was not there: %r" % out
    return float(vals[-1])


def delete_and_wait(cl, pg, statement):
    """Run statement (which drops the lock) in one transaction with a read
    of what the state row vouched for; the next leadership must begin no
    earlier than the end of that lease."""
    high = max(iv[0] for iv in read_intervals(cl.log_path))
    t0 = mono_ns()
    out = pg.script("BEGIN; SELECT extract(epoch FROM until_at - now()) FROM highlander_lease_state WHERE key = '%s';"
                 " %s; COMMIT;" % (KEY, statement))
    left = left_s(out)
    new = wait_start_after(cl, t0)
    waited = (new[1] - t0) / 1e9
    assert waited >= left - 0.05, "took the lock %.3f s after the loss, %.3f s were left of the lease" % (
        waited, left)
    assert new[0] > high, "token %d after %d" % (new[0], high)
    return new


def test_rows_deleted_or_truncated_by_another_client(controller_factory):
    store = PgStore()
    try:
        cl = Cluster(controller_factory, None, n=3, store=store)
        cl.wait_one_leader(timeout=LEASE_S + 10)
        for statement in ("DELETE FROM leader_locks", "TRUNCATE leader_locks",
                          "DELETE FROM leader_locks WHERE key = '%s'" % KEY):
            time.sleep(0.6)
            delete_and_wait(cl, store.server, statement)
            cl.wait_one_leader(timeout=LEASE_S + 5)
        time.sleep(1.0)
        cl.check()
    finally:
        store.stop()


def test_everything_forgotten_and_a_fresh_replica(controller_factory):
    """Lock and state both gone, and a replica that never saw the store: no
    one can vouch, so nobody takes the lock before one full lease."""
    store = PgStore()
    try:
        cl = Cluster(controller_factory, None, n=3, store=store)
        cl.wait_one_leader(timeout=LEASE_S + 10)
        time.sleep(0.6)
        high = max(iv[0] for iv in read_intervals(cl.log_path))
        t0 = mono_ns()
        store.server.sql("BEGIN; TRUNCATE leader_locks, highlander_lease_state; COMMIT;")
        cl.add("fresh")
        new = wait_start_after(cl, t0)
        waited = (new[1] - t0) / 1e9
        assert waited >= LEASE_S - 0.1, "took an unvouched lock after %.3f s" % waited
        assert new[0] > high
        # The others' waits end within a retry period of this one's.  The
        # new lock lost again right now: its state row still vouches, so
        # nobody takes it before that lease's end, however long they waited.
        delete_and_wait(cl, store.server, "DELETE FROM leader_locks")
        time.sleep(1.0)
        cl.check()
    finally:
        store.stop()


def test_shares_the_go_controllers_table(controller_factory):
    """The table keeps the Go controller's columns exactly; a row deleted
    the way the Go controller releases is taken over with a larger token."""
    store = PgStore()
    pg = store.server
    try:
        pg.sql(GO_SCHEMA)
        before = pg.sql(COLUMNS)
        cl = Cluster(controller_factory, None, n=2, store=store)
        leader = cl.wait_one_leader(timeout=LEASE_S + 10)
        assert pg.sql(COLUMNS) == before
        assert pg.sql("SELECT value FROM leader_locks WHERE key = '%s'" % KEY) == leader.rid
        assert pg.sql("SELECT count(*) FROM information_schema.tables WHERE table_name IN"
                      " ('highlander_lease_state', 'highlander_members')") == "2"
        assert int(pg.sql("SELECT epoch FROM highlander_lease_state WHERE key = '%s'" % KEY)) == token_of(leader)
        # A row of the Go controller's: ours follow it and learn its end.
        pg.sql("DELETE FROM leader_locks; INSERT INTO leader_locks VALUES ('%s', 'go-replica', 'c1', '{}', now(),"
               " now(), now() + interval '3 seconds', 1)" % KEY)
        t_go = mono_ns()
        time.sleep(1.0)
        others = [c for c in cl.alive()]
        assert cl.leaders(others) == []
        assert others[0].get_json("/status")[1]["data"]["currentLeader"] == "go-replica"
        # The Go controller releases by deleting its row before it expires:
        # the state our followers kept vouches until its end, no longer.
        high = max(iv[0] for iv in read_intervals(cl.log_path))
        pg.sql("DELETE FROM leader_locks WHERE key = '%s' AND value = 'go-replica'" % KEY)
        new = wait_start_after(cl, t_go)
        assert (new[1] - t_go) / 1e9 >= 3.0 - 0.1, "took the lock before the Go leader's row would have expired"
        assert new[0] > high
        assert pg.sql(COLUMNS) == before
        cl.check()
    finally:
        store.stop()


def test_unreachable_at_start_is_logged_and_counted(controller_factory):
    """A database that never answered is as visible as one that went away:
    logged and counted from the first attempt."""
    from conftest import free_port
    port = free_port()
    c = controller_factory(env={"HIGHLANDER_STORAGE_TYPE": "db",
                                "HIGHLANDER_DATABASE_URL": "postgres://u:s3cret@127.0.0.1:%d/x" % port})
    wait_until(lambda: "cannot connect to the store" in c.log(), 5, lambda: c.log()[-2000:])
    info = c.get_json("/api/dbinfo")[1]["data"]
    assert info["connected"] is False and info["failures"] >= 1 and info["lastError"], info
    metrics = c.get("/metrics")[2].decode()
    assert re.search(r'^k8_highlander_db_errors_total\{[^}]*\} [1-9]', metrics, re.M), metrics
    assert c.get("/readyz")[0] == 503
    assert "s3cret" not in c.log()
    assert c.terminate() == 0


def test_not_connected_until_the_first_query(controller_factory):
    """A TCP listener that accepts and never answers is not a database."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    try:
        c = controller_factory(env={"HIGHLANDER_STORAGE_TYPE": "db", "HIGHLANDER_DATABASE_URL":
                                    "postgres://u@127.0.0.1:%d/x" % ls.getsockname()[1]})
        time.sleep(2.5)
        assert c.get_json("/api/dbinfo")[1]["data"]["connected"] is False
        assert c.get("/readyz")[0] == 503
        assert "store connected" not in c.log()
        assert c.terminate() == 0
    finally:
        ls.close()


def test_clean_shutdown_frees_everything(controller_factory):
    """SIGTERM of a leader and of followers with statements queued: exit 0
    (under ASan a leak would exit 23)."""
    store = PgStore()
    try:
        for _ in range(3):
            cl = Cluster(controller_factory, None, n=2, store=store)
            cl.wait_one_leader(timeout=LEASE_S + 10)
            for c in cl.replicas:
                assert c.terminate() == 0, c.log()
            check_no_overlap(cl.log_path)
    finally:
        store.stop()


def test_foreign_lock_is_held_until_the_go_controller_deletes_it(controller_factory):
    """A live row as the Go controller writes it (its JSON in metadata, its
    100 s expiry) is a holder nobody takes; the Go controller deletes its
    row only to release it, so once it is gone the follower takes the lock
    within a retry period, not after Go's 100 s (issue 14, mixed fleets)."""
    store = PgStore()
    try:
        pg = store.server
        pg.script(GO_SCHEMA)
        pg.script("INSERT INTO leader_locks VALUES ('%s', 'go-1', '', '{\"value\":\"go-1\",\"ttl\":100000000000}',"
                  " now(), now(), now() + interval '100 seconds', 1);" % KEY)
        cl = Cluster(controller_factory, None, n=1, store=store)
        c = cl.replicas[0]
        def not_leading():
            assert not c.get_json("/status")[1]["data"]["isLeader"], "took a live foreign lock"
        holds_for(not_leading, 3 * LEASE_S, interval=0.1)
        doc = c.get_json("/status")[1]["data"]
        assert doc["currentLeader"] == "go-1", doc
        t0 = mono_ns()
        pg.script("DELETE FROM leader_locks WHERE key = '%s' AND value = 'go-1';" % KEY)
        new = wait_start_after(cl, t0, timeout=LEASE_S + 3)
        took = (new[1] - t0) / 1e9
        assert took < LEASE_S + 2, took
        check_no_overlap(cl.log_path)
        # Our own row deleted behind our back is still a loss, not a release.
        assert pg.sql("SELECT foreign_holder FROM highlander_lease_state WHERE key = '%s'" % KEY) == "f"
    finally:
        store.stop()
