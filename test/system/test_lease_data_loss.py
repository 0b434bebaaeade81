"""The lease store forgets: Redis restarted empty, the lock deleted or
flushed by another client, a replica that never saw the store before.
Nobody may take an absent lock it cannot vouch for before one full lease
has passed since it first saw it absent (docs/lease.md), no two
leaderships overlap, and tokens strictly increase."""
import json
import signal
import time

from conftest import wait_until
from lease_helpers import (LEASE_S, Cluster, RedisServer, check_no_overlap, mono_ns, starts_after,
                           token_of)

KEY = "highlander-leader-lock:default"
STATE_KEY = "highlander-leader-state:default"
# Read the state and the server clock, then delete, in one step.
DELETE_LUA = ("local s = redis.call('GET', KEYS[2]); local t = redis.call('TIME'); "
              "if ARGV[1] == 'DEL' then redis.call('DEL', KEYS[1]) else redis.call('FLUSHALL') end; "
              "return {s, t[1], t[2]}")


def wait_new_leader(cl, t_ns, timeout=LEASE_S + 8):
    """The replica leading with a leadership that began after t_ns."""
    def leader():
        new = starts_after(cl.log_path, t_ns)
        return new and next((c for c in cl.leaders() if token_of(c) == new[-1][0]), None)
    return wait_until(leader, timeout, "no leadership began after the fault")


def test_redis_restarted_empty_while_a_fresh_replica_starts(controller_factory):
    """The campaign's worst case: two held authority in 9 of 12 runs, and the
    token fell from 51 to 1.  Three rounds here."""
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=2)
        leader = cl.wait_one_leader(timeout=LEASE_S + 8)
        high = token_of(leader)
        for i in range(3):
            time.sleep(0.5)
            redis.kill()
            restarted = mono_ns()  # before the new server can answer
            redis.start()  # same port, no data
            fresh = cl.add("fresh-%d" % i)
            leader = wait_new_leader(cl, restarted)
            new = starts_after(cl.log_path, restarted)
            assert new, "no leadership started after the restart"
            # Nobody could vouch for the empty store: the first new
            # leadership began at least one lease after the restart.
            waited = (new[0][1] - restarted) / 1e9
            assert waited >= LEASE_S - 0.05, "took an unvouched absent lock after %.3f s" % waited
            assert token_of(leader) > high, (token_of(leader), high)
            high = token_of(leader)
            assert fresh.proc.poll() is None
        cl.check()
    finally:
        redis.stop()


def test_lock_deleted_or_flushed_by_another_client(controller_factory):
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=3)
        leader = cl.wait_one_leader(timeout=LEASE_S + 8)
        # DEL leaves the state key: it vouches that the lock expires at
        # its "until" (server time), so the wait is what was left of the
        # last renewal's lease.  FLUSHALL takes the state too: nothing
        # vouches, and the wait is one full lease.
        for how in ("DEL", "FLUSHALL"):
            before = token_of(leader)
            time.sleep(0.5)
            gone = mono_ns()  # before: the record cannot vanish earlier
            out = redis.cmd("EVAL", DELETE_LUA, 2, KEY, STATE_KEY, how).split("\n")
            left_s = (int(out[0].split("|")[1]) - (int(out[1]) * 1000 + int(out[2]) // 1000)) / 1e3
            bound = left_s if how == "DEL" else LEASE_S
            assert 0 < left_s <= LEASE_S, out
            leader = wait_new_leader(cl, gone)
            new = starts_after(cl.log_path, gone)
            assert new, "nobody leads again after %s" % how
            waited = (new[0][1] - gone) / 1e9
            assert waited >= bound - 0.05, "%s: took the absent lock after %.3f s (bound %.3f s)" % (
                how, waited, bound)
            assert token_of(leader) > before
        iv = cl.check()
        assert len(iv) >= 3
    finally:
        redis.stop()


FLUSH_WHEN_TAKEN = ("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('FLUSHALL'); return 1 end; "
                    "return 0")


def test_lock_taken_after_the_wait_and_flushed_again_at_once(controller_factory):
    """Everything lost twice: the first replica to take the lock after its
    full wait loses it again milliseconds later, before anyone else looked.
    The others' waits end a moment later and nothing in the store tells
    them; the taker's probation (docs/lease.md) keeps it from leading, so
    no two leaderships overlap (before it, the chaos run saw 70 ms)."""
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=3)
        cl.wait_one_leader(timeout=LEASE_S + 8)
        time.sleep(0.5)
        gone = mono_ns()
        redis.cmd("FLUSHALL")
        deadline = time.time() + LEASE_S + 5
        while redis.cmd("EVAL", FLUSH_WHEN_TAKEN, 1, KEY) != "1":
            assert time.time() < deadline, "nobody took the lock after the full wait"
        wait_new_leader(cl, gone)
        time.sleep(1.0)
        cl.check()
        for iv in starts_after(cl.log_path, gone):
            assert (iv[1] - gone) / 1e9 >= LEASE_S - 0.05, iv
        logs = "".join(c.log() for c in cl.replicas)
        assert "during probation; not leading" in logs, "the second loss did not hit a probation"
    finally:
        redis.stop()


def test_clean_release_is_taken_at_once(controller_factory):
    """The other side of the rule: a release vouches, so a SIGTERM handover
    still takes milliseconds, not a lease."""
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=2)
        leader = cl.wait_one_leader(timeout=LEASE_S + 8)
        time.sleep(0.5)
        st = json.loads(json.dumps(redis.cmd("GET", "highlander-leader-state:default")))
        assert st.endswith("|0"), st
        stopped = mono_ns()
        leader.proc.send_signal(signal.SIGTERM)
        other = [c for c in cl.replicas if c is not leader]
        cl.wait_one_leader(timeout=LEASE_S, among=other)
        new = starts_after(cl.log_path, stopped)
        assert new and (new[0][1] - stopped) / 1e9 < LEASE_S / 2, new
        cl.check()
    finally:
        redis.stop()


def test_paused_leader_and_store_restart_never_repeat_a_token(controller_factory):
    """A leader cut off (SIGSTOP: to the others, the same as a silent
    partition) while Redis restarts empty: the successor's token is larger
    (the wall-clock floor), and the old leader, resumed, does not act."""
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=3)
        leader = cl.wait_one_leader(timeout=LEASE_S + 8)
        old = token_of(leader)
        time.sleep(0.5)
        leader.proc.send_signal(signal.SIGSTOP)
        try:
            redis.kill()
            redis.start()
            others = [c for c in cl.replicas if c is not leader]
            succ = cl.wait_one_leader(timeout=LEASE_S + 8, among=others)
            assert token_of(succ) > old
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        assert cl.leaders() == [succ]
        iv = cl.check()
        tokens = [t for t, _, _ in iv]
        assert len(tokens) == len(set(tokens))
    finally:
        redis.stop()


def test_replica_started_during_a_store_outage(controller_factory):
    redis = RedisServer()
    try:
        cl = Cluster(controller_factory, redis, n=2)
        leader = cl.wait_one_leader(timeout=LEASE_S + 8)
        old = token_of(leader)
        redis.kill()
        late = cl.add("late")
        time.sleep(1.0)
        assert late.get("/readyz")[0] == 503
        back = mono_ns()
        redis.start()
        leader = wait_new_leader(cl, back)
        new = starts_after(cl.log_path, back)
        assert new and (new[0][1] - back) / 1e9 >= LEASE_S - 0.05
        assert token_of(leader) > old
        check_no_overlap(cl.log_path)
    finally:
        redis.stop()
